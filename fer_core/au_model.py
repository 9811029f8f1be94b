"""The explainable AU model: standardised multinomial logistic regression over the 17 AUs.

Optional second kind: the original study's MLP (300-200-100-50). Both are saved as plain JSON
(classes, AU names, scaler, weights, training description, metrics) — never pickle — and explain
each prediction as per-AU contributions to the class scores.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .aus import AU_COLUMNS, au_label
from .emotions import SIX_EMOTIONS, normalize_emotion
from .errors import AUTableError, ModelFileError
from .evaluate import evaluation_report

FORMAT = "fer-au-model/1"
KINDS = ("au-logreg", "au-mlp")
MLP_LAYERS = (300, 200, 100, 50)


@dataclass
class AUModel:
    """A fitted AU model; ``predict_proba`` takes an (n, 17) array of AU intensities."""

    kind: str
    classes: tuple[str, ...]
    au_columns: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]  # logreg: [coef (k, d)]; mlp: [W1 (d, h1), ..., Wout (h, k)]
    biases: list[np.ndarray]
    info: dict = field(default_factory=dict)  # training data description, settings, metrics

    # -- prediction -------------------------------------------------------------------------
    def standardise(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def logits(self, X: np.ndarray) -> np.ndarray:
        h = self.standardise(X)
        if self.kind == "au-logreg":
            return h @ self.weights[0].T + self.biases[0]
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        return h @ self.weights[-1] + self.biases[-1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(X).argmax(axis=1)]

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

    def explain(self, x: np.ndarray, top: int = 3) -> dict:
        """Predicted class, probabilities and the AUs that pushed towards it (and against it).

        Contributions are centred over classes (softmax ignores a shift common to all classes),
        so a positive value means "this AU favours the predicted emotion over the others".
        """
        x = np.asarray(x, dtype=np.float64)
        proba = self.predict_proba(x.reshape(1, -1))[0]
        k = int(proba.argmax())
        contrib = self.contributions(x)
        centred = contrib[k] - contrib.mean(axis=0)
        order = np.argsort(-centred)
        items = [{"au": self.au_columns[d].split("_")[0], "name": au_label(self.au_columns[d]),
                  "intensity": round(float(x[d]), 3), "contribution": round(float(centred[d]), 4)}
                 for d in order]
        return {
            "emotion": self.classes[k],
            "probabilities": {c: round(float(p), 4) for c, p in zip(self.classes, proba)},
            "top_aus": [it for it in items[:top] if it["contribution"] > 0],
            "against": [it for it in items[::-1][:top] if it["contribution"] < 0],
            "sentence": explanation_sentence(self.classes[k], items, top),
        }

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "kind": self.kind, "classes": list(self.classes),
            "au_columns": list(self.au_columns), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "weights": [w.tolist() for w in self.weights], "biases": [b.tolist() for b in self.biases],
            "info": self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write JSON; returns the file's sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_dict(), indent=1).encode()
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def from_dict(cls, d: dict, name: str = "model") -> "AUModel":
        try:
            if d.get("format") != FORMAT or d.get("kind") not in KINDS:
                raise ValueError
            model = cls(kind=d["kind"], classes=tuple(d["classes"]), au_columns=tuple(d["au_columns"]),
                        mean=np.array(d["mean"], float), scale=np.array(d["scale"], float),
                        weights=[np.array(w, float) for w in d["weights"]],
                        biases=[np.array(b, float) for b in d["biases"]], info=d.get("info", {}))
        except (ValueError, KeyError, TypeError):
            raise ModelFileError(f"{name}: not an AU model file of this workbench ({FORMAT})") from None
        if len(model.mean) != len(model.au_columns) or len(model.biases[-1]) != len(model.classes):
            raise ModelFileError(f"{name}: AU model file is inconsistent (sizes do not match); retrain it")
        return model

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "AUModel":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"{path}: model file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"{path}: not a JSON AU model; pick a .json file saved by this workbench") from None
        return cls.from_dict(d, name=str(path))


ACTIVE_INTENSITY = 0.5  # below this an AU reads as "absent" in sentences


def explanation_sentence(emotion: str, ranked: Sequence[dict], top: int = 3) -> str:
    """'happy, mostly because of AU12 lip corner puller (3.8) and AU06 cheek raiser (2.9); AU04
    brow lowerer is absent.' Active AUs come first; an absent AU is named only when its absence
    is among the strongest reasons."""
    pos = [it for it in ranked if it["contribution"] > 0]
    active = [it for it in pos if it["intensity"] >= ACTIVE_INTENSITY][:top]
    absent = [it for it in pos[:top] if it["intensity"] < ACTIVE_INTENSITY][:1]
    if not active and not absent:
        return f"{emotion}: no single AU stands out; the face is closest to this emotion overall."
    parts = [f"{it['name']} ({it['intensity']:.1f})" for it in active]
    text = emotion
    if parts:
        text += ", mostly because of " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
    if absent:
        text += ("; " if parts else ", because ") + f"{absent[0]['name']} is absent"
    return text + "."


def _labelled_first_faces(table: pd.DataFrame, columns: Sequence[str], classes: Sequence[str],
                          purpose: str) -> tuple[pd.DataFrame, pd.Series]:
    """First-face rows whose label (aliases allowed) is in ``classes``, with normalised labels."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise AUTableError(f"AU table lacks columns {', '.join(missing)}; extract or import AUs first")
    if "label" not in table.columns:
        raise AUTableError(f"AU table has no 'label' column; {purpose} needs a labelled table")
    rows = table
    if "face" in rows.columns:
        rows = rows[rows["face"].fillna(0).astype(int) == 0]
    labels = rows["label"].map(lambda v: normalize_emotion(v) if isinstance(v, str) else None)
    keep = labels.isin(list(classes))
    return rows[keep], labels[keep]


def evaluate_on_table(model: AUModel, table: pd.DataFrame, name: str = "") -> dict:
    """The evaluate report of an AU model on a labelled AU table (first face of each image);
    images whose face was not found (no AUs) count as wrong and in ``no_face``."""
    rows, labels = _labelled_first_faces(table, model.au_columns, model.classes, "evaluation")
    if rows.empty:
        raise AUTableError(f"AU table has no rows labelled {', '.join(model.classes)}")
    X = rows[list(model.au_columns)].to_numpy(dtype=float)
    found = ~np.isnan(X).any(axis=1)
    if "success" in rows.columns:
        found &= rows["success"].fillna(0).astype(float).to_numpy() > 0
    predicted: list[str | None] = [None] * len(rows)
    if found.any():
        for i, label in zip(np.flatnonzero(found), model.predict(X[found])):
            predicted[i] = label
    return evaluation_report(labels.tolist(), predicted, model.classes, model=name)


# -- training -------------------------------------------------------------------------------
def training_data(table: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Usable rows of an AU table: successful first faces with a label in ``classes``."""
    rows, labels = _labelled_first_faces(table, AU_COLUMNS, classes, "training")
    if "success" in rows.columns:
        ok = rows["success"].astype(float) > 0
        rows, labels = rows[ok], labels[ok]
    complete = rows[list(AU_COLUMNS)].notna().all(axis=1)
    rows, labels = rows[complete], labels[complete]
    if rows.empty:
        raise AUTableError(f"AU table has no usable rows labelled {', '.join(classes)}")
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    absent = [c for i, c in enumerate(classes) if not (y == i).any()]
    if absent:
        raise AUTableError(f"AU table has no usable rows of {', '.join(absent)}; choose emotions present in the table")
    return rows[list(AU_COLUMNS)].to_numpy(dtype=np.float64), y, rows


def fit_au_model(table: pd.DataFrame, classes: Sequence[str] = SIX_EMOTIONS, kind: str = "au-logreg",
                 class_weight: str | None = None, holdout: float = 0.25, seed: int = 0,
                 Cs: Sequence[float] = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                 description: str = "", progress=None) -> AUModel:
    """Fit on a stratified (1 - holdout) share, report metrics on the held-out rest, then refit
    on all rows with the chosen settings. ``C`` is chosen by 5-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    classes = tuple(classes)
    X, y, rows = training_data(table, classes)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    Xs = (X - mean) / scale
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=holdout, stratify=y, random_state=seed)

    def make(C: float):
        if kind == "au-logreg":
            return LogisticRegression(C=C, class_weight=class_weight, max_iter=2000)
        return _make_mlp(seed)

    chosen_C = None
    if kind == "au-logreg":
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        scores = []
        for i, C in enumerate(Cs):
            scores.append(cross_val_score(make(C), Xs[idx_train], y[idx_train], cv=cv).mean())
            if progress:
                progress(i + 1, len(Cs) + 2)
        chosen_C = float(Cs[int(np.argmax(scores))])
    held_out = make(chosen_C).fit(Xs[idx_train], y[idx_train])
    y_pred = held_out.predict(Xs[idx_test])
    report = evaluation_report([classes[i] for i in y[idx_test]], [classes[i] for i in y_pred], classes)
    if progress:
        progress(len(Cs) + 1, len(Cs) + 2)
    final = make(chosen_C).fit(Xs, y)
    if progress:
        progress(len(Cs) + 2, len(Cs) + 2)
    if kind == "au-logreg":
        weights, biases = [final.coef_], [final.intercept_]
    else:
        weights, biases = [w for w in final.coefs_], [b for b in final.intercepts_]
    if len(classes) == 2:  # scikit-learn keeps one output for two classes: make it a 2-way softmax
        axis = 0 if kind == "au-logreg" else 1
        weights[-1] = np.concatenate([-weights[-1] / 2, weights[-1] / 2], axis=axis)
        biases[-1] = np.concatenate([-biases[-1] / 2, biases[-1] / 2])
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    info = {
        "trained": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"description": description, "rows": int(len(y)), "class_counts": counts,
                 "source": sorted(set(map(str, rows["source"].dropna()))) if "source" in rows else []},
        "settings": {"C": chosen_C, "class_weight": class_weight, "holdout": holdout, "seed": seed,
                     **({"hidden_layers": list(MLP_LAYERS)} if kind == "au-mlp" else {})},
        "metrics": {"holdout": {k: report[k] for k in ("n", "accuracy", "accuracy_ci95", "macro_f1",
                                                        "per_class", "labels", "confusion")}},
    }
    return AUModel(kind=kind, classes=classes, au_columns=tuple(AU_COLUMNS), mean=mean, scale=scale,
                   weights=weights, biases=biases, info=info)


def _make_mlp(seed: int):
    """The original study's MLP: 300-200-100-50 ReLU, Adam, batch 50, early stopping (patience 7)."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=MLP_LAYERS, batch_size=50, early_stopping=True,
                         validation_fraction=1 / 3, n_iter_no_change=7, max_iter=300, random_state=seed)
