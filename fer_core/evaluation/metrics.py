"""Scores on a labelled test set: accuracy (with a Wilson score interval), macro-F1, per-emotion
accuracy, the confusion matrix, and McNemar's test between two models on the same images (with
Holm's correction when several pairs are tested at once).

Faces a model could not judge (no face measured: prediction None) count as wrong. The counting
is scikit-learn's; the interval and the exact McNemar test are scipy's binomial test, imported
when a score is computed (not with this module, which the dashboard's first prediction loads).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from ..errors import FerError

CONFIDENCE_BINS = 10  # equal-width bins of confidence (Guo et al. 2017 reported theirs with 15)
CHANCE_DRAWS = 1000  # simulated calibrated models, for the error chance alone gives at these numbers


@dataclass(frozen=True)
class ConfidenceBin:
    """The faces a model answered with a confidence in [low, high): how many, how sure on average,
    how often right."""

    low: float
    high: float
    n: int
    mean_confidence: float
    accuracy: float
    accuracy_ci95: tuple[float, float] | None = None  # Wilson's, of the share right

    def __post_init__(self) -> None:  # read back from JSON as a list
        if self.accuracy_ci95 is not None:
            object.__setattr__(self, "accuracy_ci95", tuple(self.accuracy_ci95))

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "n": self.n, "mean_confidence": self.mean_confidence,
                "accuracy": self.accuracy,
                "accuracy_ci95": None if self.accuracy_ci95 is None else list(self.accuracy_ci95)}


@dataclass(frozen=True)
class Calibration:
    """How sure a model said it was (its highest probability, the "98 %" a face is shown with)
    against how often it was right, on the faces it judged: a model right on 70 % that says 90 % on
    average overstates itself, and its percentages should not be read as chances.

    ``ece`` is the expected calibration error: the gap between confidence and accuracy in each of
    ten equal-width bins of confidence, weighted by the faces in the bin (Guo et al. 2017, "On
    calibration of modern neural networks", who used 15 bins: their figures are not these). With
    few faces per bin it is noisy and biased upwards: ``chance_ece`` is what a perfectly calibrated
    model answering as sure, as often, stays under in 95 of 100 test sets (60 faces: about 0.16-0.18), so
    a smaller ``ece`` says nothing against the model. ``gap`` (mean confidence minus accuracy) says
    which way, above 0 overconfident, and ``gap_ci95`` whether that could be chance (against the
    spread a calibrated model's accuracy would have); each model's reading is its own, not adjusted
    for the number of models compared."""

    n: int  # faces judged (a face not found is no answer, and has no confidence)
    mean_confidence: float
    accuracy: float  # of the answers given: not the report's accuracy, which counts no face as wrong
    ece: float
    bins: tuple[ConfidenceBin, ...] = ()
    chance_ece: float | None = None
    gap_ci95: tuple[float, float] | None = None

    @property
    def gap(self) -> float:
        return round(self.mean_confidence - self.accuracy, DECIMALS)

    @property
    def direction(self) -> str:
        """"over" or "under" where the gap's interval leaves out 0; else "mixed" where the error is
        beyond its chance level all the same (over in some bins, under in others, or a gap too
        uncertain to name its direction); else "even": calibrated as far as these answers can tell."""
        if self.gap_ci95 is not None:
            low, high = self.gap_ci95
            if low > 0:
                return "over"
            if high < 0:
                return "under"
        return "mixed" if self.chance_ece is not None and self.ece > self.chance_ece else "even"

    def to_dict(self) -> dict:
        return {"n": self.n, "mean_confidence": self.mean_confidence, "accuracy": self.accuracy,
                "ece": self.ece, "chance_ece": self.chance_ece, "gap": self.gap,
                "gap_ci95": None if self.gap_ci95 is None else list(self.gap_ci95), "direction": self.direction,
                "bins": [b.to_dict() for b in self.bins]}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        gap = d.get("gap_ci95")
        return cls(n=int(d["n"]), mean_confidence=float(d["mean_confidence"]), accuracy=float(d["accuracy"]),
                   ece=float(d["ece"]), bins=tuple(ConfidenceBin(**b) for b in d.get("bins") or ()),
                   chance_ece=None if d.get("chance_ece") is None else float(d["chance_ece"]),
                   gap_ci95=None if not gap else (float(gap[0]), float(gap[1])))


def calibration(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                bins: int = CONFIDENCE_BINS, family: int = 1) -> Calibration | None:
    """``Calibration`` of answers given with ``confidence`` (each answer's highest probability; NaN
    where no face was judged, left out) that were ``correct`` or not; None without an answer.
    ``family``: how many such readings are made at once (one per emotion answered): the gap's
    interval and the chance level are then Bonferroni's, 95 % for all of them together, so that six
    emotions read one by one do not find one off by chance one time in four."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError("confidence and correct differ in length")
    judged = np.isfinite(confidence)
    confidence, correct = np.clip(confidence[judged], 0.0, 1.0), correct[judged]
    n = int(confidence.size)
    if not n:
        return None
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)  # a confidence of 1 in the last bin
    counts = np.bincount(which, minlength=bins)
    confidence_sums = np.bincount(which, weights=confidence, minlength=bins)
    right = np.bincount(which, weights=correct.astype(float), minlength=bins)
    shown = [ConfidenceBin(round(b / bins, DECIMALS), round((b + 1) / bins, DECIMALS), int(counts[b]),
                           round(float(confidence_sums[b] / counts[b]), DECIMALS), round(float(right[b] / counts[b]), DECIMALS),
                           tuple(round(v, DECIMALS) for v in wilson_counts(int(round(right[b])), int(counts[b]))))
             for b in range(bins) if counts[b]]
    ece = float(np.abs(right - confidence_sums).sum() / n)  # sum over bins of n_b/n * |acc_b - conf_b|
    # A calibrated model is right on each answer with its confidence: its right answers per bin drawn
    # as a binomial of the bin's size and mean confidence (the sum of the bin's Bernoulli draws, to a
    # slightly wider spread), its ECE the 95th percentile of a thousand such test sets.
    means = np.divide(confidence_sums, counts, out=np.zeros(bins), where=counts > 0)
    drawn = np.random.default_rng(0).binomial(counts, means, size=(CHANCE_DRAWS, bins))
    alpha = 0.05 / max(1, family)
    chance = float(np.quantile(np.abs(drawn - confidence_sums).sum(axis=1) / n, 1 - alpha))
    # The gap, mean confidence minus the share right, against the spread a calibrated model's share
    # right would have (each answer right with its confidence: variance sum c(1 - c) / n^2), the score
    # test of calibration in the large: the answers' own spread collapsed where all were right
    # (five right at 0.7 read "underconfident" for certain).
    gap = float(confidence.mean() - correct.mean())
    half = NormalDist().inv_cdf(1 - alpha / 2) * float(np.sqrt(np.sum(confidence * (1 - confidence)))) / n
    gap_ci95 = (round(gap - half, DECIMALS), round(gap + half, DECIMALS))
    return Calibration(n=n, mean_confidence=round(float(confidence.mean()), DECIMALS),
                       accuracy=round(float(correct.mean()), DECIMALS), ece=round(ece, DECIMALS), bins=tuple(shown),
                       chance_ece=round(chance, DECIMALS), gap_ci95=gap_ci95)


@dataclass(frozen=True)
class ClassScore:
    n: int
    accuracy: float | None  # recall; None when the class has no images
    # None, not 0, where undefined: precision when the emotion was never answered (a 0 would read
    # "every such answer was wrong"), F1 when it has no images (macro-F1 leaves it out too)
    precision: float | None = None
    f1: float | None = None

    def to_dict(self) -> dict:
        return {"n": self.n, "accuracy": self.accuracy, "precision": self.precision, "f1": self.f1}


@dataclass
class EvaluationReport:
    """One model on one labelled test set; ``to_dict()`` is the ``evaluate --json`` output.

    ``confusion[i][j]`` counts images of ``labels[i]`` predicted as ``labels[j]``; no-face images
    are in ``no_face_per_class`` and answers outside ``labels`` (a seven-emotion model's fear when
    six are scored) in ``other_per_class`` instead, so each row plus those two is the class size.
    ``skipped`` counts test images of emotions the model cannot predict (left out, by emotion).
    """

    model: str
    n: int
    no_face: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    macro_f1: float
    per_class: dict[str, ClassScore]
    labels: list[str]
    confusion: list[list[int]]
    no_face_per_class: list[int]
    skipped: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)  # rows not scored, by reason (bad AU values)
    other_per_class: list[int] = field(default_factory=list)  # answered an emotion not in ``labels``
    # Cohen's kappa of the answers with the labels (no face an answer of its own): agreement beyond
    # chance, as human raters' agreement is given; None where it is undefined (one category only)
    kappa: float | None = None
    kappa_ci95: tuple[float, float] | None = None  # ``kappa_interval``'s
    # how sure the model said it was against how often it was right, where it had probabilities
    calibration: Calibration | None = None
    macro_f1_ci95: tuple[float, float] | None = None  # ``macro_f1_interval``'s
    # proper scoring rules of the probabilities (``scoring_rows``), over the answers whose true emotion
    # the model can answer: the mean log loss (-ln p of the true emotion) and multi-class Brier score
    log_loss: float | None = None
    brier: float | None = None
    # ``calibration_by_answer``'s: per emotion answered, how sure against how often right (Bonferroni)
    calibration_by_answer: dict[str, Calibration] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "model": self.model, "n": self.n, "no_face": self.no_face, "accuracy": self.accuracy,
            "accuracy_ci95": list(self.accuracy_ci95), "macro_f1": self.macro_f1,
            "macro_f1_ci95": None if self.macro_f1_ci95 is None else list(self.macro_f1_ci95),
            "per_class": {c: s.to_dict() for c, s in self.per_class.items()},
            "labels": list(self.labels), "confusion": [list(r) for r in self.confusion],
            "no_face_per_class": list(self.no_face_per_class),
            # always there, empty where nothing was: a script reads d["skipped"] without a KeyError
            "other_per_class": list(self.other_per_class) or [0] * len(self.labels),
            "skipped": dict(self.skipped), "left_out": dict(self.left_out), "kappa": self.kappa,
            "kappa_ci95": None if self.kappa_ci95 is None else list(self.kappa_ci95),
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "log_loss": self.log_loss, "brier": self.brier,
            "calibration_by_answer": {e: c.to_dict() for e, c in self.calibration_by_answer.items()},
        }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "EvaluationReport":
        """Also reads the subsets stored in model files (missing fields get neutral values)."""
        labels = list(d.get("labels") or d.get("per_class", {}).keys())
        return cls(
            model=d.get("model", ""), n=int(d.get("n", 0)), no_face=int(d.get("no_face", 0)),
            accuracy=float(d.get("accuracy", 0.0)),
            accuracy_ci95=tuple(d.get("accuracy_ci95") or (float("nan"), float("nan"))),
            macro_f1=float(d.get("macro_f1", 0.0)),
            per_class={c: ClassScore(int(v.get("n", 0)), v.get("accuracy"), v.get("precision"), v.get("f1"))
                       for c, v in (d.get("per_class") or {}).items()},
            labels=labels, confusion=d.get("confusion") or [[0] * len(labels) for _ in labels],
            no_face_per_class=d.get("no_face_per_class") or [0] * len(labels),
            skipped=dict(d.get("skipped") or {}), left_out=dict(d.get("left_out") or {}),
            other_per_class=d.get("other_per_class") or [0] * len(labels),
            kappa=None if d.get("kappa") is None else float(d["kappa"]),
            kappa_ci95=None if not d.get("kappa_ci95") else (float(d["kappa_ci95"][0]), float(d["kappa_ci95"][1])),
            calibration=Calibration.from_dict(d["calibration"]) if d.get("calibration") else None,
            macro_f1_ci95=None if not d.get("macro_f1_ci95") else (float(d["macro_f1_ci95"][0]),
                                                                    float(d["macro_f1_ci95"][1])),
            log_loss=None if d.get("log_loss") is None else float(d["log_loss"]),
            brier=None if d.get("brier") is None else float(d["brier"]),
            calibration_by_answer={e: Calibration.from_dict(c)
                                   for e, c in (d.get("calibration_by_answer") or {}).items()})

    def predicts_one_class(self, share: float = 0.9) -> str | None:
        """The emotion this model gives to at least ``share`` of the images it judged, if any: a
        collapsed model, whatever its accuracy."""
        totals = np.asarray(self.confusion, dtype=float).sum(axis=0)
        if totals.sum() == 0:
            return None
        j = int(totals.argmax())
        return self.labels[j] if totals[j] / totals.sum() >= share else None


# Scores are kept to 6 decimals: shown to 3 (0.557) or as a percentage to 1 (55.7 %), a score kept
# to 4 was rounded twice (3,215 of 5,767 is 0.557482, kept 0.5575, shown 0.558 and 55.8 %)
DECIMALS = 6

COLLAPSE_SHARE = 0.8
NEVER_MIN_IMAGES = 5  # an emotion never answered counts against a model from this many of its test images  # one emotion given to this share of the images: a model that has not learned


def degenerate_model_warning(report: EvaluationReport, share: float = COLLAPSE_SHARE, advice: bool | str = True
                             ) -> str | None:
    """One line, in the reader's language, when the scores say the model has not learned to tell
    the emotions apart: it gives one emotion to at least ``share`` of the images it judged, its
    accuracy is no better than guessing (1/k for the k emotions the test images show), or it never
    answers some emotion the test images show (a small table's MLP never said fear, sad or surprise). A training
    page shows it next to the save button, so such a model is not kept without a word; None when
    the model looks healthy (or there is nothing to judge). ``advice``: end with how to train a
    better one (not where a saved model is only scored); "au": as an AU model is made better (more
    faces of the emotions it misses), not a network (train longer)."""
    from ..i18n import emotion_label, t

    present = sum(1 for s in report.per_class.values() if s.n > 0) or len(report.labels)
    if report.n == 0 or present < 2:
        return None
    parts = []
    collapsed = report.predicts_one_class(share)
    if collapsed:
        totals = np.asarray(report.confusion, dtype=float).sum(axis=0)
        parts.append(t("model_check.one_class", emotion=emotion_label(collapsed),
                       share=f"{totals.max() / totals.sum():.0%}"))
    chance = 1.0 / present
    if round(report.accuracy, 4) <= round(chance, 4):  # older reports kept 4 decimals: 1/6 is 0.1667
        parts.append(t("model_check.below_chance", accuracy=share_text(report.accuracy, 1, percent=True),
                       chance=share_text(chance, 1, percent=True),
                       k=present))
    # a collapsed model says it already; an emotion of a few images may go unanswered by chance
    if not collapsed and (never := [e for e in never_answered(report) if report.per_class[e].n >= NEVER_MIN_IMAGES]):
        from ..i18n import emotion_labels

        parts.append(t("model_check.never_answers", emotions=", ".join(emotion_labels(never))))
    said = [t("model_check.advice_au" if advice == "au" else "model_check.advice")] if advice else []
    return " ".join(parts + said) if parts else None


def never_answered(report: EvaluationReport, can_answer: Sequence[str] | None = None) -> list[str]:
    """The emotions the test images show that the model never answered (among ``can_answer``, the
    emotions it predicts, when given): au-logreg-fer2013 never says disgust on FER2013 val."""
    answered = np.asarray(report.confusion, dtype=float).reshape(len(report.labels), -1).sum(axis=0)
    return [e for e, k in zip(report.labels, answered) if k == 0 and report.per_class.get(e) is not None
            and report.per_class[e].n > 0 and (can_answer is None or e in can_answer)]


def evaluation_report(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str],
                      model: str = "", confidence: Sequence[float] | np.ndarray | None = None,
                      scores: tuple[np.ndarray, np.ndarray] | None = None) -> EvaluationReport:
    """Score predictions (None = no face, counted wrong) against the true labels.

    Labels are turned into integer codes first (``report_from_codes``); emotion names are read as
    people write them ("Happy", "happiness"), in the labels and in ``classes``, and the report names
    them as this project does ("happy"); two classes naming one emotion are refused. A true label that
    is not among ``classes`` counts in ``n`` (right only when answered with the same label) and in
    no confusion cell: leave such rows out first to score only ``classes``."""
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    names = [_emotion(c) for c in classes]  # the report names them so too ("Happy" -> "happy")
    if len(set(names)) < len(names):
        raise FerError(f"classes {', '.join(map(str, classes))} name an emotion twice; give each once")
    truth, pred = _codes(y_true, y_pred, names)
    return report_from_codes(truth, pred, names, model=model, confidence=confidence, scores=scores)


def per_video_report(videos: np.ndarray, truth: np.ndarray, proba: np.ndarray, classes: Sequence[str],
                     model: str = "") -> EvaluationReport:
    """Each video scored once from its frames: its answer the emotion of the highest mean
    probability over its frames with a face (rows of NaN: none; no face in any frame: no answer),
    its label its frames' commonest (``truth``: codes into ``classes``)."""
    import pandas as pd

    k = len(classes)
    frames = pd.DataFrame(np.asarray(proba, dtype=float).reshape(len(videos), k), columns=range(k))
    frames["video"], frames["truth"] = videos, truth
    by_video = frames.groupby("video", sort=False)
    answers = by_video[list(range(k))].mean().to_numpy()  # NaN frames are not counted
    unjudged = np.isnan(answers).all(axis=1)
    codes = np.where(unjudged, -1, np.nan_to_num(answers, nan=-np.inf).argmax(axis=1))
    confidence = np.where(unjudged, np.nan, np.nan_to_num(answers, nan=-np.inf).max(axis=1))
    return report_from_codes(by_video["truth"].agg(lambda c: c.mode().iloc[0]).to_numpy(dtype=np.int64),
                             codes.astype(np.int64), classes, model=model, confidence=confidence)


LOG_LOSS_FLOOR = 1e-15  # a probability of 0 for the true emotion: a loss of 34.5, not infinity (scikit-learn's clip)

def calibration_by_answer(confidence: np.ndarray, correct: np.ndarray, pred: np.ndarray,
                          classes: Sequence[str]) -> dict[str, Calibration]:
    """``Calibration`` of the answers of each emotion (``pred``: codes into ``classes``, -1 no face,
    ``len(classes)`` and above an emotion not scored, left out): when the model says sad, how sure
    it says it is against how often sad is right (the emotion's precision). A model calibrated
    overall can overstate one emotion and understate another; the Try it reader sees the percentage
    beside one answer. The readings are one family: Bonferroni over the emotions answered."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct, pred = np.asarray(correct, dtype=bool), np.asarray(pred, dtype=np.int64)
    answered = [i for i in range(len(classes)) if np.any((pred == i) & np.isfinite(confidence))]
    out = {}
    for i in answered:
        rows = pred == i
        found = calibration(confidence[rows], correct[rows], family=len(answered))
        if found is not None:
            out[classes[i]] = found
    return out


def scoring_rows(proba: np.ndarray, truth_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each answer's log loss (-ln of its probability for the true emotion) and Brier score (the
    squared distance of its probabilities from the true emotion's one-hot vector), NaN where the
    face was not judged or the true emotion is none the model can answer (``truth_index`` -1)."""
    p = np.asarray(proba, dtype=np.float64)
    truth_index = np.asarray(truth_index, dtype=np.int64)
    n = len(p)
    usable = (truth_index >= 0) & ~np.isnan(p).any(axis=1) if n else np.zeros(0, dtype=bool)
    nll, brier = np.full(n, np.nan), np.full(n, np.nan)
    if usable.any():
        q, t = p[usable], truth_index[usable]
        rows = np.arange(len(q))
        nll[usable] = -np.log(np.clip(q[rows, t], LOG_LOSS_FLOOR, 1.0))
        target = np.zeros_like(q)
        target[rows, t] = 1.0
        brier[usable] = ((q - target) ** 2).sum(axis=1)
    return nll, brier


def report_from_codes(truth: np.ndarray, pred: np.ndarray, classes: Sequence[str],
                      model: str = "", confidence: np.ndarray | None = None,
                      scores: tuple[np.ndarray, np.ndarray] | None = None) -> EvaluationReport:
    """``evaluation_report`` of integer codes: ``classes`` are 0..k-1, other labels k and above
    (the same code for the same label in both arrays), no prediction -1. A million predictions cost
    megabytes, not the Python strings of a label list; the counting is scikit-learn's.
    ``confidence``: each answer's highest probability, for the report's ``calibration``;
    ``scores``: ``scoring_rows``, for its log loss and Brier score."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix, f1_score, precision_recall_fscore_support

    classes = list(classes)
    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if truth.shape != pred.shape:
        raise ValueError("truth and predictions differ in length")
    n, k = len(truth), len(classes)
    correct = (truth == pred) & (pred >= 0)
    in_classes = (truth >= 0) & (truth < k)
    sizes = np.bincount(truth[in_classes], minlength=k)
    if n:
        labels = list(range(k))
        with warnings.catch_warnings():  # one emotion scored is a choice, and labels= gives the shape
            warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
            confusion = confusion_matrix(truth, pred, labels=labels)
        precision, recall, f1, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=None,
                                                                   zero_division=0)
        # Macro-F1 over the emotions the test images show: the same figure for the same model on
        # the same images whether scored alone (``evaluate``, the model's emotions) or in a
        # comparison (the test set's emotions). An answer of an emotion not tested is wrong in the
        # recall of the emotion shown; its own F1 (0) lowered evaluate's mean and not compare's.
        scored = [i for i in labels if sizes[i]]
        macro_f1 = float(f1_score(truth, pred, labels=scored, average="macro", zero_division=0)) if scored else 0.0
        macro_f1_ci95 = macro_f1_interval(truth, pred, k, scored)
    else:
        macro_f1_ci95 = None
        confusion, macro_f1 = np.zeros((k, k), dtype=int), 0.0
        precision = recall = f1 = np.zeros(k)
    answered = np.bincount(pred[(pred >= 0) & (pred < k)], minlength=k)
    no_face_per_class = np.bincount(truth[in_classes & (pred == -1)], minlength=k)
    other_per_class = np.bincount(truth[in_classes & (pred >= k)], minlength=k)
    lo, hi = wilson_ci(correct)
    kappa = kappa_ci95 = None
    if n and len(np.union1d(truth, pred)) > 1:  # one category in both: agreement beyond chance is undefined
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(cohen_kappa_score(truth, pred))
        kappa = round(value, DECIMALS) if np.isfinite(value) else None
        categories, codes = np.unique(np.concatenate([truth, pred]), return_inverse=True)
        m = len(categories)
        table = np.bincount(codes[:n] * m + codes[n:], minlength=m * m).reshape(m, m)
        interval = kappa_interval(table) if kappa is not None else None
        kappa_ci95 = None if interval is None else (round(interval[0], DECIMALS), round(interval[1], DECIMALS))
    return EvaluationReport(
        model=model, n=n, no_face=int(np.count_nonzero(pred == -1)),
        accuracy=round(float(correct.mean()) if n else 0.0, DECIMALS),
        accuracy_ci95=(round(lo, DECIMALS), round(hi, DECIMALS)),
        macro_f1=round(macro_f1, DECIMALS),
        macro_f1_ci95=None if macro_f1_ci95 is None else tuple(round(v, DECIMALS) for v in macro_f1_ci95),
        per_class={c: ClassScore(int(sizes[i]), round(float(recall[i]), DECIMALS) if sizes[i] else None,
                                 precision=round(float(precision[i]), DECIMALS) if answered[i] else None,
                                 f1=round(float(f1[i]), DECIMALS) if sizes[i] else None)
                   for i, c in enumerate(classes)},
        labels=classes, confusion=confusion.astype(int).tolist(),
        no_face_per_class=[int(v) for v in no_face_per_class],
        other_per_class=[int(v) for v in other_per_class], kappa=kappa, kappa_ci95=kappa_ci95,
        calibration=None if confidence is None else calibration(
            np.where(pred >= 0, np.asarray(confidence, dtype=float), np.nan), correct),
        log_loss=_mean_of(scores[0]) if scores is not None else None,
        brier=_mean_of(scores[1]) if scores is not None else None,
        calibration_by_answer={} if confidence is None else calibration_by_answer(
            np.where(pred >= 0, np.asarray(confidence, dtype=float), np.nan), correct, pred, classes))


def _mean_of(rows: np.ndarray) -> float | None:
    """The mean of the finite rows (answers scored), rounded as scores are kept; None without one."""
    rows = np.asarray(rows, dtype=np.float64)
    finite = rows[np.isfinite(rows)]
    return round(float(finite.mean()), DECIMALS) if finite.size else None


MACRO_F1_RESAMPLES = 2000


def macro_f1_interval(truth: np.ndarray, pred: np.ndarray, k: int, scored: Sequence[int],
                      level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of macro-F1 over the emotions ``scored`` (codes as
    ``report_from_codes`` takes them): macro-F1 has no closed-form interval as accuracy (Wilson)
    and kappa do. The images of each true emotion are resampled within it (stratified: a test set
    of 10 per emotion keeps 10 per emotion, and no emotion drops out of a resample), drawn as
    multinomial counts over its row of the confusion table (the same distribution as drawing its
    images with replacement, at a cost that does not grow with the number of images: 450,000 rows
    took 23 s the other way), 2,000 times with a fixed seed, so the same answers give the same
    interval. None for fewer than two images, no emotion scored, or resamples that cannot differ.
    Where only some emotions' answers are all alike, those do not vary and the interval is narrower
    than it should be: small test sets' intervals are optimistic."""
    n = len(truth)
    if n < 2 or not len(scored):
        return None
    m = k + 2  # the scored emotions, then "another label" (k) and "no answer" (k + 1)
    rows = np.where(truth < 0, k, np.minimum(truth, k))  # a label missing or not scored: "another label"
    cells = rows * m + np.where(pred < 0, k + 1, np.minimum(pred, k))
    observed = np.bincount(cells, minlength=m * m).reshape(m, m)
    # stratified by the true emotion: each emotion keeps its images (a set of 10 per emotion stays so),
    # only their answers are redrawn
    rng = np.random.default_rng(0)
    draws = np.zeros((MACRO_F1_RESAMPLES, m, m), dtype=np.int64)
    for row in range(m):
        size = int(observed[row].sum())
        if size:
            draws[:, row, :] = rng.multinomial(size, observed[row] / size, size=MACRO_F1_RESAMPLES)
    scored = np.asarray(scored, dtype=np.int64)
    tp = draws[:, scored, scored]
    fp = draws[:, :, scored].sum(axis=1) - tp
    fn = draws[:, scored, :].sum(axis=2) - tp
    both = 2 * tp + fp + fn
    macro = np.where(both > 0, 2 * tp / np.maximum(both, 1), 0.0).mean(axis=1)  # zero_division=0, as sklearn's
    if np.ptp(macro) == 0:  # every emotion's answers all alike (a few images each): resampling cannot
        return None         # vary them, and a point is no interval (9 images read "0.700-0.700")
    alpha = (1 - level) / 2
    low, high = np.quantile(macro, [alpha, 1 - alpha])
    return float(low), float(high)


def kappa_interval(table: np.ndarray, z: float = 1.959964) -> tuple[float, float] | None:
    """95 % interval of Cohen's kappa from its square table of counts (rows the labels, columns the
    answers, the same categories in the same order), by the large-sample standard error of Fleiss,
    Cohen & Everitt (1969), as SAS's PROC FREQ gives it, clipped to [-1, 1]; None where kappa is
    undefined. At n = 60 a kappa of 0.6 spans about 0.45 to 0.75: without it, two models' kappas read
    as different where they are not."""
    p = np.asarray(table, dtype=float)
    n = p.sum()
    if n < 2:
        return None
    p = p / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    agreement, chance = float(np.trace(p)), float(rows @ cols)
    if chance >= 1:
        return None
    kappa = (agreement - chance) / (1 - chance)
    on = float(np.sum(np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2))
    off = p * (cols[:, None] + rows[None, :]) ** 2  # cell (i, j): p_ij (p_.i + p_j.)^2
    off = (1 - kappa) ** 2 * float(off.sum() - np.trace(off))
    variance = (on + off - (kappa - chance * (1 - kappa)) ** 2) / (n * (1 - chance) ** 2)
    if not variance > 1e-12:  # perfect agreement, or one answer throughout: no width to give, not an exact value
        return None
    half = z * float(np.sqrt(variance))
    return max(-1.0, kappa - half) + 0.0, min(1.0, kappa + half) + 0.0


def _codes(y_true: Sequence[str], y_pred: Sequence[str | None], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of both label sequences: ``classes`` 0..k-1, other labels k, k+1, ... (shared
    between the two), no prediction (None) -1."""
    import pandas as pd

    both = np.empty(len(y_true) + len(y_pred), dtype=object)
    both[:len(y_true)], both[len(y_true):] = list(y_true), list(y_pred)
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    index = {c: i for i, c in enumerate(classes)}
    names = [_emotion(u if isinstance(u, str) else str(u)) for u in uniques]
    for name in names:
        index.setdefault(name, len(index))
    remap = np.array([index[name] for name in names] + [-1], dtype=np.int64)
    codes = remap[codes]
    return codes[:len(y_true)], codes[len(y_true):]


def _emotion(label: str) -> str:
    from ..emotions import normalize_emotion

    return normalize_emotion(label) or label


def wilson_ci(correct: Sequence[bool] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the share of right answers (scipy's).

    Not a percentile bootstrap: that collapses to a point when every answer is right or every one
    wrong (10 of 10 read 100–100 %) and is too narrow near the ends (59 of 60: 95–100 %); Wilson's
    stays honest there (10 of 10: 72–100 %) and needs no resampling at any test-set size.
    """
    return wilson_counts(int(np.count_nonzero(np.asarray(correct))), int(np.size(correct)), level)


def wilson_counts(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """``wilson_ci`` of ``k`` right answers out of ``n`` (e.g. a confusion matrix's diagonal cell
    and its row: one emotion's recall); (0, 0) when there is nothing to count."""
    from scipy.stats import binomtest  # ~0.25 s: paid when something is scored, not on import

    if n == 0:
        return (0.0, 0.0)
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class McNemarResult:
    a: str
    b: str
    only_a_correct: int
    only_b_correct: int
    p_value: float
    p_holm: float | None = None  # adjusted for the other pairs of its comparison (``holm_adjusted``)
    # accuracy of A minus accuracy of B on the same images, with its 95 % interval
    # (``paired_difference_ci``): how large the difference may be, which a p-value does not say
    difference: float | None = None
    difference_ci95: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        out = {"a": self.a, "b": self.b, "only_a_correct": self.only_a_correct,
               "only_b_correct": self.only_b_correct, "p_value": self.p_value}
        if self.p_holm is not None:
            out["p_holm"] = self.p_holm
        if self.difference is not None:
            out["accuracy_difference"] = self.difference
            out["accuracy_difference_ci95"] = list(self.difference_ci95)
        return out


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], a: str = "a", b: str = "b") -> McNemarResult:
    """Exact McNemar test on paired right/wrong outcomes: a two-sided binomial test on the images
    where exactly one of the two models is right."""
    from scipy.stats import binomtest

    ca = np.asarray(correct_a, dtype=bool)
    cb = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(ca & ~cb))
    only_b = int(np.sum(~ca & cb))
    both = int(np.sum(ca & cb))
    m = only_a + only_b
    p = 1.0 if m == 0 else float(binomtest(only_a, m, 0.5).pvalue)
    difference, ci = None, None
    if ca.size:
        lo, hi = paired_difference_ci(both, only_a, only_b, ca.size - both - m)
        difference, ci = round((only_a - only_b) / ca.size, DECIMALS), (round(lo, DECIMALS), round(hi, DECIMALS))
    return McNemarResult(a, b, only_a, only_b, min(1.0, p), difference=difference,  # p unrounded: 1e-12 is not 0
                         difference_ci95=ci)


def paired_difference_ci(both: int, only_a: int, only_b: int, neither: int,
                         level: float = 0.95) -> tuple[float, float]:
    """Interval of accuracy(A) - accuracy(B) when both models answered the same images: Newcombe's
    (1998, Statistics in Medicine 17:2635, method 10) square-and-add of the two Wilson intervals,
    corrected for how the two models' right answers go together (phi of the 2x2 table), as
    Fagerland, Lydersen and Laake recommend for paired proportions.

    Not the Wald interval (it leaves [-1, 1] and collapses to a point when the models agree on
    every image) and not a bootstrap (no resampling, the same numbers on every run).
    """
    n = both + only_a + only_b + neither
    if n == 0:
        return (0.0, 0.0)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson_counts(both + only_a, n, level)
    l2, u2 = wilson_counts(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    # phi with Newcombe's continuity correction: a positive association counts less n/2 (without
    # it two models agreeing on every image would get a zero-width interval)
    association = both * neither - only_a * only_b
    association = association - n / 2 if association > n / 2 else min(association, 0)
    phi = association / np.sqrt(float(margins)) if margins else 0.0
    difference = p1 - p2
    below = np.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    above = np.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return float(max(-1.0, difference - below)), float(min(1.0, difference + above))


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given.

    k models make k(k-1)/2 pairwise tests; read each at 0.05 and some pair comes out "better" by
    chance alone. An adjusted value below 0.05 keeps the chance of any false verdict among all the
    pairs at 5 %. (Sorted p times the tests not yet passed, then a running maximum, capped at 1.)
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return adjusted.tolist()


def share_text(value: float | None, digits: int = 3, percent: bool = False, points: bool = False,
               signed: bool = False) -> str:
    """A score as people read it, rounded half up from the decimal the reports keep (to ``DECIMALS``):
    the one rounding of the command line, the dashboard and the report. Python's own format rounds
    the binary number, and a score read 0.557 under ``models`` beside 55.8 % in the report.
    ``percent``: times 100 with "%"; ``points``: times 100 without it (percentage points, a
    difference); ``signed``: "+" before a number not below 0 (a difference)."""
    from decimal import ROUND_HALF_UP, Decimal

    if value is None or value != value:
        return "–"
    number = Decimal(repr(float(value))) * (100 if percent or points else 1)
    text = f"{number.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)}"
    if text.startswith("-") and not text.strip("-0."):  # -0.0004 shown to 3 decimals: 0.000, unsigned
        text = text[1:]
    return ("+" if signed and not text.startswith("-") else "") + text + ("%" if percent else "")


P_SHOWN_MIN = 1e-4  # four decimals: anything smaller would print as 0.0000


def p_text(p: float) -> str:
    """A p-value as people read it: four decimals, ``< 0.0001`` below that (not ``0.0000``, which
    reads as impossible); the CSVs and JSON keep the number itself."""
    if p is None or p != p:
        return "–"
    return f"< {P_SHOWN_MIN:.4f}" if p < P_SHOWN_MIN else f"{p:.4f}"


@dataclass(frozen=True)
class RaterAgreement:
    """Cohen's kappa between two columns of a labels sheet (two raters, or a rater and the
    majority), on the images both label with an emotion: what a model's kappa is read against."""

    a: str
    b: str
    kappa: float | None
    n: int

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "kappa": self.kappa, "n": self.n}


def rater_agreement(columns: dict[str, list[str | None]], least: int = 2) -> list[RaterAgreement]:
    """Every pair of ``columns`` (emotions per image, None where a column names none), on the
    images both name one; a pair with fewer than ``least`` such images is left out."""
    from itertools import combinations

    from sklearn.metrics import cohen_kappa_score

    out = []
    for a, b in combinations(columns, 2):
        both = [(x, y) for x, y in zip(columns[a], columns[b]) if x is not None and y is not None]
        if len(both) < least:
            continue
        xs, ys = zip(*both)
        kappa = None
        if len(set(xs) | set(ys)) > 1:  # one emotion throughout: agreement beyond chance is undefined
            with np.errstate(divide="ignore", invalid="ignore"):
                value = float(cohen_kappa_score(xs, ys))
            kappa = round(value, DECIMALS) if np.isfinite(value) else None
        out.append(RaterAgreement(a, b, kappa, len(both)))
    return out
