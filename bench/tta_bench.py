"""Test-time augmentation of the bundled CNNs: accuracy with no views, face + mirror, and ten crops.

The choice is made on the share of train a CNN held out from fitting (its sidecar's ``holdout``
and ``seed`` give the same stratified slice back); FER2013 val is scored for the record only.
A CNN trained without ``--holdout`` fitted all of train, so its slice column is left empty.

Run: python bench/tta_bench.py [--models cnn-fer2013-7,cnn-fer2013] [--out bench/results/tta.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_core.config import fer_split_dir
from fer_core.predictors.cnn import CNNPredictor, load_dataset, stratified_split
from fer_core.predictors.keras_io import TTA_CHOICES, predict_views, tta_views
from fer_core.predictors.registry import find_entry


def accuracy(predictor: CNNPredictor, x: np.ndarray, y: np.ndarray, tta: str) -> tuple[float, float]:
    started = time.perf_counter()
    proba = predict_views(predictor.model, x, tta, predictor.batch_size)
    return float((proba.argmax(1) == y).mean()), (time.perf_counter() - started) / len(y) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cnn-fer2013-7,cnn-fer2013")
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        entry = find_entry(name.strip())
        predictor = CNNPredictor(entry.file, name=entry.name)
        meta = predictor.metadata
        classes = predictor.classes
        val = load_dataset(fer_split_dir("val"), classes)
        slice_xy = None
        if meta.get("holdout"):
            train = load_dataset(meta["train_dir"], classes, seed=meta.get("seed", 0))
            _, held = stratified_split(train.y, meta["holdout"], meta.get("seed", 0))
            slice_xy = train.x[held], train.y[held]
        for tta in TTA_CHOICES:
            sel = accuracy(predictor, *slice_xy, tta) if slice_xy else (None, None)
            acc, ms = accuracy(predictor, val.x, val.y, tta)
            rows.append({"model": entry.name, "classes": len(classes), "tta": tta, "views": len(tta_views(val.x[:1], tta)),
                "train_slice_accuracy": sel[0], "n_slice": None if slice_xy is None else len(slice_xy[1]),
                "val_accuracy": acc, "n_val": len(val.y), "ms_per_face": ms, "runtime": predictor.runtime})
            print(f"{entry.name:16s} {tta:7s} slice {'-' if sel[0] is None else f'{sel[0]:.4f}':7s} "
                  f"val {acc:.4f}  {ms:.2f} ms/face ({predictor.runtime})", flush=True)
    print("\n| model | test-time views | train slice (chooses) | FER2013 val | ms per face |\n|---|---|---|---|---|")
    for r in rows:
        sel = "-" if r["train_slice_accuracy"] is None else f"{r['train_slice_accuracy']:.4f} (n={r['n_slice']:,})"
        print(f"| {r['model']} | {r['tta']} ({r['views']}) | {sel} | {r['val_accuracy']:.4f} | {r['ms_per_face']:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
