"""Images/second of the Ray engine with 1 and 2 measuring actors against the local engine with 1
and 2 worker processes on FER2013 val, the Ray engine's scaling efficiency, and whether both
engines give the same rows.

Run: python bench/ray_extract_speed.py [--limit N] [--workers 1 2]
Every image is really measured (the local cache is bypassed, each Ray run writes a new table).
Rates are wall-clock over the whole call, start-up of the workers or actors included (that is what
a user waits for); Ray's own start is timed apart. ``efficiency`` = rate(n) / (n * rate(1)).
Needs Ray (requirements-ray.txt) and FER_DATA_DIR.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from fer_core.au_table import AU_COLUMNS
from fer_core.config import fer_split_dir
from fer_core.images import list_images
from fer_core.measure.extract import extract_table


def spread(items: list, limit: int | None) -> list:
    """``limit`` images spread evenly over the sorted list, so every emotion is in."""
    if not limit or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """(share of files with the same success and face count, largest AU difference)."""
    key = ["file", "face"]
    a, b = a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True)
    same = a[["file", "face", "success"]].equals(b[["file", "face", "success"]])
    if not same:
        both = a.merge(b, on=key, suffixes=("", "_b"))
        return float((both["success"] == both["success_b"]).mean()), float("nan")
    diff = np.nanmax(np.abs(a[list(AU_COLUMNS)].to_numpy(float) - b[list(AU_COLUMNS)].to_numpy(float)), initial=0.0)
    return 1.0, float(diff)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="N images spread over the split (default: all)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import ray

    from fer_core.measure import ray_engine

    root = fer_split_dir(args.split)
    items = spread(list_images(root), args.limit)
    print(f"FER2013 {args.split}: {len(items)} images; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs", flush=True)
    print(f"{'engine':>6} {'workers':>7} {'img/s':>8} {'seconds':>8} {'efficiency':>10}  same rows as local", flush=True)
    local: dict[int, tuple[float, pd.DataFrame]] = {}
    for w in args.workers:
        start = time.perf_counter()
        table = extract_table(items, workers=w, use_cache=False, root=root)
        seconds = time.perf_counter() - start
        local[w] = (len(items) / seconds, table)
        print(f"{'local':>6} {w:>7} {local[w][0]:>8.1f} {seconds:>8.1f} {local[w][0] / (w * local[args.workers[0]][0]):>10.2f}",
              flush=True)
    reference = local[args.workers[0]][1]
    start = time.perf_counter()
    ray.init(num_cpus=max(args.workers), include_dashboard=False, runtime_env=ray_engine.runtime_env(),
             log_to_driver=False)
    print(f"Ray start: {time.perf_counter() - start:.1f} s", flush=True)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            start = time.perf_counter()
            run = ray_engine.extract_on_ray(items, Path(tmp) / f"au_{w}.parquet", root=root, workers=w)
            seconds = time.perf_counter() - start
            rates[w] = len(items) / seconds
            same, diff = agreement(run.table, reference)
            print(f"{'ray':>6} {w:>7} {rates[w]:>8.1f} {seconds:>8.1f} {rates[w] / (w * rates[args.workers[0]]):>10.2f}"
                  f"  {same:.1%} of rows, largest AU difference {diff:.2g}", flush=True)
    ray.shutdown()
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
