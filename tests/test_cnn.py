"""The pixel CNN: real (tiny) Keras models trained on JPEGs in the Kaggle layout, saved and reloaded."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import FerError, ModelFileError
from fer_core.predictors.cnn import (
    CNNPredictor,
    build_cnn,
    load_dataset,
    read_cnn_metadata,
    recorded_folder,
    stratified_split,
    train_cnn,
)
from fer_core.predictors.keras_io import fit_images, predict_in_batches, tta_views

CLASSES = ("happy", "sad", "surprise")


def synthetic_face(label: int, rng: np.random.Generator) -> np.ndarray:
    """48x48 gray image whose bright band position depends on the class (learnable in an epoch)."""
    img = rng.normal(60, 20, (48, 48))
    img[label * 16:(label + 1) * 16] += 140
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def kaggle_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kaggle") / "train"
    rng = np.random.default_rng(0)
    for label, emotion in enumerate(CLASSES):
        (root / emotion).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(synthetic_face(label, rng)).save(root / emotion / f"{i:03d}.jpg", quality=95)
    (root / "fear").mkdir()  # not among CLASSES: left out
    Image.fromarray(synthetic_face(0, rng)).save(root / "fear" / "000.jpg")
    return root


@pytest.fixture(scope="module")
def trained(kaggle_dir, tmp_path_factory):
    """One real training run; the stop request after the first epoch ends it early."""
    epochs_seen: list[tuple[int, dict]] = []
    out = tmp_path_factory.mktemp("models") / "tiny.keras"
    result = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=3, batch_size=8, out=out,
                       progress=lambda epoch, logs: epochs_seen.append((epoch, dict(logs))),
                       should_stop=lambda: len(epochs_seen) >= 1, seed=1, command="pytest")
    return result, epochs_seen


def test_build_presets():
    tiny = build_cnn("tiny", 6)
    assert tiny.input_shape == (None, 48, 48, 1) and tiny.output_shape == (None, 6)
    assert tiny.count_params() < 5000
    for preset in ("original", "strong", "resnet"):
        model = build_cnn(preset, 6)
        assert model.output_shape == (None, 6)
        assert 200_000 < model.count_params() < 3_000_000
    # resnet: residual blocks (Add layers) in a trunk twice as deep as strong's
    deep, strong = build_cnn("resnet", 6), build_cnn("strong", 6)
    convs = [sum(type(layer).__name__ == "Conv2D" for layer in m.layers) for m in (deep, strong)]
    assert convs[0] >= 2 * convs[1] and sum(type(layer).__name__ == "Add" for layer in deep.layers) == 8
    with pytest.raises(FerError, match="unknown CNN preset"):
        build_cnn("huge", 6)


def test_load_dataset_reads_gray_48(kaggle_dir, tmp_path):
    calls = []
    data = load_dataset(kaggle_dir, CLASSES, progress=lambda done, total: calls.append((done, total)))
    assert data.x.shape == (30, 48, 48, 1) and data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert np.bincount(data.y).tolist() == [10, 10, 10]
    assert calls[-1] == (30, 30)
    assert load_dataset(kaggle_dir, CLASSES, limit_per_class=2).y.tolist() == [0, 0, 1, 1, 2, 2]
    # A corrupt file is reported and skipped, the rest kept.
    root = tmp_path / "broken"
    (root / "happy").mkdir(parents=True)
    (root / "happy" / "bad.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(root / "happy" / "ok.png")
    broken = load_dataset(root, CLASSES)
    assert len(broken) == 1 and len(broken.skipped) == 1 and "bad.jpg" in broken.skipped[0]


def test_stratified_split_holds_out_every_class():
    y = np.repeat([0, 1, 2], [50, 20, 10])
    train, held = stratified_split(y, 0.1, seed=0)
    assert np.bincount(y[held]).tolist() == [5, 2, 1]
    assert len(set(train) & set(held)) == 0 and len(train) + len(held) == len(y)


def test_training_reports_stops_and_saves(trained):
    result, epochs_seen = trained
    assert [epoch for epoch, _ in epochs_seen] == [0]  # stopped after the first epoch
    assert result.stopped_by_user and result.epochs_run == 1
    assert {"accuracy", "loss", "val_accuracy"} <= set(epochs_seen[0][1])
    assert result.path.is_file() and result.metadata_path == result.path.with_suffix(".meta.json")
    meta = read_cnn_metadata(result.path)
    assert meta["classes"] == list(CLASSES) and meta["preset"] == "tiny" and meta["status"] == "done"
    assert meta["command"] == "pytest" and meta["n_val"] == 3 and meta["n_train"] == 27
    assert result.evaluation.n == 3 and 0.0 <= result.evaluation.accuracy <= 1.0
    assert meta["metrics"]["accuracy"] == result.evaluation.accuracy and "picked the best epoch" in meta["metrics"]["evaluated_on"]
    assert meta["evaluation"] == result.evaluation.to_dict()
    # Its TensorFlow Lite twin is written too, made from this very file (predictions need no TensorFlow).
    from fer_core.manifest import sha256_file

    assert meta["lite"]["file"] == "tiny.tflite" and result.path.with_suffix(".tflite").is_file()
    assert meta["lite"]["keras_sha256"] == sha256_file(result.path)


def test_a_stop_within_an_epoch_keeps_no_part_of_it(kaggle_dir, tmp_path):
    """Stop pressed during the first epoch gave a "model" of one batch, shown as "1 of 20" epochs
    and offered for saving; during a later epoch, that cut-short epoch counted as run and could be
    kept as the best. Now the first is nothing to save, and the second ends at the last whole epoch."""
    from fer_core.errors import StoppedBeforeAnEpoch
    from fer_core.predictors.cnn import training_path

    asked = []

    def stop_after(calls: int):
        asked.clear()
        return lambda: asked.append(1) or len(asked) > calls

    out = tmp_path / "first.keras"
    with pytest.raises(StoppedBeforeAnEpoch, match="stopped before the first epoch finished"):
        train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=3, batch_size=8, out=out,
                  should_stop=stop_after(1), seed=1)
    assert not out.exists() and not training_path(out).exists()
    # 27 images, batches of 8: four batches an epoch, then the epoch's own check; Stop in epoch 2's second batch
    epochs_seen: list[int] = []
    result = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=3, batch_size=8, out=tmp_path / "second.keras",
                       progress=lambda epoch, logs: epochs_seen.append(epoch), should_stop=stop_after(6), seed=1)
    assert result.stopped_by_user and result.epochs_run == 1 and epochs_seen == [0]
    assert len(result.history["val_accuracy"]) == 1 and np.isfinite(result.history["val_accuracy"]).all()


def test_reloaded_predictor_gives_same_probabilities(trained, kaggle_dir):
    result, _ = trained
    predictor = CNNPredictor(result.path)
    assert predictor.kind == "cnn" and predictor.classes == CLASSES and predictor.name == "tiny"
    assert predictor.runtime == "litert"  # the twin train_cnn wrote; compared with Keras below
    files = sorted(kaggle_dir.glob("*/*.jpg"))[:5]
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    images.append(np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8))  # any RGB photo
    proba = predictor.predict_proba(images)
    assert proba.shape == (6, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    x = predictor.preprocess(images)
    plain = predict_in_batches(result.model, x)
    mirrored = predict_in_batches(result.model, x[:, :, ::-1])
    np.testing.assert_allclose(proba, (plain + mirrored) / 2, atol=1e-5)  # face and its mirror
    no_mirror = CNNPredictor(result.path, tta="none")
    np.testing.assert_allclose(no_mirror.predict_proba(images), plain, atol=1e-5)
    keras = CNNPredictor(result.path, tta="none", runtime="keras")
    np.testing.assert_allclose(keras.predict_proba(images), plain, atol=1e-6)
    crops = CNNPredictor(result.path, tta="crops")  # ten views: five shifted crops and their mirrors
    views = tta_views(x, "crops")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    np.testing.assert_allclose(views[2][:, 2:, 2:], x[:, :-2, :-2])  # a corner crop is the face shifted 2 px
    np.testing.assert_allclose(crops.predict_proba(images),
                               np.mean([predict_in_batches(result.model, v) for v in views], axis=0), atol=1e-5)
    x = predictor.preprocess(images)
    assert x.shape == (6, 48, 48, 1) and x.dtype == np.float32
    assert predictor.predict_proba([]).shape == (0, 3)


def test_predictor_errors(trained, tmp_path):
    result, _ = trained
    with pytest.raises(FerError, match="unknown test-time augmentation 'tencrop'"):
        CNNPredictor(result.path, tta="tencrop")
    with pytest.raises(ModelFileError, match="file not found"):
        CNNPredictor(tmp_path / "none.keras", classes=CLASSES)
    text = tmp_path / "notes.keras"
    text.write_text("I am a text file\n")
    with pytest.raises(ModelFileError, match="not a Keras model"):
        CNNPredictor(text, classes=CLASSES)
    junk = tmp_path / "junk.keras"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("hello.txt", "no model here")
    with pytest.raises(ModelFileError, match="cannot load this Keras model") as info:
        CNNPredictor(junk, classes=CLASSES)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelFileError, match="not a .keras file"):
        CNNPredictor(tmp_path / "model.h5", classes=CLASSES)
    # classes given (the manifest's) that are not those its training recorded: refused, not relabelled
    with pytest.raises(ModelFileError, match="differ from those its training recorded"):
        CNNPredictor(result.path, classes=tuple(reversed(CLASSES)))
    bare = tmp_path / "bare.keras"
    bare.write_bytes(result.path.read_bytes())
    with pytest.raises(ModelFileError, match="3 outputs but 2 classes"):
        CNNPredictor(bare, classes=("happy", "sad"))
    with pytest.raises(ModelFileError, match="no class list") as info:
        CNNPredictor(bare)
    assert CNNPredictor(bare, classes=["Happiness", "sadness", "surprised"]).classes == CLASSES
    bare.with_suffix(".meta.json").write_text(json.dumps({"classes": list(CLASSES)}))  # as the message says
    assert '{"classes": ["angry", "happy", ...]}' in str(info.value) and CNNPredictor(bare).classes == CLASSES
    # a sidecar written with another key, and aliases naming one emotion twice: said as the person wrote them
    bare.with_suffix(".meta.json").write_text(json.dumps({"labels": list(CLASSES)}))
    with pytest.raises(ModelFileError, match=r'no class list \(bare\.meta\.json has no "classes"\)'):
        CNNPredictor(bare)
    with pytest.raises(ModelFileError, match=r"\['happy', 'joy', 'sad'\] names one emotion twice"):
        CNNPredictor(bare, classes=["happy", "joy", "sad"])
    bare.with_suffix(".meta.json").unlink()
    with pytest.raises(ModelFileError, match="unknown class"):
        CNNPredictor(bare, classes=["happy", "sad", "bored"])
    bare.with_suffix(".meta.json").write_text("[1, 2")
    with pytest.raises(ModelFileError, match=r"bare\.meta\.json: model metadata file is not valid JSON"):
        CNNPredictor(bare)


def test_lambda_model_is_not_loaded(tmp_path):
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ModelFileError, match=r"contains a Lambda layer \(Python code\), which is not loaded for safety"):
        CNNPredictor(path, classes=("happy", "sad"))


def test_output_must_end_in_keras(kaggle_dir, tmp_path):
    with pytest.raises(FerError, match="must end with .keras"):
        train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", out=tmp_path / "model.h5")


def test_real_fer2013_sample(fer_train, fer_val, tmp_path):
    """~10 real FER2013 images per emotion, given validation folder, balanced class weights."""
    result = train_cnn(fer_train, fer_val, classes=SIX_EMOTIONS, preset="tiny", epochs=1, batch_size=16,
                       out=tmp_path / "fer.keras", limit_per_class=10, class_weighting=True, seed=0)
    meta = json.loads(result.metadata_path.read_text())
    assert meta["n_train"] == 60 and meta["n_val"] == 60 and recorded_folder(meta["val_dir"]) == fer_val.resolve()
    # the figure is on a draw of val, and says so: "val (60 images)" read as all of val's 3,000
    assert result.evaluated_on == "val, at most 10 per emotion (60 images; it also picked the best epoch)"
    predictor = CNNPredictor(result.path)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((fer_val / "happy").glob("*.jpg"))[:4]]
    proba = predictor.predict_proba(images)
    assert proba.shape == (4, 6) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_holdout_picks_the_epoch_and_val_is_scored_untouched(kaggle_dir, tmp_path):
    """--holdout: a share of train chooses the epoch; the val folder is scored once, and the
    manifest metrics say which images did what (selected_on / evaluated_on)."""
    from fer_core.manifest import Metrics

    val = tmp_path / "val"
    rng = np.random.default_rng(5)
    for label, emotion in enumerate(CLASSES):
        (val / emotion).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(synthetic_face(label, rng)).save(val / emotion / f"{i:03d}.jpg", quality=95)
    result = train_cnn(kaggle_dir, val, classes=CLASSES, preset="tiny", epochs=2, batch_size=8,
                       out=tmp_path / "honest.keras", holdout=0.2, seed=0)
    meta = read_cnn_metadata(result.path)
    assert meta["n_train"] == 24 and meta["n_val"] == 6 and meta["holdout"] == 0.2  # 20 % of 30 picks
    assert result.selection.n == 6 and result.evaluation.n == 12  # val: all 12, scored once
    assert result.selected_on.startswith("20% of train held out") and "not used for any choice" in result.evaluated_on
    metrics = Metrics.from_dict(meta["metrics"])
    assert metrics.selected_on == result.selected_on and metrics.evaluated_on == result.evaluated_on
    assert metrics.n == 12 and meta["selection"]["n"] == 6
    with pytest.raises(FerError, match="holdout"):
        train_cnn(kaggle_dir, val, classes=CLASSES, preset="tiny", epochs=1, out=tmp_path / "x.keras", holdout=1.5)


def test_init_starts_a_network_from_a_trained_cnn(trained, kaggle_dir, tmp_path):
    """--init: the trunk and the shared emotions' head come from the trained CNN, so before any
    fitting the new network ranks the known emotions exactly as the old one did; a new emotion
    starts fresh, and the sidecar says where the network started."""
    from fer_core.predictors.cnn import copy_head, copy_trunk, load_keras_file

    result, _ = trained
    old = load_keras_file(result.path)
    classes = ("surprise", "fear", "happy", "sad")  # another order, and one emotion the old CNN lacks
    new = build_cnn("tiny", len(classes), seed=7)
    copy_trunk(new, old, "tiny")
    assert copy_head(new, old, classes, CLASSES) == ["fear"]
    x = np.random.default_rng(0).random((5, 48, 48, 1)).astype(np.float32)
    p_old, p_new = old.predict(x, verbose=0), new.predict(x, verbose=0)
    shared = p_new[:, [classes.index(c) for c in CLASSES]]
    np.testing.assert_allclose(shared / shared.sum(1, keepdims=True), p_old, atol=1e-5)

    with pytest.raises(ModelFileError, match="not a 'strong' preset network"):
        copy_trunk(build_cnn("strong", 3), old, "strong")

    tuned = train_cnn(kaggle_dir, classes=("surprise", "happy", "sad"), preset="tiny", epochs=1, batch_size=8,
                      out=tmp_path / "tuned.keras", init=result.path, learning_rate=3e-4, seed=0)
    meta = read_cnn_metadata(tuned.path)
    assert meta["init"] == str(result.path) and meta["init_fresh_classes"] == [] and meta["learning_rate"] == 3e-4
    assert meta["init_picked_on_val"] is False  # the old CNN chose its epoch on a share of train
    # a reproducibility audit: where it started, by its bytes (the file is overwritten by a later run),
    # and what trained it (the AU models said it; the networks kept only Keras's version)
    from fer_core.manifest import sha256_file

    assert meta["init_sha256"] == sha256_file(result.path)
    assert meta["fitted_by"]["versions"]["tensorflow"] and meta["fitted_by"]["workbench"]
    assert len(meta["fitted_by"]["code_sha256"]) == 64 and meta["stopped_by"] is None


def test_a_run_its_time_limit_ended_is_not_recorded_as_stopped_by_a_person(kaggle_dir, tmp_path):
    """--max-minutes ended 32 of 60 epochs and the sidecar said "stopped_by_user": true; nobody had
    stopped it, and the same command on another machine runs another number of epochs."""
    done: list[int] = []
    result = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=5, batch_size=8, out=tmp_path / "t.keras",
                       progress=lambda epoch, logs: done.append(epoch), should_stop=lambda: bool(done),
                       stop_reason="max-minutes", seed=3)
    meta = read_cnn_metadata(result.path)
    assert result.epochs_run == 1 and meta["epochs"] == 5 and meta["seed"] == 3
    assert meta["stopped_by"] == "max-minutes" and meta["stopped_by_user"] is False
    # the limit reached as the last epoch ended: every epoch ran, nothing was cut short by it
    done.clear()
    whole = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=1, batch_size=8, out=tmp_path / "w.keras",
                      progress=lambda epoch, logs: done.append(epoch), should_stop=lambda: bool(done),
                      stop_reason="max-minutes", seed=3)
    assert whole.epochs_run == 1 and read_cnn_metadata(whole.path)["stopped_by"] is None


def test_picked_on_split_reads_the_starting_cnns_sidecar(tmp_path):
    """Scores of a network started from a CNN whose epoch the same val split picked are flagged."""
    from fer_core.predictors.cnn import fitted_on, picked_on_split

    val = tmp_path / "val"
    model = tmp_path / "start.keras"
    model.with_suffix(".meta.json").write_text(json.dumps({"val_dir": str(val), "holdout": None}))
    assert picked_on_split(model, val) and not picked_on_split(model, tmp_path / "other")
    model.with_suffix(".meta.json").write_text(json.dumps({"val_dir": str(val), "holdout": 0.1}))
    assert not picked_on_split(model, val)  # a share of train picked it: val untouched
    model.with_suffix(".meta.json").write_text(json.dumps({"val_dir": str(val), "holdout": 0.1,
                                                           "init_picked_on_val": True}))
    assert picked_on_split(model, val)  # ... but it started from one val picked
    assert not picked_on_split(model, tmp_path / "other")  # which says nothing of another folder
    assert not picked_on_split(tmp_path / "none.keras", val)

    train = tmp_path / "train"
    model.with_suffix(".meta.json").write_text(json.dumps({"train_dir": str(train), "val_dir": str(val)}))
    assert fitted_on(model, train) and not fitted_on(model, tmp_path / "other")  # all of train was fitted
    model.with_suffix(".meta.json").write_text(json.dumps({"train_dir": str(train), "val_dir": None}))
    assert not fitted_on(model, train)  # without a val folder 10 % of train was held out


def test_an_interrupted_training_leaves_its_init_model_at_out_as_it_was(trained, kaggle_dir, tmp_path):
    """`train-cnn --init X --out X` (how the bundled scratch CNN was trained in three runs): an
    interrupt after the first epoch's checkpoint used to leave X overwritten and its sidecar saying
    "training". X and its sidecar are now replaced only when the run is done."""
    import hashlib
    import shutil

    result, _ = trained
    out = tmp_path / "x.keras"
    shutil.copy(result.path, out)
    shutil.copy(result.metadata_path, out.with_suffix(".meta.json"))
    before = hashlib.sha256(out.read_bytes()).hexdigest(), out.with_suffix(".meta.json").read_text()

    def interrupt(epoch, logs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=2, batch_size=8, out=out, init=out,
                  progress=interrupt)
    assert (hashlib.sha256(out.read_bytes()).hexdigest(), out.with_suffix(".meta.json").read_text()) == before
    done = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=1, batch_size=8, out=out, init=out)
    assert done.path == out and read_cnn_metadata(out)["status"] == "done"
    assert not (tmp_path / "x.training.keras").exists() and not (tmp_path / "x.training.meta.json").exists()


def test_one_emotion_and_bad_numbers_are_refused_before_training(kaggle_dir, tmp_path, capsys):
    """A folder of one emotion used to train and report 100 %; 0 or negative sizes ended in "a bug"."""
    from fer_core.cli import main
    from fer_core.errors import DatasetError

    with pytest.raises(DatasetError, match="images of happy only"):
        train_cnn(kaggle_dir, classes=("happy", "angry"), preset="tiny", epochs=1, out=tmp_path / "one.keras")
    assert not (tmp_path / "one.keras").exists()
    # an emotion asked for without training images: it was saved as predicting one it never saw
    with pytest.raises(DatasetError, match=r"no training images of angry; add angry/ images or train on the emotions it has \(--classes happy,sad\)"):
        train_cnn(kaggle_dir, classes=("happy", "sad", "angry"), preset="tiny", epochs=1, out=tmp_path / "two.keras")
    for option, value in (("--batch-size", "0"), ("--limit-per-class", "-3"), ("--epochs", "0")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train-cnn", "--data", str(kaggle_dir), "--out", str(tmp_path / "x.keras"), "--preset", "tiny",
                  option, value])
        assert exit_info.value.code == 2 and "is not a whole number of at least 1" in capsys.readouterr().err


def test_an_init_whose_sidecar_names_other_classes_than_its_outputs_is_one_line(trained, kaggle_dir, tmp_path):
    import json
    import shutil

    result, _ = trained
    init = tmp_path / "init.keras"
    shutil.copy(result.path, init)
    meta = json.loads(result.metadata_path.read_text())
    init.with_suffix(".meta.json").write_text(json.dumps({**meta, "classes": list(SIX_EMOTIONS)}))
    with pytest.raises(ModelFileError, match="has 3 outputs but its sidecar names 6 emotions"):
        train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=1, batch_size=8, out=tmp_path / "n.keras",
                  init=init)


def test_the_honesty_checks_read_the_same_from_any_folder(fer_val, tmp_path, monkeypatch):
    """A sidecar's folders are kept relative to the repository, so 'was val used to pick the
    starting network's epoch?' has one answer whether the command runs in the repository or not."""
    from fer_core.config import REPO_ROOT
    from fer_core.predictors.cnn import picked_on_split

    bundled = REPO_ROOT / "models" / "cnn_fer2013.keras"
    if not bundled.is_file():
        pytest.skip("the bundled CNN is not here")
    here = picked_on_split(bundled, fer_val)
    monkeypatch.chdir(tmp_path)
    assert picked_on_split(bundled, fer_val) == here


def test_a_split_too_small_says_so_in_the_users_terms_and_in_korean():
    from fer_core import i18n
    from fer_core.errors import DatasetError

    with pytest.raises(DatasetError) as info:
        stratified_split(np.array([0, 0, 0, 1]), 0.1)
    text = str(info.value)
    assert text == ("too few images to hold out 10% of every emotion (4 images, the fewest 1 of one emotion); add "
                    "its images, or let a validation folder choose the epoch (--val without --holdout)")
    with pytest.raises(DatasetError, match="the fewest 1 of sad\\); add sad images"):
        stratified_split(np.array([0, 0, 0, 1]), 0.1, classes=("happy", "sad"))
    with i18n.using_language("ko"):
        for english in (text, "another CNN training is running on this server; wait for it to finish or stop it "
                              "on the CNN page", "training failed (OSError: disk full); see the server log"):
            assert i18n.message(english) != english


def test_a_held_out_share_the_starting_network_learnt_is_named(trained, kaggle_dir, tmp_path):
    """A start trained on other emotions (or another share or seed) drew its own held-out share:
    most of the new one may be images it learnt, which flatters the first epochs. The sidecar's
    selected_on says how many; with the start's own split, none."""
    result, _ = trained  # three emotions, 10 % held out (no --val), seed 1
    other = train_cnn(kaggle_dir, classes=("happy", "sad"), preset="tiny", epochs=1, batch_size=8, holdout=0.5,
                      out=tmp_path / "other.keras", init=result.path, seed=0)
    assert f"but {result.path.stem} was fitted on" in other.selected_on
    same = train_cnn(kaggle_dir, classes=CLASSES, preset="tiny", epochs=1, batch_size=8, holdout=0.1,
                     out=tmp_path / "same.keras", init=result.path, seed=1)
    assert "was fitted on" not in same.selected_on


def test_photos_are_trained_on_the_face_prediction_cuts_from_them(tmp_path, astronaut, fer_val):
    """A lab's own photos (larger than face crops, the face off-centre on a background) were trained
    on whole, shrunk to 48 px, while Try it, evaluate and compare cut the face out: the network
    learned other pictures than it answered. Each photo's input is now the face as prediction cuts
    it; a photo without a face is left out and said; FER2013's crops are taken whole as before."""
    from fer_core.images import LabeledImage
    from fer_core.pipeline import prepare_faces

    root = tmp_path / "mine"
    for emotion in ("happy", "sad"):
        (root / emotion).mkdir(parents=True)
        for src in sorted((fer_val / emotion).glob("*.jpg"))[:2]:  # FER2013 crops, taken whole
            (root / emotion / src.name).write_bytes(src.read_bytes())
    canvas = Image.new("RGB", (520, 400), (40, 120, 60))
    canvas.paste(Image.fromarray(astronaut).crop((130, 10, 330, 230)), (290, 150))  # off-centre
    canvas.save(root / "happy" / "photo.jpg", quality=92)
    Image.new("RGB", (300, 300), (200, 180, 160)).save(root / "sad" / "wall.jpg")  # no face

    calls = []
    data = load_dataset(root, classes=("happy", "sad"), progress=lambda done, total: calls.append((done, total)))
    assert data.face_cut == 1 and len(data) == 5
    assert calls[-1] == (8, 8), calls  # 6 files read, then the 2 photos measured: a Stop is read there too
    assert [line for line in data.skipped if "wall.jpg" in line and "no face found" in line], data.skipped
    photo = data.paths.index(root / "happy" / "photo.jpg")
    shown = prepare_faces([LabeledImage(root / "happy" / "photo.jpg", "happy")], need_aus=False, need_pixels=True)
    assert shown.faces[0].found
    as_predicted = fit_images([shown.faces[0].pixels], (48, 48), 1)[0] / 255.0
    assert np.abs(data.x[photo] - as_predicted).max() < 1e-6, "the network is shown what prediction shows it"
    whole = fit_images([root / "happy" / "photo.jpg"], (48, 48), 1)[0] / 255.0
    assert np.abs(data.x[photo] - whole).mean() > 0.05, "not the whole photo shrunk"
    crop = data.paths.index(next(p for p in data.paths if p.name != "photo.jpg"))
    assert np.abs(data.x[crop] - fit_images([data.paths[crop]], (48, 48), 1)[0] / 255.0).max() < 1e-6


def test_train_cnn_says_what_it_trained_on_and_registers_no_network_that_answers_one_emotion(capsys, tmp_path,
                                                                                                 monkeypatch):
    """A small set of one's own photos: the CLI named no file it left out, gave no images per emotion
    and no hint for an unbalanced or small set, and registered a network that said happy for every
    face, which then joined Try it's models. It now says all that, and keeps such a network out of
    the manifest (the file is written, and how to register it anyway is said)."""
    from fer_core.cli import main

    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "models"))
    root = tmp_path / "same"
    for emotion, n in (("happy", 12), ("sad", 3)):
        (root / emotion).mkdir(parents=True)
        for i in range(n):  # every picture the same: no network can tell them apart
            Image.new("L", (48, 48), 128).save(root / emotion / f"{i}.png")
    (root / "sad" / "notes.jpg").write_text("not a picture")
    (root / "Angry_kids").mkdir()  # named after no emotion: its images were dropped without a word
    Image.new("L", (48, 48), 128).save(root / "Angry_kids" / "0.png")
    out = tmp_path / "same.keras"
    code = main(["train-cnn", "--data", str(root), "--val", str(root), "--out", str(out), "--preset", "tiny",
                 "--epochs", "1", "--classes", "happy,sad", "--name", "same-cnn"])
    err = capsys.readouterr().err
    assert code == 1 and out.is_file() and "not registered as 'same-cnn'" in err and "--register-anyway" in err
    assert not (tmp_path / "models" / "manifest.json").exists() or "same-cnn" not in (
        tmp_path / "models" / "manifest.json").read_text()
    assert "left out: " in err and "notes.jpg" in err and "left out: Angry_kids" in err
    assert "training images per emotion: happy 12, sad 3" in err
    assert "--class-weighting" in err and "--init cnn-fer2013" in err
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["class_counts"] == {"happy": 12, "sad": 3} and meta["skipped_count"] == 4  # train and val
    assert any("notes.jpg" in line for line in meta["skipped"])
    registered = tmp_path / "registered.keras"  # a registered network at --out is not overwritten by one refused
    assert main(["train-cnn", "--data", str(root), "--out", str(registered), "--preset", "tiny", "--epochs", "1",
                 "--classes", "happy,sad", "--name", "same-cnn", "--register-anyway"]) == 0
    before = registered.read_bytes()
    assert main(["train-cnn", "--data", str(root), "--out", str(registered), "--preset", "tiny", "--epochs", "1",
                 "--classes", "happy,sad", "--name", "same-cnn", "--replace", "--seed", "1"]) == 1
    assert registered.read_bytes() == before  # kept at the training's own path, said
    assert "it is in " + str(tmp_path / "registered.training.keras") in capsys.readouterr().err


def test_a_validation_folder_without_an_emotion_says_it_was_not_tested_on_it(kaggle_dir, tmp_path):
    """A three-emotion network scored on a validation folder with no surprise images was recorded as
    scored on "val (20 images)", as if surprise had been tested."""
    import shutil

    val = tmp_path / "val"
    for emotion in ("happy", "sad"):
        shutil.copytree(kaggle_dir / emotion, val / emotion)
    (val / "surprise").mkdir()  # empty
    result = train_cnn(kaggle_dir, val, classes=CLASSES, preset="tiny", epochs=1, out=tmp_path / "m.keras",
                       holdout=0.3)
    assert result.evaluated_on.endswith("; no surprise images: not tested on it)"), result.evaluated_on
    assert "not tested on it" in json.loads(result.metadata_path.read_text())["metrics"]["evaluated_on"]


def test_held_out_copies_of_fitted_images_are_fitted_instead(tmp_path):
    """FER2013 train repeats 1,236 of its files: a tenth held out to choose the epoch held about
    200 pictures the network was fitting. A held-out image whose bytes a fitted image has moves to
    the fitted part (as train-au moves its rows); its other images stay held out."""
    from fer_core.predictors.cnn import copies_to_fitting

    paths = []
    for i, shade in enumerate((10, 20, 10, 30, 20)):  # 2 is a copy of 0, 4 of 1
        paths.append(tmp_path / f"{i}.png")
        Image.new("L", (48, 48), shade).save(paths[-1])
    fit, held, moved = copies_to_fitting(paths, np.array([0, 1]), np.array([2, 3, 4]))
    assert (fit.tolist(), held.tolist(), moved) == ([0, 1, 2, 4], [3], 2)
    fit, held, moved = copies_to_fitting(paths, np.array([3]), np.array([0, 1]))
    assert (fit.tolist(), held.tolist(), moved) == ([3], [0, 1], 0)
    # an emotion all of whose held-out images are copies keeps them: it would drop out of the choice
    y = np.array([0, 1, 0, 0, 1])
    fit, held, moved = copies_to_fitting(paths, np.array([0, 1]), np.array([2, 3, 4]), y)
    assert (fit.tolist(), held.tolist(), moved) == ([0, 1, 2], [3, 4], 1)


def test_a_recorded_dataset_folder_is_found_under_fer_data_dir(tmp_path, monkeypatch):
    """A sidecar records ../shared/datasets/fer2013/train; a lab whose FER2013 lives elsewhere
    (FER_DATA_DIR) got no note of a test set drawn from the folder a network learnt from."""
    moved = tmp_path / "data" / "fer2013" / "train"
    moved.mkdir(parents=True)
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "data"))
    assert recorded_folder("../no-such-checkout/datasets/fer2013/train") == moved.resolve()
    assert recorded_folder("../no-such-checkout/datasets/fer2013/val") != moved.resolve()  # not there either
    assert recorded_folder(str(moved)) == moved.resolve() and recorded_folder(None) is None
