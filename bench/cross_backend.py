"""Cross-backend check: does an AU model trained on one AU backend work on the other's AUs, and
does a per-AU quantile calibration (``fer_core.measure.calibration``) close the gap?

Backends: "embedded" = this project's MediaPipe extractor (``data/fer2013_{train,val}_au.csv.gz``),
"OpenFace" = the original study's OpenFace 2 table (``seed-openface-au/emotion.csv``). Six emotions,
successful first faces only. The AU model is ``fit_au_model(kind="au-logreg")`` throughout.

(a) per-AU scale table: embedded FER2013 train vs OpenFace (mean, sd, share of exact zeros,
    median, p90, Wasserstein-1, KS, class-profile correlation) and W1 left after calibrating
    embedded *val* onto the OpenFace scale;
(b) accuracy / macro-F1:
    - LR trained on OpenFace -> embedded FER2013 val: raw, and mapped embedded->OpenFace scale
      (map fitted on embedded *train* vs the OpenFace table, never on val);
    - LR trained on embedded train -> the OpenFace table: raw, and mapped OpenFace->embedded scale.
      The map must not see the rows it scores, so it is cross-fitted: the OpenFace table is split
      into two stratified halves and each half is mapped with a map fitted on the other half;
    - within-backend references: embedded train -> val; OpenFace 25 % stratified hold-out
      (``fit_au_model``'s own hold-out metric).
    Calibrations: "quantile" (marginal per-AU quantile map), "quantile, class-balanced" (each
    emotion weighted equally on both sides when fitting, so the tables' different label mixes do not
    pass for scale differences), and "mean/sd match" (per-AU linear rescaling, for contrast);
    "p vs raw" is an exact McNemar test against the raw row on the same faces;
(c) scale or meaning? The first (b) block again with both LRs refitted on only the AUs whose class
    profiles agree across the two training tables (profile r >= 0.7 in (a)).

Run: python bench/cross_backend.py [--json] [--save-map models/calibration_mediapipe_to_openface.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from fer_core import au_table  # noqa: E402
from fer_core.au_table import AU_COLUMNS  # noqa: E402
from fer_core.config import data_dir, openface_study_table  # noqa: E402
from fer_core.emotions import SIX_EMOTIONS  # noqa: E402
from fer_core.errors import FerError  # noqa: E402
from fer_core.evaluation.metrics import evaluation_report, mcnemar  # noqa: E402
from fer_core.measure.calibration import fit_quantile_map, scale_report  # noqa: E402
from fer_core.predictors.au_models import fit_au_model  # noqa: E402

CLASSES = SIX_EMOTIONS
AGREE_R = 0.7  # (c): keep AUs whose class profiles correlate at least this much across backends


def usable(table: pd.DataFrame) -> pd.DataFrame:
    """Successful first faces labelled in the six emotions (what the AU model trains and scores on)."""
    return au_table.to_xy(table, CLASSES)[2]


def score(model, rows: pd.DataFrame, name: str) -> dict:
    X = rows[list(AU_COLUMNS)].to_numpy(dtype=float)
    pred = model.predict(X)
    rep = evaluation_report(rows["label"].tolist(), pred, CLASSES, model=name).to_dict()
    return {"name": name, "n": rep["n"], "accuracy": rep["accuracy"], "accuracy_ci95": rep["accuracy_ci95"],
            "macro_f1": rep["macro_f1"],
            "recall": {c: rep["per_class"][c]["accuracy"] for c in CLASSES},
            "_correct": np.array(pred) == rows["label"].to_numpy()}


def versus_raw(block: list[dict]) -> list[dict]:
    """McNemar p of each calibrated row against the raw row (same faces); drops the paired vectors."""
    raw = block[1]["_correct"]
    for i, r in enumerate(block):
        if i >= 2 and r["_correct"] is not None and len(r["_correct"]) == len(raw):
            r["p_vs_raw"] = mcnemar(r["_correct"], raw).p_value
        else:
            r["p_vs_raw"] = None
    for r in block:
        r.pop("_correct", None)
    return block


def zero_out(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Remove AUs from a model's view: a constant column standardises to 0 and never contributes."""
    out = rows.copy()
    out[columns] = 0.0
    return out


def mean_sd_map(source: pd.DataFrame, target: pd.DataFrame):
    """Per-AU linear map matching mean and sd (clipped to 0..5)."""
    s, t = source[list(AU_COLUMNS)], target[list(AU_COLUMNS)]
    ms, ss, mt, st = s.mean(), s.std().replace(0, 1), t.mean(), t.std()

    def apply(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.copy()
        out[list(AU_COLUMNS)] = ((rows[list(AU_COLUMNS)] - ms) / ss * st + mt).clip(0, 5)
        return out
    return apply


def halves(rows: pd.DataFrame, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(rows)), rows["label"])
    return [test for _, test in folds]


def cross_fitted(rows: pd.DataFrame, fit_map, seed: int) -> pd.DataFrame:
    """Each half of ``rows`` mapped by ``fit_map(other half)``; rows keep their order."""
    parts = []
    for idx in halves(rows, seed):
        other = rows.drop(rows.index[idx])
        parts.append(fit_map(other)(rows.iloc[idx]))
    return pd.concat(parts).loc[rows.index]


def run(train_path: Path, val_path: Path, openface_path: Path, seed: int, n_quantiles: int,
        log=print) -> dict:
    t0 = time.time()
    emb_train_all = pd.read_csv(train_path)
    emb_val_all = pd.read_csv(val_path)
    of_all = au_table.read(openface_path)
    emb_train, emb_val, of = usable(emb_train_all), usable(emb_val_all), usable(of_all)
    log(f"rows: embedded train {len(emb_train)}, embedded val {len(emb_val)}, OpenFace {len(of)} "
        f"(successful first faces, six emotions)")

    # maps, fitted on training data only
    def quantile(src, tgt, balanced):
        cal = fit_quantile_map(src, tgt, n_quantiles=n_quantiles, classes=CLASSES if balanced else None)
        return lambda rows: cal.apply(rows, check_source=False)

    e2o = {"quantile": quantile(emb_train, of, False),
           "quantile, class-balanced": quantile(emb_train, of, True),
           "mean/sd match": mean_sd_map(emb_train, of)}

    # (a) scale table; W1 after: embedded val mapped onto the OpenFace scale vs OpenFace
    scales = scale_report(emb_train, of, classes=CLASSES)
    for name in ("quantile", "quantile, class-balanced"):
        after = scale_report(e2o[name](emb_val), of, classes=CLASSES)
        scales[f"w1_after_{'balanced' if 'balanced' in name else 'quantile'}"] = after["w1"]
    scales["w1_val_raw"] = scale_report(emb_val, of, classes=CLASSES)["w1"]

    # (b) models
    log("fitting LR on OpenFace …")
    m_of = fit_au_model(of, CLASSES, seed=seed, description=str(openface_path))
    log("fitting LR on embedded train …")
    m_emb = fit_au_model(emb_train, CLASSES, seed=seed, description=str(train_path))

    forward = [score(m_emb, emb_val, "within embedded: train -> val (reference)"),
               score(m_of, emb_val, "raw")]
    for name, f in e2o.items():
        forward.append(score(m_of, f(emb_val), name))

    h = m_of.info["metrics"]["holdout"]
    reverse = [{"name": "within OpenFace: 25% hold-out (reference)", "n": h["n"], "accuracy": h["accuracy"],
                "accuracy_ci95": h["accuracy_ci95"], "macro_f1": h["macro_f1"],
                "recall": {c: h["per_class"][c]["accuracy"] for c in CLASSES}, "_correct": None},
               score(m_emb, of, "raw")]
    o2e_fitters = {"quantile": lambda part: quantile(part, emb_train, False),
                   "quantile, class-balanced": lambda part: quantile(part, emb_train, True),
                   "mean/sd match": lambda part: mean_sd_map(part, emb_train)}
    for name, fit_map in o2e_fitters.items():
        reverse.append(score(m_emb, cross_fitted(of, fit_map, seed), name + " (2-fold cross-fitted map)"))

    # (c) is it scale or meaning? Keep only AUs whose class profiles agree across the two training
    # tables (profile r from (a), computed on embedded train and OpenFace, never on val) and redo
    # the forward direction with both LRs refitted on that subset.
    agree = [r for r in scales.index if scales.loc[r, "profile_r"] >= AGREE_R]
    drop = [c for c in AU_COLUMNS if c not in agree]
    log(f"fitting both LRs on the {len(agree)} AUs with profile r >= {AGREE_R} …")
    m_of_s = fit_au_model(zero_out(of, drop), CLASSES, seed=seed)
    m_emb_s = fit_au_model(zero_out(emb_train, drop), CLASSES, seed=seed)
    subset = [score(m_emb_s, zero_out(emb_val, drop), "within embedded: train -> val (reference)"),
              score(m_of_s, zero_out(emb_val, drop), "raw")]
    for name in ("quantile", "quantile, class-balanced"):
        subset.append(score(m_of_s, zero_out(e2o[name](emb_val), drop), name))

    return {"rows": {"embedded_train": len(emb_train), "embedded_val": len(emb_val), "openface": len(of)},
            "inputs": {"embedded_train": str(train_path), "embedded_val": str(val_path),
                       "openface": str(openface_path)},
            "settings": {"seed": seed, "n_quantiles": n_quantiles, "C_openface": m_of.info["settings"]["C"],
                         "C_embedded": m_emb.info["settings"]["C"]},
            "scales": scales.reset_index().round(4).to_dict(orient="records"),
            "openface_to_embedded_val": versus_raw(forward), "embedded_to_openface": versus_raw(reverse),
            "agreeing_aus": {"threshold": AGREE_R, "aus": agree,
                             "openface_holdout": m_of_s.info["metrics"]["holdout"]["accuracy"],
                             "openface_to_embedded_val": versus_raw(subset)},
            "seconds": round(time.time() - t0, 1)}


def verdict(block: list[dict]) -> tuple[str, float]:
    """Share of the within-vs-raw accuracy gap recovered by the best calibration."""
    ref, raw = block[0]["accuracy"], block[1]["accuracy"]
    best = max(block[2:], key=lambda r: r["accuracy"])
    gap = ref - raw
    share = (best["accuracy"] - raw) / gap if gap > 0 else float("nan")
    return best["name"], share


def conclusion(result: dict) -> str:
    parts = []
    for key, label in (("openface_to_embedded_val", "OpenFace-trained LR on embedded val"),
                       ("embedded_to_openface", "embedded-trained LR on OpenFace")):
        block = result[key]
        best, share = verdict(block)
        parts.append(f"{label}: raw {block[1]['accuracy']:.3f} vs within {block[0]['accuracy']:.3f}; "
                     f"best calibration ({best}) {max(r['accuracy'] for r in block[2:]):.3f} = "
                     f"{share:.0%} of the gap recovered" + (" (negative: worse than raw)" if share < 0 else ""))
    shares = [verdict(result[k])[1] for k in ("openface_to_embedded_val", "embedded_to_openface")]
    if min(shares) >= 0.8:
        head = "Calibration closes the cross-backend gap"
    elif max(shares) >= 0.3:
        head = "Calibration narrows but does not close the cross-backend gap"
    else:
        head = "Calibration does not close the cross-backend gap"
    return head + " — " + "; ".join(parts) + "."


def print_report(result: dict) -> None:
    print("\n(a) per-AU scale: embedded FER2013 train (e) vs OpenFace table (o), six emotions; "
          "W1 in AU units; profile r = agreement of class profiles")
    head = (f"{'AU':7} {'mean e/o':>11} {'sd e/o':>11} {'zero e/o':>11} {'median e/o':>11} {'p90 e/o':>11} "
            f"{'W1':>5} {'KS':>5} {'prof r':>6} | {'W1 val raw':>10} {'W1 val q':>8} {'W1 val qb':>9}")
    print(head)
    print("-" * len(head))
    for r in result["scales"]:
        def pair(k: str, r=r) -> str:
            return f"{r[k + '_a']:.2f}/{r[k + '_b']:.2f}"

        print(f"{r['au']:7} {pair('mean'):>11} {pair('sd'):>11} {pair('zero'):>11} {pair('median'):>11} "
              f"{pair('p90'):>11} {r['w1']:5.2f} {r['ks']:5.2f} {r['profile_r']:6.2f} | "
              f"{r['w1_val_raw']:10.2f} {r['w1_after_quantile']:8.2f} {r['w1_after_balanced']:9.2f}")
    print("W1 val: embedded val vs OpenFace, raw / after the quantile map / after the class-balanced map "
          "(maps fitted on embedded train)")
    blocks = [("(b)", "LR trained on OpenFace -> embedded FER2013 val", result["openface_to_embedded_val"]),
              ("(b)", "LR trained on embedded FER2013 train -> OpenFace table", result["embedded_to_openface"])]
    sub = result["agreeing_aus"]
    blocks.append(("(c)", f"as the first (b), both LRs refitted on the {len(sub['aus'])} AUs with profile r >= "
                          f"{sub['threshold']} ({', '.join(a[:4] for a in sub['aus'])}); OpenFace hold-out "
                          f"{sub['openface_holdout']:.3f}", sub["openface_to_embedded_val"]))
    for tag, title, block in blocks:
        print(f"\n{tag} {title}")
        head = f"{'scored as':52} {'n':>5} {'accuracy':>8} {'95% CI':>13} {'macro-F1':>8} {'p vs raw':>8}   recall " + \
            " ".join(f"{c[:4]:>5}" for c in CLASSES)
        print(head)
        print("-" * len(head))
        for r in block:
            ci = f"{r['accuracy_ci95'][0]:.3f}-{r['accuracy_ci95'][1]:.3f}"
            rec = " ".join(f"{r['recall'][c]:5.2f}" for c in CLASSES)
            p = "" if r.get("p_vs_raw") is None else "<1e-6" if r["p_vs_raw"] == 0 else f"{r['p_vs_raw']:.2g}"
            print(f"{r['name']:52} {r['n']:5d} {r['accuracy']:8.3f} {ci:>13} {r['macro_f1']:8.3f} {p:>8}"
                  f"          {rec}")
    print("p vs raw: exact McNemar test against the raw row on the same faces")
    print(f"\nC chosen: OpenFace {result['settings']['C_openface']}, embedded {result['settings']['C_embedded']}; "
          f"{result['seconds']} s")
    print(result["conclusion"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-au", type=Path, default=data_dir() / "fer2013_train_au.csv.gz")
    parser.add_argument("--val-au", type=Path, default=data_dir() / "fer2013_val_au.csv.gz")
    parser.add_argument("--openface-table", type=Path, default=openface_study_table())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-quantiles", type=int, default=101)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save-map", type=Path, help="write the embedded->OpenFace map (fitted on train) here")
    parser.add_argument("--map-kind", choices=("quantile", "balanced"), default="balanced",
                        help="which map --save-map writes (default: class-balanced)")
    args = parser.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    try:
        for p in (args.train_au, args.val_au, args.openface_table):
            if not p.is_file():
                raise FerError(f"{p}: not found; extract the AU tables / set FER_DATA_DIR")
        result = run(args.train_au, args.val_au, args.openface_table, args.seed, args.n_quantiles, log=log)
        result["conclusion"] = conclusion(result)
        if args.save_map:
            emb_train = usable(pd.read_csv(args.train_au))
            of = usable(au_table.read(args.openface_table))
            command = "python bench/cross_backend.py " + " ".join(sys.argv[1:] if argv is None else argv)
            cal = fit_quantile_map(emb_train, of, n_quantiles=args.n_quantiles,
                                   classes=CLASSES if args.map_kind == "balanced" else None,
                                   source="mediapipe", target="openface",
                                   description=f"embedded FER2013 train AUs ({args.train_au.name}) -> "
                                               f"OpenFace 2 study table ({args.openface_table.name}); "
                                               f"successful first faces, six emotions")
            cal.info["command"] = command
            cal.info["bench"] = {k: [{kk: r[kk] for kk in ("name", "n", "accuracy", "macro_f1")} for r in result[k]]
                                 for k in ("openface_to_embedded_val", "embedded_to_openface")}
            cal.save(args.save_map)
            log(f"wrote {args.save_map} ({args.save_map.stat().st_size} bytes)")
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
