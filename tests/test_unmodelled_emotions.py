"""Contempt, which CK+ and AffectNet label and no model here predicts: a table or a folder that holds
it is read, and its faces are left out as another emotion's, said by name. Before, one contempt row
failed a whole AU table as an "unknown label", and a contempt/ folder was called "not named after
an emotion", with the advice to rename it to one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_au_model import synthetic_table

from fer_core import au_table, i18n
from fer_core.au_table import OTHER_LABEL
from fer_core.emotions import normalize_emotion, parse_classes, unmodelled_emotion
from fer_core.errors import FerError
from fer_core.evaluation.compare import evaluate_au_table
from fer_core.images import UNMODELLED_EMOTION_FOLDER, scan_images
from fer_core.predictors.au_models import AUPredictor, fit_au_model

REPO = Path(__file__).resolve().parents[1]
FER_VAL = REPO.parent / "shared" / "datasets" / "fer2013" / "val"


def _table_with_contempt(tmp_path: Path) -> Path:
    table = synthetic_table(n_per_class=20)
    contempt = synthetic_table(n_per_class=7, classes=("happy",), seed=1).assign(label="Contempt")
    contempt["file"] = [f"contempt/{i}.jpg" for i in range(len(contempt))]
    path = tmp_path / "ckplus_aus.csv"
    pd.concat([table, contempt], ignore_index=True).to_csv(path, index=False)
    return path


def test_contempt_is_a_known_label_that_no_model_predicts():
    assert unmodelled_emotion(" Contempt ") == unmodelled_emotion("contemptuous") == "contempt"
    assert unmodelled_emotion("경멸") == "contempt"
    assert normalize_emotion("contempt") is None  # not one of the emotions models learn
    assert unmodelled_emotion("happy") is None and unmodelled_emotion("bored") is None
    with pytest.raises(FerError, match="^'Contempt': no model here learns contempt; use names from angry, "):
        parse_classes("happy,Contempt")  # train-au --classes: not called an unknown emotion


def test_a_table_labelled_contempt_is_read_and_evaluated_without_those_rows(tmp_path):
    table = au_table.read(_table_with_contempt(tmp_path))
    assert (au_table.labels_of(table) == "contempt").sum() == 7
    predictor = AUPredictor(fit_au_model(synthetic_table(), kind="au-logreg"), name="m")
    report = evaluate_au_table(predictor, table)
    assert report.n == 120  # the six emotions' rows, scored
    assert report.skipped == {"contempt": 7}


def test_training_leaves_contempt_rows_out_as_another_emotions(tmp_path):
    table = au_table.read(_table_with_contempt(tmp_path))
    model = fit_au_model(table, kind="au-logreg")
    assert "contempt" not in model.classes
    assert model.info["data"]["left_out"][OTHER_LABEL] == 7


def test_evaluate_cli_names_the_contempt_rows_it_leaves_out(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FER_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-m", "fer_core", "evaluate", "--au-table",
                           str(_table_with_contempt(tmp_path))], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "left out 7 contempt row(s)" in done.stderr
    assert "unknown labels" not in done.stderr


@pytest.mark.skipif(not FER_VAL.is_dir(), reason="needs ../shared/datasets/fer2013/val (FER2013 images)")
def test_a_contempt_folder_is_said_as_an_emotion_no_model_predicts(tmp_path):
    for emotion in ("happy", "contempt"):
        (tmp_path / emotion).mkdir()
        source = next((FER_VAL / ("disgust" if emotion == "contempt" else emotion)).glob("*.jpg"))
        (tmp_path / emotion / source.name).write_bytes(source.read_bytes())
    listing = scan_images(tmp_path)
    assert [it.label for it in listing.items] == ["happy"]
    assert [(s.file, s.reason) for s in listing.skipped] == [("contempt/", UNMODELLED_EMOTION_FOLDER)]
    assert "rename" not in UNMODELLED_EMOTION_FOLDER  # renaming it to another emotion would mislabel its faces
    with i18n.using_language("ko"):
        assert i18n.reason(UNMODELLED_EMOTION_FOLDER) != UNMODELLED_EMOTION_FOLDER
        assert i18n.emotion_label("contempt") == "경멸"
