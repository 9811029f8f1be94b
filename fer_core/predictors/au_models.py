"""The explainable AU models: a standardised multinomial logistic regression over the 17 AUs
(``au-logreg``) and the original study's MLP 300-200-100-50 (``au-mlp``).

Both are fitted with scikit-learn and saved as plain JSON (classes, AU names, scaler, weights,
training description, metrics) — never pickle — and explain each prediction as per-AU
contributions to the class scores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import au_table, fileio
from ..au_table import AU_CODES, AU_COLUMNS, au_code, au_label
from ..emotions import SEVEN_EMOTIONS, SIX_EMOTIONS, normalize_emotion
from ..errors import AUTableError, FerError, ModelFileError, one_line
from ..evaluation.metrics import EvaluationReport, report_from_codes
from ..provenance import utc_now
from ..safe_files import json_format_claims, read_json_file
from .base import AUContribution, Explanation, FaceInput, Predictor, Progress, predicted_labels

FORMAT = "fer-au-model/1"
_SKLEARN_HINT = ("{what} is not an AU model of this workbench: fit one with fit_au_model, or make a scikit-learn "
                 "LogisticRegression or MLPClassifier fitted on AU columns one with AUModel.from_estimator(estimator)")
KINDS = ("au-logreg", "au-mlp")
MLP_LAYERS = (300, 200, 100, 50)
DEFAULT_CS = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
MAX_MODEL_JSON_BYTES = 32 * 2**20  # AU models are a few KB (an AU GAM a few MB); reading stays far below 1 GB
LOAD_HINT = "pick a .json file saved by this workbench"
RETRAIN_HINT = "retrain the model"
MIN_SCALE = 1e-6  # a fitted scale is at least this (scikit-learn and the AU bottleneck put 1 for a constant AU)
MAX_MODEL_VALUE = 1e6  # fitted weights, means and scores are far smaller; larger ones overflow the logits to NaN


def softmax_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (numpy's: scipy's would add its import to the first prediction)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class AURowsModel:
    """``predict_proba`` and ``predict`` of the fitted AU models (``AUModel``, ``AUGam``), given
    their ``logits``, ``classes`` and ``au_columns``: scikit-learn's, with what a table of AUs
    needs. A face none of whose AUs is known (no face measured, a mask hiding them all) is not
    judged: a NaN row and None, not the intercept's guess (as ``AUPredictor`` scores it)."""

    classes: tuple[str, ...]
    au_columns: tuple[str, ...]

    def logits(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def au_rows(self, X) -> np.ndarray:
        """(n, len(au_columns)) AU values: an array of the model's AUs, one face or many, or an AU
        table (a DataFrame) holding its AU columns by name, read as ``predict --au-table`` reads it:
        a row without a face found (``success`` 0), or with an AU out of range or not a number, has
        no AU known. Anything else a one-line FerError."""
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.au_columns if c not in X.columns]
            if missing:
                raise FerError(f"the table lacks AU columns this model reads: {', '.join(missing)}")
            given = X[list(self.au_columns)]
            numbers = given.apply(pd.to_numeric, errors="coerce")
            unread = (au_table.invalid_values(X, self.au_columns) | ~au_table.face_found(X).to_numpy()
                      | (numbers.isna() & given.notna()).any(axis=1).to_numpy())  # text such as "0,5"
            X = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            X[unread] = np.nan
        try:
            rows = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FerError(f"AU values must be numbers ({one_line(exc)})") from None
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
        if rows.ndim != 2 or rows.shape[1] != len(self.au_columns):
            raise FerError(f"this model reads {len(self.au_columns)} AUs per face "
                           f"({', '.join(au_code(c) for c in self.au_columns)}), in that order; got an array of shape "
                           f"{tuple(np.shape(X))} (a table's AU columns are chosen by name)")
        return rows

    def predict_proba(self, X) -> np.ndarray:
        """(n, len(classes)) probabilities; NaN rows for faces with none of the model's AUs known."""
        X = self.au_rows(X)
        out = np.full((len(X), len(self.classes)), np.nan)
        known = ~np.isnan(X).all(axis=1)
        if known.any():
            out[known] = softmax_rows(self.logits(X[known]))
        return out

    def predict(self, X) -> list[str | None]:
        """The most probable emotion of each face; None where none of its AUs is known."""
        return predicted_labels(self.classes, self.predict_proba(X))

    def known_proba(self, x: np.ndarray) -> np.ndarray:
        """One face's probabilities, for its explanation: a face none of whose AUs is known has no
        judgement to explain (a one-line FerError)."""
        proba = self.predict_proba(x)[0]
        if np.isnan(proba).any():
            raise FerError("none of the AUs this model reads is known for this face; there is nothing to explain")
        return proba


@dataclass
class AUModel(AURowsModel):
    """A fitted AU model; ``predict_proba`` takes AU intensities in the order of ``au_columns``
    (all 17, or a subset model's own), or a table holding them."""

    kind: str
    classes: tuple[str, ...]
    au_columns: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]  # logreg: [coef (k, d)]; mlp: [W1 (d, h1), ..., Wout (h, k)]
    biases: list[np.ndarray]
    info: dict = field(default_factory=dict)  # training data description, settings, metrics

    def weights_frame(self) -> pd.DataFrame:
        """A logistic regression's weights as a paper's table: one row per AU (its code and muscle
        movement), one column per emotion (per standard deviation of the AU, as the heatmap draws
        them), the AU's training mean and standard deviation to undo that, and the intercepts as
        a last row."""
        from ..au_table import au_label

        if self.kind != "au-logreg":
            raise FerError(f"{self.kind}: only a logistic regression has one weight per AU and emotion")
        coef = np.asarray(self.weights[0], dtype=float)
        frame = pd.DataFrame(coef.T, columns=list(self.classes))
        frame.insert(0, "au", list(self.au_columns))
        frame.insert(1, "name", [au_label(c) for c in self.au_columns])
        frame["training_mean"] = np.asarray(self.mean, dtype=float)
        frame["training_sd"] = np.asarray(self.scale, dtype=float)
        intercept = {"au": "intercept", "name": "", **dict(zip(self.classes, np.asarray(self.biases[0], float)))}
        return pd.concat([frame, pd.DataFrame([intercept])], ignore_index=True)

    # -- prediction -------------------------------------------------------------------------
    def standardise(self, X: np.ndarray) -> np.ndarray:
        """Standardised AUs; an unknown AU (NaN: hidden by a mask) sits at the training mean, so it
        contributes nothing to a logistic regression's decision."""
        h = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return np.where(np.isnan(h), 0.0, h)

    def logits(self, X: np.ndarray) -> np.ndarray:
        h = self.standardise(X)
        if self.kind == "au-logreg":
            return h @ self.weights[0].T + self.biases[0]
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        return h @ self.weights[-1] + self.biases[-1]

    # -- explanation ------------------------------------------------------------------------
    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(k, d) per-AU contributions to each class's logit for one face.

        Logistic regression: ``coef * standardised AU``, so contributions plus the intercept
        give the logits exactly. MLP: the logit change when the AU is set to its training mean
        (occlusion), an approximation.
        """
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        if self.kind == "au-logreg":
            return self.weights[0] * self.standardise(x)[0]
        base = self.logits(x)[0]
        out = np.zeros((len(self.classes), x.shape[1]))
        for d in range(x.shape[1]):
            occluded = x.copy()
            occluded[0, d] = self.mean[d]
            out[:, d] = base - self.logits(occluded)[0]
        return out

    def explain(self, x: np.ndarray, top: int = 3) -> Explanation:
        """Predicted class, probabilities and every AU ranked by how much it favours it.

        Contributions are centred over classes (softmax ignores a shift common to all classes),
        so a positive value means "this AU favours the predicted emotion over the others".
        """
        x = self.au_rows(x)[0]
        explanation = explanation_from(self.classes, self.au_columns, x, self.known_proba(x),
                                       self.contributions(x), top, usual=self.mean,
                                       intercept=self.biases[0] if self.kind == "au-logreg" else None)
        if self.kind == "au-logreg":
            return explanation
        # said in the JSON and under the sentence: an MLP's reasons are estimates
        return replace(explanation, extra={**explanation.extra, "contribution_method": OCCLUSION})

    @property
    def holdout(self) -> EvaluationReport | None:
        """The scores on the share of the training table held out from fitting, if recorded."""
        m = (self.info.get("metrics") or {}).get("holdout")
        return EvaluationReport.from_dict(m) if m else None

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "kind": self.kind, "classes": list(self.classes),
            "au_columns": list(self.au_columns), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "weights": [w.tolist() for w in self.weights], "biases": [b.tolist() for b in self.biases],
            "info": self.info,
        }

    def to_bytes(self) -> bytes:
        """The model file's bytes, as ``save`` writes them (a download of it is the file)."""
        return json.dumps(self.to_dict(), indent=1).encode()

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write JSON, whole or not at all (``fileio``); returns the file's sha256."""
        data = self.to_bytes()
        fileio.atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_estimator(cls, estimator: Any, au_columns: Sequence[str] | None = None,
                       description: str = "") -> "AUModel":
        """A scikit-learn classifier over AUs fitted elsewhere (a notebook), as this workbench's AU
        model: ``LogisticRegression`` (a softmax over its classes) or ``MLPClassifier`` (relu), alone
        or after a ``StandardScaler`` in a ``Pipeline``. Its classes are emotion names (aliases read as everywhere); its columns are ``au_columns`` in order (all
        17 by default), or the AU names it was fitted on from a DataFrame. Its probabilities are
        checked to be reproduced (1e-6) before it is returned: then ``save_and_register`` keeps it,
        and Try it and Compare explain it as they explain a model fitted here. A NaN AU (a mask's)
        is read at the scaler's mean (without a scaler: 0)."""
        steps = list(getattr(estimator, "steps", None) or [(None, estimator)])
        scaler, clf = (steps[0][1], steps[1][1]) if len(steps) == 2 else (None, steps[-1][1])
        what = type(clf).__name__
        if len(steps) > 2 or (scaler is not None and type(scaler).__name__ != "StandardScaler"):
            raise FerError(f"a Pipeline of {', '.join(type(st).__name__ for _, st in steps)}: give a "
                           "LogisticRegression or MLPClassifier, alone or after a StandardScaler")
        if not hasattr(clf, "classes_"):
            raise FerError(f"{what} is not fitted (or not a classifier): fit it on AU columns first")
        names = getattr(estimator, "feature_names_in_", None)
        columns = tuple(map(str, names)) if names is not None and au_columns is None else tuple(au_columns or AU_COLUMNS)
        if any(c not in AU_COLUMNS for c in columns):
            raise FerError(f"{what} reads columns that are not AU intensities ({', '.join(c for c in columns if c not in AU_COLUMNS)[:120]}); "
                           "give au_columns=[...] naming the AU_r column of each input, in order")
        n_in = int(getattr(clf, "n_features_in_", len(columns)))
        if n_in != len(columns):
            raise FerError(f"{what} reads {n_in} inputs but {len(columns)} AU columns were named; give au_columns=[...] "
                           "in the order it was fitted on")
        d = len(columns)
        mean = np.zeros(d) if scaler is None or getattr(scaler, "mean_", None) is None else np.asarray(scaler.mean_, float)
        scale = np.ones(d) if scaler is None or getattr(scaler, "scale_", None) is None else np.asarray(scaler.scale_, float)
        classes = [normalize_emotion(str(c)) or str(c) for c in clf.classes_]
        k = len(classes)

        def two_sided(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # one logit for two classes (a sigmoid) as the softmax of -z/2 and z/2
            return np.concatenate([-w / 2, w / 2], axis=-1), np.concatenate([-b / 2, b / 2])

        if what == "LogisticRegression":
            coef, intercept = np.asarray(clf.coef_, float), np.asarray(clf.intercept_, float)
            if k == 2:
                coef, intercept = two_sided(coef.T, intercept)
                coef = coef.T
            kind, weights, biases = "au-logreg", [coef], [intercept]
        elif what == "MLPClassifier":
            if clf.activation != "relu":
                raise FerError(f"an MLPClassifier with activation={clf.activation!r}: this workbench's MLP is relu")
            weights = [np.asarray(w, float) for w in clf.coefs_]
            biases = [np.asarray(b, float) for b in clf.intercepts_]
            if k == 2:
                weights[-1], biases[-1] = two_sided(weights[-1], biases[-1])
            kind = "au-mlp"
        else:
            raise FerError(f"{what}: give a LogisticRegression or MLPClassifier fitted on AU columns (for another "
                           "model of AUs, a model kind of its own: see the README's layout section)")
        info = {"fitted_with": f"scikit-learn {what}" + (" after a StandardScaler" if scaler is not None else ""),
                "description": description}
        model = cls.from_dict({"format": FORMAT, "kind": kind, "classes": classes, "au_columns": list(columns),
                               "mean": mean.tolist(), "scale": np.maximum(scale, MIN_SCALE).tolist(),
                               "weights": [w.tolist() for w in weights], "biases": [b.tolist() for b in biases],
                               "info": info}, name=what)
        probe = np.random.default_rng(0).uniform(0, 5, (64, d))
        frame = pd.DataFrame(probe, columns=list(names)) if names is not None else probe
        if not np.allclose(model.predict_proba(probe), estimator.predict_proba(frame), atol=1e-6):
            raise FerError(f"{what}: its probabilities are not reproduced by this workbench's {kind} (an option it does "
                           "not have?); fit it with the defaults, or register it as a model kind of its own")
        return model

    @classmethod
    def from_dict(cls, d: Any, name: str = "model") -> "AUModel":
        """Check every field against the others, so that a damaged or hand-edited file is refused
        here, naming the field, instead of predicting nonsense (NaN, a wrong AU order) later."""
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("kind") not in KINDS:
            raise ModelFileError(f"{name}: not an AU model file of this workbench ({FORMAT}); {LOAD_HINT}")
        kind = d["kind"]
        classes = read_classes(d.get("classes"), name)
        au_columns = read_au_columns(d.get("au_columns"), name)
        n_aus, k = len(au_columns), len(classes)
        mean = read_array(d.get("mean"), name, "mean", (n_aus,))
        scale = read_array(d.get("scale"), name, "scale", (n_aus,))
        if (scale == 0).any():
            raise field_error(name, "scale", "has zeros")
        if (scale < 0).any():
            raise field_error(name, "scale", "has negative values")
        if (scale < MIN_SCALE).any():  # dividing by it would send a measured AU to infinity
            raise field_error(name, "scale", f"has values below {MIN_SCALE:g}")
        weights = [read_array(w, name, f"weights[{i}]", (None, None)) for i, w in enumerate(_list(d, "weights", name))]
        biases = [read_array(b, name, f"biases[{i}]", (None,)) for i, b in enumerate(_list(d, "biases", name))]
        if len(biases) != len(weights):
            raise field_error(name, "biases", f"has {len(biases)} vectors for {len(weights)} weight matrices")
        if kind == "au-logreg":
            if len(weights) != 1:
                raise field_error(name, "weights", f"has {len(weights)} matrices; au-logreg has one (classes × AUs)")
            if weights[0].shape != (k, n_aus):
                raise field_error(name, "weights[0]", f"is {_dims(weights[0])} but au-logreg needs {k}×{n_aus} "
                                  f"({k} classes × {n_aus} AUs)")
        width = n_aus
        for i, (W, b) in enumerate(zip(weights, biases)):
            if kind == "au-mlp" and W.shape[0] != width:
                source = f"the {n_aus} AUs" if i == 0 else f"weights[{i - 1}] gives {width}"
                raise field_error(name, f"weights[{i}]", f"takes {W.shape[0]} inputs but {source}: the layers "
                                  "do not chain")
            units = W.shape[0] if kind == "au-logreg" else W.shape[1]
            if len(b) != units:
                raise field_error(name, f"biases[{i}]", f"has {len(b)} values for {units} units")
            width = units
        if width != k:
            raise field_error(name, f"weights[{len(weights) - 1}]", f"gives {width} outputs for {k} classes")
        info = d.get("info") or {}
        if not isinstance(info, dict):
            raise field_error(name, "info", "is not an object")
        model = cls(kind=kind, classes=classes, au_columns=au_columns, mean=mean, scale=scale, weights=weights,
                    biases=biases, info=info)
        check_holdout(model, name)
        return model

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "AUModel":
        return cls.from_dict(read_json_file(path, MAX_MODEL_JSON_BYTES, LOAD_HINT, what="AU model"), name=str(path))


# -- reading model files --------------------------------------------------------------------
def field_error(source: str, field: str, problem: str) -> ModelFileError:
    """The one shape of every refusal of a field: file, field, what is wrong, what to do."""
    return ModelFileError(f"{source}: field {field!r} {problem}; {RETRAIN_HINT}")


def _list(d: dict, field: str, source: str) -> list:
    value = d.get(field)
    if not isinstance(value, list) or not value:
        raise field_error(source, field, "is missing or empty" if not value else "is not a list")
    return value


def _dims(a: np.ndarray) -> str:
    return "×".join(map(str, a.shape)) if a.ndim else "a single number"


def read_array(value: Any, source: str, field: str, shape: tuple[int | None, ...],
               limit: float = MAX_MODEL_VALUE) -> np.ndarray:
    """A finite float array of ``shape`` (None: any length) from a JSON list, every value within
    ±``limit`` (a larger one is no fitted value, and overflows the scores to NaN)."""
    if not isinstance(value, list):
        raise field_error(source, field, "is missing" if value is None else "is not a list of numbers")
    try:
        # As objects first: numpy would read "1.5" and true as numbers (JSON says they are not),
        # and one long string would make a text array of that width for every value (gigabytes).
        raw = np.asarray(value, dtype=object)
        if any(isinstance(v, (str, bool)) for v in raw.flat):
            raise field_error(source, field, "holds text or true/false where numbers belong")
        array = raw.astype(float)
    except OverflowError:  # an integer literal of hundreds of digits
        raise field_error(source, field, "holds a number too large to be a model value") from None
    except (ValueError, TypeError):
        raise field_error(source, field, "is not a rectangular array of numbers") from None
    if array.ndim != len(shape):
        raise field_error(source, field, f"has {array.ndim} dimensions, expected {len(shape)}")
    if array.size == 0:
        raise field_error(source, field, "is empty")
    if any(want is not None and got != want for got, want in zip(array.shape, shape)):
        if len(shape) == 1:
            raise field_error(source, field, f"has {array.shape[0]} values, expected {shape[0]}")
        expected = "×".join("n" if want is None else str(want) for want in shape)
        raise field_error(source, field, f"is {_dims(array)}, expected {expected}")
    if not np.isfinite(array).all():
        raise field_error(source, field, "holds NaN or infinite values")
    if (np.abs(array) > limit).any():
        raise field_error(source, field, f"holds values beyond ±{limit:g}, which no fitted model has")
    return array


def read_classes(value: Any, source: str) -> tuple[str, ...]:
    """Distinct known emotion names (aliases such as "Happiness" mapped), at least two."""
    if not isinstance(value, list) or not value:
        raise field_error(source, "classes", "is missing or empty" if not value else "is not a list")
    if not all(isinstance(c, str) for c in value):
        raise field_error(source, "classes", "must be a list of emotion names")
    emotions = [normalize_emotion(c) for c in value]
    unknown = [c for c, e in zip(value, emotions) if e is None]
    if unknown:
        raise field_error(source, "classes", f"names unknown emotion {unknown[0]!r} (known: "
                          f"{', '.join(SEVEN_EMOTIONS)})")
    twice = next((e for i, e in enumerate(emotions) if e in emotions[:i]), None)
    if twice:
        raise field_error(source, "classes", f"names {twice!r} more than once")
    if len(emotions) < 2:
        raise field_error(source, "classes", f"has only {emotions[0]!r}; a model tells at least two emotions apart")
    return tuple(e for e in emotions if e)


def read_au_columns(value: Any, source: str) -> tuple[str, ...]:
    """AU columns of this workbench, each once (a model may use a subset, e.g. the AUs a mask
    leaves visible; faces are matched to it by name)."""
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise field_error(source, "au_columns", "must be a non-empty list of AU column names such as "
                          f"{AU_COLUMNS[0]!r}")
    unknown = [c for c in value if c not in AU_COLUMNS]
    if unknown:
        raise field_error(source, "au_columns", f"names unknown AU column {unknown[0]!r} (known: "
                          f"{AU_COLUMNS[0]} … {AU_COLUMNS[-1]})")
    twice = next((c for i, c in enumerate(value) if c in value[:i]), None)
    if twice:
        raise field_error(source, "au_columns", f"names {twice!r} more than once")
    return tuple(value)


def check_holdout(model: Any, source: str) -> None:
    """``check_info`` of a model's ``info``."""
    check_info(model.info, source)


def check_info(info: dict, source: str, metrics_field: str = "info.metrics") -> None:
    """The training record and held-out scores in ``info`` must be what the AU model page reads
    (numbers where it formats numbers, a k×k confusion matrix): a registered model with a damaged
    record would otherwise blank that page, or show nonsense. ``metrics_field``: how the file
    names ``info["metrics"]`` (an AU-bottleneck sidecar calls it ``head_metrics``)."""
    for key in ("data", "settings"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise field_error(source, f"info.{key}", "is not an object")
    _check_entries(info.get("data") or {}, source, "info.data", {
        "rows": (_is_count, COUNT), "sample": (_is_text, "is not text"), "left_out": (_is_counts, COUNTS),
        "other_emotions": (_is_counts, COUNTS),
        "held_out_files": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                           "is not a list of file names")})
    _check_entries(info.get("settings") or {}, source, "info.settings", {"holdout": (_is_share, SHARE)})
    metrics = info.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise field_error(source, metrics_field, "is not an object")
    holdout = (metrics or {}).get("holdout")
    if holdout is None or holdout == {}:
        return
    where = f"{metrics_field}.holdout"
    if not isinstance(holdout, dict):
        raise field_error(source, where, "is not an object")
    _check_entries(holdout, source, where, {
        "n": (_is_count, COUNT), "no_face": (_is_count, COUNT), "accuracy": (_is_share, SHARE),
        "macro_f1": (_is_share, SHARE),
        "accuracy_ci95": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_share(x) for x in v),
                          "is not two shares from 0 to 1"),
        "labels": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "is not a list of emotions"),
        "per_class": (lambda v: isinstance(v, dict) and all(
            isinstance(c, dict) and _is_count(c.get("n", 0)) and (c.get("accuracy") is None or _is_share(c["accuracy"]))
            for c in v.values()), "is not a count and an accuracy per emotion"),
        "skipped": (_is_counts, COUNTS), "left_out": (_is_counts, COUNTS)}, inside=True)
    k = len(holdout.get("labels") or holdout.get("per_class") or [])
    _check_entries(holdout, source, where, {
        "confusion": (lambda v: isinstance(v, list) and len(v) == k and all(_is_count_list(row, k) for row in v),
                      f"is not a {k}×{k} matrix of counts (one row and column per emotion)"),
        "no_face_per_class": (lambda v: _is_count_list(v, k), f"is not {k} counts, one per emotion"),
        "other_per_class": (lambda v: _is_count_list(v, k), f"is not {k} counts, one per emotion")}, inside=True)
    try:
        EvaluationReport.from_dict(holdout)  # what ``holdout`` gives the page
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError):
        raise field_error(source, where, "is malformed") from None


COUNT, COUNTS, SHARE = "is not a whole number of at least 0", "is not counts by name", "is not a share from 0 to 1"


def _check_entries(d: dict, source: str, where: str, checks: dict[str, tuple[Any, str]], inside: bool = False
                   ) -> None:
    """Each entry of ``d`` named in ``checks`` (absent is fine) passes its test, else one line
    names the field and what it should be (``inside``: the field is ``where``, malformed in that entry)."""
    for key, (ok, problem) in checks.items():
        if key in d and not ok(d[key]):
            if inside:
                raise field_error(source, where, f"is malformed: its {key!r} {problem}")
            raise field_error(source, f"{where}.{key}", problem)


def _is_number(v: Any) -> bool:
    """A JSON number a float can hold: an integer of hundreds of digits is none (``math`` refuses it)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _is_count(v: Any) -> bool:
    """A whole number of faces (JSON may write it as 12.0)."""
    return _is_number(v) and math.isfinite(v) and v >= 0 and float(v).is_integer()


def _is_share(v: Any) -> bool:
    """An accuracy or share: 0 to 1, or NaN (no faces to score)."""
    return _is_number(v) and (math.isnan(v) or 0 <= v <= 1)


def _is_text(v: Any) -> bool:
    return isinstance(v, str)


def _is_counts(v: Any) -> bool:
    return isinstance(v, dict) and all(_is_count(x) for x in v.values())


def _is_count_list(v: Any, k: int) -> bool:
    return isinstance(v, list) and len(v) == k and all(_is_count(x) for x in v)


# How an MLP's contributions are found (its JSON's ``contribution_method``): they need not add up to its
# logits, as a logistic regression's do (median gap 0.28 logit on FER2013 val in a FACS review).
OCCLUSION = "occlusion: the change in each emotion's score with the AU set to its training mean (approximate)"


SHOWN_INTENSITY = 0.05  # the least intensity a sentence shows as more than "(0.0)"


def explanation_from(classes: Sequence[str], au_columns: Sequence[str], x: np.ndarray, proba: np.ndarray,
                     contrib: np.ndarray, top: int = 3, usual: np.ndarray | None = None,
                     contrib_absent: np.ndarray | None = None, intercept: np.ndarray | None = None) -> Explanation:
    """The explanation of any additive AU model from its (k, d) per-AU logit contributions.

    Contributions are centred over classes (softmax ignores a shift common to all classes),
    so a positive value means "this AU favours the predicted emotion over the others".
    ``usual``: the AU values the model weighs a face against (a linear model's training mean),
    so that an AU counting by being weaker than usual is not said to be the reason by being there.
    ``contrib_absent``: each AU's contribution were it alone absent (a GAM, which reads each value
    on its own curve): an AU whose value speaks for (or against) the emotion more than its absence
    would counts by its value, even a weak one ("surprise, because AU05 ... is absent" of an AU05
    of 0.48 the model rewarded); one that reads 0.0 never does. ``intercept``: (k,) an additive
    model's, whose contributions sum with it to the logits: the explanation's ``baseline``.
    """
    k = int(np.argmax(proba))
    centred = contrib[k] - contrib.mean(axis=0)
    by_value = None
    if contrib_absent is not None:
        absent = contrib_absent[k] - contrib_absent.mean(axis=0)
        values = np.asarray(x, dtype=float)
        shown = ~np.isnan(values) & (values >= SHOWN_INTENSITY)  # "because of AU12 (0.0)" says nothing
        by_value = shown & (np.sign(centred) * (centred - absent) > 1e-9)
    ranked = tuple(AUContribution(au_code(au_columns[d]), au_label(au_columns[d]), round(float(x[d]), 3),
                                  round(float(centred[d]), 4), None if usual is None else float(usual[d]),
                                  None if by_value is None else bool(by_value[d]))
                   for d in np.argsort(-centred, kind="stable"))
    baseline = None if intercept is None else float(intercept[k] - np.mean(intercept))
    return Explanation(classes[k], dict(zip(classes, map(float, proba))), ranked, top, baseline=baseline)


def train_au_command(model) -> str:
    """The ``train-au`` command that fits ``model``'s kind with its settings (emotions, class
    weights, hold-out, seed, the AUs it may use, a GAM's pairs and bags) on its table (TABLE): a model
    fitted on the dashboard records it."""
    settings = model.info.get("settings", {})
    command = (f"python -m fer_core train-au TABLE --out MODEL.json --kind {model.kind.removeprefix('au-')} --classes "
               f"{','.join(model.classes)} --class-weight "
               f"{'balanced' if settings.get('class_weight') == 'balanced' else 'none'} "
               f"--holdout {settings.get('holdout', 0.25):g} --seed {settings.get('seed', 0)}")
    if tuple(model.au_columns) != AU_COLUMNS:
        command += f" --aus {aus_option(model.au_columns)}"
    if isinstance(group_by := settings.get("group_by"), str):
        import shlex

        command += f" --group-by {shlex.quote(group_by)}"
    if isinstance(pairs := settings.get("interactions"), (int, float)) and not isinstance(pairs, bool):
        command += f" --interactions {pairs:g}"
    if model.kind == "au-gam":
        from .au_gam import OUTER_BAGS

        if (bags := settings.get("outer_bags", OUTER_BAGS)) != OUTER_BAGS:
            command += f" --outer-bags {bags}"
    return command


def aus_option(columns: Sequence[str]) -> str:
    """What ``--aus`` says for these AU columns (``au_columns_from`` reads it back): all, upper
    (those a mask leaves visible) or a comma list."""
    from ..masks import VISIBLE_AUS

    codes = tuple(au_code(c) for c in columns)
    if codes == AU_CODES:
        return "all"
    return "upper" if codes == VISIBLE_AUS else ",".join(codes)


def au_columns_from(spec: str) -> tuple[str, ...]:
    """The AU columns ``--aus`` names: all, upper (those a mask leaves visible), or a comma list of
    AU codes (AU01,AU04) in the order given, each once: a model's inputs are in that order, and
    the ``--aus`` its recorded command carries (``aus_option``) fits the same model again (a GAM's
    pairs follow the order)."""
    from ..masks import VISIBLE_AUS

    if spec == "all":
        return AU_COLUMNS
    codes = VISIBLE_AUS if spec == "upper" else tuple(c.strip().upper().removesuffix("_R") for c in spec.split(","))
    unknown = [c for c in codes if c not in AU_CODES]
    if unknown or not codes:
        raise FerError(f"--aus: unknown AU {', '.join(unknown) or spec!r}; use all, upper or codes like AU01,AU04")
    return tuple(dict.fromkeys(f"{c}_r" for c in codes))


# -- training -------------------------------------------------------------------------------
MAX_FIT_ROWS = 100_000  # rows a fit uses, a stratified sample above it: more rarely changes a 17-AU model
PREDICT_CHUNK_ROWS = 20_000  # rows predicted at once (an MLP's hidden layers are rows x 300 floats)
MAX_SEED = 2**32 - 1  # what numpy and scikit-learn accept


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise FerError(f"seed {seed!r} is out of range: use a whole number from 0 to {MAX_SEED}")
    return int(seed)


# A model fitted on at most this many faces keeps a 4-byte fingerprint of each (base64 in its file:
# 30,000 faces add 160 KB), so a test set that holds its own training pictures is said
FITTED_FACES_MAX = 30_000
HELD_OUT_FILES_MAX = 5_000  # a held-out share up to this many faces is listed by file (a lab's, to report)


def au_fingerprints(values: np.ndarray) -> np.ndarray:
    """A 32-bit fingerprint of each row of the 17 AUs (``AU_COLUMNS``) to 3 decimals, the precision
    an ``extract`` table keeps: the same picture measured again gets the same one, another face
    almost never (one chance in 2**32 per pair). An unknown AU (masked) counts as a value of its own."""
    rows = np.asarray(values, dtype=np.float64).reshape(len(values), len(AU_COLUMNS))
    rounded = np.where(np.isnan(rows), -99.0, np.round(rows, 3) + 0.0)  # + 0.0: -0.0 is 0.0
    return np.fromiter((int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=4).digest(), "little")
                        for row in rounded), dtype=np.uint32, count=len(rounded))


def encode_fingerprints(prints: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.unique(prints).astype("<u4").tobytes()).decode("ascii")


def fitted_fingerprints(predictor: object) -> np.ndarray | None:
    """The fingerprints of the faces an AU model was fitted on (``info.data.fitted_faces``), or None
    when it has none (fitted on more than ``FITTED_FACES_MAX`` faces, before 2026-12-07, or not an
    AU model); a damaged field is none too, not an error (it only adds a note)."""
    import base64
    import binascii

    info = getattr(getattr(predictor, "model", predictor), "info", None)
    text = ((info or {}).get("data") or {}).get("fitted_faces") if isinstance(info, dict) else None
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return np.frombuffer(raw, dtype="<u4") if raw and len(raw) % 4 == 0 else None


def faces_learned_from(prints: np.ndarray, aus: np.ndarray) -> int:
    """How many rows of ``aus`` (17 AUs each) are among the fitted faces ``prints``
    (``fitted_fingerprints``, decoded once by the caller)."""
    return int(np.isin(au_fingerprints(aus), prints).sum()) if len(aus) else 0


@dataclass(frozen=True)
class FitPlan:
    """Which training rows (positions into ``TrainingSet.index``) each fit uses: the held-out
    model is fitted on ``fit`` and scored on ``test``; the final model is fitted on ``final``
    (every row, or a stratified sample of ``max_rows``)."""

    fit: np.ndarray
    test: np.ndarray
    final: np.ndarray
    rows: int
    max_rows: int
    seed: int
    duplicates_moved: int = 0  # held-out rows equal to a fitting row, fitted instead of scored
    duplicates_scored: int = 0  # such rows left held out: too many to move (a table of repeats)
    groups: np.ndarray | None = None  # per training row, its video (``video_groups``); None: pictures
    videos_note: str = ""  # how a table of video frames was split
    videos: dict | None = None  # the same in numbers (the dashboard says it in its language)

    @property
    def sampled(self) -> bool:
        return len(self.final) < self.rows

    def groups_of(self, rows: np.ndarray) -> np.ndarray | None:
        """Each of ``rows``' video (``video_groups``), for a learner's inner validation; None: pictures."""
        return None if self.groups is None else self.groups[rows]

    def score_videos(self, predict_proba, ts: au_table.TrainingSet, classes: Sequence[str]) -> None:
        """With whole videos held out, each held-out video scored once too (``per_video_report``):
        the number to report for clips, as ``evaluate`` gives it; its frames weigh by length."""
        if not (self.videos and self.videos.get("whole")):
            return
        from ..evaluation.metrics import per_video_report

        rows = self.test[in_video(self.groups)[self.test]]  # the held-out frames (not pictures)
        if not len(rows):
            return
        proba = np.concatenate([np.asarray(predict_proba(ts.X(rows[i:i + PREDICT_CHUNK_ROWS])))
                                for i in range(0, len(rows), PREDICT_CHUNK_ROWS)])
        report = per_video_report(self.groups[rows], ts.y[rows], proba, classes)
        self.videos["per_video"] = {"n": report.n, "accuracy": report.accuracy,
                                    "accuracy_ci95": list(report.accuracy_ci95)}

    def data_info(self, ts: au_table.TrainingSet, description: str) -> dict:
        """The ``info["data"]`` of a model fitted by this plan."""
        out = {"description": description, "rows": self.rows, "class_counts": ts.class_counts, "source": ts.sources}
        if len(self.final) <= FITTED_FACES_MAX and set(AU_COLUMNS) <= set(ts.table.columns):
            # what a test set is checked against (``fitted_fingerprints``)
            out["fitted_faces"] = encode_fingerprints(au_fingerprints(au_table.values(ts.table, ts.index[self.final])))
        if len(self.test) <= HELD_OUT_FILES_MAX and "file" in ts.table.columns:  # which faces were held out
            out["held_out_files"] = [str(f) for f in ts.table["file"].iloc[ts.index[self.test]]]
        if ts.selection.left_out:
            out["left_out"] = dict(ts.selection.left_out)
        if au_table.OTHER_LABEL in ts.selection.left_out:  # which emotions: 18 fear rows read "unlabelled or other"
            out["other_emotions"] = au_table.other_emotions(ts.table, ts.classes)
        if self.duplicates_moved:
            out["held_out_duplicates"] = (f"{self.duplicates_moved:,} held-out rows had the same AUs and emotion as a "
                                          "fitting row and were fitted instead of scored")
        elif self.duplicates_scored:
            out["held_out_duplicates"] = (f"{self.duplicates_scored:,} held-out rows have the same AUs and emotion as a "
                                          "fitting row and were scored anyway (too many to hold out): the held-out "
                                          "score flatters the model")
        if self.videos_note:
            out["held_out_videos"] = self.videos_note
            out["videos"] = self.videos
        if self.sampled:
            out["fitted_rows"] = int(len(self.final))
            out["sample"] = (f"a stratified sample of {len(self.final):,} of {self.rows:,} usable faces (about "
                             f"{self.max_rows:,} are fitted, and at least {au_table.MIN_FACES_PER_CLASS} of each "
                             f"emotion; seed {self.seed})")
        return out


def plan_fit(ts: au_table.TrainingSet, holdout: float, seed: int, max_rows: int = MAX_FIT_ROWS,
             group_by: str | None = None) -> FitPlan:
    """Split the usable rows into a stratified fitting share and a held-out share, and cap what
    each fit uses at ``max_rows`` (a stratified sample that keeps every emotion), so a table of
    millions of faces fits in bounded time and memory. ``group_by``: a regular expression whose
    match in each file name (its first group, if it has one) names the participant: each one's
    photos are then wholly fitted or wholly held out, as a video's frames are. Raises one line
    when the split cannot work."""
    seed = check_seed(seed)
    if not 0 < holdout <= 0.5:
        raise FerError(f"held-out share {holdout!r} is out of range: use a share above 0 and at most 0.5")
    if max_rows < 1:
        raise FerError(f"max rows {max_rows!r} is out of range: use a whole number of at least 1")
    n, k = len(ts.y), len(ts.classes)
    n_test = math.ceil(holdout * n)
    if n_test < k or n - n_test < k:
        raise AUTableError(f"{ts.name}: {holdout:.0%} of {n:,} usable faces holds out {n_test}, too few for one face "
                           f"of each of the {k} emotions; hold out a larger share or add faces")
    every = np.arange(n)
    if group_by is not None:
        return _plan_by_participant(ts, holdout, seed, max_rows, group_by)
    groups = video_groups(ts)
    split = grouped_split(ts.y, groups, holdout, seed) if groups is not None else None
    numbers = None
    if split is not None:  # whole videos held out: a video's frames, 0.1 s apart, are near copies
        frame = in_video(groups)
        # a picture repeated beside them (a photo under two names) is not scored on its copy either
        fit, test, moved, scored = without_repeats(*split, ts.y, _row_keys(ts), movable=~frame)
        numbers = {"whole": True, "videos": len(np.unique(groups[frame])),
                   "held_out": len(np.unique(groups[test][frame[test]])), "frames_held_out": int(frame[test].sum()),
                   "held_out_share": round(len(test) / n, 3)}
        note = (f"whole videos held out: {numbers['held_out']:,} of {numbers['videos']:,} videos "
                f"({numbers['frames_held_out']:,} frames; {len(test) / n:.0%} of the rows held out), none "
                "with frames on both sides; the interval still counts each frame as a face")
    else:
        fit, test, moved, scored = held_out_split(ts.y, _row_keys(ts), holdout, seed)
        note = ""
        if groups is not None:
            numbers = {"whole": False, "videos": len(np.unique(groups[in_video(groups)]))}
            note = (f"frames of the same videos are both fitted and held out ({numbers['videos']:,} "
                    f"video{'' if numbers['videos'] == 1 else 's'}, too few to hold out whole videos of every "
                    "emotion): the held-out score flatters the model")
    return FitPlan(stratified_cap(fit, ts.y, max_rows, seed), test, stratified_cap(every, ts.y, max_rows, seed),
                   n, max_rows, seed, moved, scored, groups, note, numbers)


def participant_groups(ts: au_table.TrainingSet, pattern: str) -> tuple[np.ndarray, list[str]]:
    r"""Per training row, a number for its participant (``pattern``'s match in the file's name, its
    first group if it has one: r"^(P\d+)" makes P07_session2_happy.jpg participant P07), and the
    participants' names. One line when the pattern is no regular expression or leaves a file name
    without a participant (its child's other photos could then fall on the other side)."""
    import re

    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise FerError(f"--group-by '{pattern}' is not a regular expression ({exc}); e.g. '^(P\\d+)'") from None
    names = [os.path.basename(str(f)) for f in ts.table["file"].iloc[ts.index]] if "file" in ts.table.columns \
        else [""] * len(ts.index)
    keys = [m.group(1) if m and regex.groups else m.group(0) if m else None for m in map(regex.search, names)]
    missed = [name for name, k in zip(names, keys) if k is None]
    if len(missed) == len(names):
        raise FerError(f"--group-by '{pattern}' matches no file name of {ts.name} (such as {names[0]!r}); "
                       "write it to match the part of each name that names the participant")
    if missed:  # each a participant of its own, a child's other photos could fall on the other side
        shown = ", ".join(repr(m) for m in missed[:3]) + (f" and {len(missed) - 3:,} more" if len(missed) > 3 else "")
        raise FerError(f"--group-by '{pattern}' names no participant in {len(missed):,} of {len(names):,} file names "
                       f"({shown}): their children's photos could be fitted and held out alike; write it to match "
                       "every name, or leave those files out")
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    return codes, [str(u) for u in uniques]


def _plan_by_participant(ts: au_table.TrainingSet, holdout: float, seed: int, max_rows: int,
                         pattern: str) -> FitPlan:
    """``plan_fit`` with each participant's photos wholly fitted or wholly held out (``group_by``):
    a lab's photos of one child on both sides had the held-out score flatter the model, as a
    video's frames did. Its inner cross-validation keeps participants apart too."""
    groups, names = participant_groups(ts, pattern)
    split = grouped_split(ts.y, groups, holdout, seed, need_group=False)
    people = len(names)
    if split is None:
        shown = ", ".join(names[:6]) + (" …" if len(names) > 6 else "")
        raise AUTableError(f"{ts.name}: cannot hold out whole participants (--group-by '{pattern}': {people:,} of "
                           f"them, {shown}) with every emotion on both sides; add participants, hold out a larger "
                           "share, or train fewer emotions")
    fit, test = split
    held = len(np.unique(groups[test]))
    note = (f"whole participants held out (--group-by '{pattern}'): {held:,} of {people:,}, {len(test):,} of "
            f"{len(ts.y):,} faces ({len(test) / len(ts.y):.0%}), none with photos on both sides; the interval "
            "counts each photo as independent, which photos of one child are not: with few participants it is "
            "too narrow")
    every = np.arange(len(ts.y))
    return FitPlan(stratified_cap(fit, ts.y, max_rows, seed), test, stratified_cap(every, ts.y, max_rows, seed),
                   len(ts.y), max_rows, seed, 0, 0, groups, note, None)


def video_groups(ts: au_table.TrainingSet) -> np.ndarray | None:
    """Per training row, a number for the video it is a frame of (``au_table.video_names``: an
    ``extract`` video's frames, an OpenFace FeatureExtraction video's), each picture a number of
    its own; None when no video has two rows (a table of pictures splits as it always did)."""
    codes, uniques = pd.factorize(au_table.video_names(ts.table).iloc[ts.index])
    pictures = codes < 0
    if len(uniques) == len(codes) - int(pictures.sum()):  # no video with two frames
        return None
    codes[pictures] = len(uniques) + np.arange(int(pictures.sum()))
    return codes


def in_video(groups: np.ndarray) -> np.ndarray:
    """Per row of ``video_groups``' numbering, whether it is a video's frame (a group of one row is
    a picture)."""
    return np.bincount(groups)[groups] > 1


def grouped_split(y: np.ndarray, groups: np.ndarray, holdout: float, seed: int, need_group: bool = True
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """(fitting rows, held-out rows) with each group (video) wholly on one side, stratified by
    emotion as far as the groups allow: of the folds of scikit-learn's ``StratifiedGroupKFold``
    (about ``holdout`` each), the one nearest ``holdout`` of the rows with every emotion on both
    sides and a video held out (one video of many frames makes the folds uneven); None when no
    fold has them."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / holdout))
    if len(np.unique(groups)) < n_splits:
        return None
    every = len(np.unique(y))
    frame = in_video(groups)
    # every emotion on both sides, and a video held out (a fold of pictures alone says nothing of videos)
    folds = [(fit, test) for fit, test in StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y, groups) if len(np.unique(y[test])) == every and len(np.unique(y[fit])) == every
        and (frame[test].any() or not need_group)]
    if not folds:
        return None
    fit, test = min(folds, key=lambda fold: abs(len(fold[1]) - holdout * len(y)))
    return np.sort(fit), np.sort(test)


def cv_folds(y: np.ndarray, groups: np.ndarray | None, seed: int, n_splits: int = 5):
    """Cross-validation folds for choosing a model's settings: stratified, and with a table of
    videos, each video in one fold (its frames would otherwise pick the setting that best
    remembers them) where every emotion has at least two videos."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is not None and len(np.unique(groups)) >= n_splits and all(
            len(np.unique(groups[y == c])) >= 2 for c in np.unique(y)):
        return list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
    return StratifiedKFold(n_splits, shuffle=True, random_state=seed)


def held_out_split(y: np.ndarray, keys: np.ndarray, holdout: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(fitting rows, held-out rows, held-out rows moved, repeats left held out): scikit-learn's
    stratified split, then the held-out copies of fitting rows (same ``keys``: AUs and emotion;
    the study's table has a few) join the fitting share, so no row is scored on a copy of itself.
    A table of mostly repeats (a synthetic benchmark) keeps its split; the count says so."""
    from sklearn.model_selection import train_test_split

    fit, test = train_test_split(np.arange(len(y)), test_size=holdout, stratify=y, random_state=seed)
    return without_repeats(fit, test, y, keys)


def without_repeats(fit: np.ndarray, test: np.ndarray, y: np.ndarray, keys: np.ndarray,
                    movable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``held_out_split``'s second step: held-out rows equal to a fitting row (same ``keys``) join
    the fitting share, when that leaves most of the held-out share and every emotion in it;
    ``movable`` (per row): only those may move (a video's frame stays with its video)."""
    seen = np.isin(keys[test], keys[fit])
    if movable is not None:
        seen &= movable[test]
    left = test[~seen]
    if seen.any() and 2 * len(left) >= len(test) and len(np.unique(y[left])) == len(np.unique(y[test])):
        return np.sort(np.concatenate([fit, test[seen]])), left, int(seen.sum()), 0
    return fit, test, 0, int(seen.sum())


def row_keys(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's AUs and emotion (what ``held_out_split`` calls a repeat)."""
    frame = pd.DataFrame(np.asarray(X, dtype=np.float64))
    frame["y"] = np.asarray(y)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _row_keys(ts: au_table.TrainingSet) -> np.ndarray:
    """``row_keys`` of a training set, a chunk at a time."""
    n = len(ts.y)
    keys = np.empty(n, dtype=np.uint64)
    for start in range(0, n, PREDICT_CHUNK_ROWS):
        part = np.arange(start, min(n, start + PREDICT_CHUNK_ROWS))
        keys[part] = row_keys(ts.X(part), ts.y[part])
    return keys


def stratified_cap(positions: np.ndarray, y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """``positions`` if there are at most ``max_rows``, else a random sample of about ``max_rows``
    with each class in its share, and at least ``MIN_FACES_PER_CLASS`` of each (all of a smaller
    class), in table order."""
    if len(positions) <= max_rows:
        return positions
    rng = np.random.default_rng(seed)
    classes = y[positions]
    counts = np.bincount(classes)
    quota = np.maximum(np.minimum(counts, au_table.MIN_FACES_PER_CLASS),
                       np.floor(counts * (max_rows / len(positions))).astype(int))
    chosen = [rng.choice(positions[classes == c], size=q, replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(chosen))


def predict_rows(predict, ts: au_table.TrainingSet, positions: np.ndarray) -> np.ndarray:
    """``predict`` (AUs -> class indices) over training rows, in chunks of bounded memory."""
    out = [np.asarray(predict(ts.X(positions[i:i + PREDICT_CHUNK_ROWS])))
           for i in range(0, len(positions), PREDICT_CHUNK_ROWS)]
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


@contextmanager
def fitting(name: str, kind: str) -> Iterator[None]:
    """Turn scikit-learn's complaints about the data into one line naming the table (the checks
    before a fit catch the known cases; this is for what they cannot foresee)."""
    try:
        yield
    except ValueError as exc:
        raise AUTableError(f"{name}: could not fit the {kind} model on these faces ({one_line(exc, 160)}); "
                           "add faces of each emotion or choose other emotions") from None


# The score is the held-out rows'; the file saved is fitted again on every row (``fit_au_model``),
# so a paper quoting it as the saved model's held-out accuracy must say so.
REFITTED = "; the model saved was then refitted on every row"


def held_out_description(source: str, holdout: float, seed: int | None, videos: dict | None = None,
                         group_by: str | None = None, sample: str | None = None) -> str:
    """What a fitted AU model's figures were measured on, as the manifest records it: the same
    words from ``train-au`` and the dashboard, the seed included (it decides which faces), and for
    a table of videos (``FitPlan.videos``) or participants (``group_by``) how they were split.
    ``sample``: the data's ``sample`` where the saved model was refitted on a sample of the rows
    (``--max-rows``), not on every row."""
    refitted = REFITTED if not sample else f"; the model saved was then refitted on {sample}"
    how = "stratified" + (f", seed {seed}" if seed is not None else "")
    if group_by is not None:
        how += f"; whole participants, --group-by '{group_by}'"
    if isinstance(videos, dict) and videos.get("whole"):
        return (f"{videos['held_out_share']:.0%} of {source} held out from fitting as whole videos ({videos['held_out']:,} "
                f"of {videos['videos']:,}; {how}){refitted}")
    if isinstance(videos, dict):
        how += "; frames of the same videos on both sides"
    return f"{holdout:.0%} of {source} held out from fitting ({how}){refitted}"


# The AU model kinds a table trains (``train-au --kind``, the AU model page), in the page's order.
TRAINABLE_KINDS: tuple[str, ...] = ("au-logreg", "au-gam", "au-mlp")


def fit_au(table: pd.DataFrame, classes: Sequence[str] = SIX_EMOTIONS, kind: str = "au-logreg", *,
           interactions: float | int | None = None, outer_bags: int | None = None, n_jobs: int = 1,
           bag_progress: Progress | None = None, epoch_progress: Progress | None = None, **common: Any):
    """An AU model of ``kind`` fitted on ``table``, as ``train-au`` and the AU model page fit it: the
    GAM by ``fit_au_gam`` (``interactions``, ``outer_bags``, ``n_jobs``, ``bag_progress``), the others by
    ``fit_au_model`` (``epoch_progress``); ``common``: what both take (holdout, seed, class_weight,
    description, progress, max_rows, columns)."""
    if kind not in TRAINABLE_KINDS:
        raise FerError(f"{kind!r} is not an AU model kind a table trains; use one of {', '.join(TRAINABLE_KINDS)}")
    from ..provenance import fitted_by

    if kind == "au-gam":
        from .au_gam import fit_au_gam

        bags = {} if outer_bags is None else {"outer_bags": outer_bags}
        model = fit_au_gam(table, classes, interactions=interactions, n_jobs=n_jobs, bag_progress=bag_progress,
                           **bags, **common)
    else:
        model = fit_au_model(table, classes, kind=kind, epoch_progress=epoch_progress, **common)
    # what a methods section names: the code and libraries that fitted it (the page's models had none)
    model.info["fitted_by"] = fitted_by(("numpy", "scikit-learn", "interpret"))
    return model


def fit_au_model(table: pd.DataFrame, classes: Sequence[str] = SIX_EMOTIONS, kind: str = "au-logreg",
                 class_weight: str | None = None, holdout: float = 0.25, seed: int = 0,
                 Cs: Sequence[float] = DEFAULT_CS, description: str = "",
                 progress: Progress | None = None, columns: Sequence[str] = AU_COLUMNS,
                 max_rows: int = MAX_FIT_ROWS, epoch_progress: Progress | None = None,
                 group_by: str | None = None) -> AUModel:
    """Fit on a stratified (1 - holdout) share, report metrics on the held-out rest, then refit
    on all rows with the chosen settings. The logistic regression chooses ``C`` by 5-fold
    cross-validation (``LogisticRegressionCV``) on the fitting share. ``columns``: the AUs it
    may use (e.g. only those a mask leaves visible). Each fit uses at most ``max_rows`` rows
    (``plan_fit``); the rows used and left out are recorded in ``info``. ``progress(step, 3)``
    follows the fits; for the MLP, ``epoch_progress(epoch, max_epochs)`` follows each fit's epochs
    (it restarts at 1 for the refit; early stopping usually ends a fit well before the maximum).

    Unusable tables raise one ``AUTableError`` line naming ``description`` (or the table's file):
    no usable rows, fewer than ``MIN_FACES_PER_CLASS`` faces of an emotion, and the like."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in KINDS:
        raise FerError(f"kind {kind!r}: must be one of {', '.join(KINDS)}")
    classes = tuple(classes)
    columns = tuple(columns)
    name = description or au_table.table_name(table)
    ts = au_table.training_set(table, classes, columns, name=name, min_per_class=au_table.MIN_FACES_PER_CLASS)
    plan = plan_fit(ts, holdout, seed, max_rows, group_by)
    X_fit, y_fit = ts.X(plan.fit), ts.y[plan.fit]
    steps = 3

    def step(i: int) -> None:
        if progress:
            progress(i, steps)

    step(0)
    with fitting(name, kind):
        if kind == "au-logreg":
            cv = cv_folds(y_fit, None if plan.groups is None else plan.groups[plan.fit], seed)
            search = make_pipeline(StandardScaler(), LogisticRegressionCV(
                Cs=list(Cs), cv=cv, class_weight=class_weight, max_iter=2000, scoring="accuracy",
                l1_ratios=(0.0,), use_legacy_attributes=False))
            search.fit(X_fit, y_fit)
            chosen_C: float | None = float(np.ravel(search[-1].C_)[0])
            held_out = search
            step(1)
            final_estimator: Any = LogisticRegression(C=chosen_C, class_weight=class_weight, max_iter=2000)
        else:
            chosen_C = None
            held_out = _fit_weighted(make_pipeline(StandardScaler(), _make_mlp(seed, epoch_progress)),
                                     X_fit, y_fit, class_weight, plan.groups_of(plan.fit))
            step(1)
            final_estimator = _make_mlp(seed, epoch_progress)
        del X_fit
        predicted = predict_rows(held_out.predict, ts, plan.test)
        report = report_from_codes(ts.y[plan.test], predicted, classes)
        plan.score_videos(held_out.predict_proba, ts, classes)
        step(2)
        final = _fit_weighted(make_pipeline(StandardScaler(), final_estimator), ts.X(plan.final), ts.y[plan.final],
                              None if kind == "au-logreg" else class_weight,  # logreg weighs by its class_weight
                              None if kind == "au-logreg" else plan.groups_of(plan.final))
    step(3)
    scaler, estimator = final[0], final[-1]
    if kind == "au-logreg":
        weights, biases = [estimator.coef_.copy()], [estimator.intercept_.copy()]
    else:
        weights, biases = [w.copy() for w in estimator.coefs_], [b.copy() for b in estimator.intercepts_]
    if len(classes) == 2:  # scikit-learn keeps one output for two classes: make it a 2-way softmax
        axis = 0 if kind == "au-logreg" else 1
        weights[-1] = np.concatenate([-weights[-1] / 2, weights[-1] / 2], axis=axis)
        biases[-1] = np.concatenate([-biases[-1] / 2, biases[-1] / 2])
    held = report.to_dict()
    info = {
        "trained": utc_now(),  # SOURCE_DATE_EPOCH where set: the same fit, the same file
        "data": plan.data_info(ts, description),
        "settings": {"C": chosen_C, "class_weight": class_weight, "holdout": holdout, "seed": seed,
                     "max_rows": max_rows, **({"group_by": group_by} if group_by is not None else {}),
                     **({"hidden_layers": list(MLP_LAYERS), "early_stopping": early_stopping_note(
                         held_out[-1].early_stopping_ == "whole videos", final[-1].early_stopping_ == "whole videos")}
                                              if kind == "au-mlp" else {})},
        "metrics": {"holdout": {k: held[k] for k in ("n", "accuracy", "accuracy_ci95", "macro_f1",
                                                      "per_class", "labels", "confusion")}},
    }
    return AUModel(kind=kind, classes=classes, au_columns=columns, mean=scaler.mean_.copy(),
                   scale=scaler.scale_.copy(), weights=weights, biases=biases, info=info)


def balanced_weights(y: np.ndarray, class_weight: str | None) -> dict[str, np.ndarray]:
    """``fit`` keyword arguments that weight each row by the inverse of its class's frequency when
    ``class_weight`` is "balanced" (for learners without a ``class_weight`` option)."""
    if class_weight != "balanced":
        return {}
    from sklearn.utils.class_weight import compute_sample_weight

    return {"sample_weight": compute_sample_weight("balanced", y)}


def _fit_weighted(pipeline, X: np.ndarray, y: np.ndarray, class_weight: str | None,
                  groups: np.ndarray | None = None):
    """``pipeline.fit``, its last step given ``balanced_weights`` (and ``groups``: the MLP's videos)."""
    step = pipeline.steps[-1][0]
    extra = balanced_weights(y, class_weight) | ({} if groups is None else {"groups": groups})
    return pipeline.fit(X, y, **{f"{step}__{k}": v for k, v in extra.items()})


def early_stopping_note(held_out: bool, final: bool) -> str:
    """What the model file says of a learner's early stopping (``settings.early_stopping``): on
    "whole videos" or on "rows", for the held-out fit and the final one (the held-out fit has fewer
    videos, so the two can differ)."""
    if held_out == final:
        return "whole videos" if final else "rows"
    return f"{'whole videos' if final else 'rows'} (the held-out fit's: {'whole videos' if held_out else 'rows'})"


def inner_validation(y: np.ndarray, groups: np.ndarray | None, share: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """For a learner's own early stopping on a table of videos: (rows it fits, rows it validates
    on), whole videos on one side (``grouped_split``). Its own split by rows validates on near
    copies of the frames it fits, so it keeps fitting long after it has stopped learning anything
    that carries to another video. None: no video, or too few to split so (it splits by rows)."""
    if groups is None or not in_video(groups).any():
        return None
    return grouped_split(np.asarray(y), groups, share, seed)


def _make_mlp(seed: int, epoch_progress: Progress | None = None):
    """The original study's MLP: 300-200-100-50 ReLU, Adam, batch 50, early stopping (patience 7).

    ``epoch_progress(epoch, max_epochs)`` is called after every epoch. scikit-learn has no epoch
    callback, so a subclass hooks the step it runs once per epoch (``_update_no_improvement_count``,
    after the epoch's weight updates); the fit itself is unchanged."""
    from sklearn.neural_network import MLPClassifier

    class EpochReportingMLP(MLPClassifier):
        def _update_no_improvement_count(self, *args, **kwargs):
            super()._update_no_improvement_count(*args, **kwargs)
            if epoch_progress is not None:
                epoch_progress(len(self.loss_curve_), self.max_iter)  # n_iter_ restarts with each partial_fit

        def fit(self, X, y, sample_weight=None, groups=None):
            """scikit-learn's fit; with ``groups`` (a table of videos, ``inner_validation``), its
            early stopping validates on whole videos: the same rule (best validation accuracy
            kept, stop after ``n_iter_no_change`` epochs without a gain of ``tol``), one
            ``partial_fit`` epoch at a time on the fitting videos."""
            split = inner_validation(y, groups, self.validation_fraction, seed)
            if split is None:
                self.early_stopping_ = "rows"
                return super().fit(X, y, sample_weight=sample_weight)
            self.early_stopping_ = "whole videos"
            X, y = np.asarray(X), np.asarray(y)
            fit, val = split
            weights = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight)[fit]}
            # one RandomState for every epoch (an int seed would shuffle each epoch the same way)
            self.set_params(early_stopping=False, random_state=np.random.RandomState(seed))
            best, stale, kept = -np.inf, 0, None
            for _ in range(self.max_iter):
                self.partial_fit(X[fit], y[fit], classes=np.unique(y), **weights)
                score = self.score(X[val], y[val], None if sample_weight is None else np.asarray(sample_weight)[val])
                stale = stale + 1 if score < best + self.tol else 0
                if score > best:
                    best, kept = score, ([c.copy() for c in self.coefs_], [b.copy() for b in self.intercepts_])
                if stale > self.n_iter_no_change:
                    break
            self.coefs_, self.intercepts_ = kept
            self.best_validation_score_, self.n_iter_ = best, len(self.loss_curve_)
            self.set_params(early_stopping=True, random_state=seed)
            return self

    return EpochReportingMLP(hidden_layer_sizes=MLP_LAYERS, batch_size=50, early_stopping=True,
                             validation_fraction=1 / 3, n_iter_no_change=7, max_iter=300, random_state=seed)


# -- as a Predictor -------------------------------------------------------------------------
class AUPredictor(Predictor):
    """An AU model over the AUs the face pipeline measured; NaN rows where no face was measured.

    Bare face images (arrays) are measured here on the largest face, through the same
    ``measure_faces`` route as everything else; MediaPipe starts only then.
    """

    inputs = "aus"
    explains = True

    def __init__(self, model, name: str = "AU model") -> None:
        """``model``: an ``AUModel`` or any additive AU model with its interface (``AUGam``)."""
        if not all(hasattr(model, a) for a in ("kind", "classes", "au_columns", "explain")):
            raise FerError(_SKLEARN_HINT.format(what=type(model).__name__))
        self.model = model
        self.name = name
        self.kind = model.kind
        self.classes = model.classes
        unknown = [c for c in model.au_columns if c not in AU_COLUMNS]
        if unknown:
            raise ModelFileError(f"{name}: model uses unknown AU columns {', '.join(unknown)}")
        self._columns = [AU_COLUMNS.index(c) for c in model.au_columns]  # the model's AUs, in its order

    def au_matrix(self, faces: Sequence[FaceInput | np.ndarray]) -> np.ndarray:
        rows = []
        for face in faces:
            if isinstance(face, FaceInput):
                aus = face.aus if face.aus is not None else measure_largest_face(face.pixels)
            else:
                aus = measure_largest_face(face)
            rows.append(np.full(len(AU_COLUMNS), np.nan) if aus is None else np.asarray(aus, dtype=float))
        return np.array(rows, dtype=float).reshape(len(rows), len(AU_COLUMNS))

    def proba_from_aus(self, X: np.ndarray) -> np.ndarray:
        """Probabilities from (n, 17) AUs in the schema's order. A row with none of the model's
        own AUs known (no face measured, or a mask hides every AU a subset model uses) cannot be
        judged: a NaN row, counted wrong, not the intercept's guess counted as judged. Single
        unknown AUs (hidden by a mask) are left to the model, which treats them as uninformative."""
        return self.model.predict_proba(np.asarray(X, dtype=float).reshape(-1, len(AU_COLUMNS))[:, self._columns])

    def predict_proba(self, faces, progress: Progress | None = None) -> np.ndarray:
        proba = self.proba_from_aus(self.au_matrix(faces))
        if progress:
            progress(len(faces), len(faces))
        return proba

    def au_model(self) -> AUModel:
        return self.model

    def explain(self, face, top: int = 3) -> Explanation:
        x = self.au_matrix([face])[0]
        if np.isnan(x).all():
            raise FerError(f"{self.name}: no face was measured, so there is nothing to explain")
        if np.isnan(x[self._columns]).all():  # as proba_from_aus: no evidence, so no judgement to explain
            used = ", ".join(au_code(AU_COLUMNS[j]) for j in self._columns)
            raise FerError(f"{self.name}: none of the AUs this model uses ({used}) is known on this face, "
                           "so it cannot judge it")
        explanation = self.model.explain(x[self._columns], top)
        unknown = [au_code(AU_COLUMNS[j]) for j in self._columns if np.isnan(x[j])]
        if unknown:  # hidden by a mask: not evidence either way, and said so
            explanation = replace(explanation, extra={**explanation.extra, "unknown_aus": unknown})
        return explanation


def measure_largest_face(rgb: np.ndarray | None) -> np.ndarray | None:
    """The AUs of the largest face in an image, or None (measured in a crash-isolated worker)."""
    if rgb is None:
        return None
    from ..measure.extract import measure_image

    faces = measure_image(rgb)
    return faces[0].au_vector() if faces else None


# -- registry -------------------------------------------------------------------------------
def _load(path: Path, entry) -> AUPredictor:
    return AUPredictor(AUModel.load(path), name=entry.name)


def _save(model: AUModel, path: Path) -> list[Path]:
    model.save(path)
    return [path]


def _claims(kind: str):
    return json_format_claims(FORMAT, MAX_MODEL_JSON_BYTES, kind=kind)


def _kinds():
    from .registry import ModelKind

    return (
        ModelKind("au-logreg", "logistic regression over the 17 AUs (explainable: per-AU contributions sum "
                  "to the scores)", "aus", True, _load, _save, "{name}.json", _claims("au-logreg")),
        ModelKind("au-mlp", "the original study's MLP over the 17 AUs (explained by occluding each AU)",
                  "aus", True, _load, _save, "{name}.json", _claims("au-mlp")),
    )
