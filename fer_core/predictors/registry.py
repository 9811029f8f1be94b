"""The one registry of model kinds: how a manifest entry (or a model file) becomes a Predictor,
and how a trained or imported model is saved into ``models/`` and registered.

A kind is declared once, in its own module, as ``ModelKind`` records returned by that module's
``_kinds()``; this module lists those modules. Adding a kind is one module plus one line in
``KIND_MODULES`` (or ``register_kind`` at run time, e.g. from a plugin or a test).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from .. import config
from ..emotions import normalize_emotion
from ..errors import FerError, ModelFileError, ModelNotFoundError, OutputFileError, one_line, printable
from ..fileio import remove_stale_parts, write_error
from ..manifest import (
    Metrics,
    ModelEntry,
    manifest_path,
    one_writer,
    previous_path,
    read_manifest,
    refuse_other_kind,
    refuse_registered_file,
    register,
    relative_to_repo,
    sha256_file,
    stored_path,
    validate_model_name,
)
from ..safe_files import check_regular_file, read_json_file
from .base import Inputs, Predictor

MODEL_FILE_HINT = "use .json (AU model), .keras (CNN) or a Teachable Machine .zip/.h5"

KIND_MODULES: tuple[str, ...] = (
    "fer_core.predictors.au_models",
    "fer_core.predictors.cnn",
    "fer_core.predictors.teachable",
    "fer_core.predictors.au_bottleneck",
    "fer_core.predictors.au_gam",
    "fer_core.predictors.ensemble",
)


@dataclass(frozen=True)
class ModelKind:
    """What the workbench needs to know of a model kind, without loading any model of it."""

    name: str  # "au-logreg"
    describe: str  # one line for people
    inputs: Inputs  # "aus" or "pixels"
    explains: bool  # predictions come with per-AU reasons
    load: Callable[[Path, ModelEntry], Predictor]
    # Write the artefact at path and return the files written; through ``fileio`` (a file is replaced,
    # never rewritten in place: the versions a save keeps to put back are hard links to the old files).
    save: Callable[[Any, Path], list[Path]]
    file_pattern: str  # where save_and_register puts a model, in the models folder: "{name}.json"
    claims: Callable[[Path], bool]  # does this file (given by path, not by name) hold this kind?
    # (Re)make the model file's TensorFlow Lite twin (``lite``) and return its path; None: no twins.
    export_lite: Callable[[Path], Path] | None = None
    # Will loading this entry start TensorFlow, when the kind itself cannot say (an ensemble asks its members)?
    needs_tensorflow: Callable[[ModelEntry], bool] | None = None
    # The files a save at a path writes beside it (a CNN's sidecar and twin): kept and put back with it.
    companions: Callable[[Path], Sequence[Path]] | None = None


_kinds: dict[str, ModelKind] = {}
_lock = threading.Lock()
_loaded = False
# Held while the built-in kinds are imported, so that a second caller (another dashboard session on a
# fresh server) waits for all of them instead of seeing a part; re-entrant for the importing thread.
_load_lock = threading.RLock()
_loading = threading.local()


def register_kind(kind: ModelKind) -> ModelKind:
    """Make a kind known (replacing one of the same name)."""
    with _lock:
        _kinds[kind.name] = kind
    return kind


def _load_builtin() -> None:
    """Import the built-in kinds once; marked loaded only when every module has registered, so a
    module that fails to import is tried again by the next caller, not left out for good."""
    global _loaded
    if _loaded or getattr(_loading, "active", False):  # done, or this thread is importing them now
        return
    with _load_lock:
        if _loaded:
            return
        _loading.active = True
        try:
            for module in KIND_MODULES:
                for kind in importlib.import_module(module)._kinds():
                    with _lock:
                        _kinds.setdefault(kind.name, kind)
            _loaded = True
        finally:
            _loading.active = False


def kinds() -> dict[str, ModelKind]:
    _load_builtin()
    with _lock:
        return dict(_kinds)


def get_kind(name: str) -> ModelKind:
    known = kinds()
    if name not in known:
        raise ModelFileError(f"unknown model kind {name!r}; known kinds: {', '.join(sorted(known))}")
    return known[name]


def kind_for_path(path: Path) -> str:
    """The kind of a model file given by path (not registered in the manifest)."""
    for kind in kinds().values():
        try:
            if kind.claims(path):
                return kind.name
        except OSError:
            continue
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file (a Teachable Machine export folder holds "
                             f"keras_model.h5); {MODEL_FILE_HINT}")
    if path.suffix.lower() == ".json":
        from .au_models import LOAD_HINT, MAX_MODEL_JSON_BYTES

        read_json_file(path, MAX_MODEL_JSON_BYTES, LOAD_HINT, what="AU model")  # says why it is no JSON, if so
        raise ModelFileError(f"{path}: not a JSON AU model; {LOAD_HINT}")
    raise ModelFileError(f"{path}: unknown model type; {MODEL_FILE_HINT}")


def find_entry(ref: str | ModelEntry, models_dir: Path | None = None) -> ModelEntry:
    """A model by manifest name, or an ad-hoc entry for a model file path."""
    if isinstance(ref, ModelEntry):
        return ref
    try:
        entries = read_manifest(models_dir)
    except ModelFileError:
        if not os.path.lexists(ref):  # a model file given by path loads without a manifest
            raise
        entries = []
    for entry in entries:
        if entry.name == ref:
            return entry
    if ref in getattr(entries, "left_out", {}):  # the manifest's entry of that name could not be read
        raise ModelFileError(f"{ref}: left out of the manifest: {entries.left_out[ref]}")
    path = Path(ref)
    if os.path.lexists(path):  # False, not OSError, for a name too long to exist
        if not path.is_dir():  # a folder may be a Teachable Machine export; else only regular files
            check_regular_file(path, MODEL_FILE_HINT)
        return registered_as(path, entries) or ModelEntry(name=name_for_path(path), kind=kind_for_path(path),
                                                           path=str(path.resolve()), classes=())
    unusable = config.models_dir_unusable() if models_dir is None else ""
    import difflib

    close = difflib.get_close_matches(ref, [e.name for e in entries], n=1, cutoff=0.6)
    names = ", ".join(e.name for e in entries) or ("none" + (f" ({unusable})" if unusable else ""))
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFoundError(f"model {ref!r} not found: {hint}give a file path or one of: {names}")


# The names every Teachable Machine download gives its files: two exports given by path were
# both "keras_model" (refused as one model named twice); their folders tell them apart.
_EXPORT_FILE_STEMS = frozenset({"keras_model", "model", "model_unquant", "converted_keras", "converted_tfjs",
                                "converted_tflite"})


def name_for_path(path: Path) -> str:
    """The name a model given by path is shown under: its file's, or for a Teachable Machine
    download's own file name (``two/keras_model.h5``) its folder's (``two``)."""
    if path.stem.lower() in _EXPORT_FILE_STEMS and path.resolve().parent.name:
        return path.resolve().parent.name
    return path.stem


def registered_as(path: Path, entries: Sequence[ModelEntry]) -> ModelEntry | None:
    """The manifest's entry for a model file given by path, unchanged since it was registered: a
    result then names the model as every other one does ('cnn-fer2013', not 'cnn_fer2013'). A
    file changed since is loaded as the file the user named, under its file's name."""
    resolved = path.resolve()
    for entry in entries:
        try:
            if entry.file.resolve() == resolved and (not entry.sha256 or sha256_file(resolved) == entry.sha256):
                return entry
        except (OSError, FerError):  # a folder (Teachable Machine export), an unreadable file: not this one
            continue
    return None


def load_predictor(ref: str | ModelEntry, models_dir: Path | None = None) -> Predictor:
    """The only way from a manifest name, an entry or a model file to a Predictor: checks the
    file's checksum, then loads it with its kind's loader."""
    entry = find_entry(ref, models_dir)
    kind = get_kind(entry.kind)
    entry.verify_checksum()
    predictor = kind.load(entry.file, entry)
    if predictor.source_digest is None:  # unless the kind's loader knows better what it read (Teachable Machine)
        predictor.source_digest = files_digest([Path(entry.file), *(kind.companions(Path(entry.file))
                                                                     if kind.companions else ())],
                                               known={Path(entry.file): entry.sha256} if entry.sha256 else {})
    # What the manifest says must be what was loaded: its classes label the outputs everywhere
    # (a class list in another order named every face wrongly), its kind decides the pages' use.
    if predictor.kind != entry.kind:
        raise ModelFileError(f"{entry.file}: the model's kind is {predictor.kind}, but the manifest lists {entry.name!r} as "
                             f"{entry.kind}; fix its kind in manifest.json")
    if entry.classes and _emotions(entry.classes) != _emotions(predictor.classes):  # a plugin's "happiness" too
        raise ModelFileError(f"{entry.file}: the model's classes ({', '.join(predictor.classes)}) differ from "
                             f"those the manifest lists for {entry.name!r} ({', '.join(entry.classes)}); fix "
                             "manifest.json or retrain")
    if _emotions(predictor.classes) != tuple(predictor.classes):  # a plugin's "happiness": named as everywhere
        try:  # else its answers were scored against no image's label ("happy")
            predictor.classes = _emotions(predictor.classes)
        except AttributeError:
            raise ModelFileError(f"{entry.file}: the model's classes ({', '.join(predictor.classes)}) are not named as "
                                 f"this workbench names emotions ({', '.join(_emotions(predictor.classes))})") from None
    return predictor


def _emotions(classes: Sequence[str]) -> tuple[str, ...]:
    return tuple(normalize_emotion(c) or c for c in classes)


def files_digest(paths: Sequence[Path], known: Mapping[Path, str] | None = None) -> str | None:
    """One SHA-256 of the bytes of ``paths`` (those that exist; a folder's files, a Teachable
    Machine export's, by their names inside it): what a model's answers depend on. ``known``: the
    SHA-256 of a file already checked (the manifest's, just verified), not read again. None where
    one cannot be read (its answers are then not cached; the model itself has loaded)."""
    digest = hashlib.sha256()
    try:
        for path in paths:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if file.is_file():
                    sha = (known or {}).get(file) or sha256_file(file)
                    digest.update(f"{file.relative_to(path) if path.is_dir() else ''}\0{sha}".encode())
    except (FerError, OSError):
        return None
    return digest.hexdigest()


def _metrics_given(metrics, artefact) -> Metrics:
    """A script's metrics: a Metrics, a dict of its fields, or None (an AU model's held-out scores
    when it has them, else "not evaluated"); a dict naming none of its fields is refused."""
    if isinstance(metrics, Metrics):
        return metrics
    if metrics is None:
        holdout = getattr(artefact, "holdout", None)
        return (Metrics.from_report(holdout, "held out from its training table") if holdout is not None
                else Metrics())
    known = {f.name for f in dataclass_fields(Metrics)}
    if isinstance(metrics, dict) and known & set(metrics):
        return Metrics.from_dict(metrics)
    raise FerError(f"metrics: give a Metrics, e.g. Metrics.from_report(report, evaluated_on=...), or a dict of its "
                   f"fields ({', '.join(sorted(known))}), not {type(metrics).__name__}"
                   + (f" with {', '.join(map(str, metrics))}" if isinstance(metrics, dict) and metrics else ""))


def _replaced_file(name: str, own: Path, existing: Sequence[ModelEntry], folder: Path) -> Path:
    """Where ``replace`` without a path writes: the kind's own file name for ``name`` in the models
    folder, over a model registered under it there (a script saving again). A model registered
    with another file (a bundled one, one saved with a path) is not written over, nor a file the
    manifest does not list."""
    current = next((e for e in existing if e.name == name), None)
    if current is not None:
        if os.path.abspath(current.file) != os.path.abspath(own):
            raise FerError(f"{name} is registered with the file {printable(str(current.file))}; give that file as "
                           "path to replace it, or save under another name")
        return own
    if os.path.lexists(own):
        raise FerError(f"{own.name} already exists in {folder} but is not in the manifest (left by a save that did "
                       "not finish, or put there by hand): remove it or choose another name")
    return own


def save_and_register(artefact: Any, *, name: str, kind: str, classes: Sequence[str], metrics: Metrics | dict | None,
                      command: str, origin: str | None = None, description: str | None = None,
                      mapping: dict | None = None, path: str | Path | None = None,
                      models_dir: Path | None = None, replace: bool = False,
                      extra: dict[str, Any] | None = None) -> ModelEntry:
    """Save ``artefact`` (what the kind's ``save`` takes: an AUModel, a finished CNN training, a
    Teachable Machine import) and register it under ``name``.

    Without ``path`` it goes to the kind's ``file_pattern`` in the models folder and the name must
    be new, unless ``replace``: then a model registered under it is replaced (a script fitting
    again under one name); with ``path`` (the CLI's ``--out``) it is written there and registered,
    replacing an entry of the same name in that file, or, with ``replace``, in another file (two
    runs under one new name: the second is refused, as the CLI's check before training would have
    refused it). Files written are removed again if registering fails. ``extra``: further keys of
    the manifest entry (a Teachable Machine import's ``format``). Saves wait for each other (the
    manifest's lock), so of two saves under one new name the second is refused, in one line.
    """
    spec = get_kind(kind)
    if type(artefact).__module__.startswith("sklearn"):  # saved, it failed on an AttributeError deep in the kind
        from .au_models import _SKLEARN_HINT

        raise FerError(_SKLEARN_HINT.format(what=type(artefact).__name__))
    metrics = _metrics_given(metrics, artefact)
    if isinstance(artefact, Predictor):
        artefact = saved_form(artefact)
    refuse_contradiction(artefact, kind, classes)
    folder = Path(models_dir or config.models_dir())
    # The name check, the files and the entry are one step under the manifest's lock: two sessions
    # saving under the same new name both passed the check, wrote the same file, and the first was
    # told "saved" while the name held the other's model. The second now waits, then is refused.
    with one_writer(folder):
        existing = read_manifest(folder, strict=True)  # written back: an entry it could not read would be lost
        if path is None and replace:  # a script saving again under a name: the model registered under it
            path = _replaced_file(name, folder / spec.file_pattern.format(name=name), existing, folder)
        if path is None:
            validate_model_name(name, existing)
            target = folder / spec.file_pattern.format(name=name)
            if os.path.lexists(target):
                listed = any(e.file.resolve() == target.resolve() for e in existing)
                raise FerError(f"{target.name} already exists in {folder}"
                               + ("" if listed else " but is not in the manifest (left by a save that did not "
                                  "finish, or put there by hand): remove it or") + " choose another name")
        else:
            validate_model_name(name, [] if replace else [e for e in existing if e.name != name])
            same = next((e for e in existing if e.name == name), None)
            if same is not None and not replace and same.file.resolve() != Path(path).resolve():
                raise FerError(f"a model named {name!r} is already registered (file "
                               f"{printable(relative_to_repo(same.file))}); choose another name, or replace it "
                               "(--replace; replace=True in Python)")
            refuse_other_kind(name, kind, existing)
            refuse_registered_file(name, path, existing)
            target = Path(path)
        # The files a registered entry may name (the model file and its kind's sidecars) are replaced before
        # the manifest says so: until then their old versions are kept (hard links, no copying), put back if
        # the save or the registering fails (a full disk replaced the model and then could not update the
        # manifest: neither loaded; a .keras put back beside the new model's sidecar lost its twin), and
        # files the failed save created are removed.
        files = [target, *(spec.companions(target) if spec.companions else ())]
        for file in (*files, manifest_path(folder)):
            remove_stale_parts(file)
        registered_sha = next((e.sha256 for e in existing if e.file.resolve() == target.resolve()), None)
        kept = _keep_previous(files, registered_sha)
        existed = {f for f in files if os.path.lexists(f)}
        written: list[Path] = []
        entry: ModelEntry | None = None
        try:
            written = _save_files(spec, artefact, target)
            entry = ModelEntry(name=name, kind=kind, path=stored_path(written[0], folder), classes=tuple(classes),
                               metrics=metrics, command=command, origin=origin, description=description,
                               mapping=mapping, extra=dict(extra or {}), base=folder)
            try:
                registered = register(entry, folder)
            except (OSError, ValueError, OutputFileError) as exc:
                raise FerError(f"could not register {name} in the manifest ({one_line(exc)})"
                               + ("; the previous model is kept" if target in kept else "")) from None
        except BaseException:
            if not _manifest_took(entry, folder):
                created = [*files, *(written if path is None else ())]  # --out: the file may be the training's own
                _put_back(kept, [f for f in created if f not in kept and f not in existed])
            raise
        finally:
            for previous in kept.values():
                with contextlib.suppress(OSError):
                    os.unlink(previous)
        return registered


def saved_form(predictor: Predictor) -> Any:
    """What ``save_and_register`` saves for a predictor: an AU predictor's fitted model (the README's
    ``AUPredictor(fit_au_model(table), name=...)``; saving the wrapper failed on an AttributeError).
    Another loaded predictor is a file already: register that file instead, in one line."""
    model = getattr(predictor, "model", None)
    if getattr(predictor, "inputs", None) == "aus" and hasattr(model, "save"):
        return model
    raise FerError(f"{predictor.name}: a loaded {predictor.kind} model is saved already; register its file "
                   "(python -m fer_core models lists them), or save the model it was made from")


def refuse_contradiction(artefact: Any, kind: str, classes: Sequence[str]) -> None:
    """Refuse a save whose kind or classes contradict the artefact's own (an AUModel and a trained
    network know theirs): registered as given, the entry never loaded ("the model's classes differ
    from those the manifest lists"), or the save failed on an AttributeError deep in the kind."""
    own_kind = getattr(artefact, "kind", None)
    if isinstance(own_kind, str) and own_kind != kind:
        raise FerError(f"this model is of kind {own_kind}, not {kind}; register it as {own_kind}")
    own = getattr(artefact, "classes", None)
    if own is not None and _emotions(own) != _emotions(classes):
        raise FerError(f"this model predicts {', '.join(own)}, not {', '.join(classes)}; register it with its own "
                       "classes")


def _manifest_took(entry: ModelEntry | None, folder: Path) -> bool:
    """Whether the manifest names ``entry`` (by its checksum, filled by ``register``) after all: an
    interrupt (Ctrl-C, SIGTERM) as ``register`` returned put the old files back under the new
    entry's checksum, and neither model loaded. Then the new files stay."""
    if entry is None or not entry.sha256:
        return False
    try:
        return any((e.name, e.path, e.sha256) == (entry.name, entry.path, entry.sha256) for e in read_manifest(folder))
    except (OSError, FerError):
        return False


def _save_files(spec: ModelKind, artefact: Any, target: Path) -> list[Path]:
    """``spec.save``, whose OSError (a kind that writes without ``fileio``: a full disk) is one line."""
    try:
        return spec.save(artefact, target)
    except OSError as exc:
        raise write_error(target, exc) from None


def _remove(files: Sequence[Path]) -> None:
    for f in files:
        shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)


def _put_back(kept: dict[Path, Path], created: Sequence[Path]) -> None:
    """After a failed save: the kept versions back under their names, the files it created removed."""
    for file, previous in kept.items():
        with contextlib.suppress(OSError):
            os.replace(previous, file)
    with contextlib.suppress(OSError):
        _remove(created)


def _keep_previous(files: Sequence[Path], registered_sha: str | None) -> dict[Path, Path]:
    """Hard links (``previous_path``), which their replacements cannot touch, to the regular files
    among ``files`` (the model file first, then its sidecars), by file; none for a file that is not
    there, nor on a file system without hard links. When the model file's link is already there
    holding the registered version (``registered_sha``: a save killed after replacing the files, or
    a training that replaced it first), the links already there are that version's, and stay; a
    sidecar without one is the killed save's (the registered version had none), and is removed."""
    reuse = False
    with contextlib.suppress(OSError, FerError):
        kept = previous_path(files[0])
        reuse = bool(registered_sha) and kept.is_file() and sha256_file(kept) == registered_sha
    links: dict[Path, Path] = {}
    for file in files:
        kept = previous_path(file)
        try:
            if reuse:
                if kept.is_file() and not kept.is_symlink():
                    links[file] = kept
                else:  # the killed save's own sidecar: the registered version had none
                    file.unlink(missing_ok=True)
                continue
            if file.is_symlink() or not file.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(kept)
            os.link(file, kept)
        except OSError:
            continue
        links[file] = kept
    return links


def needs_tensorflow(entry: ModelEntry) -> bool:
    """Will loading this model start TensorFlow? Not for AU models, our networks with a fresh
    TensorFlow Lite twin (``lite``) or Teachable Machine's TFLite exports; yes for other Keras models."""
    known = kinds()
    kind = known.get(entry.kind)
    if kind is None or kind.inputs == "aus":
        return False
    if kind.needs_tensorflow is not None:
        return kind.needs_tensorflow(entry)
    if kind.export_lite is not None:
        from .cnn import read_cnn_metadata
        from .lite import fresh_twin

        try:
            return fresh_twin(entry.file, read_cnn_metadata(entry.file), entry.sha256, warn=False) is None
        except (OSError, FerError):
            return True
    return not str(entry.extra.get("format", "keras")).startswith("tflite")
