"""Model comparison: same images for every model, numbers checked by hand, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.evaluation.compare import run_comparison
from fer_core.images import list_images
from fer_core.predictors.base import Predictor


class LookupPredictor(Predictor):
    """A pixel model that answers from a table keyed by the image's gray value (a real
    Predictor, so the comparison runs unchanged)."""

    kind = "test"

    def __init__(self, name, classes, answers):
        self.name, self.classes, self.answers = name, tuple(classes), answers

    def predict_proba(self, faces, progress=None):
        out = []
        for img in self.pixels_of(faces):
            answer = self.answers[int(img[0, 0, 0])]
            row = np.full(len(self.classes), np.nan) if answer is None else np.eye(len(self.classes))[self.classes.index(answer)]
            out.append(row)
        return np.array(out)


@pytest.fixture
def six_images(tmp_path):
    # value -> true label: 0,1,2 happy; 3,4 sad; 5 angry
    labels = ["happy", "happy", "happy", "sad", "sad", "angry"]
    for value, label in enumerate(labels):
        Image.new("L", (48, 48), value).save(tmp_path / f"{label}{value:03d}.png")
    (tmp_path / "sad999.png").write_bytes(b"broken")  # unreadable: reported, not compared
    return tmp_path


def test_compare_against_hand_computed_numbers(six_images):
    classes = ["angry", "happy", "sad"]
    a = LookupPredictor("A", classes, ["happy", "happy", "sad", "sad", None, "sad"])
    b = LookupPredictor("B", classes, ["happy", "sad", "sad", "sad", "sad", "angry"])
    comparison = run_comparison([a, b], list_images(six_images), classes)
    assert comparison.n == 6 and len(comparison.unreadable) == 1 and "sad999.png" in comparison.unreadable[0]
    report = comparison.to_dict()
    ra, rb = report["models"]["A"], report["models"]["B"]
    assert ra["accuracy"] == pytest.approx(3 / 6, abs=1e-4) and ra["no_face"] == 1
    assert rb["accuracy"] == pytest.approx(4 / 6, abs=1e-4) and rb["no_face"] == 0
    assert ra["per_class"]["happy"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert rb["per_class"]["angry"]["accuracy"] == 1.0
    # B is right where A is wrong on images 4 (no face for A) and 5; A right where B wrong on 1.
    pair = report["mcnemar"][0]
    assert (pair["only_a_correct"], pair["only_b_correct"]) == (1, 2)
    assert pair["p_value"] == pytest.approx(1.0)
    assert len(report["no_face"]["A"]) == 1 and report["no_face"]["A"][0].endswith("sad004.png")
    assert sorted(f.rsplit("/", 1)[-1] for f in report["wrong"]["A"]) == ["angry005.png", "happy002.png", "sad004.png"]
    frame = comparison.per_emotion_frame()
    assert set(frame["model"]) == {"A", "B"} and len(frame) == 6


def test_classes_default_to_those_every_model_predicts(six_images):
    a = LookupPredictor("A", ["angry", "happy", "sad"], ["happy"] * 6)
    b = LookupPredictor("B", ["happy", "sad"], ["happy"] * 6)
    comparison = run_comparison([a, b], list_images(six_images))
    assert comparison.classes == ("happy", "sad") and comparison.n == 5
    assert comparison.skipped == {"angry": 1}


def test_compare_cli_on_fer_sample(capsys, tmp_path, fer_sample):
    code = main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013",
                 "--csv", str(tmp_path / "p.csv"), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["n"] == 24 and list(report["models"]) == ["au-logreg-fer2013"]
    assert (tmp_path / "p.csv").read_text().startswith("file,label,au-logreg-fer2013")


def test_train_cnn_then_evaluate_and_compare_all_kinds(capsys, tmp_path, fer_sample):
    """train-cnn -> evaluate --model x.keras -> compare AU model vs CNN on the same images."""
    cnn = tmp_path / "tiny.keras"
    assert main(["train-cnn", "--data", str(fer_sample), "--val", str(fer_sample), "--out", str(cnn),
                 "--preset", "tiny", "--epochs", "1"]) == 0
    assert "validation accuracy" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(cnn), "--images", str(fer_sample), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 24 and report["no_face"] == 0
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", str(cnn), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert list(both["models"]) == ["au-logreg-fer2013", "tiny"]
    assert both["mcnemar"][0]["a"] == "au-logreg-fer2013" and both["models"]["tiny"]["n"] == 24
