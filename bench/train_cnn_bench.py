"""Train CNN presets on FER2013 (six emotions) and print a table: accuracy, macro-F1, time, size.

The design target is >= 0.70 validation accuracy for the "strong" preset on the full six-emotion
train split. A full run takes hours on two CPU cores; use --limit-per-class and --epochs for a
quick look at speed (images per second) and the learning curve.

Run: python bench/train_cnn_bench.py [--presets strong,original] [--epochs 60]
     [--limit-per-class 500] [--out-dir out/cnn_bench] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from fer_core.config import fer_split_dir
from fer_core.emotions import parse_classes
from fer_core.predictors.cnn import build_cnn, train_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="strong")
    parser.add_argument("--classes", default="six")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--class-weighting", action="store_true")
    parser.add_argument("--out-dir", default="out/cnn_bench")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    classes = parse_classes(args.classes)
    rows = []
    for preset in args.presets.split(","):
        out = Path(args.out_dir) / f"cnn_{preset}.keras"
        started = time.perf_counter()

        def report(epoch: int, logs, preset=preset, started=started) -> None:
            print(f"  {preset} epoch {epoch + 1}: acc {logs.get('accuracy', 0):.3f} "
                  f"val_acc {logs.get('val_accuracy', 0):.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

        command = "python bench/train_cnn_bench.py " + " ".join(sys.argv[1:])
        result = train_cnn(fer_split_dir("train"), fer_split_dir("val"), classes=classes, preset=preset,
                           epochs=args.epochs, batch_size=args.batch_size, out=out, progress=report,
                           seed=args.seed, limit_per_class=args.limit_per_class,
                           class_weighting=args.class_weighting, command=command)
        n_val = result.evaluation.n
        rows.append((preset, build_cnn(preset, len(classes)).count_params(), result.epochs_run,
                     result.evaluation.accuracy, result.evaluation.macro_f1, result.seconds,
                     result.seconds / max(1, result.epochs_run), out.stat().st_size / 2**20, n_val))
    print(f"\n{'preset':10} {'params':>9} {'epochs':>6} {'val_acc':>7} {'macroF1':>7} {'total s':>8} "
          f"{'s/epoch':>8} {'MB':>5} {'n_val':>6}")
    for preset, params, epochs, acc, f1, secs, per_epoch, mb, n_val in rows:
        print(f"{preset:10} {params:9,d} {epochs:6d} {acc:7.3f} {f1:7.3f} {secs:8.0f} {per_epoch:8.1f} "
              f"{mb:5.1f} {n_val:6d}")
    print(f"(threads: {os.environ.get('OMP_NUM_THREADS', 'default')}; target: strong val_acc >= 0.70 on six emotions)")


if __name__ == "__main__":
    main()
