"""The command line end to end: predict, extract, train-au, evaluate, draw-testset, import."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BUNDLED_AU_MODEL, copy_fer_sample

from fer_core import au_table
from fer_core.au_table import AU_COLUMNS, TABLE_COLUMNS
from fer_core.cli import main
from fer_core.config import REPO_ROOT


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_explains_the_astronaut(capsys, astronaut_jpeg):
    code, out, _ = run_cli(capsys, "predict", astronaut_jpeg, "--json")
    assert code == 0
    result = json.loads(out)
    assert len(result["faces"]) == 1
    face = result["faces"][0]
    assert set(face["aus"]) == set(AU_COLUMNS)
    assert all(0 <= v <= 5 for v in face["aus"].values())
    assert face["emotion"] == "happy"
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert face["top_aus"] and face["top_aus"][0]["contribution"] > 0
    assert face["top_aus"][0]["name"].startswith(face["top_aus"][0]["au"] + " ")
    assert len(face["box"]) == 4 and face["confidence"] > 0.5
    assert face["close_call"] is False and "runner_up" not in face  # happy at 0.98: a clear answer


def test_predict_says_which_answers_are_close_calls(capsys, fer_sample):
    """surprise 0.30 beside neutral 0.29 was said as surely as happy at 0.98: an answer whose runner-up
    is within 0.10 says so, naming it, in the text and the JSON."""
    images = sorted(str(p) for p in fer_sample.rglob("*.jpg"))
    _, out, _ = run_cli(capsys, "predict", *images, "--json")
    faces = [face for result in json.loads(out) for face in result["faces"]]
    close = []
    for face in faces:
        (first, p1), (second, p2) = sorted(face["probabilities"].items(), key=lambda kv: -kv[1])[:2]
        assert face["close_call"] == (p1 - p2 < 0.10) and face.get("runner_up") == (second if p1 - p2 < 0.10 else None)
        if face["close_call"]:
            close.append(f"  a close call: {second} is within 0.10 of {first}; the model can hardly tell the two "
                         "apart here")
    assert 0 < len(close) < len(faces)
    _, text, _ = run_cli(capsys, "predict", *images)
    assert [line for line in text.splitlines() if "close call" in line] == close


def test_predict_gives_boxes_in_the_files_own_pixels_for_a_photo_over_4096_px(capsys, tmp_path, astronaut):
    """A 6000 x 4000 photo is decoded smaller (a JPEG at half size, a PNG at 4,096 px): its box was
    given at that size, a different one per format, and nothing in the JSON said so."""
    from PIL import Image

    from fer_core.pipeline import analyze_photo

    canvas = Image.new("RGB", (6000, 4000), (120, 130, 140))
    canvas.paste(Image.fromarray(astronaut).resize((2048, 2048)), (3000, 1500))
    small = tmp_path / "small.png"
    canvas.resize((1500, 1000)).save(small)  # decoded as it is: the reference box, x 4
    for name in ("big.jpg", "big.png"):
        canvas.save(tmp_path / name)
    _, out, _ = run_cli(capsys, "predict", small, tmp_path / "big.jpg", tmp_path / "big.png", "--json")
    reference, *big = json.loads(out)
    expected = np.array(reference["faces"][0]["box"]) * 4
    for result in big:
        assert (result["width"], result["height"]) == (6000, 4000)
        assert np.allclose(result["faces"][0]["box"], expected, atol=0.03 * expected[2]), result["file"]
    shown = analyze_photo((tmp_path / "big.jpg").read_bytes(), "big.jpg", None)
    assert shown.original_size == (6000, 4000) and shown.scaled


def test_extract_gives_each_faces_box_in_the_files_own_pixels_as_predict_does(capsys, tmp_path, monkeypatch,
                                                                               group_photo):
    """extract's rows had no box: a group photo's rows (largest first) could not be matched to its
    faces (numbered from the left by predict and Try it), nor a face drawn on a photo decoded smaller."""
    from PIL import Image

    monkeypatch.setenv("FER_MAX_DECODE_SIDE", "1200")  # 2,700 px decoded at a quarter, as 6,000 px at a half
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(group_photo).save(photos / "group.png")
    Image.fromarray(group_photo).resize((2700, 1020)).save(photos / "big.jpg", quality=92)
    code, _, err = run_cli(capsys, "extract", photos, "--out", tmp_path / "t.csv")
    assert code == 0, err
    table = au_table.read(tmp_path / "t.csv")
    _, out, _ = run_cli(capsys, "predict", photos / "group.png", photos / "big.jpg", "--json")
    boxes = {}
    for result in json.loads(out):
        rows = table[table["file"] == Path(result["file"]).name].sort_values("box_x")
        boxes[Path(result["file"]).name] = found = rows[list(au_table.BOX_COLUMNS)].to_numpy()
        assert np.allclose(found, [face["box"] for face in result["faces"]], atol=1.0), result["file"]
    assert len(boxes["group.png"]) == 3
    for box in boxes["group.png"] * 3:  # each face in the big file's pixels, not in those of its decoded quarter
        assert np.abs(boxes["big.jpg"] - box).max(axis=1).min() < 0.05 * box[2], box
    from fer_core import analyze_image  # the Python API's boxes too: they were the decoded quarter's

    api_boxes = sorted(face.box for face in analyze_image(photos / "big.jpg"))
    np.testing.assert_allclose(api_boxes, boxes["big.jpg"], atol=1.0)
    code, _, err = run_cli(capsys, "predict", "--au-table", tmp_path / "t.csv", "--out", tmp_path / "e.csv")
    assert code == 0, err  # each answer says which face it is, where
    answers = pd.read_csv(tmp_path / "e.csv")
    np.testing.assert_allclose(answers[list(au_table.BOX_COLUMNS)], table[list(au_table.BOX_COLUMNS)])


def test_predict_numbers_a_group_photos_faces_left_to_right_as_try_it_does(capsys, tmp_path, group_photo):
    """The CLI's "face 2" was the second largest face, Try it's the second from the left."""
    from PIL import Image

    from fer_core.pipeline import analyze_photo, photo_to_dict

    path = tmp_path / "group.png"
    Image.fromarray(group_photo).save(path)
    _, out, _ = run_cli(capsys, "predict", path, "--json")
    faces = json.loads(out)["faces"]
    assert [f["face"] for f in faces] == [1, 2, 3]
    shown = photo_to_dict(analyze_photo(path.read_bytes(), "group.png", None), "m", "au-logreg")["faces"]
    assert [round(f["box"][0]) for f in faces] == [round(f["box"][0]) for f in shown]
    assert [f["box"][0] for f in faces] == sorted(f["box"][0] for f in faces)
    _, text, _ = run_cli(capsys, "predict", path)
    assert [line.split(" box ")[0].rsplit(" ", 1)[1] for line in text.splitlines() if " box " in line] == ["1", "2", "3"]


def test_predict_text_says_which_faces_the_detector_doubts(capsys, tmp_path, astronaut):
    """--json had "low_confidence" and Try it a badge; the text output gave "conf 0.64" alone (a
    photo researcher's review): a reader of the text did not learn that the face may be none."""
    from PIL import Image

    stretched = tmp_path / "stretched.png"  # the astronaut at 1600 x 1200: her face, and a doubtful one in the suit
    Image.fromarray(astronaut).resize((1600, 1200)).save(stretched)
    assert main(["predict", str(stretched), "--json"]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert sorted(f["low_confidence"] for f in faces) == [False, True]
    assert main(["predict", str(stretched)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " face " in line and " conf " in line]
    assert len(lines) == 2
    assert sum(line.endswith("(low confidence: the detector is unsure this is a face)") for line in lines) == 1


def test_evaluate_says_which_images_had_several_faces_as_compare_does(capsys, tmp_path, group_photo, astronaut_jpeg):
    """evaluate scored a group photo's largest face without a word, where compare says so."""
    from PIL import Image

    (tmp_path / "happy").mkdir()
    Image.fromarray(group_photo).save(tmp_path / "happy" / "three.png")
    shutil.copy(astronaut_jpeg, tmp_path / "happy" / "one.jpg")
    assert main(["evaluate", "--model", BUNDLED_AU_MODEL, "--images", str(tmp_path), "--workers", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert "several faces: happy/three.png: 3 faces found" in captured.err
    assert json.loads(captured.out)["several_faces"] == ["happy/three.png: 3 faces found; the largest was scored"]


def test_predict_reports_bad_files_and_no_faces_and_keeps_the_rest(capsys, tmp_path, astronaut_jpeg):
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    blank = tmp_path / "wall.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (180, 180, 180)).save(blank)
    code, out, _ = run_cli(capsys, "predict", bad, blank, astronaut_jpeg, "--json")
    assert code == 2
    results = json.loads(out)
    assert "not a readable image" in results[0]["error"]
    assert "no face: a blank picture, one colour" in results[1]["error"]  # a blank wall, said as such
    assert results[2]["faces"][0]["emotion"] == "happy"


def test_predict_jsonl_gives_one_object_per_image_whatever_their_number(capsys, tmp_path, astronaut_jpeg):
    """--json gives an object for one image and a list for several, so a glob matching one file
    changed the shape a script reads; --jsonl is one line per image, in the order given."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    code, out, _ = run_cli(capsys, "predict", astronaut_jpeg, "--jsonl")
    one = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(one) == 1 and one[0]["faces"][0]["emotion"] == "happy"
    code, out, err = run_cli(capsys, "predict", bad, astronaut_jpeg, "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and [Path(r["file"]).name for r in lines] == ["notes.jpg", Path(astronaut_jpeg).name]
    assert "not a readable image" in lines[0]["error"] and lines[0]["error"] in err
    assert lines[1] == one[0]
    with pytest.raises(SystemExit):
        main(["predict", str(astronaut_jpeg), "--json", "--jsonl"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_unknown_model_is_one_line_error(capsys, astronaut_jpeg):
    code, _, err = run_cli(capsys, "predict", astronaut_jpeg, "--model", "nope")
    assert code == 2 and err.startswith("error: model 'nope' not found") and err.count("\n") == 1


def test_a_mistyped_model_stops_compare_and_mask_report_before_any_image_is_measured(capsys, fer_sample,
                                                                                     monkeypatch):
    """A cluster job with a typo in --models measured every image for the other models, then failed:
    the allocation was spent and the workflow manager deleted the outputs."""
    import fer_core.evaluation.compare as compare_module
    import fer_core.evaluation.mask_report as mask_module

    def measured(*args, **kwargs):
        raise AssertionError("measured before the model names were checked")

    monkeypatch.setattr(compare_module, "run_comparison", measured)
    monkeypatch.setattr(mask_module, "run_mask_report", measured)
    for command in ("compare", "mask-report"):
        code, out, err = run_cli(capsys, command, "--images", fer_sample, "--models", "au-logreg-fer2013,cnn-fer213")
        assert code == 2 and out == ""
        assert err.startswith("error: model 'cnn-fer213' not found: did you mean 'cnn-fer2013'?"), err
        assert err.count("\n") == 1


def test_predict_au_table_answers_every_row_in_place_without_reading_images(capsys, tmp_path):
    """A long video's or a big folder's AU table: the CLI stopped at AUs (emotions over time only
    in the dashboard, for five minutes). Every row gets the model's emotion, probabilities and AU
    contributions, in the table's order; a row without a face keeps its place and its reason."""
    from fer_core import au_table
    from fer_core.predictors.base import FaceInput
    from fer_core.predictors.registry import load_predictor

    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz").iloc[:40].reset_index(drop=True)
    table.loc[3, "success"] = 0
    table.loc[3, list(AU_COLUMNS)] = np.nan
    table.loc[3, "reason"] = "no face found"
    table["file"] = "=" + table["file"]  # a name Excel would run as a formula
    source = tmp_path / "faces.csv"
    au_table.write(table, source)
    out = tmp_path / "answers.parquet"
    code, _, said = run_cli(capsys, "predict", "--au-table", source, "--out", out, "--model", BUNDLED_AU_MODEL)
    found = int((table["success"] == 1).sum())
    assert 30 < found < 40 and code == 0 and said.startswith(f"40 rows, {found} faces judged by au-logreg-fer2013 ->")
    answers = pd.read_parquet(out)
    model = load_predictor(BUNDLED_AU_MODEL)
    assert len(answers) == 40 and list(answers["label"]) == list(table["label"])
    assert pd.isna(answers.loc[3, "emotion"]) and answers.loc[3, "reason"] == "no face found"
    assert answers.loc[3, [f"p_{c}" for c in model.classes]].isna().all()
    row = 7
    expected = model.predict_proba([FaceInput(aus=table.loc[row, list(AU_COLUMNS)].to_numpy(dtype=float))])[0]
    np.testing.assert_allclose(answers.loc[row, [f"p_{c}" for c in model.classes]].to_numpy(dtype=float), expected,
                               atol=1e-9)
    assert answers.loc[row, "emotion"] == model.classes[int(np.argmax(expected))]
    explained = model.explain(FaceInput(aus=table.loc[row, list(AU_COLUMNS)].to_numpy(dtype=float)))
    assert answers.loc[row, "sentence"] == explained.sentence
    assert answers.loc[row, f"contribution_{explained.reasons[0].au}"] == pytest.approx(explained.reasons[0].contribution)
    # a runner-up within 0.10 of the answer marks a close call, and is named; a face not judged is neither
    ranked = np.sort(answers[[f"p_{c}" for c in model.classes]].to_numpy(dtype=float), axis=1)
    close = ranked[:, -1] - ranked[:, -2] < 0.10
    judged = answers["emotion"].notna().to_numpy()
    assert 0 < close[judged].sum() < judged.sum()  # both kinds among these 40 val faces
    assert list(answers["close_call"][judged]) == list(close[judged]) and pd.isna(answers.loc[3, "close_call"])
    runner_up = [model.classes[int(j)] for j in np.argsort(answers[[f"p_{c}" for c in model.classes]]
                                                           .to_numpy(dtype=float), axis=1)[:, -2]]
    assert all(answers.loc[i, "runner_up"] == (runner_up[i] if close[i] and judged[i] else "")
               for i in range(40))
    csv_out = tmp_path / "answers.csv"
    assert run_cli(capsys, "predict", "--au-table", source, "--out", csv_out)[0] == 0
    assert pd.read_csv(csv_out)["file"].str.startswith("'").all()  # text cells safe to open in Excel
    for args, message in [(["--model", "cnn-fer2013"], "reads face images, not an AU table"),
                          (["--json"], "not --json"), ([str(source)], "no images")]:
        code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "x.csv", *args)
        assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


def test_what_the_review_found_a_researcher_would_lose(capsys, tmp_path, astronaut_jpeg, monkeypatch):
    """predict --au-table --out naming its own table replaced the measurement; a video given to
    predict was "not a readable image"; Parquet answers had a quote put before names like -take1;
    a model registered from paths with spaces recorded a command a shell splits wrongly."""
    import shlex

    from fer_core import au_table
    from fer_core.manifest import read_manifest

    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    table = table.groupby("label").head(20).reset_index(drop=True)
    table.loc[0, "file"] = "-take1.jpg"
    source = tmp_path / "내 표.csv"
    au_table.write(table, source)
    before = source.read_bytes()
    code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", source)
    assert code == 2 and "--out is the table being read" in err and source.read_bytes() == before
    assert run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "a.parquet")[0] == 0
    assert pd.read_parquet(tmp_path / "a.parquet").loc[0, "file"] == "-take1.jpg"  # joins with the AU table

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 100)
    code, _, err = run_cli(capsys, "predict", video, astronaut_jpeg)
    assert code == 2 and "a video: measure it with extract" in err and "predict --au-table" in err
    code, out, err = run_cli(capsys, "predict", astronaut_jpeg, "--out", tmp_path / "answers.csv")
    assert code == 2 and not out and not (tmp_path / "answers.csv").exists()
    assert "--out is for --au-table" in err and "--jsonl > answers.jsonl" in err, "where an image's answers go instead"

    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "models"))
    out = tmp_path / "내 모델.json"
    assert run_cli(capsys, "train-au", source, "--out", out, "--name", "spaced", "--classes", "angry,happy")[0] == 0
    (entry,) = read_manifest()
    assert shlex.split(entry.command)[4:7] == [str(source), "--out", str(out)]


def test_predict_au_table_does_not_judge_a_row_of_impossible_au_values(capsys, tmp_path):
    """A row with AU12 = 99 was answered "happy" at 100 % "because of AU12 (99.0)", though evaluate
    and training leave such rows out: it keeps its place, unjudged, with the reason."""
    from fer_core import au_table

    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    table = table[table["success"] == 1].head(6).reset_index(drop=True)
    table.loc[2, "AU12_r"] = 99.0
    source = tmp_path / "spoilt.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "p.csv")
    answers = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert code == 0 and "6 rows, 5 faces judged" in err
    assert "note: 1 row not judged, with AU values that are infinite or outside -1 to 10" in err
    assert answers.loc[2, "emotion"] == "" and answers.loc[2, "sentence"] == ""
    assert answers.loc[2, "reason"] == "not judged: AU values that are infinite or outside -1 to 10"
    assert (answers.drop(index=2)["emotion"] != "").all()
    # a model of the upper face does not read AU12: it judges the row, as evaluate scores it
    code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "u.csv", "--model",
                           "au-logreg-upper-fer2013")
    upper = pd.read_csv(tmp_path / "u.csv", keep_default_na=False)
    assert code == 0 and "not judged" not in err and (upper["emotion"] != "").all()


def test_a_model_scoring_masked_faces_says_which_aus_it_lacked(capsys, tmp_path):
    """evaluate and predict --au-table scored masked faces with an all-AU model without a word
    (the hidden AUs read as uninformative); they now say how many faces lacked which AUs, and
    name them per row; a model of the visible AUs has nothing to say."""
    from fer_core import au_table
    from fer_core.au_table import AU_COLUMNS

    table = au_table.read(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    table = table[table["success"] == 1].groupby("label").head(5).reset_index(drop=True)
    lower = [c for c in AU_COLUMNS if c not in ("AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU45_r")]
    table.loc[:9, lower] = np.nan
    source = tmp_path / "masked.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "p.csv")
    assert code == 0 and "note: 10 faces lack AUs this model uses (AU09, AU10, AU12" in err
    answers = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert answers.loc[0, "unknown_aus"].split() == [c[:4] for c in lower] and (answers.loc[10:, "unknown_aus"] == "").all()
    # a hidden AU's contribution is unknown (empty), not a 0 that reads as "measured and weighed nothing"
    assert (answers.loc[:9, [f"contribution_{c[:4]}" for c in lower]] == "").all().all()
    assert (answers.loc[:9, "contribution_AU04"] != "").all() and (answers.loc[10:, "contribution_AU12"] != "").all()
    code, _, err = run_cli(capsys, "evaluate", "--au-table", source)
    assert code == 0 and "note: 10 faces lack AUs" in err
    code, _, err = run_cli(capsys, "predict", "--au-table", source, "--out", tmp_path / "u.csv", "--model",
                           "au-logreg-upper-fer2013")
    assert code == 0 and "note:" not in err


def test_extract_measures_one_emotions_images_when_asked(capsys, tmp_path, fer_sample):
    """--classes happy was refused ("a class set needs at least two emotions"): that rule is a
    model's, and measuring one emotion's images is a fair request."""
    out = tmp_path / "happy.csv"
    code, _, _ = run_cli(capsys, "extract", fer_sample, "--out", out, "--workers", "1", "--classes", "happy")
    files = pd.read_csv(out)["file"]
    assert code == 0 and len(files) == 4 and files.str.startswith("happy/").all()


def test_extract_parts_of_a_folder_add_up_to_the_whole_table(capsys, tmp_path, fer_sample):
    """A cluster's array job: each task measures its part of one folder into its own table; the
    parts' rows together are the whole folder's, each file (a broken one too) in exactly one part."""
    folder = tmp_path / "faces"
    shutil.copytree(fer_sample, folder)
    (folder / "happy" / "broken.jpg").write_bytes(b"not a picture")
    assert run_cli(capsys, "extract", folder, "--out", tmp_path / "whole.csv", "--workers", "1")[0] == 0
    parts = []
    for k in (1, 2, 3):
        code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / f"part{k}.csv", "--part", f"{k}/3",
                               "--workers", "1")
        assert code == 0 and err.startswith(f"part {k} of 3: ")
        parts.append(pd.read_csv(tmp_path / f"part{k}.csv"))
    whole = pd.read_csv(tmp_path / "whole.csv").sort_values("file", ignore_index=True)
    joined = pd.concat(parts).sort_values("file", ignore_index=True)
    assert all(len(part) < len(whole) for part in parts)
    pd.testing.assert_frame_equal(joined, whole, check_dtype=False)  # a part without failures reads reason as empty
    assert (joined["file"] == "happy/broken.jpg").sum() == 1
    assert "the part is counted from 1 to N" in option_error(capsys, "extract", folder, "--out", tmp_path / "x.csv",
                                                             "--part", "0/3")
    assert "is not I/N" in option_error(capsys, "extract", folder, "--out", tmp_path / "x.csv", "--part", "half")


def test_extract_to_csv_keeps_a_formula_file_name_as_text_and_reads_it_back(capsys, tmp_path, fer_sample):
    """A spreadsheet ran a CSV cell "=2+5+cmd|..." as a formula: extract's CSV writes it with a
    leading ', as every download does, and the table reads back with the file's own name."""
    folder = tmp_path / "set"  # unlabelled photos, named by the file alone
    folder.mkdir()
    source = sorted((fer_sample / "happy").glob("*.jpg"))[0]
    shutil.copy(source, folder / "=2+5+cmd.jpg")
    shutil.copy(source, folder / "plain.jpg")
    code, _, _ = run_cli(capsys, "extract", tmp_path / "set", "--out", tmp_path / "au.csv", "--workers", "1")
    assert code == 0
    raw = (tmp_path / "au.csv").read_text(encoding="utf-8")
    assert "\n'=2+5+cmd.jpg," in raw.replace("\r", "") and "\n=2+5" not in raw
    assert sorted(au_table.read(tmp_path / "au.csv")["file"]) == ["=2+5+cmd.jpg", "plain.jpg"]


def test_extract_train_evaluate_on_fer_sample(capsys, tmp_path, fer_sample):
    table_path = tmp_path / "au.csv"
    code, _, _ = run_cli(capsys, "extract", fer_sample, "--out", table_path, "--workers", "1")
    assert code == 0
    table = pd.read_csv(table_path)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["file"].nunique() == 24
    assert table["file"].str.match(r"^(angry|disgust|happy|neutral|sad|surprise)/").all()
    assert table["success"].sum() >= 18
    assert (table.loc[table.success == 0, "reason"] != "").all()

    model_path = tmp_path / "m.json"
    code, out, _ = run_cli(capsys, "train-au", "data/fer2013_val_au.csv.gz", "--out", model_path)
    assert code == 0 and "held-out accuracy" in out
    # its training table by its bytes, and what fitted it (a replicator found only "of_au.csv")
    import hashlib

    info = json.loads(model_path.read_text())["info"]
    assert info["data"]["table_sha256"] == hashlib.sha256(Path("data/fer2013_val_au.csv.gz").read_bytes()).hexdigest()
    assert info["fitted_by"]["workbench"] and info["fitted_by"]["versions"]["scikit-learn"]

    code, out, _ = run_cli(capsys, "evaluate", "--model", model_path, "--images", fer_sample, "--json")
    assert code == 0
    report = json.loads(out)
    assert {"model", "n", "no_face", "accuracy", "macro_f1", "per_class", "labels", "confusion"} <= set(report)
    assert report["n"] == 24 and sum(v["n"] for v in report["per_class"].values()) == 24
    assert sum(map(sum, report["confusion"])) + report["no_face"] == 24


def test_evaluate_bundled_model_on_au_table(capsys):
    code, out, _ = run_cli(capsys, "evaluate", "--au-table", "data/fer2013_val_au.csv.gz", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"] == "au-logreg-fer2013"
    assert report["labels"] == ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    assert report["accuracy"] > 0.45, "the bundled model fell well below its measured 0.53"
    assert "note" not in report  # val is not the table it was fitted on
    # how sure it said it was against how often it was right, over the faces it answered
    calibration = report["calibration"]
    assert calibration["n"] == report["n"] - report["no_face"] == sum(b["n"] for b in calibration["bins"])
    assert 0 < calibration["ece"] < 0.5 and calibration["accuracy"] * calibration["n"] == pytest.approx(
        report["accuracy"] * report["n"], abs=1)
    assert 0.5 < report["log_loss"] < 2.0 and 0.2 < report["brier"] < 1.0  # the probabilities' own scores
    # the same per emotion answered: its answers of each emotion, right as often as that emotion's precision
    by_answer = report["calibration_by_answer"]
    assert sum(c["n"] for c in by_answer.values()) == calibration["n"]
    for emotion, c in by_answer.items():
        assert c["accuracy"] == pytest.approx(report["per_class"][emotion]["precision"], abs=1e-6)
    # the table by its own SHA-256, however its path was typed; nothing was measured
    import hashlib

    table_sha = hashlib.sha256(Path("data/fer2013_val_au.csv.gz").read_bytes()).hexdigest()
    assert report["provenance"]["test_set"] == {"table_sha256": table_sha} and "measurement" not in report["provenance"]


def test_evaluate_on_the_table_a_model_was_fitted_on_says_so(capsys):
    """A replication scored the study's model on its own table: 0.887 with no word that the model
    was refitted on every one of those rows (its held-out score was 0.781)."""
    code, out, err = run_cli(capsys, "evaluate", "--au-table", "data/fer2013_train_au.csv.gz", "--json")
    assert code == 0
    note = json.loads(out)["note"]
    assert note.startswith("data/fer2013_train_au.csv.gz has as many faces of each emotion as au-logreg-fer2013 was "
                           "fitted on (data/fer2013_train_au.csv.gz): if it is that table, this scores the faces "
                           "the model learned from, not a test; its held-out score was 0.")
    assert f"note: {note}" in err


def test_import_openface_study_table(capsys, tmp_path, study_table):
    out_path = tmp_path / "study.csv"
    code, _, _ = run_cli(capsys, "import-openface", study_table, "--out", out_path)
    assert code == 0
    table = pd.read_csv(out_path)
    assert len(table) == 4473 and table["label"].value_counts()["sad"] == 1038


def test_table_without_au_columns_is_refused(capsys, tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,label\n1,2,happy\n")
    code, _, err = run_cli(capsys, "train-au", csv, "--out", tmp_path / "m.json")
    assert code == 2 and "AU" in err and err.count("\n") == 1


def test_train_au_names_the_emotions_it_left_out_and_how_to_keep_them(capsys, tmp_path):
    """A lab's fearful/ folder, rightly labelled fear, was left out of a six-emotion fit as "18
    unlabelled or of other emotions": now named, with the option that keeps it."""
    from test_au_model import synthetic_table

    from fer_core.emotions import SEVEN_EMOTIONS

    table = synthetic_table(14, classes=SEVEN_EMOTIONS)
    table.loc[table.index[:3], "label"] = None  # unlabelled rows are counted with the others, not as fear
    source = tmp_path / "lab.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "train-au", source, "--out", tmp_path / "m.json")
    assert code == 0, err
    assert "17 unlabelled or of other emotions; 14 fear rows are of emotions not trained (--classes seven keeps " \
           "them)" in err
    info = json.loads((tmp_path / "m.json").read_text())["info"]["data"]
    assert info["other_emotions"] == {"fear": 14}


def test_train_au_warns_of_a_model_that_has_not_learned(capsys, tmp_path):
    """The AU model page flagged a model that never answers some emotions or guesses; train-au said
    nothing (a lab's seven-emotion MLP on a small table never answered fear, sad or surprise)."""
    from test_au_model import synthetic_table

    table = synthetic_table(14)
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())  # no signal left
    source = tmp_path / "shuffled.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "train-au", source, "--out", tmp_path / "m.json")
    assert code == 0 and "warning: " in err and "Add faces of the emotions it misses" in err and "Train longer" not in err


def test_draw_testset(capsys, tmp_path, fer_val):
    """The set's record (a replicator could not say in a methods section which 60 images, from
    where, drawn how): testset.json beside it, whose digest compare's provenance gives."""
    from fer_core.images import list_images
    from fer_core.provenance import test_set_record

    code, out, _ = run_cli(capsys, "draw-testset", fer_val, tmp_path / "t60", "--seed", "7")
    assert code == 0 and out.startswith("60 images")
    assert sorted(p.name for p in (tmp_path / "t60").iterdir()) == sorted(
        ["angry", "disgust", "happy", "neutral", "sad", "surprise", "testset.json"])
    record = json.loads((tmp_path / "t60" / "testset.json").read_text())
    assert (record["seed"], record["per_class"], record["files"], len(record["images"])) == (7, 10, 60, 60)
    assert record["source"] == str(fer_val.resolve()) and record["workbench"]
    items = list_images(tmp_path / "t60")  # the record is no image of the set
    assert len(items) == 60 and record["sha256"] == test_set_record([it.path for it in items], tmp_path / "t60")["sha256"]
    assert {(i["file"].split("/")[0], i["label"]) for i in record["images"]} == {(e, e) for e in record["classes"]}


def test_draw_testset_keeps_images_that_share_a_name(capsys, tmp_path):
    """happy/img0.png and happiness/img0.png are both happy: both drawn, neither written over."""
    from PIL import Image

    source = tmp_path / "source"
    colours = {}
    for i, folder in enumerate(("happy", "happiness", "sad", "sadness")):
        (source / folder).mkdir(parents=True)
        for j in range(2):
            colours[(folder, j)] = (40 * i + 10 * j, 100, 200)
            Image.new("RGB", (48, 48), colours[(folder, j)]).save(source / folder / f"img{j}.png")
    code, out, _ = run_cli(capsys, "draw-testset", source, tmp_path / "t4", "--per-class", "4", "--classes", "happy,sad")
    assert code == 0 and out.startswith("8 images")
    drawn = sorted((tmp_path / "t4").glob("*/*.png"))
    assert len(drawn) == 8
    assert sorted(Image.open(p).getpixel((0, 0)) for p in drawn) == sorted(colours.values())

def test_module_entry_point_with_two_workers(tmp_path, fer_sample):
    """`python -m fer_core extract --workers 2` in a real process (worker processes need one)."""
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(fer_sample), "--out",
                           str(tmp_path / "a.csv"), "--workers", "2"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "24 images" in done.stderr
    assert (tmp_path / "cache" / "measurements.sqlite").exists()


def test_extract_with_openface_docker_says_why_it_cannot_run(capsys, tmp_path, monkeypatch):
    """No Docker engine here: the backend fails in one line that says what to do, writes nothing."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "imgs" / "happy001.jpg")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    code, _, err = run_cli(capsys, "extract", tmp_path / "imgs", "--out", tmp_path / "au.csv",
                           "--backend", "openface-docker")
    assert code == 2 and "Docker engine not reachable" in err and err.count("\n") == 1
    assert not (tmp_path / "au.csv").exists()


# -- issue 8: bugs fixed on the way, and the JSON shapes users rely on ---------------------------
PREDICT_FACE_KEYS = ["face", "box", "confidence", "low_confidence", "aus", "emotion", "probabilities", "top_aus", "against",
                     "sentence", "baseline", "close_call"]
REPORT_KEYS = ["model", "n", "no_face", "accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "per_class", "labels", "confusion",
               "no_face_per_class", "other_per_class", "skipped", "left_out", "kappa", "kappa_ci95", "calibration",
               "log_loss", "brier", "calibration_by_answer"]


def test_predict_json_keys_and_one_source_of_reasons(capsys, astronaut_jpeg):
    """The per-face JSON keeps its keys; the reasons are the AUs the sentence names."""
    _, out, _ = run_cli(capsys, "predict", astronaut_jpeg, "--json")
    face = json.loads(out)["faces"][0]
    assert list(face) == PREDICT_FACE_KEYS
    assert list(face["top_aus"][0]) == ["au", "name", "intensity", "contribution", "usual"]
    for reason in face["top_aus"]:
        assert reason["name"] in face["sentence"] and reason["contribution"] > 0
        if reason["intensity"] < reason["usual"]:  # counts by being weaker than usual: said so, after ";"
            lacks = face["sentence"].split(";")[-1]
            assert reason["name"] in lacks and ("absent" in lacks or "weaker than usual" in lacks)


def test_evaluate_a_pixel_model_on_an_au_table_is_a_one_line_error(capsys):
    code, _, err = run_cli(capsys, "evaluate", "--model", "cnn-fer2013", "--au-table", "data/fer2013_val_au.csv.gz")
    assert code == 2 and err.count("\n") == 1
    assert "scores images, not an AU table" in err and "--images" in err


def test_evaluate_says_which_images_a_six_emotion_model_leaves_out(capsys, tmp_path, fer_val):
    from conftest import copy_fer_sample

    sample = copy_fer_sample(fer_val, tmp_path / "seven", per_class=2, classes=("angry", "fear", "happy"))
    code, out, err = run_cli(capsys, "evaluate", "--model", "au-logreg-fer2013", "--images", sample,
                             "--json", "--workers", "1")
    assert code == 0
    report = json.loads(out)
    assert list(report)[:len(REPORT_KEYS)] == REPORT_KEYS
    assert report["n"] == 4 and report["skipped"] == {"fear": 2}
    assert "left out 2 fear image(s)" in err


def test_evaluate_honours_workers(capsys, tmp_path, monkeypatch, fer_sample):
    """--workers reaches the extraction (2 processes measure the faces), with the same result."""
    import fer_core.measure.extract as extract

    seen: list[int] = []
    real = extract._run_measurements

    def spy(paths, indices, workers):
        seen.append(workers)
        return real(paths, indices, workers)

    monkeypatch.setattr(extract, "_run_measurements", spy)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    reports = []
    for workers in ("2", "1"):
        code, out, _ = run_cli(capsys, "evaluate", "--images", fer_sample, "--json", "--workers", workers)
        assert code == 0
        reports.append(json.loads(out))
    assert seen[0] == 2
    assert reports[0]["accuracy"] == reports[1]["accuracy"] and reports[0]["confusion"] == reports[1]["confusion"]


def test_extract_through_symlinked_emotion_folders_writes_relative_paths(capsys, tmp_path, fer_sample):
    linked = tmp_path / "linked"
    linked.mkdir()
    for emotion in ("happy", "sad"):
        (linked / emotion).symlink_to(fer_sample / emotion, target_is_directory=True)
    out_path = tmp_path / "au.csv"
    code, _, _ = run_cli(capsys, "extract", linked, "--out", out_path, "--workers", "1")
    assert code == 0
    files = pd.read_csv(out_path)["file"]
    assert files.str.match(r"^(happy|sad)/[^/]+\.jpg$").all(), files.tolist()


def test_compare_json_keys(capsys, fer_sample, tmp_path):
    predictions = tmp_path / "predictions.csv"
    code, out, _ = run_cli(capsys, "compare", "--images", fer_sample, "--models", "au-logreg-fer2013",
                           "au-logreg-fer2013-balanced", "--json", "--workers", "1", "--csv", predictions)
    assert code == 0
    report = json.loads(out)
    # its files are named as in the CSV (relative to --images), not by where the shell stood
    table = pd.read_csv(predictions)
    wrong = table.loc[~table["au-logreg-fer2013 correct"], "file"].tolist()
    assert wrong and report["wrong"]["au-logreg-fer2013"] == wrong
    assert list(report) == ["n", "classes", "models", "mcnemar", "mcnemar_correction", "wrong", "no_face", "skipped",
                            "skipped_classes", "unlabelled", "several_faces", "failed_models", "cannot_predict",
                            "never_answers", "unscored_answers", "tied", "crops", "crop_like_no_face", "learned_from",
                            "from_training_folder", "copies_of_training", "from_choosing_folder", "groups", "passed_over", "labels",
                            "provenance"]
    assert list(report["mcnemar"][0]) == ["a", "b", "only_a_correct", "only_b_correct", "p_value", "p_holm",
                                            "accuracy_difference", "accuracy_difference_ci95"]
    assert report["mcnemar_correction"]["pairs"] == 1 and report["mcnemar_correction"]["method"] == "holm"
    assert list(report["models"]["au-logreg-fer2013"]) == REPORT_KEYS


def test_compares_provenance_names_its_test_set_and_tables_go_to_a_folder(capsys, fer_sample, tmp_path):
    """A replicator swapped one image of the test set for another: the accuracy moved (0.383 ->
    0.400) and the provenance stayed the same. Its tables, the dashboard's downloads, had no command."""
    import shutil

    from fer_core.measure.extract import MEASURE_VERSION
    from fer_core.measure.landmarker import LANDMARKER_SHA256

    folder = shutil.copytree(fer_sample, tmp_path / "set")
    args = ["compare", "--images", folder, "--models", "au-logreg-fer2013", "au-logreg-fer2013-balanced", "--json",
            "--workers", "1"]
    code, out, _ = run_cli(capsys, *args, "--tables", tmp_path / "tables")
    assert code == 0
    first = json.loads(out)["provenance"]
    assert first["test_set"]["files"] == 24 and len(first["test_set"]["sha256"]) == 64
    assert first["measurement"] == {"version": MEASURE_VERSION, "landmarker_sha256": LANDMARKER_SHA256}
    written = sorted(p.name for p in (tmp_path / "tables").iterdir())
    assert written == ["compare_calibration.csv", "compare_calibration_by_answer.csv", "compare_confusion.csv",
                       "compare_mcnemar.csv",
                       "compare_precision_recall_f1.csv", "compare_predictions.csv", "compare_probabilities.csv",
                       "compare_summary.csv"]
    summary = pd.read_csv(tmp_path / "tables" / "compare_summary.csv")
    assert set(summary["model"]) == {"au-logreg-fer2013", "au-logreg-fer2013-balanced"}
    # a no-face cell for every model and emotion, 0 too: pivoted, several models' tables read 0, not missing
    confusion = pd.read_csv(tmp_path / "tables" / "compare_confusion.csv")
    wide = confusion.pivot_table(index=["model", "emotion"], columns="answer", values="count")
    assert len(wide) == 12 and "no face" in wide.columns and wide.notna().all().all()
    assert json.loads(run_cli(capsys, *args)[1])["provenance"]["test_set"] == first["test_set"]  # the same set
    happy = sorted((folder / "happy").iterdir())
    shutil.copy(happy[0], happy[1])  # one image replaced by another
    assert json.loads(run_cli(capsys, *args)[1])["provenance"]["test_set"]["sha256"] != first["test_set"]["sha256"]


def test_a_cache_that_cannot_be_used_costs_speed_not_the_batch(capsys, tmp_path, astronaut_jpeg, monkeypatch, caplog):
    """A damaged cache file, or a cache folder that cannot be made: extract still measures every
    image (one warning), and predict still answers."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "measurements.sqlite").write_bytes(b"not a database, " * 64)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    folder = tmp_path / "photos" / "happy"
    folder.mkdir(parents=True)
    (folder / "astronaut.jpg").write_bytes(astronaut_jpeg.read_bytes())
    for cache in (damaged, blocked / "cache"):
        monkeypatch.setenv("FER_CACHE_DIR", str(cache))
        caplog.clear()
        out = tmp_path / f"{cache.name}.csv"
        code, _, err = run_cli(capsys, "extract", folder.parent, "--out", out, "--workers", "1")
        assert code == 0, err
        table = pd.read_csv(out)
        assert list(table["file"]) == ["happy/astronaut.jpg"] and table["success"].tolist() == [1]
        assert any("measurement cache" in r.getMessage() and "not used" in r.getMessage() for r in caplog.records)
        code, out_text, err = run_cli(capsys, "predict", astronaut_jpeg, "--json")
        assert code == 0, err
        assert len(json.loads(out_text)["faces"]) == 1  # one image: one result


def test_a_file_not_measured_from_its_hashed_bytes_is_not_cached(tmp_path, astronaut_jpeg, monkeypatch):
    """A file that vanishes, or changes, between its cache key being made and a worker reading
    it: its row says what happened now, but the cache keeps nothing under those bytes, so once
    the file is back it (and any copy of it) is measured instead of "not found" for good."""
    from pathlib import Path

    from PIL import Image

    from fer_core.images import list_images
    from fer_core.measure import extract

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "photos" / "happy"
    folder.mkdir(parents=True)
    photo = folder / "a.jpg"
    photo.write_bytes(astronaut_jpeg.read_bytes())
    away = tmp_path / "away.jpg"
    real_key = extract.content_key
    keys = []

    def key_then(change):
        def key(path, crop=False, settings=None):
            keys.append(real_key(path, crop, settings))
            change(Path(path))
            return keys[-1]
        return key

    def cached(key):
        cache = extract.MeasureCache()
        try:
            return cache.get_many([key])
        finally:
            cache.close()

    monkeypatch.setattr(extract, "content_key", key_then(lambda p: p.rename(away)))
    (vanished,) = extract.measure_items(list_images(folder.parent), workers=1).values()
    assert isinstance(vanished, str) and "not found" in vanished
    assert cached(keys[-1]) == {}
    away.rename(photo)
    grey = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey)
    monkeypatch.setattr(extract, "content_key", key_then(lambda p: p.write_bytes(grey.read_bytes())))
    (changed,) = extract.measure_items(list_images(folder.parent), workers=1).values()
    assert changed == [] and cached(keys[-1]) == {}  # the grey square: no face; not cached
    photo.write_bytes(astronaut_jpeg.read_bytes())
    (folder / "copy.jpg").write_bytes(astronaut_jpeg.read_bytes())
    monkeypatch.setattr(extract, "content_key", real_key)
    measured = extract.measure_items(list_images(folder.parent), workers=1)
    assert [len(r) for r in measured.values()] == [1, 1]
    assert len(cached(keys[0])) == 1  # measured from those bytes now: cached


def test_measurements_under_other_settings_are_cached_apart(tmp_path, astronaut_jpeg, monkeypatch):
    """A face landmarker of one's own, or moved image limits, change what a file measures as:
    the cache does not serve measurements made without them."""
    from fer_core.measure import extract

    default = extract.content_key(astronaut_jpeg)
    monkeypatch.setenv("FER_MAX_DECODE_SIDE", "1024")
    smaller = extract.content_key(astronaut_jpeg)
    model = tmp_path / "mine.task"
    model.write_bytes(b"a landmarker of one's own")
    monkeypatch.setenv("FER_LANDMARKER_MODEL", str(model))
    own = extract.content_key(astronaut_jpeg)
    model.write_bytes(b"another landmarker")
    other = extract.content_key(astronaut_jpeg)
    monkeypatch.setenv("FER_MAX_PIXELS", "4000000")
    monkeypatch.setattr("fer_core.images.MAX_PIXELS", 4_000_000)
    assert len({default, smaller, own, other, extract.content_key(astronaut_jpeg)}) == 5
    monkeypatch.delenv("FER_MAX_PIXELS")
    monkeypatch.setattr("fer_core.images.MAX_PIXELS", 40_000_000)
    monkeypatch.delenv("FER_MAX_DECODE_SIDE")
    monkeypatch.delenv("FER_LANDMARKER_MODEL")
    assert extract.content_key(astronaut_jpeg) == default and default.startswith(extract.MEASURE_VERSION + ":")


def test_predict_text_names_a_bad_file_once_and_refuses_a_negative_top(capsys, tmp_path, astronaut_jpeg):
    """A file whose name holds ": " was printed with its name twice; ``--top -2`` gave the two
    weakest AUs as the reason (Python's negative slice)."""
    bad = tmp_path / "note: bad.jpg"
    bad.write_bytes(b"not an image")
    code, out, err = run_cli(capsys, "predict", bad, astronaut_jpeg)
    assert code == 2 and "bad.jpg" not in out  # errors go to stderr
    (line,) = [ln for ln in err.splitlines() if "bad.jpg" in ln]
    assert line.count("bad.jpg") == 1 and line.startswith(f"{bad}: ")
    assert "face 1" in out  # the good photo is kept
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, "predict", astronaut_jpeg, "--top", "-2")
    assert exited.value.code == 2 and "--top: '-2' is not a whole number of at least 1" in capsys.readouterr().err


def option_error(capsys, *args: str) -> str:
    """The one ``error:`` line argparse gives for a bad option value (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, *args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and err.startswith("error: argument ")
    return err


@pytest.mark.parametrize("value", ["-1", "nan", "2.5", "inf", "x"])
def test_train_au_refuses_impossible_interactions_before_reading_the_table(capsys, tmp_path, value):
    """--interactions 2.5 silently fitted 2 pairs; -1 and nan reached the fit and were blamed on the
    table. Each is now an option error, before the (here missing) table is read."""
    err = option_error(capsys, "train-au", tmp_path / "missing.csv", "--kind", "gam", "--interactions", value,
                       "--out", tmp_path / "m.json")
    assert f"--interactions: '{value}' is not a whole number of AU pairs" in err


def test_train_au_refuses_gam_settings_for_another_kind_before_reading_the_table(capsys, tmp_path):
    """--outer-bags 4 (or --interactions) with the default --kind logreg was dropped without a word."""
    code, _, err = run_cli(capsys, "train-au", tmp_path / "missing.csv", "--out", tmp_path / "m.json",
                           "--outer-bags", "4")
    assert code == 2 and err.strip() == "error: --outer-bags is for --kind gam; --kind logreg has no such setting"
    code, _, err = run_cli(capsys, "train-au", tmp_path / "missing.csv", "--out", tmp_path / "m.json",
                           "--kind", "mlp", "--interactions", "2", "--outer-bags", "4")
    assert code == 2 and "--interactions and --outer-bags are for --kind gam" in err


def test_train_au_takes_a_share_of_interactions_as_a_number():
    from fer_core.cli import _parser

    args = _parser().parse_args(["train-au", "t.csv", "--out", "m.json", "--interactions", "0.5"])
    assert args.interactions == 0.5
    assert _parser().parse_args(["train-au", "t.csv", "--out", "m.json", "--interactions", "3"]).interactions == 3


def test_train_au_wants_a_json_out_before_reading_the_table(capsys, tmp_path):
    """A model saved as m.model could not be loaded by its path (AU models are found by .json)."""
    code, _, err = run_cli(capsys, "train-au", tmp_path / "missing.csv", "--out", tmp_path / "m.model")
    assert code == 2 and "m.model: the AU model file must end with .json" in err and err.count("\n") == 1
    assert not (tmp_path / "m.model").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--epochs", "-1", "is not a whole number of at least 0"),
    ("--batch-size", "0", "is not a whole number of at least 1"),
    ("--limit-per-class", "-5", "is not a whole number of at least 1"),
    ("--holdout", "1.5", "is not a share above 0 and below 1"),
    ("--holdout", "nan", "is not a number"),
    ("--lam", "-1", "is not a number of at least 0"),
    ("--lam", "nan", "is not a number"),
    ("--learning-rate", "0", "is not a number above 0"),
])
def test_train_au_bottleneck_refuses_bad_options_before_loading_anything(capsys, tmp_path, option, value, message):
    """These reached the data loading and training (a negative epoch count, a NaN loss weight)."""
    err = option_error(capsys, "train-au-bottleneck", "--data", tmp_path / "missing", "--out", tmp_path / "b.keras",
                       "--init", "none", option, value)
    assert f"{option}: '{value}' {message}" in err


@pytest.mark.parametrize("option, value, message", [
    ("--holdout", "1.5", "is not a share above 0 and below 1"),
    ("--learning-rate", "nan", "is not a number"),
    ("--max-minutes", "-1", "is not a number above 0"),
])
def test_train_cnn_refuses_the_options_train_au_bottleneck_refuses(capsys, tmp_path, option, value, message):
    """The two trainers share these options; train-cnn took them as any float."""
    err = option_error(capsys, "train-cnn", "--data", tmp_path / "missing", "--out", tmp_path / "c.keras", option, value)
    assert f"{option}: '{value}' {message}" in err


def test_train_au_bottleneck_needs_epochs_or_the_warm_start(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train-au-bottleneck", "--data", tmp_path / "missing", "--out",
                           tmp_path / "b.keras", "--init", "none", "--epochs", "0", "--no-warm-start")
    assert code == 2 and "--epochs 0" in err and "--no-warm-start" in err and err.count("\n") == 1


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    """``python -m fer_core models | head -1``: Python's complaint about the closed pipe
    ("Exception ignored ... BrokenPipeError", or "error: unexpected BrokenPipeError ... a bug")
    came after the lines the reader wanted. Now nothing is said, with a shell's status for it."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "fer_core", "models"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    _, err = proc.communicate(timeout=120)
    assert err.decode() == "" and proc.returncode == 128 + signal.SIGPIPE  # as a shell says of `yes | head -1`


def test_no_command_is_a_usage_error_like_a_wrong_option(capsys):
    """Exit status 1 here, 2 for every other usage error; the help went to stdout."""
    code, out, err = run_cli(capsys)
    assert code == 2 and out == "" and "usage: python -m fer_core" in err


def test_version_is_printed_without_loading_the_models(capsys):
    """`--version` was an unrecognized argument; a report or a bug report needs it."""
    from fer_core import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    out, _ = capsys.readouterr()
    from fer_core.provenance import source_commit

    commit = source_commit()  # the commit too, which a version number alone does not name (760 commits were 0.2.0)
    assert exit_.value.code == 0 and out.strip() == f"fer-workbench {__version__}" + (f" (commit {commit})" if commit else "")
    cff = (REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert f'\nversion: "{__version__}"\n' in cff and "cff-version: 1.2.0" in cff  # how to cite it, in step
    script = ("import sys\nfrom fer_core.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('tensorflow', 'mediapipe', 'keras') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip().splitlines()[-1] == "[]", loaded.stdout + loaded.stderr


@pytest.mark.parametrize(("args", "meant"), [
    (["extrct", "x"], "'extract'"),
    (["predict", "x.jpg", "--jsn"], "'--json'"),
    (["extract", "d", "--out", "o.csv", "--wokers", "2"], "'--workers'"),
    (["extract", "d", "--out", "o.csv", "--backend", "openfac"], "'openface-docker'"),
])
def test_a_typo_in_a_command_or_option_names_the_one_meant(capsys, args, meant):
    """argparse listed every command (or said only "unrecognized arguments") for a typo; the one
    error line now ends with the closest command, option or choice."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert f"did you mean {meant}?" in err and err.startswith("error: ")


@pytest.mark.parametrize(("spec", "meant"), [("sevn", "'seven'"), ("hapy,sad", "'happy'")])
def test_a_typo_in_a_class_set_names_the_one_meant(capsys, tmp_path, spec, meant):
    """`--classes sevn` got no guess, though the README says a typo in a choice ends with one."""
    assert main(["compare", "--images", str(tmp_path), "--classes", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown emotion") and err.strip().endswith(f"did you mean {meant}?")


def test_a_word_close_to_nothing_gets_no_guess(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "x.jpg", "--zzzzzz"])
    _, err = capsys.readouterr()
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def _tiny_split(root):
    """A split folder of a few small images of two emotions (draw-testset copies, never decodes)."""
    from PIL import Image

    for emotion in ("happy", "sad"):
        (root / emotion).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (48, 48), 40 * i).save(root / emotion / f"{emotion}{i}.png")
    return root


def test_draw_testset_wants_a_new_or_empty_folder(capsys, tmp_path):
    """A second draw (another seed) into the same folder mixed the two sets: 2 per emotion was
    asked and said, up to 4 were there. Drawing into the source itself was 'unexpected
    SameFileError (a bug)', into a path under a file 'unexpected NotADirectoryError'."""
    source = _tiny_split(tmp_path / "split")
    out = tmp_path / "set"
    assert run_cli(capsys, "draw-testset", source, out, "--per-class", "2", "--classes", "happy,sad")[0] == 0
    drawn = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(drawn) == 4
    (tmp_path / "note.txt").write_text("keep me")
    for target, said in ((out, "already holds files"), (source, "already holds files"),
                         (tmp_path / "note.txt", "is a file"), (tmp_path / "note.txt" / "set", "Not a directory")):
        code, _, err = run_cli(capsys, "draw-testset", source, target, "--per-class", "2", "--classes", "happy,sad",
                               "--seed", "5")
        assert code == 2 and said in err and err.count("\n") == 1 and "unexpected" not in err, err
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == drawn
    assert len(list(source.rglob("*.png"))) == 8 and (tmp_path / "note.txt").read_text() == "keep me"


@pytest.mark.parametrize("value", ["0", "-3"])
def test_draw_testset_refuses_a_count_below_one(capsys, tmp_path, value):
    """-3 was 'unexpected ValueError: negative dimensions (a bug)'; 0 copied every image."""
    source = _tiny_split(tmp_path / "split")
    err = option_error(capsys, "draw-testset", source, tmp_path / "set", "--per-class", value)
    assert f"--per-class: '{value}' is not a whole number of at least 1" in err
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("args, option", [
    (["extract", "{tmp}/missing", "--out", "{tmp}/au.xlsx"], "--out"),
    (["extract", "{tmp}/missing", "--out", "{tmp}/au"], "--out"),
    (["import-openface", "tests/fixtures/openface/happy001.csv", "--out", "{tmp}/au.txt"], "--out"),
    (["compare", "--images", "{tmp}/faces", "--models", "au-logreg-fer2013", "--csv", "{tmp}/p.xlsx"], "--csv"),
])
def test_a_table_output_whose_ending_names_no_format_is_refused_before_any_work(capsys, tmp_path, args, option):
    """au.xlsx, au.txt or au were written as CSV under that name (Excel cannot open such a file);
    the ending chooses the format, so an ending it does not know is said first."""
    from PIL import Image

    (tmp_path / "faces").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "faces" / "happy001.jpg")
    argv = [a.format(tmp=tmp_path) for a in args]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and f"{option} must end with .csv" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]


def test_compare_report_must_be_an_html_file(capsys, tmp_path, monkeypatch):
    """--report r.pdf wrote an HTML page named .pdf, after every model had run."""
    from PIL import Image

    import fer_core.evaluation.compare as compare

    ran = []
    monkeypatch.setattr(compare, "run_comparison", lambda *a, **k: ran.append(a))
    (tmp_path / "faces").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "faces" / "happy001.jpg")
    code, _, err = run_cli(capsys, "compare", "--images", tmp_path / "faces", "--models", "au-logreg-fer2013",
                           "--report", tmp_path / "r.pdf")
    assert code == 2 and "ending in .html" in err and err.count("\n") == 1 and ran == []


def test_ctrl_c_in_a_local_extract_says_the_measurements_are_kept(capsys, tmp_path, fer_sample, monkeypatch):
    """Ctrl-C said "interrupted" only, though every face measured so far is in the cache and the
    same command goes on from there; with --no-cache nothing is kept, and nothing is promised."""
    from fer_core.measure import extract

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extract, "extract_table", stopped)
    code, _, err = run_cli(capsys, "extract", fer_sample, "--out", tmp_path / "au.csv")
    assert code == 130 and err.strip() == ("interrupted; the faces measured so far are cached, so the same command "
                                           "goes on from there")
    code, _, err = run_cli(capsys, "extract", fer_sample, "--out", tmp_path / "au.csv", "--no-cache")
    assert code == 130 and err.strip() == "interrupted"
    # a video's finished parts are cached too (tests/test_video.py): said for it as well
    from fer_core.measure import video

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    monkeypatch.setattr(video, "probe_video", stopped)
    code, _, err = run_cli(capsys, "extract", clip, "--out", tmp_path / "clip.csv")
    assert code == 130 and err.strip().endswith("the same command goes on from there")
    # a cache that cannot be written (a read-only install's own, a file where its folder should be)
    # kept nothing: a cluster job killed at its time limit was told it would go on from there
    (tmp_path / "not a folder").write_text("")
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "not a folder" / "cache"))
    code, _, err = run_cli(capsys, "extract", fer_sample, "--out", tmp_path / "au.csv")
    assert code == 130 and err.strip() == ("interrupted; nothing measured was kept: the measurement cache cannot be "
                                           "written; set FER_CACHE_DIR to a folder this user may write")


def test_a_closed_terminal_ends_a_run_as_ctrl_c_does(tmp_path, fer_sample):
    """SIGHUP (the terminal closed, an SSH session dropped) ended extract where it stood, without a
    word and without caching what it had measured (a reliability review); it now ends as SIGTERM
    does: "interrupted", status 129 (128 + SIGHUP), the faces measured so far cached."""
    import signal

    out = tmp_path / "au.csv"
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache"), "FER_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fer_core", "extract", str(fer_sample), "--out", str(out),
                             "--workers", "1"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE,
                            # as from a terminal: a test run under nohup would hand its children SIGHUP ignored
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    proc.stderr.read(1)  # the progress bar is drawn: measuring has begun
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP and any(line.startswith("interrupted") for line in err.decode().splitlines())
    assert not out.exists()


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path, fer_sample):
    """``kill`` (or a scheduler stopping the job) ended the process where it stood: no word said,
    status -15, and an output being written at that moment was left as a temporary file. It now
    ends as Ctrl-C does: "interrupted", status 143, nothing written, no worker left running."""
    import signal
    import time

    out = tmp_path / "out" / "au.csv"
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache"), "FER_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fer_core", "extract", str(fer_sample), "--out", str(out),
                             "--workers", "1", "--no-cache"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE)
    proc.stderr.read(1)  # the progress bar is drawn: measuring has begun
    # its worker processes, looked up while it runs (once it has exited they belong to init)
    deadline, workers = time.monotonic() + 60, []
    while not workers and time.monotonic() < deadline:
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.05)
    assert workers, "the run measures in a worker process"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "interrupted" in err.decode().splitlines()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    time.sleep(1)

    def running(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    assert [pid for pid in workers if running(pid)] == []


def test_mask_report_says_a_tiny_p_value_as_below_not_as_zero(capsys, tmp_path, monkeypatch):
    """A real drop under the mask has a McNemar p of 1e-9: the table printed 0.0000, which reads as
    impossible; the dashboard and compare say "< 0.0001"."""
    from types import SimpleNamespace

    from PIL import Image

    import fer_core.evaluation.mask_report as mask_report
    from fer_core.evaluation.metrics import McNemarResult

    (tmp_path / "faces" / "happy").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "faces" / "happy" / "a.png")
    scores = {"happy": SimpleNamespace(n=40, accuracy=0.9)}
    original = SimpleNamespace(failed_models=[], unreadable=[], several_faces=[], skipped={}, unlabelled=0, cannot_predict={}, unscored_answer_counts={}, tie_notes=list, source_notes=list, learned_notes=list, never_notes=list, n=40, classes=("happy",),
                               reports={"tiny-p": SimpleNamespace(accuracy=0.9, per_class=scores, calibration=None),
                                        "large-p": SimpleNamespace(accuracy=0.9, per_class=scores, calibration=None)})
    masked_scores = {"happy": SimpleNamespace(n=40, accuracy=0.3)}
    masked = SimpleNamespace(reports={name: SimpleNamespace(accuracy=0.3, per_class=masked_scores, calibration=None)
                                      for name in original.reports}, mcnemar=[])
    p_values = {"tiny-p": 1e-9, "large-p": 0.25}
    report = SimpleNamespace(original=original, masked=masked, unmaskable=[], not_placed=0, reasons_failed=[], crop_like_no_face=[],
                             names=list(p_values), empty_classes=[],
                             paired_test=lambda name: McNemarResult("original", "masked", 24, 0, p_values[name],
                                                                    difference=0.6, difference_ci95=(0.45, 0.72)))
    monkeypatch.setattr(mask_report, "run_mask_report", lambda *a, **k: report)
    monkeypatch.setattr("fer_core.predictors.registry.find_entry", _made_up)  # models made up for the test
    code, out, _ = run_cli(capsys, "mask-report", "--images", tmp_path / "faces", "--models", "tiny-p,large-p")
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert code == 0 and "< 0.0001" in rows["tiny-p"] and "0.0000" not in out
    assert rows["large-p"].split()[1:7] == ["0.900", "0.300", "+0.600", "(+0.450", "to", "+0.720)"]  # drop, CI
    assert rows["large-p"].split()[7] == "0.2500"
    assert "happy 0.90->0.30" in rows["tiny-p"]


def test_summaries_name_an_output_that_is_not_utf8_as_escapes(capsys, tmp_path, study_table):
    """An --out named in Latin-1 (au\\xff.csv) was printed with Python's stand-in \\udcff, as no
    other message of the program names such a file; now as \\xff, as the errors do."""
    table = tmp_path / os.fsdecode(b"au\xff.csv")
    code, _, err = run_cli(capsys, "import-openface", study_table, "--out", table)
    assert code == 0 and table.is_file()
    assert "au\\xff.csv" in err and "\udcff" not in err
    source = _tiny_split(tmp_path / "split")
    code, out, _ = run_cli(capsys, "draw-testset", source, tmp_path / os.fsdecode(b"set\xff"), "--per-class", "1",
                           "--classes", "happy,sad")
    assert code == 0 and out.rstrip().endswith("set\\xff") and "\udcff" not in out


def test_compare_says_a_tiny_mcnemar_p_as_below_not_as_equal_to_below(capsys, tmp_path, monkeypatch):
    """compare printed "p = < 0.0001" for a McNemar p of 1e-9."""
    from types import SimpleNamespace

    import fer_core.evaluation.compare as compare

    pairs = [SimpleNamespace(a="m1", b="m2", only_a_correct=30, only_b_correct=0, p_value=1e-9, p_holm=2e-9,
                             difference=0.5, difference_ci95=(0.37, 0.62)),
             SimpleNamespace(a="m1", b="m3", only_a_correct=3, only_b_correct=2, p_value=0.5, p_holm=1.0,
                             difference=0.0167, difference_ci95=(-0.05, 0.08))]
    comparison = SimpleNamespace(failed_models=[], crop_like_no_face=[], unreadable=[], several_faces=[], skipped={}, unlabelled=0, cannot_predict={}, unscored_answer_counts={}, tie_notes=list, source_notes=list, learned_notes=list, never_notes=list, reports={}, names=[], answers_from_cache={},
                                 mcnemar=pairs, to_dict=lambda: {}, group_analyses=dict, group_problems=dict)
    monkeypatch.setattr(compare, "run_comparison", lambda *a, **k: comparison)
    from PIL import Image

    (tmp_path / "happy").mkdir()
    Image.new("RGB", (48, 48)).save(tmp_path / "happy" / "a.png")
    code, out, _ = run_cli(capsys, "compare", "--images", tmp_path, "--models", BUNDLED_AU_MODEL)
    lines = [line for line in out.splitlines() if line.startswith("McNemar")]
    assert code == 0 and "p < 0.0001, Holm-adjusted p < 0.0001" in lines[0] and "= <" not in out
    assert "p = 0.5000, Holm-adjusted p = 1.0000" in lines[1]
    assert "accuracy A-B +0.500 (95% CI +0.370 to +0.620)" in lines[0]  # by how much, not only whether


def test_videos_among_the_images_are_counted_apart(capsys, tmp_path, fer_sample):
    """Two videos in a folder read "2 images, 0 faces; 2 without a face or unreadable", status 0:
    they are videos (measured frame by frame, here unreadable ones), not images without a face;
    with an option that is for images, they are passed over and the line says which."""
    import shutil

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(next((fer_sample / "happy").glob("*.jpg")), folder / "happy_1.jpg")
    for name in ("p01.mp4", "p02.MOV"):
        (folder / name).write_bytes(b"\0" * 64)
    code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1")
    assert code == 0
    assert err.splitlines()[0] == (f"1 image, 1 face; 2 videos: 0 frames at 10 fps, 0 faces -> {tmp_path / 'au.csv'}; "
                                   "0 without a face or unreadable; 0 frames of videos without a face; 2 videos unreadable")
    code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1", "--crops")
    assert code == 0
    assert err.splitlines()[0] == (f"1 image, 1 face -> {tmp_path / 'au.csv'}; 0 without a face or unreadable; 2 videos "
                                   f"passed over (--crops is for images; extract {folder} without it measures them "
                                   "too, or extract VIDEO --fps 10 each)")


def test_a_folder_scores_the_same_from_its_images_and_from_its_table(capsys, tmp_path, fer_sample):
    """evaluate --images leaves out a file it cannot read, for every model alike; on the table
    extract wrote of the same folder, such a file's row counted as a face not found, so the same
    images scored 0.441 one way and 0.454 the other (a reviewer's 179 against 174 images)."""
    folder = tmp_path / "imgs"
    shutil.copytree(fer_sample, folder)
    good = next((folder / "sad").iterdir()).read_bytes()
    (folder / "sad" / "cut.jpg").write_bytes(good[: len(good) // 3])
    (folder / "sad" / "notes.png").write_text("not an image")
    (folder / "happy" / "empty.jpg").write_bytes(b"")
    (folder / "happy" / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "sad" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    table = tmp_path / "au.csv"
    assert run_cli(capsys, "extract", folder, "--out", table, "--workers", "1")[0] == 0
    reports = []
    for source in (["--images", folder], ["--au-table", table]):
        code, out, err = run_cli(capsys, "evaluate", "--model", BUNDLED_AU_MODEL, *source, "--json")
        assert code == 0, err
        reports.append(json.loads(out))
    by_images, by_table = reports
    assert by_table["n"] == by_images["n"] == 24
    for key in ("accuracy", "no_face", "confusion", "no_face_per_class"):
        assert by_table[key] == by_images[key], key
    assert "per_video" not in by_table  # the broken video was no video scored without a face
    assert by_table["left_out"] == {au_table.UNREADABLE: 5}  # said: the 3 images, the HEIC and the video


def test_extract_says_its_speed_and_the_images_classes_left_out(capsys, tmp_path, fer_sample, monkeypatch):
    """A data engineer's review: a long run said nothing of its speed, and --classes left the
    fear images out unsaid ("179 images"), or said "no images found" of a folder full of them."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # measured here, not by an earlier test
    code, _, err = run_cli(capsys, "extract", fer_sample, "--classes", "happy,sad", "--out", tmp_path / "au.csv",
                           "--workers", "1")
    assert code == 0
    lines = err.splitlines()
    assert lines[0].startswith("8 images, ") and lines[0].endswith(
        "; 16 images of other emotions or unlabelled left out (--classes)")
    assert re.fullmatch(r"took \d+\.\d s for 8 images \(\d+\.\d images/s\); cached ones are not measured again "
                        r"\(--no-cache measures every one\)", lines[-1])
    code, _, err = run_cli(capsys, "extract", fer_sample / "happy", "--classes", "sad", "--out", tmp_path / "x.csv")
    assert code == 2 and err == (f"error: {fer_sample / 'happy'}: no images of sad (--classes); its 4 images are of "
                                 "other emotions or unlabelled\n")


def test_extract_does_not_promise_a_cache_it_could_not_use(capsys, caplog, tmp_path, monkeypatch, astronaut_jpeg):
    """With the cache unusable, extract warned "measurement cache ... not used" and ended with
    "cached ones are not measured again" all the same."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(astronaut_jpeg.read_bytes())
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("")
    monkeypatch.setenv("FER_CACHE_DIR", str(blocked))
    code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1")
    assert code == 0 and "not used" in caplog.text  # the warning (on stderr from python -m fer_core)
    assert err.splitlines()[-1].startswith("took ") and "cached ones" not in err, err


def test_extract_speed_counts_the_images_it_measured_not_the_cached(capsys, tmp_path, fer_sample, monkeypatch):
    """A rerun after an interrupt said "took 77.7 s for 3,589 images (46.2 images/s)" where 576 came
    from the cache: the speed of the 3,013 measured was 39 images/s."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # this test's cache: an earlier one measured them
    folder = tmp_path / "faces"
    folder.mkdir()
    happy = sorted((fer_sample / "happy").glob("*.jpg"))
    (folder / "a.jpg").write_bytes(happy[0].read_bytes())
    code, _, _ = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1")
    (folder / "b.jpg").write_bytes(happy[1].read_bytes())
    (folder / "c.jpg").write_bytes(happy[2].read_bytes())
    code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1")
    assert code == 0
    assert re.match(r"took \d+\.\d s for 3 images: 2 measured \(\d+\.\d images/s\), 1 from the cache or "
                    r"unreadable", err.splitlines()[-1]), err
    code, _, err = run_cli(capsys, "extract", folder, "--out", tmp_path / "au.csv", "--workers", "1")
    assert re.match(r"took \d+\.\d s for 3 images, all from the cache or unreadable", err.splitlines()[-1]), err


def test_a_second_local_extract_into_the_same_output_is_refused_while_the_first_runs(tmp_path, astronaut_jpeg,
                                                                                    capsys, monkeypatch):
    """Two local extract runs into one --out both said "-> au.csv" and the last to finish replaced
    the other's table without a word (a reliability review): the output's lock is now held from
    before measuring to the table written, as the Ray engine holds it."""
    from fer_core.measure import extract
    from fer_core.measure.ray_engine import lock_path

    (tmp_path / "a" / "happy").mkdir(parents=True)
    (tmp_path / "b" / "sad").mkdir(parents=True)
    shutil.copy(astronaut_jpeg, tmp_path / "a" / "happy" / "one.jpg")
    shutil.copy(astronaut_jpeg, tmp_path / "b" / "sad" / "two.jpg")
    out = tmp_path / "au.csv"
    measure, second = extract.extract_table, []

    def measuring_while_another_starts(*args, **kwargs):
        if not second:  # the first run, while it measures
            second.append(main(["extract", str(tmp_path / "b"), "--out", str(out), "--workers", "1"]))
            second.append(capsys.readouterr().err)
        return measure(*args, **kwargs)

    monkeypatch.setattr(extract, "extract_table", measuring_while_another_starts)
    assert main(["extract", str(tmp_path / "a"), "--out", str(out), "--workers", "1"]) == 0
    assert second[0] == 2 and f"another run is writing {out}; wait for it or choose another --out" in second[1]
    assert list(pd.read_csv(out)["file"]) == ["happy/one.jpg"]
    assert not lock_path(out).exists(), "its holder removes the lock file"
    assert main(["extract", str(tmp_path / "b"), "--out", str(out), "--workers", "1"]) == 0  # free once it is done
    assert list(pd.read_csv(out)["file"]) == ["sad/two.jpg"]


def test_compare_gives_its_results_when_one_of_its_files_cannot_be_written(tmp_path, fer_sample, capsys, monkeypatch):
    """--csv, --report and --json: the report hit the file size limit, and the JSON, computed, was
    never printed, while the error said "nothing was written" of a run that had written its CSV (a
    reliability review). The results are given, the file that failed is named, and the status is 2."""
    import errno

    from fer_core import fileio
    from fer_core.evaluation import report

    def too_large(path, html):
        raise fileio.write_error(path, OSError(errno.EFBIG, "File too large"))

    monkeypatch.setattr(report, "write_report", too_large)
    code = main(["compare", "--images", str(fer_sample), "--models", BUNDLED_AU_MODEL, "--workers", "1", "--json",
                 "--csv", str(tmp_path / "p.csv"), "--report", str(tmp_path / "r.html")])
    out, err = capsys.readouterr()
    assert code == 2 and json.loads(out)["n"] > 0 and (tmp_path / "p.csv").exists()
    assert err.strip().splitlines()[-1] == f"error: {tmp_path / 'r.html'}: could not be written (File too large); it was not written"


def test_compare_report_records_what_its_json_provenance_records(tmp_path, fer_sample, capsys):
    """A reproducibility audit: the report named the test set only by its folder, without the
    images' digest, the measurement's version or the landmarker's checksum the JSON kept, and the
    JSON did not name ai-edge-litert, which computes the bundled CNNs' answers."""
    code = main(["compare", "--images", str(fer_sample), "--models", BUNDLED_AU_MODEL, "--workers", "1", "--json",
                 "--report", str(tmp_path / "r.html")])
    made = json.loads(capsys.readouterr().out)["provenance"]
    html = (tmp_path / "r.html").read_text()
    assert code == 0
    assert made["test_set"]["sha256"] in html and f"({made['test_set']['files']:,} images" in html
    assert made["measurement"]["version"] in html and made["measurement"]["landmarker_sha256"] in html
    assert made["code_sha256"] in html and re.fullmatch("[0-9a-f]{64}", made["code_sha256"])
    assert "ai-edge-litert" in made["versions"]


def test_evaluate_and_compare_json_keep_the_same_keys_whatever_the_run_found(capsys, fer_sample, fer_val, tmp_path):
    """A cluster workflow read d["skipped"] and got a KeyError on a folder with nothing skipped:
    the keys came and went with what each run found."""
    clean, with_fear = tmp_path / "clean", tmp_path / "with fear"
    for emotion in ("happy", "sad"):
        shutil.copytree(Path(fer_sample) / emotion, clean / emotion)
        shutil.copytree(Path(fer_sample) / emotion, with_fear / emotion)
    copy_fer_sample(fer_val, with_fear, per_class=2, classes=("fear",))  # a six-emotion model skips them
    keys = {}
    for folder in (with_fear, clean):
        code, out, _ = run_cli(capsys, "evaluate", "--model", BUNDLED_AU_MODEL, "--images", folder, "--workers", "1",
                               "--json")
        assert code == 0
        keys.setdefault("evaluate", []).append(set(json.loads(out)))
        code, out, _ = run_cli(capsys, "compare", "--models", BUNDLED_AU_MODEL, "--images", folder, "--workers", "1",
                               "--json")
        said = json.loads(out)
        keys.setdefault("compare", []).append(set(said))
        keys.setdefault("compare model", []).append(set(said["models"][BUNDLED_AU_MODEL]))
    assert all(a == b for a, b in keys.values()), keys
    assert {"skipped", "left_out", "other_per_class", "tied", "crops", "crop_like_no_face"} <= keys["evaluate"][1]
    # what the notes say of a model's own training data, as compare's JSON gives it
    assert {"learned_from", "from_training_folder", "copies_of_training", "from_choosing_folder"} <= keys["evaluate"][1]


def test_compare_names_every_output_file_it_could_not_write(tmp_path, fer_sample, capsys):
    """A CSV that could not be written made compare skip its report without a word (a code review)."""
    code = main(["compare", "--images", str(fer_sample), "--models", BUNDLED_AU_MODEL, "--workers", "1", "--json",
                 "--csv", "/proc/p.csv", "--report", str(tmp_path / "r.html")])
    out, err = capsys.readouterr()
    assert code == 2 and json.loads(out)["n"] > 0 and (tmp_path / "r.html").exists()
    assert "error: /proc/p.csv: could not be written" in err


def test_a_closed_terminal_window_ends_a_run_with_129(tmp_path, fer_val):
    """The run's own terminal hung up: stderr then takes no more writes (EIO), and saying
    "interrupted" raised, so the run ended with status 1 (a code review, with a pseudo-terminal)."""
    import pty
    import select
    import signal
    import time

    # 240 images (a few seconds' measuring): the hang-up must come mid-run; 24 were sometimes done first
    images = copy_fer_sample(fer_val, tmp_path / "images", per_class=40)
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO_ROOT)}
    pid, fd = pty.fork()
    if pid == 0:  # the run, on the terminal's other end, as from a shell
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.chdir(REPO_ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "fer_core", "extract", str(images), "--out",
                                   str(tmp_path / "au.csv"), "--workers", "1"], env)
    said, deadline = b"", time.monotonic() + 120
    while b"images" not in said and time.monotonic() < deadline:  # its progress bar: measuring has begun
        if select.select([fd], [], [], 1)[0]:
            try:
                said += os.read(fd, 4096)
            except OSError:
                break
    os.close(fd)  # the window closed: the kernel hangs the terminal up (SIGHUP)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP, said[-2000:]


def test_image_limits_a_script_moves_after_a_first_measurement_hold_in_the_workers_too(capsys, tmp_path, monkeypatch,
                                                                                     group_photo):
    """The measuring workers, started by a first extract, kept the image limits they started with:
    a script that then moved FER_MAX_DECODE_SIDE had its photo measured under the old limit and
    cached under the new one (its boxes, scaled for the new limit, came out four times too large)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(group_photo).resize((2700, 1020)).save(photos / "big.jpg", quality=92)
    boxes = []
    for limit in (None, "1200"):  # the whole photo, then a quarter of it: the same faces, in the file's pixels
        if limit:
            monkeypatch.setenv("FER_MAX_DECODE_SIDE", limit)
        code, _, err = run_cli(capsys, "extract", photos, "--out", tmp_path / f"{limit}.csv", "--workers", "1")
        assert code == 0, err
        boxes.append(au_table.read(tmp_path / f"{limit}.csv")[list(au_table.BOX_COLUMNS)].to_numpy())
    for box in boxes[0][:3]:  # the three faces, largest first
        assert np.abs(boxes[1] - box).max(axis=1).min() < 0.06 * box[2], (box, boxes[1])


def test_accuracies_printed_carry_their_interval(capsys, fer_sample):
    """An affective scientist's review: `models` printed "accuracy 0.557" with no interval or n, and
    compare's per-emotion lines "accuracy 0.60" at n 10 (an interval of 31-83 %)."""
    code, out, _ = run_cli(capsys, "models")
    line = next(x for x in out.splitlines() if x.startswith("au-logreg-fer2013 "))
    assert "accuracy 0.557 (95% CI 0.545-0.570" in line  # 3,215 of 5,767 = 0.557482 (kept 0.5575, it read 0.558)
    assert code == 0 and re.search(r"accuracy 0\.\d{3} \(95% CI 0\.\d{3}-0\.\d{3}, n [\d,]+\), macro-F1", line), line
    code, out, _ = run_cli(capsys, "evaluate", "--model", "au-logreg-fer2013", "--images", fer_sample)
    happy = next(x for x in out.splitlines() if x.strip().startswith("happy"))
    assert code == 0 and re.search(r"n +4  accuracy \d\.\d\d \(\d\.\d\d-\d\.\d\d\)", happy), happy


def test_evaluate_writes_each_images_answer_as_compare_does(capsys, tmp_path, fer_sample):
    """evaluate gave only totals: a per-image table needed compare with one model. --csv writes the
    table compare --csv writes; with --au-table it points to predict --au-table."""
    code, _, _ = run_cli(capsys, "evaluate", "--images", fer_sample, "--csv", tmp_path / "evaluate.csv")
    assert code == 0
    assert run_cli(capsys, "compare", "--images", fer_sample, "--models", BUNDLED_AU_MODEL,
                   "--csv", tmp_path / "compare.csv")[0] == 0
    answers = pd.read_csv(tmp_path / "evaluate.csv")
    assert (tmp_path / "evaluate.csv").read_bytes() == (tmp_path / "compare.csv").read_bytes()
    assert len(answers) == 24 and list(answers.columns[:3]) == ["file", "label", BUNDLED_AU_MODEL]
    code, _, err = run_cli(capsys, "evaluate", "--au-table", REPO_ROOT / "data" / "fer2013_val_au.csv.gz",
                           "--csv", tmp_path / "rows.csv")
    assert code == 2 and "predict --au-table TABLE --out OUT" in err and not (tmp_path / "rows.csv").exists()


def test_train_au_says_which_classes_keep_the_emotions_it_left_out(capsys, tmp_path):
    """--classes happy,sad on a table with angry rows said "(--classes keeps them)", naming no value."""
    from test_au_model import synthetic_table

    source = tmp_path / "three.csv"
    au_table.write(synthetic_table(14, classes=("angry", "happy", "sad")), source)
    code, _, err = run_cli(capsys, "train-au", source, "--classes", "happy,sad", "--out", tmp_path / "m.json")
    assert code == 0 and "14 angry rows are of emotions not trained (--classes angry,happy,sad keeps them)" in err


def test_train_au_does_not_offer_classes_too_few_faces_would_refuse(capsys, tmp_path):
    """A lab's 8 fear faces: "(--classes seven keeps them)", and --classes seven was then refused
    for too few faces. Emotions under 10 faces are named as too few, not offered."""
    from test_au_model import synthetic_table

    from fer_core.emotions import SEVEN_EMOTIONS

    table = synthetic_table(14, classes=SEVEN_EMOTIONS)
    table = table[(table["label"] != "fear") | (table.groupby("label").cumcount() < 8)]
    source = tmp_path / "few_fear.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "train-au", source, "--out", tmp_path / "m.json")
    assert code == 0 and "8 fear rows are of emotions not trained; fear (8): fewer than 10 faces, too few to train" \
        in err and "--classes seven" not in err


def test_extract_labels_a_labs_file_names_and_says_which_got_none(capsys, tmp_path, fer_sample):
    """A flat folder of P07_session2_happy.JPG: the emotion after the participant labelled nothing,
    and extract said nothing of the images left without a label (evaluate did, later)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    sources = sorted(fer_sample.rglob("*.jpg"))
    for name, source in zip(["P07_session2_happy.JPG", "P07-sad.jpg", "P08_행복.jpg", "happy_P09.jpg", "P10_s1.jpg",
                             "P11_session2_happy03.jpg", "P12sad(1).jpg", "P13_sad_vs_happy.jpg"], sources):
        (flat / name).write_bytes(source.read_bytes())
    code, _, err = run_cli(capsys, "extract", flat, "--out", tmp_path / "au.csv")
    table = au_table.read(tmp_path / "au.csv").set_index("file")
    assert code == 0 and table["label"].to_dict() == {"P07_session2_happy.JPG": "happy", "P07-sad.jpg": "sad",
                                                       "P08_행복.jpg": "happy", "happy_P09.jpg": "happy",
                                                       "P10_s1.jpg": None, "P11_session2_happy03.jpg": "happy",
                                                       "P12sad(1).jpg": "sad", "P13_sad_vs_happy.jpg": None}
    assert "2 images without a label (P10_s1.jpg, P13_sad_vs_happy.jpg: the folder or file name names no emotion" \
        in err


def test_train_au_holds_out_whole_participants(capsys, tmp_path):
    """A lab's photos of one child were both fitted and held out (the split is by row): the score
    flattered the model, and no list said which faces were held out. --group-by keeps each
    participant's photos on one side, also in the inner cross-validation, and the model lists the
    files it held out."""
    from test_au_model import synthetic_table

    table = synthetic_table(24)
    table["file"] = [f"P{i % 12:02d}_session{i % 3}_{label}_{i}.jpg" for i, label in enumerate(table["label"])]
    source = tmp_path / "lab.csv"
    au_table.write(table, source)
    code, _, err = run_cli(capsys, "train-au", source, "--group-by", r"^(P\d+)", "--out", tmp_path / "m.json")
    assert code == 0, err
    assert "whole participants held out (--group-by '^(P\\d+)'): " in err and "none with photos on both sides" in err
    assert "the interval counts each photo as independent" in err
    data = json.loads((tmp_path / "m.json").read_text())["info"]["data"]
    held = {f.split("_")[0] for f in data["held_out_files"]}
    fitted = {f.split("_")[0] for f in table["file"]} - held
    assert held and fitted and len(data["held_out_files"]) == sum(f.split("_")[0] in held for f in table["file"])
    for bad, message in ((r"^(P\d+", "is not a regular expression"), (r"^(Q\d+)", "matches no file name")):
        code, _, err = run_cli(capsys, "train-au", source, "--group-by", bad, "--out", tmp_path / "x.json")
        assert code == 2 and message in err and err.count("\n") == 1
    # a pattern that leaves names without a participant (P10, P11 missed): refused, as those children's
    # photos could fall on both sides; one that finds too few participants names those it found
    code, _, err = run_cli(capsys, "train-au", source, "--group-by", r"^(P0\d)", "--out", tmp_path / "y.json")
    assert code == 2 and "names no participant in 24 of 144 file names ('P10_" in err
    code, _, err = run_cli(capsys, "train-au", source, "--group-by", r"^P\d", "--out", tmp_path / "y.json")
    assert code == 2 and "cannot hold out whole participants (--group-by '^P\\d': 2 of them, P0, P1)" in err
    assert "--group-by '^(P\\d+)'" in data["held_out_videos"] and "\\\\d" not in err  # as typed, not doubled


def _made_up(ref):
    """``find_entry`` for a model name a test made up: no file, not a typo (compare checks names first)."""
    from fer_core.errors import ModelFileError

    raise ModelFileError(f"{ref}: made up for the test")


def test_compare_and_evaluate_score_labels_of_ones_own_with_cohens_kappa(capsys, tmp_path, fer_val):
    """A study's stimuli sit in one flat folder (stim_001.jpg ...) and its raters' labels in a CSV:
    the workbench took only emotion folders or emotion-prefixed names, and gave no kappa, the
    statistic human raters' agreement is reported in."""
    from sklearn.metrics import cohen_kappa_score

    flat = tmp_path / "stimuli"
    flat.mkdir()
    truth = {}
    for k, emotion in enumerate(["happy"] * 4 + ["sad"] * 4 + ["surprise"] * 4):
        source = sorted((fer_val / emotion).glob("*.jpg"))[k]
        shutil.copy(source, flat / f"stim_{k:03d}.jpg")
        truth[f"stim_{k:03d}.jpg"] = emotion
    rows = ["file,majority,R1", "stim_000.jpg,Happiness,sad"]  # raters write as they speak
    rows += [f"{name},{emotion},{emotion}" for name, emotion in truth.items() if name not in ("stim_000.jpg",
                                                                                            "stim_010.jpg")]
    rows += ["stim_010.jpg,contempt,", "missing.jpg,sad,sad"]  # no emotion scored; no such image
    labels = tmp_path / "ratings.csv"
    labels.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "compare", "--images", flat, "--labels", labels, "--label-column", "majority",
                             "--models", "au-logreg-fer2013,cnn-fer2013", "--workers", "1", "--json",
                             "--csv", tmp_path / "p.csv")
    assert code == 0, err
    said = json.loads(out)
    assert said["n"] == 11 and said["labels"]["not_emotions"] == {"contempt": 1}
    assert said["labels"]["rows_without_image"] == ["missing.jpg"] and said["labels"]["no_row"] == 0
    assert said["passed_over"] == ["stim_010.jpg: majority contempt, which names no emotion"], "which image, and why"
    # the sheet's own agreement, which a model's kappa is read against: on the 11 images both columns label
    majority = [truth[n] for n in sorted(truth) if n != "stim_010.jpg"]
    rater = ["sad" if n == "stim_000.jpg" else truth[n] for n in sorted(truth) if n != "stim_010.jpg"]
    (pair,) = said["labels"]["rater_agreement"]
    assert (pair["a"], pair["b"], pair["n"]) == ("majority", "R1", 11)
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(majority, rater), abs=1e-6)
    assert f"the sheet's own agreement, Cohen's kappa: majority - R1 {pair['kappa']:.3f} (n 11)" in err
    assert "left out 1 image(s) whose majority names no emotion: contempt 1" in err
    table = pd.read_csv(tmp_path / "p.csv")
    assert dict(zip(table["file"], table["label"])) == {n: e for n, e in truth.items() if n != "stim_010.jpg"}
    for model in ("au-logreg-fer2013", "cnn-fer2013"):  # kappa as scikit-learn computes it, no face an answer
        answers = table[model].fillna("no face")
        assert said["models"][model]["kappa"] == pytest.approx(cohen_kappa_score(table["label"], answers), abs=1e-6)
    code, out, err = run_cli(capsys, "evaluate", "--images", flat, "--labels", labels, "--label-column", "R1",
                             "--model", "cnn-fer2013", "--workers", "1")
    assert code == 0 and "Cohen's kappa" in out and "left out 1 image(s) whose R1 names no emotion: (blank) 1" in err
    code, _, err = run_cli(capsys, "compare", "--images", flat, "--labels", labels, "--label-column", "R9")
    assert code == 2 and "ratings.csv: has no 'R9' column (its columns: file, majority, R1)" in err
    # a sheet whose images are headed otherwise: --file-column names the column
    renamed = tmp_path / "stim_sheet.csv"
    renamed.write_text(labels.read_text().replace("file,majority", "Stim_ID,majority", 1))
    code, out, err = run_cli(capsys, "evaluate", "--images", flat, "--labels", renamed, "--label-column", "majority",
                             "--file-column", "Stim_ID", "--model", "au-logreg-fer2013", "--workers", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 11 and json.loads(out)["labels"]["file_column"] == "Stim_ID"
    code, _, err = run_cli(capsys, "evaluate", "--images", flat, "--file-column", "Stim_ID")
    assert code == 2 and "--file-column names a column of --labels CSV: give --labels too" in err


def test_labels_of_a_folder_per_participant_typed_by_hand_are_matched(capsys, tmp_path, fer_val):
    """A lab's stimuli sit in a folder per participant, and its sheet was typed by hand: names in
    another letter case, Windows paths from the rater's machine, the README's lower-case column
    name for the sheet's Majority, a row pasted twice. Every image is read and matched; the line on
    stderr says which labels were scored; two rows that disagree are refused with both labels."""
    stim = tmp_path / "stim"
    names = {}
    for k, emotion in enumerate(["happy", "happy", "sad", "surprise"]):
        folder = stim / f"P0{k % 2 + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        source = sorted((fer_val / emotion).glob("*.jpg"))[k]
        shutil.copy(source, folder / f"img{k}.jpg")
        names[f"P0{k % 2 + 1}/img{k}.jpg"] = emotion
    rows = ["Filename;Majority",
            "p01\\IMG0.JPG;Happy",  # another case, a backslash
            "C:\\Users\\lab\\stim\\P02\\img1.jpg;happy",  # the rater's own path
            "P01/img2.jpg;sad", "P01/img2.jpg;sad",  # pasted twice
            "img3.jpg;surprised"]  # bare
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    code, _, err = run_cli(capsys, "compare", "--images", stim, "--models", "au-logreg-fer2013")
    assert code == 2 and "--labels CSV" in err, "a folder per participant: the sheet is the way, not renaming"
    code, out, err = run_cli(capsys, "compare", "--images", stim, "--labels", sheet, "--label-column", "majority",
                             "--models", "au-logreg-fer2013", "--workers", "1", "--json", "--csv", tmp_path / "p.csv",
                             "--report", tmp_path / "r.html")
    assert code == 0, err
    assert "labelled by sheet.csv (column Majority, SHA-256" in (tmp_path / "r.html").read_text(), "whose labels"
    assert json.loads(out)["labels"]["labelled"] == 4 and json.loads(out)["passed_over"] == []
    assert "skipped: P01/" not in err and "scored against Majority of" in err and "4 image(s) labelled" in err
    table = pd.read_csv(tmp_path / "p.csv")
    assert dict(zip(table["file"], table["label"])) == names
    sheet.write_text("file,label\nimg3.jpg,sad\nimg3.jpg,happy\n")
    code, _, err = run_cli(capsys, "compare", "--images", stim, "--labels", sheet, "--models", "au-logreg-fer2013")
    assert code == 2 and "img3.jpg is given two rows, labelled sad and happy" in err


def test_a_kappa_interval_below_zero_reads_with_to_not_a_hyphen(capsys):
    """"(95% CI -0.152-0.723)" read as a range from minus to minus: an interval that can start below 0
    is written "-0.152 to 0.723"."""
    from fer_core.cli import _print_report
    from fer_core.evaluation.metrics import evaluation_report

    truth = ["happy", "sad", "happy", "sad", "happy", "sad"]
    report = evaluation_report(truth, ["happy", "happy", "sad", "sad", "happy", "happy"], ["happy", "sad"])
    assert report.kappa_ci95[0] < 0
    _print_report(report)
    low, high = report.kappa_ci95
    assert f"Cohen's kappa {report.kappa:.3f} (95% CI {low:.3f} to {high:.3f})" in capsys.readouterr().out
