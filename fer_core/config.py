"""Where things live: the repository, bundled models, derived data, the cache and the datasets.

Every location is read when it is asked for, not when this module is imported, so a user (or a
test) can point the workbench elsewhere with an environment variable at any time:
``FER_MODELS_DIR``, ``FER_CACHE_DIR``, ``FER_DATA_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: ``taskset``, a cluster job's allocation), not
    the machine's: two workers on a job given one core shared it, slower than one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def models_dir() -> Path:
    """Folder holding ``manifest.json`` and the model files: $FER_MODELS_DIR, else ``models/``."""
    return Path(os.environ.get("FER_MODELS_DIR") or REPO_ROOT / "models").expanduser()


def models_dir_unusable() -> str:
    """Why $FER_MODELS_DIR holds no models ("" when it is unset or a folder): said where a listing
    was empty without a word, as if the folder were merely new."""
    env = os.environ.get("FER_MODELS_DIR")
    if not env or Path(env).expanduser().is_dir():
        return ""
    return f"FER_MODELS_DIR={env} " + ("is not a folder" if os.path.lexists(Path(env).expanduser())
                                       else "does not exist (a training with --name creates it)")


def data_dir() -> Path:
    """The derived tables this project ships (``data/``)."""
    return REPO_ROOT / "data"


def cache_dir() -> Path:
    """Measurement cache: $FER_CACHE_DIR, else ``.cache/``."""
    return Path(os.environ.get("FER_CACHE_DIR") or REPO_ROOT / ".cache").expanduser()


def datasets_dir() -> Path:
    """Root holding ``fer2013/`` and ``seed-openface-au/``: $FER_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("FER_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "datasets"


def fer_split_dir(split: str) -> Path:
    """A FER2013 split folder in the Kaggle layout, e.g. ``fer_split_dir("val")``."""
    return fer_root() / split


def fer_root() -> Path:
    """Where the FER2013 splits are looked for (``datasets/fer2013``)."""
    return datasets_dir() / "fer2013"


def fer_splits() -> list[str]:
    """The FER2013 splits present (folders under ``fer_root()``: "train", "val"), sorted; none without it."""
    root = fer_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def openface_study_table() -> Path:
    return datasets_dir() / "seed-openface-au" / "emotion.csv"
