"""models/manifest.json: the list of models every part of the workbench reads, and loading any
of them (AU model, CNN, Teachable Machine) behind the one ``Predictor`` interface."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .config import MODELS_DIR, REPO_ROOT
from .errors import FerError, ModelFileError

MANIFEST = "manifest.json"
AU_KINDS = ("au-logreg", "au-mlp")


MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,62}$")


def validate_model_name(name: str, existing: list[dict]) -> str:
    """A safe file stem that no manifest entry uses yet, or a FerError saying what to change."""
    name = (name or "").strip()
    if not name:
        raise FerError("give the model a name, e.g. au-logreg-mydata")
    if not MODEL_NAME_RE.fullmatch(name):
        raise FerError(f"model name {name!r} is not allowed: use 2-63 letters, digits, '-' or '_', "
                       "starting with a letter or digit")
    if any(e.get("name") == name for e in existing):
        raise FerError(f"a model named {name!r} already exists; choose another name")
    return name


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(models_dir: Path | None = None) -> Path:
    return Path(models_dir or MODELS_DIR) / MANIFEST


def read_manifest(models_dir: Path | None = None) -> list[dict]:
    path = manifest_path(models_dir)
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: manifest is not valid JSON; restore it with git checkout") from None
    if not isinstance(entries, list):
        raise ModelFileError(f"{path}: manifest must be a JSON list of model entries")
    return entries


def write_manifest(entries: list[dict], models_dir: Path | None = None) -> None:
    path = manifest_path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2) + "\n")
    tmp.replace(path)


def register_model(entry: dict, models_dir: Path | None = None) -> dict:
    """Add or replace (by name) an entry; fills sha256 from the file."""
    required = {"name", "kind", "path", "classes"}
    if not required <= entry.keys():
        raise ValueError(f"manifest entry needs {sorted(required)}")
    entry = dict(entry)
    entry["sha256"] = sha256_file(resolve_path(entry["path"]))
    entries = [e for e in read_manifest(models_dir) if e.get("name") != entry["name"]]
    entries.append(entry)
    write_manifest(entries, models_dir)
    return entry


def resolve_path(path: str) -> Path:
    """Manifest paths are relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def relative_to_repo(path: str | os.PathLike[str]) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def find_entry(ref: str, models_dir: Path | None = None) -> dict:
    """A model by manifest name, or an ad-hoc entry for a model file path."""
    for entry in read_manifest(models_dir):
        if entry.get("name") == ref:
            return entry
    path = Path(ref)
    if path.exists():
        return {"name": path.stem, "kind": kind_from_path(path), "path": str(path.resolve())}
    names = ", ".join(e.get("name", "?") for e in read_manifest(models_dir)) or "none"
    raise ModelFileError(f"model {ref!r} not found: give a file path or one of: {names}")


def kind_from_path(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(path.read_text()).get("kind", "au-logreg")
        except (OSError, json.JSONDecodeError, AttributeError):
            raise ModelFileError(f"{path}: not a JSON AU model; pick a .json file saved by this workbench") from None
    if suffix == ".keras":
        return "cnn"
    if suffix in (".h5", ".zip") or path.is_dir():
        return "teachable"
    raise ModelFileError(f"{path}: unknown model type; use .json (AU model), .keras (CNN) or a Teachable Machine .zip/.h5")


def verify_checksum(entry: dict) -> None:
    """Refuse a bundled model whose file changed since it was registered."""
    expected = entry.get("sha256")
    path = resolve_path(entry["path"])
    if not path.exists():
        raise ModelFileError(f"{path}: model file of {entry.get('name')!r} is missing; restore it or retrain")
    if expected and sha256_file(path) != expected:
        raise ModelFileError(f"{path}: checksum does not match models/manifest.json; restore it or retrain")


def load_predictor(entry: dict, analyzer=None):
    """A ``Predictor`` for a manifest entry. AU models need a FaceAnalyzer (MediaPipe)."""
    verify_checksum(entry)
    path = resolve_path(entry["path"])
    kind = entry.get("kind")
    name = entry.get("name", path.stem)
    if kind in AU_KINDS:
        from .analysis import AUPredictor
        from .au_model import AUModel

        return AUPredictor(AUModel.load(path), analyzer, name=name)
    if kind == "cnn":
        from .cnn import CNNPredictor

        return CNNPredictor(path, name=name)
    if kind == "teachable":
        from .teachable import load_teachable

        return load_teachable(path, name=name, mapping=entry.get("mapping"))
    raise ModelFileError(f"{entry.get('name')}: unknown model kind {kind!r}")
