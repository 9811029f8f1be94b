"""Prediction throughput (images/second) of each kind of model on FER2013 val images.

AU model: face landmarker + AU mapping + logistic regression, one process (the extractor with
--workers 2 roughly doubles it). CNN: the bundled .keras in batches. Teachable Machine: an export
shaped like the real one (MobileNetV2 alpha 0.35 backbone, 224x224 input) built by the test
fixture, as no real export can be fetched here.
Run: python bench/model_throughput.py [--n 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

from fer_core.config import fer_split_dir  # noqa: E402
from fer_core.images import list_images, load_image  # noqa: E402
from fer_core.manifest import read_manifest  # noqa: E402
from fer_core.predictors.registry import load_predictor  # noqa: E402


def rate(predictor, images, batch: int = 64) -> float:
    predictor.predict_proba(images[:8])  # warm-up: graph building, first allocation
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        predictor.predict_proba(images[i:i + batch])
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    items = list_images(fer_split_dir("val"))[:: max(1, 3589 // args.n)][: args.n]
    images = [load_image(it.path) for it in items]
    print(f"{len(images)} FER2013 val images (48x48)\n{'model':28s} {'kind':10s} {'img/s':>8}")
    for entry in read_manifest():
        predictor = load_predictor(entry)
        print(f"{entry.name:28s} {entry.kind:10s} {rate(predictor, images):8.1f}", flush=True)
    from fer_core.predictors.teachable import load_teachable
    from fer_core.predictors.teachable_example import write_teachable_export

    with tempfile.TemporaryDirectory() as tmp:
        write_teachable_export(tmp, ["angry", "disgust", "happy", "neutral", "sad", "surprise"], mobilenet=True)
        predictor = load_teachable(tmp, name="teachable (MobileNetV2 0.35)")
        print(f"{predictor.name:28s} {'teachable':10s} {rate(predictor, images):8.1f}")


if __name__ == "__main__":
    main()
