"""How much FER2013 val's copies of train images lift the bundled models' val scores.

FER2013 repeats images across its splits: 280 of val's 3,589 files are byte-for-byte copies of
train files (``fer_core.images.copies_in``), and every bundled model learned from train (the
networks from its images, the AU models from its AU table). This scores every model of
models/manifest.json on val (six emotions; the seven-emotion models also on seven) through the
workbench's one comparison and gives each model's accuracy on all images, on the copies and on
the rest, with Wilson 95 % intervals. A face not found is wrong, as in every comparison.

Run: python bench/val_copies.py [--workers 2] [--out bench/results/val_copies.json]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _results import report

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import printable
from fer_core.evaluation.compare import run_comparison
from fer_core.evaluation.metrics import wilson_counts
from fer_core.evaluation.scores import predicts_all_seven
from fer_core.images import copies_in, scan_images
from fer_core.manifest import read_manifest


def _share(right, n: int) -> dict:
    k = int(right.sum())
    lo, hi = wilson_counts(k, n)
    return {"n": n, "accuracy": round(k / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def scored(entries, items, classes, copy_files: set[str], workers: int) -> dict:
    comparison = run_comparison(entries, items, classes=classes, workers=workers)
    is_copy = comparison.table["file"].isin(copy_files).to_numpy()
    out = {"images": comparison.n, "copies": int(is_copy.sum()), "models": {}}
    for name in comparison.names:
        right = comparison.correct(name)
        out["models"][name] = {"all": _share(right, len(right)), "copies": _share(right[is_copy], int(is_copy.sum())),
                               "rest": _share(right[~is_copy], int((~is_copy).sum()))}
        row = out["models"][name]
        print(f"  {name:28s} all {row['all']['accuracy']:.3f}  copies {row['copies']['accuracy']:.3f} "
              f"(n {row['copies']['n']})  rest {row['rest']['accuracy']:.3f} (n {row['rest']['n']})", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    val, train = config.fer_split_dir("val"), config.fer_split_dir("train")
    items = scan_images(val).items
    flags = copies_in(train, [it.path for it in items])
    copy_files = {printable(str(it.path)) for it, copy in zip(items, flags) if copy}
    entries = read_manifest()
    print(f"{len(copy_files)} of val's {len(items)} files are copies of train files", file=sys.stderr)
    result = {"command": "python bench/val_copies.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:]),
              "val_files": len(items), "copies_of_train": len(copy_files)}
    print("six emotions", file=sys.stderr)
    result["six"] = scored(entries, items, SIX_EMOTIONS, copy_files, args.workers)
    print("seven emotions", file=sys.stderr)
    result["seven"] = scored([e for e in entries if predicts_all_seven(e)], items, SEVEN_EMOTIONS, copy_files,
                             args.workers)
    result["minutes"] = round((time.perf_counter() - start) / 60, 1)
    report(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
