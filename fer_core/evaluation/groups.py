"""Whether the models are as accurate for one group of faces as for another (the poser's sex, age
band, the stimulus set they came from: a column of the labels sheet), by how much, with what
uncertainty, which emotions drive it, and whether the gap is the same for two models.

Groups compare on **emotion-balanced accuracy** (the mean of the emotions' recalls, each emotion
weighted alike, over the emotions both groups have): disgust is the hardest emotion, and a group
with more disgust images scores lower in plain accuracy however fair the model is (a review's
random split read as an 18-point gap between the sexes that way). Plain accuracy is given per
group beside it, with the groups' mixes of emotions.

Intervals are Wald's on the recalls' standard errors, each emotion's share right of a group taken
with one right and one wrong answer added (as Agresti & Caffo 2000 do) over its own number of
images, so an emotion with all its few images right still counts as uncertain (a bootstrap left it
fixed); the gap of two models between two groups is paired (same images), its discordant shares
adjusted as Bonett & Price (2012) do, over the images. With the plain Agresti-Caffo denominator
(n + 2) random groups of a few images per emotion read as different 16 % of the time at 5 %; these
hold 4-6 % (and 1-5 % for two models' gaps) from 4 to 50 images per emotion
(``bench/group_gaps_null.py``). Images of one person are not independent: with a column naming
who posed each (``clusters``), the standard errors are the larger of those and cluster-robust ones
(16-26 % false gaps on random groups of posers become 3-7 %), read with Student's t. p-values
are Holm-adjusted over every gap of one grouping column (each model, each pair of groups), and so
are the models' differences of gaps. Nothing is adjusted across grouping columns or across runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from statistics import NormalDist

import numpy as np

from ..errors import FerError
from .metrics import DECIMALS, holm_adjusted, wilson_counts

MISSING_VALUES = frozenset({"", "na", "n/a", "nan", "none", "null", "-", "?", "missing", "unknown",
                            "미상", "모름", "없음", "해당없음", "무응답", "결측"})
MAX_GROUPS = 10  # a column per participant is no grouping: its pairs would be hundreds of tests
SMALL_GROUP = 30  # fewer images than this: a group's accuracy is said to rest on few images
MIX_POINTS = 0.10  # an emotion's share differing by more than this between groups is said
Z95 = NormalDist().inv_cdf(0.975)


def _r(value: float) -> float:
    return round(float(value), DECIMALS)


def _interval(value: float, se: float, low: float = 0.0, high: float = 1.0,
              df: int | None = None) -> tuple[float, float]:
    """Wald's 95 % interval; ``df``: Student's t with that many degrees of freedom (clustered by
    person: the number of people less one), which a few dozen people need."""
    if df is not None:
        from scipy.stats import t as student

        z = float(student.ppf(0.975, max(df, 1)))
    else:
        z = Z95
    return _r(max(low, value - z * se)), _r(min(high, value + z * se))


def _p(value: float, se: float, df: int | None = None) -> float:
    if se <= 0:
        return 1.0
    if df is not None:
        from scipy.stats import t as student

        return float(2 * student.sf(abs(value) / se, max(df, 1)))
    return float(2 * (1 - NormalDist().cdf(abs(value) / se)))


def group_levels(values: Sequence[object]) -> tuple[list[str | None], dict[str, list[str]]]:
    """Each value as its group (None where missing: blank, NA, unknown), spellings that differ only
    in case or spaces merged under the commonest ("f", "F " and "F" are one group; "Female" and
    "F" stay two, which the listing of spellings shows), and each group's spellings."""
    raw = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else " ".join(str(v).split()) for v in values]
    spelled: dict[str, dict[str, int]] = {}
    for v in raw:
        if v.casefold() not in MISSING_VALUES:
            counts = spelled.setdefault(v.casefold(), {})
            counts[v] = counts.get(v, 0) + 1
    name = {key: max(counts, key=counts.__getitem__) for key, counts in spelled.items()}  # a tie: the first seen
    groups = [None if v.casefold() in MISSING_VALUES else name[v.casefold()] for v in raw]
    return groups, {name[key]: sorted(counts) for key, counts in spelled.items()}


@dataclass(frozen=True)
class GroupScore:
    """One model on one group's images: plain accuracy (Wilson interval), emotion-balanced accuracy
    (its interval), and each emotion's images and recall."""

    model: str
    group: str
    n: int
    accuracy: float
    accuracy_ci95: tuple[float, float]
    balanced_accuracy: float
    balanced_ci95: tuple[float, float]
    counts: dict[str, int]  # images per emotion in this group
    recall: dict[str, float]  # per emotion it has

    def to_dict(self) -> dict:
        return {"model": self.model, "group": self.group, "n": self.n, "accuracy": self.accuracy,
                "accuracy_ci95": list(self.accuracy_ci95), "balanced_accuracy": self.balanced_accuracy,
                "balanced_ci95": list(self.balanced_ci95), "counts": dict(self.counts), "recall": dict(self.recall)}


@dataclass(frozen=True)
class GroupGap:
    """Group ``a`` minus group ``b`` for one model: emotion-balanced accuracy over ``emotions``
    (those both have), its interval and p (Holm-adjusted over the column's gaps), and the plain
    accuracy gap, which mixes in the groups' different emotions."""

    model: str
    a: str
    b: str
    emotions: tuple[str, ...]
    gap: float
    ci95: tuple[float, float]
    p_value: float
    p_holm: float
    accuracy_gap: float
    # per emotion both have, group a's recall minus group b's: which emotions make the gap
    by_emotion: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "a": self.a, "b": self.b, "emotions": list(self.emotions), "gap": self.gap,
                "gap_ci95": list(self.ci95), "p_value": self.p_value, "p_holm": self.p_holm,
                "accuracy_gap": self.accuracy_gap, "by_emotion": dict(self.by_emotion)}


@dataclass(frozen=True)
class GapDifference:
    """Whether two models' gaps between groups ``a`` and ``b`` differ, on the same images:
    ``model_a``'s gap minus ``model_b``'s (emotion-balanced), its interval and p (Holm over the
    column's differences)."""

    a: str
    b: str
    model_a: str
    model_b: str
    difference: float
    ci95: tuple[float, float]
    p_value: float
    p_holm: float

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "model_a": self.model_a, "model_b": self.model_b,
                "difference": self.difference, "difference_ci95": list(self.ci95), "p_value": self.p_value,
                "p_holm": self.p_holm}


@dataclass
class GroupAnalysis:
    """Every model's accuracy per group of one column, the gaps between groups, and the models'
    differences of gaps."""

    column: str
    levels: dict[str, int]  # group -> images scored, largest first
    spellings: dict[str, list[str]]
    missing: int  # images scored whose group is blank or unknown: left out here
    scores: list[GroupScore]
    gaps: list[GroupGap]
    differences: list[GapDifference]
    unshared: list[tuple[str, str]] = field(default_factory=list)  # pairs of groups with no emotion in common
    clustered_by: str | None = None  # the column naming who posed each image, where given
    people: int = 0  # how many, among the images grouped

    @property
    def small(self) -> list[str]:
        return [g for g, n in self.levels.items() if n < SMALL_GROUP]

    @property
    def missing_emotions(self) -> dict[str, list[str]]:
        """Per group, the emotions scored that it has no image of (left out of its gaps)."""
        first = {s.group: s for s in self.scores}
        every = [e for s in first.values() for e in s.counts]
        scored = list(dict.fromkeys(every))
        return {g: [e for e in scored if not s.counts.get(e)] for g, s in first.items()
                if any(not s.counts.get(e) for e in scored)}

    def mix_difference(self) -> tuple[str, dict[str, float]] | None:
        """The emotion whose share of the images differs most between the groups, with each group's
        share, where it differs by more than ``MIX_POINTS``: plain accuracy mixes that in."""
        first = {s.group: s for s in self.scores}
        if len(first) < 2:
            return None
        emotions = list(dict.fromkeys(e for s in first.values() for e in s.counts))
        shares = {e: {g: s.counts.get(e, 0) / s.n for g, s in first.items() if s.n} for e in emotions}
        emotion = max(emotions, key=lambda e: max(shares[e].values()) - min(shares[e].values()))
        spread = max(shares[emotion].values()) - min(shares[emotion].values())
        return (emotion, {g: _r(v) for g, v in shares[emotion].items()}) if spread > MIX_POINTS else None

    def to_dict(self) -> dict:
        mix = self.mix_difference()
        return {"column": self.column, "groups": dict(self.levels), "spellings": dict(self.spellings),
                "missing": self.missing, "small_groups": self.small, "missing_emotions": self.missing_emotions,
                "mix_differs": None if mix is None else {"emotion": mix[0], "shares": mix[1]},
                "scores": [s.to_dict() for s in self.scores], "gaps": [g.to_dict() for g in self.gaps],
                "gap_differences": [d.to_dict() for d in self.differences],
                "not_compared": [list(pair) for pair in self.unshared],
                "clustered_by": self.clustered_by, "people": self.people or None,
                "method": {"compared_on": "emotion-balanced accuracy over the emotions both groups have",
                           "interval": "Wald, each emotion's recall with one right and one wrong answer added "
                                       "(Agresti-Caffo) over its images; paired for two models (Bonett-Price)",
                           "correction": "Holm over this column's gaps, and over its differences of gaps",
                           "images": ("clustered by " + self.clustered_by + ": the larger of the cluster-robust "
                                      "(sandwich) and the independent standard error, Student's t with the "
                                      "people less one degrees of freedom") if self.clustered_by
                           else "taken as independent: images of one person make the intervals too narrow"}}


def _cells(correct: np.ndarray, labels: np.ndarray, in_group: np.ndarray, emotions: Sequence[str]):
    """Per emotion of the group: its images, right answers and the adjusted variance of its recall."""
    out = {}
    for e in emotions:
        mine = in_group & (labels == e)
        n = int(mine.sum())
        if n:
            x = int(correct[mine].sum())
            adjusted = (x + 1) / (n + 2)
            out[e] = (n, x, adjusted * (1 - adjusted) / n)
    return out


def _paired_variance(first: np.ndarray, second: np.ndarray) -> float:
    """Bonett & Price's adjusted variance of the difference of two models' shares right on the same
    images (right by the first only, by the second only)."""
    n = len(first)
    only_first = (int(np.sum(first & ~second)) + 0.5) / (n + 2)
    only_second = (int(np.sum(~first & second)) + 0.5) / (n + 2)
    return (only_first + only_second - (only_first - only_second) ** 2) / n


def check_groups(groups: Sequence[object], column: str) -> list[str]:
    """The groups of ``column``'s values, largest first; a column of one group, or of more than
    ``MAX_GROUPS`` (one per person or image), is refused in a line."""
    values, _ = group_levels(groups)
    present = [v for v in values if v is not None]
    order = sorted(set(present), key=lambda g: (-present.count(g), g))
    if len(order) < 2:
        raise FerError(f"{column}: {'one group' if order else 'no value'} among the images scored "
                       f"({len(present):,} with a value): grouping needs two or more")
    if len(order) > MAX_GROUPS:
        raise FerError(f"{column}: {len(order):,} different values among the images scored: group by a column "
                       f"of at most {MAX_GROUPS} groups (sex, age band, stimulus set), not one per person or image")
    return order


def _clustered_se(values: np.ndarray, signs: dict[str, int], groups: np.ndarray, labels: np.ndarray,
                  emotions: Sequence[str], clusters: np.ndarray) -> tuple[float, int]:
    """The cluster-robust (sandwich) standard error of a signed sum of the groups' emotion-balanced
    means of ``values`` (a group's share right: ``signs`` {group: 1}; a gap: {a: 1, b: -1}): each
    image's deviation from its group and emotion's mean, weighted as the balanced mean weighs it,
    summed within each cluster (a poser's images), with the C / (C - 1) correction, and its degrees
    of freedom (C - 1, for Student's t). Images of one
    person are not independent; taken as such, random groups of posers read as different 16-24 %
    of the time at 5 % (a review's simulation, two images per poser and emotion)."""
    import pandas as pd

    rows = np.isin(groups, list(signs)) & np.isin(labels, list(emotions))
    frame = pd.DataFrame({"v": values[rows].astype(float), "cell": [f"{g}\0{e}" for g, e in zip(groups[rows], labels[rows])],
                          "sign": [signs[g] for g in groups[rows]], "cluster": clusters[rows]})
    cell = frame.groupby("cell")["v"]
    frame["part"] = frame["sign"] * (frame["v"] - cell.transform("mean")) / (len(emotions) * cell.transform("size"))
    sums = frame.groupby("cluster")["part"].sum().to_numpy()
    c = len(sums)
    return (float(np.sqrt(c / (c - 1) * np.sum(sums ** 2))) if c > 1 else float("inf")), c - 1


def group_analysis(comparison, groups: Sequence[object], column: str,
                   clusters: Sequence[object] | None = None, cluster_column: str | None = None) -> GroupAnalysis:
    """``comparison``'s models per group of ``column`` (``groups``: a value per row of its table,
    in order). Refused for a column of more than ``MAX_GROUPS`` groups or fewer than two.
    ``clusters``: per row, who posed it (a participant column): the intervals and p-values then
    allow for one person's images being alike (the larger of the cluster-robust standard error and
    the independent one; a row without a value is a person of its own)."""
    values, spellings = group_levels(groups)
    if len(values) != comparison.n:
        raise ValueError("one group value per image of the comparison")
    order = check_groups(groups, column)
    if clusters is not None:
        people = np.array([f"row {i}" if v is None or str(v).strip().casefold() in MISSING_VALUES else str(v).strip()
                           for i, v in enumerate(clusters)], dtype=object)
    else:
        people = None
    present = [v for v in values if v is not None]
    groups_array = np.array([v if v is not None else "" for v in values], dtype=object)
    labels = comparison.table["label"].to_numpy(dtype=object)
    emotions = list(comparison.classes)
    scores, gaps, differences = [], [], []
    cells = {}
    for name in comparison.names:
        correct = comparison.correct(name)
        for g in order:
            in_group = groups_array == g
            mine = cells[name, g] = _cells(correct, labels, in_group, emotions)
            n = int(in_group.sum())
            right = int(correct[in_group].sum())
            recall = {e: x / k for e, (k, x, _) in mine.items()}
            balanced = float(np.mean(list(recall.values())))
            se = float(np.sqrt(sum(v for _, _, v in mine.values()))) / len(mine)
            df = None
            if people is not None:
                clustered, df = _clustered_se(correct, {g: 1}, groups_array, labels, list(mine), people)
                se = max(se, clustered)
            scores.append(GroupScore(name, g, n, _r(right / n), tuple(_r(v) for v in wilson_counts(right, n)),
                                     _r(balanced), _interval(balanced, se, df=df),
                                     {e: k for e, (k, _, _) in mine.items()}, {e: _r(v) for e, v in recall.items()}))
    pairs = list(combinations(order, 2))
    unshared = [(a, b) for a, b in pairs if not set(cells[comparison.names[0], a]) & set(cells[comparison.names[0], b])]
    raw_gaps = []
    for name in comparison.names:
        correct = comparison.correct(name)
        for a, b in pairs:
            shared = [e for e in emotions if e in cells[name, a] and e in cells[name, b]]
            if not shared:
                continue
            by_emotion = {e: cells[name, a][e][1] / cells[name, a][e][0] - cells[name, b][e][1] / cells[name, b][e][0]
                          for e in shared}
            gap = float(np.mean(list(by_emotion.values())))
            se = float(np.sqrt(sum(cells[name, a][e][2] + cells[name, b][e][2] for e in shared))) / len(shared)
            df = None
            if people is not None:
                clustered, df = _clustered_se(correct, {a: 1, b: -1}, groups_array, labels, shared, people)
                se = max(se, clustered)
            plain = float(correct[groups_array == a].mean() - correct[groups_array == b].mean())
            raw_gaps.append((name, a, b, tuple(shared), gap, (se, df), plain, by_emotion))
    holm = holm_adjusted([_p(gap, se, df) for *_, gap, (se, df), _, _ in raw_gaps])
    for (name, a, b, shared, gap, (se, df), plain, by_emotion), p_holm in zip(raw_gaps, holm):
        gaps.append(GroupGap(name, a, b, shared, _r(gap), _interval(gap, se, -1.0, 1.0, df), _p(gap, se, df), p_holm,
                             _r(plain), {e: _r(v) for e, v in by_emotion.items()}))
    raw_differences = []
    for first, second in combinations(comparison.names, 2):
        right_first, right_second = comparison.correct(first), comparison.correct(second)
        for a, b in pairs:
            shared = [e for e in emotions if e in cells[first, a] and e in cells[first, b]]
            if not shared:
                continue
            terms, variance = [], 0.0
            for e in shared:
                ea, eb = (groups_array == a) & (labels == e), (groups_array == b) & (labels == e)
                terms.append((right_first[ea].mean() - right_second[ea].mean())
                             - (right_first[eb].mean() - right_second[eb].mean()))
                variance += _paired_variance(right_first[ea], right_second[ea])
                variance += _paired_variance(right_first[eb], right_second[eb])
            difference = float(np.mean(terms))
            se, df = float(np.sqrt(variance)) / len(shared), None
            if people is not None:
                paired = right_first.astype(float) - right_second.astype(float)
                clustered, df = _clustered_se(paired, {a: 1, b: -1}, groups_array, labels, shared, people)
                se = max(se, clustered)
            raw_differences.append((a, b, first, second, difference, (se, df)))
    holm = holm_adjusted([_p(d, se, df) for *_, d, (se, df) in raw_differences])
    for (a, b, first, second, d, (se, df)), p_holm in zip(raw_differences, holm):
        differences.append(GapDifference(a, b, first, second, _r(d), _interval(d, se, -2.0, 2.0, df),
                                         _p(d, se, df), p_holm))
    return GroupAnalysis(column=column, levels={g: present.count(g) for g in order},
                         spellings={g: spellings[g] for g in order}, missing=len(values) - len(present),
                         scores=scores, gaps=gaps, differences=differences, unshared=unshared,
                         clustered_by=cluster_column if people is not None else None,
                         people=0 if people is None else len(set(people[groups_array != ""])))
