"""TensorFlow Lite twins of our Keras networks (``fer_core.predictors.lite``): the bundled twins give
Keras's probabilities (and AUs) on real faces, a stale or changed twin falls back to Keras, the
prediction path never imports TensorFlow, and export-lite writes a twin that loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main as cli_main
from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import ModelFileError
from fer_core.predictors.au_bottleneck import AUBottleneckPredictor
from fer_core.predictors.cnn import CNNPredictor, build_cnn, metadata_path, read_cnn_metadata
from fer_core.predictors.lite import LITE_RECORD, lite_path, lite_record
from fer_core.predictors.registry import find_entry, needs_tensorflow

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def faces(astronaut, fer_root: Path | None, per_class: int = 4) -> list[np.ndarray]:
    """The astronaut's face and, where ../shared is present, FER2013 val faces of every emotion."""
    out = [astronaut[30:210, 150:330]]
    if fer_root is not None:
        for emotion in SIX_EMOTIONS:
            for path in sorted((fer_root / emotion).glob("*.jpg"))[:per_class]:
                out.append(np.asarray(Image.open(path).convert("RGB")))
    return out


@pytest.fixture(scope="module")
def real_faces(astronaut):
    from fer_core.config import fer_split_dir

    val = fer_split_dir("val")
    return faces(astronaut, val if val.exists() else None)


def test_bundled_cnn_twin_gives_keras_probabilities(real_faces):
    entry = find_entry("cnn-fer2013")
    lite = CNNPredictor(entry.file, runtime="auto")
    keras = CNNPredictor(entry.file, runtime="keras")
    assert lite.runtime == "litert" and keras.runtime == "keras"
    assert lite_record(lite.metadata)["keras_sha256"] == entry.sha256  # made from the registered file
    a, b = lite.predict_proba(real_faces), keras.predict_proba(real_faces)
    assert a.shape == (len(real_faces), 6)
    assert np.abs(a - b).max() < TOLERANCE
    assert (a.argmax(1) == b.argmax(1)).all()


def test_bundled_bottleneck_twin_gives_keras_aus_and_probabilities(real_faces):
    entry = find_entry("au-bottleneck-fer2013")
    lite = AUBottleneckPredictor(entry.file, runtime="auto")
    keras = AUBottleneckPredictor(entry.file, runtime="keras")
    assert lite.runtime == "litert" and keras.runtime == "keras"
    # The head the explanation reads is the network's own layer.
    np.testing.assert_array_equal(lite.head.weights[0], keras.head.weights[0])
    np.testing.assert_array_equal(lite.head.biases[0], keras.head.biases[0])
    au_lite, au_keras = lite.network_aus(real_faces), keras.network_aus(real_faces)
    assert au_lite.shape == (len(real_faces), 17)
    assert np.abs(au_lite - au_keras).max() < TOLERANCE
    assert np.abs(lite.predict_proba(real_faces) - keras.predict_proba(real_faces)).max() < TOLERANCE
    a, b = lite.explain(real_faces[0]), keras.explain(real_faces[0])
    assert a.emotion == b.emotion and [c.au for c in a.reasons] == [c.au for c in b.reasons]


def copy_model(stem: str, folder: Path) -> Path:
    for suffix in (".keras", ".meta.json", ".tflite"):
        shutil.copy(ROOT / "models" / f"{stem}{suffix}", folder / f"{stem}{suffix}")
    return folder / f"{stem}.keras"


def test_stale_changed_or_missing_twin_falls_back_to_keras(tmp_path, astronaut, caplog):
    path = copy_model("cnn_fer2013", tmp_path)
    face = [astronaut[30:210, 150:330]]
    assert CNNPredictor(path).runtime == "litert"
    meta = read_cnn_metadata(path)
    entry = SimpleNamespace(file=path, kind="cnn", sha256=None, extra={})
    assert not needs_tensorflow(entry)

    # Made from another version of the .keras file (e.g. retrained without export-lite): stale.
    stale = {**meta, LITE_RECORD: {**meta[LITE_RECORD], "keras_sha256": "0" * 64}}
    metadata_path(path).write_text(json.dumps(stale))
    predictor = CNNPredictor(path)
    assert predictor.runtime == "keras" and "another version" in caplog.text
    assert needs_tensorflow(entry)
    with pytest.raises(ModelFileError, match="no up-to-date TensorFlow Lite twin"):
        CNNPredictor(path, runtime="litert")
    np.testing.assert_allclose(predictor.predict_proba(face), CNNPredictor(path, runtime="keras").predict_proba(face))

    # The twin's bytes changed since they were recorded.
    metadata_path(path).write_text(json.dumps(meta))
    twin = lite_path(path)
    data = bytearray(twin.read_bytes())
    data[-1] ^= 1
    twin.write_bytes(bytes(data))
    assert CNNPredictor(path).runtime == "keras" and "changed since it was made" in caplog.text

    # No twin file, or no record at all.
    twin.unlink()
    assert CNNPredictor(path).runtime == "keras"
    metadata_path(path).write_text(json.dumps({k: v for k, v in meta.items() if k != LITE_RECORD}))
    assert CNNPredictor(path).runtime == "keras"


NO_TF_SCRIPT = """
import sys
import numpy as np
from skimage import data
from fer_core.pipeline import analyze_photo, probabilities_for
from fer_core.predictors.registry import load_predictor

photo = np.ascontiguousarray(data.astronaut())
result = analyze_photo(photo, "astronaut", load_predictor("au-logreg-fer2013"))
assert len(result.faces) == 1, result.error
cnn = load_predictor("cnn-fer2013")
bottleneck = load_predictor("au-bottleneck-fer2013")
probs = probabilities_for(cnn, result.faces[0].face)
assert max(probs, key=probs.get) == "happy", probs
assert bottleneck.explain(photo[30:210, 150:330]).emotion == "happy"
print(cnn.runtime, bottleneck.runtime, sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules))
"""


def test_try_it_path_never_imports_tensorflow():
    """A photo through the face pipeline, then the bundled CNN and AU bottleneck on its face (what
    Try it and Compare do), in a fresh interpreter: TensorFlow and Keras are never imported."""
    done = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "litert litert []"


def test_export_lite_writes_a_twin_that_loads(tmp_path, astronaut, capsys):
    """Any CNN with a sidecar (here an untrained tiny one with seven classes) gets a twin that
    gives its Keras probabilities; an AU model has none."""
    classes = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    path = tmp_path / "cnn_seven.keras"
    build_cnn("tiny", len(classes), seed=3).save(path)
    metadata_path(path).write_text(json.dumps({"format": "fer_core.cnn/1", "kind": "cnn", "classes": classes}))
    assert CNNPredictor(path).runtime == "keras"
    assert cli_main(["export-lite", "--model", str(path)]) == 0
    assert "cnn_seven.tflite" in capsys.readouterr().out
    record = lite_record(read_cnn_metadata(path))
    assert record["file"] == "cnn_seven.tflite" and lite_path(path).is_file()
    assert read_cnn_metadata(path)["classes"] == list(classes)  # the rest of the sidecar kept
    lite, keras = CNNPredictor(path), CNNPredictor(path, runtime="keras")
    assert lite.runtime == "litert" and lite.classes == classes
    face = [astronaut[30:210, 150:330], astronaut]
    assert np.abs(lite.predict_proba(face) - keras.predict_proba(face)).max() < TOLERANCE

    # Copied into a models folder (as the dashboard saves a training), the twin goes along.
    from fer_core.predictors.cnn import _save

    copy = tmp_path / "saved" / "mine.keras"
    written = _save(SimpleNamespace(path=path, metadata_path=metadata_path(path)), copy)
    assert lite_path(copy) in written and lite_record(read_cnn_metadata(copy))["file"] == "mine.tflite"
    assert CNNPredictor(copy).runtime == "litert"

    assert cli_main(["export-lite", "--model", "au-logreg-fer2013"]) == 2
    assert "no TensorFlow Lite twin" in capsys.readouterr().err


def test_resnet_preset_loads_safely_and_its_twin_agrees(tmp_path, astronaut):
    """The residual preset (Add layers) passes the model-file checks, loads in safe mode and
    gets a TensorFlow Lite twin that gives its Keras probabilities."""
    path = tmp_path / "deep.keras"
    build_cnn("resnet", 6, seed=4).save(path)
    metadata_path(path).write_text(json.dumps({"format": "fer_core.cnn/1", "kind": "cnn", "preset": "resnet",
                                               "classes": list(SIX_EMOTIONS)}))
    assert cli_main(["export-lite", "--model", str(path)]) == 0
    lite, keras = CNNPredictor(path), CNNPredictor(path, runtime="keras")
    assert lite.runtime == "litert" and keras.runtime == "keras"
    face = [astronaut[30:210, 150:330], astronaut]
    assert np.abs(lite.predict_proba(face) - keras.predict_proba(face)).max() < TOLERANCE


def test_a_damaged_twin_names_the_command_that_remakes_it_without_backticks():
    """The dashboard shows errors as text, where backticks around the command showed literally."""
    from fer_core.predictors.lite import LiteModel

    with pytest.raises(ModelFileError) as refused:
        LiteModel(b"not a TensorFlow Lite model" * 8, "x.tflite")
    message = str(refused.value)
    assert message.startswith("x.tflite: cannot load this TensorFlow Lite twin") and "\n" not in message
    assert "`" not in message
    assert message.endswith("remake it with: python -m fer_core export-lite --model <the .keras file>")
