"""Lambda sweep and recipes of the AU-bottleneck network on FER2013 (six emotions).

Each run is one ``python -m fer_core train-au-bottleneck`` command (so the chosen model's manifest
entry records the exact command that made it), starting from the bundled CNN's trunk, on FER2013
train with 10 % of it held out to choose the epoch, scored once on FER2013 val (PublicTest):
accuracy, macro-F1 and AU fidelity (Pearson r per AU between the network's AUs and the measured AUs
of the same val faces). lambda = 0 shows an unnamed bottleneck.

The rule for the bundled model, applied on the *selection* share of train (never on val): the best
selection accuracy among the runs whose selection-share mean AU r is at least 0.6. ``--register``
registers that run as ``au-bottleneck-fer2013``.

Run: python bench/au_bottleneck_sweep.py [--epochs 4] [--max-minutes 12] [--lams 0,1,10,100]
     [--recipes joint,sequential] [--out-dir /tmp/bottleneck] [--register]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from fer_core.config import REPO_ROOT, fer_split_dir, models_dir

MIN_R = 0.6


def run(recipe: str, lam: float, epochs: int, tap: str, args, out: Path) -> dict:
    command = [sys.executable, "-m", "fer_core", "train-au-bottleneck",
               "--data", str(fer_split_dir("train")), "--val", str(fer_split_dir("val")),
               "--train-au-table", "data/fer2013_train_au.csv.gz", "--val-au-table", "data/fer2013_val_au.csv.gz",
               "--recipe", recipe, "--lam", f"{lam:g}", "--epochs", str(epochs), "--tap", tap,
               "--max-minutes", f"{args.max_minutes:g}", "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    ev, sel = meta["evaluation"], meta["selection"]
    return {"recipe": recipe, "lam": lam, "epochs_asked": epochs, "tap": tap, "path": str(out),
            "command": shlex.join(["python"] + command[1:]),
            "sel_accuracy": sel["accuracy"], "val_accuracy": ev["accuracy"], "val_macro_f1": ev["macro_f1"],
            "val_mean_r": meta["au_fidelity"]["mean"], "au_r": meta["au_fidelity"],
            "sel_mean_r": meta.get("selection_fidelity", {}).get("mean"),
            "epochs": meta["epochs_run"], "best_epoch": meta["best_epoch"],
            "minutes": round((time.perf_counter() - started) / 60, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-minutes", type=float, default=12)
    parser.add_argument("--lams", default="0,1,10,100")
    parser.add_argument("--recipes", default="joint,sequential,frozen",
                        help="joint (one run per lambda), sequential (fine-tuned regressor), frozen (sequential "
                             "with the trunk frozen: epochs 0, AU units tapping dense and gap features)")
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/bottleneck"))
    parser.add_argument("--results", type=Path, default=None, help="JSON lines of every run (default: out-dir)")
    parser.add_argument("--register", action="store_true", help="register the chosen run as au-bottleneck-fer2013")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results_path = args.results or args.out_dir / "sweep.jsonl"
    configs = []
    for recipe in args.recipes.split(","):
        if recipe == "joint":
            configs += [("joint", float(v), args.epochs, "dense") for v in args.lams.split(",")]
        elif recipe == "sequential":
            configs.append(("sequential", 1.0, args.epochs, "dense"))
        elif recipe == "frozen":
            configs += [("sequential", 1.0, 0, "dense"), ("sequential", 1.0, 0, "gap")]
    rows = []
    for recipe, lam, epochs, tap in configs:
        out = args.out_dir / f"au_bottleneck_{recipe}_lam{lam:g}_e{epochs}_{tap}.keras"
        print(f"{recipe} lambda {lam:g} epochs {epochs} tap {tap} ...", file=sys.stderr, flush=True)
        row = run(recipe, lam, epochs, tap, args, out)
        rows.append(row)
        with results_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    print(f"\n{'recipe':11} {'lambda':>6} {'tap':>5} {'sel acc':>7} {'sel r':>6} {'val acc':>7} {'val F1':>6} "
          f"{'val r':>6} {'epochs':>6} {'min':>5}")
    for r in rows:
        sel_r = "-" if r["sel_mean_r"] is None else f"{r['sel_mean_r']:.3f}"
        print(f"{r['recipe']:11} {r['lam']:6g} {r['tap']:>5} {r['sel_accuracy']:7.3f} {sel_r:>6} {r['val_accuracy']:7.3f} "
              f"{r['val_macro_f1']:6.3f} {r['val_mean_r']:6.3f} {r['best_epoch']:>3}/{r['epochs']:<2} {r['minutes']:5.1f}")
    names = [c.split("_")[0] for c in next(iter(rows))["au_r"] if c != "mean"]
    print("\nAU fidelity on val (Pearson r per AU):\n" + f"{'run':>8} " + " ".join(f"{n:>5}" for n in names))
    for r in rows:
        print(f"{r['recipe'][:3]}{r['lam']:g}{r['tap'][0]}{r['epochs_asked']}".rjust(8) + " " + " ".join(f"{r['au_r'][n]:5.2f}" for n in names))
    eligible = [r for r in rows if (r["sel_mean_r"] or 0) >= MIN_R]
    if not eligible:
        print(f"\nno run reached mean AU r >= {MIN_R} on the selection share")
        return 1
    best = max(eligible, key=lambda r: r["sel_accuracy"])
    print(f"\nchosen (best selection accuracy with selection mean r >= {MIN_R}): {best['recipe']} lambda "
          f"{best['lam']:g}: val accuracy {best['val_accuracy']:.3f}, macro-F1 {best['val_macro_f1']:.3f}, "
          f"mean r {best['val_mean_r']:.3f}\n  {best['command']}")
    if args.register:
        target = models_dir() / "au_bottleneck_fer2013.keras"  # the folder whose manifest registers it
        command = best["command"].replace(best["path"], "models/au_bottleneck_fer2013.keras") + " --name au-bottleneck-fer2013"
        from fer_core.manifest import Metrics
        from fer_core.predictors.registry import save_and_register

        meta = json.loads(Path(best["path"]).with_suffix(".meta.json").read_text())
        entry = save_and_register(Path(best["path"]), name="au-bottleneck-fer2013", kind="au-bottleneck",
                                  classes=meta["classes"], metrics=Metrics.from_dict(meta["metrics"]),
                                  command=command, path=target, replace=True)
        print(f"registered {entry.name} -> {entry.path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
