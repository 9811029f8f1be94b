"""Faces lying on their side (a phone photo turned a quarter, its EXIF lost): how many are measured
as the same face upright is. FER2013 val faces are enlarged to 300 px on a 640 x 480 grey page, the
page measured upright, then turned a quarter each way (numpy.rot90, k = 1 and -1); a turned face
counts as measured upright when ``measure_faces`` says so (method "turned upright") and its 17 AUs
are within 0.05 of the upright page's.

Run: python bench/sideways_faces.py [--per 10] [--emotions happy,sad] [--out FILE]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _results import report
from PIL import Image

from fer_core.config import datasets_dir
from fer_core.measure.landmarker import FaceAnalyzer
from fer_core.measure.tasks import TURNED_UPRIGHT, measure_faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per", type=int, default=10, help="faces per emotion (the first by name)")
    parser.add_argument("--emotions", default="happy,sad")
    parser.add_argument("--out")
    args = parser.parse_args()
    val = datasets_dir() / "fer2013" / "val"
    files = [f for e in args.emotions.split(",") for f in sorted((val / e).glob("*.jpg"))[:args.per]]
    upright = 0
    turned = {1: 0, -1: 0}
    with FaceAnalyzer() as analyzer:
        for path in files:
            page = Image.new("RGB", (640, 480), (120, 120, 120))
            page.paste(Image.open(path).convert("RGB").resize((300, 300), Image.Resampling.BICUBIC), (170, 90))
            rgb = np.asarray(page)
            first = measure_faces(analyzer, rgb)
            if not first or first[0].method == TURNED_UPRIGHT:
                continue
            upright += 1
            for k in turned:
                side = measure_faces(analyzer, np.ascontiguousarray(np.rot90(rgb, k)))
                turned[k] += bool(side) and side[0].method == TURNED_UPRIGHT and \
                    float(np.abs(side[0].au_vector() - first[0].au_vector()).max()) < 0.05
    report({"faces": len(files), "measured_upright": upright,
            "quarter_turned_measured_as_upright": {"counterclockwise": turned[1], "clockwise": turned[-1]}}, args.out)


if __name__ == "__main__":
    main()
