"""What a mask does to the measured AUs: the same FER2013 faces measured without and with a mask.

Each image goes through ``fer_core.masks.mask_and_measure``, as the product masks it: its faces are
measured, a face the mask cannot be placed on is refused (counted), a mask is drawn from the
landmarks and the masked image is measured again; a masked face the detector misses is measured
where it was (so the sample is not biased towards faces still easy to find). Printed per AU: the
mean absolute change (0-5 scale), the correlation between the unmasked and masked values, and
whether the AU is hidden (its intensity under the mask is invented by the blendshape model, not
read from the face). Also: how many faces were refused, how many masked faces the detector still
finds, and the speed. The AUs whose values survive (small change, high correlation) are those an
upper-face model may use; the rest are treated as unknown on masked faces.

Run: python bench/mask_effect.py [--split val] [--per-class 100] [--style surgical] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from fer_core.au_table import AU_CODES
from fer_core.config import fer_split_dir
from fer_core.emotions import SIX_EMOTIONS
from fer_core.images import list_images, load_image, sample_per_class
from fer_core.masks import HIDDEN_AUS, MASK_NOT_PLACED_REASON, STYLES, MaskedMeasure, mask_and_measure
from fer_core.measure.landmarker import FaceAnalyzer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--style", default="surgical", choices=sorted(STYLES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = sample_per_class(list_images(fer_split_dir(args.split), SIX_EMOTIONS), args.per_class, seed=0)
    before, after, refused, no_face, found, seconds = [], [], 0, 0, 0, []
    with FaceAnalyzer() as analyzer:
        for it in items:
            rgb = load_image(it.path)
            t = time.perf_counter()
            result = mask_and_measure(analyzer, rgb, args.style, seed=0)
            seconds.append(time.perf_counter() - t)
            if isinstance(result, MaskedMeasure) and 0 in result.bare:  # the largest face refused its mask
                refused += 1
                continue
            if not isinstance(result, MaskedMeasure):
                refused += result == MASK_NOT_PLACED_REASON
                no_face += result != MASK_NOT_PLACED_REASON
                continue
            found += result.masked[0].method != "given"  # the detector found the masked face again
            before.append(result.original[0].au_vector())
            after.append(result.masked[0].au_vector())
    if not before:
        print(f"no face of {len(items)} {args.split} images could be masked ({refused} refused, {no_face} without "
              "a face); nothing to compare", file=sys.stderr)
        raise SystemExit(1)
    b, a = np.array(before), np.array(after)
    rows = []
    for j, code in enumerate(AU_CODES):
        change = float(np.mean(np.abs(a[:, j] - b[:, j])))
        r = float(np.corrcoef(a[:, j], b[:, j])[0, 1]) if b[:, j].std() > 0 and a[:, j].std() > 0 else float("nan")
        rows.append({"au": code, "mean_abs_change": round(change, 3), "r": round(r, 3),
                     "mean_before": round(float(b[:, j].mean()), 3), "mean_after": round(float(a[:, j].mean()), 3),
                     "hidden": code in HIDDEN_AUS})
    summary = {"images": len(items), "no_face": no_face, "refused": refused, "faces_masked": len(before),
               "masked_faces_found": found, "masked_share_found": round(found / len(before), 3),
               "images_per_s": round(len(seconds) / max(float(np.sum(seconds)), 1e-9), 1), "per_au": rows}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{len(items)} {args.split} images: {no_face} without a face, {refused} refused (the mask could not be "
          f"placed), {len(before)} masked, {found} still found by the detector under the mask "
          f"({summary['masked_share_found']:.1%}); {summary['images_per_s']:.0f} images/s masked and measured")
    print(f"{'AU':5} {'|change|':>8} {'r':>6} {'before':>6} {'after':>6}  hidden")
    for r in rows:
        print(f"{r['au']:5} {r['mean_abs_change']:8.3f} {r['r']:6.2f} {r['mean_before']:6.2f} {r['mean_after']:6.2f}  "
              f"{'yes' if r['hidden'] else ''}")


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
