"""What the measuring worker processes run, and starting them: NumPy, Pillow and MediaPipe only.

A spawned worker imports the module of its task before it can take one, and a page that measures
photos starts its worker before its own imports; so this module imports no pandas (nor anything
that does), unlike ``extract``, which re-exports these names. ``tests/test_workers.py`` checks it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace

import numpy as np

from ..au_codes import AU_CODES, AU_COLUMNS
from ..errors import FerError, ImageError
from ..images import MAX_FILE_BYTES, decode_settings, load_image
from ..safe_files import read_regular_file
from . import au_mapping
from .workers import shared_pool

NO_FACE_REASON = "no face found"


@dataclass
class FaceMeasurement:
    """What the AU mapping needs of one face (box and confidence in image pixels, blendshapes,
    geometry features), rounded as cached, plus the landmarks when kept for drawing."""

    box: tuple[float, float, float, float]
    confidence: float
    blendshapes: dict[str, float]
    geometry: dict[str, float]
    landmarks: np.ndarray | None = field(default=None, repr=False)
    method: str = "detector"  # or "crop": the detector missed it, measured on the whole face crop; or TURNED_UPRIGHT
    low_confidence: bool = False

    def aus(self) -> dict[str, float]:
        """AU columns ('AU01_r'…) of this face."""
        aus = au_mapping.aus_from_measurements(self.blendshapes, self.geometry)
        return {f"{code}_r": aus[code] for code in AU_CODES}

    def au_vector(self) -> np.ndarray:
        aus = self.aus()
        return np.array([aus[c] for c in AU_COLUMNS], dtype=float)

    def to_cache(self) -> dict:
        return {"box": list(self.box), "confidence": self.confidence, "blendshapes": self.blendshapes,
                "geometry": self.geometry, "method": self.method, "low_confidence": self.low_confidence}

    @classmethod
    def from_cache(cls, d: dict) -> "FaceMeasurement":
        return cls(tuple(d["box"]), float(d["confidence"]), d["blendshapes"], d["geometry"],
                   method=d.get("method", "detector"), low_confidence=bool(d.get("low_confidence", False)))


def measure_faces(analyzer, rgb: np.ndarray, keep_landmarks: bool = False, crop: bool = False,
                  ) -> list[FaceMeasurement]:
    """Every face of an image, largest first, measured for the AU mapping. ``crop``: the image
    is a face crop whatever its size (face-crop mode, ``extract --crops``)."""
    faces = analyzer.detect(rgb, crop=True) if crop else analyzer.detect(rgb)
    measured = [measurement_of(face, keep_landmarks) for face in faces]
    from .landmarker import SMALL_IMAGE_SIDE

    # photos only: a face crop (FER2013's 48 px, --crops) is measured in face-crop mode, never turned
    if crop or max(rgb.shape[:2]) < SMALL_IMAGE_SIDE:
        return measured
    if not faces or any(f.low_confidence for f in faces):
        measured = _turned_upright(analyzer, rgb, measured, keep_landmarks)
    sideways = [k for k, face in enumerate(faces) if measured[k].method != TURNED_UPRIGHT and _sideways(face.landmarks)]
    if sideways or not measured:
        measured = _turned_sideways(analyzer, rgb, measured, sideways, keep_landmarks)
    return measured


def _roll(landmarks) -> float | None:
    """The angle of a face's eye line in the picture, in degrees (0: upright, about +-90: lying on
    its side); None without landmarks."""
    if landmarks is None or len(landmarks) <= max(au_mapping._LEFT_EYE):
        return None
    return float(np.degrees(au_mapping.eye_line(landmarks)[2]))


def _upright(landmarks) -> bool:
    """A face whose eye line is within a tilted head's angle of level (no landmarks: taken as is)."""
    roll = _roll(landmarks)
    return roll is None or abs(roll) < 90 - SIDEWAYS_ROLL[0]


def _sideways(landmarks) -> bool:
    """A face lying on its side in the picture (a phone photo whose turn was lost with its EXIF)."""
    roll = _roll(landmarks)
    return roll is not None and SIDEWAYS_ROLL[0] <= abs(roll) <= SIDEWAYS_ROLL[1]


SIDEWAYS_ROLL = (60.0, 120.0)  # degrees of the eye line: a face on its side, not a tilted head


def _turned_sideways(analyzer, rgb: np.ndarray, measured: list[FaceMeasurement], sideways: list[int],
                     keep_landmarks: bool) -> list[FaceMeasurement]:
    """A face lying on its side (a photo turned a quarter, its EXIF lost) had its mesh fitted
    sideways: its AUs moved by 0.54 on average from the same face upright (FER2013 faces turned, 3
    of 12 not found at all). The photo is searched turned a quarter each way: a face found there
    surely and upright, where the sideways one is, is measured so, its box and landmarks turned
    back; in a photo with no face found, the faces found surely so are its faces."""
    from .landmarker import PHOTO_SURE_SCORE, _iou

    h, w = rgb.shape[:2]
    out = list(measured)
    for k in (1, -1):  # a quarter turn counterclockwise, then clockwise
        turned = [(face, quarter_turned_back(measurement_of(face, keep_landmarks=True), k, w, h))
                  for face in analyzer.detect(np.ascontiguousarray(np.rot90(rgb, k)))]
        upright = [m for face, m in turned if m.confidence >= PHOTO_SURE_SCORE and _upright(face.landmarks)]
        if not keep_landmarks:
            upright = [replace(m, landmarks=None) for m in upright]
        if not measured:
            if upright:
                return [replace(m, low_confidence=False) for m in upright]
            continue
        for i in [i for i in sideways if out[i].method != TURNED_UPRIGHT]:
            found = next((m for m in upright if _iou(m.box, out[i].box) > 0.3), None)
            if found is not None:
                out[i] = replace(found, low_confidence=False)
        if all(out[i].method == TURNED_UPRIGHT for i in sideways):
            break
    return out


def quarter_turned_back(m: FaceMeasurement, k: int, width: int, height: int) -> FaceMeasurement:
    """A face measured in a ``width`` x ``height`` picture turned a quarter (``numpy.rot90``'s ``k``:
    1 counterclockwise, -1 clockwise), with its box and landmarks in the picture's own pixels; its
    AUs and geometry stay the upright face's."""
    x, y, bw, bh = m.box
    if k == 1:  # (x, y) of the picture is (y, width - x) of the turned one
        box = (width - (y + bh), x, bh, bw)
    else:  # (x, y) of the picture is (height - y, x) of the turned one
        box = (y, height - (x + bw), bh, bw)
    landmarks = None
    if m.landmarks is not None:
        turned = np.asarray(m.landmarks, dtype=float)
        landmarks = turned.copy()
        if k == 1:
            landmarks[:, 0], landmarks[:, 1] = width - turned[:, 1], turned[:, 0]
        else:
            landmarks[:, 0], landmarks[:, 1] = turned[:, 1], height - turned[:, 0]
    return replace(m, box=box, landmarks=landmarks, method=TURNED_UPRIGHT)


TURNED_UPRIGHT = "turned upright"  # a ``FaceMeasurement.method``: upside down, measured in the photo turned over
TURNED_MARGIN = 0.1  # the turned photo's detection must be this much surer, and sure (PHOTO_SURE_SCORE)


def _turned_upright(analyzer, rgb: np.ndarray, measured: list[FaceMeasurement],
                    keep_landmarks: bool) -> list[FaceMeasurement]:
    """A face the detector is unsure of may be upside down (a child lying down, a photo turned
    over): the mesh was fitted to it as if upright, and a smile read "angry, mostly because of AU04
    brow lowerer", the brow's points on the teeth. The photo turned over is searched too; a face
    found there surely, where the unsure one is, is measured so (its AUs and geometry from the
    upright face), its box and landmarks turned back into the photo's pixels. In a photo where
    no face was found, the faces found surely turned over are its faces. (An upside-down face
    missed beside a face found surely is not looked for: that would search every photo twice.)"""
    from .landmarker import PHOTO_SURE_SCORE, _iou

    h, w = rgb.shape[:2]
    # only a face found upright there (a face on its side stays on its side turned over: a quarter turn's)
    turned = [turned_back(measurement_of(face, keep_landmarks), w, h)
              for face in analyzer.detect(np.ascontiguousarray(rgb[::-1, ::-1])) if _upright(face.landmarks)]
    if not measured:  # none found: an upside-down face the detector missed, found surely turned over
        return [replace(t, low_confidence=False) for t in turned if t.confidence >= PHOTO_SURE_SCORE]
    out = list(measured)
    for k, m in enumerate(measured):
        if not m.low_confidence:
            continue
        for t in turned:
            if t.confidence >= max(PHOTO_SURE_SCORE, m.confidence + TURNED_MARGIN) and _iou(t.box, m.box) > 0.3:
                out[k] = replace(t, low_confidence=False)
                break
    return out


def turned_back(m: FaceMeasurement, width: int, height: int) -> FaceMeasurement:
    """A face measured in a ``width`` x ``height`` picture turned over (180 degrees), with its box
    and landmarks in the picture's own pixels; its AUs and geometry stay the upright face's."""
    x, y, bw, bh = m.box
    landmarks = None
    if m.landmarks is not None:
        landmarks = np.array(m.landmarks, dtype=float, copy=True)
        landmarks[:, 0], landmarks[:, 1] = width - landmarks[:, 0], height - landmarks[:, 1]
    return replace(m, box=(width - x - bw, height - y - bh, bw, bh), landmarks=landmarks, method=TURNED_UPRIGHT)


def measurement_of(face, keep_landmarks: bool = False) -> FaceMeasurement:
    """The AU mapping's view of one ``landmarker.Face``."""
    d = face.to_dict()
    return FaceMeasurement(
        box=tuple(d["box"]), confidence=d["confidence"],
        blendshapes={k: round(v, 8) for k, v in face.blendshapes.items()},
        geometry={k: round(v, 6) for k, v in au_mapping.geometry_features(face.landmarks).items()},
        landmarks=face.landmarks if keep_landmarks else None, method=face.method,
        low_confidence=face.low_confidence)


_worker_analyzer = None


def _init_worker() -> None:
    """Each process measures with its one analyzer (started once, closed at exit)."""
    global _worker_analyzer
    from .landmarker import keep_mediapipe_offline, shared_analyzer

    keep_mediapipe_offline()  # a worker (or Ray actor) measures faces and fetches nothing
    _worker_analyzer = shared_analyzer()


def _measure_path(path: str, crop: bool = False) -> list[dict] | str:
    """Worker task: measurements as cached, or the one-line reason the file failed (without the
    path: the row names the file, and the cache may serve the answer for a copy elsewhere)."""
    return _measure_keyed(path, crop)[1]


def content_digest(data: bytes) -> str:
    """What names a file's bytes in the measurement cache's keys."""
    return hashlib.sha1(data).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """``content_digest`` of a file, read in blocks (a video may be gigabytes)."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _measure_keyed(path: str, crop: bool, digest: str | None = None) -> tuple[bool, list[dict] | str]:
    """Worker task of a cached extraction: (whether the answer came from the bytes ``digest``
    names, so that it may be cached under them; the answer as ``_measure_path`` gives it). A file
    that vanished or could not be read, or that changed after its key was made, is answered now
    and measured afresh next time: a lasting "cannot be read" for it, or for any copy of its
    bytes, would be wrong once it is back."""
    try:
        data = read_regular_file(path, MAX_FILE_BYTES, "give a JPEG or PNG image file", what="image file",
                                 error=ImageError, label="image")
    except FerError as exc:
        return False, str(exc).removeprefix("image: ")
    try:
        answer = [m.to_cache() for m in measure_faces(_worker_analyzer, load_image(data, name="image"), crop=crop)]
    except FerError as exc:
        answer = str(exc).removeprefix("image: ")
    return digest is not None and content_digest(data) == digest, answer


def _measure_task(arg):
    """Worker task: a file by path (measurements as cached), ``("keyed", path, crop, digest)`` (the
    same, and whether it may be cached: ``_measure_keyed``), an image array (measurements with
    landmarks, for drawing; ``("crop", array)`` measured as a face crop), or ``("mask", path, style,
    seed[, crop])`` (the face masked and measured again, ``fer_core.masks.mask_and_measure``)."""
    if isinstance(arg, np.ndarray):
        return measure_faces(_worker_analyzer, arg, keep_landmarks=True)
    if isinstance(arg, tuple) and arg[0] == "crop":  # a face crop, whatever its size (Try it's Face crops)
        return measure_faces(_worker_analyzer, arg[1], keep_landmarks=True, crop=True)
    if isinstance(arg, tuple) and arg[0] == "keyed":
        return _measure_keyed(*arg[1:])
    if isinstance(arg, tuple) and arg[0] == "mask":
        from ..masks import mask_and_measure

        _, source, style, seed, *crop = arg
        try:
            rgb = source if isinstance(source, np.ndarray) else load_image(source, name="image")
            return mask_and_measure(_worker_analyzer, rgb, style, seed, crop=bool(crop and crop[0]))
        except FerError as exc:
            return str(exc).removeprefix("image: ")
    return _measure_path(arg)


CRASH_REASON = "the face detector crashed on this image"  # the row of a file whose measuring process died


def worker_settings() -> str:
    """What a measuring worker takes from the environment as it starts: the image limits and the
    landmarker ``FER_LANDMARKER_MODEL`` names (``shared_pool``'s ``settings``)."""
    from .landmarker import MODEL_ENV

    parts = (decode_settings(), os.environ.get(MODEL_ENV, ""))
    return "|".join(parts) if any(parts) else ""  # "": the defaults


def _pool(key: str, workers: int):
    return shared_pool(key, max(1, workers), _measure_task, _init_worker, settings=worker_settings(),
                       crash_message=CRASH_REASON)


def start_photo_worker() -> None:
    """Start ``measure_image``'s worker now, without waiting: a page that will measure photos
    calls it when it opens, so MediaPipe loads (seconds, in its own process) while the person
    picks a photo instead of after."""
    _pool("photo", 1).start()


def measure_image(image, crop: bool = False) -> list[FaceMeasurement]:
    """Every face of one image, largest first, with landmarks, measured in a crash-isolated worker
    (the dashboard's server never runs MediaPipe itself). A single photo has its own worker, so it
    does not wait behind a long extraction. ``image``: anything ``load_image`` takes (an RGB, gray,
    RGBA or float array, a PIL image, a path or bytes), shaped and size-checked as it does.
    ``crop``: the image is a face crop whatever its size (face-crop mode, as ``extract --crops``)."""
    rgb = load_image(image)
    pool = _pool("photo", 1)
    with pool.held():
        for _, result in pool.imap_unordered([("crop", rgb) if crop else rgb]):
            if isinstance(result, str):
                raise ImageError(f"image: {result}")
            return result
    return []


def measure_masked_image(image, style: str, seed: int = 0, crop: bool = False):
    """``masks.mask_and_measure`` on one image (anything ``load_image`` takes), in Try it's
    crash-isolated worker (``crop``: a face crop, as ``measure_image``)."""
    rgb = load_image(image)
    pool = _pool("photo", 1)
    with pool.held():
        for _, result in pool.imap_unordered([("mask", rgb, style, seed, crop)]):
            if isinstance(result, str):
                raise ImageError(f"image: {result}")
            return result
    raise ImageError("image: not measured")


