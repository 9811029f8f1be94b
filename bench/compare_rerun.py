"""How long a second comparison on the same test set takes now that the networks' answers are
kept (``fer_core.evaluation.answers``): every bundled model on FER2013 val, run twice with one
cache of its own, the measurements already in it (measured by a first pass that is not timed), so
the two timed runs differ only in the answers kept.

Run: python bench/compare_rerun.py [--split val] [--workers 2] [--out bench/results/compare_rerun.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import report

from fer_core import config
from fer_core.evaluation.compare import run_comparison
from fer_core.images import list_images
from fer_core.manifest import read_manifest
from fer_core.measure.extract import measure_items
from fer_core.predictors.registry import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="val")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    folder = config.fer_split_dir(args.split)
    items = list_images(folder)
    os.environ["FER_CACHE_DIR"] = tempfile.mkdtemp(prefix="compare-rerun-")
    measure_items(items, workers=args.workers)  # the measurements, as an earlier extract left them
    predictors = [load_predictor(e) for e in read_manifest()]
    runs = []
    for run in ("first", "second"):
        start = time.perf_counter()
        comparison = run_comparison(predictors, items, workers=args.workers, root=folder)
        runs.append({"run": run, "seconds": round(time.perf_counter() - start, 1),
                     "answers_from_cache": comparison.answers_from_cache})
        print(f"{run}: {runs[-1]['seconds']} s, answers kept: {comparison.answers_from_cache}", file=sys.stderr)
    result = {"split": args.split, "images": comparison.n, "models": comparison.names, "workers": args.workers,
              "cpus": os.cpu_count(), "runs": runs}
    report(result, args.out)


if __name__ == "__main__":
    main()
