"""A save stopped half way (kill -9, power loss) or refused by a full disk loses nothing: the
manifest still parses, the model it lists still loads (or one line says where its registered
version is), no half-written file sits under a final name, and the same save run again succeeds.

Kills are deterministic: a child process writes part of one file and then dies with
``os._exit`` (no cleanup, as under SIGKILL); a full disk is ``fileio``'s one seam raising ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fer_core import fileio
from fer_core.cli import main
from fer_core.errors import FerError, ModelFileError
from fer_core.manifest import Metrics, read_manifest, sha256_file
from fer_core.predictors import registry

REPO = Path(__file__).resolve().parents[1]
AU_TABLE = REPO / "data" / "fer2013_val_au.csv.gz"

# Run in a child: the CLI, with the write of the temporary file whose name starts with
# FER_TEST_DIE_IN (a shell pattern) stopped half way by os._exit (the process dies as under kill -9).
_DIE_MIDWAY = """
import fnmatch, os, sys
from fer_core import fileio

prefix = os.environ["FER_TEST_DIE_IN"]
real = fileio._open_written

class _DiesHalfWay:
    def __init__(self, fh):
        self.fh = fh
    def write(self, data):
        self.fh.write(bytes(data)[: len(data) // 2])
        self.fh.flush()
        os._exit(137)
    def __getattr__(self, name):
        return getattr(self.fh, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)

def _open_written(fd):
    fh = real(fd)
    return _DiesHalfWay(fh) if fnmatch.fnmatch(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), prefix + "*") else fh

fileio._open_written = _open_written
from fer_core.cli import main
sys.exit(main(sys.argv[1:]))
"""

linux_only = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")


def _train_au(out: Path, seed: int) -> list[str]:
    return ["train-au", str(AU_TABLE), "--out", str(out), "--name", "x-model", "--seed", str(seed)]


def _run_dying(args: list[str], die_in: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FER_TEST_DIE_IN=die_in, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _DIE_MIDWAY, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".previous")))


def _disk_full_for(monkeypatch, prefix: str) -> None:
    """ENOSPC on the first write to a temporary file named ``prefix``…, as a full disk gives it."""
    real = fileio._open_written

    class _Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    def _open_written(fd):
        fh = real(fd)
        return _Full(fh) if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(prefix) else fh

    monkeypatch.setattr(fileio, "_open_written", _open_written)


@linux_only
def test_a_full_disk_while_registering_keeps_the_replaced_model(models_dir, monkeypatch, capsys):
    """Before: the new model replaced x.json, the manifest could not be written, and x-model no
    longer loaded ("checksum does not match"): the old model was lost."""
    out = models_dir / "x.json"
    assert main(_train_au(out, seed=0)) == 0
    old_bytes, old_entry = out.read_bytes(), read_manifest(models_dir)[-1]
    capsys.readouterr()
    _disk_full_for(monkeypatch, ".manifest.json.")
    assert main(_train_au(out, seed=3)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # train-au's notes come first
    assert out.read_bytes() == old_bytes and read_manifest(models_dir)[-1] == old_entry
    assert registry.load_predictor("x-model").kind == "au-logreg"
    assert "Traceback" not in err and len(errors) == 1
    assert "no space left on the disk" in errors[0] and "previous model is kept" in errors[0]
    assert _litter(models_dir) == []


@linux_only
def test_a_save_killed_while_writing_the_manifest_loses_nothing(models_dir):
    """Killed after x.json was replaced but before the manifest said so. Before: the registered
    version was gone and loading said only "checksum does not match"; now it is kept beside it,
    the message says where, and the same command run again succeeds."""
    out = models_dir / "x.json"
    assert main(_train_au(out, seed=0)) == 0
    old_bytes, manifest_bytes = out.read_bytes(), (models_dir / "manifest.json").read_bytes()
    died = _run_dying(_train_au(out, seed=3), die_in=".manifest.json.")
    assert died.returncode == 137, died.stderr[-2000:]
    assert (models_dir / "manifest.json").read_bytes() == manifest_bytes  # old, whole: not half a list
    assert out.read_bytes() != old_bytes and json.loads(out.read_bytes())  # the new model, whole
    kept = out.with_name(".x.json.previous")  # manifest.previous_path
    assert kept.read_bytes() == old_bytes and sha256_file(kept) == read_manifest(models_dir)[-1].sha256
    with pytest.raises(ModelFileError) as refused:
        registry.load_predictor("x-model")
    assert "\n" not in str(refused.value) and kept.name in str(refused.value)
    again = _run_dying(_train_au(out, seed=3), die_in="never")
    assert again.returncode == 0, again.stderr[-2000:]
    assert registry.load_predictor("x-model").kind == "au-logreg"
    assert sha256_file(out) == read_manifest(models_dir)[-1].sha256 and not kept.exists()


@linux_only
def test_a_save_killed_while_writing_the_model_leaves_the_old_one(models_dir):
    """Killed half way through the model file: the name still holds the registered model."""
    out = models_dir / "x.json"
    assert main(_train_au(out, seed=0)) == 0
    old_bytes = out.read_bytes()
    died = _run_dying(_train_au(out, seed=3), die_in=".x.json.")
    assert died.returncode == 137, died.stderr[-2000:]
    assert out.read_bytes() == old_bytes
    assert registry.load_predictor("x-model").kind == "au-logreg"


@linux_only
def test_the_kept_version_outlives_a_second_failed_save(models_dir, monkeypatch, capsys):
    """After a save killed between file and manifest, the next save fails on a full disk: the
    registered version, kept beside the file, is what the name holds afterwards (not the file of
    the killed save, which the manifest never named)."""
    out = models_dir / "x.json"
    assert main(_train_au(out, seed=0)) == 0
    registered = out.read_bytes()
    assert _run_dying(_train_au(out, seed=3), die_in=".manifest.json.").returncode == 137
    _disk_full_for(monkeypatch, ".manifest.json.")
    assert main(_train_au(out, seed=5)) == 2
    assert out.read_bytes() == registered and not (models_dir / ".x.json.previous").exists()
    assert registry.load_predictor("x-model").kind == "au-logreg"


def test_a_stop_just_after_the_manifest_was_written_keeps_the_model_it_names(models_dir, monkeypatch, capsys):
    """SIGTERM (or Ctrl-C) as the manifest had just taken the new model: the failed save's clean-up
    put the old x.json back under the new entry's checksum and deleted the new one: neither loaded."""
    from fer_core import manifest
    from fer_core.cli import Terminated

    out = models_dir / "x.json"
    assert main(_train_au(out, seed=0)) == 0
    old_sha, written = sha256_file(out), manifest.write_manifest

    def written_then_stopped(*args, **kwargs):
        written(*args, **kwargs)
        raise Terminated()

    monkeypatch.setattr(manifest, "write_manifest", written_then_stopped)
    assert main(_train_au(out, seed=3)) == 143
    assert sha256_file(out) == read_manifest(models_dir)[-1].sha256 != old_sha  # the new model, as listed
    assert registry.load_predictor("x-model").kind == "au-logreg"
    assert _litter(models_dir) == []


# A kind that writes its file itself, as the CNN's save copies one (shutil.copyfile), not via fileio.
def _save_half_then_full_disk(artefact: dict, path: Path) -> list[Path]:
    with open(path, "wb") as fh:
        fh.write(b'{"format": "half')
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def half_writing_kind(monkeypatch):
    registry.kinds()
    kind = registry.ModelKind("half", "writes half its file, then the disk is full (a test kind)", "pixels", False,
                              lambda path, entry: None, _save_half_then_full_disk, "{name}.half",
                              lambda path: path.suffix == ".half")
    monkeypatch.setitem(registry._kinds, "half", kind)
    return kind


def test_a_full_disk_in_a_kinds_own_save_is_one_line_and_leaves_no_file(models_dir, half_writing_kind):
    """Before: the OSError itself came out of save_and_register (a traceback on the page) and the
    half-written models/x-model.half stayed, refusing the name on the next try."""
    manifest_bytes = (models_dir / "manifest.json").read_bytes()
    with pytest.raises(FerError, match="no space left on the disk") as refused:
        registry.save_and_register({}, name="x-model", kind="half", classes=["happy", "sad"], metrics=Metrics(),
                                   command="pytest")
    assert "\n" not in str(refused.value)
    assert not (models_dir / "x-model.half").exists()
    assert (models_dir / "manifest.json").read_bytes() == manifest_bytes


def test_a_file_left_by_an_unfinished_save_is_named_as_such(models_dir, half_writing_kind):
    """A save killed after its file was written and before it was registered leaves a file no entry
    names; the next save under that name was told only "already exists", as if a model had it."""
    (models_dir / "x-model.half").write_bytes(b"left by a killed save")
    with pytest.raises(FerError, match="not in the manifest .*remove it or choose another name"):
        registry.save_and_register({}, name="x-model", kind="half", classes=["happy", "sad"], metrics=Metrics(),
                                   command="pytest")
    assert (models_dir / "x-model.half").read_bytes() == b"left by a killed save"  # not the program's to delete


def test_mask_on_a_full_disk_leaves_no_cut_off_photo_and_lists_it(tmp_path, fer_sample, monkeypatch, capsys):
    """Each masked photo was saved straight under its name: a full disk (or a kill) mid-photo left
    a cut-off JPEG there, which later read as a damaged photo of the masked set."""
    from PIL import Image

    real_save, calls = Image.Image.save, []

    def disk_fills_on_the_third(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) != 3:
            return real_save(self, fp, *args, **kwargs)
        if isinstance(fp, (str, os.PathLike)):
            with open(fp, "wb") as fh:
                fh.write(b"\xff\xd8\xff\xe0 the first bytes")
        else:
            fp.write(b"\xff\xd8\xff\xe0 the first bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_fills_on_the_third)
    out = tmp_path / "masked"
    assert main(["mask", str(fer_sample), "--out", str(out), "--workers", "1"]) == 0
    written = [p for p in out.rglob("*") if p.is_file() and p.name != "mask_failures.csv"]
    for photo in written:  # every photo under its name is whole
        with Image.open(photo) as im:
            im.load()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    failures = (out / "mask_failures.csv").read_text()
    assert "could not be written" in failures and "no space left" in failures.lower()


FILE_SIZE_LIMITED_SAVE = """
import resource, signal, sys
from pathlib import Path
from types import SimpleNamespace
from fer_core.predictors import cnn

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
source = Path(sys.argv[1])
try:
    cnn._save(SimpleNamespace(path=source, metadata_path=cnn.metadata_path(source)), Path(sys.argv[3]))
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("limit_mb", [1, 4.99])  # the network cut off; then its TensorFlow Lite twin
def test_a_cnn_saved_on_a_full_disk_leaves_no_cut_off_file(tmp_path, limit_mb):
    """The dashboard saves a trained CNN by copying it (and its twin) straight under the model's
    name: a full disk left a cut-off .keras or .tflite there, which later failed to load."""
    source = REPO / "models" / "cnn_fer2013.keras"
    target = tmp_path / "mine.keras"
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMITED_SAVE, str(source), str(int(limit_mb * 1e6)),
                           str(target)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "OutputFileError" in done.stdout, done.stdout + done.stderr[-2000:]
    for written in (target, target.with_suffix(".tflite")):
        assert not written.exists() or written.stat().st_size == (source.parent / f"cnn_fer2013{written.suffix}").stat().st_size
    assert not list(tmp_path.glob(".*.part"))


def _save_cnn(source: str, out: Path, classes: tuple[str, ...]) -> None:
    from types import SimpleNamespace

    from fer_core.predictors import cnn

    source_path = REPO / "models" / f"{source}.keras"
    registry.save_and_register(SimpleNamespace(path=source_path, metadata_path=cnn.metadata_path(source_path)),
                               name="x-cnn", kind="cnn", classes=classes, metrics=Metrics(), command="test",
                               path=out, replace=True)


@linux_only
@pytest.mark.parametrize("fails_in", [".x.meta.json.", ".manifest.json."])  # the new sidecar; the manifest
def test_a_failed_save_over_a_cnn_puts_back_its_sidecar_and_twin_too(models_dir, monkeypatch, fails_in):
    """Saving over a registered CNN on a full disk put back the old .keras but left the new
    model's .tflite (and, failing at the manifest, its .meta.json) beside it: the twin no longer
    matched the network, so predictions fell back to Keras with the other model's sidecar."""
    from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS

    out = models_dir / "x.keras"
    _save_cnn("cnn_fer2013", out, SIX_EMOTIONS)
    files = [out, out.with_suffix(".meta.json"), out.with_suffix(".tflite")]
    before = [f.read_bytes() for f in files]
    _disk_full_for(monkeypatch, fails_in)
    with pytest.raises(FerError):
        _save_cnn("cnn_fer2013_7_scratch", out, SEVEN_EMOTIONS)
    assert [f.read_bytes() for f in files] == before
    loaded = registry.load_predictor("x-cnn")
    assert loaded.classes == tuple(SIX_EMOTIONS) and loaded.runtime == "litert"  # its own twin, no TensorFlow
    assert _litter(models_dir) == []


@linux_only
def test_a_training_killed_before_it_is_registered_keeps_the_registered_network(models_dir, fer_sample):
    """train-cnn --out X --name N over the registered X: the finished network replaced X first, then
    its TensorFlow Lite twin was made (seconds) and only then was it registered. Killed in between,
    X held the new network under the old checksum and the registered one was gone. The next run
    registers its network and removes the cut-off twin the killed one left (no save tidied the
    training's own files: megabytes for good, per kill)."""
    from fer_core.emotions import SIX_EMOTIONS

    out = models_dir / "x.keras"
    _save_cnn("cnn_fer2013", out, SIX_EMOTIONS)
    registered = [f.read_bytes() for f in (out, out.with_suffix(".meta.json"), out.with_suffix(".tflite"))]
    train = ["train-cnn", "--data", str(fer_sample), "--val", str(fer_sample), "--out", str(out), "--name", "x-cnn",
             "--preset", "tiny", "--epochs", "1", "--register-anyway"]  # one tiny epoch may answer one emotion
    died = _run_dying(train, die_in="*.tflite.")
    assert died.returncode == 137, died.stderr[-2000:]
    assert [f.read_bytes() for f in (out, out.with_suffix(".meta.json"), out.with_suffix(".tflite"))] == registered
    assert registry.load_predictor("x-cnn").runtime == "litert"
    (cut_off,) = models_dir.glob(".x.training.tflite.*.part")
    os.utime(cut_off, (os.stat(cut_off).st_mtime - 7200,) * 2)  # its writer long gone
    again = _run_dying(train, die_in="never")
    assert again.returncode == 0, again.stderr[-2000:]
    assert sha256_file(out) == read_manifest(models_dir)[-1].sha256 and out.read_bytes() != registered[0]
    assert registry.load_predictor("x-cnn").runtime == "litert"  # the new network's own twin
    assert _litter(models_dir) == [] and not list(models_dir.glob("x.training*"))
