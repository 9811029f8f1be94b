"""Teachable Machine import: a realistic tf.keras 2.x export loads safely and predicts like the original."""

from __future__ import annotations

import json
import shutil
import zipfile

import h5py
import numpy as np
import pytest

from fer_core.errors import FerError, ModelFileError
from fer_core.predictors.teachable import (
    TeachablePredictor,
    load_teachable,
    map_labels,
    parse_labels,
    sanitize_model_config,
)
from fer_core.predictors.teachable_example import face_like_images, write_teachable_export

LABELS = ("Anger", "Happiness", "sadness")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_teachable_export(tmp_path_factory.mktemp("tm") / "export", LABELS)


@pytest.fixture(scope="module")
def images():
    return face_like_images(6)


@pytest.fixture(scope="module")
def predictor(export):
    return load_teachable(export.folder)


def _original_proba(export, predictor, images):
    return np.asarray(export.model(predictor.preprocess(images), training=False))


def test_fixture_is_a_keras2_file_that_plain_keras_refuses(export):
    import keras

    with h5py.File(export.model_path) as f:
        assert f.attrs["keras_version"] == "2.4.0"
        config = json.loads(f.attrs["model_config"])
    assert '"groups": 1' in json.dumps(config)
    with pytest.raises(Exception, match="groups"):
        keras.models.load_model(export.model_path, compile=False)


def test_loads_with_same_predictions_as_the_original(export, predictor, images):
    assert predictor.kind == "teachable"
    assert predictor.labels == LABELS
    assert predictor.classes == ("angry", "happy", "sad")
    assert predictor.input_size == (224, 224)
    raw = predictor.raw_proba(images)
    np.testing.assert_allclose(raw, _original_proba(export, predictor, images), atol=1e-5)
    assert raw.std(axis=0).max() > 0.01  # images give different answers: weights really loaded
    proba = predictor.predict_proba(images)
    assert proba.shape == (len(images), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, raw, atol=1e-6)  # every label mapped, canonical order = label order
    assert predictor.predict_proba([]).shape == (0, 3)


def test_preprocessing_is_teachable_machines(predictor):
    x = predictor.preprocess([np.full((300, 200, 3), 255, np.uint8), np.zeros((10, 10), np.uint8)])
    assert x.shape == (2, 224, 224, 3) and x.dtype == np.float32
    assert x[0].min() == pytest.approx(1.0) and x[1].max() == pytest.approx(-1.0)


def test_zip_file_and_uploaded_bytes(export, predictor, images):
    zipped = export.zip()
    expected = predictor.raw_proba(images)
    from_zip = load_teachable(zipped)
    np.testing.assert_allclose(from_zip.raw_proba(images), expected, atol=1e-6)
    assert from_zip.name == "teachable:converted_keras"
    from_bytes = load_teachable(zipped.read_bytes())
    assert from_bytes.classes == predictor.classes
    from_h5 = load_teachable(export.model_path)  # labels.txt found beside it
    np.testing.assert_allclose(from_h5.raw_proba(images[:2]), expected[:2], atol=1e-6)


def test_unmapped_classes_are_dropped_and_renormalised(predictor, images):
    raw = predictor.raw_proba(images)
    tm = TeachablePredictor(predictor.model, ["happy", "background", "Sad"])
    assert tm.classes == ("happy", "sad") and tm.unmapped == ("background",)
    expected = raw[:, [0, 2]] / raw[:, [0, 2]].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(tm.predict_proba(images), expected, atol=1e-6)


def test_labels_of_one_emotion_are_merged(predictor, images):
    raw = predictor.raw_proba(images)
    tm = TeachablePredictor(predictor.model, ["sad", "happy", "Happiness"])
    assert tm.classes == ("happy", "sad")
    np.testing.assert_allclose(tm.predict_proba(images), np.c_[raw[:, 1] + raw[:, 2], raw[:, 0]], atol=1e-6)


def test_explicit_mapping_override(predictor, images):
    tm = TeachablePredictor(predictor.model, ["Class 1", "Class 2", "Anger"],
                            mapping={"class 1": "Surprised", "Class 2": None})
    assert tm.mapping.as_dict() == {"Class 1": "surprise", "Class 2": None, "Anger": "angry"}
    assert tm.classes == ("angry", "surprise")
    with pytest.raises(ModelFileError, match="none of the classes"):
        TeachablePredictor(predictor.model, ["Class 1", "Class 2", "Class 3"])


def test_map_labels_aliases_and_bad_overrides():
    mapping = map_labels(["ANGER", " happiness ", "Sadness", "Class 4"])
    assert mapping.emotions == ("angry", "happy", "sad", None)
    assert mapping.unmapped == ("Class 4",)
    # classes named for the picture, as Teachable Machine users name them (they all started on "ignore")
    named = map_labels(["Happy face", "Sad faces", "Surprised expression", "Neutral face", "Bored face", "Face"])
    assert named.emotions == ("happy", "sad", "surprise", "neutral", None, None)
    # a class ignored by a saved mapping is no longer said to need mapping (evaluate said so)
    assert map_labels(["angry", "happy", "Background"]).unmapped_unasked == ("Background",)
    saved = map_labels(["angry", "happy", "Background"], {"Background": None})
    assert saved.unmapped == ("Background",) and saved.unmapped_unasked == ()
    assert map_labels(["Class 4"], {"Class 4": "fear"}).classes == ("fear",)
    with pytest.raises(FerError, match="unknown emotion"):
        map_labels(["Class 4"], {"Class 4": "bored"})
    with pytest.raises(FerError, match="does not have"):
        map_labels(["angry"], {"happy": "happy"})


def test_parse_labels():
    assert parse_labels("\ufeff0 angry\n1 Very Happy\n\n2 sad\n") == ("angry", "Very Happy", "sad")
    assert parse_labels("1 happy\n0 angry\n") == ("angry", "happy")
    assert parse_labels("angry\nhappy\n") == ("angry", "happy")
    with pytest.raises(ModelFileError, match="0..1"):
        parse_labels("0 angry\n2 happy\n")
    with pytest.raises(ModelFileError, match="no class names"):
        parse_labels("\n \n")


def test_label_count_must_match_model_outputs(export):
    with pytest.raises(ModelFileError, match="3 outputs but labels.txt names 2 classes"):
        load_teachable(export.folder, labels=["angry", "happy"])


def test_missing_labels(export, tmp_path):
    shutil.copy(export.model_path, tmp_path / "keras_model.h5")
    with pytest.raises(ModelFileError, match="missing labels.txt"):
        load_teachable(tmp_path)
    lonely = export.zip("model_only.zip", members=["keras_model.h5"])
    with pytest.raises(ModelFileError, match="missing labels.txt"):
        load_teachable(lonely)
    with pytest.raises(ModelFileError, match="labels file not found"):
        load_teachable(tmp_path, labels=tmp_path / "nope.txt")


def test_wrong_files(export, tmp_path):
    with pytest.raises(ModelFileError, match="file not found"):
        load_teachable(tmp_path / "missing.zip")
    with pytest.raises(ModelFileError, match="no keras_model.h5 in this folder"):
        load_teachable(tmp_path)
    text = tmp_path / "keras_model.h5"
    text.write_text("this is not a model\n")
    (tmp_path / "labels.txt").write_text("0 angry\n")
    with pytest.raises(ModelFileError, match="not an HDF5 Keras model file"):
        load_teachable(text)
    labels_only = export.zip("labels_only.zip", members=["labels.txt"])
    with pytest.raises(ModelFileError, match="labels_only.zip: no keras_model.h5, model.json or .tflite inside"):
        load_teachable(labels_only)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(export.model_path.read_bytes()[:3000])
    with pytest.raises(ModelFileError, match="unreadable HDF5|no complete Keras model"):
        load_teachable(truncated, labels=["a", "b", "c"])
    weights_only = tmp_path / "weights_only.h5"
    with h5py.File(weights_only, "w") as f:
        f.create_group("model_weights")
    with pytest.raises(ModelFileError, match="no complete Keras model"):
        load_teachable(weights_only, labels=["angry"])
    with pytest.raises(ModelFileError) as info:
        load_teachable(text)
    assert "\n" not in str(info.value) and str(text) in str(info.value)


def _with_lambda(config: dict) -> dict:
    """Insert a Lambda layer (marshalled code, as Keras 2 wrote it) into the dense head."""
    head = config["config"]["layers"][1]["config"]["layers"]
    head.insert(1, {"class_name": "Lambda", "config": {
        "name": "evil", "trainable": True, "dtype": "float32",
        "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda", "module": "__main__",
        "output_shape": None, "output_shape_type": "raw", "output_shape_module": None, "arguments": {}}})
    return config


def test_lambda_layer_is_refused(tmp_path):
    bad = write_teachable_export(tmp_path, ["angry", "happy"], config_hook=_with_lambda)
    with pytest.raises(ModelFileError, match="Lambda layer .*not loaded for safety"):
        load_teachable(bad.folder)


def test_sanitize_model_config():
    layer = {"class_name": "DepthwiseConv2D", "config": {"name": "dw", "groups": 1, "kernel_size": [3, 3],
                                                          "dtype": {"class_name": "Policy", "config": {"name": "float32"}}}}
    dense = {"class_name": "Dense", "config": {"name": "d", "units": 2, "batch_input_shape": [None, 8]}}
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [dense, layer]}}
    clean = sanitize_model_config(config)
    assert "groups" not in clean["config"]["layers"][1]["config"]
    assert clean["config"]["layers"][1]["config"]["dtype"] == "float32"
    assert clean["config"]["build_input_shape"] == [None, 8]
    assert "batch_input_shape" not in clean["config"]["layers"][0]["config"]
    assert config["config"]["layers"][1]["config"]["groups"] == 1  # input left untouched
    custom = {"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "MyLayer", "config": {}}]}}
    with pytest.raises(ModelFileError, match="unsupported layer or object 'MyLayer'"):
        sanitize_model_config(custom)
    foreign = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Dense", "module": "os", "config": {}}]}}
    with pytest.raises(ModelFileError, match="module 'os'"):
        sanitize_model_config(foreign)
    single = {"class_name": "Model", "config": {"name": "m", "layers": [],
                                                "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}
    assert sanitize_model_config(single)["config"]["input_layers"] == ["in", 0, 0]
    assert sanitize_model_config(single)["config"]["output_layers"] == ["out", 0, 0]
    with pytest.raises(ModelFileError, match="no Keras model architecture"):
        sanitize_model_config({"class_name": "Dense", "config": {}})
    bare = {"class_name": "Sequential", "config": [dense]}  # tfjs-layers 1.x / Keras <= 2.1: the layers alone
    assert sanitize_model_config(bare)["config"] == {"name": None, "layers": [
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}], "build_input_shape": [None, 8]}


def test_keras3_written_h5_loads_too(tmp_path, images):
    """An H5 saved by Keras 3 (new-style config, path-style weight names) takes the same path."""
    from fer_core.predictors.teachable_example import build_teachable_model

    model = build_teachable_model(2, seed=1)
    model.save(tmp_path / "keras_model.h5")
    (tmp_path / "labels.txt").write_text("0 happy\n1 sad\n")
    tm = load_teachable(tmp_path)
    np.testing.assert_allclose(tm.raw_proba(images[:2]),
                               np.asarray(model(tm.preprocess(images[:2]), training=False)), atol=1e-5)


def test_zip_with_export_in_a_subfolder(export, tmp_path):
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(export.model_path, "converted_keras/keras_model.h5")
        zf.write(export.labels_path, "converted_keras/labels.txt")
    assert load_teachable(path).labels == LABELS


def test_real_mobilenetv2_architecture(tmp_path, images):
    """Teachable Machine's own backbone (MobileNetV2, alpha 0.35, 154 layers), TF<=2.3 "Model" naming."""
    big = write_teachable_export(tmp_path, ["happy", "sad", "neutral"], functional_class="Model",
                                 mobilenet=True)
    tm = load_teachable(big.folder)
    np.testing.assert_allclose(tm.raw_proba(images[:2]), _original_proba(big, tm, images[:2]), atol=1e-5)


def test_weights_that_do_not_fit_the_architecture(export, tmp_path):
    shutil.copy(export.model_path, tmp_path / "keras_model.h5")
    shutil.copy(export.labels_path, tmp_path / "labels.txt")
    with h5py.File(tmp_path / "keras_model.h5", "r+") as f:
        head = f["model_weights/sequential_3"]
        head.attrs["weight_names"] = [n for n in head.attrs["weight_names"] if "dense_Dense1/bias" not in str(n)]
    with pytest.raises(ModelFileError, match="weight dense_Dense1/bias is missing"):
        load_teachable(tmp_path)


def test_a_large_test_set_is_shaped_one_batch_at_a_time(predictor, monkeypatch):
    """Scoring N images keeps one batch of 224x224x3 model inputs in memory, not N of them (7,178
    FER2013 faces took 8 GB before)."""
    import tracemalloc

    tm = TeachablePredictor(predictor.model, LABELS, batch_size=8)
    faces = [np.full((48, 48), i, np.uint8) for i in range(96)]
    sizes: list[int] = []
    shape = tm.preprocess

    def counted(images):
        sizes.append(len(images))
        return shape(images)

    monkeypatch.setattr(tm, "preprocess", counted)
    done: list[int] = []
    tm.raw_proba(faces[:2])  # TensorFlow's first call allocates for itself: not measured
    sizes.clear()
    tracemalloc.start()
    try:
        raw = tm.raw_proba(faces, progress=lambda i, n: done.append(i))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raw.shape == (96, 3) and sum(sizes) == 96 and max(sizes) <= 8
    assert done[-1] == 96 and done == sorted(done)
    one_input = 224 * 224 * 3 * 4
    assert peak < 40 * one_input, f"peak {peak / 2**20:.0f} MiB for 96 images in batches of 8"
    np.testing.assert_allclose(raw[:2], predictor.raw_proba(faces[:2]), atol=1e-6)  # same answers as one batch


def test_a_damaged_h5_that_makes_h5py_raise_system_error_is_one_line(export, monkeypatch):
    """Some flipped bytes make h5py raise SystemError (from its lock's __exit__): one line naming
    the file, as for other damage, not a traceback."""
    from fer_core.predictors import teachable

    def broken(*_args, **_kwargs):
        raise SystemError("<cyfunction FastRLock.__exit__ at 0x7f93> returned a result with an exception set")

    monkeypatch.setattr(teachable, "_stored_layers", broken)
    with pytest.raises(ModelFileError, match="unreadable HDF5 file") as info:
        load_teachable(export.folder)
    assert "\n" not in str(info.value) and "keras_model.h5" in str(info.value) and "0x7f" not in str(info.value)


def test_page_probabilities_download_has_no_float64_noise(export, models_dir, astronaut_jpeg, downloads):
    """The try-a-photo CSV writes each probability at the precision the network computes in (float32,
    7 digits), not float64 noise such as 0.0022416228894144297; the emotions still sum to 1."""
    import io
    import re

    import pandas as pd
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    from fer_core import config

    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "5_Teachable_Machine.py"), default_timeout=240)
    run_app(at, 240)
    zipped = export.zip()
    at.file_uploader(key="tm_upload").set_value([(zipped.name, zipped.read_bytes(), "application/zip")])
    run_app(at, 240)
    at.file_uploader(key="tm_image").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, 240)
    text = downloads["astronaut_teachable.csv"].decode()
    numbers = [row.rsplit(",", 1)[1] for row in text.splitlines()[1:]]
    assert len(numbers) == 2 * len(LABELS)
    digits = [len(re.sub(r"e.*|[^0-9]", "", n).lstrip("0")) for n in numbers]
    assert max(digits) <= 9, numbers
    proba = pd.read_csv(io.StringIO(text))
    assert proba.loc[proba["output"] == "emotion", "probability"].sum() == pytest.approx(1.0, abs=1e-6)


def test_a_saved_mapping_keys_the_answers_kept(predictor):
    """Two mappings of one export's labels give the same emotions in the same order and different
    answers: the answers a comparison keeps (``evaluation.answers``) are keyed by the mapping too,
    and a remapping made on the page, not loaded from files, keeps none."""
    from fer_core.evaluation.answers import model_identity

    plain = TeachablePredictor(predictor.model, list(LABELS))
    swapped = plain.remapped({"Anger": "happy", "Happiness": "angry"})
    assert plain.classes == swapped.classes and model_identity(swapped) is None
    plain.source_digest = swapped.source_digest = "the same files"
    assert None is not model_identity(plain) != model_identity(swapped) is not None


def test_answers_kept_for_a_model_file_follow_the_labels_beside_it(export, tmp_path):
    """A model given by its file (keras_model.h5) read labels.txt beside it, which its checksum did
    not cover: reordered, the answers swapped and the kept ones were served (a code review)."""
    import shutil

    from fer_core.evaluation.answers import model_identity
    from fer_core.predictors.registry import load_predictor

    folder = tmp_path / "export"
    shutil.copytree(export.folder, folder)
    model_file = folder / export.model_path.name
    before = model_identity(load_predictor(str(model_file)))
    labels = folder / export.labels_path.name
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([f"0 {lines[1].split(' ', 1)[1]}", f"1 {lines[0].split(' ', 1)[1]}", *lines[2:]]) + "\n")
    after = model_identity(load_predictor(str(model_file)))
    assert None not in (before, after) and before != after
