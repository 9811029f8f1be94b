"""Shared fixtures: real faces (scikit-image's astronaut), FER2013 samples from ../shared."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before numpy is imported: its BLAS reads the thread count once, when it loads (``make test`` sets the
# same; a plain ``pytest`` ran numpy on every core, with other rounding than the suite's).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from fer_core.config import fer_split_dir, openface_study_table
from fer_core.emotions import SIX_EMOTIONS

# This run's measurement cache (and the dashboard's Ray parts): a folder of its own, removed when the
# run ends. The checkout's .cache/ held what earlier runs (and other runs going on in the same
# checkout) had measured, so a test could be served another run's measurements; set here, before the
# test modules are imported, so the environments they build for the CLI carry it too.
_RUN_CACHE = tempfile.TemporaryDirectory(prefix="fer-test-cache-", ignore_cleanup_errors=True)
os.environ["FER_CACHE_DIR"] = _RUN_CACHE.name


def _scan_installed_components_once() -> None:
    """Each new AppTest has Streamlit read the metadata of every installed package, looking for
    custom components (0.7 s here; a run makes hundreds of AppTests); the installed packages do
    not change during a run, so the first scan's answer serves them all."""
    import functools

    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # a Streamlit without custom components v2: nothing scanned, nothing to keep
        return
    manifest_scanner.scan_component_manifests = functools.cache(manifest_scanner.scan_component_manifests)


_scan_installed_components_once()

SHARED_REASON = "../shared datasets not present (set FER_DATA_DIR to run this test)"
BUNDLED_AU_MODEL = "au-logreg-fer2013"


@pytest.fixture(scope="session")
def bundled_models(tmp_path_factory) -> Path:
    """A models folder listing only the default bundled AU model: no CNN or Teachable entries, so
    dashboard tests start TensorFlow only where they add such a model themselves."""
    from fer_core.manifest import write_manifest
    from fer_core.predictors.registry import find_entry

    d = tmp_path_factory.mktemp("models")
    write_manifest([find_entry(BUNDLED_AU_MODEL)], d)
    return d


@pytest.fixture
def models_dir(bundled_models, tmp_path, monkeypatch) -> Path:
    """A private copy, so saving a model in a test never touches the repository's models/."""
    d = tmp_path / "models"
    shutil.copytree(bundled_models, d)
    monkeypatch.setenv("FER_MODELS_DIR", str(d))
    return d


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def group_photo(astronaut) -> np.ndarray:
    """A real group photo: the astronaut's face three times, at three sizes (one mirrored), pasted
    so that the largest face is in the middle: size order and left-to-right order differ."""
    from PIL import Image, ImageOps

    face = Image.fromarray(astronaut).crop((130, 10, 330, 230))
    canvas = Image.new("RGB", (900, 340), (200, 200, 200))
    for size, x, mirror in ((150, 20, False), (280, 250, True), (240, 610, False)):
        im = face.resize((size, round(size * 1.1)))
        canvas.paste(ImageOps.mirror(im) if mirror else im, (x, 20))
    return np.asarray(canvas)


@pytest.fixture(scope="session")
def astronaut_jpeg(tmp_path_factory, astronaut) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("faces") / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=92)
    return path


@pytest.fixture(scope="session")
def analyzer():
    from fer_core.measure.landmarker import FaceAnalyzer

    with FaceAnalyzer() as fa:
        yield fa


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(SHARED_REASON)
    return path


@pytest.fixture(scope="session")
def fer_val() -> Path:
    return _require(fer_split_dir("val"))


@pytest.fixture(scope="session")
def fer_train() -> Path:
    return _require(fer_split_dir("train"))


@pytest.fixture(scope="session")
def study_table() -> Path:
    return _require(openface_study_table())


@pytest.fixture(scope="session")
def fer_sample(tmp_path_factory, fer_val) -> Path:
    """4 FER2013 val images per emotion (six emotions) in the Kaggle layout."""
    return copy_fer_sample(fer_val, tmp_path_factory.mktemp("fer_sample"), per_class=4)


def copy_fer_sample(split: Path, root: Path, per_class: int, classes=SIX_EMOTIONS) -> Path:
    """The first ``per_class`` images of each emotion (the six by default) of a split, Kaggle layout."""
    for emotion in classes:
        (root / emotion).mkdir(parents=True)
        for src in sorted((split / emotion).glob("*.jpg"))[:per_class]:
            shutil.copy(src, root / emotion / src.name)
    return root


@pytest.fixture(autouse=True)
def no_training_left_over(monkeypatch):
    """Each test starts on a 'server' that has run no CNN training: the CNN page takes up the
    server's last one (after a reload), which must not be another test's."""
    from fer_core import training

    monkeypatch.setattr(training, "_active", {})


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """The files the page's download buttons serve, by file name (bytes, or the callable of a button
    that builds its file on click), caught where Streamlit hands them to its media file manager."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    served: dict = {}
    add, add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def record(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download and file_name:
            served[file_name] = path_or_data
        return add(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        served[file_name] = data_callable
        return add_deferred(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return served


SEVEN_CNN = "tiny-cnn-7"


@pytest.fixture(scope="session")
def tiny_seven_cnn(tmp_path_factory) -> Path:
    """A real Keras CNN of the seven emotions (tiny preset, untrained, seed 0) with its sidecar: what
    a seven-emotion model looks like to the dashboard, without the minutes of training."""
    pytest.importorskip("keras", reason="keras is not installed")
    import json

    from fer_core.emotions import SEVEN_EMOTIONS
    from fer_core.predictors.cnn import build_cnn

    path = tmp_path_factory.mktemp("cnn7") / "tiny_cnn_7.keras"
    build_cnn("tiny", len(SEVEN_EMOTIONS), seed=0).save(path)
    path.with_suffix(".meta.json").write_text(json.dumps({"kind": "cnn", "preset": "tiny",
                                                          "classes": list(SEVEN_EMOTIONS)}))
    return path


def seven_cnn_entry(path: Path, name: str = SEVEN_CNN):
    """The manifest entry of ``tiny_seven_cnn`` as train-cnn --holdout records one (its checksum filled)."""
    from fer_core.emotions import SEVEN_EMOTIONS
    from fer_core.manifest import Metrics, ModelEntry, sha256_file

    metrics = Metrics(accuracy=0.2, macro_f1=0.1, accuracy_ci95=(0.19, 0.21), n=3589,
                      selected_on="10% of train held out from fitting (2,871 images)",
                      evaluated_on="val (3,589 images, 7 emotions; not used for any choice)")
    return ModelEntry(name=name, kind="cnn", path=str(path), classes=SEVEN_EMOTIONS, metrics=metrics,
                      sha256=sha256_file(path))


@pytest.fixture
def recorded_downloads(monkeypatch) -> dict:
    """What the page hands to ``download_button``, by key (AppTest keeps no media files): in a
    column or container, and as ``st.download_button`` (bound to the main area when Streamlit was
    imported, so patching the class does not reach it)."""
    import streamlit
    from streamlit.delta_generator import DeltaGenerator

    seen: dict = {}
    original, original_main = DeltaGenerator.download_button, streamlit.download_button

    def record(self, label, data, *args, **kwargs):
        seen[kwargs.get("key")] = (label, kwargs.get("file_name"), data)
        return original(self, label, data, *args, **kwargs)

    def record_main(label, data, *args, **kwargs):
        seen[kwargs.get("key")] = (label, kwargs.get("file_name"), data)
        return original_main(label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", record)
    monkeypatch.setattr(streamlit, "download_button", record_main)
    return seen


@pytest.fixture
def six_images(tmp_path):
    """Six gray squares named by emotion (Compare's and the group tests' images; a lookup model
    answers by the gray value): 0, 1, 2 happy; 3, 4 sad; 5 angry; and an unreadable one."""
    from PIL import Image

    labels = ["happy", "happy", "happy", "sad", "sad", "angry"]
    for value, label in enumerate(labels):
        Image.new("L", (48, 48), value).save(tmp_path / f"{label}{value:03d}.png")
    (tmp_path / "sad999.png").write_bytes(b"broken")  # unreadable: reported, not compared
    return tmp_path
