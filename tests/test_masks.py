"""Masks drawn from landmarks on real faces, AUs under a mask, the upper-face model, mask-report,
the Masks page and Try it's mask switch."""

from __future__ import annotations

import json
import os
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
    assert len(written) >= len(originals) - 2 and set(written) <= set(originals), "same layout"
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
    assert "left out (not predicted by every model): 2 fear" in captured.err
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

    at.number_input(key="mask_draw_seed").set_value(5)  # another draw: the results shown are the old one's
    run_app(at, 90)
    assert any("previous choice" in s for s in texts(at.info))

    # the same results, read in Korean: every label, chart and table header switches language
    at.query_params["lang"] = "ko"
    run_app(at, 90)
    assert at.title[0].value == "마스크"
    korean = page_texts(at)
    assert any("Carbon" in s and "마스크를 쓰면" in s for s in korean)
    assert english_left(korean, (*report.names, masks.HUMAN_FINDINGS["source"])) == []
    chart = json.dumps(charts(at), ensure_ascii=False)
    names = {d.get("name") for c in charts(at) for d in c["data"]}
    assert "마스크 착용" in names and "masked" not in names and "행복" in chart


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
    assert any("Hidden by the mask" in c and "AU12" in c for c in texts(at.caption))
    assert len(at.image) == 2, "the face, and the same face masked"


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
                   if c["layout"]["title"]["text"] == "What the model looks at: AU × emotion coefficients")
    assert len(heatmap["data"][0]["y"]) == len(masks.VISIBLE_AUS)


def test_masks_page_says_in_one_line_when_the_models_answer_no_emotion_of_the_images(models_dir, fer_val, tmp_path):
    """Fear images and a six-emotion model: an error, not a report of 0 % on an emotion the model
    cannot answer."""
    from conftest import copy_fer_sample

    fear = copy_fer_sample(fer_val, tmp_path / "fear", per_class=2, classes=("fear",))
    at = _masks_page_run_on(fear)
    assert not at.exception and "mask_result" not in at.session_state
    assert [e.value for e in at.error if "share no emotion" in e.value]


def test_the_no_face_to_mask_message_is_korean_in_the_korean_dashboard():
    from fer_core import i18n

    with i18n.using_language("ko"):
        text = i18n.message("no face found to put a mask on in 2 images")
    assert text == "이미지 2장에서 마스크를 씌울 얼굴을 찾지 못했습니다"
