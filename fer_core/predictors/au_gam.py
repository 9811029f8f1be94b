"""A glass-box additive model over the 17 AUs (kind ``au-gam``): an Explainable Boosting Machine.

Each emotion's score is a sum of one shape function per AU (a step function of the AU's
intensity) and of a few pairwise terms of two AUs, learnt by cyclic gradient boosting
(``interpret``'s ``ExplainableBoostingClassifier``). Unlike the logistic regression an AU may
matter only above some intensity, or only together with another; unlike a black box, every term
can be drawn and every prediction is the sum of terms that can be listed.

The fitted model is written as plain JSON (the bin cuts and the score tables of every term) and
predicted from that JSON by this module, so ``interpret`` is needed to train, not to predict, and
nothing is pickled. Per-AU contributions to a face's logits are its shape-function scores plus
half of every pairwise term the AU is part of: they and the intercept sum to the logits exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import au_table, fileio
from ..au_table import AU_COLUMNS
from ..emotions import SIX_EMOTIONS
from ..errors import FerError, ModelFileError
from ..evaluation.metrics import EvaluationReport, report_from_codes
from ..provenance import utc_now
from ..safe_files import json_format_claims, read_json_file
from .au_models import (
    LOAD_HINT,
    MAX_FIT_ROWS,
    MAX_MODEL_JSON_BYTES,
    AUPredictor,
    AURowsModel,
    balanced_weights,
    check_holdout,
    early_stopping_note,
    explanation_from,
    field_error,
    fitting,
    in_video,
    plan_fit,
    predict_rows,
    read_array,
    read_au_columns,
    read_classes,
)
from .base import Explanation, Progress

FORMAT = "fer-au-gam/1"
KIND = "au-gam"
EBM_VALIDATION_SHARE = 0.15  # interpret's validation_size, kept for the bags of a table of videos


@dataclass
class GamTerm:
    """One additive term: a shape function of one AU, or a surface over two."""

    features: tuple[int, ...]  # indices into au_columns
    cuts: list[np.ndarray]  # bin cut points per feature (bin i: cuts[i-1] <= x < cuts[i], as interpret bins)
    scores: np.ndarray  # (bins_1 [, bins_2], k): index 0 = missing, last = unseen

    def lookup(self, X: np.ndarray) -> np.ndarray:
        """(n, k) scores of this term for the rows of ``X``."""
        index = []
        for f, cuts in zip(self.features, self.cuts):
            values = X[:, f]
            i = np.searchsorted(cuts, values, side="right") + 1
            index.append(np.where(np.isnan(values), 0, i))
        return self.scores[tuple(index)]

    def to_dict(self) -> dict:
        return {"features": list(self.features), "cuts": [c.tolist() for c in self.cuts],
                "scores": self.scores.tolist()}

    @classmethod
    def from_dict(cls, d: Any, source: str = "model", index: int = 0, n_aus: int = len(AU_COLUMNS),
                  n_classes: int = 2) -> "GamTerm":
        """A term checked against the model's AUs and classes: bin lookups must stay in range."""
        field = f"terms[{index}]"
        if not isinstance(d, dict):
            raise field_error(source, field, "is not an object")
        features = d.get("features")
        if (not isinstance(features, list) or len(features) not in (1, 2)
                or not all(isinstance(f, int) and not isinstance(f, bool) for f in features)):
            raise field_error(source, f"{field}.features", "must list one or two AU indices")
        if any(not 0 <= f < n_aus for f in features) or len(set(features)) != len(features):
            raise field_error(source, f"{field}.features", f"must name distinct AUs 0..{n_aus - 1}")
        raw_cuts = d.get("cuts")
        if not isinstance(raw_cuts, list) or len(raw_cuts) != len(features):
            raise field_error(source, f"{field}.cuts", f"must hold one list of bin cuts per AU ({len(features)})")
        cuts = []
        for j, c in enumerate(raw_cuts):
            # A term may have no cuts (one bin): an empty list is fine, a decreasing one is not.
            empty = isinstance(c, list) and not c
            values = np.zeros(0) if empty else read_array(c, source, f"{field}.cuts[{j}]", (None,))
            if (np.diff(values) <= 0).any():
                raise field_error(source, f"{field}.cuts[{j}]", "is not increasing")
            cuts.append(values)
        shape = tuple(len(c) + 3 for c in cuts) + (n_classes,)
        scores = read_array(d.get("scores"), source, f"{field}.scores", shape)
        return cls(tuple(features), cuts, scores)


@dataclass
class AUGam(AURowsModel):
    """A fitted additive AU model; ``predict_proba`` takes AU intensities in the order of
    ``au_columns``, or a table holding them (``AURowsModel``)."""

    classes: tuple[str, ...]
    au_columns: tuple[str, ...]
    intercept: np.ndarray  # (k,)
    terms: list[GamTerm]
    info: dict = field(default_factory=dict)
    kind: str = KIND

    def term_scores(self, X: np.ndarray) -> list[np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        return [t.lookup(X) for t in self.terms]

    def logits(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return self.intercept + sum(self.term_scores(X), np.zeros((len(X), len(self.classes))))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(k, d) per-AU contributions for one face: its main-effect scores, plus half of each
        pairwise term it is part of. With the intercept they sum to the logits exactly."""
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        out = np.zeros((len(self.classes), x.shape[1]))
        for term, score in zip(self.terms, self.term_scores(x)):
            for f in term.features:
                out[:, f] += score[0] / len(term.features)
        return out

    def contributions_without(self, x: np.ndarray) -> np.ndarray:
        """(k, d): each AU's own contribution were it alone absent (0), the others as they are:
        its main effect at 0, half of each pairwise term at (0, its partner's value). What the
        explanation weighs its value against: that value, not its absence, is the reason."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        rows = np.repeat(x[None], len(x), axis=0)
        rows[np.arange(len(x)), np.arange(len(x))] = 0.0  # row f: the face with AU f alone at 0
        out = np.zeros((len(self.classes), len(x)))
        for term in self.terms:
            for f in term.features:
                out[:, f] += term.lookup(rows[f:f + 1])[0] / len(term.features)
        return out

    def explain(self, x: np.ndarray, top: int = 3) -> Explanation:
        x = self.au_rows(x)[0]
        return explanation_from(self.classes, self.au_columns, x, self.known_proba(x), self.contributions(x), top,
                                contrib_absent=self.contributions_without(x), intercept=self.intercept)

    def shape_function(self, au: int) -> tuple[np.ndarray, np.ndarray]:
        """The main effect of one AU: (bin edges, (bins, k) scores), for drawing it."""
        term = next((t for t in self.terms if t.features == (au,)), None)
        if term is None:
            return np.array([]), np.zeros((0, len(self.classes)))
        return term.cuts[0], term.scores[1:-1]

    def pair_surface(self, first: str, second: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairwise term of two AU columns: (first's bin cuts, second's, (bins_1, bins_2, k)
        scores), for drawing it; what it adds to the two AUs' own curves."""
        features = (self.au_columns.index(first), self.au_columns.index(second))
        term = next((t for t in self.terms if t.features in (features, features[::-1])), None)
        if term is None:
            raise ValueError(f"no pairwise term of {first} and {second}")
        scores = term.scores[1:-1, 1:-1]
        if term.features != features:
            return term.cuts[1], term.cuts[0], scores.transpose(1, 0, 2)
        return term.cuts[0], term.cuts[1], scores

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [tuple(self.au_columns[f] for f in t.features) for t in self.terms if len(t.features) == 2]

    @property
    def holdout(self) -> EvaluationReport | None:
        m = (self.info.get("metrics") or {}).get("holdout")
        return EvaluationReport.from_dict(m) if m else None

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "kind": KIND, "classes": list(self.classes), "au_columns": list(self.au_columns),
                "intercept": self.intercept.tolist(), "terms": [t.to_dict() for t in self.terms], "info": self.info}

    def to_bytes(self) -> bytes:
        """The model file's bytes, as ``save`` writes them (a download of it is the file)."""
        return json.dumps(self.to_dict()).encode()

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write JSON, whole or not at all (``fileio``); returns the file's sha256."""
        data = self.to_bytes()
        fileio.atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_dict(cls, d: Any, name: str = "model") -> "AUGam":
        """Check every term against the model's AUs and classes (see ``AUModel.from_dict``)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(f"{name}: not an AU GAM file of this workbench ({FORMAT}); {LOAD_HINT}")
        classes = read_classes(d.get("classes"), name)
        au_columns = read_au_columns(d.get("au_columns"), name)
        intercept = read_array(d.get("intercept"), name, "intercept", (len(classes),))
        terms = d.get("terms")
        if not isinstance(terms, list) or not terms:
            raise field_error(name, "terms", "is missing or empty")
        info = d.get("info") or {}
        if not isinstance(info, dict):
            raise field_error(name, "info", "is not an object")
        model = cls(classes=classes, au_columns=au_columns, intercept=intercept,
                    terms=[GamTerm.from_dict(t, name, i, len(au_columns), len(classes)) for i, t in enumerate(terms)],
                    info=info)
        check_holdout(model, name)
        return model

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "AUGam":
        return cls.from_dict(read_json_file(path, MAX_MODEL_JSON_BYTES, LOAD_HINT, what="AU model"), name=str(path))

    @classmethod
    def from_ebm(cls, ebm, classes: Sequence[str], au_columns: Sequence[str] = AU_COLUMNS, info: dict | None = None,
                 ) -> "AUGam":
        """Copy a fitted ``ExplainableBoostingClassifier``'s terms (binary models become a 2-way softmax)."""
        k = len(classes)
        terms = []
        for features, scores in zip(ebm.term_features_, ebm.term_scores_):
            cuts = []
            for f in features:
                levels = ebm.bins_[f]
                cuts.append(np.asarray(levels[min(len(features), len(levels)) - 1], float))
            scores = np.asarray(scores, float)
            if k == 2:
                scores = np.stack([-scores / 2, scores / 2], axis=-1)
            terms.append(GamTerm(tuple(int(f) for f in features), cuts, scores))
        intercept = np.atleast_1d(np.asarray(ebm.intercept_, float))
        if k == 2:
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        return cls(tuple(classes), tuple(au_columns), intercept, terms, info or {})


OUTER_BAGS = 14  # interpret's default: bagged boosting fits averaged into one model


def check_interactions(value: Any) -> int | float | None:
    """``interactions`` as interpret takes it, checked before any fit: None (its default), a whole
    number of AU pairs, or a share of the AUs below 1. interpret refuses the rest only inside the
    fit (said there as a table problem), and a share such as 2.5 would silently become 2 pairs."""
    if value is None:
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is not None and math.isfinite(number) and number >= 0:
        if float(number).is_integer():
            return int(number)
        if number < 1:
            return float(number)
    raise FerError(f"interactions {value!r}: give a whole number of AU pairs (0, 1, 2, …) or a share of the AUs "
                   "below 1 (such as 0.5)")


def _make_ebm(seed: int, interactions: float | int | None, outer_bags: int, n_jobs: int,
              bag_progress: Progress | None = None, columns: Sequence[str] = AU_COLUMNS):
    try:
        from interpret.glassbox import ExplainableBoostingClassifier
    except ImportError:
        raise FerError("training an AU GAM needs the 'interpret-core' package: pip install -r requirements.txt") from None
    settings: dict = {} if interactions is None else {"interactions": interactions}
    if bag_progress is not None and n_jobs == 1:  # one bag at a time: bags in parallel threads would interleave
        settings["callback"] = _bag_callback(bag_progress, outer_bags)
    return ExplainableBoostingClassifier(outer_bags=outer_bags, random_state=seed, n_jobs=n_jobs,
                                         feature_names=[c.split("_")[0] for c in columns], **settings)


def _bag_callback(bag_progress: Progress, bags: int):
    """interpret's boosting callback (called after every boosting step) as ``bag_progress(bag,
    bags)`` when a bag starts: the main effects' bags, then the pairs' bags again."""
    state = {"bag": None, "started": 0}

    def callback(bag: int, steps: int, progressed: bool, score: float) -> bool:
        if bag != state["bag"]:
            state["bag"] = bag
            state["started"] += 1
            bag_progress((state["started"] - 1) % bags + 1, bags)
        return False  # never stop the boosting early

    return callback


def video_bags(y: np.ndarray, groups: np.ndarray | None, outer_bags: int, seed: int) -> np.ndarray | None:
    """interpret's ``bags`` for a table of videos: each outer bag's boosting stops on rows it does
    not fit, whole videos among them, never on frames a tenth of a second from frames it fits. Each
    bag draws its own: interpret's share of 15 % of the pictures at random, and videos in random
    order until about 15 % of the video frames, a video whose emotion would then be missing from
    the fitting rows put back (interpret cannot fit a bag without an emotion). None: pictures only,
    or no bag left anything to validate on (interpret splits by rows)."""
    if groups is None:
        return None
    frame = in_video(groups)
    pictures, frames = np.flatnonzero(~frame), np.flatnonzero(frame)
    videos, inverse = np.unique(groups[frames], return_inverse=True)
    if not len(videos):
        return None
    # each video's rows, found once (a bag takes many videos of a table of thousands of clips)
    rows_of = np.split(frames[np.argsort(inverse, kind="stable")], np.cumsum(np.bincount(inverse))[:-1])
    n_classes = int(y.max()) + 1
    target = EBM_VALIDATION_SHARE * len(frames)
    bags = np.ones((len(y), outer_bags), dtype=np.int8)
    for bag in range(outer_bags):
        rng = np.random.default_rng(seed + bag)
        held = np.zeros(len(y), dtype=bool)
        held[rng.choice(pictures, size=round(EBM_VALIDATION_SHARE * len(pictures)), replace=False)] = True
        fitting = np.bincount(y, minlength=n_classes) - np.bincount(y[held], minlength=n_classes)
        taken = 0
        for k in rng.permutation(len(videos)):
            if taken >= target:
                break
            counts = np.bincount(y[rows_of[k]], minlength=n_classes)
            if np.any((counts > 0) & (counts >= fitting)):  # its emotion's last rows to fit on: left to fit
                continue
            held[rows_of[k]] = True
            fitting -= counts
            taken += len(rows_of[k])
        if not held.any() or np.any((fitting == 0) & (np.bincount(y, minlength=n_classes) > 0)):
            return None
        bags[held, bag] = -1
    return bags


def fit_au_gam(table: pd.DataFrame, classes: Sequence[str] = SIX_EMOTIONS, holdout: float = 0.25, seed: int = 0,
               interactions: float | int | None = None, outer_bags: int = OUTER_BAGS, n_jobs: int = 1,
               description: str = "", progress: Progress | None = None, max_rows: int = MAX_FIT_ROWS,
               class_weight: str | None = None, bag_progress: Progress | None = None,
               columns: Sequence[str] = AU_COLUMNS, group_by: str | None = None) -> AUGam:
    """Fit on a stratified (1 - holdout) share, report on the held-out rest, refit on all rows
    (at most ``max_rows`` per fit, as ``fit_au_model``; unusable tables raise one line the same way).

    ``interactions`` (None: interpret's default, three times as many AU pairs as AUs, all pairs for 7 AUs or
    fewer, chosen by the learner)
    and ``outer_bags`` (14 bagged fits averaged; fewer fit faster) are interpret's defaults, not tuned here.
    ``class_weight="balanced"`` weights each face by the inverse of its emotion's frequency.
    ``bag_progress(bag, bags)``: each bag as it starts (a fit can take minutes), when ``n_jobs`` is 1.
    ``columns``: the AUs it may use (e.g. only those a mask leaves visible), as ``fit_au_model``."""
    import warnings

    interactions = check_interactions(interactions)
    classes = tuple(classes)
    columns = tuple(columns)
    name = description or au_table.table_name(table)
    ts = au_table.training_set(table, classes, columns, name=name, min_per_class=au_table.MIN_FACES_PER_CLASS)
    plan = plan_fit(ts, holdout, seed, max_rows, group_by)
    if progress:
        progress(0, 2)
    # interpret runs its bags through joblib; in threads, not loky's processes: its native code releases
    # the GIL (a 2-core fit took 89 s in threads, 82 s in processes), and a training killed with
    # SIGKILL (the OOM killer, a scheduler) left loky's workers running, holding 200 MB each and the
    # killed command's stdout, so a script reading it hung (a reliability review).
    import joblib

    with warnings.catch_warnings(), fitting(name, KIND), joblib.parallel_config(backend="threading"):
        warnings.simplefilter("ignore", UserWarning)  # "pairs are stripped from global explanations": we keep them
        y_fit = ts.y[plan.fit]
        held_out_bags = video_bags(y_fit, plan.groups_of(plan.fit), outer_bags, seed)
        held_out = AUGam.from_ebm(_make_ebm(seed, interactions, outer_bags, n_jobs, bag_progress, columns).fit(
            ts.X(plan.fit), y_fit, **balanced_weights(y_fit, class_weight), bags=held_out_bags), classes, columns)
        predicted = predict_rows(lambda X: held_out.predict_proba(X).argmax(axis=1), ts, plan.test)
        report = report_from_codes(ts.y[plan.test], predicted, classes)
        plan.score_videos(held_out.predict_proba, ts, classes)
        if progress:
            progress(1, 2)
        y_final = ts.y[plan.final]
        bags = video_bags(y_final, plan.groups_of(plan.final), outer_bags, seed)
        final = _make_ebm(seed, interactions, outer_bags, n_jobs, bag_progress, columns).fit(
            ts.X(plan.final), y_final, **balanced_weights(y_final, class_weight), bags=bags)
    if progress:
        progress(2, 2)
    held = report.to_dict()
    info = {
        "trained": utc_now(),  # SOURCE_DATE_EPOCH where set: the same fit, the same file
        "data": plan.data_info(ts, description),
        "settings": {"interactions": "interpret default" if interactions is None else interactions,
                     "outer_bags": outer_bags, "holdout": holdout, "seed": seed, "max_rows": max_rows,
                     **({"group_by": group_by} if group_by is not None else {}),
                     "class_weight": class_weight, "learner": "interpret ExplainableBoostingClassifier",
                     "early_stopping": early_stopping_note(held_out_bags is not None, bags is not None)},
        "metrics": {"holdout": {k: held[k] for k in ("n", "accuracy", "accuracy_ci95", "macro_f1", "per_class",
                                                      "labels", "confusion")}},
    }
    return AUGam.from_ebm(final, classes, columns, info=info)


# -- registry -------------------------------------------------------------------------------
def _load(path: Path, entry) -> AUPredictor:
    return AUPredictor(AUGam.load(path), name=entry.name)


def _save(model: AUGam, path: Path) -> list[Path]:
    model.save(path)
    return [path]


_claims = json_format_claims(FORMAT, MAX_MODEL_JSON_BYTES)


def _kinds():
    from .registry import ModelKind

    return (ModelKind(KIND, "additive glass-box model over the 17 AUs (Explainable Boosting Machine: a shape "
                      "function per AU and a few AU pairs)", "aus", True, _load, _save, "{name}.json", _claims),)
