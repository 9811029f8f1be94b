"""Accuracy and macro-F1 of the AU models on FER2013 val, six and seven emotions.

Uses the derived AU tables in data/ (regenerate with `make data`): each model is fit on FER2013
train AUs and scored on val; faces not measured count as wrong. "detector faces" scores the same
models on the val images whose face the detector found (what the tables held before crops were
measured whole). ``--gam`` adds the glass-box AU GAM (about 20 minutes on 2 cores).
Run: python bench/au_model_accuracy.py [--gam] [--json] [--compare-model OLD.json]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd

from fer_core.config import data_dir
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.evaluation.compare import evaluate_au_table
from fer_core.predictors.au_models import AUModel, AUPredictor, fit_au_model
from fer_core.predictors.registry import find_entry


def score(model: AUModel, val: pd.DataFrame) -> dict:
    """The model on the table as ``evaluate --au-table`` scores it."""
    return evaluate_au_table(AUPredictor(model, name=model.kind), val).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--gam", action="store_true", help="add the glass-box AU GAM (minutes)")
    parser.add_argument("--compare-model", help="another AU model file to score beside the bundled one")
    args = parser.parse_args()
    train = pd.read_csv(data_dir() / "fer2013_train_au.csv.gz")
    val = pd.read_csv(data_dir() / "fer2013_val_au.csv.gz")
    detector = val[val["confidence"] > 0]
    bundled = AUModel.load(find_entry("au-logreg-fer2013").file)
    results = {"bundled (six)": score(bundled, val), "bundled, detector faces": score(bundled, detector)}
    if args.compare_model:
        other = AUModel.load(args.compare_model)
        results["compared (six)"] = score(other, val)
        results["compared, detector faces"] = score(other, detector)
    for name, classes, cw, kind in [("logreg six, balanced", SIX_EMOTIONS, "balanced", "au-logreg"),
                                    ("logreg seven", SEVEN_EMOTIONS, None, "au-logreg"),
                                    ("study MLP six", SIX_EMOTIONS, None, "au-mlp")]:
        results[name] = score(fit_au_model(train, classes, kind=kind, class_weight=cw), val)
    if args.gam:
        import warnings

        from fer_core import au_table
        from fer_core.predictors.au_gam import AUGam, _make_ebm

        X, y, _ = au_table.to_xy(train, SIX_EMOTIONS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            gam = AUGam.from_ebm(_make_ebm(0, None, 14, 2).fit(X, y), SIX_EMOTIONS)
        results["GAM six (au-gam)"] = score(gam, val)
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
