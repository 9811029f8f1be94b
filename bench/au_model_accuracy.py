"""Accuracy and macro-F1 of AU logistic regression on FER2013 val, six and seven emotions.

Uses the derived AU tables in data/ (regenerate with `make data`): the model is fit on
FER2013 train AUs and scored on val; faces not found count as wrong.
Run: python bench/au_model_accuracy.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd

from fer_core.config import DATA_DIR
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.predictors.au_models import AUModel, evaluate_on_table, fit_au_model
from fer_core.predictors.registry import find_entry


def score(model: AUModel, val: pd.DataFrame) -> dict:
    return evaluate_on_table(model, val, name=model.kind).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    train = pd.read_csv(DATA_DIR / "fer2013_train_au.csv.gz")
    val = pd.read_csv(DATA_DIR / "fer2013_val_au.csv.gz")
    results = {"bundled (six)": score(AUModel.load(find_entry("au-logreg-fer2013").file), val)}
    for name, classes, cw, kind in [("logreg six, balanced", SIX_EMOTIONS, "balanced", "au-logreg"),
                                    ("logreg seven", SEVEN_EMOTIONS, None, "au-logreg"),
                                    ("study MLP six", SIX_EMOTIONS, None, "au-mlp")]:
        results[name] = score(fit_au_model(train, classes, kind=kind, class_weight=cw), val)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'model':24s} {'n':>5} {'no face':>7} {'acc':>6} {'95% CI':>13} {'macroF1':>7}  per-emotion accuracy")
    for name, r in results.items():
        per = " ".join(f"{k} {v['accuracy']:.2f}" for k, v in r["per_class"].items())
        ci = f"{r['accuracy_ci95'][0]:.3f}-{r['accuracy_ci95'][1]:.3f}"
        print(f"{name:24s} {r['n']:>5} {r['no_face']:>7} {r['accuracy']:>6.3f} {ci:>13} {r['macro_f1']:>7.3f}  {per}")


if __name__ == "__main__":
    main()
