"""Peak memory of a comparison on many large face crops: in parts (``CHUNK_IMAGES`` at a time,
the default) against one pass over the whole set (the part size set above the set's size, as
before parts). FER2013 train crops upscaled to ``--side`` px (JPEG, as a dataset of 224 px crops
ships), compared with ``cnn-fer2013`` as crops (no face to measure), each run in a process of its
own so that its peak resident memory is its own.

Run: python bench/compare_memory.py [--images 12000] [--side 224] [--out bench/results/compare_memory.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import report  # noqa: E402

RUN = """
import resource, sys, time
import fer_core.evaluation.compare as compare
compare.CHUNK_IMAGES = int(sys.argv[2])
start = time.perf_counter()
result = compare.run_comparison(["cnn-fer2013"], sys.argv[1], crops=True, workers=1, use_cache=False)
print(result.n, round(time.perf_counter() - start, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def make_set(folder: Path, images: int, side: int) -> None:
    from PIL import Image

    from fer_core.config import fer_split_dir
    from fer_core.emotions import SIX_EMOTIONS
    from fer_core.images import list_images

    items = list_images(fer_split_dir("train"), SIX_EMOTIONS)[:images]
    for i, it in enumerate(items):
        (folder / it.label).mkdir(parents=True, exist_ok=True)
        with Image.open(it.path) as image:
            image.convert("RGB").resize((side, side), Image.BICUBIC).save(folder / it.label / f"{i:06d}.jpg",
                                                                          quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from fer_core.evaluation.compare import CHUNK_IMAGES

    runs = []
    with tempfile.TemporaryDirectory(prefix="compare-memory-") as tmp:
        start = time.perf_counter()
        make_set(Path(tmp), args.images, args.side)
        print(f"{args.images:,} crops of {args.side} px written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for label, part in (("in parts", CHUNK_IMAGES), ("one pass", args.images + 1)):
            env = {**os.environ, "FER_CACHE_DIR": os.path.join(tmp, "cache")}
            out = subprocess.run([sys.executable, "-c", RUN, tmp, str(part)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            runs.append({"run": label, "part_images": part, "images": int(out[0]), "seconds": float(out[1]),
                         "peak_rss_mb": int(out[2])})
            print(runs[-1], file=sys.stderr)
    result = {"side": args.side, "images": args.images, "model": "cnn-fer2013", "runs": runs}
    report(result, args.out)


if __name__ == "__main__":
    main()
