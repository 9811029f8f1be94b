"""A failed save over a registered model puts back every file its kind writes for it (the model
file and its ``companions``: a CNN's sidecar and TensorFlow Lite twin), and removes the ones the
failed save added: the name never holds one model's file beside another's sidecar."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fer_core import fileio
from fer_core.errors import FerError
from fer_core.manifest import Metrics, previous_path, read_manifest
from fer_core.predictors import registry


def _side(path: Path) -> Path:
    return path.with_suffix(".side")


def _save_two_files(artefact: dict, path: Path) -> list[Path]:
    """A model file and, if given, a sidecar (replaced through ``fileio``, as every kind writes); then,
    if asked, a full disk (as a third write would meet)."""
    fileio.atomic_write_bytes(path, artefact["model"])
    written = [path]
    if "side" in artefact:
        fileio.atomic_write_bytes(_side(path), artefact["side"])
        written.append(_side(path))
    if artefact.get("fail"):
        raise OSError(errno.ENOSPC, "No space left on device")
    return written


@pytest.fixture
def two_file_kind(monkeypatch):
    registry.kinds()
    kind = registry.ModelKind("two-file", "a model file and a sidecar (a test kind)", "pixels", False,
                              lambda path, entry: None, _save_two_files, "{name}.two",
                              lambda path: path.suffix == ".two", companions=lambda path: [_side(path)])
    monkeypatch.setitem(registry._kinds, "two-file", kind)
    return kind


def _save(artefact: dict, out: Path) -> None:
    registry.save_and_register(artefact, name="x-two", kind="two-file", classes=["happy", "sad"], metrics=Metrics(),
                               command="pytest", path=out, replace=True)


def _state(out: Path) -> tuple:
    return (out.read_bytes(), _side(out).read_bytes() if _side(out).exists() else None, read_manifest()[-1].sha256)


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".previous")))


def test_a_failed_save_puts_back_the_sidecar_with_the_model(models_dir, two_file_kind):
    """Before: the model file came back, the new model's sidecar stayed beside it."""
    out = models_dir / "x.two"
    _save({"model": b"model 1", "side": b"side 1"}, out)
    registered = _state(out)
    with pytest.raises(FerError, match="no space left on the disk"):
        _save({"model": b"model 2", "side": b"side 2", "fail": True}, out)
    assert _state(out) == registered and _litter(models_dir) == []


def test_a_sidecar_the_failed_save_added_is_removed(models_dir, two_file_kind):
    """The registered model had no sidecar; the failed save's would have been read as its own."""
    out = models_dir / "x.two"
    _save({"model": b"model 1"}, out)
    with pytest.raises(FerError):
        _save({"model": b"model 2", "side": b"side 2", "fail": True}, out)
    assert out.read_bytes() == b"model 1" and not _side(out).exists() and _litter(models_dir) == []


def test_after_a_killed_save_a_failed_one_puts_back_the_registered_files(models_dir, two_file_kind):
    """A save killed before registering left the registered files as .previous links and its own
    under the names; a later failed save puts back the registered ones, not the killed save's."""
    out = models_dir / "x.two"
    _save({"model": b"model 1", "side": b"side 1"}, out)
    registered = _state(out)
    for file in (out, _side(out)):  # what the killed save left
        os.link(file, previous_path(file))
        file.unlink()
    out.write_bytes(b"model 2")
    _side(out).write_bytes(b"side 2")
    with pytest.raises(FerError):
        _save({"model": b"model 3", "side": b"side 3", "fail": True}, out)
    assert _state(out) == registered and _litter(models_dir) == []


def test_after_a_killed_save_a_sidecar_the_registered_model_lacked_goes_too(models_dir, two_file_kind):
    """The registered model had no sidecar; a killed save left its model and its sidecar. A later
    failed save put back the registered model but kept the killed save's sidecar beside it."""
    out = models_dir / "x.two"
    _save({"model": b"model 1"}, out)
    os.link(out, previous_path(out))  # what the killed save left: the registered file kept aside,
    out.unlink()
    out.write_bytes(b"model 2")  # and its own under the names
    _side(out).write_bytes(b"side 2")
    with pytest.raises(FerError):
        _save({"model": b"model 3", "side": b"side 3", "fail": True}, out)
    assert out.read_bytes() == b"model 1" and not _side(out).exists() and _litter(models_dir) == []
