"""Faces found in large photos by the photo search, at each depth of its tile search (TILE_DEPTH).

Stimuli are built here: scikit-image's astronaut and matplotlib's Grace Hopper, scaled to widths
of 300-1000 px, pasted at a random place on grey noise canvases of 1600 x 1200 and 4000 x 3000
(two noise seeds each); and scikit-image's pictures without a person, scaled up to both canvas
sizes, for faces found where there are none. Per depth: faces found (of the pasted ones), their
mean detection score, how many were flagged unsure, non-faces taken for faces, seconds per photo.

Run: python bench/photo_faces.py [--out bench/results/photo_faces.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _results import report
from face_quality import NON_FACES, sample
from PIL import Image

from fer_core.measure import landmarker
from fer_core.measure.landmarker import FaceAnalyzer

CANVASES = ((1600, 1200), (4000, 3000))
WIDTHS = range(300, 1001, 100)
SEEDS = (11, 12)


def sources() -> dict[str, Image.Image]:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    return {"astronaut": Image.fromarray(sample("astronaut")).convert("RGB"), "hopper": hopper}


def pasted(face: Image.Image, width: int, canvas: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    page = np.clip(rng.normal(128, 8, (canvas[1], canvas[0], 3)), 0, 255).astype(np.uint8)
    im = face.resize((width, round(face.height * width / face.width)), Image.Resampling.LANCZOS)
    x, y = int(rng.integers(0, canvas[0] - im.width)), int(rng.integers(0, canvas[1] - im.height))
    page[y:y + im.height, x:x + im.width] = np.asarray(im)
    return page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out")
    args = ap.parse_args()
    faces = [(f"{name} {w} px on {c[0]}x{c[1]} (seed {s})", pasted(img, w, c, s), c)
             for name, img in sources().items() for c in CANVASES for w in WIDTHS for s in SEEDS]
    non_faces = [(f"{name} at {c[0]}x{c[1]}", np.asarray(Image.fromarray(sample(name)).convert("RGB").resize(c)), c)
                 for name in NON_FACES for c in CANVASES]
    result: dict = {"stimuli": {"faces": len(faces), "non_faces": len(non_faces)}, "depths": {}}
    with FaceAnalyzer() as analyzer:
        for depth in (2, 3, 4):
            landmarker.TILE_DEPTH = depth
            row: dict = {}
            for canvas in CANVASES:
                found, scores, unsure, seconds, missed = 0, [], 0, [], []
                for label, rgb, c in faces:
                    if c != canvas:
                        continue
                    start = time.perf_counter()
                    got = analyzer.detect(rgb)
                    seconds.append(time.perf_counter() - start)
                    if got:
                        found += 1
                        scores.append(got[0].confidence)
                        unsure += got[0].low_confidence
                    else:
                        missed.append(label)
                false = sum(len(analyzer.detect(rgb)) for _, rgb, c in non_faces if c == canvas)
                row[f"{canvas[0]}x{canvas[1]}"] = {
                    "faces_found": f"{found} of {len(seconds)}", "mean_score": round(float(np.mean(scores)), 3),
                    "flagged_unsure": unsure, "non_faces_taken_for_faces": false,
                    "seconds_per_photo": round(float(np.mean(seconds)), 3), "missed": missed}
                print(depth, canvas, {k: v for k, v in row[f"{canvas[0]}x{canvas[1]}"].items() if k != "missed"},
                      file=sys.stderr, flush=True)
            result["depths"][str(depth) + (" (bundled)" if depth == 3 else "")] = row
    report(result, args.out)


if __name__ == "__main__":
    main()
