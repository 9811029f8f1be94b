"""Where face-crop mode's CPU time goes on FER2013 val (issue 13), in one process, one core.

Run: python bench/crop_cpu_breakdown.py [--step 12] [--limit 300]

Prints (1) CPU ms per ``invoke`` of each bundled model with the default op resolver (XNNPACK)
and without it, so whether XNNPACK is active shows at a glance; (2) CPU ms per image of what
``FaceAnalyzer.detect`` does with a small crop, split into crops the direct pass measures and
crops that fall back; (3) the fallback split into its steps (upscaled direct retries, the
turned whole-crop starts, MediaPipe's graph retries), each with how many crops it decides;
and the landmark model run on batches of 4 and 8 crops (LiteRT allows it: whether batching pays).
CPU time, not wall clock: the machine is shared.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from fer_core.config import fer_split_dir
from fer_core.images import list_images, load_image
from fer_core.measure import landmarker
from fer_core.measure.crop_models import DETECTOR_MODEL


def invoke_ms(model: bytes, resolver, repeats: int = 60, batch: int = 1) -> float:
    """CPU ms per input of set_tensor + invoke of ``model`` on random input, one thread;
    ``batch`` > 1 resizes the model's input to that many (whether batching would pay)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=resolver)
    details = interpreter.get_input_details()[0]
    if batch > 1:
        interpreter.resize_tensor_input(details["index"], [batch, *details["shape"][1:]])
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    x = np.random.default_rng(0).random(details["shape"], dtype=np.float32)
    interpreter.set_tensor(details["index"], x)
    interpreter.invoke()  # the first invoke prepares the delegate
    repeats = max(repeats // batch, 5)
    start = time.process_time()
    for _ in range(repeats):
        interpreter.set_tensor(details["index"], x)
        interpreter.invoke()
    return 1000 * (time.process_time() - start) / (repeats * batch)


def model_timings() -> None:
    from ai_edge_litert.interpreter import OpResolverType

    with zipfile.ZipFile(io.BytesIO(landmarker.load_landmarker_bundle())) as bundle:
        for name in (DETECTOR_MODEL, landmarker.LANDMARKS_MODEL, landmarker.BLENDSHAPES_MODEL):
            model = bundle.read(name)
            default = invoke_ms(model, OpResolverType.AUTO)
            plain = invoke_ms(model, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            print(f"{name:32s} {default:6.2f} CPU ms/invoke as used (XNNPACK), {plain:6.2f} without it")
        model = bundle.read(landmarker.LANDMARKS_MODEL)
        batched = ", ".join(f"{invoke_ms(model, OpResolverType.AUTO, batch=n):.2f} in batches of {n}" for n in (4, 8))
        print(f"landmark model batched (XNNPACK), CPU ms per crop: {batched}")


def _fallback_step(analyzer: landmarker.FaceAnalyzer, step: str, rgb: np.ndarray) -> bool:
    """Whether one step of ``_measure_small_crop``'s fallback, in its order, finds a face."""
    if step == "upscaled retries":
        return any(analyzer._measure_as_crop(landmarker._prepare(rgb, scale, border))
                   for scale, border in landmarker.RETRY_VARIANTS[1:])
    if step == "turned whole-crop starts":
        return bool(analyzer._measure_crop(rgb))
    return bool(analyzer._graph_retries(rgb))


def route_timings(rgbs: list[np.ndarray]) -> None:
    analyzer = landmarker.close_at_exit(landmarker.FaceAnalyzer())  # closed before MediaPipe unloads
    for rgb in rgbs[:5]:
        analyzer.detect(rgb)  # warm up
    direct_ms, fallback_ms = [], []
    step_ms = {"upscaled retries": 0.0, "turned whole-crop starts": 0.0, "graph retries": 0.0}
    decided = dict.fromkeys(step_ms, 0) | {"no face": 0}
    for rgb in rgbs:
        start = time.process_time()
        if analyzer._measure_as_crop(rgb):
            direct_ms.append(1000 * (time.process_time() - start))
            continue
        found = False
        for step in step_ms:
            step_start = time.process_time()
            found = _fallback_step(analyzer, step, rgb)
            step_ms[step] += 1000 * (time.process_time() - step_start)
            if found:
                decided[step] += 1
                break
        decided["no face"] += not found
        fallback_ms.append(1000 * (time.process_time() - start))
    total = sum(direct_ms) + sum(fallback_ms)
    print(f"crop mode: {total / len(rgbs):.2f} CPU ms/image (= {2000 * len(rgbs) / total:.0f} img/s on 2 free cores)")
    print(f"  direct pass finds the face: {len(direct_ms)} crops, {np.mean(direct_ms):.2f} ms each")
    if fallback_ms:
        print(f"  fallback: {len(fallback_ms)} crops, {np.mean(fallback_ms):.2f} ms each, "
              f"{sum(fallback_ms) / total:.0%} of the CPU time")
        for step, ms in step_ms.items():
            print(f"    {step:26s} {ms:7.1f} ms in all, decides {decided[step]} crops")
        print(f"    no face at all: {decided['no face']} crops")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", type=int, default=12, help="every k-th image of val")
    parser.add_argument("--limit", type=int, default=300)
    args = parser.parse_args()
    paths = [it.path for it in list_images(fer_split_dir("val"))[:: args.step][: args.limit]]
    start = time.process_time()
    rgbs = [np.ascontiguousarray(load_image(p)) for p in paths]
    print(f"{len(rgbs)} FER2013 val images, decoded in {1000 * (time.process_time() - start) / len(rgbs):.2f} "
          "CPU ms each")
    model_timings()
    route_timings(rgbs)


if __name__ == "__main__":
    from fer_core.measure.landmarker import keep_mediapipe_offline

    keep_mediapipe_offline()  # MediaPipe runs in this process too (README: Data protection)
    main()
