"""Faces measured and non-faces refused: the face pipeline's coverage and its face-quality gate.

1. Coverage on FER2013 val per emotion: images with measured AUs, split into faces the detector
   found and crops measured whole (the crop fallback), from a fresh extraction (no cache).
2. False accepts: scikit-image's sample images without a person, as photos and shrunk to 48x48
   "crops"; false rejects: its photos of people and FER2013 faces.

Run: python bench/face_quality.py [--split val] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from PIL import Image

from fer_core import au_table
from fer_core.config import fer_split_dir
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.images import list_images
from fer_core.measure.extract import extract_table, measure_faces
from fer_core.measure.landmarker import FaceAnalyzer

NON_FACES = ["chelsea", "coffee", "rocket", "coins", "clock", "horse", "moon", "brick", "grass", "gravel", "text",
             "page", "logo", "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina", "checkerboard",
             "binary_blobs", "microaneurysms"]
FACES = ["astronaut", "camera"]


def sample(name: str) -> np.ndarray:
    from skimage import data

    img = np.asarray(getattr(data, name)())
    if img.dtype != np.uint8:
        img = (255 * img.astype(float) / max(1.0, float(img.max()))).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def coverage(split: str, limit: int | None) -> None:
    items = list_images(fer_split_dir(split))
    if limit:
        items = items[::max(1, len(items) // limit)]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FER_CACHE_DIR"] = cache
        table = extract_table(items, workers=2)
    first = au_table.first_faces(table)
    measured = au_table.measured(first)
    crop = measured & (first["confidence"] == 0)
    print(f"\nFER2013 {split}: faces with AUs per emotion (detector / measured whole / none)")
    print(f"{'emotion':9} {'images':>6} {'with AUs':>9} {'detector':>9} {'whole':>6} {'none':>5}")
    for emotion in SEVEN_EMOTIONS + ("all",):
        rows = first["label"] == emotion if emotion != "all" else np.ones(len(first), bool)
        n = int(rows.sum())
        if not n:
            continue
        print(f"{emotion:9} {n:6d} {measured[rows].mean():9.1%} {(measured & ~crop)[rows].mean():9.1%} "
              f"{crop[rows].mean():6.1%} {(~measured)[rows].sum():5d}")


def gate() -> None:
    print("\nface-quality gate (faces found / low confidence):")
    accepts = []
    with FaceAnalyzer() as analyzer:
        for name in NON_FACES + FACES:
            try:
                photo = sample(name)
            except (AttributeError, ModuleNotFoundError, ValueError):
                continue
            crop = np.asarray(Image.fromarray(photo).convert("L").resize((48, 48)).convert("RGB"))
            found = [measure_faces(analyzer, photo), measure_faces(analyzer, crop)]
            kind = "person" if name in FACES else "no person"
            print(f"  {name:22} {kind:9}  photo: {len(found[0])} face(s){' (low)' if any(m.low_confidence for m in found[0]) else ''}"
                  f"   48px crop: {len(found[1])} face(s){' (low)' if any(m.low_confidence for m in found[1]) else ''}")
            if name not in FACES:
                accepts.append((len(found[0]) > 0, len(found[1]) > 0))
    photo_fa = sum(a for a, _ in accepts)
    crop_fa = sum(b for _, b in accepts)
    print(f"false accepts among {len(accepts)} images without a person: {photo_fa} as photos, {crop_fa} as 48px crops")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None, help="every k-th image, about this many")
    args = parser.parse_args()
    gate()
    coverage(args.split, args.limit)


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
