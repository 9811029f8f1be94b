"""models/manifest.json: the list of models every part of the workbench reads.

An entry names a model file, its kind (see ``predictors.registry``), the emotions it predicts,
how good it is (``Metrics``: one vocabulary for every kind, saying what it was measured on),
the command that made it and the file's SHA-256. Loading a model goes through the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import config, fileio
from .errors import FerError, ModelFileError, printable
from .safe_files import check_regular_file, read_json_file

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 2**20  # a manifest lists a few models: a few KB
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,62}$")

# Metric names written by earlier versions, and what they were measured on.
_LEGACY_METRICS = {
    "holdout": "a stratified share of the training table held out from fitting",
    "val": "the validation folder (which also picked the best epoch)",
    "test": "a test set",
}


@dataclass(frozen=True)
class Metrics:
    """How good a model is, and on what: the one vocabulary of every manifest entry."""

    accuracy: float | None = None
    macro_f1: float | None = None
    accuracy_ci95: tuple[float, float] | None = None
    evaluated_on: str = ""
    n: int | None = None
    selected_on: str = ""  # what chose the epoch / hyper-parameters, when not evaluated_on itself

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != "":
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> "Metrics":
        """Tolerant: a value of the wrong type is left out, not an error (metrics are only shown)."""
        d = dict(d) if isinstance(d, dict) else {}
        evaluated_on = d.get("evaluated_on", "")
        for prefix, meaning in _LEGACY_METRICS.items():
            if f"{prefix}_accuracy" in d or f"{prefix}_macro_f1" in d:
                d.setdefault("accuracy", d.get(f"{prefix}_accuracy"))
                d.setdefault("macro_f1", d.get(f"{prefix}_macro_f1"))
                evaluated_on = evaluated_on or meaning
        ci = d.get("accuracy_ci95")
        ci_pair = tuple(map(_number, ci)) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
        return cls(accuracy=_number(d.get("accuracy")), macro_f1=_number(d.get("macro_f1")),
                   accuracy_ci95=ci_pair if ci_pair and None not in ci_pair else None,
                   evaluated_on=evaluated_on if isinstance(evaluated_on, str) else "",
                   n=d["n"] if isinstance(d.get("n"), int) and not isinstance(d.get("n"), bool) else None,
                   selected_on=d["selected_on"] if isinstance(d.get("selected_on"), str) else "")

    @classmethod
    def from_report(cls, report, evaluated_on: str, selected_on: str = "") -> "Metrics":
        """From an ``EvaluationReport``."""
        return cls(accuracy=report.accuracy, macro_f1=report.macro_f1,
                   accuracy_ci95=tuple(report.accuracy_ci95), evaluated_on=evaluated_on, n=report.n,
                   selected_on=selected_on)


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, an integer of hundreds of digits included."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


_KNOWN = ("name", "kind", "path", "classes", "metrics", "command", "origin", "description", "mapping", "sha256")


@dataclass
class ModelEntry:
    """One model of the manifest. ``path`` is relative to the repository (or absolute);
    keys this version does not know are kept in ``extra`` and written back unchanged."""

    name: str
    kind: str
    path: str
    classes: tuple[str, ...]
    metrics: Metrics = field(default_factory=Metrics)
    command: str | None = None
    origin: str | None = None  # None: bundled; "dashboard"; "imported"; "cli"
    description: str | None = None
    mapping: dict[str, str | None] | None = None  # Teachable Machine label -> emotion
    sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The folder of the manifest that listed the entry (FER_MODELS_DIR), where a relative ``path``
    # is looked for first, so a copied models folder uses its own files; not written back.
    base: Path | None = field(default=None, compare=False, repr=False)

    @property
    def file(self) -> Path:
        return resolve_path(self.path, self.base)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "path": self.path,
                               "classes": list(self.classes), "metrics": self.metrics.to_dict()}
        for key in ("command", "origin", "description", "mapping", "sha256"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Any, source: str = MANIFEST, index: int | None = None) -> "ModelEntry":
        """An entry from its JSON object; ``index`` (from 1) names it in messages."""
        where = f"entry {index}" if index is not None else "an entry"
        fix = "fix or remove it"
        if not isinstance(d, dict):
            raise ModelFileError(f"{source}: {where} is {_json_type(d)}, not an object; {fix}")
        for key in ("name", "kind", "path"):
            value = d.get(key)
            if value is None or value == "":
                raise ModelFileError(f"{source}: {where} has no {key!r}; {fix}")
            if not isinstance(value, str):
                raise ModelFileError(f"{source}: {where} has a {key!r} that is {_json_type(value)}, not text; {fix}")
        if "\x00" in d["path"]:
            raise ModelFileError(f"{source}: {where} has a 'path' with a NUL character; {fix}")
        where = f"{where} ({d['name']!r})"
        classes = d.get("classes") or []
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ModelFileError(f"{source}: {where} has 'classes' that are not a list of emotion names; {fix}")
        for key in ("command", "origin", "description", "sha256"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise ModelFileError(f"{source}: {where} has a {key!r} that is {_json_type(d[key])}, not text; {fix}")
        mapping = d.get("mapping")
        if mapping is not None and not (isinstance(mapping, dict) and all(
                v is None or isinstance(v, str) for v in mapping.values())):
            raise ModelFileError(f"{source}: {where} has a 'mapping' that is not an object of class name -> "
                                 f"emotion (or null); {fix}")
        if d.get("metrics") is not None and not isinstance(d["metrics"], dict):
            raise ModelFileError(f"{source}: {where} has 'metrics' that are {_json_type(d['metrics'])}, "
                                 f"not an object; {fix}")
        return cls(name=d["name"], kind=d["kind"], path=d["path"], classes=tuple(classes),
                   metrics=Metrics.from_dict(d.get("metrics")), command=d.get("command"),
                   origin=d.get("origin"), description=d.get("description"), mapping=mapping,
                   sha256=d.get("sha256"), extra={k: v for k, v in d.items() if k not in _KNOWN})

    def verify_checksum(self) -> None:
        """Refuse a registered model whose file changed since it was registered (or that is no
        longer a regular file: a FIFO or a link to a device would never finish hashing)."""
        path = self.file
        if not os.path.exists(path):  # a name too long to exist is missing, not an OSError
            raise ModelFileError(f"{path}: model file of {self.name!r} is missing; restore it or retrain")
        if self.sha256 and sha256_file(path) != self.sha256:
            kept = previous_path(path)
            if os.path.isfile(kept) and sha256_file(kept) == self.sha256:  # a save stopped between file and manifest
                raise ModelFileError(f"{path}: replaced by a save that did not finish; the registered version is "
                                     f"kept as {kept.name}: run the save again, or move it back to {path.name} (and its "
                                     "sidecars' .previous files back to their names)")
            listing = self.base / MANIFEST if self.base is not None else Path("models") / MANIFEST
            if (self.base is not None and not Path(self.path).is_absolute() and not _inside(path, self.base)
                    and _inside(path, config.REPO_ROOT)):  # the repository's file, found in its stead
                raise ModelFileError(f"{path}: not the file {listing} registered as {self.name!r} (that folder has no "
                                     "copy of it, and this version's bundled file differs): copy the entry from "
                                     "the repository's models/manifest.json, or put the registered file beside it")
            raise ModelFileError(f"{path}: checksum does not match {listing}; restore it or retrain")


def validate_model_name(name: str, existing: Sequence[ModelEntry]) -> str:
    """A safe file stem that no manifest entry uses yet, or a FerError saying what to change."""
    name = (name or "").strip()
    if not name:
        raise FerError("give the model a name, e.g. au-logreg-mydata")
    if not MODEL_NAME_RE.fullmatch(name):
        raise FerError(f"model name {name!r} is not allowed: use 2-63 letters, digits, '-' or '_', "
                       "starting with a letter or digit")
    if any(e.name == name for e in existing):
        raise FerError(f"a model named {name!r} already exists; choose another name")
    return name


def refuse_other_kind(name: str, kind: str, existing: Sequence[ModelEntry]) -> None:
    """A model of another kind keeps its name: ``--name`` of a bundled CNN for an AU model replaced
    it in the manifest (a model of the same kind is replaced, as retraining in place does)."""
    same = next((e for e in existing if e.name == name), None)
    if same is not None and same.kind != kind:
        raise FerError(f"a model named {name!r} of kind {same.kind} exists; a model of kind {kind} cannot replace it, "
                       "choose another name")


def refuse_registered_file(name: str | None, target: str | os.PathLike[str], existing: Sequence[ModelEntry]) -> None:
    """The file a registered model loads from is written only under that model's name: a training
    with ``--out`` on it and no ``--name`` (or another name) replaced the model, and the entry then
    failed its checksum, with its own model gone."""
    where = Path(target).resolve()
    owner = next((e for e in existing if e.file.resolve() == where), None)
    if owner is not None and owner.name != name:
        raise FerError(f"{printable(str(target))} is the file of the registered model {owner.name!r}; "
                       + (f"give --name {owner.name} to replace it" if not name else f"it cannot hold {name!r} too")
                       + ", or choose another --out")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a regular file (anything else is refused before it is opened)."""
    check_regular_file(path, "restore it or retrain")
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc}); restore it or retrain") from None
    return h.hexdigest()


def previous_path(model_file: str | os.PathLike[str]) -> Path:
    """Where a save keeps the registered version of a model file while it replaces it (a hard link,
    ``registry.save_and_register``): left behind only when the process was killed in between."""
    path = Path(model_file)
    return path.with_name(f".{path.name}.previous")


def manifest_path(models_dir: Path | None = None) -> Path:
    return Path(models_dir or config.models_dir()) / MANIFEST


# A damaged manifest is mended where it is: it lists the models a researcher registered, which a copy
# from version control (the advice before) does not.
MANIFEST_HINT = "mend it where it says, or put back a copy of it (one from git lists only the bundled models)"


class ManifestEntries(list):
    """The usable entries of a manifest, and (``problems``) one line for each entry left out as it
    cannot be read: one entry mistyped by hand had stopped every model, the bundled ones too.
    ``left_out``: those lines by the model name the entry gives, so asking for it says why."""

    def __init__(self, entries: Sequence[ModelEntry] = (), problems: Sequence[str] = (),
                 left_out: dict[str, str] | None = None) -> None:
        super().__init__(entries)
        self.problems = list(problems)
        self.left_out = dict(left_out or {})


def read_manifest(models_dir: Path | None = None, strict: bool = False) -> ManifestEntries:
    """The entries of ``manifest.json`` (none if there is none). An entry that cannot be read, and
    entries that share a name, are left out, each said in ``problems``; ``strict`` (for whatever
    writes the manifest back, which would drop them) raises the first instead. A file that is no
    manifest at all is one ModelFileError line either way."""
    path = manifest_path(models_dir)
    if not os.path.lexists(path):
        return ManifestEntries()
    entries = read_json_file(path, MAX_MANIFEST_BYTES, MANIFEST_HINT, what="manifest")
    if not isinstance(entries, list):
        raise ModelFileError(f"{path}: manifest must be a JSON list of model entries, not {_json_type(entries)}; "
                             + MANIFEST_HINT)
    out: dict[int, ModelEntry] = {}
    problems: dict[int, str] = {}
    left_out: dict[str, str] = {}
    for i, e in enumerate(entries, 1):
        try:
            out[i] = ModelEntry.from_dict(e, str(path), i)
            out[i].base = path.parent
        except ModelFileError as exc:
            if strict:
                raise
            problems[i] = str(exc)
            if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"]:
                left_out.setdefault(e["name"], str(exc))
    first: dict[str, int] = {}
    for i, entry in out.items():
        if entry.name in first:
            message = (f"{path}: entries {first[entry.name]} and {i} are both named {entry.name!r}; "
                       "rename or remove one")
            if strict:
                raise ModelFileError(message)
            problems[i] = message
            left_out[entry.name] = message
        first.setdefault(entry.name, i)
    kept = [entry for entry in out.values() if entry.name not in left_out]
    return ManifestEntries(kept, [problems[i] for i in sorted(problems)], left_out)


def _json_type(value: Any) -> str:
    """How JSON would call ``value``'s type, for messages: "a list", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def write_manifest(entries: Sequence[ModelEntry], models_dir: Path | None = None) -> None:
    """Write the manifest whole or not at all (``fileio``): a full disk never leaves half a list."""
    fileio.atomic_write_text(manifest_path(models_dir), json.dumps([e.to_dict() for e in entries], indent=2) + "\n")


_held = threading.local()  # the manifest locks this thread holds (by lock file), so that they nest


@contextlib.contextmanager
def one_writer(models_dir: Path | None = None):
    """Hold the manifest's lock (``manifest.json.lock`` beside it) while it is read and written
    back: two saves at once (two dashboard sessions, a page and a CLI training) each read the
    list before the other wrote it, and one entry was lost. Held by a thread, it nests (a save
    holds it across its name check, its files and ``register``); other threads and processes wait."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: one writer is the user's to ensure
        yield
        return
    lock = manifest_path(models_dir).with_name(MANIFEST + ".lock")
    key = os.path.abspath(lock)
    held: set[str] = _held.__dict__.setdefault("locks", set())
    if key in held:
        yield
        return
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)  # a models folder not made yet (the first save)
        fh = open(lock, "a")  # noqa: SIM115 (closed by the with below; its OSError is said here)
    except OSError as exc:  # a read-only models folder: one line, before anything is written
        if os.path.lexists(lock.parent) and not lock.parent.is_dir():
            raise FerError(f"{lock.parent}: not a folder, so no model can be registered there"
                           + (" (FER_MODELS_DIR)" if models_dir is None and os.environ.get("FER_MODELS_DIR") else "")
                           ) from None
        raise fileio.write_error(lock, exc) from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(fh, fcntl.LOCK_UN)


def register(entry: ModelEntry, models_dir: Path | None = None) -> ModelEntry:
    """Add or replace (by name, in its place) an entry, filling its sha256 from the file."""
    entry.sha256 = sha256_file(entry.file)
    with one_writer(models_dir):
        entries = read_manifest(models_dir, strict=True)
        names = [e.name for e in entries]
        if entry.name in names:
            entries[names.index(entry.name)] = entry
        else:
            entries.append(entry)
        write_manifest(entries, models_dir)
    return entry


def resolve_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """Manifest paths are relative to the repository (``models/x.keras``). With ``base``, the
    folder of the manifest that lists the path, the file is looked for there first (``models/``
    meaning that folder, whatever its name), so a copy of the models folder uses its own files;
    a manifest listing bundled models without copies of their files still finds them. (Loading
    checks the file's checksum, so a look-alike found this way is refused, not used.) A file in
    neither place is given in that folder, so "missing" names where its owner keeps it."""
    p = Path(path)
    if p.is_absolute():
        if base is not None and not os.path.lexists(p) and os.path.lexists(base / p.name):
            return base / p.name  # a moved models folder, saved before its paths were "models/..."
        return p
    if base is not None:
        inside = base / Path(*p.parts[1:]) if len(p.parts) > 1 and p.parts[0] == "models" else base / p
        if os.path.exists(inside):  # False, not OSError, for a name too long to exist
            return inside
        if not os.path.lexists(config.REPO_ROOT / p):  # in neither: said missing where its own folder keeps it
            return inside
    return config.REPO_ROOT / p


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


def stored_path(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> str:
    """How the manifest in ``folder`` names a model file: ``models/...`` for one in that folder
    (read as "this manifest's folder", so the folder can be copied or moved with its models; an
    absolute path pointed a copy at the original's files, and a moved folder at nothing), else
    relative to the repository, or absolute."""
    resolved = Path(path).resolve()
    try:
        inside = resolved.relative_to(Path(folder).resolve())
    except ValueError:
        stored = relative_to_repo(resolved)
        # the repository's models/ while the manifest is elsewhere (FER_MODELS_DIR): "models/..." would
        # read as the manifest's own folder, and the entry broke when that folder was copied or moved
        return str(resolved) if Path(stored).parts[:1] == ("models",) else stored
    return f"models/{inside.as_posix()}"


def relative_to_repo(path: str | os.PathLike[str]) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(config.REPO_ROOT))
    except ValueError:
        return str(p)
