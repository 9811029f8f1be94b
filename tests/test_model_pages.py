"""The AU model and CNN pages as a researcher uses them (issue 12): a model that has not learned is
flagged before it is saved, every result can be downloaded (the bytes parse back), a model not
yet saved can be compared, the MLP reports its real epochs, folder evaluations name their folder,
and both pages read in Korean with no English left."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest
import test_app_models
from apptest_helpers import english_left, heading_levels, page_texts, run_app, skipped_heading_levels, texts
from conftest import BUNDLED_AU_MODEL
from streamlit.testing.v1 import AppTest

from fer_core import config, i18n
from fer_core.au_table import AU_COLUMNS
from fer_core.emotions import SIX_EMOTIONS
from fer_core.evaluation.metrics import degenerate_model_warning, evaluation_report
from fer_core.manifest import read_manifest

ROOT = config.REPO_ROOT
AU_PAGE = str(ROOT / "pages" / "2_AU_model.py")
CNN_PAGE = str(ROOT / "pages" / "4_CNN.py")
T = 240


# -- fixtures ---------------------------------------------------------------------------------------


# The FER2013 sample and the tiny CNN of the model-page tests (module-scoped: made once here too).
fer_small, tiny_cnn = test_app_models.fer_small, test_app_models.tiny_cnn
_register_cnn = test_app_models._register_tiny_cnn


def _au_csv(counts: dict[str, int], informative: bool, seed: int = 0) -> bytes:
    """An AU table: with ``informative`` each emotion raises its own AU, else the AUs are noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, (emotion, n) in enumerate(counts.items()):
        for _ in range(n):
            aus = rng.uniform(0, 1, len(AU_COLUMNS))
            if informative:
                aus[3 * k] += 3
            rows.append([emotion, *aus.round(3)])
    return pd.DataFrame(rows, columns=["label", *AU_COLUMNS]).to_csv(index=False).encode()


def _upload(at: AppTest, data: bytes, name: str = "faces.csv") -> AppTest:
    # AppTest finds a choice by formatting it with the page's format function in the test's thread,
    # so a Korean page is driven inside i18n.using_language("ko") (else no label matches)
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    run_app(at, T)
    at.radio(key="au_openface").set_value("Upload a CSV")
    run_app(at, T)
    at.file_uploader(key="au_csv").set_value((name, data, "text/csv"))
    return run_app(at, T)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# -- the collapse check -----------------------------------------------------------------------------
def test_a_collapsed_model_is_flagged_and_a_healthy_one_is_not():
    truth = [e for e in SIX_EMOTIONS for _ in range(10)]
    collapsed = evaluation_report(truth, ["disgust"] * len(truth), SIX_EMOTIONS)  # the tiny preset's 10 %
    warning = degenerate_model_warning(collapsed)
    assert warning is not None and "predicts disgust for 100% of the images" in warning
    assert "no better than guessing among 6 emotions (16.7%)" in warning
    healthy_pred = list(truth)
    for i in range(0, len(truth), 4):  # 75 % right, the errors spread over every class
        healthy_pred[i] = SIX_EMOTIONS[(SIX_EMOTIONS.index(truth[i]) + 1) % 6]
    assert degenerate_model_warning(evaluation_report(truth, healthy_pred, SIX_EMOTIONS)) is None
    # one class for 85 % of the images flags even an accuracy above chance
    skewed = ["happy"] * 51 + truth[51:]
    report = evaluation_report(truth, skewed, SIX_EMOTIONS)
    assert report.accuracy > 1 / 6
    assert "predicts happy for 85% of the images" in degenerate_model_warning(report)
    assert "guessing" not in degenerate_model_warning(report)
    # below chance without collapsing: every prediction spread but wrong
    shifted = [SIX_EMOTIONS[(SIX_EMOTIONS.index(e) + 1) % 6] for e in truth]
    below = degenerate_model_warning(evaluation_report(truth, shifted, SIX_EMOTIONS))
    assert below is not None and "0.0%" in below and "predicts" not in below
    with i18n.using_language("ko"):
        assert "혐오" in degenerate_model_warning(collapsed)
    # above chance and spread, but some emotions the test images show are never answered (a small
    # table's MLP: 0.400 on seven emotions, never fear, sad or surprise)
    silent = [e if e in ("angry", "happy", "neutral") else "neutral" if e == "sad" else "happy" for e in truth]
    report = evaluation_report(truth, silent, SIX_EMOTIONS)
    assert report.accuracy == 0.5 and report.predicts_one_class(0.8) is None
    warning = degenerate_model_warning(report)
    assert "It never answers disgust, sad, surprise, though the test images show them." in warning
    assert "guessing" not in warning and "predicts" not in warning
    assert degenerate_model_warning(evaluation_report(truth[:40], silent[:40], SIX_EMOTIONS)) is not None
    only_shown = evaluation_report([e for e in truth if e != "sad"], [e for e, t in zip(silent, truth) if t != "sad"],
                                   SIX_EMOTIONS)  # no sad images: never answering sad says nothing
    assert "sad" not in degenerate_model_warning(only_shown)
    assert degenerate_model_warning(evaluation_report([], [], SIX_EMOTIONS)) is None


# -- the MLP reports its epochs ---------------------------------------------------------------------
def test_the_mlp_reports_each_epoch_of_both_fits():
    from fer_core.predictors.au_models import fit_au_model

    table = pd.read_csv(io.BytesIO(_au_csv({"angry": 60, "happy": 60, "sad": 60}, informative=True)))
    steps, epochs = [], []
    model = fit_au_model(table, ("angry", "happy", "sad"), kind="au-mlp", progress=lambda d, n: steps.append(d),
                         epoch_progress=lambda e, most: epochs.append((len(steps), e, most)))
    assert model.kind == "au-mlp" and steps == [0, 1, 2, 3]
    held_out = [e for s, e, _ in epochs if s == 1]  # during the fit for the held-out scores
    refit = [e for s, e, _ in epochs if s == 3]  # during the refit on every face
    for run in (held_out, refit):
        assert run and run == list(range(1, len(run) + 1)) and len(run) < 300  # early stopping ends it
    assert {most for *_, most in epochs} == {300}


# -- AU model page ----------------------------------------------------------------------------------
def test_au_page_trains_offers_downloads_and_the_unsaved_model(models_dir, downloads):
    from fer_core.predictors.au_models import AUModel, AUPredictor

    at = _upload(run_app(AppTest.from_file(AU_PAGE), T),
                 _au_csv({"angry": 40, "happy": 40, "sad": 40}, informative=True), "clear.csv")
    at.button(key="au_train_button").click()
    run_app(at, T)
    model = at.session_state["au_train"]["model"]
    metrics = _metrics(at)
    assert metrics["Usable faces of these emotions (all)"] == "120" and metrics["Held-out faces"] == "30"
    usable = [m for m in at.metric if m.label == "Usable faces of these emotions (all)"][-1]  # the first: the inspected
    assert "90 were fitted and 30 held out" in usable.proto.help and "refitted on all of them" in usable.proto.help
    lo, hi = model.holdout.accuracy_ci95  # the interval in sight (it was in the metric's "?" only)
    assert f"95% interval of the held-out accuracy: {lo:.1%}–{hi:.1%}, on 30 held-out faces" in " ".join(
        c.value for c in at.caption)
    assert not at.warning  # a model that learned gets no warning
    # the result and save sections are h2 under the page's h1 (were h3: a skipped level)
    headings = heading_levels(at.main)
    assert skipped_heading_levels(headings) == [] and [level for level, _ in headings].count(2) >= 3, headings
    # the model file, exactly what saving writes, loads back and predicts as the trained model does
    saved = AUModel.from_dict(json.loads(downloads["au-logreg-clear.json"]))
    x = np.random.default_rng(1).uniform(0, 4, (5, len(AU_COLUMNS)))
    np.testing.assert_allclose(saved.predict_proba(x), model.predict_proba(x))
    # the weights as a paper's table give back the model's scores: (x - mean) / sd @ weights + intercept
    weights = pd.read_csv(io.BytesIO(downloads["au-logreg-clear_weights.csv"]))
    per_au, intercept = weights.iloc[:-1], weights.iloc[-1]
    assert list(per_au["au"]) == list(model.au_columns) and intercept["au"] == "intercept"
    standard = (x - per_au["training_mean"].to_numpy()) / per_au["training_sd"].to_numpy()
    scores = standard @ per_au[list(model.classes)].to_numpy() + intercept[list(model.classes)].to_numpy(dtype=float)
    np.testing.assert_allclose(scores, model.logits(x))
    assert saved.info["command"] == ("dashboard: AU model page (clear.csv); the same fit: python -m fer_core train-au "
                                     f"TABLE --out MODEL.json --kind logreg --classes {','.join(model.classes)} "
                                     "--class-weight none --holdout 0.25 --seed 0")
    # Compare can use it before it is saved
    unsaved = at.session_state["_unsaved_models"]
    assert isinstance(unsaved["au-logreg-clear"], AUPredictor) and unsaved["au-logreg-clear"].model is model
    assert any("Compare page offers it as au-logreg-clear" in c for c in texts(at.caption))
    # the result line names the kind once; "(explainable, the default)" is the choice's, above it
    shown = page_texts(at) + list(at.radio(key="au_kind").options)
    assert any(c.startswith("Logistic regression on clear.csv") for c in texts(at.caption))
    assert sum(s.count("explainable, the default") for s in shown) == 1, shown
    at.text_input(key="au_save_name").set_value("au-clear")
    at.button(key="au_save").click()
    run_app(at, T)
    assert (models_dir / "au-clear.json").read_bytes() == downloads["au-logreg-clear.json"]
    # recorded as train-au records it, the seed that chose the held-out faces included
    (entry,) = [e for e in read_manifest(models_dir) if e.name == "au-clear"]
    assert entry.metrics.evaluated_on == ("25% of clear.csv held out from fitting (stratified, seed 0); the model saved "
                                         "was then refitted on every row")


def test_au_page_shows_the_mlps_epochs_while_it_trains(models_dir, monkeypatch):
    from streamlit.delta_generator import DeltaGenerator

    shown: list[str] = []
    original = DeltaGenerator.progress

    def progress(self, value, text=None):
        shown.append(text or "")
        return original(self, value, text=text)

    monkeypatch.setattr(DeltaGenerator, "progress", progress)
    at = _upload(run_app(AppTest.from_file(AU_PAGE), T),
                 _au_csv({"angry": 40, "happy": 40, "sad": 40}, informative=True), "clear.csv")
    at.radio(key="au_kind").set_value("au-mlp")
    at.button(key="au_train_button").click()
    run_app(at, T)
    assert at.session_state["au_train"]["model"].kind == "au-mlp"
    first = [s for s in shown if s.startswith("Fitting for the held-out scores (1 of 2): epoch ")]
    refit = [s for s in shown if s.startswith("Refitting on all faces (2 of 2): epoch ")]
    assert first and refit and first[0].startswith("Fitting for the held-out scores (1 of 2): epoch 1 (at most 300")
    assert [int(s.split("epoch ")[1].split()[0]) for s in refit] == list(range(1, len(refit) + 1))


def test_au_page_warns_before_saving_a_model_that_predicts_one_emotion(models_dir):
    at = _upload(run_app(AppTest.from_file(AU_PAGE), T),
                 _au_csv({"angry": 170, "happy": 15, "sad": 15}, informative=False), "noise.csv")
    at.button(key="au_train_button").click()
    run_app(at, T)
    warnings = texts(at.warning)
    assert any(w.startswith("This model predicts angry for") for w in warnings), warnings
    assert at.button(key="au_save")  # still offered, but not without a word


def test_au_page_offers_the_extracted_table(models_dir, fer_small, downloads):
    at = run_app(AppTest.from_file(AU_PAGE), T)
    at.radio(key="au_source").set_value("Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)")
    run_app(at, T)
    at.text_input(key="au_folder").set_value(str(fer_small))
    at.number_input(key="au_per").set_value(0)
    at.button(key="au_extract").click()
    run_app(at, T)
    table = next(v["table"] for k, v in at.session_state["au_tables"].items() if "|" in k)
    got = pd.read_csv(io.BytesIO(downloads[f"{fer_small.name}_au.csv"]))
    assert len(got) == len(table) == 18 and set(AU_COLUMNS) <= set(got.columns)
    assert sorted(got["label"].unique()) == sorted(SIX_EMOTIONS)
    np.testing.assert_allclose(got["AU12_r"].to_numpy(float), table["AU12_r"].to_numpy(float), atol=1e-6, equal_nan=True)


def test_au_page_in_korean_has_no_english_left(models_dir):
    at = AppTest.from_file(AU_PAGE)
    at.query_params["lang"] = "ko"
    with i18n.using_language("ko"):  # widgets' choices are labelled, and so found, in Korean
        run_app(at, T)
        assert at.title[0].value == "AU 모델"
        assert english_left(page_texts(at), (BUNDLED_AU_MODEL,)) == []
        _upload(at, _au_csv({"angry": 40, "happy": 40, "sad": 40}, informative=True), "clear.csv")
        at.button(key="au_train_button").click()
        run_app(at, T)
    assert "au_train" in at.session_state
    assert english_left(page_texts(at), (BUNDLED_AU_MODEL, "au-logreg-clear")) == []
    english = run_app(AppTest.from_file(AU_PAGE), T)
    assert english.title[0].value == "AU model" and english.radio(key="au_source").label == "AU source"


# -- CNN page ---------------------------------------------------------------------------------------
def test_cnn_page_in_korean_has_no_english_left(models_dir):
    at = AppTest.from_file(CNN_PAGE)
    at.query_params["lang"] = "ko"
    with i18n.using_language("ko"):
        run_app(at, T)
    assert at.header[0].value == "저장된 CNN"
    assert english_left(page_texts(at)) == []
    english = run_app(AppTest.from_file(CNN_PAGE), T)
    assert [s.value for s in english.header] == ["Saved CNNs", "Train a CNN"]


def test_cnn_page_mentions_starting_tensorflow_only_when_it_is_not_loaded(models_dir, fer_small, tiny_cnn,
                                                                          monkeypatch):
    _register_cnn(models_dir, tiny_cnn, twin=False)  # a CNN without a TensorFlow Lite twin needs TensorFlow
    monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow", object()))
    at = run_app(AppTest.from_file(CNN_PAGE), T)
    caption = next(c for c in texts(at.caption) if c.startswith("Runs the model on the images"))
    assert "TensorFlow" not in caption
    monkeypatch.delitem(sys.modules, "tensorflow")  # the page only looks: nothing imports it here
    at = run_app(AppTest.from_file(CNN_PAGE), T)
    caption = next(c for c in texts(at.caption) if c.startswith("Runs the model on the images"))
    assert "the first run starts TensorFlow" in caption
    _register_cnn(models_dir, tiny_cnn)  # with its twin, nothing to start
    at = run_app(AppTest.from_file(CNN_PAGE), T)
    caption = next(c for c in texts(at.caption) if c.startswith("Runs the model on the images"))
    assert "TensorFlow" not in caption


def test_cnn_folder_evaluation_names_its_folder_and_downloads(models_dir, fer_small, tiny_cnn, downloads):
    _register_cnn(models_dir, tiny_cnn)
    at = run_app(AppTest.from_file(CNN_PAGE), T)
    at.text_input(key="cnn_eval_folder").set_value(str(fer_small))
    at.number_input(key="cnn_eval_per").set_value(0)
    at.button(key="cnn_eval_button").click()
    run_app(at, T)
    metrics = _metrics(at)
    label = f"Accuracy on {fer_small.name}"
    assert label in metrics and metrics["Images"] == "18"
    assert "Validation accuracy" in metrics  # the saved scores above are on its validation images
    stem = f"tiny-cnn_{fer_small.name}"
    per_image = pd.read_csv(io.BytesIO(downloads[f"{stem}_predictions.csv"]))
    assert list(per_image.columns[:4]) == ["file", "label", "predicted", "correct"]
    assert [c for c in per_image.columns if c.startswith("p_")] == [f"p_{e}" for e in SIX_EMOTIONS]
    assert len(per_image) == 18 and per_image["file"].str.split("/").str[0].isin(SIX_EMOTIONS).all()
    probabilities = per_image[[f"p_{e}" for e in SIX_EMOTIONS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert (per_image["predicted"] == np.array(SIX_EMOTIONS)[probabilities.argmax(axis=1)]).all()
    scores = json.loads(downloads[f"{stem}_metrics.json"])
    assert scores["n"] == 18 and scores["model"] == "tiny-cnn" and scores["folder"] == str(fer_small)
    assert metrics[label] == f"{scores['accuracy']:.1%}"
    assert scores["accuracy"] == pytest.approx(per_image["correct"].mean(), abs=1e-4)


def test_cnn_training_result_is_checked_and_offered_to_compare(models_dir, fer_small, downloads):
    from fer_core.predictors.cnn import CNNPredictor

    at = run_app(AppTest.from_file(CNN_PAGE), T)
    at.text_input(key="cnn_train_dir").set_value(str(fer_small))
    at.text_input(key="cnn_val_dir").set_value(str(fer_small))
    at.selectbox(key="cnn_preset").set_value("tiny")
    at.number_input(key="cnn_epochs").set_value(1)
    at.selectbox(key="cnn_batch").set_value(16)
    run_app(at, T)
    at.button(key="cnn_start").click()
    run_app(at, T)
    job = at.session_state["cnn_job"]
    job.thread.join(300)
    assert not job.running
    run_app(at, T)
    assert job.phase == "done", job.error
    expected = degenerate_model_warning(job.result.evaluation)
    warnings = texts(at.warning)
    # one tiny epoch on 18 faces: the check decides, and the page shows exactly its verdict once
    assert (expected in warnings and warnings.count(expected) == 1) if expected else not warnings
    name = f"cnn-tiny-{fer_small.name}"
    predictor = at.session_state["_unsaved_models"][name]
    assert isinstance(predictor, CNNPredictor) and predictor.classes == SIX_EMOTIONS
    assert predictor.predict_proba([np.zeros((48, 48, 3), np.uint8)]).shape == (1, 6)
    assert any(f"Compare page offers it as {name}" in c for c in texts(at.caption))
    headings = heading_levels(at.main)  # the result and save sections: h2 under the h1 (were h3)
    assert skipped_heading_levels(headings) == [] and [level for level, _ in headings].count(2) >= 3, headings
    # the result can be downloaded: the network and its record
    network, record = downloads[f"{name}.keras"], downloads[f"{name}.meta.json"]
    network, record = (f() if callable(f) else f for f in (network, record))
    assert network[:2] == b"PK" and json.loads(record)["status"] == "done"
    # a reload (a new session at the page's address) takes up the finished, unsaved training instead of losing it
    assert at.query_params["training"] == job.token
    del at.query_params["training"]  # a visit to another page clears the address's parameters ...
    run_app(at, T)
    assert at.query_params["training"] == job.token  # ... and coming back puts the run in it again
    again = AppTest.from_file(CNN_PAGE)
    again.query_params["training"] = job.token
    run_app(again, T)
    assert again.session_state["cnn_job"] is job and again.button(key="cnn_save") is not None
    # another person's session on the same server is told of it, and can neither save nor stop it
    other = run_app(AppTest.from_file(CNN_PAGE), T)
    assert "cnn_job" not in other.session_state
    assert not [b for b in other.button if b.key in ("cnn_save", "cnn_stop")]
    assert any("another browser session trained" in i for i in texts(other.info))


def test_cnn_page_in_korean_with_a_saved_cnn_and_its_evaluation(models_dir, fer_small, tiny_cnn):
    _register_cnn(models_dir, tiny_cnn)
    at = AppTest.from_file(CNN_PAGE)
    at.query_params["lang"] = "ko"
    with i18n.using_language("ko"):
        run_app(at, T)
        at.text_input(key="cnn_eval_folder").set_value(str(fer_small))
        at.number_input(key="cnn_eval_per").set_value(0)
        at.button(key="cnn_eval_button").click()
        run_app(at, T)
    assert f"{fer_small.name} 폴더에서의 정확도" in _metrics(at)
    assert english_left(page_texts(at), ("tiny-cnn",)) == []


def test_cnn_page_names_the_preset_as_the_form_does_and_a_typo_folder_gets_path_advice(models_dir, fer_small,
                                                                                         tiny_cnn):
    """The saved CNN's preset showed the raw "tiny" while the form says "tiny (…)"; a mistyped
    evaluation folder was told to set FER_DATA_DIR, which has nothing to do with a typed path."""
    _register_cnn(models_dir, tiny_cnn)
    typo = str(fer_small) + "-typo"
    for lang in ("en", "ko"):
        at = AppTest.from_file(CNN_PAGE)
        at.query_params["lang"] = lang
        with i18n.using_language(lang):
            run_app(at, T)
            assert _metrics(at)[i18n.t("cnn.preset")] == i18n.t("cnn.preset_tiny") != "tiny"
            at.text_input(key="cnn_eval_folder").set_value(typo)
            at.button(key="cnn_eval_button").click()
            run_app(at, T)
            assert texts(at.error) == [i18n.t("cnn.eval_missing", folder=typo)]
        assert "FER_DATA_DIR" not in texts(at.error)[0]
    assert texts(at.error) == [f"{typo}: 폴더가 없습니다. 경로를 확인하세요"]


def test_cnn_training_settings_read_as_settings_in_both_languages():
    """The settings line under a training's status and result: 'epochs 1' (not '1 epochs'), the
    folders said as folders (not 'train train, validation val'); the record is English whatever
    the page's language."""
    from fer_core.training import CNNSettings

    one = CNNSettings("/data/fer/train", "/data/fer/val", SIX_EMOTIONS, "tiny", 1, 64, 4)
    held_out = CNNSettings("/data/fer/train", None, SIX_EMOTIONS, "tiny", 3, 64, None)
    english = one.summary()
    assert english == ("tiny preset, 6 emotions, epochs 1, batch 64, images per emotion 4; "
                       "training folder train, validation folder val")
    assert held_out.summary().endswith("; training folder train, validation: 10% of the training images held out")
    with i18n.using_language("ko"):
        assert one.summary() == "tiny 프리셋, 감정 6개, 에포크 1, 배치 64, 감정당 이미지 4장; 학습 폴더 train, 검증 폴더 val"
        assert held_out.summary().endswith("; 학습 폴더 train, 검증: 학습 이미지의 10% 떼어 둠")
        assert one.describe() == english


def test_a_dashboard_training_records_the_command_that_trains_the_same_way():
    """A CNN trained on the page recorded 'dashboard: CNN page (... training folder train ...)':
    folder names only, nothing a reader could run again. Its record now holds the train-cnn
    command whose options are the page's settings."""
    import shlex

    from fer_core.cli import _parser
    from fer_core.predictors.recipe import Recipe, recipe_from_args
    from fer_core.training import CNNSettings

    settings = CNNSettings("/data/my fer/train", "/data/fer/val", SIX_EMOTIONS, "tiny", 3, 32, 40,
                           Recipe(schedule="cosine", warmup_epochs=1, label_smoothing=0.1, ema=0.999, erasing=0.25))
    command = settings.train_command("mine.keras")
    args = _parser().parse_args(shlex.split(command)[3:])
    assert (args.data, args.val, args.out, args.preset, args.epochs, args.batch_size, args.limit_per_class) == (
        "/data/my fer/train", "/data/fer/val", "mine.keras", "tiny", 3, 32, 40)
    assert args.classes == ",".join(SIX_EMOTIONS) and recipe_from_args(args) == settings.recipe
    assert settings.record("mine.keras") == f"dashboard: CNN page; the same training: {command}"
    held_out = CNNSettings("/data/fer/train", None, SIX_EMOTIONS, "strong", 20, 64, None)
    assert _parser().parse_args(shlex.split(held_out.train_command())[3:]).val is None
    tuned = CNNSettings("/data/kids", None, ("happy", "sad"), "strong", 10, 16, None, init="cnn-fer2013",
                        class_weighting=True)
    args = _parser().parse_args(shlex.split(tuned.train_command())[3:])
    assert (args.init, args.learning_rate, args.class_weighting) == ("cnn-fer2013", 3e-4, True)
    assert tuned.summary().endswith("; started from cnn-fer2013; emotions weighed equally")


def test_the_cnn_page_fine_tunes_a_registered_cnn_with_the_emotions_weighed_equally(models_dir, fer_small):
    """A psychologist with a hundred photos of their own could only train from scratch on the page
    (a network answering happy for every face); train-cnn's --init and --class-weighting were CLI
    only. The page offers the registered CNNs of the chosen architecture to start from, and equal
    weights; the training and its record use them."""
    from fer_core.config import REPO_ROOT
    from fer_core.manifest import read_manifest, write_manifest

    bundled = next(e for e in read_manifest(REPO_ROOT / "models") if e.name == "cnn-fer2013")
    write_manifest([*read_manifest(models_dir), bundled], models_dir)
    at = run_app(AppTest.from_file(CNN_PAGE), T)
    at.text_input(key="cnn_train_dir").set_value(str(fer_small))
    at.text_input(key="cnn_val_dir").set_value(str(fer_small))
    at.selectbox(key="cnn_preset").set_value("strong")
    at.number_input(key="cnn_epochs").set_value(1)
    at.selectbox(key="cnn_batch").set_value(16)
    run_app(at, T)
    assert at.selectbox(key="cnn_init").options == ["nothing (learn anew)", "cnn-fer2013"]
    at.selectbox(key="cnn_init").set_value("cnn-fer2013")
    at.checkbox(key="cnn_class_weighting").check()
    run_app(at, T)
    at.button(key="cnn_start").click()
    run_app(at, T)
    job = at.session_state["cnn_job"]
    job.thread.join(300)
    run_app(at, T)
    assert job.phase == "done", job.error
    assert (job.settings.init, job.settings.class_weighting) == ("cnn-fer2013", True)
    meta = json.loads(job.result.metadata_path.read_text())
    assert meta["init"].endswith("cnn_fer2013.keras") and meta["class_weighting"] and meta["learning_rate"] == 3e-4
    assert "--init cnn-fer2013 --learning-rate 0.0003 --class-weighting" in meta["command"]
    at.selectbox(key="cnn_preset").set_value("tiny")  # no tiny CNN is registered: nothing to start from
    run_app(at, T)
    assert at.selectbox(key="cnn_init").options == ["nothing (learn anew)"] and at.selectbox(key="cnn_init").value == ""


def test_a_dashboard_training_stopped_in_its_first_epoch_is_cancelled_not_done():
    """The CNN page offered a network of one batch for saving after a Stop in the first epoch."""
    from fer_core.errors import StoppedBeforeAnEpoch
    from fer_core.training import CNNSettings, CNNTrainingJob

    def stopped(*args, **kwargs):
        raise StoppedBeforeAnEpoch("training was stopped before the first epoch finished: there is nothing to save")

    job = CNNTrainingJob(CNNSettings("/data/fer/train", None, SIX_EMOTIONS, "tiny", 3, 64, None), train=stopped)
    job.start()
    job.thread.join(30)
    assert job.phase == "cancelled" and job.result is None and job.error is None


def test_a_dashboard_training_says_which_images_it_reads_and_when_the_first_epoch_runs():
    """The status read "Reading images: 2,738 of 2,738…" through the whole first epoch, and the
    counter ran twice (training, then validation images) with nothing saying which."""
    from fer_core.errors import FerError
    from fer_core.training import CNNSettings, CNNTrainingJob

    seen: list[str | None] = []

    def reads(*args, load_progress, **kwargs):
        for n in (1, 2, 3):
            load_progress(n, 3)
            seen.append(job.reading)
        for n in (1, 2):
            load_progress(n, 2)
            seen.append(job.reading)
        raise FerError("stop here")

    job = CNNTrainingJob(CNNSettings("/data/fer/train", "/data/fer/val", SIX_EMOTIONS, "tiny", 3, 64, None),
                         train=reads)
    job.start()
    job.thread.join(30)
    assert seen == ["train", "train", "train", "val", None]  # None: all read, the first epoch runs
    assert job.phase == "failed" and job.error == "stop here"


def test_au_page_holds_out_whole_participants_named_in_the_file_names(models_dir):
    """The page split a lab's table face by face: photos of one child both fitted and held out. A
    pattern naming the participant in each file name keeps each child's photos on one side, says
    so, and the model records it (its train-au command too)."""
    frame = pd.read_csv(io.BytesIO(_au_csv({"angry": 36, "happy": 36, "sad": 36}, informative=True)))
    frame.insert(0, "file", [f"P{i % 12:02d}_{label}_{i}.jpg" for i, label in enumerate(frame["label"])])
    at = _upload(run_app(AppTest.from_file(AU_PAGE), T), frame.to_csv(index=False).encode(), "lab.csv")
    at.text_input(key="au_group_by").set_value(r"^(P\d+)")
    at.button(key="au_train_button").click()
    run_app(at, T)
    model = at.session_state["au_train"]["model"]
    assert model.info["settings"]["group_by"] == r"^(P\d+)"
    held = {f.split("_")[0] for f in model.info["data"]["held_out_files"]}
    assert held and all(f.split("_")[0] not in held for f in frame["file"] if f not in model.info["data"]["held_out_files"])
    assert any("whole participants held out" in c.value and "none with photos on both sides" in c.value
               for c in at.caption)
    from fer_core.predictors.au_models import train_au_command

    assert train_au_command(model).endswith(r"--group-by '^(P\d+)'")
