"""Should an ensemble be bundled? Its members and their equal-weight mean on FER2013 val, chosen on
one stratified half of val ("val A") and reported on the other ("val B") and on all of val.

The members are fixed in advance (nothing is fitted); the only choice is whether the ensemble beats
its best member, and that choice sees val A only.

``--against``: models the ensemble must beat on val A too (the bundled ensemble it would replace).

``--stacked``: also fit weights instead of averaging (scikit-learn's logistic regression on the
members' log-probabilities, and on the log of their mean) on one half and score on the other, both
ways round: does a fitted combination beat the equal-weight mean on the half it did not see?

Run: python bench/ensemble_halves.py --members cnn-fer2013-7,au-bottleneck-fer2013-7 --classes seven
     [--against cnn-fer2013-7-scratch] [--out bench/results/ensemble_seven.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from fer_core.config import fer_split_dir
from fer_core.emotions import parse_classes
from fer_core.evaluation.compare import run_comparison
from fer_core.images import scan_images
from fer_core.measure.extract import default_workers
from fer_core.predictors.cnn import stratified_split
from fer_core.predictors.ensemble import EnsemblePredictor
from fer_core.predictors.registry import find_entry, load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", required=True, help="comma list of manifest names")
    parser.add_argument("--classes", default="seven")
    parser.add_argument("--name", default="ensemble")
    parser.add_argument("--against", default="", help="comma list of models it must also beat on val A")
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    parser.add_argument("--stacked", action="store_true", help="also fit a logistic regression on one half, score the other")
    args = parser.parse_args()

    classes = parse_classes(args.classes)
    members = [load_predictor(find_entry(name.strip())) for name in args.members.split(",")]
    ensemble = EnsemblePredictor(members, classes, name=args.name)
    rivals = [*members, *(load_predictor(find_entry(n.strip())) for n in args.against.split(",") if n.strip())]
    items = [it for it in scan_images(fer_split_dir("val")).items if it.label in classes]
    started = time.perf_counter()
    comparison = run_comparison([*rivals, ensemble], items, classes=classes, workers=default_workers())
    if comparison.failed_models:
        raise SystemExit("; ".join(comparison.failed_models))
    labels = comparison.table["label"].to_numpy()
    half_a, half_b = stratified_split(np.array([classes.index(label) for label in labels]), 0.5, 0)
    rows = []
    for name in comparison.names:
        right = comparison.correct(name)
        rows.append({"model": name, "val_a_accuracy": float(right[half_a].mean()),
                     "val_b_accuracy": float(right[half_b].mean()), "val_accuracy": float(right.mean()),
                     "n_val": len(right)})
        print(f"{name:28s} val A {rows[-1]['val_a_accuracy']:.4f}  val B {rows[-1]['val_b_accuracy']:.4f}  "
              f"all {rows[-1]['val_accuracy']:.4f}  (n {len(right)})")
    scored = {row["model"]: row for row in rows}
    best_member = max((scored[m.name] for m in rivals), key=lambda r: r["val_a_accuracy"])
    mean = scored[ensemble.name]
    keep = mean["val_a_accuracy"] > best_member["val_a_accuracy"]
    verdict = (f"{'bundle' if keep else 'do not bundle'}: on val A the ensemble scores "
               f"{mean['val_a_accuracy']:.4f}, the best of its members and rivals ({best_member['model']}) {best_member['val_a_accuracy']:.4f}")
    print(verdict)
    stacked = stacking(comparison, [m.name for m in members], ensemble.name, classes, half_a, half_b) if args.stacked else []
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        command = "python bench/ensemble_halves.py " + shlex.join(sys.argv[1:])
        Path(args.out).write_text(json.dumps({"rows": rows, "verdict": verdict, "classes": list(classes),
                                              "stacked": stacked, "command": command}, indent=1) + "\n")


def stacking(comparison, members: list[str], mean_name: str, classes, half_a, half_b) -> list[dict]:
    """Logistic regressions fitted on one half of val, scored on the other, beside the equal-weight
    mean on that same other half."""
    from sklearn.linear_model import LogisticRegression

    y = np.array([classes.index(label) for label in comparison.table["label"]])
    probs = [comparison.probabilities[m][:, [comparison.model_classes[m].index(c) for c in classes]]
             for m in members]
    probs = [p / p.sum(axis=1, keepdims=True) for p in probs]  # on the ensemble's emotions, as it averages them
    inputs = {"members' log p": np.hstack([np.log(p + 1e-6) for p in probs]),
              "log of the mean": np.log(np.mean(probs, axis=0) + 1e-6)}
    mean_right = comparison.correct(mean_name)
    out = []
    for fitted_on, scored_on, fit, score in (("A", "B", half_a, half_b), ("B", "A", half_b, half_a)):
        for label, x in inputs.items():
            for c in (0.01, 0.1, 1.0):
                model = LogisticRegression(C=c, max_iter=2000).fit(x[fit], y[fit])
                row = {"fitted_on": fitted_on, "scored_on": scored_on, "input": label, "C": c,
                       "accuracy": float((model.predict(x[score]) == y[score]).mean()),
                       "mean_accuracy": float(mean_right[score].mean())}
                out.append(row)
                print(f"stacked on {label:16s} C={c:<5} fitted on val {fitted_on}, val {scored_on}: "
                      f"{row['accuracy']:.4f} (equal-weight mean {row['mean_accuracy']:.4f})")
    return out


if __name__ == "__main__":
    main()
