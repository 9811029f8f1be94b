"""Every Teachable Machine download - Keras, TensorFlow.js, TFLite float and quantized - built from
one small model, imported from a zip and from loose files, predicting like the original on real
FER2013 faces; the errors each format can give; saving and reloading; the page under AppTest."""

from __future__ import annotations

import codecs
import errno
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import charts, english_left, page_texts, run_app, texts
from streamlit.testing.v1 import AppTest

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.errors import FerError, ModelFileError
from fer_core.predictors.teachable import (
    TeachableImport,
    TeachablePredictor,
    load_teachable,
    load_upload,
    read_export,
    read_upload,
    sort_upload,
)
from fer_core.predictors.teachable_example import (
    TFJS_FILES,
    build_teachable_model,
    write_teachable_export,
    write_tfjs_export,
    write_tflite_export,
    zip_export,
)

LABELS = ("Anger", "Happiness", "sadness")
TM_PAGE = str(config.REPO_ROOT / "pages" / "5_Teachable_Machine.py")
T = 240  # seconds per AppTest run: the first Keras step starts TensorFlow


@pytest.fixture(scope="module")
def faces(fer_val) -> list[Path]:
    """Two real FER2013 val faces per emotion (14 images)."""
    return [p for e in SEVEN_EMOTIONS for p in sorted((fer_val / e).glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def exports(tmp_path_factory, faces) -> dict:
    """ONE small Teachable Machine shaped model (tiny MobileNetV2 look-alike, 224x224x3, [-1, 1]
    inputs) written as each download, each zipped as Teachable Machine zips it."""
    root = tmp_path_factory.mktemp("formats")
    model = build_teachable_model(len(LABELS))
    calibration = TeachablePredictor(model, LABELS).preprocess(faces)
    _spread_head(model, calibration)
    keras_export = write_teachable_export(root / "keras", LABELS, model=model)
    folders = {"keras": keras_export.folder,
               "tfjs": write_tfjs_export(root / "tfjs", model, LABELS),
               "tflite": write_tflite_export(root / "tflite", model, LABELS).parent,
               "tflite-quantized": write_tflite_export(root / "tflite_q", model, LABELS, calibration).parent}
    members = {"keras": ("keras_model.h5", "labels.txt"), "tfjs": TFJS_FILES,
               "tflite": ("model_unquant.tflite", "labels.txt"), "tflite-quantized": ("model.tflite", "labels.txt")}
    return {"model": model, "x": calibration, "folders": folders, "members": members,
            "zips": {fmt: zip_export(folders[fmt], members[fmt], f"converted_{fmt}.zip") for fmt in folders}}


def _spread_head(model, x: np.ndarray) -> None:
    """Make the untrained model answer clearly differently for different faces (random weights
    answer almost alike, and int8 quantization would drown such differences): batch-norm
    statistics set from the faces, the head standardising the pooled features and projecting
    them at random, centred."""
    import keras

    rng = np.random.default_rng(0)
    backbone = model.get_layer("sequential_1").get_layer("model1")
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            z = np.asarray(keras.Model(backbone.input, layer.input)(x))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2)) + 1e-3])
    head = model.get_layer("sequential_3")
    features = np.asarray(model.get_layer("sequential_1")(x))
    dense1, dense2 = head.get_layer("dense_Dense1"), head.get_layer("dense_Dense2")
    kernel = rng.normal(size=dense1.get_weights()[0].shape) / (features.std(axis=0)[:, None] + 1e-6) / 3
    dense1.set_weights([kernel.astype(np.float32), (1.0 - features.mean(axis=0) @ kernel).astype(np.float32)])
    hidden = np.asarray(dense1(features))
    weights = rng.normal(size=dense2.get_weights()[0].shape) / (hidden.std(axis=0)[:, None] + 1e-3)
    mean = hidden.mean(axis=0)
    weights -= np.outer(mean, mean @ weights) / (mean @ mean)  # the part all faces share adds nothing
    dense2.set_weights([(weights / np.sqrt(len(mean))).astype(np.float32)])


def _loose(exports, fmt: str) -> list[tuple[str, bytes]]:
    return [(m, (exports["folders"][fmt] / m).read_bytes()) for m in exports["members"][fmt]]


def _one_line_refusal(call, *args, match: str, name: str | None = None) -> str:
    with pytest.raises(ModelFileError, match=match) as info:
        call(*args)
    text = str(info.value)
    assert "\n" not in text and (name is None or name in text), text
    return text


# ----------------------------------------------------------------------------- same predictions

def test_every_format_predicts_like_the_original(exports, faces, capsys):
    expected = np.asarray(exports["model"](exports["x"], training=False), dtype=np.float64)
    assert expected.std(axis=0).max() > 0.01  # real faces get different answers: a wrong weight would show
    measured = {}
    for fmt, zipped in exports["zips"].items():
        tm = load_teachable(zipped)
        assert tm.format == fmt and tm.labels == LABELS and tm.classes == ("angry", "happy", "sad")
        raw = tm.raw_proba(faces)
        np.testing.assert_allclose(load_upload(sort_upload(_loose(exports, fmt))).raw_proba(faces), raw, atol=1e-6)
        diff = float(np.abs(raw - expected).max())
        agree = float((raw.argmax(axis=1) == expected.argmax(axis=1)).mean())
        measured[fmt] = (diff, agree)
        if fmt == "tflite-quantized":
            assert diff < 0.1 and agree >= 0.8, (diff, agree)
            assert ((raw >= 0) & (raw <= 1)).all()
        else:
            assert diff < 1e-4, (fmt, diff)
        np.testing.assert_allclose(tm.predict_proba(faces).sum(axis=1), 1.0, atol=1e-6)
    with capsys.disabled():
        print("\nmax |p - keras| and argmax agreement on", len(faces), "faces:",
              {k: (f"{d:.2e}", f"{a:.0%}") for k, (d, a) in measured.items()})


def test_tfjs_variants_keras3_topology_shards_and_quantized_weights(exports, faces, tmp_path):
    """model.json as Keras 3's to_json writes it, the weights in three shards, and the converter's
    float16 / uint8 weight quantization."""
    model, x = exports["model"], exports["x"]
    expected = np.asarray(model(x, training=False))
    plain = load_teachable(write_tfjs_export(tmp_path / "k3", model, LABELS, teachable_style=False, shards=3))
    assert plain.format == "tfjs"
    np.testing.assert_allclose(plain.raw_proba(faces), expected, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "k3").glob("*.bin")) == [f"group1-shard{i}of3.bin" for i in (1, 2, 3)]
    saved = model.get_weights()
    try:
        for how in ("float16", "uint8"):
            tm = load_teachable(write_tfjs_export(tmp_path / how, model, LABELS, quantization=how))
            for variable, value in zip(model.weights, saved):  # the values the quantized file stands for
                variable.assign(_as_stored(value, how))
            np.testing.assert_allclose(tm.raw_proba(faces), np.asarray(model(x, training=False)), atol=1e-5)
            model.set_weights(saved)
    finally:
        model.set_weights(saved)


def test_tfjs_of_the_real_mobilenetv2(tmp_path, faces):
    """Teachable Machine's own backbone (MobileNetV2, alpha 0.35, 154 layers) through model.json."""
    model = build_teachable_model(3, mobilenet=True)
    tm = load_teachable(write_tfjs_export(tmp_path, model, LABELS))
    expected = np.asarray(model(tm.preprocess(faces[:3]), training=False))
    np.testing.assert_allclose(tm.raw_proba(faces[:3]), expected, atol=1e-5)


def _as_stored(value: np.ndarray, how: str) -> np.ndarray:
    """A weight as float16, or affinely quantized to uint8 over [min(v, 0), max(v, 0)], and back."""
    if how == "float16":
        return value.astype(np.float16).astype(np.float32)
    low, high = min(float(value.min()), 0.0), max(float(value.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    return (np.round((value - low) / scale) * np.float32(scale) + np.float32(low)).astype(np.float32)


# ----------------------------------------------------------------------------- what is refused

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_upload_and_zip_errors_name_the_file(exports, tmp_path):
    faces_zip = _zip(tmp_path / "faces.zip", {"happy/1.jpg": b"\xff\xd8 not really", "notes.txt": b"hi"})
    message = _one_line_refusal(load_teachable, faces_zip, match="no keras_model.h5, model.json or .tflite inside")
    assert message.startswith(f"{faces_zip}: no keras_model.h5")
    upload = sort_upload([("faces.zip", faces_zip.read_bytes())])
    assert _one_line_refusal(read_upload, upload, match="inside").startswith(
        "faces.zip: no keras_model.h5, model.json or .tflite inside")
    _one_line_refusal(read_upload, sort_upload([("faces.zip", b"just some text")]), match="^faces.zip is not a zip")
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK\x03\x04 broken")
    _one_line_refusal(load_teachable, fake, match="fake.zip is not a zip")
    finder = _zip(tmp_path / "finder.zip", {**{f"tm/{m}": (exports["folders"]["tflite"] / m).read_bytes()
                                               for m in exports["members"]["tflite"]},
                                            "__MACOSX/tm/._model_unquant.tflite": b"\0\5\26\7", "tm/.DS_Store": b"x"})
    assert read_export(finder).model_name == f"{finder}:model_unquant.tflite"  # re-zipped on a Mac: still one model
    both = _zip(tmp_path / "both.zip", {**{m: (exports["folders"]["tfjs"] / m).read_bytes() for m in TFJS_FILES},
                                        "model.tflite": b"x"})
    _one_line_refusal(read_export, both, match="holds more than one model", name="both.zip")
    with pytest.raises(ModelFileError, match="photo.jpg: not part of a Teachable Machine export"):
        sort_upload([("model.json", b"{}"), ("photo.jpg", b"")])
    with pytest.raises(ModelFileError, match="labels.txt alone is not a model"):
        sort_upload([("labels.txt", b"0 happy\n")])


def test_tfjs_files_that_are_refused(exports, tmp_path):
    files = dict(_loose(exports, "tfjs"))
    spec = json.loads(files["model.json"])

    def upload(**changes) -> object:
        return sort_upload(list({**files, **changes}.items()))

    def with_spec(change) -> bytes:
        copy = json.loads(json.dumps(spec))
        change(copy)
        return json.dumps(copy).encode()

    no_weights = sort_upload([(k, v) for k, v in files.items() if k != "weights.bin"])
    _one_line_refusal(read_upload, no_weights, match="weight file weights.bin named in model.json is missing",
                      name="model.json")
    for path in ("../secret.bin", "/etc/passwd", "http://example.com/w.bin", "a\\..\\b.bin"):
        bad = with_spec(lambda s, p=path: s["weightsManifest"][0].update(paths=[p]))
        _one_line_refusal(read_upload, upload(**{"model.json": bad}), match="points outside the export")
    short = upload(**{"weights.bin": files["weights.bin"][:-8]})
    _one_line_refusal(load_upload, short, match="weights.bin holds .* too few", name="model.json")
    long = upload(**{"weights.bin": files["weights.bin"] + b"\0" * 4})
    _one_line_refusal(load_upload, long, match="lists", name="model.json")
    graph = with_spec(lambda s: s.update(format="graph-model"))
    _one_line_refusal(read_upload, upload(**{"model.json": graph}), match="graph model")
    int_weights = with_spec(lambda s: s["weightsManifest"][0]["weights"][0].update(dtype="int32"))
    _one_line_refusal(load_upload, upload(**{"model.json": int_weights}), match="only float32 weights")

    def add_lambda(s):
        head = s["modelTopology"]["config"][1]["config"]  # tfjs-layers 1.x: a Sequential's config lists its layers
        head.insert(1, {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAA", None, None],
                                                          "function_type": "lambda", "module": "__main__"}})
    _one_line_refusal(load_upload, upload(**{"model.json": with_spec(add_lambda)}),
                      match="Lambda layer .*not loaded for safety")
    custom = with_spec(lambda s: s["modelTopology"]["config"][1]["config"][0].update(
        class_name="MyDense"))
    _one_line_refusal(load_upload, upload(**{"model.json": custom}), match="unsupported layer or object 'MyDense'")
    no_meta = sort_upload([(k, v) for k, v in files.items() if k != "metadata.json"])
    _one_line_refusal(load_upload, no_meta, match="model.json: missing metadata.json")
    meta = json.loads(files["metadata.json"])
    two = json.dumps({**meta, "labels": ["happy", "sad"]}).encode()
    _one_line_refusal(load_upload, upload(**{"metadata.json": two}),
                      match="model has 3 outputs but metadata.json names 2 classes")


def test_tfjs_weight_shape_mismatch_is_named(exports):
    files = dict(_loose(exports, "tfjs"))
    spec = json.loads(files["model.json"])
    kernel = next(w for w in spec["weightsManifest"][0]["weights"] if w["name"] == "Conv1/kernel")
    assert kernel["shape"] == [3, 3, 3, 4]
    kernel["shape"] = [3, 3, 4, 3]  # same size: the bytes still add up, the shape does not fit
    upload = sort_upload(list({**files, "model.json": json.dumps(spec).encode()}.items()))
    _one_line_refusal(load_upload, upload, match=r"weight Conv1/kernel has shape \(3, 3, 4, 3\), the architecture "
                                                 r"needs \(3, 3, 3, 4\)")


def test_tflite_files_that_are_refused(exports, tmp_path):
    files = dict(_loose(exports, "tflite"))
    _one_line_refusal(load_upload, sort_upload([("model_unquant.tflite", files["model_unquant.tflite"]),
                                                ("labels.txt", b"0 happy\n1 sad\n")]),
                      match="model has 3 outputs but labels.txt names 2 classes", name="model_unquant.tflite")
    _one_line_refusal(load_upload, sort_upload([("model.tflite", b"\x00" * 64), ("labels.txt", b"0 happy\n")]),
                      match="model.tflite: not a TensorFlow Lite model file")
    broken = files["model_unquant.tflite"][:200]
    _one_line_refusal(load_upload, sort_upload([("model.tflite", broken), ("labels.txt", files["labels.txt"])]),
                      match="model.tflite: cannot load this TensorFlow Lite model")
    _one_line_refusal(load_upload, sort_upload([("model_unquant.tflite", files["model_unquant.tflite"])]),
                      match="missing labels.txt")
    as_bytes = load_teachable(files["model_unquant.tflite"], labels=list(LABELS))  # no name: told by its bytes
    assert as_bytes.format == "tflite" and as_bytes.labels == LABELS


# ----------------------------------------------------------------------------- saving and reloading

def test_saved_imports_reload_with_their_format(exports, faces, models_dir, caplog):
    import logging

    from fer_core.manifest import Metrics, read_manifest
    from fer_core.predictors.registry import load_predictor, save_and_register

    for fmt, stored in (("tfjs", "keras_model.h5"), ("tflite-quantized", "model.tflite")):
        upload = sort_upload([(exports["zips"][fmt].name, exports["zips"][fmt].read_bytes())])
        tm = load_upload(upload).remapped({"sadness": None})
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            entry = save_and_register(TeachableImport(upload, tm), name=f"tm-{fmt}", kind="teachable", classes=tm.classes,
                                      metrics=Metrics(), command="test", mapping=tm.mapping.as_dict(),
                                      extra={"format": tm.format})
        # Keras's "HDF5 is legacy" warning on the TF.js import's save read to a student as a failure
        assert not [r.getMessage() for r in caplog.records if r.name == "absl"]
        assert Path(entry.path).name == stored
        saved = next(e for e in read_manifest(models_dir) if e.name == f"tm-{fmt}")
        assert saved.extra == {"format": fmt}
        again = load_predictor(saved)
        assert again.format == fmt and again.classes == ("angry", "happy") and again.unmapped == ("sadness",)
        np.testing.assert_allclose(again.predict_proba(faces[:4]), tm.predict_proba(faces[:4]), atol=1e-5)


def test_import_teachable_registers_a_zip_a_folder_or_a_model_file_from_the_command_line(exports, faces, models_dir,
                                                                                          capsys, tmp_path):
    """A replication had no way to register an export without the dashboard: ``import-teachable``
    keeps it as the page's Save does (same files, mapping and format), from any of the downloads."""
    from fer_core.cli import main
    from fer_core.manifest import read_manifest
    from fer_core.predictors.registry import load_predictor

    sources = {"tfjs": exports["zips"]["tfjs"], "tflite": exports["folders"]["tflite"],
               "keras": exports["folders"]["keras"] / "keras_model.h5"}
    for fmt, source in sources.items():
        assert main(["import-teachable", str(source), "--name", f"cli-{fmt}", "--map", "sadness="]) == 0
        out = capsys.readouterr().out
        assert "  sadness -> left out (not an emotion)" in out and f"as 'cli-{fmt}' in " in out
        entry = next(e for e in read_manifest(models_dir) if e.name == f"cli-{fmt}")
        assert entry.kind == "teachable" and entry.extra == {"format": fmt} and entry.origin == "imported"
        assert entry.mapping == {"Anger": "angry", "Happiness": "happy", "sadness": None}
        assert entry.command.startswith("python -m fer_core import-teachable ")
        reloaded = load_predictor(f"cli-{fmt}")
        assert reloaded.classes == ("angry", "happy")
        page_way = load_upload(sort_upload([(exports["zips"][fmt].name, exports["zips"][fmt].read_bytes())]))
        np.testing.assert_allclose(reloaded.predict_proba(faces[:4]),
                                   page_way.remapped({"sadness": None}).predict_proba(faces[:4]), atol=1e-5)
    # a model file among other downloads: only its export's files are taken (a stray .txt was
    # "more than one labels.txt")
    downloads = tmp_path / "Downloads"
    shutil.copytree(exports["folders"]["keras"], downloads)
    (downloads / "shopping list.txt").write_text("milk\n")
    (downloads / "backup.bin").write_bytes(b"\0" * 64)
    assert main(["import-teachable", str(downloads / "keras_model.h5"), "--name", "cli-downloads"]) == 0
    capsys.readouterr()
    # one line each, and nothing registered: a taken name (said before loading), a bad --map
    for args, said in ((["--name", "cli-tfjs"], "a model named 'cli-tfjs' already exists"),
                       (["--name", "cli-new", "--map", "sadness"], "--map 'sadness': write CLASS=EMOTION"),
                       (["--name", "cli-new", "--map", "Joy=happy"], "mapping names class 'Joy', which the model "
                                                                     "does not have"),
                       # the command line's own way out, not only the dashboard's
                       (["--name", "cli-new", "--map", "Anger=", "--map", "sadness="], "only happy counts as an emotion, and the model would "
                                                                  "give it to every face; map a second class to an "
                                                                  "emotion (import-teachable --map, or the")):
        assert main(["import-teachable", str(sources["tfjs"]), *args]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert "cli-new" not in {e.name for e in read_manifest(models_dir)}


# ----------------------------------------------------------------------------- the page

def _import_tfjs_zip(exports, lang: str | None = None) -> AppTest:
    at = AppTest.from_file(TM_PAGE, default_timeout=T)
    if lang:
        at.query_params["lang"] = lang
    run_app(at, T)
    zipped = exports["zips"]["tfjs"]
    at.file_uploader(key="tm_upload").set_value([(zipped.name, zipped.read_bytes(), "application/zip")])
    return run_app(at, T)


def test_page_imports_a_tfjs_zip_and_offers_it_unsaved(exports, models_dir, astronaut_jpeg, recorded_downloads):
    import pandas as pd

    at = _import_tfjs_zip(exports)
    assert not at.error, texts(at.error)
    assert any(s == "Loaded **converted_tfjs.zip** · TensorFlow.js (model.json) · 3 classes, input 224×224 RGB."
               for s in texts(at.success))
    unsaved = at.session_state["_unsaved_models"]
    (name,) = unsaved
    assert re.fullmatch(r"teachable-converted_tfjs-[0-9a-f]{6}-unsaved", name), name
    assert unsaved[name].format == "tfjs"
    _, name, data = recorded_downloads["tm_dl_mapping"]
    mapping = pd.read_csv(io.BytesIO(data))
    assert name == "converted_tfjs_mapping.csv" and list(mapping["class"]) == list(LABELS)
    assert list(mapping["emotion"]) == ["angry", "happy", "sad"]
    at.file_uploader(key="tm_image").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, T)
    _, name, data = recorded_downloads["tm_dl_proba"]
    proba = pd.read_csv(io.BytesIO(data))
    assert name == "astronaut_teachable.csv"
    assert list(proba.loc[proba["output"] == "class", "name"]) == list(LABELS)
    assert proba.loc[proba["output"] == "emotion", "probability"].sum() == pytest.approx(1.0, abs=1e-6)
    assert any("keras_model.h5" in c for c in texts(at.caption))  # a TF.js import is saved as Keras


def test_page_in_korean(exports, models_dir, astronaut_jpeg):
    at = _import_tfjs_zip(exports, "ko")
    at.file_uploader(key="tm_image").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, T)
    shown = page_texts(at)
    assert not at.error, texts(at.error)
    assert any("TensorFlow.js (model.json)" in s and "클래스 3개" in s for s in texts(at.success))
    assert english_left(shown, ("Teachable Machine", "converted_tfjs.zip", *at.session_state["_unsaved_models"],
                                *LABELS)) == []
    assert at.title[0].value == "Teachable Machine" and any("클래스와 감정" in s for s in texts(at.header))
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert titles[0] == "모델 자체의 클래스" and titles[1].startswith("감정으로 보면: ")
    emotions = charts(at)[1]["data"][0]["y"]
    assert sorted(emotions) == sorted(["화남", "행복", "슬픔"])
    assert "NanumGothic" in charts(at)[1]["layout"]["font"]["family"]


def test_a_tfjs_model_json_path_loads_as_teachable_machine(exports, faces):
    """``evaluate --model export/model.json`` (or any model path) takes a TensorFlow.js export, not
    an AU model: the AU kind only claims its own JSON format."""
    from fer_core.predictors.registry import kind_for_path, load_predictor

    model_json = exports["folders"]["tfjs"] / "model.json"
    assert kind_for_path(model_json) == "teachable"
    tm = load_predictor(str(model_json))
    assert tm.format == "tfjs"
    expected = np.asarray(exports["model"](tm.preprocess(faces[:2]), training=False))
    np.testing.assert_allclose(tm.raw_proba(faces[:2]), expected, atol=1e-5)


def test_zips_that_cannot_be_read_and_renamed_browser_downloads(exports, tmp_path):
    """An encrypted zip, or one in a compression zipfile cannot read, is one line (it was "a bug");
    a TF.js export whose files a browser renamed ("model (1).json", "metadata (1).json") loads."""
    good = exports["zips"]["keras"].read_bytes()
    for flag_offsets, what in ((((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)), "encrypted"),
                               (((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)), "method")):
        data = bytearray(good)
        for signature, offset in flag_offsets:
            at = data.find(signature) + offset
            if what == "encrypted":
                data[at] |= 1
            else:
                data[at:at + 2] = (99).to_bytes(2, "little")
        path = tmp_path / f"{what}.zip"
        path.write_bytes(bytes(data))
        _one_line_refusal(read_export, path, match="encrypted or uses a compression", name=f"{what}.zip")
    renamed = [({"model.json": "model (1).json", "metadata.json": "metadata (1).json"}.get(n, n), data)
               for n, data in _loose(exports, "tfjs")]
    files = read_upload(sort_upload(renamed))
    assert files.format == "tfjs" and files.labels == LABELS


def test_models_that_give_no_row_of_class_scores_are_refused_with_one_line(exports):
    import keras

    inputs = keras.Input((224, 224, 3))
    conv = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    two = keras.Model(inputs, [keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))] * 2)
    for model in (conv, two):
        with pytest.raises(ModelFileError, match="is not one row of class scores per image") as info:
            TeachablePredictor(model, LABELS, source="keras_model.h5")
        assert str(info.value).startswith("keras_model.h5: model output")


def test_class_names_people_write_and_the_file_an_all_ignored_mapping_names(exports):
    import unicodedata

    from fer_core.predictors.teachable import map_labels

    mapping = map_labels(["Happy :)", "Angry 1", "Surprised!", "슬픔", unicodedata.normalize("NFD", "행복"),
                          "background", "Class 1"])
    assert mapping.emotions == ("happy", "angry", "surprise", "sad", "happy", None, None)  # NFD: as macOS writes
    tflite = load_teachable(exports["folders"]["tflite"])
    with pytest.raises(ModelFileError, match="none of the classes") as info:
        tflite.remapped(dict.fromkeys(LABELS))
    assert "model_unquant.tflite" in str(info.value) and "keras_model.h5" not in str(info.value)


def test_a_saved_tflite_export_folder_is_a_teachable_model_by_its_path(exports):
    from fer_core.predictors.registry import find_entry

    assert find_entry(str(exports["folders"]["tflite"])).kind == "teachable"
    from fer_core.predictors.teachable import _claims

    assert not _claims(config.REPO_ROOT / "models"), "a folder of CNNs with their TFLite twins is no export"


def test_teachable_errors_read_in_korean():
    from fer_core import i18n

    with i18n.using_language("ko"):
        for english in ("keras_model.h5: model has 3 outputs but labels.txt names 2 classes; use the labels.txt of "
                        "the same export",
                        "notes.txt alone is not a model; add the model file of the same export (keras_model.h5, "
                        "model.json or .tflite), or upload the export zip",
                        "x.zip: damaged zip (Bad CRC-32); download the export again"):
            korean = i18n.message(english)
            assert korean != english and not any(w in korean for w in ("export", "model has", "alone", "damaged"))


def test_classes_sharing_a_name_share_one_box_on_the_page(exports, models_dir, tmp_path, astronaut_jpeg):
    """Two outputs named "happy": one box for both (the mapping is kept by name), so mapping it maps
    both, as the table and the saved model say; the chart of the model's own outputs shows all three
    (it dropped one of the two named alike). Ignoring both leaves one emotion: refused in one line
    (every face would be sad at 100 %)."""
    h5 = (exports["folders"]["keras"] / "keras_model.h5").read_bytes()
    at = run_app(AppTest.from_file(TM_PAGE, default_timeout=T), T)
    at.file_uploader(key="tm_upload").set_value([("keras_model.h5", h5, "application/octet-stream"),
                                                 ("labels.txt", b"0 happy\n1 happy\n2 sad\n", "text/plain")])
    run_app(at, T)
    boxes = [b for b in at.selectbox if b.key and b.key.startswith("tm_map_")]
    assert [b.label for b in boxes] == ["0, 1: happy", "2: sad"]
    boxes[0].set_value("angry")
    run_app(at, T)
    (unsaved,) = at.session_state["_unsaved_models"].values()
    assert unsaved.mapping.emotions == ("angry", "angry", "sad")
    at.file_uploader(key="tm_image").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, T)
    raw = charts(at)[0]["data"][0]
    assert sorted(raw["y"]) == ["0: happy", "1: happy", "2: sad"] and sum(raw["x"]) == pytest.approx(1.0, abs=1e-5)
    next(b for b in at.selectbox if b.key and b.key.startswith("tm_map_")).set_value("ignore")
    run_app(at, T)
    assert [e for e in texts(at.error) if "only sad counts as an emotion, and the model would give it to every face" in e]
    assert not at.session_state["_unsaved_models"]  # Compare is not handed a model of one emotion


def test_compare_says_its_results_are_stale_when_an_unsaved_model_is_remapped(exports, models_dir, fer_sample):
    """Remapping on the Teachable Machine page replaces the unsaved model under the same name:
    Compare's results of the old mapping are then marked as the previous choice's."""
    base = load_teachable(exports["folders"]["tflite"])
    name = "teachable-x-unsaved"
    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "6_Compare.py"), default_timeout=T)
    at.session_state["_unsaved_models"] = {name: base.remapped({}, name=name)}
    run_app(at, T)
    at.radio(key="cmp_source").set_value("A folder on this machine")
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(fer_sample))
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value([name])
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert "cmp_result" in at.session_state and not any("previous choice" in s for s in texts(at.info))
    at.session_state["_unsaved_models"] = {name: base.remapped({"Anger": "sad", "sadness": "angry"}, name=name)}
    run_app(at, T)
    assert any("previous choice" in s for s in texts(at.info))


# ----------------------------------------------------------------------------- review fixes

CLASS_NAMES = b"0 Class 1\n1 Class 2\n2 Class 3\n"


def _tflite_with(labels: bytes, exports) -> list[tuple[str, bytes]]:
    """A TFLite export's files, labels.txt first (as a browser may list them)."""
    return [("labels.txt", labels), ("model_unquant.tflite",
                                     (exports["folders"]["tflite"] / "model_unquant.tflite").read_bytes())]


def _unsaved(at: AppTest) -> dict:
    return dict(at.session_state["_unsaved_models"]) if "_unsaved_models" in at.session_state else {}


def _save(upload, tm, name: str):
    from fer_core.manifest import Metrics
    from fer_core.predictors.registry import save_and_register

    return save_and_register(TeachableImport(upload, tm), name=name, kind="teachable", classes=tm.classes,
                             metrics=Metrics(), command="test", mapping=tm.mapping.as_dict(),
                             extra={"format": tm.format})


def test_a_model_whose_classes_are_no_emotions_loads_to_be_mapped(exports, faces, tmp_path):
    """Teachable Machine's default class names ("Class 1") load; scoring waits for a mapping, and
    an export loaded from disk (the CLI) says where to map them."""
    base = load_upload(sort_upload(_tflite_with(CLASS_NAMES, exports)))
    assert base.labels == ("Class 1", "Class 2", "Class 3") and base.classes == () and base.unmapped == base.labels
    _one_line_refusal(base.predict_proba, faces[:1], match=r"none of the classes .*map them \(import-teachable --map, or the dashboard",
                      name="model_unquant.tflite")
    mapped = base.remapped({"Class 1": "happy", "Class 2": "sad"})
    assert mapped.classes == ("happy", "sad") and mapped.predict_proba(faces[:2]).shape == (2, 2)
    for name, data in _tflite_with(CLASS_NAMES, exports):
        (tmp_path / name).write_bytes(data)
    _one_line_refusal(load_teachable, tmp_path, match="none of the classes .*Teachable Machine page")


def test_page_maps_a_model_whose_classes_are_no_emotions(exports, models_dir, faces):
    """The mapping boxes appear (all on ignore) with a note to map them; mapping one makes the model
    Compare's, saves it and reloads it; mapping none again withdraws it from Compare."""
    from fer_core.predictors.registry import load_predictor

    at = run_app(AppTest.from_file(TM_PAGE, default_timeout=T), T)
    at.file_uploader(key="tm_upload").set_value([(n, d, "application/octet-stream")
                                                 for n, d in _tflite_with(CLASS_NAMES, exports)])
    run_app(at, T)
    assert not at.error, texts(at.error)
    boxes = [b for b in at.selectbox if b.key and b.key.startswith("tm_map_")]
    assert [(b.label, b.value) for b in boxes] == [("0: Class 1", "ignore"), ("1: Class 2", "ignore"),
                                                   ("2: Class 3", "ignore")]
    assert any("at least two of them" in s for s in texts(at.warning)) and _unsaved(at) == {}
    boxes[0].set_value("happy")
    boxes[2].set_value("sad")
    run_app(at, T)
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)
    (name, tm), = _unsaved(at).items()
    assert re.fullmatch(r"teachable-model_unquant-[0-9a-f]{6}-unsaved", name), name  # not "labels", listed first
    assert tm.classes == ("happy", "sad") and tm.unmapped == ("Class 2",)
    assert at.text_input(key="tm_save_name").value == "teachable-model_unquant"
    at.text_input(key="tm_save_name").set_value("tm-classes")
    at.button(key="tm_save").click()
    run_app(at, T)
    assert not at.error, texts(at.error)
    saved = load_predictor("tm-classes")
    assert saved.classes == ("happy", "sad")
    np.testing.assert_allclose(saved.predict_proba(faces[:3]), tm.predict_proba(faces[:3]), atol=1e-6)
    for box in (b for b in at.selectbox if b.key and b.key.startswith("tm_map_")):
        box.set_value("ignore")
    run_app(at, T)
    assert any("at least two of them" in s for s in texts(at.warning)) and _unsaved(at) == {}


def test_two_downloads_of_the_same_name_are_both_offered_to_compare(exports, models_dir):
    """A second converted_tflite.zip (another model) no longer replaces the first unsaved one."""
    at = run_app(AppTest.from_file(TM_PAGE, default_timeout=T), T)
    for fmt in ("tflite", "tflite-quantized"):
        at.file_uploader(key="tm_upload").set_value([("converted_tflite.zip", exports["zips"][fmt].read_bytes(),
                                                      "application/zip")])
        run_app(at, T)
    unsaved = _unsaved(at)
    assert all(re.fullmatch(r"teachable-converted_tflite-[0-9a-f]{6}-unsaved", n) for n in unsaved), list(unsaved)
    assert sorted(tm.format for tm in unsaved.values()) == ["tflite", "tflite-quantized"]


def test_a_saved_models_labels_txt_put_in_another_order_is_refused(exports, faces, models_dir):
    """labels.txt decides which output is which emotion but is not checksummed: reordering its
    lines is refused in one line instead of swapping the emotions."""
    from fer_core.predictors.registry import load_predictor

    upload = sort_upload([("converted_tflite.zip", exports["zips"]["tflite"].read_bytes())])
    tm = load_upload(upload)
    entry = _save(upload, tm, "tm-order")
    labels = entry.file.parent / "labels.txt"
    labels.write_text("0 Happiness\n1 Anger\n2 sadness\n")
    _one_line_refusal(load_predictor, "tm-order", name="labels.txt",
                      match="lists the classes as Happiness, Anger, sadness, but the model was saved with Anger, "
                            "Happiness, sadness")
    labels.write_text("0 Anger\n1 Happiness\n2 sadness\n")
    np.testing.assert_allclose(load_predictor("tm-order").predict_proba(faces[:2]), tm.predict_proba(faces[:2]),
                               atol=1e-6)
    # the saved folder's files, all selected and uploaded again, are one model (the record is no second one)
    again = load_upload(sort_upload([(p.name, p.read_bytes()) for p in sorted(entry.file.parent.iterdir())]))
    np.testing.assert_allclose(again.predict_proba(faces[:2]), tm.predict_proba(faces[:2]), atol=1e-6)


def test_a_failed_save_leaves_nothing_behind_and_the_name_free(exports, models_dir, monkeypatch):
    """A full disk while saving: one line, no half-written folder, and the same name saves later."""
    from fer_core.manifest import read_manifest
    from fer_core.predictors.registry import load_predictor

    upload = sort_upload([("converted_tflite.zip", exports["zips"]["tflite"].read_bytes())])
    tm = load_upload(upload)

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", full_disk)
        with pytest.raises(FerError, match="no space left") as info:
            _save(upload, tm, "tm-full")
    assert "\n" not in str(info.value)
    assert [p.name for p in (models_dir / "teachable").rglob("*")] == []
    assert "tm-full" not in [e.name for e in read_manifest(models_dir)]
    _save(upload, tm, "tm-full")
    assert load_predictor("tm-full").classes == tm.classes


def test_a_killed_imports_hidden_folder_is_removed_by_the_next_save_of_that_name(exports, models_dir, monkeypatch):
    """A kill (-9, power loss) while an import was written left ``.name.xxxxxxxx.part/`` in the
    models folder for good; the next save of that name removes it, and never a live save's."""
    from fer_core import fileio

    upload = sort_upload([("converted_tflite.zip", exports["zips"]["tflite"].read_bytes())])
    tm = load_upload(upload)
    folder = models_dir / "teachable"
    killed = folder / ".tm-again.0badf00d.part"
    (killed / "sub").mkdir(parents=True)
    (killed / "sub" / "model.tflite").write_bytes(b"half")
    for p in (killed / "sub" / "model.tflite", killed / "sub", killed):
        os.utime(p, (0, 0))
    recent = folder / ".tm-again.1badf00d.part"  # an hour has not passed: perhaps still being written
    recent.mkdir()
    seen_live: list[list[Path]] = []
    removing = fileio.remove_stale_parts

    def write_and_try_to_remove(self, *args, **kwargs):  # while the save writes, its own folder is held
        (live,) = [p for p in folder.glob(".tm-again.*.part") if p not in (killed, recent)]
        os.utime(live, (0, 0))
        seen_live.append(removing(folder / "tm-again", older_than=0))
        return real_write_text(self, *args, **kwargs)

    real_write_text = Path.write_text
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", write_and_try_to_remove)
        _save(upload, tm, "tm-again")
    assert seen_live and all(removed in ([], [recent]) for removed in seen_live)
    assert not killed.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["tm-again"]


def test_model_json_values_of_the_wrong_type_are_one_line(exports):
    """A dtype, a quantization dtype or a class_name that is a list or an object, not text."""
    files = dict(_loose(exports, "tfjs"))
    spec = json.loads(files["model.json"])

    def changed(change) -> object:
        copy = json.loads(json.dumps(spec))
        change(copy)
        return sort_upload(list({**files, "model.json": json.dumps(copy).encode()}.items()))

    def first(s) -> dict:
        return s["weightsManifest"][0]["weights"][0]

    cases = [(lambda s: first(s).update(dtype=["float32"]), "has a dtype that is not text"),
             (lambda s: first(s).update(quantization={"dtype": ["uint8"], "scale": 1.0, "min": 0.0}),
              "is quantized as"),
             (lambda s: s["modelTopology"]["config"][1]["config"][0].update(class_name={"x": 1}),
              "class_name that is not text")]
    from fer_core import i18n

    for change, match in cases:
        english = _one_line_refusal(load_upload, changed(change), match=match, name="model.json")
        with i18n.using_language("ko"):
            korean = i18n.message(english)
        assert match not in korean and "download it" not in korean and re.search("[가-힣]", korean), korean


def test_upload_mistakes_read_in_korean_and_utf16_labels_load(exports):
    from fer_core import i18n

    tfjs = dict(_loose(exports, "tfjs"))
    tflite = (exports["folders"]["tflite"] / "model_unquant.tflite").read_bytes()
    labels = ("labels.txt", b"0 happy\n1 sad\n2 angry\n")
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as zf:
        zf.writestr("photos/a.jpg", b"x")
    mistakes = {
        "missing": [("model.json", tfjs["model.json"]), ("metadata.json", tfjs["metadata.json"])],
        "inside": [("dataset.zip", photos.getvalue())],
        "more than one": [("model_unquant.tflite", tflite), labels, ("labels (1).txt", b"0 a\n")],
        "twice": [("keras_model.h5", b"x"), ("keras_model.h5", b"y")],
        "class numbers": [("model_unquant.tflite", tflite), ("labels.txt", b"0 happy\n1 sad\n3 angry\n")],
        "mixes": [("model_unquant.tflite", tflite), ("labels.txt", b"0 happy\nsad\nangry\n")],
        "not a text file": [("model_unquant.tflite", tflite), ("labels.txt", b"\xff\xd8\xff\xe0 JFIF")],
        "cannot load": [("model.tflite", tflite[:200]), labels],
        "not an HDF5": [("keras_model.h5", b"not a model"), labels],
    }
    for english_words, files in mistakes.items():
        english = _one_line_refusal(load_upload, sort_upload(files), match=english_words)
        with i18n.using_language("ko"):
            korean = i18n.message(english)
        assert english_words not in korean and "download it" not in korean and re.search("[가-힣]", korean), korean
    text = "0 happy\n1 sad\n2 angry\n"
    for encoded in (text.encode("utf-16"), codecs.BOM_UTF16_BE + text.encode("utf-16-be")):  # Notepad's "Unicode"
        assert load_upload(sort_upload([("model_unquant.tflite", tflite), ("labels.txt", encoded)])).classes == (
            "angry", "happy", "sad")


def test_the_never_predicts_note_says_how_compare_scores_by_default():
    """Compare leaves out, by default, emotions not every chosen model predicts: the note names the
    control that brings them back, in each language."""
    from fer_core import i18n

    for lang in ("en", "ko"):
        with i18n.using_language(lang):
            note = i18n.t("teachable.never_predicts", emotions="fear")
            assert i18n.t("compare.emotions_scored") in note, (lang, note)
