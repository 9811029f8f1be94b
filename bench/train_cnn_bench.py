"""Train CNN presets and recipes on FER2013 and print a table: preset x recipe x val accuracy x minutes.

Honest by default: a stratified share of the training images (--holdout) picks each run's epoch, and
FER2013 val is scored once at the end, untouched by any choice. Every run starts from the same seed
on the same images, so the rows differ only in preset and recipe. A full run takes hours on two CPU
cores; --limit-per-class and --epochs give a comparable look on a budget (say so when quoting it).

A recipe is a name and train-cnn's recipe options, e.g.
    --recipe "plateau:" --recipe "cosine+ema: --schedule cosine --ema 0.999"

Run: python bench/train_cnn_bench.py [--presets strong] [--classes seven] [--epochs 12]
     [--limit-per-class 1500] [--recipe NAME:OPTIONS ...] [--out bench/results/recipes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from fer_core.config import fer_split_dir
from fer_core.emotions import parse_classes
from fer_core.errors import StoppedBeforeAnEpoch
from fer_core.predictors.cnn import build_cnn, train_cnn
from fer_core.predictors.recipe import Recipe, add_recipe_arguments, recipe_from_args


def parse_recipe(spec: str) -> tuple[str, Recipe]:
    """``"name: --schedule cosine"`` -> (name, Recipe), with train-cnn's own option parser."""
    name, _, options = spec.partition(":")
    parser = argparse.ArgumentParser(prog=f"--recipe {name}")
    add_recipe_arguments(parser)
    return name.strip() or "default", recipe_from_args(parser.parse_args(shlex.split(options)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="strong")
    parser.add_argument("--recipe", action="append", default=None, metavar="NAME:OPTIONS",
                        help="a recipe to train (repeat for several; default: the bundled CNNs' recipe)")
    parser.add_argument("--classes", default="six")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="share of train that picks the epoch (default 0.1); 0: val picks it (not honest)")
    parser.add_argument("--max-minutes", type=float, default=None, help="per run")
    parser.add_argument("--out-dir", default="out/cnn_bench")
    parser.add_argument("--out", default=None, help="also write the table as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    recipes = [parse_recipe(spec) for spec in (args.recipe or ["default:"])]
    classes = parse_classes(args.classes)
    command = "python bench/train_cnn_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows = []
    for preset in args.presets.split(","):
        for name, recipe in recipes:
            out = Path(args.out_dir) / f"cnn_{preset}_{name.replace('+', '_')}.keras"
            started = time.perf_counter()
            deadline = started + args.max_minutes * 60 if args.max_minutes else None

            def report(epoch: int, logs, label=f"{preset}/{name}", started=started) -> None:
                print(f"  {label} epoch {epoch + 1}: acc {logs.get('accuracy', 0):.3f} "
                      f"val_acc {logs.get('val_accuracy', 0):.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

            try:
                result = train_cnn(fer_split_dir("train"), fer_split_dir("val"), classes=classes, preset=preset,
                                   epochs=args.epochs, batch_size=args.batch_size, out=out, progress=report,
                                   seed=args.seed, limit_per_class=args.limit_per_class,
                                   learning_rate=args.learning_rate, holdout=args.holdout or None, recipe=recipe,
                                   command=command,
                                   should_stop=(lambda d=deadline: time.perf_counter() > d) if deadline else None)
            except StoppedBeforeAnEpoch:  # --max-minutes ran out first: this row has nothing, the others go on
                print(f"  {preset}/{name}: --max-minutes ran out before the first epoch finished", flush=True)
                continue
            picked = result.history.get("val_accuracy", [])
            rows.append({
                "preset": preset, "recipe": name, "settings": recipe.describe(), "classes": len(classes),
                "params": build_cnn(preset, len(classes)).count_params(), "epochs_run": result.epochs_run,
                "best_epoch": picked.index(max(picked)) + 1 if picked else None,
                "selection_accuracy": result.selection.accuracy if result.selection else None,
                "val_accuracy": result.evaluation.accuracy, "val_ci95": list(result.evaluation.accuracy_ci95),
                "val_macro_f1": result.evaluation.macro_f1, "n_val": result.evaluation.n,
                "minutes": result.seconds / 60, "selected_on": result.selected_on,
                "evaluated_on": result.evaluated_on, "limit_per_class": args.limit_per_class,
                "threads": os.environ.get("OMP_NUM_THREADS", "default"), "command": command,
            })
            print(f"{preset}/{name}: val {result.evaluation.accuracy:.3f} in {result.seconds / 60:.1f} min", flush=True)
    print(f"\n{'preset':8} {'recipe':22} {'epochs':>6} {'best':>4} {'select':>6} {'val':>6} {'macroF1':>7} {'min':>6}")
    for r in rows:
        sel = f"{r['selection_accuracy']:.3f}" if r["selection_accuracy"] is not None else "-"
        print(f"{r['preset']:8} {r['recipe']:22} {r['epochs_run']:6d} {r['best_epoch'] or 0:4d} {sel:>6} "
              f"{r['val_accuracy']:6.3f} {r['val_macro_f1']:7.3f} {r['minutes']:6.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
