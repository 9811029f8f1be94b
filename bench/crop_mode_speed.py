"""Face-crop mode against the full search on FER2013 val: images/s, coverage, and how far the AUs move.

Run: python bench/crop_mode_speed.py [--limit 500] [--workers 1 2] [--interleaved]

On a shared machine the wall-clock rate depends on what else runs, so the CPU time each
worker spends per image is printed too (1000 / CPU ms = images/s per free core).

The sample is spread evenly over the split (all seven emotions in proportion). Both routes run in the same
crash-isolated worker processes as extraction, images decoded in the worker, no cache:
- "full search": ``FaceAnalyzer._detect``, the route every FER2013 crop took before face-crop
  mode (MediaPipe's graph with up to four upscaled retries, then the turned whole-crop starts);
- "crop mode": what ``FaceAnalyzer.detect`` does with a small image now: the direct detector,
  landmark and blendshape pass on the crop; where that finds no face ("from the fallback"
  below), the same pass on the full search's upscaled, padded retries, then the turned
  whole-crop starts (``_measure_small_crop``), all without MediaPipe's graph.
Then ``extract_table`` itself (hashing included) in crop mode. The AU difference is per AU, on
the first face of the images both routes measure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")  # --interleaved runs here: one thread, as in a worker
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fer_core, here and in workers

import numpy as np
from ray_extract_speed import spread  # bench/ is this script's folder

from fer_core.au_table import AU_CODES
from fer_core.config import fer_split_dir
from fer_core.images import list_images, load_image
from fer_core.measure import au_mapping
from fer_core.measure.workers import IsolatedPool, WorkerFailure

_analyzer = None


def _init() -> None:
    global _analyzer
    from fer_core.measure.landmarker import FaceAnalyzer

    _analyzer = FaceAnalyzer()


def _task(arg: tuple[str, str]) -> tuple[list[float] | None, bool, float]:
    """(AUs of the first face or None, whether the direct crop pass found it, CPU seconds)."""
    route, path = arg
    cpu = time.process_time()
    rgb = np.ascontiguousarray(load_image(path))
    direct = False
    if route == "full":
        faces = _analyzer._detect(rgb)
    else:  # what detect() does with a small image
        faces = _analyzer._measure_as_crop(rgb)
        direct = bool(faces)
        faces = faces or _analyzer._measure_small_crop(rgb)
    if not faces:
        return None, direct, time.process_time() - cpu
    aus = au_mapping.aus_from_face(faces[0].blendshapes, faces[0].landmarks)
    return [aus[c] for c in AU_CODES], direct, time.process_time() - cpu


def _run(route: str, paths: list[str], workers: int) -> tuple[float, list]:
    pool = IsolatedPool(workers, _task, _init)
    try:
        list(pool.imap_unordered([(route, p) for p in paths[: 2 * workers]]))  # start and warm up
        start = time.perf_counter()
        out = dict(pool.imap_unordered([(route, p) for p in paths]))
        rate = len(paths) / (time.perf_counter() - start)
    finally:
        pool.close()
    failures = [r for r in out.values() if isinstance(r, WorkerFailure)]
    if failures:
        print(f"{route}: {len(failures)} tasks failed, e.g. {failures[0]}", flush=True)
    return rate, [(None, False, 0.0) if isinstance(out[i], WorkerFailure) else out[i] for i in range(len(paths))]


def _interleaved(paths: list[str]) -> None:
    _init()
    cpu = {"full": 0.0, "crop": 0.0}
    found = {"full": 0, "crop": 0}
    for path in paths:
        for route in cpu:
            aus, _direct, seconds = _task((route, path))
            cpu[route] += seconds
            found[route] += aus is not None
    for route, seconds in cpu.items():
        ms = 1000 * seconds / len(paths)
        print(f"{route:5s} in one process: {ms:5.1f} CPU ms/image (= {2000 / ms:5.1f} img/s on 2 free cores), "
              f"faces {found[route]}/{len(paths)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=500, help="about this many images, spread over the split")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--interleaved", action="store_true",
                        help="only CPU time, in this one process, each image through both routes in turn "
                             "(both see the same load: the fairest comparison on a shared machine)")
    args = parser.parse_args()
    every = list_images(fer_split_dir(args.split))
    # spread evenly over the sorted split (every 3rd, cut at 900, held no surprise and few sad faces)
    items = spread(every, args.limit)
    paths = [str(it.path) for it in items]
    if args.interleaved:
        _interleaved(paths)
        return
    per = ", ".join(f"{e} {n}" for e, n in sorted(Counter(it.label for it in items).items()))
    print(f"FER2013 {args.split}: {len(paths)} of {len(every)} images, spread evenly ({per}); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    results: dict[str, list] = {}
    for route in ("full", "crop"):
        for workers in args.workers:
            rate, results[route] = _run(route, paths, workers)
            found = sum(r[0] is not None for r in results[route])
            cpu_ms = 1000 * np.mean([r[2] for r in results[route]])
            print(f"{route:5s} {workers} worker(s): {rate:6.1f} img/s wall clock, {cpu_ms:5.1f} CPU ms/image "
                  f"(= {1000 / cpu_ms:5.1f} img/s per free core), faces {found}/{len(paths)} "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    direct = sum(r[1] for r in results["crop"])
    cpu = np.array([r[2] for r in results["crop"]]) * 1000
    is_direct = np.array([r[1] for r in results["crop"]])
    if is_direct.any() and (~is_direct).any():
        print(f"crop mode CPU ms/image: {cpu[is_direct].mean():.1f} where the direct pass measures the face "
              f"(= {2000 / cpu[is_direct].mean():.0f} img/s on 2 free cores), {cpu[~is_direct].mean():.1f} "
              f"where it falls back ({cpu[~is_direct].sum() / cpu.sum():.0%} of the CPU time)")
    print(f"crop mode: {direct} faces from the direct passes, "
          f"{sum(r[0] is not None and not r[1] for r in results['crop'])} from the fallback")
    both = [(np.array(a[0]), np.array(b[0])) for a, b in zip(results["full"], results["crop"])
            if a[0] is not None and b[0] is not None]
    diff = np.abs(np.array([a - b for a, b in both]))
    print(f"AU difference on the {len(both)} faces both find (0-5 scale): mean {diff.mean():.4f}, "
          f"faces with every AU within 0.1: {(diff.max(axis=1) <= 0.1).mean():.3f}")
    print(f"{'AU':5s} {'mean':>6s} {'p95':>6s} {'max':>6s}")
    for j, code in enumerate(AU_CODES):
        print(f"{code:5s} {diff[:, j].mean():6.3f} {np.percentile(diff[:, j], 95):6.3f} {diff[:, j].max():6.3f}")
    from fer_core.measure.extract import extract_table

    for workers in args.workers:
        extract_table(items[: 2 * workers], workers=workers, use_cache=False)  # start the shared pool
        start = time.perf_counter()
        table = extract_table(items, workers=workers, use_cache=False)
        rate = len(paths) / (time.perf_counter() - start)
        print(f"extract_table (crop mode, no cache) {workers} worker(s): {rate:6.1f} img/s, "
              f"faces {int(table['success'].sum())}/{len(paths)}", flush=True)


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
