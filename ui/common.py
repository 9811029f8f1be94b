"""Streamlit-specific code every page shares: cached loaders, error display, saving models.

Why here and not in the pages: MediaPipe and models must load once per process
(``st.cache_resource``), tables once per content (``st.cache_data``), and every page must turn a
failure into one readable line instead of a traceback. Functions without ``st`` calls (zip
unpacking, name validation, analysing one upload) are kept importable and testable on their own.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import config
from fer_core.errors import DatasetError, FerError
from fer_core.faces import face_crop  # noqa: F401  (pages import it from here)
from fer_core.images import unpack_image_zip
from fer_core.manifest import validate_model_name

log = logging.getLogger("fer_dashboard")

# Pages, in the order of the sidebar; used for links. Material icons ship with Streamlit (emoji
# need a colour-emoji font, which many Linux machines lack).
HOME_ICON = ":material/home:"
PAGES: tuple[tuple[str, str, str], ...] = (
    ("pages/1_Dataset_explorer.py", "Dataset explorer", ":material/bar_chart:"),
    ("pages/2_AU_model.py", "AU model", ":material/tune:"),
    ("pages/3_Try_it.py", "Try it", ":material/photo_camera:"),
    ("pages/4_CNN.py", "CNN", ":material/memory:"),
    ("pages/5_Teachable_Machine.py", "Teachable Machine", ":material/school:"),
    ("pages/6_Compare.py", "Compare", ":material/compare_arrows:"),
)
DATA_LAYOUT_HELP = (
    "Expected layout (Kaggle FER2013): `<folder>/<emotion>/*.jpg`, e.g. `fer2013/train/happy/img1.jpg`; "
    "emotion folders: angry, disgust, fear, happy, neutral, sad, surprise. Flat folders whose file "
    "names start with the emotion (`angry001.jpg`) work too."
)
# Images larger than this (longest side, pixels) are scaled down before analysis: detection on a
# 12-megapixel photo takes seconds and gains nothing for faces that fill a fair part of it.
MAX_ANALYSIS_SIDE = 1600
IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff"]


# -- page frame and errors ---------------------------------------------------------------------
def page_setup(title: str, icon: str) -> None:
    """Same page config everywhere (wide layout: heatmaps need the room)."""
    st.set_page_config(page_title=f"{title} · FER workbench", page_icon=icon, layout="wide")


def one_line(exc: BaseException | str) -> str:
    """A message on one line, as ``FerError`` promises; other exceptions get their type name."""
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, FerError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "…"


def show_error(exc: BaseException | str, prefix: str | None = None, warning: bool = False) -> None:
    """Show a failure as one readable line (``st.error`` or ``st.warning``), never a traceback."""
    text = one_line(exc)
    if prefix and not text.startswith(prefix):
        text = f"{prefix}: {text}"
    (st.warning if warning else st.error)(text, icon=":material/warning:" if warning else ":material/error:")


def run_page(body: Callable[[], None]) -> None:
    """Run a page body so that nothing unexpected reaches the browser as a traceback.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, page switches) raises
    ``BaseException`` subclasses and passes through untouched.
    """
    try:
        body()
    except FerError as exc:
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a UI
        log.exception("unexpected error in page")
        show_error(f"Unexpected error ({one_line(exc)}). The details are in the server log; "
                   "try again or report it with the input that caused it.")


# -- MediaPipe, shared by every session -------------------------------------------------------
@dataclass
class AnalyzerHandle:
    """The process-wide FaceAnalyzer and the lock that serialises calls to it (MediaPipe graphs
    are not safe to call from several script threads at once)."""

    analyzer: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


def _close_handle(handle: AnalyzerHandle) -> None:
    with handle.lock:
        handle.analyzer.close()


@st.cache_resource(show_spinner="Loading the face landmarker (once per server)…", on_release=_close_handle)
def face_analyzer() -> AnalyzerHandle:
    from fer_core.faces import FaceAnalyzer, close_at_exit

    return AnalyzerHandle(close_at_exit(FaceAnalyzer()))  # MediaPipe's finalizer raises at exit


# -- models ------------------------------------------------------------------------------------
def models_dir() -> Path:
    """Looked up at call time so tests (and users) can point the app at another folder."""
    return Path(config.MODELS_DIR)


def manifest_entries() -> list[dict]:
    from fer_core.manifest import read_manifest

    return read_manifest(models_dir())


def is_au_entry(entry: dict) -> bool:
    from fer_core.manifest import AU_KINDS

    return entry.get("kind") in AU_KINDS


def model_origin(entry: dict) -> str:
    """bundled / trained here / imported, for the model list on the home page."""
    origin = entry.get("origin")
    if origin == "dashboard":
        return "trained in the dashboard"
    if origin == "imported" or entry.get("kind") == "teachable":
        return "imported"
    return origin or "bundled"


def headline_metrics(entry: dict) -> dict[str, float | None]:
    """Accuracy and macro-F1 of an entry, whatever the trainer called them."""
    m = entry.get("metrics") or {}

    def pick(*names: str) -> float | None:
        for name in names:
            value = m.get(name)
            if isinstance(value, (int, float)):
                return float(value)
        return None

    return {"accuracy": pick("holdout_accuracy", "accuracy", "test_accuracy", "val_accuracy"),
            "macro_f1": pick("holdout_macro_f1", "macro_f1", "test_macro_f1", "val_macro_f1")}


@st.cache_resource(show_spinner="Loading the AU model…", max_entries=16)
def _au_model_from_file(path: str, stamp: str):
    from fer_core.au_model import AUModel

    return AUModel.load(path)


def load_au_model(entry: dict):
    """The AUModel of a manifest entry, checksum-verified, loaded once per file version."""
    from fer_core.manifest import resolve_path, verify_checksum

    verify_checksum(entry)
    path = resolve_path(entry["path"])
    stamp = entry.get("sha256") or str(path.stat().st_mtime_ns)
    return _au_model_from_file(str(path), stamp)


@st.cache_resource(show_spinner="Loading the model (the first CNN or Teachable Machine model starts "
                                "TensorFlow: ~15 s)…", max_entries=8)
def _predictor_from_entry(entry_json: str):
    from fer_core.manifest import load_predictor

    return load_predictor(json.loads(entry_json))


def load_other_predictor(entry: dict):
    """A CNN / Teachable Machine predictor, loaded lazily on first use and kept for the process.
    TensorFlow is imported here and nowhere else in the dashboard."""
    return _predictor_from_entry(json.dumps(entry, sort_keys=True))


def save_au_model(model, name: str, description: str) -> dict:
    """Write ``models/<name>.json`` and register it, so every page lists it from now on."""
    from fer_core.manifest import register_model, relative_to_repo

    name = validate_model_name(name, manifest_entries())
    path = models_dir() / f"{name}.json"
    if path.exists():
        raise FerError(f"{path.name} already exists in {models_dir()}; choose another name")
    model.info.setdefault("command", f"dashboard: AU model page ({description})")
    model.save(path)
    holdout = model.info.get("metrics", {}).get("holdout", {})
    try:
        return register_model({
            "name": name, "kind": model.kind, "path": relative_to_repo(path), "classes": list(model.classes),
            "metrics": {"holdout_accuracy": holdout.get("accuracy"), "holdout_macro_f1": holdout.get("macro_f1")},
            "command": model.info["command"], "origin": "dashboard", "description": description,
        }, models_dir())
    except (OSError, ValueError) as exc:
        path.unlink(missing_ok=True)
        raise FerError(f"could not register {name} in the manifest ({one_line(exc)})") from None


# -- tables and image folders ------------------------------------------------------------------
def derived_tables() -> dict[str, Path]:
    """The AU tables the project ships in data/ (no images needed), by display name."""
    return {p.name: p for p in sorted(config.DATA_DIR.glob("*_au.csv*"))}


@st.cache_data(show_spinner="Reading the AU table…", max_entries=8)
def au_table_from_path(path: str, stamp: float) -> pd.DataFrame:
    from fer_core.openface import read_au_table

    return read_au_table(path)


def load_au_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; pick an existing AU table")
    return au_table_from_path(str(path), path.stat().st_mtime)


@st.cache_data(show_spinner="Reading the uploaded table…", max_entries=4)
def au_table_from_bytes(data: bytes, name: str) -> pd.DataFrame:
    from fer_core.openface import read_au_table

    buf = io.BytesIO(data)
    buf.name = name
    return read_au_table(buf)


@st.cache_data(show_spinner="Listing images…", ttl=120, max_entries=8)
def dataset_items(root: str, classes: tuple[str, ...] | None = None):
    from fer_core.images import list_images

    items = list_images(root, classes)
    if not items:
        raise DatasetError(f"{root}: no images found. {DATA_LAYOUT_HELP}")
    return items


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str, side: int = 96) -> np.ndarray:
    """An image scaled so its longest side is ``side`` (48 px FER crops are enlarged, crisply)."""
    from PIL import Image

    from fer_core.images import load_image

    rgb = load_image(path)
    im = Image.fromarray(rgb)
    scale = side / max(im.size)
    method = Image.NEAREST if scale > 1 else Image.LANCZOS
    return np.asarray(im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), method))


@dataclass
class UnpackedZip:
    tmp: tempfile.TemporaryDirectory
    root: Path


def _cleanup_zip(value: UnpackedZip) -> None:
    value.tmp.cleanup()


@st.cache_resource(show_spinner="Unpacking the zip into a temporary folder…", max_entries=2,
                   on_release=_cleanup_zip)
def unpacked_zip(digest: str, _data: bytes) -> UnpackedZip:
    """The uploaded zip unpacked once into a temporary folder (removed when evicted)."""
    tmp = tempfile.TemporaryDirectory(prefix="fer_zip_")
    try:
        return UnpackedZip(tmp, unpack_image_zip(_data, Path(tmp.name)))
    except BaseException:
        tmp.cleanup()
        raise


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# -- one uploaded image ------------------------------------------------------------------------
def analyze_upload(data: bytes, name: str, model, handle: AnalyzerHandle) -> dict:
    """Everything the Try-it page shows for one upload, as plain data kept in session state.

    Returns ``{"name", "image", "faces", "error", "seconds"}``; ``error`` is the one-line reason
    the image could not be used (corrupt file, no face) and then ``faces`` is empty.
    """
    from PIL import Image

    from fer_core.analysis import analyze_image
    from fer_core.images import load_image

    start = time.perf_counter()
    out: dict = {"name": name, "image": None, "faces": [], "error": None, "scaled": False, "seconds": 0.0}
    try:
        rgb = load_image(data, name=name)
    except FerError as exc:
        out["error"] = one_line(exc)
        return out
    if max(rgb.shape[:2]) > MAX_ANALYSIS_SIDE:
        im = Image.fromarray(rgb)
        im.thumbnail((MAX_ANALYSIS_SIDE, MAX_ANALYSIS_SIDE), Image.LANCZOS)
        rgb, out["scaled"] = np.asarray(im), True
    out["image"] = rgb
    with handle.lock:
        faces = analyze_image(rgb, model, handle.analyzer)
    if not faces:
        out["error"] = (f"{name}: no face found; use a photo where the face is frontal, well lit "
                        "and at least ~48 pixels wide")
    out["faces"] = faces
    out["seconds"] = time.perf_counter() - start
    return out


def other_model_probabilities(entry: dict, rgb: np.ndarray) -> dict[str, float] | str:
    """Probabilities of a CNN / Teachable Machine model for one image, or the one-line reason."""
    try:
        predictor = load_other_predictor(entry)
        row = np.asarray(predictor.predict_proba([rgb]), dtype=float)[0]
    except FerError as exc:
        return one_line(exc)
    except Exception as exc:  # noqa: BLE001 - a broken optional model must not break the page
        log.exception("model %s failed", entry.get("name"))
        return f"{entry.get('name')}: could not run ({one_line(exc)})"
    if np.isnan(row).any():
        return f"{entry.get('name')}: could not judge this image"
    return {c: float(p) for c, p in zip(predictor.classes, row)}


def env_summary() -> dict[str, str]:
    """Where the app reads from, for the home page."""
    return {
        "datasets": str(config.datasets_dir())
        + ("" if os.environ.get("FER_DATA_DIR") else "  (default; set FER_DATA_DIR to change)"),
        "models": str(models_dir()),
        "derived data": str(config.DATA_DIR),
    }


# -- AU extraction inside a page -----------------------------------------------------------------
def _extraction_lock() -> threading.Lock:
    """One per browser session: held while an extraction (or its cancelling) runs."""
    return st.session_state.setdefault("_extraction_lock", threading.Lock())


def wait_for_extraction(timeout: float = 30.0) -> None:
    """Let a cancelled extraction of this session hand over its rows before the page reads them.

    Streamlit stops the running script and starts the next run at once (fast reruns), so the
    old run may still be saving its partial table while the new one renders.
    """
    lock = _extraction_lock()
    if lock.acquire(timeout=timeout):
        lock.release()


@st.cache_data(ttl=30, show_spinner="Asking the Docker engine…")
def docker_status() -> tuple[bool, str]:
    """Whether OpenFace can run in Docker here, and if not, why and the command that fixes it."""
    from fer_core.openface import OpenFaceDocker

    return OpenFaceDocker().status()


def extract_with_cancel(items: list, label: str, keep: Callable[[pd.DataFrame, bool], None],
                        backend: str = "mediapipe") -> None:
    """Run an AU extractor on ``items`` with a progress bar; ``keep(table, cancelled)``
    receives the finished rows (it must not touch ``st`` - the run may be stopping).

    ``backend="openface-docker"`` runs OpenFace 2 in its container; a cancel there stops and
    removes the container (its ``finally``) and the partial OpenFace output is discarded.

    Cancel: a click on any widget (the page's Cancel button included) makes Streamlit stop this
    run at its next UI call, the progress update. That stop is caught there and turned into
    ``should_stop``, so ``extract_table`` returns the rows done so far (its cache keeps them too);
    they go to ``keep`` and the stop is re-raised so Streamlit carries on with the new run, which
    waits for this hand-over (``wait_for_extraction``). ``workers=1``: spawning processes from a
    Streamlit script thread is fragile.
    """
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

    from fer_core.extract import extract_table

    lock = _extraction_lock()
    bar = st.progress(0.0, text=f"{label}: starting the face landmarker…")
    state: dict[str, Any] = {"stop": None}

    def progress(done: int, total: int) -> None:
        if state["stop"] is not None:
            return
        try:
            bar.progress(done / max(total, 1), text=f"{label}: {done:,} / {total:,} images")
        except ScriptControlException as exc:  # rerun or stop requested by a click
            state["stop"] = exc

    if backend == "openface-docker":
        from fer_core.openface import OpenFaceDocker

        def docker_progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"{label} (OpenFace in Docker): {done:,} / {total:,} images")

        with lock:
            keep(OpenFaceDocker().extract(items, progress=docker_progress), False)
        bar.empty()
        return
    with lock:
        table = extract_table(items, workers=1, use_cache=True, progress=progress,
                              should_stop=lambda: state["stop"] is not None)
        keep(table, state["stop"] is not None)
    if state["stop"] is not None:
        raise state["stop"]
    bar.empty()
