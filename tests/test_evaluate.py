"""Evaluation numbers checked against hand-computed examples."""

from __future__ import annotations

import pytest

from fer_core.evaluation.metrics import bootstrap_ci, evaluation_report, mcnemar


def test_report_on_a_hand_computed_example():
    y_true = ["happy", "happy", "happy", "sad", "sad", "angry"]
    y_pred = ["happy", "happy", "sad", "sad", None, "sad"]
    r = evaluation_report(y_true, y_pred, ["angry", "happy", "sad"], model="m").to_dict()
    # the evaluate --json output, key for key
    assert list(r) == ["model", "n", "no_face", "accuracy", "accuracy_ci95", "macro_f1", "per_class", "labels",
                       "confusion", "no_face_per_class"]
    assert r["model"] == "m" and r["labels"] == ["angry", "happy", "sad"]
    assert r["n"] == 6 and r["no_face"] == 1
    assert r["accuracy"] == pytest.approx(3 / 6, abs=1e-4)
    assert r["per_class"]["happy"] == {"n": 3, "accuracy": pytest.approx(2 / 3, abs=1e-4)}
    assert r["per_class"]["sad"] == {"n": 2, "accuracy": 0.5}
    assert r["per_class"]["angry"]["accuracy"] == 0.0
    # rows: true angry/happy/sad; columns: predicted angry/happy/sad
    assert r["confusion"] == [[0, 0, 1], [0, 2, 1], [0, 0, 1]]
    assert r["no_face_per_class"] == [0, 0, 1]
    # F1: angry 0; happy P=1 R=2/3 -> 0.8; sad P=1/3 R=1/2 -> 0.4
    assert r["macro_f1"] == pytest.approx((0 + 0.8 + 0.4) / 3, abs=1e-4)
    lo, hi = r["accuracy_ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1


def test_macro_f1_leaves_out_an_emotion_neither_tested_nor_answered():
    """No disgust images and no disgust answers: disgust has no F1, so it does not pull the mean
    down (it read 0.833 for all-correct answers); an emotion answered but never tested counts 0."""
    classes = ["angry", "disgust", "happy"]
    right = evaluation_report(["angry", "happy", "happy"], ["angry", "happy", "happy"], classes).to_dict()
    assert right["macro_f1"] == 1.0 and right["per_class"]["disgust"] == {"n": 0, "accuracy": None}
    answered = evaluation_report(["angry", "happy", "happy"], ["angry", "happy", "disgust"], classes).to_dict()
    # angry 1; happy P=1 R=1/2 -> 2/3; disgust answered once, never right -> 0
    assert answered["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-4)


def test_bootstrap_interval_narrows_with_more_data():
    small = bootstrap_ci([1, 0] * 10)
    large = bootstrap_ci([1, 0] * 500)
    assert small[1] - small[0] > large[1] - large[0]
    assert large[0] < 0.5 < large[1]


def test_mcnemar_exact():
    a = [True] * 10 + [False] * 2
    b = [False] * 10 + [True] * 2
    r = mcnemar(a, b).to_dict()
    assert (r["only_a_correct"], r["only_b_correct"]) == (10, 2)
    # two-sided exact binomial: 2 * P(X <= 2 | n=12, p=1/2) = 2 * 79 / 4096
    assert r["p_value"] == pytest.approx(2 * 79 / 4096, abs=1e-6)
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_a_prediction_outside_the_scored_classes_counts_wrong_in_its_class():
    """A seven-emotion model's 'fear' on a six-emotion test set is a wrong answer, and the image
    still belongs to its class's size."""
    r = evaluation_report(["sad", "sad"], ["fear", "sad"], ["happy", "sad"])
    assert r.per_class["sad"].n == 2 and r.per_class["sad"].accuracy == 0.5 and r.accuracy == 0.5


def test_bootstrap_in_chunks_gives_the_same_interval(monkeypatch):
    """Chunked resampling draws the same numbers as one big draw, with bounded memory."""
    import fer_core.evaluation.metrics as metrics

    correct = [1, 0, 1, 1] * 250
    whole = bootstrap_ci(correct, n_boot=500)
    monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK_VALUES", 3000)  # 3 resamples per chunk
    assert bootstrap_ci(correct, n_boot=500) == whole


def test_collapsed_model_is_recognised():
    y = ["happy"] * 5 + ["sad"] * 5
    assert evaluation_report(y, ["happy"] * 10, ["happy", "sad"]).predicts_one_class() == "happy"
    assert evaluation_report(y, y, ["happy", "sad"]).predicts_one_class() is None
