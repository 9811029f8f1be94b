"""Test-time augmentation of the bundled CNNs and AU-bottleneck networks: accuracy with no views,
face + mirror, and ten crops (for a bottleneck network, its AU units are averaged over the views and
its head applied to the average, as it predicts).

The choice is made on data the CNN never fitted: the share of train it held out (its sidecar's
``holdout`` and ``seed`` give the same stratified slice back) or, for a CNN that fitted all of
train, a stratified half of FER2013 val ("val A"); the other half ("val B") is reported untouched
by the choice, beside all of val.

Run: python bench/tta_bench.py [--models cnn-fer2013-7,cnn-fer2013,au-bottleneck-fer2013-7] [--out bench/results/tta.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_core.config import fer_split_dir
from fer_core.predictors.au_bottleneck import AUBottleneckPredictor, au_units
from fer_core.predictors.base import Predictor
from fer_core.predictors.cnn import copies_to_fitting, load_dataset, recorded_folder, stratified_split
from fer_core.predictors.keras_io import TTA_CHOICES, predict_views, tta_views
from fer_core.predictors.registry import find_entry, load_predictor


def predictions(predictor: Predictor, x: np.ndarray, tta: str) -> tuple[np.ndarray, float]:
    """Probabilities with ``tta`` views, and the milliseconds per face they took."""
    started = time.perf_counter()
    if isinstance(predictor, AUBottleneckPredictor):
        units = au_units(predictor.network, x, predictor.batch_size, tta)
        proba = predictor.head.predict_proba(predictor.mean + predictor.std * units)
    else:
        proba = predict_views(predictor.model, x, tta, predictor.batch_size)
    return proba, (time.perf_counter() - started) / len(x) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn-fer2013-7,cnn-fer2013")
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        entry = find_entry(name.strip())
        predictor = load_predictor(entry)
        meta = predictor.metadata
        classes = predictor.classes
        val = load_dataset(fer_split_dir("val"), classes)
        slice_xy = None
        if meta.get("holdout"):
            train = load_dataset(recorded_folder(meta["train_dir"]), classes, seed=meta.get("seed", 0))
            fit, held = stratified_split(train.y, meta["holdout"], meta.get("seed", 0))
            if "held_out_copies_moved" in meta:  # its held-out copies of fitted images were fitted
                fit, held, _ = copies_to_fitting(train.paths, fit, held, train.y)
            slice_xy = train.x[held], train.y[held]
        half_a, half_b = stratified_split(val.y, 0.5, 0)
        for tta in TTA_CHOICES:
            proba, ms = predictions(predictor, val.x, tta)
            right = proba.argmax(1) == val.y
            row = {"model": entry.name, "classes": len(classes), "tta": tta, "views": len(tta_views(val.x[:1], tta)),
                   "train_slice_accuracy": None, "n_slice": None, "val_a_accuracy": float(right[half_a].mean()),
                   "val_b_accuracy": float(right[half_b].mean()), "val_accuracy": float(right.mean()),
                   "n_val": len(val.y), "ms_per_face": ms, "runtime": predictor.runtime}
            if slice_xy:
                sel, _ = predictions(predictor, slice_xy[0], tta)
                row.update(train_slice_accuracy=float((sel.argmax(1) == slice_xy[1]).mean()), n_slice=len(slice_xy[1]))
            rows.append(row)
            print(row, flush=True)
    print("\n| model | test-time views | chooses: train slice or val A | val B | all val | ms per face |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        sel = (f"slice {r['train_slice_accuracy']:.4f}" if r["train_slice_accuracy"] is not None
               else f"val A {r['val_a_accuracy']:.4f}")
        print(f"| {r['model']} | {r['tta']} ({r['views']}) | {sel} | {r['val_b_accuracy']:.4f} | "
              f"{r['val_accuracy']:.4f} | {r['ms_per_face']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
