"""Reproduce the original study on its own OpenFace table (``seed-openface-au/emotion.csv``).

The study trained one MLP (Dense 300-200-100-50, Adam, batch 50, early stopping with patience 7,
25 % of rows held out, a third of the rest for validation) and reported 0.755 held-out accuracy on
one split. One split says little, so this runs that MLP and this project's logistic regression
(``fit_au_model``) on the same N stratified 75/25 splits (seeds seed..seed+N-1) and prints mean ± sd
accuracy and macro-F1, plus how many exact duplicate rows the table has and how many of them
straddle train and test (a copy in train makes its test twin easy). ``--gam`` adds the glass-box
AU GAM (``au-gam``, an Explainable Boosting Machine with interpret's default settings, predicted
from its exported JSON) and, as the black-box reference, scikit-learn's gradient boosting.

For a paper: each model's confusion counts summed over the splits (``confusion``), MLP against
logistic regression with the corrected resampled t-test (Nadeau & Bengio 2003: the splits share
rows, so a plain t-test over them is too confident), each mean's 95 % interval with the same
correction, and ``provenance`` (versions, commit, command, the table's SHA-256).

Run: python bench/reproduce_original.py [--splits 10] [--seed 0] [--table emotion.csv] [--gam] [--json]
"""

from __future__ import annotations

import os

# Thread counts before numpy/scikit-learn load: default BLAS/OpenMP threads were ~20x slower on
# the shared 2-core machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fer_core import au_table  # noqa: E402
from fer_core.au_table import AU_COLUMNS  # noqa: E402
from fer_core.config import openface_study_table  # noqa: E402
from fer_core.emotions import SIX_EMOTIONS  # noqa: E402
from fer_core.errors import FerError  # noqa: E402
from fer_core.predictors.au_models import fit_au_model, held_out_split, row_keys  # noqa: E402
from fer_core.provenance import file_sha256, provenance  # noqa: E402

ORIGINAL = {"model": "MLP 300-200-100-50", "accuracy": 0.755, "splits": 1,
            "source": "Happy-ryan/Face-Emotion-Recognition (one 75/25 split)"}
HOLDOUT = 0.25
MLP_LAYERS = (300, 200, 100, 50)


def original_mlp(seed: int):
    """The study's Keras MLP in scikit-learn terms (ReLU, Adam, batch 50, early stopping 7).

    Differences: scikit-learn's early stopping watches validation accuracy, not validation loss,
    and keeps the last weights rather than restoring the best ones.
    """
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=MLP_LAYERS, activation="relu", solver="adam", batch_size=50,
                         early_stopping=True, validation_fraction=1 / 3, n_iter_no_change=7,
                         max_iter=300, random_state=seed)


def duplicate_summary(rows: pd.DataFrame) -> dict:
    """Exact repeats (same AUs, same label) and AU vectors that carry two different labels."""
    keyed = rows[list(AU_COLUMNS) + ["label"]]
    per_vector = rows.groupby(list(AU_COLUMNS), sort=False)["label"].nunique()
    return {"duplicate_rows": int(keyed.duplicated().sum()),
            "conflicting_vectors": int((per_vector > 1).sum())}


def _scores(y_true: np.ndarray, pred: np.ndarray, classes) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    recalls = recall_score(y_true, pred, labels=range(len(classes)), average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, pred)), "macro_f1": float(f1_score(y_true, pred, average="macro")),
            "recall": {c: float(r) for c, r in zip(classes, recalls)}}


def reproduce(table: pd.DataFrame, splits: int = 10, seed: int = 0,
              progress=None, gam: bool = False, workers: int = 2) -> dict:
    """The MLP and logistic regression (with ``gam``, also a GAM and gradient boosting) on ``splits``
    stratified 75/25 splits (seeds seed..seed+splits-1).

    All see the identical split: it is drawn exactly as ``fit_au_model`` draws its hold-out
    (``held_out_split``: stratified, ``random_state = seed``, held-out copies of training rows
    trained on instead of scored).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
    from sklearn.preprocessing import StandardScaler

    classes = SIX_EMOTIONS
    X, y, rows = au_table.to_xy(table, classes)
    keys = row_keys(X, y)
    runs = []
    for k, s in enumerate(range(seed, seed + splits)):
        started = time.perf_counter()
        # the split fit_au_model draws: held-out copies of training rows are trained on, not scored
        idx_train, idx_test, crossing, _ = held_out_split(y, keys, HOLDOUT, s)

        scaler = StandardScaler().fit(X[idx_train])  # fit on training rows only
        mlp = original_mlp(s).fit(scaler.transform(X[idx_train]), y[idx_train])
        pred = mlp.predict(scaler.transform(X[idx_test]))
        recalls = recall_score(y[idx_test], pred, labels=range(len(classes)), average=None, zero_division=0)
        mlp_result = {"accuracy": float(accuracy_score(y[idx_test], pred)),
                      "macro_f1": float(f1_score(y[idx_test], pred, average="macro")),
                      "recall": {c: float(r) for c, r in zip(classes, recalls)},
                      "epochs": int(mlp.n_iter_),
                      "confusion": confusion_matrix(y[idx_test], pred, labels=range(len(classes))).tolist()}

        model = fit_au_model(table, classes=classes, kind="au-logreg", holdout=HOLDOUT, seed=s,
                             description="bench/reproduce_original.py")
        held = model.info["metrics"]["holdout"]
        if held["n"] != len(idx_test) or list(held.get("labels") or classes) != list(classes):
            raise RuntimeError("fit_au_model drew a different hold-out than this benchmark")
        lr_result = {"accuracy": float(held["accuracy"]), "macro_f1": float(held["macro_f1"]),
                     "recall": {c: held["per_class"][c]["accuracy"] for c in classes},
                     "C": model.info["settings"]["C"],
                     "confusion": [[int(v) for v in row[:len(classes)]] for row in held["confusion"]]}
        run = {"seed": s, "train": int(len(idx_train)), "test": int(len(idx_test)),
               "duplicates_across_split": crossing, "mlp": mlp_result, "logreg": lr_result}
        if gam:
            import warnings

            from sklearn.ensemble import HistGradientBoostingClassifier

            from fer_core.predictors.au_gam import AUGam, _make_ebm

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ebm = _make_ebm(s, None, 14, workers).fit(X[idx_train], y[idx_train])
            model_gam = AUGam.from_ebm(ebm, classes)
            run["gam"] = {**_scores(y[idx_test], model_gam.predict_proba(X[idx_test]).argmax(1), classes),
                          "pairs": [f"{a.split('_')[0]}x{b.split('_')[0]}" for a, b in model_gam.pairs]}
            gbm = HistGradientBoostingClassifier(random_state=s).fit(X[idx_train], y[idx_train])
            run["gbm"] = _scores(y[idx_test], gbm.predict(X[idx_test]), classes)
        run["seconds"] = round(time.perf_counter() - started, 2)
        runs.append(run)
        if progress:
            progress(k + 1, splits)

    share = runs[0]["test"] / runs[0]["train"]  # test rows per training row, for the corrected variance

    def summary(key: str) -> dict:
        out = {}
        for metric in ("accuracy", "macro_f1"):
            values = np.array([r[key][metric] for r in runs])
            out[f"{metric}_mean"] = round(float(values.mean()), 4)
            out[f"{metric}_sd"] = round(float(values.std(ddof=1)), 4) if len(values) > 1 else None  # one split: no spread
        if len(runs) > 1:
            out["accuracy_ci95_corrected"] = [round(v, 4) for v in corrected_interval(
                np.array([r[key]["accuracy"] for r in runs]), share)]
        out["recall_mean"] = {c: round(float(np.mean([r[key]["recall"][c] for r in runs])), 4) for c in classes}
        if "confusion" in runs[0][key]:
            out["confusion"] = np.sum([r[key]["confusion"] for r in runs], axis=0).tolist()  # rows: true, in classes' order
        return out

    crossing = [r["duplicates_across_split"] for r in runs]
    return {
        "rows": int(len(y)),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "splits": splits, "seeds": [seed, seed + splits - 1], "holdout": HOLDOUT,
        "original": ORIGINAL,
        "summary": {key: summary(key) for key in ("mlp", "logreg", "gam", "gbm") if key in runs[0]},
        "classes": list(classes),
        **({"mlp_vs_logreg": corrected_t_test(np.array([r["mlp"]["accuracy"] - r["logreg"]["accuracy"] for r in runs]),
                                              share)} if len(runs) > 1 else {}),
        "duplicates": {**duplicate_summary(rows),
                       "across_split_mean": round(float(np.mean(crossing)), 2),
                       "across_split_min": int(min(crossing)), "across_split_max": int(max(crossing))},
        "runs": runs,
    }


def corrected_interval(values: np.ndarray, test_per_train: float, level: float = 0.95) -> tuple[float, float]:
    """The mean's interval over repeated random splits with Nadeau and Bengio's corrected variance
    ((1/k + n_test/n_train) s^2): the splits share their rows, so s^2/k alone is too small."""
    from scipy import stats

    k = len(values)
    half = stats.t.ppf(0.5 + level / 2, k - 1) * np.sqrt((1 / k + test_per_train) * values.var(ddof=1))
    return float(values.mean() - half), float(values.mean() + half)


def corrected_t_test(differences: np.ndarray, test_per_train: float) -> dict:
    """Two models' accuracy differences on the same splits: mean, sd and the corrected resampled
    t-test's two-sided p (Nadeau & Bengio 2003, k - 1 degrees of freedom)."""
    from scipy import stats

    k = len(differences)
    se = np.sqrt((1 / k + test_per_train) * differences.var(ddof=1))
    mean = float(differences.mean())
    out = {"mean_difference": round(float(differences.mean()), 4), "sd": round(float(differences.std(ddof=1)), 4),
           "df": k - 1, "test": "corrected resampled t-test (Nadeau & Bengio 2003)"}
    if not se > 0:  # no spread between the splits (or one split): no test, not an infinite t with p = 0
        return {**out, "t": None, "p": None, "note": "the differences do not vary across the splits: no test"}
    t = mean / se
    return {**out, "t": round(t, 3), "p": float(2 * stats.t.sf(abs(t), k - 1))}


def format_report(result: dict, table_name: str = "emotion.csv") -> str:
    """The printed table: every model beside the original's single-split number."""
    s, d = result["summary"], result["duplicates"]
    n = result["splits"]
    lines = [
        f"{table_name}: {result['rows']} rows, "
        + ", ".join(f"{c} {k}" for c, k in result["class_counts"].items()),
        (f"{n} stratified 75/25 splits (seeds {result['seeds'][0]}..{result['seeds'][1]}), held-out scores, mean ± sd"
         if n > 1 else f"one stratified 75/25 split (seed {result['seeds'][0]}), held-out scores"),
        "",
        f"{'model':<40} {'accuracy':>16} {'macro-F1':>16}",
        f"{'original study: MLP, one split':<40} {ORIGINAL['accuracy']:>16.3f} {'-':>16}",
        f"{'MLP 300-200-100-50 (scikit-learn)':<40} {_pm(s['mlp'], 'accuracy'):>16} {_pm(s['mlp'], 'macro_f1'):>16}",
        f"{'logistic regression (au-logreg)':<40} {_pm(s['logreg'], 'accuracy'):>16} {_pm(s['logreg'], 'macro_f1'):>16}",
    ]
    if "gam" in s:
        lines += [
            f"{'glass-box GAM (au-gam, EBM)':<40} {_pm(s['gam'], 'accuracy'):>16} {_pm(s['gam'], 'macro_f1'):>16}",
            f"{'gradient boosting (black-box reference)':<40} {_pm(s['gbm'], 'accuracy'):>16} {_pm(s['gbm'], 'macro_f1'):>16}",
        ]
    lines += [
        "",
        f"{'recall per emotion':<40} " + " ".join(f"{c[:8]:>8}" for c in s["mlp"]["recall_mean"]),
        f"{'  MLP':<40} " + " ".join(f"{v:>8.2f}" for v in s["mlp"]["recall_mean"].values()),
        f"{'  logistic regression':<40} " + " ".join(f"{v:>8.2f}" for v in s["logreg"]["recall_mean"].values()),
    ]
    if "gam" in s:
        lines.append(f"{'  glass-box GAM':<40} " + " ".join(f"{v:>8.2f}" for v in s["gam"]["recall_mean"].values()))
    if "mlp_vs_logreg" in result:
        v = result["mlp_vs_logreg"]
        test = (f"t({v['df']}) = {v['t']:.2f}, p = {v['p']:.3g} ({v['test']})" if v["t"] is not None
                else v["note"])
        lines += ["", f"MLP - logistic regression: {v['mean_difference']:+.3f} accuracy (sd {v['sd']:.3f}), {test}"]
    lines += [
        "",
        f"duplicates: {d['duplicate_rows']} rows repeat an earlier row exactly (AUs and label); "
        f"{d['conflicting_vectors']} AU vectors carry two labels",
        f"duplicates across train/test: {d['across_split_mean']:g} test rows per split had an exact copy in "
        f"train (min {d['across_split_min']}, max {d['across_split_max']}); every model trains on them instead "
        "of scoring them",
    ]
    return "\n".join(lines)


def _pm(summary: dict, metric: str) -> str:
    sd = summary[metric + "_sd"]
    return f"{summary[metric + '_mean']:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=None, help="AU CSV (default: the study's emotion.csv)")
    parser.add_argument("--splits", type=int, default=10, help="number of stratified 75/25 splits (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="first split seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--gam", action="store_true", help="add the glass-box AU GAM and gradient boosting "
                        "(minutes per split)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the GAM's bagged fits (default 2)")
    args = parser.parse_args(argv)
    if args.splits < 1:
        parser.error("--splits must be at least 1")
    path = args.table or openface_study_table()
    try:
        table = au_table.read(path)
        if not args.json:
            print(f"running {args.splits} splits on {path} ...", file=sys.stderr)
        result = reproduce(table, splits=args.splits, seed=args.seed, gam=args.gam, workers=args.workers,
                           progress=None if args.json else
                           (lambda done, total: print(f"  split {done}/{total}", file=sys.stderr)))
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        command = "python bench/reproduce_original.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        print(json.dumps({"table": str(path), "table_sha256": file_sha256(path), **result,
                          "provenance": provenance(command.strip())}, indent=1))
    else:
        print(format_report(result, Path(path).name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
