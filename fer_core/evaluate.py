"""Scores on a labelled test set: accuracy (with bootstrap CI), macro-F1, per-emotion accuracy,
confusion matrix, and McNemar's test between two models on the same images."""

from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np


def evaluation_report(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str],
                      model: str = "", n_boot: int = 2000, seed: int = 0) -> dict:
    """The evaluate command's JSON: predictions of None (no face) count as wrong and in no_face.

    ``confusion[i][j]`` counts images of ``labels[i]`` predicted as ``labels[j]``; no-face images
    are in ``no_face_per_class`` instead, so each row plus its no-face count is the class size.
    """
    classes = list(classes)
    y_true = list(y_true)
    y_pred = list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    no_face_per_class = np.zeros(k, dtype=int)
    correct = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=bool)
    for t, p in zip(y_true, y_pred):
        if t not in index:
            continue
        if p is None:
            no_face_per_class[index[t]] += 1
        elif p in index:
            confusion[index[t], index[p]] += 1
    per_class = {}
    f1s = []
    for c, i in index.items():
        n_c = int(confusion[i].sum() + no_face_per_class[i])
        tp = int(confusion[i, i])
        predicted_c = int(confusion[:, i].sum())
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / n_c if n_c else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        per_class[c] = {"n": n_c, "accuracy": round(recall, 4) if n_c else None}
    n = len(y_true)
    accuracy = float(correct.mean()) if n else 0.0
    lo, hi = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    return {
        "model": model,
        "n": n,
        "no_face": int(sum(p is None for p in y_pred)),
        "accuracy": round(accuracy, 4),
        "accuracy_ci95": [round(lo, 4), round(hi, 4)],
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
        "per_class": per_class,
        "labels": classes,
        "confusion": confusion.tolist(),
        "no_face_per_class": no_face_per_class.tolist(),
    }


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of a 0/1 vector."""
    correct = np.asarray(correct, dtype=float)
    if correct.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, correct.size, size=(n_boot, correct.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact (binomial) McNemar test on paired right/wrong outcomes of two models."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(~a & b))
    m = only_a + only_b
    if m == 0:
        p = 1.0
    else:
        tail = sum(comb(m, i) for i in range(0, min(only_a, only_b) + 1)) / 2 ** m
        p = min(1.0, 2 * tail)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p_value": round(p, 6)}
