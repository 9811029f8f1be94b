"""Print the (lo, hi) calibration of every AU source in fer_core.measure.au_mapping.

lo = median over FER2013 train faces, hi = 99.5th percentile (0.5th for features that shrink
with the movement). Run: python bench/calibrate_au_mapping.py [--per-class 400]
"""

from __future__ import annotations

import argparse
import os
import random

import numpy as np
from tqdm import tqdm

from fer_core.config import fer_split_dir
from fer_core.images import list_images, load_image
from fer_core.measure import au_mapping
from fer_core.measure.landmarker import FaceAnalyzer

# Geometry features that get *smaller* as the muscle acts.
SHRINKING = {"geo:lower_lid_y", "geo:nose_to_lip", "geo:brow_to_nose"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    by_label: dict[str, list] = {}
    for item in list_images(fer_split_dir("train")):
        by_label.setdefault(item.label, []).append(item)
    sample = [it for items in by_label.values() for it in random.sample(items, min(args.per_class, len(items)))]
    names = sorted({name for _, name, _ in au_mapping.AU_SOURCE_NAMES})
    values: dict[str, list[float]] = {n: [] for n in names}
    with FaceAnalyzer() as analyzer:
        for item in tqdm(sample, desc="faces"):
            faces = analyzer.detect(load_image(item.path))
            if not faces:
                continue
            geometry = au_mapping.geometry_features(faces[0].landmarks)
            for n in names:
                values[n].append(au_mapping.source_value(n, faces[0].blendshapes, geometry))
    print("_CALIBRATION = {")
    for n in names:
        v = np.array(values[n])
        lo = float(np.median(v))
        hi = float(np.percentile(v, 0.5 if n in SHRINKING else 99.5))
        print(f'    "{n}": ({lo:.4g}, {hi:.4g}),')
    print("}")


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
