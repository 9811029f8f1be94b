"""Face-crop mode: the bundle's detector, landmark and blendshape models run directly on LiteRT.

For images that are already face crops (FER2013's 48x48, or any image with ``--crops``),
MediaPipe's FaceLandmarker graph is slow for what it does: a graph run per image, and for
FER2013 crops up to four upscaled, padded retries. Here one detector pass on the crop as given
places the region of interest exactly as MediaPipe's face landmarker does (the detection box x
1.5, square, turned so the eyes are level), and one landmark pass and one blendshape pass
follow. The faces are the ones today's route finds on its first try, with the same AUs
(``bench/crop_mode_speed.py`` measures both). No TensorFlow, no MediaPipe graph.
"""

from __future__ import annotations

import io
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DETECTOR_MODEL = "face_detector.tflite"
DETECTOR_INPUT = 128
# MediaPipe's short-range BlazeFace anchors (face_detection_short_range.pbtxt, SsdAnchorsCalculator):
# strides 8, 16, 16, 16 on a 128 x 128 input, two anchors per cell per layer, fixed size.
_STRIDES = (8, 16, 16, 16)
# ... and its decoding and suppression (TensorsToDetectionsCalculator, NonMaxSuppression).
_BOX_SCALE = 128.0
_NMS_IOU = 0.3
# The landmark model's region of interest around a detection (face_landmarker's
# DetectionsToRects + RectTransformation): keypoints 0 and 1 (the eyes) level, box x 1.5, square.
ROI_SCALE = 1.5


@lru_cache(maxsize=1)
def _anchors() -> np.ndarray:
    """(896, 2) anchor centres in 0..1, in the order of the model's outputs."""
    centres = []
    i = 0
    while i < len(_STRIDES):
        stride, per_cell = _STRIDES[i], 0
        while i < len(_STRIDES) and _STRIDES[i] == stride:  # layers of one stride share a grid
            per_cell += 2
            i += 1
        cells = int(np.ceil(DETECTOR_INPUT / stride))
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.asarray(centres, dtype=np.float64)


@dataclass
class Detection:
    """The best face of a crop: its box (x, y, w, h) and six keypoints in image pixels, and score."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose tip, mouth, right ear, left ear
    score: float

    def roi(self) -> tuple[float, float, float, float]:
        """(centre x, centre y, side, angle in radians) of the landmark model's input, as
        MediaPipe's face landmarker derives it from a detection."""
        x, y, w, h = self.box
        (x0, y0), (x1, y1) = self.keypoints[0], self.keypoints[1]
        return x + w / 2, y + h / 2, ROI_SCALE * max(w, h), float(np.arctan2(y1 - y0, x1 - x0))


def decode(regressors: np.ndarray, scores: np.ndarray, min_score: float,
           max_faces: int = 5) -> list[tuple[np.ndarray, float]]:
    """Detections as MediaPipe's weighted non-maximum suppression gives them, most confident
    first, at most ``max_faces``: (16 values in 0..1 of the detector's input: box centre, size,
    six keypoints; score). Each is the score-weighted mean of the boxes overlapping the best
    remaining one; none when no anchor reaches ``min_score``."""
    prob = 1.0 / (1.0 + np.exp(-np.clip(scores.reshape(-1).astype(np.float64), -100.0, 100.0)))
    keep = np.flatnonzero(prob >= min_score)
    raw = regressors.reshape(-1, 16)[keep].astype(np.float64) / _BOX_SCALE
    anchors = _anchors()[keep]
    values = raw.copy()
    values[:, 0:2] += anchors
    values[:, 4::2] += anchors[:, :1]
    values[:, 5::2] += anchors[:, 1:]
    p = prob[keep]
    lo, hi = values[:, 0:2] - values[:, 2:4] / 2, values[:, 0:2] + values[:, 2:4] / 2  # box corners
    area = np.prod(values[:, 2:4], axis=1)
    left = np.ones(len(p), dtype=bool)
    found: list[tuple[np.ndarray, float]] = []
    while left.any() and len(found) < max_faces:
        top = int(np.argmax(np.where(left, p, -1.0)))
        inter = np.prod(np.clip(np.minimum(hi, hi[top]) - np.maximum(lo, lo[top]), 0.0, None), axis=1)
        group = left & (inter > _NMS_IOU * np.maximum(area + area[top] - inter, 1e-12))  # IoU above it
        group[top] = True
        weights = p[group]
        found.append(((weights[:, None] * values[group]).sum(axis=0) / weights.sum(), float(p[top])))
        left &= ~group
    return found


class CropDetector:
    """The bundle's BlazeFace detector on one crop, letterboxed (zeros) to its 128 x 128 input
    in -1..1, as MediaPipe's face detector graph feeds it."""

    def __init__(self, bundle: bytes):
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(io.BytesIO(bundle)) as z:
            self._model = Interpreter(model_content=z.read(DETECTOR_MODEL), num_threads=1)
        self._model.allocate_tensors()
        self._in = self._model.get_input_details()[0]["index"]
        out = {d["name"]: d["index"] for d in self._model.get_output_details()}
        self._regressors, self._scores = out["regressors"], out["classificators"]
        self._lock = threading.Lock()

    def faces(self, rgb: np.ndarray, min_score: float, max_faces: int = 5) -> list[Detection]:
        """The crop's faces at or above ``min_score``, most confident first."""
        from .landmarker import sample_square

        h, w = rgb.shape[:2]
        side = float(max(h, w))
        square, to_image = sample_square(rgb, w / 2, h / 2, side, 0.0, DETECTOR_INPUT, like_mediapipe=True)
        with self._lock:
            self._model.set_tensor(self._in, (square[None] / 127.5 - 1.0).astype(np.float32))
            self._model.invoke()
            found = decode(self._model.get_tensor(self._regressors), self._model.get_tensor(self._scores),
                           min_score, max_faces)
        out = []
        for values, score in found:
            points = to_image(np.column_stack([values[4::2], values[5::2]]) * DETECTOR_INPUT)
            (x0, y0), (x1, y1) = to_image(np.array([values[0:2] - values[2:4] / 2,
                                                    values[0:2] + values[2:4] / 2]) * DETECTOR_INPUT)
            out.append(Detection(box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), keypoints=points,
                                 score=score))
        return out
