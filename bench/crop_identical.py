"""Whether face-crop mode gives exactly the results it gave before a speed-up (issue 13).

Run in a checkout to record what it measures on every k-th FER2013 val image, then in another
checkout to compare (the same faces found, every AU, box and confidence within ``--tolerance``):

    python bench/crop_identical.py --save /tmp/before.json        # in the old checkout
    python bench/crop_identical.py --compare /tmp/before.json     # in the new one

A speed-up of face-crop mode must not move a single result; this is the check that it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fer_core

from fer_core.config import fer_split_dir
from fer_core.images import list_images, load_image
from fer_core.measure.landmarker import FaceAnalyzer
from fer_core.measure.tasks import measure_faces


def measure(step: int) -> tuple[dict[str, list[dict]], float]:
    """{relative path: the faces as ``measure_faces`` gives them, with their AUs}, CPU ms per image."""
    paths = list_images(fer_split_dir("val"))[::step]
    found: dict[str, list[dict]] = {}
    cpu = 0.0
    with FaceAnalyzer() as analyzer:
        for item in paths:
            start = time.process_time()
            faces = measure_faces(analyzer, load_image(item.path), keep_landmarks=True)
            cpu += time.process_time() - start
            found[f"{item.path.parent.name}/{item.path.name}"] = [
                {**face.to_cache(), "aus": face.aus(), "landmarks": face.landmarks.ravel().tolist()} for face in faces]
    return found, 1000 * cpu / max(1, len(paths))


def differences(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> tuple[list[str], float]:
    """Lines naming each image whose faces differ in number, method or flag, and the largest
    difference of any number (AU, blendshape, landmark, box, confidence) on the faces both found."""
    lines, largest = [], 0.0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None or len(old) != len(new):
            lines.append(f"{name}: {len(old or [])} faces before, {len(new or [])} now")
            continue
        for a, b in zip(old, new):
            if (a["method"], a["low_confidence"]) != (b["method"], b["low_confidence"]):
                lines.append(f"{name}: {a['method']}/{a['low_confidence']} before, {b['method']}/{b['low_confidence']} now")
            pairs = [*zip(a["box"], b["box"]), (a["confidence"], b["confidence"]), *zip(a["landmarks"], b["landmarks"])]
            for key in ("aus", "blendshapes", "geometry"):
                if set(a[key]) != set(b[key]):
                    lines.append(f"{name}: {key} names differ")
                    continue
                pairs += [(a[key][k], b[key][k]) for k in a[key]]
            largest = max([largest, *(abs(float(x) - float(y)) for x, y in pairs)])
    return lines, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, default=10, help="every k-th image of val (10: ~360 images)")
    parser.add_argument("--save", help="write the results here")
    parser.add_argument("--compare", help="compare with results saved before")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    found, cpu_ms = measure(args.step)
    faces = sum(len(v) for v in found.values())
    print(f"{len(found)} FER2013 val images, {faces} faces, {cpu_ms:.2f} CPU ms per image")
    if args.save:
        Path(args.save).write_text(json.dumps(found))
    if args.compare:
        lines, largest = differences(json.loads(Path(args.compare).read_text()), found)
        print("\n".join(lines[:20]))
        print(f"{len(lines)} images differ in what was found; largest difference of any value {largest:.2e}")
        sys.exit(0 if not lines and largest <= args.tolerance else 1)


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
