"""Masks drawn from landmarks on real faces, AUs under a mask, the upper-face model, mask-report,
the Masks page and Try it's mask switch."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import charts, english_left, page_texts, run_app, texts
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core import au_table, config, masks
from fer_core.au_table import AU_CODES, AU_COLUMNS
from fer_core.images import list_images, load_image
from fer_core.measure.extract import measure_faces


@pytest.fixture(scope="module")
def faces(analyzer, astronaut, fer_val):
    """(image, landmarks) of the astronaut and of six FER2013 val crops the detector finds."""
    out = [(astronaut, measure_faces(analyzer, astronaut, keep_landmarks=True)[0].landmarks)]
    for it in list_images(fer_val, ("happy", "sad", "angry", "surprise", "neutral", "disgust")):
        rgb = load_image(it.path)
        found = measure_faces(analyzer, rgb, keep_landmarks=True)
        if found and found[0].method == "detector" and not found[0].low_confidence:
            out.append((rgb, found[0].landmarks))
        if len(out) == 7:
            break
    return out


def test_the_mask_covers_mouth_nose_and_chin_but_no_eye_or_brow(faces):
    for rgb, landmarks in faces:
        assert masks.covered_points(rgb.shape, landmarks, masks.LOWER_FACE_POINTS).all()
        assert not masks.covered_points(rgb.shape, landmarks, masks.UPPER_FACE_POINTS).any()


def test_drawing_is_opaque_antialiased_and_deterministic_for_a_seed(faces):
    rgb, landmarks = faces[1]  # a 48x48 FER2013 crop
    a = masks.draw_mask(rgb, landmarks, "surgical", seed=3)
    assert a.shape == rgb.shape and np.array_equal(a, masks.draw_mask(rgb, landmarks, "surgical", seed=3))
    assert not np.array_equal(a, masks.draw_mask(rgb, landmarks, "surgical", seed=4))
    cover = masks.coverage(rgb.shape, landmarks)
    inside, edge = cover > 0.99, (cover > 0.1) & (cover < 0.9)
    assert inside.sum() > 0.15 * cover.size and edge.any(), "an opaque middle and a soft edge"
    mouth = tuple(np.round(landmarks[13, :2]).astype(int))
    colours = {s: masks.draw_mask(rgb, landmarks, s)[mouth[1], mouth[0]] for s in masks.STYLES}
    assert colours["surgical"][2] > colours["surgical"][0] + 30, "light blue"
    assert colours["white"].min() > 200 and colours["cloth"].max() < 80
    outside = ~(cover > 0)
    assert np.array_equal(a[outside], rgb[outside]), "nothing outside the mask changes"


def test_masked_faces_have_the_flag_and_their_hidden_aus_empty(fer_sample, tmp_path):
    out = tmp_path / "masked.csv"
    done = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(fer_sample), "--out", str(out),
                           "--mask", "surgical"], cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    table = au_table.read(out)
    faces = table[table["success"] == 1]
    assert len(faces) >= 20 and (faces["masked"] == 1).all()
    hidden = [f"{c}_r" for c in masks.HIDDEN_AUS]
    visible = [f"{c}_r" for c in masks.VISIBLE_AUS]
    assert faces[hidden].isna().all().all() and faces[visible].notna().all().all()
    assert set(masks.HIDDEN_AUS) | set(masks.VISIBLE_AUS) == set(AU_CODES)


@pytest.fixture(scope="module")
def bundled_au_predictor():
    from fer_core.predictors.registry import load_predictor

    return load_predictor("au-logreg-fer2013")


def test_unknown_aus_count_for_no_emotion(bundled_au_predictor):
    """A hidden AU sits at the training mean: the same probabilities as filling in that mean, and
    the explanation neither gives it as a reason nor holds it against."""
    p = bundled_au_predictor
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, len(AU_COLUMNS))
    hidden = masks.hide(x)
    filled = np.where(np.isnan(hidden), p.model.mean, hidden)
    assert np.allclose(p.proba_from_aus(hidden[None]), p.proba_from_aus(filled[None]))
    from fer_core.predictors.base import FaceInput

    ex = p.explain(FaceInput(aus=hidden))
    assert set(ex.extra["unknown_aus"]) == set(masks.HIDDEN_AUS)
    assert not {c.au for c in ex.reasons + ex.against} & set(masks.HIDDEN_AUS)
    assert json.loads(json.dumps(ex.to_dict()))  # no NaN in the JSON


def test_an_upper_face_model_trains_and_scores_full_tables(tmp_path):
    table = au_table.read(config.data_dir() / "fer2013_val_au.csv.gz")
    out = tmp_path / "upper.json"
    done = subprocess.run([sys.executable, "-m", "fer_core", "train-au", str(config.data_dir() / "fer2013_val_au.csv.gz"),
                           "--out", str(out), "--aus", "upper"], cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from fer_core.predictors.registry import load_predictor

    p = load_predictor(str(out))
    assert p.model.au_columns == tuple(f"{c}_r" for c in masks.VISIBLE_AUS)
    X = au_table.usable(table, ("happy",))[list(AU_COLUMNS)].to_numpy()[:5]
    lower = [AU_COLUMNS.index(f"{c}_r") for c in masks.HIDDEN_AUS]
    changed = X.copy()
    changed[:, lower] = 4.0
    assert np.allclose(p.proba_from_aus(X), p.proba_from_aus(changed)), "lower-face AUs play no part"
    assert np.allclose(p.proba_from_aus(X), p.proba_from_aus(np.array([masks.hide(x) for x in X])))
    bad = subprocess.run([sys.executable, "-m", "fer_core", "train-au", "x.csv", "--out", str(out), "--aus", "AU99"],
                         cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "AU99" in bad.stderr


def test_mask_command_writes_masked_copies_and_lists_failures(fer_sample, tmp_path):
    src = tmp_path / "src"
    import shutil

    shutil.copytree(fer_sample, src)
    Image.new("RGB", (64, 64), (128, 128, 128)).save(src / "happy" / "blank.png")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fer_core", "mask", str(src), "--out", str(out), "--seed", "1"],
                          cwd=config.REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    originals = sorted(p.relative_to(src) for p in src.rglob("*.jpg"))
    written = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert len(written) >= len(originals) - 3 and set(written) <= set(originals), "same layout"  # a profile, a hand: refused
    first = written[0]
    assert not np.array_equal(load_image(out / first), load_image(src / first))
    failures = pd.read_csv(out / "mask_failures.csv")
    assert "happy/blank.png" in set(failures["file"])


def test_mask_command_checks_out_first_and_leaves_no_stale_failure_list(fer_val, tmp_path, capsys):
    """A file given as --out is said before any masking, in one line; a clean rerun into the same
    folder removes the failure list an earlier run wrote."""
    from conftest import copy_fer_sample

    from fer_core.cli import main

    src = copy_fer_sample(fer_val, tmp_path / "src", per_class=1, classes=("happy", "sad"))
    blank = src / "happy" / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("not a folder")
    assert main(["mask", str(src), "--out", str(in_the_way), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "give --out a folder" in err and "bug" not in err
    out = tmp_path / "out"
    assert main(["mask", str(src), "--out", str(out), "--workers", "1"]) == 0
    assert list(pd.read_csv(out / "mask_failures.csv")["file"]) == ["happy/blank.png"]
    blank.unlink()
    assert main(["mask", str(src), "--out", str(out), "--workers", "1"]) == 0
    assert "2 of 2 images masked" in capsys.readouterr().err
    assert not (out / "mask_failures.csv").exists(), "the old list named a file that is no longer a failure"


def test_mask_report_counts_images_of_emotions_it_does_not_score(fer_val, tmp_path, models_dir, capsys):
    """Fear images beside six-emotion models are left out and said (as compare does); a test set
    of fear only is one line, not a report scoring the models on an emotion they cannot answer."""
    from conftest import copy_fer_sample

    from fer_core.cli import main

    both = copy_fer_sample(fer_val, tmp_path / "both", per_class=2, classes=("happy", "fear"))
    assert main(["mask-report", "--images", str(both), "--models", "au-logreg-fer2013", "--json",
                 "--workers", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    assert report["classes"] == ["happy"] and report["skipped_classes"] == {"fear": 2}
    assert "left out (not predicted by the model): 2 fear" in captured.err
    fear = copy_fer_sample(fer_val, tmp_path / "fear", per_class=2, classes=("fear",))
    assert main(["mask-report", "--images", str(fear), "--models", "au-logreg-fer2013", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "share no emotion" in err and len(err.strip().splitlines()) == 1


def test_mask_report_json_has_both_conditions_the_shift_and_the_reasons(fer_sample, models_dir):
    done = subprocess.run([sys.executable, "-m", "fer_core", "mask-report", "--images", str(fer_sample),
                           "--models", "au-logreg-fer2013", "--json"], cwd=config.REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, "FER_MODELS_DIR": str(models_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    model = report["models"]["au-logreg-fer2013"]
    for condition in ("original", "masked"):
        assert {"n", "accuracy", "accuracy_ci95", "macro_f1", "per_class", "confusion"} <= set(model[condition])
        assert model[condition]["n"] == report["n"] >= 20
    assert set(model["shift"]) == set(report["classes"])
    assert all(abs(sum(row.values())) < 1e-6 for row in model["shift"].values()), "shares move, they sum to 0"
    assert not set(model["reasons"]["masked"]) & set(masks.HIDDEN_AUS), "hidden AUs carry no decision"
    assert report["human_findings"]["source"].startswith("Carbon (2020)")
    # how sure, and how often right, on the answers given: a face it cannot read under the mask is no answer
    for condition in ("original", "masked"):
        judged = model[condition]["n"] - model[condition].get("no_face", 0) - model[condition].get("not_judged", 0)
        assert model[condition]["calibration"]["n"] == judged


def _masks_page_run_on(folder) -> AppTest:
    """The Masks page after a click on Run, with ``folder`` as the test set."""
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "7_Masks.py")), 90)
    at.radio(key="mask_source").set_value("A folder on this machine")
    run_app(at, 90)
    at.text_input(key="mask_folder").set_value(str(folder))
    run_app(at, 90)
    at.button(key="mask_run").click()
    return run_app(at, 240)


def test_masks_page_runs_the_report(models_dir, fer_sample):
    at = _masks_page_run_on(fer_sample)
    report = at.session_state["mask_result"]["report"]
    assert report.original.n == report.masked.n >= 20
    assert any("Carbon" in s for s in texts(at.info))
    assert len(at.get("plotly_chart")) >= 3
    assert {b.proto.label for b in at.get("download_button")} >= {"Mask report (JSON)"}
    # 3-4 faces an emotion: "happy -> more often read as angry (+50 pts)" is no finding without a word
    assert any(c.startswith("Some emotions have as few as ") for c in texts(at.caption)), texts(at.caption)
    assert any("not a diagnosis" in c for c in texts(at.caption))
    # does it know what the mask hides: how sure against how often right, without and with it
    assert "How sure is it under the mask?" in texts(at.header)
    from fer_core.figures.compare import percent

    before = report.original.reports["au-logreg-fer2013"].calibration
    after = report.masked.reports["au-logreg-fer2013"].calibration
    assert any(m.startswith(f"**au-logreg-fer2013**: without the mask {percent(before.mean_confidence)} sure")
               and f"with it {percent(after.mean_confidence)} sure" in m and f"of {after.n:,} (" in m
               and "The mask moved its gap between confidence and accuracy by " in m
               for m in texts(at.markdown)), texts(at.markdown)
    arrow = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("How sure against how often right"))
    assert [d.get("name") for d in arrow["data"] if d.get("showlegend", True)] == ["as sure as right", "au-logreg-fer2013"]
    assert "Confidence without and with the mask (CSV)" in {b.proto.label for b in at.get("download_button")}

    at.number_input(key="mask_draw_seed").set_value(5)  # another draw: the results shown are the old one's
    run_app(at, 90)
    assert any("previous choice" in s for s in texts(at.info))

    # the same results, read in Korean: every label, chart and table header switches language
    at.query_params["lang"] = "ko"
    run_app(at, 90)
    assert at.title[0].value == "마스크"
    # the test set kept with the result is said in Korean too (it stayed "folder `…`")
    assert any(c.startswith(f"테스트 세트: 폴더 `{fer_sample}`") for c in texts(at.caption)), texts(at.caption)
    korean = page_texts(at)
    assert any("Carbon" in s and "마스크를 쓰면" in s for s in korean)
    assert english_left(korean, (*report.names, masks.HUMAN_FINDINGS["source"])) == []
    chart = json.dumps(charts(at), ensure_ascii=False)
    names = {d.get("name") for c in charts(at) for d in c["data"]}
    assert "마스크 착용" in names and "masked" not in names and "행복" in chart


def test_masks_page_masks_large_face_crops_with_face_crops_on(models_dir, fer_val, tmp_path):
    """320 px face crops the photo search misses could not be masked on the page (mask-report had
    --crops, the page no switch): it says so and points to Face crops, which masks and scores them."""
    folder = tmp_path / "crops" / "surprise"
    folder.mkdir(parents=True)
    names = ("PublicTest_13980595.jpg", "PublicTest_1597600.jpg")
    for name in names:
        Image.open(fer_val / "surprise" / name).convert("RGB").resize((320, 320), Image.BICUBIC).save(folder / name)
    shutil.copy(fer_val / "surprise" / "PublicTest_17484027.jpg", folder)  # 48 px: a crop whatever the switch
    at = _masks_page_run_on(tmp_path / "crops")
    report = at.session_state["mask_result"]["report"]
    assert report.original.n == 1 and len(report.unmaskable) == 2 and not report.crops
    assert sorted(report.crop_like_no_face) == [f"surprise/{n}" for n in sorted(names)]
    hint = ("2 of the images without a face found are square or nearly square pictures of 160 px or more. If they "
            "are face crops, the face filling each, turn on **Face crops** above and run it again.")
    assert hint in texts(at.info)
    at.toggle(key="mask_crops").set_value(True)
    run_app(at, 90)
    assert any("previous choice" in s for s in texts(at.info))  # the switch is part of the choice
    at.button(key="mask_run").click()
    run_app(at, 240)
    report = at.session_state["mask_result"]["report"]
    assert report.crops and report.original.n == report.masked.n == 3 and not report.unmaskable
    assert hint not in texts(at.info)
    assert any(c.endswith("Measured as face crops (Face crops): each image, masked and not, went whole to the CNNs.")
               for c in texts(at.caption))
    assert report.to_dict()["crops"] is True


def test_try_it_mask_switch_shows_how_the_prediction_changes(models_dir, astronaut):
    import io

    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90)
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "3_Try_it.py")), 90)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", buf.getvalue(), "image/jpeg"))
    at.toggle(key="try_mask").set_value(True)
    run_app(at, 120)
    said = texts(at.markdown)
    assert any(m.startswith("Without a mask: **happy**") for m in said)
    assert any(m.startswith("**With a mask**") for m in said)
    captions = texts(at.caption)
    assert any("Hidden by the mask" in c and "AU12 lip corner puller" in c for c in captions)
    assert len(at.image) == 2, "the face, and the same face masked"
    # the masked answer is the least sure (happy 28 %, surprise 22 %): said as under the bare one
    assert any(c.startswith("A close call") for c in captions), captions
    # the drawn mask lifts the brows' reading (AU01 0.0 -> 1.5): a reason named for it is the mask's
    assert any(c.startswith("The mask changed how these are measured") and "AU01 inner brow raiser 0.0 →" in c
               for c in captions), captions


def test_the_aus_a_drawn_mask_moves_are_named_largest_first():
    from fer_core.masks import shifted_by_mask

    bare = {"AU01_r": 0.0, "AU06_r": 1.0, "AU07_r": 1.2, "AU45_r": 0.3, "AU12_r": 4.8}
    masked = {"AU01_r": 1.46, "AU06_r": 0.0, "AU07_r": 1.0, "AU45_r": float("nan"), "AU12_r": float("nan")}
    assert shifted_by_mask(bare, masked) == [("AU01", 0.0, 1.46), ("AU06", 1.0, 0.0)]
    assert shifted_by_mask({"AU04": 2.0}, {"AU04": 1.4}) == [("AU04", 2.0, 1.4)]  # codes as keys too


def test_the_bottleneck_network_does_not_read_aus_off_the_mask(faces):
    """Test-time intervention: on a masked face the network's hidden AU units are set unknown, so
    the head decides from the AUs above the mask and the explanation never cites the mask's cloth."""
    from fer_core.predictors.base import FaceInput
    from fer_core.predictors.registry import load_predictor

    p = load_predictor("au-bottleneck-fer2013")
    rgb, landmarks = faces[1]
    covered = masks.draw_mask(rgb, landmarks)
    plain, masked = FaceInput(pixels=covered), FaceInput(pixels=covered, masked=True)
    aus = p.network_aus([plain])
    expected = p.head.predict_proba(np.array([masks.hide(aus[0])]))
    assert np.allclose(p.predict_proba([masked]), expected)
    ex = p.explain(masked)
    assert set(ex.extra["unknown_aus"]) == set(masks.HIDDEN_AUS)
    assert not {c.au for c in ex.reasons + ex.against} & set(masks.HIDDEN_AUS)
    assert "unknown_aus" not in p.explain(plain).extra


def test_the_au_model_page_draws_the_upper_face_models_weights(models_dir):
    from fer_core.manifest import register
    from fer_core.predictors.registry import find_entry

    register(find_entry("au-logreg-upper-fer2013", config.REPO_ROOT / "models"), models_dir)
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "2_AU_model.py")), 90)
    at.selectbox(key="au_inspect").set_value("au-logreg-upper-fer2013")
    run_app(at, 90)
    heatmap = next(c for c in (json.loads(e.proto.spec) for e in at.get("plotly_chart"))
                   if c["layout"]["title"]["text"] == "How each AU weighs on each emotion: AU × emotion coefficients")
    assert len(heatmap["data"][0]["y"]) == len(masks.VISIBLE_AUS)


def test_masks_page_says_in_one_line_when_the_models_answer_no_emotion_of_the_images(models_dir, fer_val, tmp_path):
    """Fear images and a six-emotion model: an error, not a report of 0 % on an emotion the model
    cannot answer."""
    from conftest import copy_fer_sample

    fear = copy_fer_sample(fer_val, tmp_path / "fear", per_class=2, classes=("fear",))
    at = _masks_page_run_on(fear)
    assert not at.exception and "mask_result" not in at.session_state
    assert [e.value for e in at.error if "share no emotion" in e.value]


def test_masks_page_scores_the_emotions_chosen(models_dir, fer_val, tmp_path):
    """Masks had no "emotions scored" choice: the models' shared emotions were scored, so one
    two-emotion model among the defaults narrowed every model's test without a way to widen it."""
    from conftest import copy_fer_sample

    folder = copy_fer_sample(fer_val, tmp_path / "three", per_class=2, classes=("angry", "happy", "sad"))
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "7_Masks.py")), 90)
    at.radio(key="mask_source").set_value("A folder on this machine")
    run_app(at, 90)
    at.text_input(key="mask_folder").set_value(str(folder))
    run_app(at, 90)
    chooser = at.multiselect(key="mask_classes")
    assert chooser.value == ["angry", "happy", "sad"] and chooser.label == "Emotions scored"
    chooser.set_value(["happy", "sad"])
    run_app(at, 90)
    at.button(key="mask_run").click()
    run_app(at, 240)
    report = at.session_state["mask_result"]["report"]
    assert report.original.classes == ("happy", "sad") and report.original.skipped == {"angry": 2}
    at.multiselect(key="mask_classes").set_value([])
    run_app(at, 90)
    assert any("previous choice" in s for s in texts(at.info))
    at.button(key="mask_run").click()
    run_app(at, 90)
    assert any("pick at least one emotion to score" in e for e in texts(at.error)) and not at.exception


def test_the_no_face_to_mask_message_is_korean_in_the_korean_dashboard():
    from fer_core import i18n

    with i18n.using_language("ko"):
        text = i18n.message("no face found to put a mask on in 2 images")
    assert text == "이미지 2장에서 마스크를 씌울 얼굴을 찾지 못했습니다"


# FER2013 val crops whose face mesh is fitted badly (onto a cheek, the nose, a bowed head): a mask
# drawn from it leaves the mouth visible. The placement gate's thresholds were chosen on train.
MISPLACED_VAL = ("angry/PublicTest_48714314.jpg", "disgust/PublicTest_57583458.jpg", "fear/PublicTest_47273940.jpg")


def test_a_mask_that_would_leave_the_mouth_visible_is_refused(analyzer, astronaut, fer_val, faces):
    """Scored as masked, these faces would not be: a folded mesh and val crops with the mesh on a
    cheek are refused in one line, while the upright astronaut and clear val crops are masked. The
    astronaut upside down (the mesh had been fitted as if upright, over her eyes) is now measured in
    the photo turned over: masked over her mouth, and measured masked turned over too."""
    assert masks.mask_and_measure(analyzer, _refused_alone(fer_val)) == masks.MASK_NOT_PLACED_REASON
    upside_down = masks.mask_and_measure(analyzer, np.ascontiguousarray(astronaut[::-1, ::-1]))
    assert isinstance(upside_down, masks.MaskedMeasure) and upside_down.bare == []
    assert [m.method for m in upside_down.original + upside_down.masked] == ["turned upright"] * 2
    for name in MISPLACED_VAL:
        assert masks.mask_and_measure(analyzer, load_image(fer_val / name)) == masks.MASK_NOT_PLACED_REASON, name
    upright = masks.mask_and_measure(analyzer, astronaut)
    assert isinstance(upright, masks.MaskedMeasure) and upright.bare == []
    for rgb, landmarks in faces:
        assert masks.misplaced(analyzer, rgb, landmarks) is None


def _three_faces(astronaut) -> np.ndarray:
    """One photo holding the astronaut's face three times, at three sizes (several faces found)."""
    face = astronaut[40:220, 140:310]
    out = np.full((400, 900, 3), 200, np.uint8)
    out[100:280, 50:220] = face
    out[80:313, 400:620] = np.asarray(Image.fromarray(face).resize((220, 233)))
    out[150:277, 700:820] = np.asarray(Image.fromarray(face).resize((120, 127)))
    return out


@pytest.fixture
def mixed_test_set(fer_val, astronaut, tmp_path):
    """Happy val faces, a happy photo of three faces, an unreadable happy file, and one angry face
    whose mask cannot be placed (so no angry image is left)."""
    import shutil

    from conftest import copy_fer_sample

    root = copy_fer_sample(fer_val, tmp_path / "mixed", per_class=3, classes=("happy",))
    Image.fromarray(_three_faces(astronaut)).save(root / "happy" / "several.png")
    (root / "happy" / "broken.jpg").write_bytes(b"not an image")
    (root / "angry").mkdir()
    shutil.copy(fer_val / MISPLACED_VAL[0], root / "angry")
    return root


def test_mask_report_json_holds_everything_left_out_and_the_paired_test(mixed_test_set, models_dir, capsys):
    from fer_core.cli import main

    assert main(["mask-report", "--images", str(mixed_test_set), "--models", "au-logreg-fer2013", "--json",
                 "--workers", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[-1])
    angry = MISPLACED_VAL[0]
    assert report["unmaskable"] == [f"{angry}: the mask could not be placed on this face"], "relative path, reason"
    assert report["mask_not_placed"] == 1 and f"not masked: {angry}" in captured.err
    assert len(report["skipped"]) == 1 and report["skipped"][0].startswith("happy/broken.jpg: not a readable image")
    [several] = report["several_faces"]
    assert several.startswith("happy/several.png: ") and several.endswith(" faces found; the largest was scored")
    assert report["failed_models"] == [] and report["n"] == 4
    # every angry image was unmaskable: "no images", not a shift of 0 ("no change")
    model = report["models"]["au-logreg-fer2013"]
    assert report["no_images"] == ["angry"] and set(model["shift"]) == {"happy"}
    paired = model["mcnemar"]
    assert {"only_a_correct", "only_b_correct", "p_value"} <= set(paired) and 0 <= paired["p_value"] <= 1


def test_mask_report_refuses_shared_model_names_before_masking_and_keeps_results_when_explaining_fails(
        fer_val, tmp_path, bundled_au_predictor, monkeypatch):
    """Two models of one name are refused before minutes of masking, not after; an explanation
    that crashes on some faces is reported, and the finished comparisons are kept."""
    import copy

    from conftest import copy_fer_sample

    from fer_core.errors import FerError
    from fer_core.evaluation.mask_report import run_mask_report
    from fer_core.images import scan_images

    items = scan_images(copy_fer_sample(fer_val, tmp_path / "set", per_class=2, classes=("happy", "sad"))).items
    said: list[float] = []
    with pytest.raises(FerError, match="share a name"):
        run_mask_report([bundled_au_predictor, copy.copy(bundled_au_predictor)], items,
                        progress=lambda fraction, text: said.append(fraction))
    assert max(said) == 0.0, "nothing was masked"

    p = copy.copy(bundled_au_predictor)
    explain = p.explain

    def explain_unless_masked(face, *args, **kw):
        if face.masked:
            raise RuntimeError("explainer broke")
        return explain(face, *args, **kw)

    monkeypatch.setattr(p, "explain", explain_unless_masked)
    report = run_mask_report([p], items)
    assert report.original.n == report.masked.n == len(items) - len(report.unmaskable) > 0
    assert report.reasons[p.name]["original"] and report.reasons[p.name]["masked"] == {}
    assert report.reasons_failed == [f"{p.name}: could not explain {report.masked.n} of {report.masked.n} masked "
                                     "faces (RuntimeError: explainer broke)"]
    assert report.to_dict()["reasons_failed"] == report.reasons_failed


def test_drawing_a_mask_on_a_large_face_stays_light(analyzer, astronaut):
    """A face filling a large photo (about 1,500 px: the astronaut's face cut out and enlarged, with
    her landmarks enlarged alike) is drawn at its own size: old code drew it at 2x in float64 and
    held over 200 MB for it."""
    import tracemalloc

    landmarks = measure_faces(analyzer, astronaut, keep_landmarks=True)[0].landmarks.astype(np.float64)
    k = 8
    photo = np.asarray(Image.fromarray(astronaut[40:230, 130:330]).resize((200 * k, 190 * k)))
    big = landmarks.copy()
    big[:, :2] = (landmarks[:, :2] - [130, 40]) * k
    small = masks.draw_mask(astronaut, landmarks, seed=2)
    tracemalloc.start()
    try:
        out = masks.draw_mask(photo, big, seed=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes + 60e6, f"{peak / 1e6:.0f} MB"
    assert masks.covered_points(photo.shape, big, masks.LOWER_FACE_POINTS).all()
    mouth = tuple(np.round(big[13, :2]).astype(int))
    assert out[mouth[1], mouth[0], 2] > out[mouth[1], mouth[0], 0] + 30, "light blue over the mouth"
    # Small faces are drawn as before: these sums were computed on this face and checked equal to
    # the code before 58bb66a (float64 blend, alpha at 2-8x), which draws it pixel for pixel alike.
    assert (int(small.astype(np.int64).sum()), int((small != astronaut).any(axis=2).sum())) == (90363919, 5318), \
        "small faces drawn as before"


def test_training_all_aus_on_a_masked_table_points_to_the_upper_face_aus(tmp_path, capsys):
    """Every row of a masked table lacks the AUs a mask hides: the refusal says how to train on it."""
    from fer_core import i18n
    from fer_core.cli import main

    table = au_table.read(config.data_dir() / "fer2013_val_au.csv.gz").head(400).copy()
    table["masked"] = 1
    table[[f"{c}_r" for c in masks.HIDDEN_AUS]] = np.nan
    path = tmp_path / "masked.csv"
    table.to_csv(path, index=False)
    assert main(["train-au", str(path), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--aus upper" in err and "the mask hides AU09, AU10, … AU26" in err
    with i18n.using_language("ko"):
        assert "마스크 위의 AU로 학습하세요" in i18n.message(err.removeprefix("error: "))


def test_mask_command_counts_the_files_its_listing_skipped(fer_val, tmp_path, capsys):
    """A .heic file is listed as not masked, and counted in the total: "2 of 3", not "2 of 2"."""
    from conftest import copy_fer_sample

    from fer_core.cli import main

    src = copy_fer_sample(fer_val, tmp_path / "src", per_class=1, classes=("happy", "sad"))
    (src / "happy" / "phone.heic").write_bytes(b"\0" * 64)
    assert main(["mask", str(src), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "2 of 3 images masked" in err and "1 not masked" in err
    # a folder not named after an emotion is passed over and said, but is not an image: "2 of 3", not "2 of 4"
    (src / "notes").mkdir()
    (src / "notes" / "a.jpg").write_bytes((src / "happy" / next(iter(sorted(os.listdir(src / "happy"))))).read_bytes())
    assert main(["mask", str(src), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "2 of 3 images masked" in err and "; 1 not masked; 1 folder passed over" in err


def test_masks_page_keeps_choices_says_what_was_left_out_and_offers_every_result(models_dir, mixed_test_set, downloads):
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "7_Masks.py")), 90)
    at.selectbox(key="mask_style").set_value("cloth")
    at.number_input(key="mask_draw_seed").set_value(7)
    run_app(at, 90)
    at.radio(key="mask_source").set_value("A folder on this machine")
    run_app(at, 90)  # no folder typed yet: the style and seed must not snap back
    (mixed_test_set / "notes").mkdir()  # a folder not named after an emotion, with an image in it
    (mixed_test_set / "notes" / "x.jpg").write_bytes((mixed_test_set / "happy" / "several.png").read_bytes())
    at.text_input(key="mask_folder").set_value(str(mixed_test_set))
    run_app(at, 90)
    assert at.selectbox(key="mask_style").value == "cloth" and at.number_input(key="mask_draw_seed").value == 7
    at.button(key="mask_run").click()
    run_app(at, 240)
    report = at.session_state["mask_result"]["report"]
    assert report.style == "cloth" and report.seed == 7
    warnings = texts(at.warning)
    assert any("could not be masked" in w and "could not be placed" in w for w in warnings)
    assert any("could not be read" in w and "happy/broken.jpg" in w for w in warnings)
    people = next(df.value for df in at.dataframe if "people with a mask" in df.value.columns)
    angry = people[people["emotion"] == "angry"].iloc[0]
    assert angry["au-logreg-fer2013"] == "no images"
    assert {b.proto.label for b in at.get("download_button")} >= {
        "Mask report (JSON)", "Per image, each model's answer with and without the mask (CSV)"}
    summary = next(df.value for df in at.dataframe if "McNemar p" in df.value.columns)
    assert all(p.startswith("< ") or 0 <= float(p) <= 1 for p in summary["McNemar p"])  # p as text
    # the images the warnings name can be downloaded, each with why (they were on the page only), and
    # the page's JSON says what the listing passed over, as mask-report --json does
    left_out = pd.read_csv(io.BytesIO(downloads["mask_left_out.csv"]))
    unreadable = left_out[left_out["left_out"] == "unreadable"]
    assert "happy/broken.jpg" in " ".join(unreadable["problem"])
    assert set(unreadable["emotion"]) == {"happy"}  # its folder's emotion (it was blank)
    not_masked = left_out[left_out["left_out"] == "not masked"]
    assert len(not_masked) == len(report.unmaskable) > 0
    # each with its emotion (it was empty), the folder's label of the file named in its problem
    assert [e for e in not_masked["emotion"]] == [p.split("/")[0] for p in not_masked["problem"]]
    assert [p.split(":")[0] for p in left_out.loc[left_out["left_out"] == "passed over", "problem"]] == ["notes/"]
    from fer_core.predictors.registry import find_entry

    document = json.loads(downloads["mask_report.json"])
    assert [p.split(":")[0] for p in document["passed_over"]] == ["notes/"]
    # and ends, as mask-report --json does, with what made it (a mask researcher's: it had none)
    assert document["provenance"]["models"]["au-logreg-fer2013"] == find_entry("au-logreg-fer2013").sha256
    assert document["provenance"]["command"] == "the dashboard's Masks page" and document["provenance"]["workbench"]

    at.query_params["lang"] = "ko"  # the reasons are said in Korean too
    run_app(at, 90)
    korean = texts(at.warning)
    assert any("마스크를 제대로 씌울 수 없었습니다" in w for w in korean)
    assert any("happy/broken.jpg: 읽을 수 있는 이미지가 아닙니다" in w for w in korean), korean

    at.query_params["lang"] = "en"
    at.radio(key="mask_source").set_value("Upload a zip of images")
    run_app(at, 90)  # no zip yet: the results below are those of the previous choice, and say so
    assert any("previous choice" in s for s in texts(at.info))


def test_a_smaller_face_the_mask_missed_is_a_failure_row_not_a_masked_face(analyzer, astronaut):
    """extract --mask: a face left bare (``MaskedMeasure.bare``) gets the mask-not-placed reason and
    no AUs; before, it was written as a masked face (masked = 1) with its bare lower-face AUs hidden."""
    from fer_core.measure.extract import rows_for_image

    measured = measure_faces(analyzer, _three_faces(astronaut))
    assert len(measured) >= 3
    rows = rows_for_image("three.jpg", "happy", measured, masked=True, bare=[2])
    assert [r["success"] for r in rows[:3]] == [1, 1, 0] and rows[2]["reason"] == masks.MASK_NOT_PLACED_REASON
    assert all(np.isnan(rows[2][c]) for c in AU_COLUMNS) and not np.isnan(rows[0]["AU04_r"])
    assert np.isnan(rows[0]["AU12_r"])  # a masked face's hidden AU stays unknown
    assert rows[2]["confidence"] == measured[2].confidence > 0  # found, only not masked: its detection score
    # no face at all: the detection score is empty, not a 0 a face measured whole also has (a reviewer's mean
    # of the column mixed the two)
    assert np.isnan(rows_for_image("cup.jpg", None, "no face found")[0]["confidence"])


def test_a_large_faces_mask_keeps_an_anti_aliased_edge(analyzer, astronaut):
    """A face about 600 px wide: its fabric is drawn at its own size (light), but the outline's edge
    pixels are partly covered, not 0 or 1 (drawn at its own size too, the edge was jagged)."""
    landmarks = measure_faces(analyzer, astronaut, keep_landmarks=True)[0].landmarks.astype(np.float64)
    k = 5
    photo = np.asarray(Image.fromarray(astronaut[40:230, 130:330]).resize((200 * k, 190 * k)))
    big = landmarks.copy()
    big[:, :2] = (landmarks[:, :2] - [130, 40]) * k
    x0, y0, x1, y1, scale = masks._region(masks.mask_polygon(big), photo.shape)
    assert max(x1 - x0, y1 - y0) >= 400 and scale == 1, "the fabric is drawn at the face's own size"
    cover = masks.coverage(photo.shape, big)
    edge = (cover > 0.1) & (cover < 0.9)
    assert edge.sum() > 400, f"{edge.sum()} partly covered pixels along the edge"
    out = masks.draw_mask(photo, big, seed=1)
    changed = (out != photo).any(axis=2)
    assert changed[edge].mean() > 0.9 and not changed[cover == 0].any(), "edge pixels blended, outside untouched"


def test_face_presence_is_the_analyzers_public_measure(analyzer, astronaut):
    """masks asks FaceAnalyzer.presence_around (no private attribute of another module); the values
    are those the gate was tuned on (checked equal, on 29 faces, to the sampling before the move)."""
    upright = measure_faces(analyzer, astronaut, keep_landmarks=True)[0].landmarks
    upside_down = np.ascontiguousarray(astronaut[::-1, ::-1])
    fitted_upright = analyzer.detect(upside_down)[0].landmarks  # the mesh as the detector alone fits it
    assert analyzer.presence_around(astronaut, upright) > 0.99
    assert analyzer.presence_around(upside_down, fitted_upright) < masks.MIN_FACE_PRESENCE
    assert masks.face_presence(analyzer, astronaut, upright) == analyzer.presence_around(astronaut, upright)
    import inspect

    assert "._crop" not in inspect.getsource(masks)


def _refused_alone(fer_val) -> np.ndarray:
    """A photo of one face the mask cannot be placed on (``_refused_beside_the_astronaut``'s crop)."""
    crop = load_image(fer_val / "surprise" / "PublicTest_84568132.jpg")
    out = np.full((500, 900, 3), 200, np.uint8)
    out[20:320, 20:320] = np.asarray(Image.fromarray(crop).resize((300, 300)))
    return out


def _refused_beside_the_astronaut(astronaut, fer_val) -> np.ndarray:
    """The reviewer's photo: a FER2013 crop the mask cannot be placed on (its mesh folds), enlarged
    to be the largest face, beside the astronaut's face."""
    crop = load_image(fer_val / "surprise" / "PublicTest_84568132.jpg")
    out = np.full((500, 900, 3), 200, np.uint8)
    out[20:320, 20:320] = np.asarray(Image.fromarray(crop).resize((300, 300)))
    out[150:390, 500:720] = astronaut[20:260, 120:340]
    return out


def test_a_refused_largest_face_leaves_the_other_faces_masked(analyzer, astronaut, fer_val, tmp_path):
    """The largest face's mask cannot be placed: the astronaut beside it is still masked and
    measured (extract --mask writes a failure row for the large face and a masked row for hers);
    before, the whole photo was one face-0 failure."""
    from fer_core.images import LabeledImage
    from fer_core.measure.extract import extract_table

    photo = _refused_beside_the_astronaut(astronaut, fer_val)
    measure = masks.mask_and_measure(analyzer, photo)
    assert isinstance(measure, masks.MaskedMeasure) and measure.bare == [0] and len(measure.original) == 2
    her = measure.original[1]
    x, y, w, h = her.box
    assert x > 450, "the astronaut is the second face"
    assert not np.array_equal(measure.image[int(y):int(y + h), int(x):int(x + w)],
                              photo[int(y):int(y + h), int(x):int(x + w)]), "her face is masked"
    assert np.array_equal(measure.image[:, :400], photo[:, :400]), "the refused face is left bare"
    assert measure.masked[1].blendshapes

    path = tmp_path / "happy" / "group.png"
    path.parent.mkdir()
    Image.fromarray(photo).save(path)
    table = extract_table([LabeledImage(path, "happy")], workers=1, mask="surgical", root=tmp_path)
    rows = table.set_index("face")
    assert list(rows["success"]) == [0, 1] and rows.loc[0, "reason"] == masks.MASK_NOT_PLACED_REASON
    assert rows.loc[1, "masked"] == 1 and not np.isnan(rows.loc[1, "AU04_r"]) and np.isnan(rows.loc[1, "AU12_r"])
    assert rows.loc[0, "masked"] == 0  # no mask was drawn on the face left bare


def test_mask_and_mask_report_name_the_face_left_bare_and_the_image_of_several_faces(
        astronaut, fer_val, group_photo, tmp_path, models_dir, capsys):
    """``mask`` said "1 images hold a face the mask could not be placed on" without naming it, and
    its failures list left it out; ``mask-report`` said nothing of an image of several faces, which
    its JSON and the page name."""
    from fer_core.cli import main

    path = tmp_path / "set" / "happy" / "group.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(_refused_beside_the_astronaut(astronaut, fer_val)).save(path)
    out = tmp_path / "masked"
    assert main(["mask", str(tmp_path / "set"), "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 image holds a face the mask could not be placed on" in err
    assert f"happy/group.png: face 1 of 2 (from the left) left bare: {masks.MASK_NOT_PLACED_REASON}" in err
    assert "face 1 of 2 (from the left) left bare" in (out / "mask_failures.csv").read_text()
    # numbered from the left as predict and Try it number faces: moved right, the refused (largest) face is 2
    mirrored = tmp_path / "mirrored" / "happy" / "group.png"
    mirrored.parent.mkdir(parents=True)
    photo = _refused_beside_the_astronaut(astronaut, fer_val)
    swapped = np.full_like(photo, 200)
    swapped[150:390, 20:240], swapped[20:320, 560:860] = photo[150:390, 500:720], photo[20:320, 20:320]
    Image.fromarray(swapped).save(mirrored)
    assert main(["mask", str(tmp_path / "mirrored"), "--out", str(tmp_path / "mirrored_out"), "--workers", "1"]) == 0
    assert "happy/group.png: face 2 of 2 (from the left) left bare" in capsys.readouterr().err
    # extract --mask counts the image as one with a face: its bare face is a failure row, not an image
    assert main(["extract", str(tmp_path / "set"), "--out", str(tmp_path / "au.csv"), "--mask", "surgical",
                 "--workers", "1"]) == 0
    assert "1 image, 1 face -> " in (err := capsys.readouterr().err) and "; 0 without a face measured under a mask" in err
    people = tmp_path / "people" / "happy" / "three.png"
    people.parent.mkdir(parents=True)
    Image.fromarray(group_photo).save(people)
    assert main(["mask-report", "--images", str(tmp_path / "people"), "--models", "au-logreg-fer2013",
                 "--workers", "1"]) == 0
    assert "several faces: happy/three.png: 3 faces found" in capsys.readouterr().err


def test_try_it_says_per_face_where_the_mask_could_not_be_placed(models_dir, astronaut, fer_val, tiny_seven_cnn):
    """Try it's mask switch: beside a refused largest face the astronaut is shown masked; on a photo
    where no face takes a mask each face says so. Before, both photos gave one warning "image: …"."""
    import io

    from conftest import seven_cnn_entry

    from fer_core.manifest import read_manifest, write_manifest

    write_manifest(read_manifest(models_dir) + [seven_cnn_entry(tiny_seven_cnn)], models_dir)

    def png(rgb: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "3_Try_it.py")), 90)
    at.file_uploader(key="try_upload").set_value([
        ("group.png", png(_refused_beside_the_astronaut(astronaut, fer_val)), "image/png"),
        ("refused.png", png(_refused_alone(fer_val)), "image/png")])
    at.toggle(key="try_mask").set_value(True)
    run_app(at, 240)
    captions = texts(at.caption)
    assert sum(c.startswith("Face 1: the mask could not be placed") for c in captions) == 2, captions
    assert not [w for w in texts(at.warning) if "mask" in w], texts(at.warning)
    assert sum(m.startswith("**With a mask**") for m in texts(at.markdown)) == 2
    shown = [c for img in at.image for c in (i.caption for i in img.proto.imgs)]
    assert "Face 2 masked" in shown and "Face 1 masked" not in shown, shown
    # every other model's answer on the same masked face, beside its answer without the mask (only
    # the explaining model was run on it)
    others = at.multiselect(key="try_others").value
    lines = [m for m in texts(at.markdown) if " without a mask → **" in m]
    assert others and sorted(m.split(":")[0] for m in lines) == sorted(others), lines


def test_mask_report_files_worker_crashes_as_unmaskable_and_counts_why_nothing_was_masked(
        astronaut, models_dir, tmp_path, fer_val):
    """A worker that crashes on a file (a real native crash) is a measuring failure, not an
    unreadable file; when no image is left, the error counts each cause (before: "no face found
    to put a mask on in 3 images", though faces were found and one file could not be read)."""
    from fer_core import i18n

    root = tmp_path / "set"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    Image.new("L", (32767, 64), 128).save(root / "sad" / "crash_strip.png")  # crashes the detector
    Image.fromarray(_refused_alone(fer_val)).save(root / "happy" / "refused.png")
    (root / "happy" / "broken.jpg").write_bytes(b"not an image")
    env = {**os.environ, "FER_MODELS_DIR": str(models_dir), "FER_CACHE_DIR": str(tmp_path / "cache"),
           "FER_MAX_SIDE": "40000", "FER_MAX_ASPECT": "100000", "FER_MAX_DECODE_SIDE": "40000"}
    command = [sys.executable, "-m", "fer_core", "mask-report", "--images", str(root), "--models",
               "au-logreg-fer2013", "--json", "--workers", "1"]
    done = subprocess.run(command, cwd=config.REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    said = done.stderr.strip().splitlines()[-1].removeprefix("error: ")
    assert said == ("none of 3 images could be masked: 0 without a face, 1 with no face the mask could be "
                    "placed on, 1 whose measuring failed, 1 unreadable"), said
    with i18n.using_language("ko"):
        assert i18n.message(said) == ("이미지 3장 중 마스크를 씌울 수 있었던 이미지가 없습니다: 얼굴 없음 0장, "
                                      "마스크를 제대로 씌울 얼굴 없음 1장, 측정 실패 1장, 읽을 수 없음 1장")

    Image.fromarray(astronaut).save(root / "happy" / "upright.png")
    done = subprocess.run(command, cwd=config.REPO_ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    crashed = [line for line in report["unmaskable"] if line.startswith("sad/crash_strip.png: ")]
    assert crashed and "crashed" in crashed[0], report["unmaskable"]
    assert [line.split(":")[0] for line in report["skipped"]] == ["happy/broken.jpg"], report["skipped"]
    assert report["n"] == 1 and report["mask_not_placed"] == 1


def test_a_timed_out_files_line_reads_in_korean_whole():
    """The Masks page lists "file: reason" lines; a timeout's line read half in English in Korean
    ("happy/a.jpg: took over 300 s and 중단되었습니다…")."""
    from fer_core import i18n

    with i18n.using_language("ko"):
        said = i18n.message("happy/a.jpg: took over 300 s and was stopped; try a smaller image")
        crashed = i18n.message("sad/b.png: the face detector crashed on this image (signal 11); it was skipped")
    assert said == "happy/a.jpg: 300초가 넘게 걸려 중단되었습니다. 더 작은 이미지를 쓰세요"
    assert crashed.startswith("sad/b.png: 이 이미지에서 얼굴 검출기가") and "crashed" not in crashed


def _hand_made_mask_report():
    """40 images, all right without the mask; with it all happy ones and 5 sad ones wrong."""
    from fer_core.evaluation.compare import Comparison
    from fer_core.evaluation.mask_report import MaskReport

    labels = ["happy"] * 20 + ["sad"] * 20

    def comparison(answers):
        table = pd.DataFrame({"file": [f"/t/{label}/{i}.png" for i, label in enumerate(labels)], "label": labels,
                              "m": answers})
        return Comparison.from_table(table, ["m"], ("happy", "sad"))

    return MaskReport(comparison(labels), comparison(["sad"] * 20 + ["happy"] * 5 + ["sad"] * 15), "surgical", 0)


def test_masks_summary_writes_a_tiny_p_as_text_and_every_share_with_one_decimal(models_dir):
    """A real drop showed McNemar p as 0.0000 (reads as impossible), shares as "41.67%" beside
    "25%", and the p's help spoke of a drop only, though the test is two-sided."""
    report = _hand_made_mask_report()
    for lang, both_ways in (("en", "a drop or a rise"), ("ko", "하락이든 상승이든")):
        at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "7_Masks.py"))
        at.session_state["mask_result"] = {"report": report, "description": "hand-made", "signature": "x"}
        at.query_params["lang"] = lang
        run_app(at, 90)
        table = next(df for df in at.dataframe if "McNemar p" in df.value.columns)
        row = table.value.iloc[0]
        assert row["McNemar p"] == "< 0.0001"
        assert (row["original"], row["masked"], row["drop"]) == pytest.approx((100.0, 37.5, 62.5))
        lo, hi = report.paired_test("m").difference_ci95  # the drop's interval beside it
        assert 0.3 < lo < 0.625 < hi <= 1
        interval = f"{100 * lo:+.1f} to {100 * hi:+.1f} pp" if lang == "en" else f"{100 * lo:+.1f} ~ {100 * hi:+.1f} %p"
        assert row["drop ci95"] == interval
        columns = json.loads(table.proto.columns)
        assert {c: columns[c]["type_config"]["format"] for c in ("original", "masked", "drop", "n")} == {
            "original": "%.1f%%", "masked": "%.1f%%", "drop": "%.1f pp" if lang == "en" else "%.1f%%p", "n": "localized"}  # points
        assert both_ways in columns["McNemar p"]["help"]
        assert ("not adjusted" if lang == "en" else "보정하지 않습니다") in columns["McNemar p"]["help"]


def test_mask_report_does_not_blame_the_mask_for_an_emotion_the_folder_never_held(fer_val, tmp_path, capsys,
                                                                                   models_dir):
    """"no images of fear could be masked" was said of a folder without fear images."""
    from conftest import copy_fer_sample

    from fer_core.cli import main

    src = copy_fer_sample(fer_val, tmp_path / "src", per_class=2, classes=("happy", "sad"))
    Image.fromarray(np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (200, 1))).convert("RGB").save(
        src / "happy" / "no_face.jpg")  # a gradient: nothing to mask
    assert main(["mask-report", "--images", str(src), "--models", "au-logreg-fer2013", "--classes", "happy,sad,fear",
                 "--workers", "1", "--csv", str(tmp_path / "per_image.csv")]) == 0
    err = capsys.readouterr().err
    assert "the test set has no images of fear" in err and "could be masked" not in err
    # the per-image answers, as the page's download (a replication checks McNemar from them)
    per_image = pd.read_csv(tmp_path / "per_image.csv", keep_default_na=False)
    assert list(per_image.columns) == ["file", "label", "au-logreg-fer2013 original", "au-logreg-fer2013 masked",
                                       "left_out"]
    shown = [f"{e}/{p.name}" for e in ("happy", "sad") for p in (src / e).iterdir()]
    refused = [f for f in shown if f"{f}: the mask could not be placed" in err]  # a child's hand at the mouth
    # every image has its row: one not masked says why, its answers empty (it was dropped without a word)
    assert sorted(per_image["file"]) == sorted(shown) and len(refused) <= 1
    left_out = per_image.set_index("file")["left_out"]
    assert left_out["happy/no_face.jpg"] == "no face found" and per_image.set_index("file").loc[
        "happy/no_face.jpg", "au-logreg-fer2013 masked"] == ""
    assert all(left_out[f] == "the mask could not be placed on this face" for f in refused)
    assert (left_out[[f for f in shown if f not in refused and f != "happy/no_face.jpg"]] == "").all()


def test_training_on_masked_faces_names_the_hidden_aus_the_chosen_ones_need():
    """train-au --aus AU01,AU12 on masked faces said "a model of all AUs needs" the hidden AUs:
    it names AU12, the one the mask hides of those asked for."""
    from fer_core.errors import AUTableError

    rows = []
    for i, emotion in enumerate(["happy", "sad"] * 10):
        aus = {c: (np.nan if c.split("_")[0] in masks.HIDDEN_AUS else 1.0 + i % 3) for c in AU_COLUMNS}
        rows.append({"file": f"{emotion}/{i}.jpg", "face": 0, "label": emotion, "success": 1, "masked": 1, **aus})
    table = au_table.normalise(pd.DataFrame(rows))
    with pytest.raises(AUTableError) as caught:
        au_table.require_usable(table, ["happy", "sad"], ["AU01_r", "AU12_r"], name="masked.csv")
    assert "the mask hides AU12, which the model needs" in str(caught.value) and "all AUs" not in str(caught.value)
    from fer_core import i18n

    with i18n.using_language("ko"):
        assert "마스크가 모델에 필요한 AU12를 가립니다" in i18n.message(str(caught.value))


def test_a_masked_face_an_au_model_cannot_read_is_not_judged_not_no_face():
    """A lower-face AU model under the mask found no AU left on faces that were all found: the
    shift said "no face +100", which is untrue; it is "not judged"."""
    from fer_core.evaluation.compare import Comparison
    from fer_core.evaluation.mask_report import NOT_JUDGED, MaskReport
    from fer_core.figures.masks import shift_heatmap

    labels = ["happy"] * 4 + ["sad"] * 4

    def comparison(answers):
        table = pd.DataFrame({"file": [f"/t/{label}/{i}.png" for i, label in enumerate(labels)], "label": labels,
                              "m": answers})
        return Comparison.from_table(table, ["m"], ("happy", "sad"))

    report = MaskReport(comparison(labels), comparison([None] * 8), "surgical", 0)
    assert report.shift("m")["happy"] == {"happy": -1.0, NOT_JUDGED: 1.0}
    assert list(shift_heatmap(report, "m").data[0].x)[-1] == "not judged (its AUs hidden)"
    # two answers gaining alike are both named beside people's findings (the table named one)
    files = [f"/t/{label}/{i}.png" for i, label in enumerate(labels)]

    def of_three(answers):
        table = pd.DataFrame({"file": files, "label": labels, "m": answers})
        return Comparison.from_table(table, ["m"], ("happy", "sad", "surprise"))

    tied = MaskReport(of_three(labels), of_three(["sad", "surprise", "happy", "happy"] + ["sad"] * 3 + [None]),
                      "surgical", 0)
    assert tied.most_gained("m", "happy") == (["sad", "surprise"], 0.25)
    assert tied.most_gained("m", "sad") == ([NOT_JUDGED], 0.25)
    # and the JSON: the masked faces were all found (a reviewer read "no_face": 41 as the detector failing)
    masked = report.to_dict()["models"]["m"]["masked"]
    assert (masked["not_judged"], masked["not_judged_per_class"]) == (8, [4, 4]) and "no_face" not in masked


def test_mask_failures_keep_a_formula_like_file_name_as_text(fer_val, tmp_path, capsys):
    """mask_failures.csv was written with a plain csv writer: a file named "=2+5.jpg" became a formula."""
    from fer_core.cli import main

    src = tmp_path / "flat"
    src.mkdir()
    (src / "=2+5.jpg").write_bytes(b"not an image")
    (src / "face.jpg").write_bytes(next((fer_val / "happy").glob("*.jpg")).read_bytes())
    assert main(["mask", str(src), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    capsys.readouterr()
    text = (tmp_path / "out" / "mask_failures.csv").read_text(encoding="utf-8")
    assert "\n'=2+5.jpg," in text and "\n=2+5" not in text


def test_every_emotion_scored_gets_an_example_face(fer_val, tmp_path, models_dir):
    """Examples stopped at six: with seven emotions scored, surprise had none (a reviewer's)."""
    from conftest import copy_fer_sample
    from test_au_model import synthetic_table

    from fer_core.emotions import SEVEN_EMOTIONS
    from fer_core.evaluation.mask_report import run_mask_report
    from fer_core.images import list_images
    from fer_core.predictors.au_models import AUPredictor, fit_au_model

    seven = AUPredictor(fit_au_model(synthetic_table(12, classes=SEVEN_EMOTIONS), SEVEN_EMOTIONS), name="seven")
    six = AUPredictor(fit_au_model(synthetic_table(12)), name="six")
    src = copy_fer_sample(fer_val, tmp_path / "seven", per_class=2, classes=SEVEN_EMOTIONS)
    report = run_mask_report([seven, six], list_images(src), classes=SEVEN_EMOTIONS, workers=1)
    masked_emotions = {it.split("/")[0] for it in report.per_image_frame()["file"]}
    assert {example.emotion for example in report.examples} == masked_emotions and len(masked_emotions) == 7
    # why the six-emotion model scores 0 on fear, in the JSON too (it was said on stderr only: a seven-emotion review)
    assert report.to_dict()["cannot_predict"] == {"six": ["fear"]}
    assert set(report.to_dict()["unscored_answers"]) == {"original", "masked"}


def test_try_it_says_what_an_upper_face_model_reads_and_that_the_cheeks_read_low_under_a_mask(models_dir, astronaut):
    """A FACS reviewer: under a mask the upper-face model called the astronaut's AU06 "absent"
    (the mask's edge lies on the cheeks, and AU06 reads low), and Try it never said the model
    reads 7 of the 17 AUs shown."""
    import io

    from fer_core.manifest import read_manifest, write_manifest

    upper = next(e for e in read_manifest(config.REPO_ROOT / "models") if e.name == "au-logreg-upper-fer2013")
    write_manifest(read_manifest(models_dir) + [upper], models_dir)
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90)
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "3_Try_it.py")), 90)
    at.selectbox(key="try_model").set_value("au-logreg-upper-fer2013")
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", buf.getvalue(), "image/jpeg"))
    at.toggle(key="try_mask").set_value(True)
    run_app(at, 120)
    captions = texts(at.caption)
    assert "This model reads 7 of the 17 AUs: AU01, AU02, AU04, AU05, AU06, AU07, AU45." in captions
    assert any(c.startswith("Under a mask AU06 cheek raiser and AU07 lid tightener read lower") for c in captions)


def test_a_mask_that_leaves_the_mouth_showing_is_refused(analyzer, fer_val):
    """A turned face's mask, drawn from its mesh, left half its open mouth in sight, and the face
    counted as masked (a reviewer's tilted face). Five or more of the lips' 20 outline points
    outside the mask refuse it, as a misplaced mask is refused; a frontal face passes."""
    profile = np.ascontiguousarray(load_image(fer_val / "disgust" / "PublicTest_1274561.jpg"))
    [face] = measure_faces(analyzer, profile, keep_landmarks=True)[:1]
    bare = np.count_nonzero(~masks.covered_points(profile.shape, face.landmarks, masks.OUTER_LIP_POINTS))
    assert bare > masks.MAX_BARE_LIP_POINTS
    assert masks.misplaced(analyzer, profile, face.landmarks) == masks.MOUTH_SHOWING_REASON
    frontal = np.ascontiguousarray(load_image(fer_val / "happy" / sorted(p.name for p in (fer_val / "happy").glob("*.jpg"))[0]))
    [face] = measure_faces(analyzer, frontal, keep_landmarks=True)[:1]
    assert masks.covered_points(frontal.shape, face.landmarks, masks.OUTER_LIP_POINTS).all()
    assert masks.misplaced(analyzer, frontal, face.landmarks) is None


def test_images_mask_wrote_are_read_as_masked_everywhere(fer_sample, astronaut_jpeg, tmp_path, capsys):
    """A mask researcher made stimuli with mask, then scored them with compare and predict: the
    drawn mask was read as a bare face (AU17 1.2 off the cloth; au-logreg 0.196 where mask-report
    said 0.250 on the same faces). mask now marks each file it writes, and predict, compare,
    evaluate and extract read what the mask hides as unknown; a file masked already is not masked
    again."""
    from fer_core.cli import main
    from fer_core.images import LabeledImage
    from fer_core.masks import HIDDEN_AUS, drawn_mask_of
    from fer_core.pipeline import prepare_faces

    src = tmp_path / "src"
    (src / "happy").mkdir(parents=True)
    shutil.copy(astronaut_jpeg, src / "happy" / "astronaut.jpg")
    for path in list((fer_sample / "sad").glob("*.jpg"))[:2]:
        (src / "sad").mkdir(exist_ok=True)
        Image.open(path).save(src / "sad" / (path.stem + ".png"))
    out = tmp_path / "masked"
    assert main(["mask", str(src), "--out", str(out), "--workers", "1", "--seed", "3"]) == 0
    capsys.readouterr()
    written = sorted(p for p in out.rglob("*") if p.suffix in (".jpg", ".png"))
    assert written and all(drawn_mask_of(p) == "drawn mask: surgical, seed 3" for p in written)
    assert drawn_mask_of(src / "happy" / "astronaut.jpg") is None

    assert main(["predict", str(out / "happy" / "astronaut.jpg"), "--json"]) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    assert all(face["aus"][f"{code}_r"] is None for code in HIDDEN_AUS) and face["aus"]["AU01_r"] is not None
    assert not {c["au"] for c in face["top_aus"]} & set(HIDDEN_AUS)
    assert main(["predict", str(out / "happy" / "astronaut.jpg")]) == 0  # as text too (it raised a TypeError)
    assert f"unknown (hidden by the mask): {' '.join(HIDDEN_AUS)}" in capsys.readouterr().out

    prepared = prepare_faces([LabeledImage(p, "happy") for p in written], need_aus=True, need_pixels=True)
    assert all(f.masked and np.isnan(f.aus[[AU_CODES.index(c) for c in HIDDEN_AUS]]).all()
               for f in prepared.faces if f.found)

    assert main(["extract", str(out), "--out", str(tmp_path / "au.csv"), "--workers", "1"]) == 0
    table = au_table.read(tmp_path / "au.csv")
    found = table[table["success"] == 1]
    assert len(found) and found["masked"].eq(1).all() and found["AU12_r"].isna().all()

    again = tmp_path / "twice"
    assert main(["mask", str(out), "--out", str(again), "--workers", "1"]) == 2  # nothing masked: as extract says it
    assert f"0 of {len(list_images(out))} images masked" in capsys.readouterr().err
    assert "already wears a mask drawn by mask" in (again / "mask_failures.csv").read_text()


def test_mask_takes_crops_as_extract_and_mask_report_do(fer_val, tmp_path, capsys):
    """A 300 px face crop had "no face found" from mask, with no hint and no --crops, though
    mask-report, extract and predict take one: larger crops could be scored masked but not made
    into masked pictures (a mask researcher's review: this face, upscaled)."""
    from fer_core.cli import main
    from fer_core.masks import drawn_mask_of

    src = tmp_path / "big" / "angry"
    src.mkdir(parents=True)
    with Image.open(fer_val / "angry" / "PublicTest_12700974.jpg") as face:
        face.convert("RGB").resize((300, 300), Image.BICUBIC).save(src / "big.jpg")
    assert main(["mask", str(src.parent), "--out", str(tmp_path / "plain"), "--workers", "1"]) == 2  # nothing masked
    err = capsys.readouterr().err
    assert "0 of 1 images masked" in err and "rerun with --crops" in err
    assert main(["mask", str(src.parent), "--out", str(tmp_path / "crops"), "--workers", "1", "--crops"]) == 0
    assert "1 of 1 images masked" in capsys.readouterr().err
    assert drawn_mask_of(tmp_path / "crops" / "angry" / "big.jpg")


def test_mask_report_compares_the_models_with_each_other_on_the_masked_faces(fer_sample, capsys):
    """Does the upper-face model read masked faces better than the full one? mask-report tested
    each model bare against masked only; the question needed the per-image CSV by hand (a mask
    researcher's review). Each pair is now tested on the same masked faces (McNemar, Holm)."""
    from fer_core.cli import main

    upper = str(config.REPO_ROOT / "models" / "au_logreg_upper_fer2013.json")
    assert main(["mask-report", "--images", str(fer_sample), "--models", f"au-logreg-fer2013,{upper}",
                 "--workers", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [pair] = report["masked_pairs"]
    names = list(report["models"])
    assert (pair["a"], pair["b"]) == tuple(names)
    masked = [report["models"][n]["masked"]["accuracy"] for n in names]
    n = report["n"]
    assert (pair["only_a_correct"] - pair["only_b_correct"]) == pytest.approx(round((masked[0] - masked[1]) * n))
    assert main(["mask-report", "--images", str(fer_sample), "--models", f"au-logreg-fer2013,{upper}",
                 "--workers", "1"]) == 0
    lo, hi = pair["accuracy_difference_ci95"]
    assert (f"masked, McNemar {names[0]} vs {names[1]}: accuracy A-B {pair['accuracy_difference']:+.3f} (95% CI "
            f"{lo:+.3f} to {hi:+.3f}), only-A {pair['only_a_correct']}") in capsys.readouterr().out


def test_the_masks_move_of_a_models_gap_is_paired_over_the_faces_it_answered_both_times(mixed_test_set, models_dir):
    """The change in the gap (mean confidence minus share right) is the mean of each face's change,
    over the faces answered without and with the mask, with its interval; the counts of answers are
    each condition's own (a face an AU model cannot read under the mask is no answer)."""
    from fer_core.evaluation.compare import top_probability
    from fer_core.evaluation.mask_report import run_mask_report
    from fer_core.figures.masks import confidence_frame
    from fer_core.images import list_images

    report = run_mask_report(["au-logreg-fer2013"], list_images(mixed_test_set))
    row = confidence_frame(report).iloc[0]
    before = top_probability(report.original.probabilities["au-logreg-fer2013"])
    after = top_probability(report.masked.probabilities["au-logreg-fer2013"])
    both = np.isfinite(before) & np.isfinite(after)
    per_face = (after - report.masked.correct("au-logreg-fer2013")) - (before - report.original.correct("au-logreg-fer2013"))
    assert row["paired faces"] == both.sum() > 0
    assert row["gap change"] == pytest.approx(per_face[both].mean(), abs=1e-6)
    assert row["gap change ci95_low"] < row["gap change"] < row["gap change ci95_high"]
    assert row["masked answers"] == report.masked.reports["au-logreg-fer2013"].calibration.n
