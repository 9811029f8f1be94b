"""Where things live: the repository, bundled models, and the datasets (``FER_DATA_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("FER_MODELS_DIR", REPO_ROOT / "models"))
DATA_DIR = REPO_ROOT / "data"
CACHE_DIR = Path(os.environ.get("FER_CACHE_DIR", REPO_ROOT / ".cache"))


def datasets_dir() -> Path:
    """Root holding ``fer2013/`` and ``seed-openface-au/``: $FER_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("FER_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "datasets"


def fer_split_dir(split: str) -> Path:
    """A FER2013 split folder in the Kaggle layout, e.g. ``fer_split_dir("val")``."""
    return datasets_dir() / "fer2013" / split


def openface_study_table() -> Path:
    return datasets_dir() / "seed-openface-au" / "emotion.csv"
