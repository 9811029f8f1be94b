"""Face crops larger than FER2013's, measured as crops (``extract --crops``, Try it's Face crops).

FER2013 val faces upscaled (bicubic) to ``--side`` px, the first ``--per`` of each of the six
emotions in sorted order. For each route (the full search; face-crop mode) it counts the faces
found, how far their AUs lie from the same face's at 48 px (mean absolute difference over the 17
AUs), and how many of the faces found span less than a third of the crop (a part of the face, such
as the mouth, taken for one: ``landmarker.CROP_FACE_MIN_SHARE``).

    python bench/large_crops.py --per 10 --side 240
    python bench/large_crops.py --per 10 --side 320
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fer_core

import numpy as np
from PIL import Image

from fer_core.config import fer_split_dir
from fer_core.emotions import SIX_EMOTIONS
from fer_core.images import list_images, load_image
from fer_core.measure.landmarker import FaceAnalyzer
from fer_core.measure.tasks import measure_faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per", type=int, default=10, help="faces per emotion (default 10)")
    parser.add_argument("--side", type=int, default=240, help="the side they are upscaled to (default 240)")
    args = parser.parse_args()
    items = [it for emotion in SIX_EMOTIONS for it in list_images(fer_split_dir("val"), (emotion,))[:args.per]]
    routes = {"full search": False, "face-crop mode": True}
    found = {r: 0 for r in routes}
    diffs: dict[str, list[float]] = {r: [] for r in routes}
    parts = {r: 0 for r in routes}
    with FaceAnalyzer() as analyzer:
        for it in items:
            small = load_image(it.path)
            at_48 = measure_faces(analyzer, small)
            big = np.asarray(Image.fromarray(small).resize((args.side, args.side), Image.Resampling.BICUBIC))
            for route, crop in routes.items():
                faces = measure_faces(analyzer, big, crop=crop)
                if not faces:
                    continue
                found[route] += 1
                parts[route] += max(faces[0].box[2:]) < args.side / 3
                if at_48:
                    diffs[route].append(float(np.nanmean(np.abs(faces[0].au_vector() - at_48[0].au_vector()))))
    print(f"{len(items)} FER2013 val faces upscaled to {args.side} px")
    for route in routes:
        print(f"  {route}: {found[route]} found, {parts[route]} spanning under a third of the crop, "
              f"AUs {np.mean(diffs[route]):.2f} from the 48 px face's on average")


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
