"""Detection rate and images/second of the embedded extractor on FER2013 (1 and 2 workers).

Run: python bench/extract_speed.py [--split val] [--limit N]
The cache is bypassed so every image is really measured.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ray_extract_speed import spread  # bench/ is this script's folder

from fer_core.config import fer_split_dir
from fer_core.images import list_images
from fer_core.measure.extract import extract_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="N images spread evenly over the split")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    items = spread(list_images(fer_split_dir(args.split)), args.limit)  # the first N were all angry
    print(f"FER2013 {args.split}: {len(items)} images")
    print(f"{'workers':>7} {'img/s':>8} {'detected':>9}  per emotion")
    for workers in args.workers:
        start = time.perf_counter()
        table = extract_table(items, workers=workers, use_cache=False)
        rate = len(items) / (time.perf_counter() - start)
        first = table[table["face"] == 0]
        per = first.groupby("label")["success"].mean()
        per_text = " ".join(f"{k} {v:.3f}" for k, v in per.items())
        print(f"{workers:>7} {rate:>8.1f} {first['success'].mean():>9.3f}  {per_text}", flush=True)


if __name__ == "__main__":
    main()
