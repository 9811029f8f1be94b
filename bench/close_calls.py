"""How often each model's answer is a close call (runner-up within CLOSE_CALL_MARGIN of it) on
FER2013 val, and how often close and clear answers are right: the evidence behind the "a close
call" line of predict and Try it. The margin was fixed beforehand (0.10), not fitted here.

Runs ``run_comparison`` on the val folder (measurements and the networks' answers are cached, so a
rerun is quick); a face not found has no answer and is in neither group (``answered`` counts the rest).
Run: python bench/close_calls.py [--models au-logreg-fer2013,cnn-fer2013,...] [--limit N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _results import report

from fer_core.config import datasets_dir
from fer_core.emotions import CLOSE_CALL_MARGIN, SIX_EMOTIONS, close_call
from fer_core.evaluation.compare import run_comparison
from fer_core.evaluation.metrics import wilson_counts
from fer_core.images import list_images
from fer_core.measure.extract import default_workers

DEFAULT_MODELS = "au-logreg-fer2013,au-bottleneck-fer2013,cnn-fer2013,cnn-ensemble-fer2013"


def share(right: int, n: int) -> dict:
    lo, hi = wilson_counts(right, n)
    return {"n": n, "accuracy": round(right / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--limit", type=int, default=0, help="every k-th val image, about this many (0: all)")
    parser.add_argument("--out")
    args = parser.parse_args()
    items = [it for it in list_images(datasets_dir() / "fer2013" / "val") if it.label in SIX_EMOTIONS]
    if args.limit:
        items = items[::max(1, len(items) // args.limit)]
    comparison = run_comparison(args.models.split(","), items, classes=SIX_EMOTIONS, workers=default_workers())
    result = {"margin": CLOSE_CALL_MARGIN, "images": comparison.n, "models": {}}
    for name in comparison.names:
        model = comparison.reports[name]
        proba = np.asarray(comparison.probabilities[name], dtype=float)
        classes = comparison.model_classes[name]
        right = comparison.correct(name)
        judged = ~np.isnan(proba).any(axis=1)  # no face found: no answer, neither close nor clear
        close = np.array([close_call(dict(zip(classes, row))) is not None for row in proba]) & judged
        clear = judged & ~close
        result["models"][name] = {
            "accuracy": model.accuracy, "answered": int(judged.sum()),
            "close_share": round(float(close.sum() / max(judged.sum(), 1)), 4),
            "close": share(int(np.sum(right & close)), int(close.sum())),
            "clear": share(int(np.sum(right & clear)), int(clear.sum()))}
    if comparison.failed_models:
        result["failed_models"] = comparison.failed_models
    report(result, args.out)


if __name__ == "__main__":
    main()
