"""Tables and folders as researchers bring them (found by a review that used the command line with
its own data): every row read as what it is, and every row or file left out said, on stderr and in
the JSON. Before, OpenFace's failed frames were scored as faces in a table without file names,
joined FeatureExtraction CSVs lost every video but one, a capitalised label column was not read,
FER2013's numbers were taken for the study's codes without a word, and `evaluate` dropped
unlabelled rows, later faces and passed-over folders silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_au_model import synthetic_table

from fer_core import au_table
from fer_core.au_table import AU_COLUMNS, NOT_FIRST_FACE, PASSED_OVER, UNLABELLED
from fer_core.cli import _print_reasons
from fer_core.emotions import SIX_EMOTIONS
from fer_core.evaluation.compare import evaluate_au_table
from fer_core.images import NOT_EMOTION_FOLDER, OTHER_VIDEO
from fer_core.measure.openface_csv import NO_FACE
from fer_core.predictors.au_models import AUPredictor, fit_au_model

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FER_PROGRESS": "0"}


def _cli(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def predictor() -> AUPredictor:
    return AUPredictor(fit_au_model(synthetic_table(), kind="au-logreg"), name="m")


def _aus_and_labels(n_per_class: int = 5) -> pd.DataFrame:
    return synthetic_table(n_per_class=n_per_class)[["label", *AU_COLUMNS]]


def test_a_success_column_marks_openface_failed_frames_in_a_table_without_file_names(tmp_path):
    frame = _aus_and_labels()
    frame["success"] = 1
    frame.loc[:9, "success"] = 0
    frame.loc[:9, AU_COLUMNS] = 0.0  # what OpenFace writes for a frame it could not track
    frame.to_csv(tmp_path / "merged.csv", index=False)
    table = au_table.read(tmp_path / "merged.csv")
    assert table["success"].tolist() == [0] * 10 + [1] * 20
    assert table.loc[:9, AU_COLUMNS].isna().all().all() and set(table.loc[:9, "reason"]) == {NO_FACE}


def test_joined_feature_extraction_csvs_keep_every_videos_frames(tmp_path, predictor):
    videos = []
    for k, emotion in enumerate(SIX_EMOTIONS):
        frames = synthetic_table(n_per_class=4, classes=(emotion,), seed=k)
        videos.append(pd.DataFrame({"video": f"clip{k}", "frame": range(1, 5), "face_id": 0,
                                    "timestamp": np.arange(4) / 30, "confidence": 0.98, "success": 1,
                                    "label": emotion, **{c: frames[c] for c in AU_COLUMNS}}))
    joined = pd.concat(videos, ignore_index=True)
    joined.to_csv(tmp_path / "videos.csv", index=False)
    assert evaluate_au_table(predictor, au_table.read(tmp_path / "videos.csv")).n == 24
    # named in a file column with OpenFace's frame and success: still OpenFace's frames, not one per file
    joined.rename(columns={"video": "file"}).to_csv(tmp_path / "files.csv", index=False)
    report = evaluate_au_table(predictor, au_table.read(tmp_path / "files.csv"))
    assert report.n == 24 and not report.left_out
    # without timestamps the frame number tells the frames apart
    joined.rename(columns={"video": "file"}).drop(columns="timestamp").to_csv(tmp_path / "untimed.csv", index=False)
    assert evaluate_au_table(predictor, au_table.read(tmp_path / "untimed.csv")).n == 24


@pytest.mark.parametrize("column", ["Label", "EMOTION", "emotion"])
def test_the_label_column_is_read_in_any_case_and_as_emotion(tmp_path, column):
    project = synthetic_table(n_per_class=3).rename(columns={"label": column})
    project.to_csv(tmp_path / "project.csv", index=False)  # this workbench's columns (file, success, ...)
    assert au_table.labels_of(au_table.read(tmp_path / "project.csv")).tolist() == project[column].tolist()
    merged = _aus_and_labels(3).rename(columns={"label": column})
    merged.to_parquet(tmp_path / "merged.parquet")
    assert au_table.labels_of(au_table.read(tmp_path / "merged.parquet")).tolist() == merged[column].tolist()


def test_numbers_read_as_the_studys_codes_are_said(tmp_path):
    codes = _aus_and_labels().assign(label=lambda f: f["label"].map(SIX_EMOTIONS.index))  # 0..5, no 6
    codes.to_csv(tmp_path / "codes.csv", index=False)
    assert au_table.read_with_study_codes(au_table.read(tmp_path / "codes.csv"))
    _aus_and_labels().to_csv(tmp_path / "names.csv", index=False)
    assert not au_table.read_with_study_codes(au_table.read(tmp_path / "names.csv"))
    for args in (["evaluate", "--au-table", tmp_path / "codes.csv"],
                 ["train-au", tmp_path / "codes.csv", "--out", tmp_path / "m.json", "--max-rows", "1000"]):
        done = _cli(*args)
        assert "read as the original study's codes (0 angry, 1 disgust, 2 happy" in done.stderr, done.stderr
    assert "study's codes" not in _cli("evaluate", "--au-table", tmp_path / "names.csv").stderr


def test_evaluate_counts_every_au_table_row_it_does_not_score(tmp_path, predictor):
    table = synthetic_table(n_per_class=5)
    table.loc[:3, "label"] = None  # four rows without a label
    second = table.iloc[[10, 11]].assign(face=1)  # two images' second faces
    folder = pd.DataFrame([{"file": "Sad Faces/", "face": 0, "success": 0, "reason": NOT_EMOTION_FOLDER},
                           # passed over under an emotion's folder: counted once, not also as an unscored emotion
                           {"file": "fear/x.mkv", "face": 0, "label": "fear", "success": 0, "reason": OTHER_VIDEO}])
    path = tmp_path / "extracted.csv"
    pd.concat([table, second, folder], ignore_index=True).to_csv(path, index=False)
    report = evaluate_au_table(predictor, au_table.read(path))
    # the folder passed over is counted apart (had it carried a label, it was scored as a face not found)
    assert report.n == 26 and report.left_out == {NOT_FIRST_FACE: 2, PASSED_OVER: 2, UNLABELLED: 4}
    assert "fear" not in report.skipped
    done = _cli("evaluate", "--au-table", path, "--json")
    assert json.loads(done.stdout)["left_out"] == {NOT_FIRST_FACE: 2, PASSED_OVER: 2, UNLABELLED: 4}
    assert "left out 4 rows: without a label" in done.stderr
    assert "left out 2 rows: later faces of an image" in done.stderr


def test_extracts_failure_reasons_beyond_the_five_commonest_are_counted(capsys):
    failed = pd.DataFrame({"file": [f"f{i}.jpg" for i in range(8)],
                           "reason": ["a", "a", "b", "c", "d", "e", "f", "g"]})
    _print_reasons(failed)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "  2 x a: f0.jpg, f1.jpg" and len(lines) == 6  # which files, when they are few
    assert lines[-1].startswith("  and 2 rows with 2 other reason(s)")
    frames = pd.DataFrame({"file": ["clip.mp4", "clip.mp4", "a.png"], "reason": ["no face found"] * 3})
    _print_reasons(frames)  # a video's frames share its name: counted, not named three times
    assert capsys.readouterr().err == "  3 x no face found\n"


def test_the_json_accounts_for_every_file_and_extract_counts_no_folder_as_an_image(fer_sample, tmp_path):
    root = tmp_path / "set"
    for emotion in ("happy", "sad"):
        (root / emotion).mkdir(parents=True)
        for src in sorted((fer_sample / emotion).glob("*.jpg"))[:1]:
            (root / emotion / src.name).write_bytes(src.read_bytes())
    (root / "misc").mkdir()
    (root / "misc" / "x.jpg").write_bytes(next((fer_sample / "happy").glob("*.jpg")).read_bytes())
    (root / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "IMG_0001.jpg").write_bytes(next((fer_sample / "sad").glob("*.jpg")).read_bytes())
    done = _cli("evaluate", "--images", root, "--json")
    out = json.loads(done.stdout)
    assert out["n"] == 2 and out["unlabelled"] == 1
    assert [line.split(":")[0] for line in out["unreadable"]] == ["happy/broken.jpg"]
    assert [line.split(":")[0] for line in out["passed_over"]] == ["misc/"]
    compared = json.loads(_cli("compare", "--images", root, "--models", "au-logreg-fer2013", "--json").stdout)
    assert [line.split(":")[0] for line in compared["passed_over"]] == ["misc/"]
    done = _cli("extract", root, "--out", tmp_path / "au.csv")
    assert "4 images, 3 faces" in done.stderr and "1 without a face or unreadable; 1 folder passed over" in done.stderr


def test_try_its_faces_csv_reads_back_as_an_au_table_and_its_answers_are_no_labels(tmp_path, astronaut_jpeg):
    """Try it's Faces CSV named its AUs AU01 … (not extract's AU01_r) and was refused as py-feat's
    0-1 scores; with the names fixed, its emotion column (the model's answer) was read as the label
    and evaluate scored the model against itself: accuracy 1.000."""
    from fer_core.pipeline import analyze_photo, photo_rows, photo_to_dict
    from fer_core.predictors.registry import load_predictor

    model = load_predictor("au-logreg-fer2013")
    photo = photo_to_dict(analyze_photo(astronaut_jpeg.read_bytes(), "astronaut.jpg", model), model.name, model.kind)
    rows = photo_rows(photo)
    assert set(AU_COLUMNS) <= set(rows.columns) and {"file", "face", "confidence", "box_x", "box_h"} <= set(rows.columns)
    faces = tmp_path / "astronaut_faces.csv"
    rows.to_csv(faces, index=False)
    out = tmp_path / "again.csv"
    answered = _cli("predict", "--au-table", faces, "--out", out)
    assert answered.returncode == 0, answered.stderr
    again = pd.read_csv(out)
    assert list(again["emotion"]) == list(rows["emotion"]) and "label" not in again  # no label made up
    scored = _cli("evaluate", "--au-table", faces)
    assert scored.returncode == 2 and "accuracy" not in scored.stdout
    assert scored.stderr.strip().endswith(f"no labels to score against: {au_table.ANSWERS_NOT_LABELS}; add a label "
                                          "column"), scored.stderr
    labelled = rows.assign(label="happy")
    labelled.to_csv(faces, index=False)
    scored = _cli("evaluate", "--au-table", faces, "--json")
    assert scored.returncode == 0 and json.loads(scored.stdout)["n"] == 1  # a label column is read as the label
    plain = rows.rename(columns={c: c.removesuffix("_r") for c in AU_COLUMNS})
    plain.to_csv(faces, index=False)
    refused = _cli("predict", "--au-table", faces, "--out", out)
    assert refused.returncode == 2 and "rename the columns if they are 0-5 intensities" in refused.stderr


def test_scoring_a_model_on_the_faces_it_was_fitted_on_is_said(tmp_path, fer_val):
    """A lab trained on its whole folder, then drew a test set from it: evaluate said 0.657 (0.382
    held out) and compare ranked the model first, without a word. An AU model now keeps a
    fingerprint of each face it was fitted on, and a test set holding them is said, naming how many."""
    from conftest import copy_fer_sample

    from fer_core.predictors.au_models import FITTED_FACES_MAX, fitted_fingerprints

    lab = copy_fer_sample(fer_val, tmp_path / "lab", per_class=12, classes=("happy", "sad"))
    assert _cli("extract", lab, "--out", tmp_path / "lab.csv").returncode == 0
    table = au_table.read(tmp_path / "lab.csv")
    fitted = int(au_table.measured(table).sum())
    trained = _cli("train-au", tmp_path / "lab.csv", "--classes", "happy,sad", "--out", tmp_path / "lab.json")
    assert trained.returncode == 0, trained.stderr
    model = AUPredictor(__import__("fer_core.predictors.au_models", fromlist=["AUModel"]).AUModel.load(
        tmp_path / "lab.json"), name="lab")
    assert len(fitted_fingerprints(model)) == fitted <= FITTED_FACES_MAX
    said = f"{fitted} of the {fitted} faces scored are faces lab was fitted on"
    for command in (["compare", "--images", lab, "--models", tmp_path / "lab.json", "--json"],
                    ["evaluate", "--images", lab, "--model", tmp_path / "lab.json", "--json"]):
        done = _cli(*command)
        assert done.returncode == 0 and said in done.stderr, done.stderr
    assert json.loads(_cli("compare", "--images", lab, "--models", tmp_path / "lab.json", "--json").stdout)[
        "learned_from"] == {"lab": fitted}
    assert said in _cli("evaluate", "--au-table", tmp_path / "lab.csv", "--model", tmp_path / "lab.json").stderr
    other = tmp_path / "other"  # other faces of the same emotions: nothing to say
    for emotion in ("happy", "sad"):
        (other / emotion).mkdir(parents=True)
        for path in sorted((fer_val / emotion).iterdir())[20:26]:
            (other / emotion / path.name).write_bytes(path.read_bytes())
    done = _cli("compare", "--images", other, "--models", tmp_path / "lab.json", "--json")
    assert done.returncode == 0 and "was fitted on" not in done.stderr and json.loads(done.stdout)["learned_from"] == {}


def test_a_table_of_answers_read_as_openfaces_is_not_scored_against_itself(tmp_path):
    """A Try it CSV without its source column is read the way OpenFace's tables are, and there its
    emotion column (the answer) was still taken for the label: accuracy 1.000."""
    rows = synthetic_table(12)[["label", *AU_COLUMNS]].rename(columns={"label": "emotion"})
    rows["file"] = [f"{i}.jpg" for i in range(len(rows))]
    for e in SIX_EMOTIONS:
        rows[f"p_{e}"] = 1 / 6
    rows.to_csv(tmp_path / "answers.csv", index=False)
    table = au_table.read(tmp_path / "answers.csv")
    assert table["label"].isna().all() and table.attrs.get("answers_not_labels")
    scored = _cli("evaluate", "--au-table", tmp_path / "answers.csv")
    assert scored.returncode == 2 and au_table.ANSWERS_NOT_LABELS in scored.stderr
