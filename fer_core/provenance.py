"""What produced a result: the workbench's version and source commit, the libraries, the command
and each model file's checksum, so that a JSON result kept for a paper can be traced to what made
it. A model's name is not enough: ``train-au --name X --replace`` puts another file behind it.

No time stamp: two runs of one command on the same files give byte-identical JSON (a pipeline
compares them), and the file's own time says when it was written.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from . import config
from .errors import FerError

DISTRIBUTION = "fer-workbench"  # pyproject.toml's [project] name
# ai-edge-litert computes the bundled CNNs' answers (their .tflite twins); tensorflow trains them
VERSIONS_OF = ("numpy", "pandas", "scikit-learn", "interpret", "plotly", "mediapipe", "tensorflow", "ai-edge-litert",
               "streamlit")


def workbench_version() -> str:
    """The installed distribution's version, else the package's own ``__version__`` (a source tree
    run without ``pip install -e .``)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def installed_versions() -> dict[str, str]:
    """Python's version and those of the libraries a result depends on (the ones installed)."""
    versions = {"python": platform.python_version()}
    for package in VERSIONS_OF:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the checkout this code runs from, with ``+modified`` when tracked files
    differ from it; None outside a git checkout (an installed copy) or without git. A checkout
    another user owns (an admin's install on a cluster) is read too, where git refused it as
    "dubious ownership", and git's index is left as it was (no lock, no refresh written)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-c", f"safe.directory={config.REPO_ROOT}",
                               "-C", str(config.REPO_ROOT), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    if not (config.REPO_ROOT / ".git").exists():
        return None
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+modified" if changed else "")


def utc_now(pattern: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    """The time now in UTC as ``pattern`` writes it, or the time ``SOURCE_DATE_EPOCH`` names where it
    is set (the reproducible-builds convention): a model refitted the same way is then the same file,
    with the same SHA-256 as an archived one (a new time stamp alone gave it a new checksum)."""
    import datetime as _dt

    fixed = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if fixed.isdigit():
        return _dt.datetime.fromtimestamp(int(fixed), _dt.UTC).strftime(pattern)
    return _dt.datetime.now(_dt.UTC).strftime(pattern)


def fitted_by(libraries: Sequence[str]) -> dict:
    """What fitted or trained a model, for its file: the workbench's version, commit and code digest
    and the versions of ``libraries`` (with Python's), as a methods section names them."""
    versions = installed_versions()
    return {"workbench": workbench_version(), "commit": source_commit(), "code_sha256": code_digest(),
            "versions": {k: v for k, v in versions.items() if k == "python" or k in libraries}}


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the workbench's own code (every ``fer_core`` source file): a cached answer of a
    model was given by this code, whatever git says (an installed copy, a tree with edits)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance(command: str, models: Mapping[str, str | None] = (), test_set: Mapping | None = None,
               measured: bool = True, sidecars: Mapping[str, str] = ()) -> dict:
    """The ``provenance`` block of a JSON result: ``models`` maps each model's name to its file's
    SHA-256 (None for one that is no single file, such as a Teachable Machine folder); with
    ``test_set`` (``test_set_record``), the images scored (or the AU table) and, ``measured``, how
    their faces were measured."""
    out = {"workbench": workbench_version(), "commit": source_commit(), "code_sha256": code_digest(),
           "command": command, "cwd": os.getcwd(), "versions": installed_versions(), "models": dict(models),
           "sidecars": dict(sidecars)}
    if test_set is not None:
        out["test_set"] = dict(test_set)
        if measured:
            out["measurement"] = measurement_record()
    return out


def test_set_record(paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None) -> dict:
    """The images a result scored: how many, and one SHA-256 of each one's name (relative to
    ``root``) and bytes, in name order. A test set with one image swapped changed a result while its
    provenance stayed the same; ``draw-testset`` records the same digest in the set's testset.json."""
    from .images import relative_file

    named = sorted((str(relative_file(path, root)).replace(os.sep, "/"), path) for path in paths)
    digest = hashlib.sha256()
    for name, path in named:
        digest.update(f"{name}\0{file_sha256(path)}\n".encode("utf-8", "surrogateescape"))  # a name not UTF-8: its bytes
    return {"files": len(named), "sha256": digest.hexdigest()}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """``manifest.sha256_file`` for a record: "unreadable" where the file cannot be read (a record
    says what it could, it does not stop the result it describes)."""
    from .manifest import sha256_file

    try:
        return sha256_file(path)
    except (FerError, OSError):
        return "unreadable"


def measurement_record() -> dict:
    """How faces were measured: the measuring code's version with any settings moved from their
    defaults (image limits, a landmarker of one's own), and the face landmarker's SHA-256."""
    from .measure.extract import cache_version
    from .measure.landmarker import LANDMARKER_SHA256, MODEL_ENV

    own = os.environ.get(MODEL_ENV)
    return {"version": cache_version(), "landmarker_sha256": file_sha256(own) if own else LANDMARKER_SHA256}


def models_sha256(refs: Sequence[str]) -> dict[str, str | None]:
    """Each model's name, as it loads, and the SHA-256 of its file: the manifest's (checked against
    the file when the model loads) for a registered name, else the file's own; None for a folder (a
    Teachable Machine export) or a model that could not be found (said where it failed)."""
    from .manifest import sha256_file
    from .predictors.registry import find_entry

    found: dict[str, str | None] = {}
    for ref in refs:
        try:
            entry = find_entry(ref)
        except FerError:
            found[ref] = None
            continue
        path = Path(entry.file)
        found[entry.name] = entry.sha256 or (sha256_file(path) if path.is_file() else None)
    return found


def sidecar_sha256(model_file: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a network's sidecar (``<name>.meta.json``: its classes, test-time views, twin),
    which changes its answers while the model file's own checksum stays the same (``"tta"`` edited
    moved an accuracy from 0.595 to 0.571 under one provenance); None for a model without one."""
    path = Path(model_file)
    side = path.with_suffix(".meta.json")
    return file_sha256(side) if path.suffix.lower() == ".keras" and side.is_file() else None


def models_sidecars(refs: Sequence[str]) -> dict[str, str]:
    """``sidecar_sha256`` of each model in ``refs`` that has a sidecar, by the name it loads as, and
    of an ensemble's members (whose sidecars decide its answers too)."""
    from .manifest import read_manifest
    from .predictors.ensemble import KIND as ENSEMBLE_KIND
    from .predictors.ensemble import member_entries
    from .predictors.registry import find_entry

    found: dict[str, str] = {}
    for ref in refs:
        try:
            entry = find_entry(ref)
            members = member_entries(entry, read_manifest()) if entry.kind == ENSEMBLE_KIND else []
        except FerError:
            continue
        for model in (entry, *members):
            digest = sidecar_sha256(model.file)
            if digest:
                found[model.name] = digest
    return found


TEST_SET_RECORD = "testset.json"  # beside a drawn test set's emotion folders (no image: never listed as one)


def test_set_file_record(chosen: Sequence, out: str | os.PathLike[str], *, source: str | os.PathLike[str],
                         per_class: int, classes: Sequence[str], seed: int, command: str,
                         unlike: Sequence[str | os.PathLike[str]] = ()) -> dict:
    """What ``draw-testset`` drew, for a methods section: from which folder, how (seed, numbers,
    emotions, the workbench and its commit, as a seed draws other files in another version) and
    each file with its SHA-256; ``sha256`` is ``test_set_record``'s digest, which a comparison's
    provenance gives while the folder is unchanged."""
    from .images import relative_file

    files = sorted((relative_file(it.path, out), it.label, file_sha256(it.path)) for it in chosen)
    return {"source": str(Path(source).resolve()), "per_class": per_class, "classes": list(classes), "seed": seed,
            **({"unlike": [str(Path(f).resolve()) for f in unlike]} if unlike else {}),
            "workbench": workbench_version(), "commit": source_commit(), "command": command,
            **test_set_record([it.path for it in chosen], out),
            "images": [{"file": f, "label": label, "sha256": sha} for f, label, sha in files]}
