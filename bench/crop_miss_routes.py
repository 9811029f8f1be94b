"""Where face-crop mode spends its time on the crops its direct pass misses, and what an upright
whole-crop pass tried *before* the retries would find.

For each FER2013 val image: the direct pass (detector, landmarks, blendshapes); for a miss, the
route that finds the face today (the upscaled/padded retries in order, then the turned whole-crop
starts), and whether the upright whole-crop start alone reaches the face-presence gate. CPU time of
each step, summed over the images that reach it and divided by all images (process time, so another
job on the machine inflates it less than wall time).

Run: python bench/crop_miss_routes.py [--per-class 170] [--out bench/results/crop_miss_routes.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np

from fer_core.config import fer_split_dir
from fer_core.emotions import SIX_EMOTIONS
from fer_core.images import list_images, load_image, sample_per_class
from fer_core.measure import landmarker as lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=170)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    items = sample_per_class(list_images(fer_split_dir("val"), SIX_EMOTIONS), args.per_class, 0)
    routes: collections.Counter[str] = collections.Counter()
    cpu: dict[str, float] = collections.defaultdict(float)

    def timed(step: str, fn, *a):
        started = time.process_time()
        out = fn(*a)
        cpu[step] += time.process_time() - started
        return out

    with lm.FaceAnalyzer() as analyzer:
        crop = analyzer._crop
        for item in items:
            rgb = np.ascontiguousarray(load_image(item.path))
            if timed("direct pass", analyzer._measure_as_crop, rgb):
                routes["direct pass"] += 1
                continue
            route = None
            for scale, border in lm.RETRY_VARIANTS[1:]:
                if timed(f"retry x{scale} +{border}px", analyzer._measure_as_crop, lm._prepare(rgb, scale, border)):
                    route = f"retry x{scale} +{border}px"
                    break

            def upright(rgb=rgb):
                pts, presence = crop._run(rgb, rgb.shape[1] / 2, rgb.shape[0] / 2, 1.5 * max(rgb.shape[:2]), 0.0)
                for _ in range(2):
                    pts, presence = crop._run_around(rgb, pts)
                return presence

            presence = timed("upright whole-crop start", upright)
            if route is None:
                route = "whole-crop starts (upright, then turned)" if timed("whole-crop starts", analyzer._measure_crop, rgb) \
                    else "none (graph retries last)"
            routes[route] += 1
            routes[f"{route}, upright start finds it: {'yes' if presence >= lm.CROP_MIN_PRESENCE else 'no'}"] += 1
    n = len(items)
    result = {"images": n, "routes": dict(routes), "cpu_ms_per_image": {k: 1000 * v / n for k, v in cpu.items()}}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
