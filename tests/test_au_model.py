"""The AU model: exact explanations, lossless save/load, clear errors for unusable tables."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from model_edits import set_at as _set

from fer_core.au_table import AU_COLUMNS
from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import AUTableError, ModelFileError
from fer_core.predictors.au_models import AUModel, fit_au_model


def synthetic_table(n_per_class: int = 60, classes=SIX_EMOTIONS, seed: int = 0) -> pd.DataFrame:
    """Each emotion raises its own pair of AUs, so a good model must find them."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, emotion in enumerate(classes):
        X = rng.gamma(1.0, 0.5, size=(n_per_class, len(AU_COLUMNS)))
        X[:, (2 * k) % len(AU_COLUMNS)] += 3.0
        X[:, (2 * k + 1) % len(AU_COLUMNS)] += 2.0
        for i, x in enumerate(np.clip(X, 0, 5)):
            rows.append({"file": f"{emotion}{i:03d}.jpg", "face": 0, "label": emotion, "success": 1,
                         "confidence": 0.9, "source": "synthetic", "reason": "",
                         **dict(zip(AU_COLUMNS, x))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def logreg() -> AUModel:
    return fit_au_model(synthetic_table(), kind="au-logreg")


def test_logreg_learns_the_planted_aus(logreg):
    holdout = logreg.info["metrics"]["holdout"]
    assert holdout["accuracy"] > 0.9
    happy = SIX_EMOTIONS.index("happy")
    assert int(np.argmax(logreg.weights[0][happy])) in (4, 5)  # AU06 / AU07 columns planted for happy
    assert logreg.info["data"]["class_counts"]["sad"] == 60


def test_contributions_plus_intercept_are_the_logits(logreg):
    rng = np.random.default_rng(1)
    for x in rng.uniform(0, 5, size=(25, len(AU_COLUMNS))):
        logits = logreg.logits(x[None])[0]
        rebuilt = logreg.contributions(x).sum(axis=1) + logreg.biases[0]
        np.testing.assert_allclose(rebuilt, logits, rtol=1e-12, atol=1e-12)


def test_explanation_names_the_aus_that_drive_the_prediction(logreg):
    x = np.zeros(len(AU_COLUMNS))
    x[8], x[9] = 4.5, 3.5  # the AUs planted for 'sad' (index 4 -> columns 8, 9: AU12, AU14)
    e = logreg.explain(x).to_dict()
    assert e["emotion"] == "sad"
    assert e["top_aus"][0]["au"] in ("AU12", "AU14")
    assert "lip corner puller" in e["sentence"] or "dimpler" in e["sentence"]
    assert abs(sum(e["probabilities"].values()) - 1) < 1e-3


def test_save_load_round_trip_gives_identical_probabilities(logreg, tmp_path):
    path = tmp_path / "m.json"
    logreg.save(path)
    again = AUModel.load(path)
    X = np.random.default_rng(2).uniform(0, 5, size=(40, len(AU_COLUMNS)))
    np.testing.assert_array_equal(again.predict_proba(X), logreg.predict_proba(X))
    assert again.classes == logreg.classes and again.info == json.loads(json.dumps(logreg.info))


def test_mlp_kind_trains_saves_and_explains(tmp_path):
    model = fit_au_model(synthetic_table(40), kind="au-mlp")
    assert [w.shape[1] for w in model.weights[:-1]] == [300, 200, 100, 50]
    assert model.info["metrics"]["holdout"]["accuracy"] > 0.8
    model.save(tmp_path / "mlp.json")
    again = AUModel.load(tmp_path / "mlp.json")
    X = np.random.default_rng(3).uniform(0, 5, size=(10, len(AU_COLUMNS)))
    np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X))
    explanation = again.explain(X[0])
    assert explanation.emotion in SIX_EMOTIONS
    # its reasons are occlusion estimates, and say so in the JSON and under the sentence (a logistic
    # regression's add up to its logits exactly, and say nothing)
    from ui.common import reading_notes

    assert explanation.to_dict()["contribution_method"].startswith("occlusion")
    assert any(note.startswith("This MLP's reasons are estimates") for note in reading_notes(explanation))
    logreg = fit_au_model(synthetic_table(40), kind="au-logreg").explain(X[0])
    assert "contribution_method" not in logreg.to_dict()
    assert not any("MLP" in note for note in reading_notes(logreg))


def test_two_classes_still_give_a_softmax_per_class():
    model = fit_au_model(synthetic_table(40, classes=("happy", "sad")), classes=("happy", "sad"))
    assert model.weights[0].shape == (2, len(AU_COLUMNS))
    X = synthetic_table(5, classes=("happy", "sad"), seed=9)
    pred = model.predict(X[list(AU_COLUMNS)].to_numpy())
    assert pred == X["label"].tolist()


def test_table_without_au_columns_is_refused():
    with pytest.raises(AUTableError, match="lacks AU columns AU01_r"):
        fit_au_model(pd.DataFrame({"label": ["happy"], "x": [1]}))


def test_missing_emotion_is_named():
    with pytest.raises(AUTableError, match="no usable rows of fear"):
        fit_au_model(synthetic_table(10), classes=("fear", "happy"))


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('{"format": "other"}', "not an AU model file"),
])
def test_wrong_model_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ModelFileError, match=message):
        AUModel.load(path)


def test_balanced_classes_change_the_mlp_and_the_gam_they_are_recorded_for():
    """"Balanced classes" used to be recorded for the MLP (and offered for the GAM) but not applied:
    the weights came out identical. Each learner now weights faces by their emotion's rarity."""
    from fer_core.predictors.au_gam import fit_au_gam

    table = synthetic_table(30)
    table = table[(table["label"] != "disgust") | (table.groupby("label").cumcount() < 12)]  # a rare emotion
    plain = fit_au_model(table, kind="au-mlp", seed=0)
    balanced = fit_au_model(table, kind="au-mlp", seed=0, class_weight="balanced")
    assert balanced.info["settings"]["class_weight"] == "balanced"
    assert not all(np.array_equal(a, b) for a, b in zip(plain.weights, balanced.weights))
    gam_plain = fit_au_gam(table, interactions=0, outer_bags=1)
    gam_balanced = fit_au_gam(table, interactions=0, outer_bags=1, class_weight="balanced")
    assert gam_balanced.info["settings"]["class_weight"] == "balanced"
    X = table[list(AU_COLUMNS)].to_numpy()
    assert not np.allclose(gam_plain.predict_proba(X), gam_balanced.predict_proba(X))


def test_rows_repeated_in_a_table_are_not_scored_on_a_copy_of_themselves():
    """The study's table repeats a few rows; a held-out copy of a fitting row flatters the score.
    Those copies are fitted instead, and the model's record says how many."""
    from fer_core import au_table as tables
    from fer_core.predictors.au_models import plan_fit

    table = synthetic_table(20)
    table = pd.concat([table, table.iloc[::4].assign(file=lambda f: f["file"] + ".copy")], ignore_index=True)
    ts = tables.training_set(table, SIX_EMOTIONS, name="t")
    plan = plan_fit(ts, 0.25, 0)
    X = ts.X()
    fitted = {tuple(X[i]) + (ts.y[i],) for i in plan.fit}
    assert plan.duplicates_moved > 0 and not any(tuple(X[i]) + (ts.y[i],) in fitted for i in plan.test)
    assert len(plan.fit) + len(plan.test) == len(ts.y)
    model = fit_au_model(table)
    assert "were fitted instead of scored" in model.info["data"]["held_out_duplicates"]


def _video_table(videos: int = 36, frames: int = 20, seed: int = 0) -> pd.DataFrame:
    """Frames of videos whose emotion has nothing to do with their faces: each video a face of its
    own (random AUs, a little noise from frame to frame) and an emotion drawn at random."""
    from fer_core import au_table as tables

    rng = np.random.default_rng(seed)
    rows = []
    for v in range(videos):
        face, label = rng.uniform(0, 4, len(AU_COLUMNS)), ("happy", "sad", "neutral")[v % 3]
        for f in range(frames):
            rows.append({"file": f"{label}/v{v:02d}.mp4", "face": 0, "label": label, "success": 1,
                         "time_s": f / 10, **dict(zip(AU_COLUMNS, face + rng.normal(0, 0.05, len(AU_COLUMNS))))})
    return tables.from_rows(rows)


def test_a_table_of_video_frames_holds_out_whole_videos(tmp_path):
    """A folder of videos is a table of near copies: frames 0.1 s apart. Split by rows, a model
    that only remembers each video's face scored 1.000 held out on emotions drawn at random (a
    researcher's review); split by video, it scores what it knows, and says how it was split."""
    from fer_core import au_table as tables
    from fer_core.predictors.au_models import held_out_description, plan_fit, video_groups

    table = _video_table()
    classes = ("happy", "neutral", "sad")
    plan = plan_fit(tables.training_set(table, classes, name="t"), 0.25, 0)
    files = table["file"].to_numpy()
    assert not set(files[plan.fit]) & set(files[plan.test]) and len(set(files[plan.test])) >= 6
    model = fit_au_model(table, classes=classes, Cs=(1.0, 100.0))
    assert model.holdout.accuracy < 0.7  # chance is 1/3; row by row it was 1.000
    assert model.info["data"]["held_out_videos"].startswith("whole videos held out: ")
    per_video = model.info["data"]["videos"]["per_video"]  # each held-out video once, as a paper reports clips
    assert per_video["n"] == model.info["data"]["videos"]["held_out"] == len(set(files[plan.test]))
    saved = tmp_path / "m.json"
    model.save(saved)
    assert AUModel.load(saved).info["data"]["videos"]["per_video"] == per_video
    # photos beside the videos, some under two names: a copy is not scored on its twin
    photos = synthetic_table(20, classes=classes).iloc[::2]
    mixed = pd.concat([table, photos, photos.iloc[::2].assign(file=lambda f: f["file"] + ".copy")], ignore_index=True)
    ts = tables.training_set(mixed, classes, name="t")
    plan = plan_fit(ts, 0.25, 0)
    X = ts.X()
    fitted = {tuple(X[i]) + (ts.y[i],) for i in plan.fit}
    assert plan.duplicates_moved > 0 and not any(tuple(X[i]) + (ts.y[i],) in fitted for i in plan.test)
    # one short clip among many photos: a fold of photos alone was chosen, and scoring its videos crashed
    base = synthetic_table(20)
    clip = base[base["label"] == "happy"].iloc[:3].assign(file="happy/c.mp4", time_s=[0.0, 0.1, 0.2])
    model = fit_au_model(pd.concat([base, clip], ignore_index=True), seed=11, Cs=(1.0,))
    assert model.info["data"]["videos"]["held_out"] == 1  # a fold that holds the video, not "0 of 1 videos"
    # too few videos to hold out whole ones of every emotion: split by rows, and said
    few = _video_table(videos=3, frames=40)
    model = fit_au_model(few, classes=classes, Cs=(1.0,))
    assert "the held-out score flatters the model" in model.info["data"]["held_out_videos"]
    # a table of pictures is split as before, without a note, blank file names too (they were one "video")
    photos = synthetic_table(20)
    photos.loc[::2, "file"] = ""
    ts = tables.training_set(photos, SIX_EMOTIONS, name="t")
    assert video_groups(ts) is None and "held_out_videos" not in fit_au_model(photos, Cs=(1.0,)).info["data"]
    # one long video makes the folds uneven: the share held out is the fold's, recorded as such
    uneven = pd.concat([_video_table(videos=1, frames=300).assign(file="happy/long.mp4"), _video_table()])
    model = fit_au_model(uneven, classes=classes, Cs=(1.0,))
    videos = model.info["data"]["videos"]
    assert videos["whole"] and videos["held_out_share"] == round(model.holdout.n / len(uneven), 3)
    assert held_out_description("t.csv", 0.25, 0, videos).startswith(
        f"{videos['held_out_share']:.0%} of t.csv held out from fitting as whole videos")


def test_a_table_of_videos_is_scored_once_per_video_too(logreg):
    """evaluate --au-table counts every frame as a face; a researcher with labelled videos also
    wants each video scored once: its answer the emotion of the highest mean probability over its
    frames with a face, a video without one unanswered."""
    from fer_core.evaluation.compare import evaluate_videos
    from fer_core.predictors.au_models import AUPredictor

    rows = synthetic_table(10)
    happy, sad = rows[rows["label"] == "happy"].iloc[:3], rows[rows["label"] == "sad"].iloc[:4]
    frames = pd.concat([happy.assign(file="a.mp4"),  # happy: three happy frames and a sad one
                        sad.iloc[:1].assign(file="a.mp4", label="happy"),
                        sad.iloc[1:].assign(file="b.mp4", success=0, reason="no face found"),  # sad: no face
                        rows[rows["label"] == "angry"].iloc[:1].assign(file="still.jpg")], ignore_index=True)
    frames["time_s"] = [0.0, 0.1, 0.2, 0.3, 0.0, 0.1, 0.2, None]
    report = evaluate_videos(AUPredictor(logreg, name="m"), frames)
    assert (report.n, report.accuracy, report.no_face) == (2, 0.5, 1)
    assert report.confusion[report.labels.index("happy")][report.labels.index("happy")] == 1
    assert report.no_face_per_class[report.labels.index("sad")] == 1
    assert evaluate_videos(AUPredictor(logreg, name="m"), rows) is None  # pictures only: nothing to add


LOWER = ("AU12_r", "AU25_r", "AU26_r")  # a subset model of lower-face AUs, all hidden by a mask


@pytest.fixture(scope="module")
def lower_model() -> AUModel:
    return fit_au_model(synthetic_table(20), columns=LOWER, Cs=(1.0,))


def test_a_subset_model_cannot_judge_a_face_without_its_own_aus(lower_model):
    """A mask hides every AU of a lower-face model: that face was counted as judged with the
    intercept's guess. "Nothing known" is tested on the model's own AUs: a NaN row, and no
    explanation of a judgement that was never made."""
    from fer_core import i18n
    from fer_core.errors import FerError
    from fer_core.predictors.au_models import AUPredictor
    from fer_core.predictors.base import FaceInput

    predictor = AUPredictor(lower_model, name="lower")
    X = synthetic_table(1)[list(AU_COLUMNS)].to_numpy(dtype=float)[:3].copy()
    lower = [AU_COLUMNS.index(c) for c in LOWER]
    X[0, lower] = np.nan  # the upper face is known, none of the model's AUs
    X[1, lower[0]] = np.nan  # one of its AUs unknown: the model copes
    proba = predictor.proba_from_aus(X)
    assert np.isnan(proba[0]).all()
    assert np.isfinite(proba[1:]).all() and np.allclose(proba[1:].sum(axis=1), 1)
    with pytest.raises(FerError, match=r"none of the AUs this model uses \(AU12, AU25, AU26\) .* cannot judge") as caught:
        predictor.explain(FaceInput(aus=X[0]))
    with i18n.using_language("ko"):  # Try it's masked view and the mask report show it
        assert i18n.message(str(caught.value)).startswith("lower: 이 얼굴에서 이 모델이 쓰는 AU(AU12, AU25, AU26)")
    assert predictor.explain(FaceInput(aus=X[1])).extra["unknown_aus"] == ["AU12"]
    # predict, as scikit-learn's: the most probable emotion, None for the face it cannot judge and
    # for a photo in which no face was found (compare scores it so, whatever a model would answer)
    faces = [FaceInput(aus=x) for x in X] + [FaceInput(aus=X[2], found=False)]
    assert predictor.predict(faces) == [None, *(predictor.classes[int(k)] for k in proba[1:].argmax(axis=1)), None]


def test_a_fitted_au_model_used_directly_does_not_judge_a_face_it_never_measured(lower_model):
    """``fit_au_model`` hands a script an AUModel: on a "no face found" row (every AU empty) its
    predict said "happy", the intercept's guess. It now answers as AUPredictor scores: None, a NaN
    row; it reads a table's AU columns by name, and a wrong shape is a one-line FerError."""
    from fer_core.errors import FerError

    table = synthetic_table(2)
    table.loc[0, list(AU_COLUMNS)] = np.nan  # a row of a face not found
    rows = table[list(LOWER)].to_numpy(dtype=float)
    proba = lower_model.predict_proba(rows)
    assert np.isnan(proba[0]).all() and np.allclose(proba[1:].sum(axis=1), 1)
    said = lower_model.predict(rows)
    assert said[0] is None and said[1:] == [lower_model.classes[int(k)] for k in proba[1:].argmax(axis=1)]
    np.testing.assert_array_equal(lower_model.predict_proba(table), proba)  # the whole table, columns by name
    # a table is read as predict --au-table reads it: a face not found (OpenFace writes its AUs as 0),
    # an AU out of range or a cell that is no number is no judgement, not a guess on the rest
    odd = table.head(4).copy()
    odd.loc[1, "success"] = 0
    odd.loc[1, list(AU_COLUMNS)] = 0.0
    odd.loc[2, "AU12_r"] = 99.0
    odd = odd.astype({"AU25_r": object})
    odd.loc[3, "AU25_r"] = "0,5"
    assert lower_model.predict(odd) == [None, None, None, None]
    assert lower_model.predict(rows[1]) == said[1:2]  # one face as a 1-D row
    with pytest.raises(FerError, match=r"reads 3 AUs per face \(AU12, AU25, AU26\), in that order; got an array"):
        lower_model.predict(table[list(AU_COLUMNS)].to_numpy())
    with pytest.raises(FerError, match="the table lacks AU columns this model reads: AU26_r"):
        lower_model.predict(table.drop(columns=["AU26_r"]))
    with pytest.raises(FerError, match="nothing to explain"):
        lower_model.explain(rows[0])


def test_an_au_table_scores_a_subset_model_on_its_own_aus(lower_model):
    """`evaluate --au-table` (evaluate_au_table) on a subset model: masked faces without its AUs count
    wrong as no face, and a bad value in an AU it does not use leaves no face out (the rule covers
    every AU the model uses, README)."""
    from fer_core import au_table as tables
    from fer_core.evaluation.compare import evaluate_au_table
    from fer_core.predictors.au_models import AUPredictor

    table = synthetic_table(10)
    table.loc[:19, list(LOWER)] = np.nan  # 20 faces under a mask that hides the model's AUs
    table["masked"] = (table.index < 20).astype(int)
    table.loc[20:29, "AU01_r"] = 20.0  # out of range, in an AU the model ignores
    table.loc[30:31, "AU12_r"] = 20.0  # out of range, in an AU the model uses: left out
    predictor = AUPredictor(lower_model, name="lower")
    report = evaluate_au_table(predictor, table)
    assert report.n == len(table) - 2 and report.no_face == 20
    # the faces it scores get the model's own answers
    scored = table.drop(index=[30, 31]).iloc[20:]
    expected = lower_model.predict(scored[list(lower_model.au_columns)].to_numpy())
    assert report.accuracy == pytest.approx(np.sum(expected == scored["label"].to_numpy()) / report.n, abs=1e-4)
    assert report.left_out == {tables.AU_INVALID: 2}
    # a table without the AUs the model does not use is scored too
    assert evaluate_au_table(predictor, table.drop(columns=["AU45_r"])).n == len(table) - 2


def base_model_dict(logreg: AUModel) -> dict:
    return json.loads(json.dumps(logreg.to_dict()))


@pytest.mark.parametrize("edit, field", [
    (_set("mean.0", 10**400), "'mean' holds a number too large"),
    (_set("weights.0.0.0", "1.5"), "'weights[0]' holds text"),
    (_set("scale.0", 1e-320), "'scale' has values below 1e-06"),
    (_set("weights.0.0.0", 1e308), "'weights[0]' holds values beyond"),
    (_set("info.data", 5), "'info.data' is not an object"),
    (_set("info.settings", "x"), "'info.settings' is not an object"),
    (_set("info.data.rows", "many"), "'info.data.rows' is not a whole number"),
    (_set("info.metrics.holdout.n", float("inf")), "'info.metrics.holdout' is malformed: its 'n' is not a whole number"),
    (_set("info.metrics.holdout.accuracy_ci95", [0.5]), "'info.metrics.holdout' is malformed: its 'accuracy_ci95' is not two shares"),
    (_set("info.metrics.holdout.confusion", "abc"), "'info.metrics.holdout' is malformed: its 'confusion' is not a 6×6 matrix"),
    (_set("info.metrics.holdout.confusion", [[1, 2]] * 6), "'info.metrics.holdout' is malformed: its 'confusion' is not a 6×6 matrix"),
    (_set("info.metrics.holdout.per_class", {"happy": 5}), "'info.metrics.holdout' is malformed: its 'per_class' is not a count"),
    (_set("info.metrics.holdout.accuracy", "x"), "'info.metrics.holdout' is malformed: its 'accuracy' is not a share"),
])
def test_damaged_model_files_are_refused_naming_the_field(logreg, tmp_path, edit, field):
    """Each of these loaded (and blanked the AU model page, gave NaN probabilities) or escaped as
    'unexpected … (a bug)'; each is now one ModelFileError line naming the field."""
    from fer_core.predictors.registry import load_predictor

    d = base_model_dict(logreg)
    edit(d)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(d).replace("Infinity", "1e999"))
    with pytest.raises(ModelFileError, match=re.escape(field)):
        load_predictor(str(path))


def test_a_sound_model_file_still_loads_with_its_holdout(logreg, tmp_path):
    path = tmp_path / "m.json"
    logreg.save(path)
    again = AUModel.load(path)
    assert again.holdout.n == logreg.holdout.n and len(again.holdout.confusion) == 6


def test_the_ranked_contributions_add_up_to_the_centred_logit_of_the_predicted_emotion(logreg):
    """What the contribution bars and the sentence claim: each AU's share of how far the predicted
    emotion's logit stands above the emotions' mean (the intercepts' part aside), an unknown AU
    (hidden by a mask) contributing nothing."""
    rng = np.random.default_rng(2)
    b = logreg.biases[0]
    for x in rng.uniform(0, 5, size=(20, len(AU_COLUMNS))):
        x[rng.integers(0, len(AU_COLUMNS))] = np.nan
        e = logreg.explain(x)
        k = logreg.classes.index(e.emotion)
        logits = logreg.logits(x[None])[0]
        total = sum(c.contribution for c in e.ranked)
        assert total == pytest.approx(logits[k] - logits.mean() - (b[k] - b.mean()), abs=len(AU_COLUMNS) * 5e-5)
        assert [c.contribution for c in e.ranked if np.isnan(c.intensity)] == [0.0]


FACS = {"AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer", "AU05": "upper lid raiser",
        "AU06": "cheek raiser", "AU07": "lid tightener", "AU09": "nose wrinkler", "AU10": "upper lip raiser",
        "AU12": "lip corner puller", "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser",
        "AU20": "lip stretcher", "AU23": "lip tightener", "AU25": "lips part", "AU26": "jaw drop", "AU45": "blink"}


def test_au_names_are_facs_and_a_mask_hides_the_lower_face():
    """Ekman and Friesen's names for OpenFace's 17 AUs, and the upper/lower face split: a mask
    hides AU9 and below (nose, lips, chin, jaw) and leaves the brows, lids and cheeks."""
    from fer_core.au_codes import AU_CODES
    from fer_core.au_table import au_label
    from fer_core.masks import HIDDEN_AUS, VISIBLE_AUS

    assert tuple(FACS) == AU_CODES and [au_label(f"{c}_r") for c in AU_CODES] == [f"{c} {n}" for c, n in FACS.items()]
    assert set(VISIBLE_AUS) == {"AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU45"}
    assert set(HIDDEN_AUS) == set(AU_CODES) - set(VISIBLE_AUS) and not set(HIDDEN_AUS) & set(VISIBLE_AUS)


def test_the_mlp_and_the_gam_stop_early_on_whole_videos():
    """Their own early stopping split a table of videos by rows: the MLP validated at 1.000 on
    near copies of the frames it fitted, for emotions drawn at random, and kept fitting. It and
    each of the GAM's bags now validate on videos they do not fit, and the model file says so."""
    from fer_core import au_table as tables
    from fer_core.predictors.au_gam import fit_au_gam, video_bags
    from fer_core.predictors.au_models import _make_mlp, video_groups

    table, classes = _video_table(), ("happy", "neutral", "sad")
    ts = tables.training_set(table, classes, name="t")
    groups = video_groups(ts)
    assert _make_mlp(0).fit(ts.X(), ts.y).best_validation_score_ > 0.95  # by rows: what it remembers
    epochs = []
    by_videos = _make_mlp(0, lambda epoch, most: epochs.append(epoch)).fit(ts.X(), ts.y, groups=groups)
    assert by_videos.best_validation_score_ < 0.75  # chance is 1/3
    assert epochs == list(range(1, by_videos.n_iter_ + 1)) and 8 <= by_videos.n_iter_ < 300  # patience 7
    model = fit_au_model(table, classes=classes, kind="au-mlp")
    assert model.info["settings"]["early_stopping"] == "whole videos"
    bags = video_bags(ts.y, groups, 3, 0)
    for bag in range(3):
        validated = bags[:, bag] == -1
        assert validated.any() and not set(groups[validated]) & set(groups[~validated])
    assert not np.array_equal(bags[:, 0], bags[:, 1])  # each bag its own videos
    # pictures beside the videos: validated too, each bag about interpret's 15 % (a grouped split of
    # every picture as its own group took 15 s at 75,000 pictures; they are split at random now)
    mixed = np.concatenate([groups, groups.max() + 1 + np.arange(700)])
    mixed_y = np.concatenate([ts.y, np.arange(700) % 3])
    bags = video_bags(mixed_y, mixed, 14, 0)
    pictures = np.arange(len(mixed)) >= len(groups)
    for bag in range(14):
        validated = bags[:, bag] == -1
        assert 0.1 < validated.mean() < 0.2 and validated[pictures].any() and validated[~pictures].any()
        assert not set(mixed[validated & ~pictures]) & set(mixed[~validated & ~pictures])
    assert fit_au_gam(table, classes=classes, interactions=0, outer_bags=2).info["settings"][
        "early_stopping"] == "whole videos"
    # an emotion with few videos: a bag that validated on all of them could not fit that emotion, and
    # interpret crashed ("could not broadcast input array from shape (2,) into shape (3,)")
    few = table[~table["file"].isin([f"neutral/v{v:02d}.mp4" for v in range(2, 36, 3)][1:])]
    ts = tables.training_set(few, classes, name="t")
    bags = video_bags(ts.y, video_groups(ts), 14, 0)
    assert all(len(np.unique(ts.y[bags[:, b] == 1])) == 3 for b in range(14))
    assert fit_au_gam(few, classes=classes, interactions=0, outer_bags=3).info["settings"]["early_stopping"] in (
        "whole videos", "rows (the held-out fit's: whole videos)", "whole videos (the held-out fit's: rows)", "rows")
    # pictures: their own splits, as before
    photos = synthetic_table(20)
    assert fit_au_model(photos, kind="au-mlp").info["settings"]["early_stopping"] == "rows"
    assert fit_au_gam(photos, interactions=0, outer_bags=1).info["settings"]["early_stopping"] == "rows"


def test_a_table_without_labels_or_an_au_column_is_told_what_it_lacks(tmp_path, capsys):
    """An OpenFace CSV of a video (no label column) was told to 'use a table of measured faces with AU
    values from 0 to 5', as if its AUs were wrong; a table lacking AU12_r read 'missing 1 AU columns',
    and in Korean '1 AU columns이(가) 없습니다'."""
    from fer_core import au_table, i18n
    from fer_core.cli import main

    unlabelled = tmp_path / "video.csv"
    frames = synthetic_table(5).drop(columns=["label"]).assign(file="clip.mp4", time_s=lambda f: f.index / 10)
    two_faces = pd.concat([frames, frames.assign(face=1)])  # a second face in every frame: left out too
    two_faces.to_csv(unlabelled, index=False)
    assert main(["train-au", str(unlabelled), "--out", str(tmp_path / "m.json")]) == 2
    assert "training needs labels: add a label (or emotion) column naming each row's emotion" in capsys.readouterr().err
    lacking = tmp_path / "lacking.csv"
    synthetic_table(5).drop(columns=["AU12_r"]).to_csv(lacking, index=False)
    with pytest.raises(AUTableError) as caught:
        au_table.read(lacking)
    assert "missing 1 AU column (AU12_r)" in str(caught.value)
    with i18n.using_language("ko"):
        assert "AU 열 1개가 없습니다 (AU12_r)" in i18n.message(str(caught.value))


def test_a_model_fitted_on_the_page_records_the_train_au_command_that_fits_it_again(tmp_path, capsys):
    """A model trained on the AU model page recorded 'dashboard: AU model page (val20_au.csv)' and
    its held-out share had no train-au option (a reviewer's). The command it now records fits the
    same model: the same held-out score."""
    import shlex

    from fer_core.cli import main
    from fer_core.predictors.au_models import train_au_command

    table = synthetic_table(20)
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    fitted = fit_au_model(table, ("angry", "happy", "sad"), class_weight="balanced", holdout=0.3, seed=2)
    command = train_au_command(fitted)
    args = shlex.split(command.replace("TABLE", str(path)).replace("MODEL.json", str(tmp_path / "again.json")))
    assert main(args[3:]) == 0
    capsys.readouterr()
    again = AUModel.load(tmp_path / "again.json")
    assert again.info["settings"]["holdout"] == 0.3 and again.holdout.accuracy == fitted.holdout.accuracy
    np.testing.assert_allclose(again.weights[0], fitted.weights[0], atol=1e-9)


@pytest.mark.parametrize("kind, columns, pairs", [
    ("au-logreg", ("AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU45_r"), None),
    ("au-gam", ("AU01_r", "AU02_r", "AU04_r", "AU06_r"), 1),
])
def test_a_model_of_some_aus_records_the_command_that_fits_it_on_those_aus(tmp_path, capsys, kind, columns, pairs):
    """The AU model page can fit a model on the AUs a mask leaves visible (or the person's own
    choice), a GAM with a chosen number of AU pairs: the recorded train-au command says --aus and
    --interactions, and fits the same model again. A GAM of some AUs was refused by train-au."""
    import shlex

    from fer_core.cli import main
    from fer_core.predictors.au_gam import AUGam, fit_au_gam
    from fer_core.predictors.au_models import train_au_command

    table = synthetic_table(20, classes=("angry", "disgust", "happy"))
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    classes = ("angry", "disgust", "happy")
    if kind == "au-gam":
        fitted = fit_au_gam(table, classes, seed=1, columns=columns, interactions=pairs, outer_bags=3)
        assert fitted.au_columns == columns and len(fitted.pairs) == pairs
    else:
        fitted = fit_au_model(table, classes, seed=1, columns=columns)
    command = train_au_command(fitted)
    assert ("--aus upper" in command) == (kind == "au-logreg")
    assert ("--interactions 1" in command) == ("--outer-bags 3" in command) == (kind == "au-gam")
    args = shlex.split(command.replace("TABLE", str(path)).replace("MODEL.json", str(tmp_path / "again.json")))
    assert main(args[3:]) == 0
    capsys.readouterr()
    again = (AUGam if kind == "au-gam" else AUModel).load(tmp_path / "again.json")
    assert again.au_columns == columns and again.holdout.accuracy == fitted.holdout.accuracy
    X = table[list(columns)].to_numpy(float)[:5]
    np.testing.assert_allclose(again.predict_proba(X), fitted.predict_proba(X), atol=1e-9)


def test_aus_given_in_any_order_are_kept_in_that_order_and_fitted_again_so(tmp_path, capsys):
    """A GAM fitted on ("AU04_r", "AU01_r", ...) recorded --aus AU04,AU01,..., which train-au read
    in the table's order: it fitted other pairs (a code review). Reordering the fit's columns broke
    a script's X built in its own order (a second review). The order given is kept everywhere."""
    import shlex

    from fer_core.cli import main
    from fer_core.predictors.au_gam import AUGam, fit_au_gam
    from fer_core.predictors.au_models import au_columns_from, train_au_command

    table = synthetic_table(15, classes=("angry", "happy"))
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    given = ("AU04_r", "AU01_r", "AU12_r", "AU02_r")
    assert au_columns_from("AU04,au01,AU12_r,AU02,AU04") == given
    logreg = fit_au_model(table, ("angry", "happy"), columns=given)
    gam = fit_au_gam(table, ("angry", "happy"), columns=given, interactions=2, outer_bags=3)
    X = table[list(given)].to_numpy(float)[:6]
    for model in (logreg, gam):
        assert model.au_columns == given and "--aus AU04,AU01,AU12,AU02" in train_au_command(model)
    command = train_au_command(gam).replace("TABLE", str(path)).replace("MODEL.json", str(tmp_path / "again.json"))
    assert main(shlex.split(command)[3:] + ["--workers", "1"]) == 0
    capsys.readouterr()
    again = AUGam.load(tmp_path / "again.json")
    assert again.au_columns == given and again.pairs == gam.pairs
    np.testing.assert_allclose(again.predict_proba(X), gam.predict_proba(X), atol=1e-9)


def test_contributions_sum_with_the_baseline_to_the_logit_and_a_baseline_decision_is_said():
    """An explainability review: the contributions could not be summed back to anything (no
    intercept given), and 11 FER2013 val faces read "happy, mostly because of ..." though all their
    AUs together spoke against happy, the model's intercept deciding. Each explanation now gives its
    ``baseline``, and the sentence says when it decided."""
    from fer_core import au_table
    from fer_core.config import REPO_ROOT
    from fer_core.i18n import using_language
    from fer_core.pipeline import predict_table
    from fer_core.predictors.registry import load_predictor

    predictor = load_predictor("au-logreg-fer2013")
    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    out = predict_table(table, predictor)
    judged = out["emotion"].fillna("") != ""
    proba = np.log(out.loc[judged, [f"p_{c}" for c in predictor.classes]].to_numpy())
    centred = proba.max(axis=1) - proba.mean(axis=1)
    contributions = out.loc[judged, [c for c in out.columns if c.startswith("contribution_")]].to_numpy()
    np.testing.assert_allclose(contributions.sum(axis=1) + out.loc[judged, "baseline"], centred, atol=1e-3)
    decided = (contributions.sum(axis=1) <= 0)
    said = out.loc[judged, "sentence"].str.endswith("the model's baseline (what it leans to for an average face) "
                                                    "decided.")
    assert decided.sum() == said.sum() == 11 and (decided == said.to_numpy()).all()
    row = np.flatnonzero(judged)[np.flatnonzero(decided)[0]]
    from fer_core.predictors.base import FaceInput

    face = FaceInput(aus=au_table.values(table, [row])[0])
    ex = predictor.explain(face)
    assert ex.baseline_decided and ex.to_dict()["baseline"] == round(ex.baseline, 4) > 0
    with using_language("ko"):
        assert "모델의 기준값" in ex.sentence
    balanced = load_predictor("au-logreg-fer2013-balanced")  # its AUs decide every face of val
    assert balanced.explain(face).baseline is not None


def test_a_model_given_another_sources_aus_is_said_so(capsys, tmp_path, fer_sample):
    """A model learned from OpenFace's AUs scored 0.461 on this extractor's, and the bundled one
    0.559 on OpenFace's, with no word (an OpenFace researcher's review); the README says such a
    model does not carry over. evaluate, predict --au-table and compare now say so."""
    from fer_core import au_table
    from fer_core.cli import main
    from fer_core.config import REPO_ROOT
    from fer_core.evaluation.compare import run_comparison, score_au_table
    from fer_core.predictors.au_models import AUPredictor
    from fer_core.predictors.registry import load_predictor

    embedded = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    openface = embedded.copy()
    openface["source"] = "openface"  # as import-openface writes it
    study = AUPredictor(fit_au_model(openface, holdout=0.25), name="study")
    assert study.model.info["data"]["source"] == ["openface"]
    note = score_au_table(study, embedded).notes[0]  # then: the faces it was fitted on (the same table here)
    assert note.startswith("study learned from OpenFace's AUs, and these are this workbench's extractor "
                           "(MediaPipe)'s: the two put the same AU on different scales") and "0.464" in note
    assert not any(n.startswith("study learned") for n in score_au_table(study, openface).notes)  # one source
    bundled = load_predictor("au-logreg-fer2013")
    to_openface = score_au_table(bundled, openface).notes[0]
    assert to_openface.startswith("au-logreg-fer2013 learned from this workbench's extractor (MediaPipe)'s AUs")
    assert "0.559" in to_openface and "0.707" in to_openface  # the figures of this direction
    assert not any(n.startswith("au-logreg-fer2013 learned") for n in score_au_table(bundled, embedded).notes)

    openface.head(50).to_csv(tmp_path / "of.csv", index=False)
    assert main(["predict", "--au-table", str(tmp_path / "of.csv"), "--out", str(tmp_path / "out.csv")]) == 0
    assert "note: au-logreg-fer2013 learned from this workbench's extractor" in capsys.readouterr().err
    comparison = run_comparison([study, bundled], fer_sample, workers=1)
    assert [n.split(" learned")[0] for n in comparison.source_notes()] == ["study"]
    # a table calibrated from one source to the other (measure.calibration) is on neither's own scale
    from fer_core.evaluation.compare import au_source

    assert au_source("mediapipe→openface") is None and au_source("openface→mediapipe") is None
    calibrated = embedded.assign(source="mediapipe→openface")
    assert not any(n.startswith("study learned") for n in score_au_table(study, calibrated).notes)


def test_a_table_on_a_zero_to_one_scale_is_said_so(capsys, tmp_path):
    """AUs divided by 5 (a common normalisation) scored 0.192 instead of 0.707, every face read as
    nearly neutral, with no word (an OpenFace researcher's review)."""
    from fer_core import au_table
    from fer_core.cli import main
    from fer_core.config import REPO_ROOT
    from fer_core.evaluation.compare import score_au_table
    from fer_core.predictors.registry import load_predictor

    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz").head(400)
    scaled = table.copy()
    scaled[list(AU_COLUMNS)] = scaled[list(AU_COLUMNS)] / 5
    predictor = load_predictor("au-logreg-fer2013")
    assert any(n.startswith("every AU value of") and "0-1 scale" in n for n in score_au_table(predictor, scaled).notes)
    assert not any("0-1 scale" in n for n in score_au_table(predictor, table).notes)
    scaled.to_csv(tmp_path / "scaled.csv", index=False)
    assert main(["evaluate", "--au-table", str(tmp_path / "scaled.csv")]) == 0
    assert "multiply the AU columns by 5" in capsys.readouterr().err
