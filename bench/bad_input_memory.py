"""Peak memory of ``train-au`` and ``evaluate --au-table`` on a generated AU table of millions of
rows (default 2,000,000, gzip), each command in its own process.

    python bench/bad_input_memory.py                      # 2,000,000 rows, the CLI's default fit cap
    python bench/bad_input_memory.py --rows 500000 --max-rows 5000

Prints one line per command: rows, seconds, peak resident memory (the child's ``ru_maxrss``). The
table has a few rows with infinite and out-of-range AUs, so the left-out path is measured too.
``tests/test_bad_tables.py`` imports ``write_big_table`` for its smaller memory test.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_core.au_table import AU_COLUMNS  # noqa: E402
from fer_core.emotions import SIX_EMOTIONS  # noqa: E402

POOL = 4096  # distinct AU rows per emotion; rows draw from them (writing millions of floats is slow)
HEADER = ("file", "face", "label", "success", "confidence", "source", "reason", *AU_COLUMNS)


def write_big_table(path: str | os.PathLike[str], rows: int, seed: int = 0, bad_every: int = 100_000) -> Path:
    """A gzip AU table in this project's format: six emotions, each raising its own AU, file names
    unique; every ``bad_every``-th row has an infinite or a 1e308 AU (left out by the usable-rows rule)."""
    rng = np.random.default_rng(seed)
    pools = []
    for k in range(len(SIX_EMOTIONS)):
        X = rng.gamma(1.0, 0.5, size=(POOL, len(AU_COLUMNS)))
        X[:, (2 * k) % len(AU_COLUMNS)] += 3.0
        pools.append([",".join(f"{v:.3f}" for v in x) for x in np.clip(X, 0, 5)])
    labels = rng.integers(0, len(SIX_EMOTIONS), size=rows)
    picks = rng.integers(0, POOL, size=rows)
    path = Path(path)
    with gzip.open(path, "wt", compresslevel=1, encoding="utf-8", newline="") as fh:
        fh.write(",".join(HEADER) + "\n")
        for start in range(0, rows, 100_000):
            lines = []
            for i in range(start, min(rows, start + 100_000)):
                e = SIX_EMOTIONS[labels[i]]
                aus = pools[labels[i]][picks[i]]
                if bad_every and i % bad_every == bad_every - 1:
                    aus = ("inf," if i % (2 * bad_every) else "1e308,") + aus.split(",", 1)[1]
                lines.append(f"{e}/img{i:08d}.jpg,0,{e},1,0.9,bench,,{aus}\n")
            fh.write("".join(lines))
    return path


def peak_run(args: list[str], env: dict | None = None, timeout: float | None = None) -> tuple[int, float, int, str]:
    """Run ``python -m fer_core ARGS`` in a fresh helper process: (exit status, seconds, peak RSS
    in KiB of that command alone, stderr)."""
    helper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "print(json.dumps([p.returncode, time.perf_counter() - t, "
              "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stderr]))")
    out = subprocess.run([sys.executable, "-c", helper, sys.executable, "-m", "fer_core", *args], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=timeout)
    code, seconds, peak_kib, stderr = json.loads(out.stdout)
    return code, seconds, peak_kib, stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--max-rows", type=int, default=None, help="train-au --max-rows (default: the CLI's)")
    p.add_argument("--kind", default="logreg", choices=("logreg", "mlp", "gam"))
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory(prefix="fer_bench_") as tmp:
        table, model = Path(tmp) / "big.csv.gz", Path(tmp) / "m.json"
        t = time.perf_counter()
        write_big_table(table, args.rows)
        print(f"table: {args.rows:,} rows, {table.stat().st_size / 2**20:.0f} MB gzip, written in "
              f"{time.perf_counter() - t:.0f} s")
        train = ["train-au", str(table), "--out", str(model), "--kind", args.kind]
        if args.max_rows:
            train += ["--max-rows", str(args.max_rows)]
        commands = [("train-au", train),
                    ("evaluate --au-table", ["evaluate", "--model", str(model), "--au-table", str(table), "--json"])]
        print(f"{'command':22s} {'rows':>10s} {'seconds':>8s} {'peak MB':>8s}  exit")
        for label, command in commands:
            code, seconds, peak_kib, stderr = peak_run(command, env)
            print(f"{label:22s} {args.rows:>10,} {seconds:>8.0f} {peak_kib / 1024:>8.0f}  {code}")
            for line in stderr.strip().splitlines()[-3:]:
                print(f"    {line}")


if __name__ == "__main__":
    main()
