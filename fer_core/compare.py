"""Run several predictors on exactly the same labelled images and compare them."""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import FerError
from .evaluate import evaluation_report, mcnemar
from .images import LabeledImage, load_image
from .predictors import Predictor, predicted_labels


def load_labeled(items: Sequence[LabeledImage]) -> tuple[list[np.ndarray], list[LabeledImage], list[str]]:
    """Decode images; unreadable ones are reported (one line each) and left out."""
    images, kept, problems = [], [], []
    for it in items:
        try:
            images.append(load_image(it.path))
            kept.append(it)
        except FerError as exc:
            problems.append(str(exc))
    return images, kept, problems


def predictions_table(predictors: Sequence[Predictor], items: Sequence[LabeledImage],
                      images: Sequence[np.ndarray], batch: int = 64,
                      progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per image: file, label, and for each model its prediction (None = no face) and
    its probability of the true label."""
    table = pd.DataFrame({"file": [str(it.path) for it in items], "label": [it.label for it in items]})
    steps = len(predictors) * max(1, -(-len(images) // batch))
    done = 0
    for p in predictors:
        if hasattr(p, "predict_items"):  # AU models: cached extraction over the files
            proba = p.predict_items(items)
            done += max(1, -(-len(images) // batch))
            if progress:
                progress(done, steps)
        else:
            probas = []
            for start in range(0, len(images), batch):
                probas.append(p.predict_proba(images[start:start + batch]))
                done += 1
                if progress:
                    progress(done, steps)
            proba = np.vstack(probas) if probas else np.zeros((0, len(p.classes)))
        table[p.name] = predicted_labels(p, proba)
        index = {c: i for i, c in enumerate(p.classes)}
        table[f"{p.name} p(true)"] = [
            float(row[index[lab]]) if lab in index and not np.isnan(row).any() else np.nan
            for row, lab in zip(proba, table["label"])]
    return table


def compare_report(table: pd.DataFrame, model_names: Sequence[str], classes: Sequence[str]) -> dict:
    """Per-model evaluation reports and pairwise McNemar tests on the same images."""
    keep = table["label"].isin(list(classes))
    t = table[keep]
    reports = {m: evaluation_report(t["label"], [None if pd.isna(v) else v for v in t[m]], classes, model=m)
               for m in model_names}
    correct = {m: (t[m] == t["label"]).to_numpy() for m in model_names}
    pairs = [{"a": a, "b": b, **mcnemar(correct[a], correct[b])} for a, b in combinations(model_names, 2)]
    wrong = {m: t.loc[~correct[m], "file"].tolist() for m in model_names}
    no_face = {m: t.loc[t[m].isna(), "file"].tolist() for m in model_names}
    return {"n": int(len(t)), "classes": list(classes), "models": reports, "mcnemar": pairs,
            "wrong": wrong, "no_face": no_face}


def per_emotion_frame(report: dict) -> pd.DataFrame:
    """Long table (model, emotion, accuracy, n) for grouped bar charts and CSV download."""
    rows = []
    for model, r in report["models"].items():
        for emotion, v in r["per_class"].items():
            rows.append({"model": model, "emotion": emotion, "accuracy": v["accuracy"], "n": v["n"]})
    return pd.DataFrame(rows)
