"""models/manifest.json: the list of models every part of the workbench reads.

An entry names a model file, its kind (see ``predictors.registry``), the emotions it predicts,
how good it is (``Metrics``: one vocabulary for every kind, saying what it was measured on),
the command that made it and the file's SHA-256. Loading a model goes through the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from . import config, fileio
from .errors import FerError, ModelFileError

MANIFEST = "manifest.json"
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

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != "":
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> "Metrics":
        d = dict(d or {})
        evaluated_on = d.get("evaluated_on", "")
        for prefix, meaning in _LEGACY_METRICS.items():
            if f"{prefix}_accuracy" in d or f"{prefix}_macro_f1" in d:
                d.setdefault("accuracy", d.get(f"{prefix}_accuracy"))
                d.setdefault("macro_f1", d.get(f"{prefix}_macro_f1"))
                evaluated_on = evaluated_on or meaning
        ci = d.get("accuracy_ci95")

        def number(v):
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        return cls(accuracy=number(d.get("accuracy")), macro_f1=number(d.get("macro_f1")),
                   accuracy_ci95=(float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None,
                   evaluated_on=str(evaluated_on or ""),
                   n=int(d["n"]) if isinstance(d.get("n"), int) else None)

    @classmethod
    def from_report(cls, report, evaluated_on: str) -> "Metrics":
        """From an ``EvaluationReport``."""
        return cls(accuracy=report.accuracy, macro_f1=report.macro_f1,
                   accuracy_ci95=tuple(report.accuracy_ci95), evaluated_on=evaluated_on, n=report.n)


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

    @property
    def file(self) -> Path:
        return resolve_path(self.path)

    @property
    def origin_label(self) -> str:
        """bundled / trained in the dashboard / imported, for model lists."""
        if self.origin == "dashboard":
            return "trained in the dashboard"
        if self.origin == "imported" or self.kind == "teachable":
            return "imported"
        return self.origin or "bundled"

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
    def from_dict(cls, d: dict, source: str = MANIFEST) -> "ModelEntry":
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) and d.get(k) for k in ("name", "kind", "path")):
            raise ModelFileError(f"{source}: an entry lacks name, kind or path; restore it with git checkout")
        return cls(name=d["name"], kind=d["kind"], path=d["path"], classes=tuple(d.get("classes") or ()),
                   metrics=Metrics.from_dict(d.get("metrics")), command=d.get("command"),
                   origin=d.get("origin"), description=d.get("description"), mapping=d.get("mapping"),
                   sha256=d.get("sha256"), extra={k: v for k, v in d.items() if k not in _KNOWN})

    def verify_checksum(self) -> None:
        """Refuse a registered model whose file changed since it was registered."""
        path = self.file
        if not path.exists():
            raise ModelFileError(f"{path}: model file of {self.name!r} is missing; restore it or retrain")
        if self.sha256 and sha256_file(path) != self.sha256:
            raise ModelFileError(f"{path}: checksum does not match models/manifest.json; restore it or retrain")


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


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(models_dir: Path | None = None) -> Path:
    return Path(models_dir or config.models_dir()) / MANIFEST


def read_manifest(models_dir: Path | None = None) -> list[ModelEntry]:
    path = manifest_path(models_dir)
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: manifest is not valid JSON; restore it with git checkout") from None
    if not isinstance(entries, list):
        raise ModelFileError(f"{path}: manifest must be a JSON list of model entries")
    return [ModelEntry.from_dict(e, str(path)) for e in entries]


def write_manifest(entries: Sequence[ModelEntry], models_dir: Path | None = None) -> None:
    """Write the manifest whole or not at all (``fileio``): a full disk never leaves half a list."""
    fileio.atomic_write_text(manifest_path(models_dir), json.dumps([e.to_dict() for e in entries], indent=2) + "\n")


def register(entry: ModelEntry, models_dir: Path | None = None) -> ModelEntry:
    """Add or replace (by name, in its place) an entry, filling its sha256 from the file."""
    entry.sha256 = sha256_file(entry.file)
    entries = read_manifest(models_dir)
    names = [e.name for e in entries]
    if entry.name in names:
        entries[names.index(entry.name)] = entry
    else:
        entries.append(entry)
    write_manifest(entries, models_dir)
    return entry


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Manifest paths are relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else config.REPO_ROOT / p


def relative_to_repo(path: str | os.PathLike[str]) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(config.REPO_ROOT))
    except ValueError:
        return str(p)
