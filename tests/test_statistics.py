"""The pairwise McNemar table of Compare (page, CSV, report): which model the verdict names, the
Holm correction across pairs, and p-values too small for four decimals."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from fer_core.evaluation.compare import Comparison
from fer_core.figures.compare import mcnemar_frame, shown_table
from fer_core.fileio import csv_bytes
from fer_core.i18n import using_language


def _comparison(answers: dict[str, list[str]], labels: list[str]) -> Comparison:
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(len(labels))], "label": labels, **answers})
    return Comparison.from_table(table, list(answers), ["happy", "sad"])


def test_the_verdict_names_the_model_right_on_more_of_the_disputed_images():
    """Over 100,001 images A is right on 8 images B gets wrong and B on none: both accuracies round
    to 0.5, and the verdict used to name B, the worse model."""
    n = 100_001
    a = np.array(["sad"] * n, dtype=object)
    b = a.copy()
    a[:50_004] = "happy"
    b[:49_996] = "happy"
    comparison = _comparison({"A": a, "B": b}, ["happy"] * n)
    from fer_core.evaluation.metrics import share_text

    assert share_text(comparison.reports["A"].accuracy) == share_text(comparison.reports["B"].accuracy) == "0.500"
    row = mcnemar_frame(comparison).iloc[0]
    assert (row["only A right"], row["only B right"]) == (8, 0) and row["p-value"] < 0.05
    assert row["verdict"] == "A is better"


def test_the_verdict_reads_holm_adjusted_p_values_when_several_pairs_are_tested():
    """Three models, three tests: A beats B and C beats B at p = 0.021 each, significant alone but
    not once the three tests are accounted for (Holm: 3 x 0.021 = 0.064); two models, one test:
    nothing to adjust, and the same difference is called."""
    labels = ["happy"] * 20
    a = ["happy"] * 10 + ["sad"] * 10  # right on images 0-9
    b = ["sad"] * 9 + ["happy"] * 2 + ["sad"] * 9  # right on 9 and 10: only-A 9, only-B 1
    three = mcnemar_frame(_comparison({"A": a, "B": b, "C": list(a)}, labels))
    assert list(three.columns) == ["model A", "model B", "A - B", "A - B ci95_low", "A - B ci95_high",
                                   "only A right", "only B right", "p-value", "p (Holm)", "Holm pairs", "verdict"]
    assert set(three["Holm pairs"]) == {3}  # the table says what p (Holm) is adjusted over
    assert list(three["p-value"]) == pytest.approx([2 * 11 / 1024, 1.0, 2 * 11 / 1024])  # A-B, A-C, B-C
    assert list(three["p (Holm)"]) == pytest.approx([3 * 2 * 11 / 1024, 1.0, 3 * 2 * 11 / 1024])
    assert set(three["verdict"]) == {"no significant difference"}
    two = mcnemar_frame(_comparison({"A": a, "B": b}, labels))
    assert two.loc[0, "p (Holm)"] == pytest.approx(2 * 11 / 1024) and two.loc[0, "verdict"] == "A is better"
    assert two.loc[0, "Holm pairs"] == 1
    with using_language("ko"):  # the report's Korean table
        shown = shown_table(mcnemar_frame(_comparison({"A": a, "B": b}, labels)))
    assert "Holm 보정 p" in shown.columns and shown.iloc[0]["α = 0.05에서 (Holm 보정)"] == "A이(가) 더 나음"


def test_each_pair_says_how_far_apart_the_accuracies_are_with_an_interval():
    """A p-value says whether two models differ, not by how much: each pair gives accuracy A - B
    with its 95 % interval, in the table, the CSV, the report's words and the JSON."""
    labels = ["happy"] * 20
    a = ["happy"] * 10 + ["sad"] * 10
    b = ["sad"] * 9 + ["happy"] * 2 + ["sad"] * 9  # only-A 9, only-B 1, both 1, neither 9
    comparison = _comparison({"A": a, "B": b}, labels)
    row = mcnemar_frame(comparison).iloc[0]
    assert row["A - B"] == pytest.approx(0.4)
    assert 0 < row["A - B ci95_low"] < 0.4 < row["A - B ci95_high"] < 1
    swapped = mcnemar_frame(_comparison({"B": b, "A": a}, labels)).iloc[0]  # the same interval, mirrored
    assert (swapped["A - B ci95_low"], swapped["A - B ci95_high"]) == pytest.approx(
        (-row["A - B ci95_high"], -row["A - B ci95_low"]), abs=1e-4)
    shown = shown_table(mcnemar_frame(comparison))
    assert shown.loc[0, "accuracy A − B (95% CI)"] == (
        f"+40.0 ({100 * row['A - B ci95_low']:+.1f} to {100 * row['A - B ci95_high']:+.1f}) pp")
    pair = comparison.to_dict()["mcnemar"][0]
    assert pair["accuracy_difference"] == pytest.approx(0.4)
    assert pair["accuracy_difference_ci95"] == [row["A - B ci95_low"], row["A - B ci95_high"]]
    same = mcnemar_frame(_comparison({"A": a, "B": list(a)}, labels)).iloc[0]  # agreeing on every image
    assert same["A - B"] == 0 and same["A - B ci95_low"] < 0 < same["A - B ci95_high"]  # not a point


def test_the_accuracy_difference_interval_covers_the_true_difference_95_times_in_100():
    """Two models right on correlated images (as two models on one test set are): the interval holds
    the true difference about 95 % of the time. Leaving the correlation out (the unpaired formula)
    covers 99.5 %, too wide; a Wald interval is too narrow at 60 images."""
    from scipy.stats import norm

    from fer_core.evaluation.metrics import paired_difference_ci

    rng = np.random.default_rng(1)
    n, runs, (pa, pb), rho = 60, 600, (0.6, 0.7), 0.6
    covered = 0
    for _ in range(runs):
        z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
        a, b = z[:, 0] < norm.ppf(pa), z[:, 1] < norm.ppf(pb)
        both, only_a, only_b = int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b))
        low, high = paired_difference_ci(both, only_a, only_b, n - both - only_a - only_b)
        covered += low <= pa - pb <= high
    assert 0.93 <= covered / runs <= 0.975


def test_a_p_value_below_four_decimals_is_shown_as_such_and_kept_in_the_csv():
    """40 images only A gets right: p = 1.8e-12, which read 0.0000 in the report and 0.0 in the CSV."""
    comparison = _comparison({"A": ["happy"] * 40, "B": ["sad"] * 40}, ["happy"] * 40)
    frame = mcnemar_frame(comparison)
    shown = shown_table(frame)
    assert shown.loc[0, "p-value"] == "< 0.0001" and shown.loc[0, "p (Holm)"] == "< 0.0001"
    assert shown_table(mcnemar_frame(_comparison({"A": ["happy"] * 3, "B": ["sad"] * 3}, ["happy"] * 3))
                       ).loc[0, "p-value"] == "0.2500"
    parsed = pd.read_csv(io.BytesIO(csv_bytes(frame)))
    assert parsed.loc[0, "p-value"] > 0 and parsed.loc[0, "p-value"] == pytest.approx(2 * 0.5**40, rel=1e-6)


# -- the numbers against reference implementations (scipy, scikit-learn) ------------------------

def _wilson_formula(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) in closed form, as statsmodels' proportion_confint(method='wilson') writes it."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (10, 10), (59, 60), (30, 60), (17, 56), (2173, 3093)])
def test_wilson_interval_is_the_closed_form_one(k, n):
    from fer_core.evaluation.metrics import wilson_ci, wilson_counts

    assert wilson_counts(k, n) == pytest.approx(_wilson_formula(k, n), abs=1e-12)
    assert wilson_ci([True] * k + [False] * (n - k)) == pytest.approx(_wilson_formula(k, n), abs=1e-12)


def test_mcnemar_is_the_exact_binomial_test_and_holm_the_step_down_procedure():
    """Small discordant counts (a 60-image study set gives a handful): the exact conditional test,
    not the chi-square approximation; Holm as statsmodels' multipletests(method='holm') computes it."""
    from scipy.stats import binomtest

    from fer_core.evaluation.metrics import holm_adjusted, mcnemar

    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.random(60) < rng.uniform(0.3, 0.9), rng.random(60) < rng.uniform(0.3, 0.9)
        r = mcnemar(a, b)
        m = r.only_a_correct + r.only_b_correct
        assert (r.only_a_correct, r.only_b_correct) == (int((a & ~b).sum()), int((~a & b).sum()))
        assert r.p_value == pytest.approx(binomtest(r.only_a_correct, m).pvalue if m else 1.0, rel=1e-12)
    for _ in range(200):
        p = rng.random(int(rng.integers(1, 10))) ** 3
        order = np.argsort(p)
        steps = np.minimum(np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]), 1)
        expected = np.empty(len(p))
        expected[order] = steps
        assert holm_adjusted(p) == pytest.approx(expected.tolist(), abs=1e-15)


def test_scores_agree_with_scikit_learn_whatever_the_answers():
    """Accuracy, per-emotion recall, confusion (rows true) and macro-F1 over the emotions tested,
    with no-face (None) and out-of-set (fear) answers counted wrong."""
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    from fer_core.evaluation.metrics import evaluation_report

    classes = ["angry", "disgust", "happy", "sad"]
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(1, 50))
        truth = list(rng.choice(rng.choice(classes, int(rng.integers(1, 5)), replace=False), n))
        pool = list(rng.choice(classes, int(rng.integers(1, 5)))) + [None, "fear"]
        pred = [pool[i] for i in rng.integers(0, len(pool), n)]
        r = evaluation_report(truth, pred, classes)
        named = ["(none)" if p is None else p for p in pred]
        scored = [c for c in classes if c in truth]
        assert r.accuracy == pytest.approx(np.mean([t == p for t, p in zip(truth, pred)]), abs=5e-5)
        assert r.macro_f1 == pytest.approx(f1_score(truth, named, labels=scored, average="macro", zero_division=0),
                                           abs=5e-5)
        assert r.confusion == confusion_matrix(truth, named, labels=classes).tolist()
        recall = recall_score(truth, named, labels=classes, average=None, zero_division=0)
        for c, expected in zip(classes, recall):
            assert r.per_class[c].accuracy == (pytest.approx(expected, abs=5e-5) if c in truth else None)


def test_macro_f1_is_the_same_whether_scored_over_the_models_or_the_test_sets_emotions():
    """evaluate scores over the model's emotions, compare over the test set's: a seven-emotion model
    on six-emotion images had macro-F1 0.527 from one and 0.615 from the other (its fear answers)."""
    from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
    from fer_core.evaluation.metrics import evaluation_report

    truth = ["happy", "happy", "sad", "sad", "angry", "angry"]
    pred = ["happy", "fear", "sad", "fear", "angry", "sad"]
    alone = evaluation_report(truth, pred, SEVEN_EMOTIONS)
    compared = evaluation_report(truth, pred, SIX_EMOTIONS)
    assert alone.accuracy == compared.accuracy == pytest.approx(0.5, abs=1e-4)
    assert alone.macro_f1 == compared.macro_f1 > 0


def test_an_emotion_never_answered_has_no_precision_not_a_precision_of_zero():
    """A model that never says disgust was listed with disgust precision 0.0, which reads "every
    disgust answer was wrong"; there were none, so it is unknown (as recall is without images)."""
    from fer_core.figures.compare import precision_recall_frame

    table = pd.DataFrame({"file": ["a", "b", "c", "d"], "label": ["disgust", "happy", "happy", "sad"],
                          "A": ["happy", "happy", "sad", "sad"]})
    frame = precision_recall_frame(Comparison.from_table(table, ["A"], ["disgust", "happy", "sad"]))
    frame = frame.set_index("emotion")
    assert np.isnan(frame.loc["disgust", "precision"])
    assert frame.loc["disgust", "recall"] == 0.0 and frame.loc["disgust", "f1"] == 0.0  # tested, never found
    assert frame.loc["happy", "precision"] == 0.5 and frame.loc["sad", "precision"] == 0.5
    parsed = pd.read_csv(io.BytesIO(csv_bytes(frame.reset_index())))
    assert parsed["precision"].isna().sum() == 1  # an empty cell in the CSV, not 0


def test_each_emotion_of_the_summary_has_its_wilson_interval():
    """The per-emotion rows of the summary (CSV, report) had empty interval columns, so a recall on
    56 disgust images read as firmly as one on 895 happy ones."""
    from scipy.stats import binomtest

    from fer_core.figures.compare import summary_frame

    labels = ["disgust"] * 5 + ["happy"] * 50
    answers = ["disgust"] * 2 + ["happy"] * 3 + ["happy"] * 45 + [None] * 5
    frame = summary_frame(Comparison.from_table(
        pd.DataFrame({"file": [f"f{i}" for i in range(55)], "label": labels, "A": answers}), ["A"],
        ["disgust", "happy", "sad"])).set_index("emotion")
    for emotion, k, n in (("disgust", 2, 5), ("happy", 45, 50)):
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert (frame.loc[emotion, "ci95_low"], frame.loc[emotion, "ci95_high"]) == (
            pytest.approx(ci.low, abs=5e-5), pytest.approx(ci.high, abs=5e-5))
    assert frame.loc["disgust", "ci95_high"] - frame.loc["disgust", "ci95_low"] > 0.5  # five images: wide
    assert pd.isna(frame.loc["sad", "ci95_low"]) and pd.isna(frame.loc["sad", "ci95_high"])  # no images
    overall = binomtest(47, 55).proportion_ci(method="wilson")
    assert frame.loc["overall", "ci95_low"] == pytest.approx(overall.low, abs=5e-5)


def test_report_tables_write_precision_recall_and_f1_one_way():
    """The report printed recall 0.6 beside precision 0.4000 (pandas chose each column's digits)."""
    frame = pd.DataFrame({"model": ["m", "m"], "emotion": ["happy", "sad"], "precision": [0.4, float("nan")],
                          "recall": [0.6, 0.7], "f1": [0.48, 0.4286], "support": [10, 10]})
    shown = shown_table(frame)
    assert shown.iloc[:, 2:5].values.tolist() == [["0.400", "0.600", "0.480"], ["–", "0.700", "0.429"]]


def test_emotion_names_are_read_as_people_write_them():
    """"Happy" against classes happy, sad counted as a third, unnamed class (wrong, in no confusion
    cell); classes "Happy", "Sad" against lower-case labels ended in scikit-learn's "At least one
    label specified must be in y_true"."""
    from fer_core.evaluation.metrics import evaluation_report

    report = evaluation_report(["Happy", "Sad", "happy"], ["happy", "sad", "happy"], ["happy", "sad"])
    assert report.accuracy == 1.0 and report.confusion == [[2, 0], [0, 1]]
    report = evaluation_report(["happy", "sad"], ["happy", "sad"], ["Happy", "Sad"])
    assert report.accuracy == 1.0 and report.confusion == [[1, 0], [0, 1]]
    assert report.labels == ["happy", "sad"] and report.per_class["happy"].n == 1  # named as this project does
    from fer_core.errors import FerError

    with pytest.raises(FerError, match="classes happy, joy name an emotion twice"):  # they were merged into one
        evaluation_report(["happy", "joy"], ["happy", "happy"], ["happy", "joy"])
    report = evaluation_report(["happiness", "fear"], ["Happy", "sad"], ["happy", "sad"])  # fear: in no cell
    assert report.n == 2 and report.accuracy == 0.5 and report.confusion == [[1, 0], [0, 0]]


def test_every_bundled_models_interval_is_wilsons_as_home_and_compare_give_it():
    """Five manifest entries kept a percentile bootstrap's interval (cnn-ensemble-fer2013: 0.707-0.738
    under `models`, 0.706-0.738 on Home, both called 95% CI)."""
    from fer_core.config import REPO_ROOT
    from fer_core.evaluation.metrics import wilson_counts
    from fer_core.manifest import read_manifest

    checked = 0
    for entry in read_manifest(REPO_ROOT / "models"):
        m = entry.metrics
        if m.accuracy is None or not m.n or not m.accuracy_ci95:
            continue
        k = round(m.accuracy * m.n)
        low, high = wilson_counts(k, m.n)
        # kept to 6 decimals, as reports keep them: shown to 3 they are not rounded twice
        assert (m.accuracy, *m.accuracy_ci95) == (round(k / m.n, 6), round(low, 6), round(high, 6)), entry.name
        checked += 1
    assert checked >= 9


def test_a_stored_score_reads_the_same_on_the_command_line_and_in_the_report():
    """0.5575 read 0.557 under `models` (the binary 0.55749...) and 55.8% in the report. Scores are
    now kept to 6 decimals (3,215 of 5,767 is 0.557482: 0.557 and 55.7 %), and what is kept is read
    the same way everywhere."""
    from fer_core.evaluation.metrics import evaluation_report, share_text
    from fer_core.figures.compare import percent

    report = evaluation_report(["happy"] * 5767, ["happy"] * 3215 + ["sad"] * 2552, ["happy", "sad"])
    assert report.accuracy == 0.557482 and (share_text(report.accuracy), percent(report.accuracy)) == ("0.557", "55.7%")
    assert (share_text(0.5575), percent(0.5575)) == ("0.558", "55.8%")  # a score exactly half-way: up, both
    assert (share_text(0.4995), percent(0.4995)) == ("0.500", "50.0%")
    assert (share_text(0.1234), percent(0.1234), share_text(None)) == ("0.123", "12.3%", "–")


def test_a_close_call_is_read_as_the_answer_is_taken():
    """A tie named the answer its own runner-up ("happy is within 0.10 of happy"), and a face's
    probabilities written as null (NaN) made predict's JSON crash on sorting None."""
    from fer_core.emotions import close_call
    from fer_core.pipeline import FaceResult
    from fer_core.predictors.base import FaceInput

    assert close_call({"happy": 0.5, "sad": 0.5, "angry": 0.0}) == ("sad", 0.5)  # the answer is the first highest
    assert close_call({"happy": 0.30, "neutral": 0.29, "sad": 0.41}) is None
    assert close_call({"happy": float("nan"), "sad": None}) is None
    face = FaceResult((0, 0, 10, 10), 0.9, {}, FaceInput(), probabilities={"happy": float("nan"), "sad": float("nan")})
    out = face.to_dict()
    assert out["emotion"] is None and out["close_call"] is False and out["probabilities"] == {"happy": None, "sad": None}


def test_kappas_interval_is_its_large_sample_standard_error():
    """Cohen's kappa's 95 % interval (Fleiss, Cohen & Everitt's standard error) is the delta
    method's on the table's multinomial cells, derived here independently by numerical gradient;
    it holds the kappa, narrows as n grows, and a hand-made three-emotion report carries it."""
    from fer_core.evaluation.metrics import evaluation_report, kappa_interval

    table = np.array([[20, 5, 2, 1], [3, 15, 4, 0], [1, 2, 8, 2], [0, 1, 0, 3]], dtype=float)
    n, m = table.sum(), len(table)
    p = (table / n).ravel()

    def kappa(q):
        q = q.reshape(m, m) / q.sum()
        chance = q.sum(axis=1) @ q.sum(axis=0)
        return (np.trace(q) - chance) / (1 - chance)

    step = 1e-6
    grad = np.array([(kappa(p + step * e) - kappa(p - step * e)) / (2 * step) for e in np.eye(len(p))])
    se = float(np.sqrt(grad @ ((np.diag(p) - np.outer(p, p)) / n) @ grad))
    lo, hi = kappa_interval(table)
    assert lo < kappa(p) < hi and (hi - lo) / 2 == pytest.approx(1.959964 * se, rel=1e-5)
    lo4, hi4 = kappa_interval(table * 4)
    assert (hi4 - lo4) == pytest.approx((hi - lo) / 2, rel=1e-6), "four times the images, half the width"
    assert kappa_interval(np.array([[5, 0], [0, 0]])) is None  # one category: no kappa, no interval
    r = evaluation_report(["happy", "happy", "sad", "sad", "angry", "angry"], ["happy", "sad", "sad", "sad", "angry", None],
                          ["angry", "happy", "sad"])
    assert r.kappa_ci95[0] < r.kappa < r.kappa_ci95[1]


def test_kappa_interval_is_not_a_point_where_no_width_can_be_given():
    """Perfect agreement, or one answer throughout, has no large-sample width: no interval, not
    (1.0, 1.0) or "-0.000 – 0.000" read as exact."""
    from fer_core.evaluation.metrics import kappa_interval

    assert kappa_interval(np.array([[2, 0], [0, 2]])) is None
    assert kappa_interval(np.array([[3, 0], [3, 0]])) is None


def test_calibration_bins_are_scikit_learns_and_its_error_their_weighted_gap():
    """Per bin of confidence, the share right and the mean confidence are scikit-learn's
    ``calibration_curve`` (uniform bins); the expected calibration error is the bins' gaps weighted
    by their answers. Faces not judged (NaN) are no answers."""
    from sklearn.calibration import calibration_curve

    from fer_core.evaluation.metrics import calibration

    rng = np.random.default_rng(7)
    confidence = rng.uniform(1 / 6, 1, 2000)
    correct = rng.uniform(size=2000) < confidence ** 2  # right less often than sure: overconfident
    with_no_face = np.concatenate([confidence, [np.nan] * 25])
    c = calibration(with_no_face, np.concatenate([correct, [True] * 25]))
    assert c.n == 2000 and c.accuracy == pytest.approx(correct.mean(), abs=1e-6)
    right, sure = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    assert [b.accuracy for b in c.bins] == pytest.approx(right, abs=1e-6)
    assert [b.mean_confidence for b in c.bins] == pytest.approx(sure, abs=1e-6)
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 11))[0]
    assert [b.n for b in c.bins] == [n for n in counts if n]
    expected = sum(n * abs(r - s) for n, r, s in zip([n for n in counts if n], right, sure)) / 2000
    assert c.ece == pytest.approx(expected, abs=1e-6) and c.gap > 0.1


def test_a_model_as_right_as_it_is_sure_has_almost_no_calibration_error_and_says_so():
    from fer_core.evaluation.metrics import calibration
    from fer_core.figures.compare import calibration_words

    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.2, 1, 20000)
    c = calibration(confidence, rng.uniform(size=20000) < confidence)
    assert c.ece < 0.02 and abs(c.gap) < 0.01
    overconfident = calibration(np.full(100, 0.99), np.arange(100) < 50)  # always sure, right half the time
    assert (overconfident.ece, overconfident.gap) == (pytest.approx(0.49), pytest.approx(0.49))
    assert overconfident.direction == "over" and overconfident.chance_ece < 0.05
    with using_language("en"):
        assert calibration_words("m", overconfident) == (
            "**m**: 99.0% sure on average, right on 50.0% of 100 answers: overconfident by 49.0 points "
            f"(calibration error 0.490; a calibrated model stays under {overconfident.chance_ece:.3f} 95 times in 100 here).")
        assert "calibrated as far as these answers can tell" in calibration_words("m", calibration([0.5, 0.5], [True, False]))
    assert calibration([np.nan], [False]) is None  # no face judged: nothing to calibrate


def test_a_calibrated_models_error_on_few_faces_is_within_its_chance_level_and_no_direction_is_claimed():
    """60 answers of a model exactly as right as it is sure give an ECE of 0.1 or so by chance alone
    (the review's simulation: 0.112 on average): neither its error nor an over- or underconfidence
    may be read off them. Over many such test sets the chance level is passed about 1 time in 20."""
    from fer_core.evaluation.metrics import calibration

    rng = np.random.default_rng(4)
    results = []
    for _ in range(200):
        confidence = rng.uniform(0.3, 1, 60)
        results.append(calibration(confidence, rng.uniform(size=60) < confidence))
    assert np.mean([c.ece for c in results]) > 0.08  # the bias the chance level is there for
    assert np.mean([c.ece > c.chance_ece for c in results]) < 0.1
    assert np.mean([c.direction != "even" for c in results]) < 0.12
    edges = calibration([0.7, 0.7, 0.3, 1.0], [True, False, True, True])  # a bin holds its lower edge, the last 1.0
    assert [(b.low, b.n) for b in edges.bins] == [(0.3, 1), (0.7, 2), (0.9, 1)]


def test_a_reports_calibration_leaves_out_faces_not_found_and_survives_its_json():
    """Scored from a comparison's probabilities: an answer's confidence is its highest probability;
    a face not found is no answer; the report read back from its JSON keeps the calibration."""
    from fer_core.evaluation.metrics import EvaluationReport

    labels = ["happy", "happy", "sad", "sad"]
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(4)], "label": labels,
                          "m": ["happy", "sad", "sad", None]})
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [np.nan, np.nan]])
    report = Comparison.from_table(table, ["m"], ["happy", "sad"], probabilities={"m": proba}).reports["m"]
    c = report.calibration
    assert (c.n, c.mean_confidence, c.accuracy) == (3, pytest.approx(0.7333333, abs=1e-6), pytest.approx(2 / 3, abs=1e-6))
    assert [(b.low, b.n) for b in c.bins] == [(0.6, 1), (0.7, 1), (0.9, 1)]
    assert EvaluationReport.from_dict(report.to_dict()).calibration == c
    assert Comparison.from_table(table, ["m"], ["happy", "sad"]).reports["m"].calibration is None  # no probabilities


def test_macro_f1s_interval_is_the_bootstrap_of_resampled_images():
    """Drawn as multinomial counts over each true emotion's row of the confusion table, the
    interval is the percentile bootstrap of the images resampled within their emotion (up to the
    resampling's own noise), covers the point estimate, is the same on a rerun, and narrows with
    more images."""
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    from fer_core.evaluation.metrics import report_from_codes

    rng = np.random.default_rng(11)
    truth = rng.integers(0, 4, 400)
    pred = np.where(rng.uniform(size=400) < 0.6, truth, rng.integers(-1, 5, 400))  # -1 no face, 4 another label
    report = report_from_codes(truth, pred, ["angry", "happy", "sad", "neutral"])
    low, high = report.macro_f1_ci95
    assert low < report.macro_f1 < high

    def macro(t, p):
        return f1_score(t, p, labels=[0, 1, 2, 3], average="macro", zero_division=0)

    # scipy's bootstrap of the images resampled within each true emotion (stratified), as the interval is drawn
    strata = [np.flatnonzero(truth == c) for c in range(4)]
    draws = np.random.default_rng(5)
    resampled = [macro(truth[idx], pred[idx]) for idx in
                 (np.concatenate([draws.choice(s, len(s)) for s in strata]) for _ in range(2000))]
    reference = np.quantile(resampled, [0.025, 0.975])
    assert (low, high) == (pytest.approx(reference[0], abs=0.012), pytest.approx(reference[1], abs=0.012))
    unstratified = bootstrap((truth, pred), macro, paired=True, vectorized=False, n_resamples=500,
                             method="percentile", random_state=np.random.default_rng(5)).confidence_interval
    assert unstratified.high - unstratified.low >= (high - low) - 0.01  # class sizes held: no wider
    assert report_from_codes(truth, pred, ["angry", "happy", "sad", "neutral"]).macro_f1_ci95 == (low, high)
    wide = report_from_codes(truth[:60], pred[:60], ["angry", "happy", "sad", "neutral"]).macro_f1_ci95
    assert wide[1] - wide[0] > high - low
    assert report_from_codes(truth[:1], pred[:1], ["angry", "happy", "sad", "neutral"]).macro_f1_ci95 is None
    # every emotion's answers alike (nine images, each emotion all right or all one wrong answer): no
    # resample can differ, and a point ("0.700-0.700") is no interval
    alike = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    assert report_from_codes(alike, np.where(alike == 3, 1, alike), ["angry", "happy", "sad", "neutral"]).macro_f1_ci95 is None


def test_a_model_that_found_no_face_has_no_calibration_and_the_others_keep_their_colours(tmp_path):
    """The diagram colours each model by its place among the models compared, as the other charts
    do: a first model without an answer (no face found anywhere) left every later one recoloured."""
    from fer_core.evaluation.report import ReportSettings, comparison_report_html
    from fer_core.figures.compare import calibration_frame, calibration_summary, model_color, reliability_diagram

    labels = ["happy", "happy", "sad", "sad"]
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(4)], "label": labels,
                          "blind": [None] * 4, "seer": ["happy", "sad", "sad", "sad"]})
    proba = {"blind": np.full((4, 2), np.nan), "seer": np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])}
    comparison = Comparison.from_table(table, ["blind", "seer"], ["happy", "sad"], probabilities=proba,
                                       model_classes={"blind": ("happy", "sad"), "seer": ("happy", "sad")})
    assert comparison.reports["blind"].calibration is None
    assert list(calibration_summary(comparison)["model"]) == ["seer"]
    figure = reliability_diagram(calibration_frame(comparison), order=comparison.names)
    assert [d.name for d in figure.data][1:] == ["seer"] and figure.data[1].line.color == model_color(1)
    text = comparison_report_html(comparison, ReportSettings.now("four", tmp_path), [])
    assert "seer: 75.0% sure on average, right on 75.0% of 4 answers" in text


def test_each_video_is_calibrated_once_from_its_frames_mean_probabilities():
    """A video's answer is the emotion of its frames' highest mean probability, its confidence that
    mean; a video with no face in any frame has no answer and no confidence."""
    from fer_core.evaluation.metrics import per_video_report

    videos = np.array(["v1", "v1", "v2", "v2", "v3"])
    truth = np.array([0, 0, 1, 1, 0])
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [np.nan, np.nan], [np.nan, np.nan]])
    c = per_video_report(videos, truth, proba, ["happy", "sad"]).calibration
    assert (c.n, c.mean_confidence, c.accuracy) == (2, pytest.approx(0.7), 1.0)  # v1 0.7 happy, v2 0.7 sad


def test_calibrations_reading_weighs_the_gap_against_a_calibrated_models_spread():
    """Five answers all right at 0.7 could come from a calibrated model (the answers' own spread,
    zero, read them "underconfident" for certain); a model sure of every answer and wrong on one is
    overconfident for certain; one over in some bins and under in others, even on average, is off
    all the same ("mixed"); a missing label is no crash."""
    from fer_core.evaluation.metrics import calibration, evaluation_report

    assert calibration([0.7] * 5, [True] * 5).direction == "even"
    assert calibration([0.6], [True]).direction == "even"
    assert calibration([1.0] * 4, [True, True, True, False]).direction == "over"
    mixed = calibration([0.3] * 50 + [0.7] * 50, [True] * 50 + [False] * 50)
    assert abs(mixed.gap) < 1e-9 and mixed.ece > mixed.chance_ece and mixed.direction == "mixed"
    missing = evaluation_report(["happy", None, "sad"], ["happy", "sad", "sad"], ["happy", "sad"])
    assert missing.macro_f1 == pytest.approx(0.833333, abs=1e-6)  # every emotion's answers alike: no interval
    assert missing.macro_f1_ci95 is None


def test_calibration_per_emotion_answered_finds_what_the_whole_hides_with_simultaneous_intervals():
    """A model calibrated on the whole (sure of its happy answers and right on them less often,
    timid on its sad ones and right more often) is over- and underconfident per emotion answered;
    each emotion's reading is ``calibration`` of its own answers with Bonferroni's interval over the
    emotions answered (wider than one reading's), its share right that emotion's precision; faces not
    found and answers of an emotion not scored are left out; the report's JSON keeps them."""
    from statistics import NormalDist

    from fer_core.evaluation.metrics import EvaluationReport, calibration, report_from_codes
    from fer_core.figures.compare import answer_calibration_frame, answer_calibration_words

    rng = np.random.default_rng(12)
    n = 3000
    truth = rng.integers(0, 3, n)
    pred = np.where(rng.uniform(size=n) < 0.7, truth, rng.integers(0, 3, n))
    pred[:30] = -1  # no face
    pred[30:60] = 3  # an emotion not scored (a seven-emotion model's fear)
    right = truth == pred
    # happy answers (1) said at 0.9, right as often as the others; sad ones (2) at 0.5
    confidence = np.where(pred == 1, 0.9, np.where(pred == 2, 0.5, right.mean() + 0.02)).astype(float)
    classes = ["angry", "happy", "sad"]
    report = report_from_codes(truth, pred, classes, confidence=confidence)
    by_answer = report.calibration_by_answer
    assert list(by_answer) == classes
    assert by_answer["happy"].direction == "over" and by_answer["sad"].direction == "under"
    for i, emotion in enumerate(classes):
        mine = pred == i
        alone = calibration(confidence[mine], right[mine])
        family = calibration(confidence[mine], right[mine], family=3)
        assert by_answer[emotion] == family and by_answer[emotion].accuracy == pytest.approx(
            report.per_class[emotion].precision, abs=1e-6)
        widths = [c.gap_ci95[1] - c.gap_ci95[0] for c in (alone, family)]
        z = NormalDist().inv_cdf(1 - 0.05 / 6) / NormalDist().inv_cdf(0.975)
        assert widths[1] == pytest.approx(widths[0] * z, rel=1e-3) and family.chance_ece >= alone.chance_ece
    assert sum(c.n for c in by_answer.values()) == n - 60
    assert EvaluationReport.from_dict(report.to_dict()).calibration_by_answer == by_answer
    assert report_from_codes(truth, pred, classes).calibration_by_answer == {}  # no probabilities: none
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(n)], "label": [classes[t] for t in truth],
                          "m": [classes[p] if 0 <= p < 3 else None for p in pred]})
    proba = np.full((n, 3), np.nan)
    for row, (p, c) in enumerate(zip(pred, confidence)):
        if 0 <= p < 3:
            proba[row] = (1 - c) / 2
            proba[row, p] = c
    comparison = Comparison.from_table(table, ["m"], classes, probabilities={"m": proba},
                                       model_classes={"m": tuple(classes)})
    frame = answer_calibration_frame(comparison)
    assert list(frame["emotion_answered"]) == classes and list(frame["reading"])[1:] == ["over", "under"]
    with using_language("en"):
        line, = answer_calibration_words(frame)
    assert line.startswith("**m**: overconfident when it answers happy (+") and "underconfident when it answers sad (-" in line


def test_log_loss_and_brier_score_are_scikit_learns_over_the_answers_given():
    """The proper scoring rules of a comparison's probabilities: the log loss is scikit-learn's
    over the faces judged whose true emotion the model can answer, the Brier score the mean squared
    distance from the true emotion's one-hot vector; a face not found is left out of both."""
    from sklearn.metrics import log_loss

    labels = ["happy", "happy", "sad", "sad", "angry"]
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(5)], "label": labels,
                          "m": ["happy", "sad", "sad", None, "happy"]})
    proba = np.array([[0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [np.nan] * 3, [0.0, 1.0, 0.0]])
    report = Comparison.from_table(table, ["m"], ["angry", "happy", "sad"], probabilities={"m": proba},
                                   model_classes={"m": ("angry", "happy", "sad")}).reports["m"]
    judged = [0, 1, 2, 4]
    truth = [1, 1, 2, 0]
    assert report.log_loss == pytest.approx(log_loss(truth, np.clip(proba[judged], 1e-15, 1), labels=[0, 1, 2]), abs=1e-6)
    brier = np.mean([((proba[i] - np.eye(3)[t]) ** 2).sum() for i, t in zip(judged, truth)])
    assert report.brier == pytest.approx(brier, abs=1e-6)
    assert report.log_loss > 7, "a probability of 0 for the true emotion costs ln(1e15), not infinity"
