"""Evaluation numbers checked against hand-computed examples."""

from __future__ import annotations

import json

import pytest

from fer_core.evaluation.metrics import evaluation_report, holm_adjusted, mcnemar, wilson_ci


def test_report_on_a_hand_computed_example():
    y_true = ["happy", "happy", "happy", "sad", "sad", "angry"]
    y_pred = ["happy", "happy", "sad", "sad", None, "sad"]
    r = evaluation_report(y_true, y_pred, ["angry", "happy", "sad"], model="m").to_dict()
    # the evaluate --json output, key for key
    assert list(r) == ["model", "n", "no_face", "accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "per_class", "labels",
                       "confusion", "no_face_per_class", "other_per_class", "skipped", "left_out", "kappa", "kappa_ci95",
                       "calibration", "log_loss", "brier", "calibration_by_answer"]
    assert r["calibration"] is None and r["log_loss"] is None  # answers without probabilities: nothing to score
    # Cohen's kappa by hand, no face an answer of its own: observed 3/6, by chance (0 + 3*2 + 2*3 + 0)/36
    assert r["kappa"] == pytest.approx((1 / 2 - 1 / 3) / (1 - 1 / 3))
    assert r["other_per_class"] == [0, 0, 0] and r["skipped"] == {} and r["left_out"] == {}  # there, empty
    assert r["model"] == "m" and r["labels"] == ["angry", "happy", "sad"]
    assert r["n"] == 6 and r["no_face"] == 1
    assert r["accuracy"] == pytest.approx(3 / 6, abs=1e-4)
    # accuracy is the emotion's recall; precision and F1 beside it (the compare --json a study reports)
    assert r["per_class"]["happy"] == {"n": 3, "accuracy": pytest.approx(2 / 3, abs=1e-4), "precision": 1.0,
                                       "f1": 0.8}
    assert r["per_class"]["sad"] == {"n": 2, "accuracy": 0.5, "precision": pytest.approx(1 / 3, abs=1e-4),
                                     "f1": 0.4}
    # never answered: no precision (not 0); no images of it would leave F1 empty too
    assert r["per_class"]["angry"] == {"n": 1, "accuracy": 0.0, "precision": None, "f1": 0.0}
    # rows: true angry/happy/sad; columns: predicted angry/happy/sad
    assert r["confusion"] == [[0, 0, 1], [0, 2, 1], [0, 0, 1]]
    assert r["no_face_per_class"] == [0, 0, 1]
    # F1: angry 0; happy P=1 R=2/3 -> 0.8; sad P=1/3 R=1/2 -> 0.4
    assert r["macro_f1"] == pytest.approx((0 + 0.8 + 0.4) / 3, abs=1e-4)
    lo, hi = r["accuracy_ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1


def test_macro_f1_leaves_out_an_emotion_neither_tested_nor_answered():
    """No disgust images and no disgust answers: disgust has no F1, so it does not pull the mean
    down (it read 0.833 for all-correct answers). Macro-F1 is the mean over the emotions tested: an
    emotion answered but never tested is a wrong answer to the emotion shown, not a third F1 of 0
    (that made evaluate's figure differ from compare's for the same model and images)."""
    classes = ["angry", "disgust", "happy"]
    right = evaluation_report(["angry", "happy", "happy"], ["angry", "happy", "happy"], classes).to_dict()
    assert right["macro_f1"] == 1.0 and right["per_class"]["disgust"] == {"n": 0, "accuracy": None, "precision": None,
                                                                  "f1": None}
    answered = evaluation_report(["angry", "happy", "happy"], ["angry", "happy", "disgust"], classes).to_dict()
    # angry 1; happy P=1 R=1/2 -> 2/3; disgust, answered once but never tested, is not averaged
    assert answered["macro_f1"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-4)
    assert answered["per_class"]["disgust"] == {"n": 0, "accuracy": None, "precision": 0.0, "f1": None}


def test_accuracy_interval_narrows_with_more_data():
    small = wilson_ci([1, 0] * 10)
    large = wilson_ci([1, 0] * 500)
    assert small[1] - small[0] > large[1] - large[0]
    assert large[0] < 0.5 < large[1]


def test_accuracy_interval_is_not_a_point_when_every_answer_is_right_or_wrong():
    """10 of 10 right read "100–100 %" with the percentile bootstrap, as if the model could not be
    wrong, and 59 of 60 read 95–100 %; the Wilson interval keeps room for the next image."""
    z2 = 1.959963984540054 ** 2  # Wilson at k = n: lower bound n / (n + z^2)
    all_right = evaluation_report(["happy"] * 10, ["happy"] * 10, ["happy", "sad"])
    assert all_right.accuracy == 1.0
    assert all_right.accuracy_ci95 == (pytest.approx(10 / (10 + z2), abs=1e-4), 1.0)
    none_right = evaluation_report(["happy"] * 10, [None] * 10, ["happy", "sad"])
    assert none_right.accuracy_ci95 == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-4))
    lo, hi = evaluation_report(["happy"] * 60, ["happy"] * 59 + ["sad"], ["happy", "sad"]).accuracy_ci95
    assert lo == pytest.approx(0.9114, abs=1e-4) and hi == pytest.approx(0.9971, abs=1e-4)
    assert evaluation_report([], [], ["happy"]).accuracy_ci95 == (0.0, 0.0)  # nothing scored


def test_mcnemar_exact():
    a = [True] * 10 + [False] * 2
    b = [False] * 10 + [True] * 2
    r = mcnemar(a, b).to_dict()
    assert (r["only_a_correct"], r["only_b_correct"]) == (10, 2)
    # two-sided exact binomial: 2 * P(X <= 2 | n=12, p=1/2) = 2 * 79 / 4096
    assert r["p_value"] == pytest.approx(2 * 79 / 4096, abs=1e-6)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_a_tiny_mcnemar_p_value_is_kept_not_rounded_to_zero():
    """Rounded to six decimals, 40 images against none read p = 0 in the JSON and the CSV."""
    p = mcnemar([True] * 40, [False] * 40).p_value
    assert p > 0 and p == pytest.approx(2 * 0.5**40, rel=1e-9)


def test_holm_adjusts_each_p_value_for_the_tests_made():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.4, 0.9]) == [0.8, 0.9] and holm_adjusted([0.7, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm_adjusted([0.02]) == [0.02] and holm_adjusted([]) == []  # one test: nothing to adjust


def test_a_prediction_outside_the_scored_classes_counts_wrong_in_its_class():
    """A seven-emotion model's 'fear' on a six-emotion test set is a wrong answer, and the image
    still belongs to its class's size."""
    r = evaluation_report(["sad", "sad"], ["fear", "sad"], ["happy", "sad"])
    assert r.per_class["sad"].n == 2 and r.per_class["sad"].accuracy == 0.5 and r.accuracy == 0.5


def test_collapsed_model_is_recognised():
    y = ["happy"] * 5 + ["sad"] * 5
    assert evaluation_report(y, ["happy"] * 10, ["happy", "sad"]).predicts_one_class() == "happy"
    assert evaluation_report(y, y, ["happy", "sad"]).predicts_one_class() is None


@pytest.mark.parametrize("damage", [{"recall": [0.5]}, {"failed": ["au-logreg-fer2013"]}])
def test_a_scores_file_with_a_list_where_a_mapping_belongs_is_one_error_line(tmp_path, damage):
    """Home read the scores file and crashed with AttributeError ('list' object has no attribute
    'items'); now it is the one line Home shows for any damaged scores file."""
    from fer_core.config import REPO_ROOT
    from fer_core.errors import ModelFileError
    from fer_core.evaluation.scores import SCORES_FILE, read_scores

    data = json.loads((REPO_ROOT / "models" / SCORES_FILE).read_text(encoding="utf-8"))
    if "recall" in damage:
        data["models"][0]["recall"] = damage["recall"]
    else:
        data["failed"] = damage["failed"]
    (tmp_path / SCORES_FILE).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match="not a scores file") as caught:
        read_scores(tmp_path)
    assert "\n" not in str(caught.value)
