"""MediaPipe blendshapes and landmark geometry -> OpenFace's 17 intensity AUs on 0-5.

One table, one row per AU, each citing what it is computed from. Every source is normalised to
0..1 between a resting value ``lo`` (median over FER2013 train faces) and a strong value ``hi``
(its 99.5th percentile); the AU is 5 x the mean of its sources, clipped to 0-5. The numbers come
from ``bench/calibrate_au_mapping.py`` (FER2013 train, 400 faces per emotion).

Why geometry: on FER2013 crops ``cheekSquint`` and ``noseSneer`` stay below 1e-4, so they are
read on a log scale and backed by landmark geometry (lower-eyelid rise for AU06, nose-to-lip
shortening for AU09); lips part (AU25) is the inner-lip gap.
"""

from __future__ import annotations

import numpy as np

from ..au_codes import AU_CODES

# Landmark indices of MediaPipe's 478-point face mesh used by the geometry features.
_RIGHT_EYE = (33, 133)
_LEFT_EYE = (362, 263)
_LOWER_LIDS = (145, 374)
_INNER_BROWS = (55, 285)
_NOSE_BRIDGE = 6
_NOSE_BASE = 2
_UPPER_LIP_TOP = 0
_INNER_LIPS = (13, 14)


def eye_line(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(the point between the eyes, the vector from the right eye to the left, its angle in radians:
    0 for a face upright in the picture, about +-pi/2 for one lying on its side)."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    right = pts[list(_RIGHT_EYE)].mean(axis=0)
    left = pts[list(_LEFT_EYE)].mean(axis=0)
    axis = left - right
    return (right + left) / 2, axis, float(np.arctan2(axis[1], axis[0]))


def geometry_features(landmarks: np.ndarray) -> dict[str, float]:
    """Pose-normalised distances: 2D-aligned so the eyes are level, in units of eye distance.

    y grows downwards, so a *smaller* ``lower_lid_y`` means the lower lids rose (cheek raiser).
    """
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    centre, axis, angle = eye_line(pts)
    iod = float(np.hypot(*axis)) or 1.0
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    a = (pts - centre) @ rot.T / iod

    def dist(i: int, j: int) -> float:
        return float(np.hypot(*(a[i] - a[j])))

    return {
        "lower_lid_y": float(a[list(_LOWER_LIDS), 1].mean()),
        "nose_to_lip": dist(_NOSE_BASE, _UPPER_LIP_TOP),
        "brow_to_nose": (dist(_INNER_BROWS[0], _NOSE_BRIDGE) + dist(_INNER_BROWS[1], _NOSE_BRIDGE)) / 2,
        "lip_gap": dist(*_INNER_LIPS),
    }


# Each AU's mean per emotion (its "profile", six emotions) on FER2013 train against the original
# study's OpenFace table: Pearson r from ``bench/cross_backend.py`` part (a) (``scale_report``).
# The other 11 AUs agree at r >= 0.7; a reason resting on one of these is read with care.
LOW_PROFILE_AGREEMENT: dict[str, float] = {
    "AU04": 0.32, "AU09": 0.42, "AU14": 0.06, "AU15": 0.20, "AU17": 0.67, "AU20": 0.27,
}
# AUs whose source is not quite what the OpenFace name says (README, "How close these AUs are"):
# AU23 is MediaPipe's mouthPress, lips pressed together (nearer FACS AU24 lip pressor); AU45 on a
# still photo is how closed the eyes are, not the movement FACS calls a blink.
READ_AS: tuple[str, ...] = ("AU23", "AU45")


# (AU, source name, log scale): the mapping table. Its (lo, hi) numbers are in _CALIBRATION.
AU_SOURCE_NAMES: tuple[tuple[str, str, bool], ...] = (
    ("AU01", "browInnerUp", False),
    ("AU02", "browOuterUp", False),          # browOuterUpLeft/Right
    ("AU04", "browDown", False),             # browDownLeft/Right
    ("AU04", "geo:brow_to_nose", False),     # inner brows pulled down towards the nose bridge
    ("AU05", "eyeWide", False),              # eyeWideLeft/Right
    ("AU06", "cheekSquint", True),           # cheekSquintLeft/Right, near zero on small crops
    ("AU06", "geo:lower_lid_y", False),      # lower eyelids pushed up by the cheeks
    ("AU07", "eyeSquint", False),            # eyeSquintLeft/Right
    ("AU09", "noseSneer", True),             # noseSneerLeft/Right, near zero on small crops
    ("AU09", "geo:nose_to_lip", False),      # nose base to upper lip shortens
    ("AU10", "mouthUpperUp", False),         # mouthUpperUpLeft/Right
    ("AU12", "mouthSmile", False),           # mouthSmileLeft/Right
    ("AU14", "mouthDimple", False),          # mouthDimpleLeft/Right
    ("AU15", "mouthFrown", False),           # mouthFrownLeft/Right
    ("AU17", "mouthShrugLower", False),
    ("AU20", "mouthStretch", False),         # mouthStretchLeft/Right
    ("AU23", "mouthPress", False),           # mouthPressLeft/Right
    ("AU25", "geo:lip_gap", False),          # inner lips apart
    ("AU25", "mouthLowerDown", False),       # mouthLowerDownLeft/Right
    ("AU26", "jawOpen", False),
    ("AU45", "eyeBlink", False),             # eyeBlinkLeft/Right
)

# source name -> (lo, hi), printed by bench/calibrate_au_mapping.py
_CALIBRATION: dict[str, tuple[float, float]] = {
    "browDown": (0.01951, 0.8521),
    "browInnerUp": (0.05625, 0.9656),
    "browOuterUp": (0.1543, 0.9374),
    "cheekSquint": (8.22e-07, 1.265e-05),
    "eyeBlink": (0.1003, 0.7324),
    "eyeSquint": (0.2875, 0.7658),
    "eyeWide": (0.009504, 0.3798),
    "geo:brow_to_nose": (0.3604, 0.253),
    "geo:lip_gap": (0.07605, 0.6475),
    "geo:lower_lid_y": (0.05065, 0.004015),
    "geo:nose_to_lip": (0.2243, 0.1057),
    "jawOpen": (0.01778, 0.7478),
    "mouthDimple": (0.005403, 0.2294),
    "mouthFrown": (0.006559, 0.5222),
    "mouthLowerDown": (0.0078, 0.9211),
    "mouthPress": (0.01655, 0.3511),
    "mouthShrugLower": (0.01187, 0.6841),
    "mouthSmile": (0.001042, 0.9431),
    "mouthStretch": (0.01106, 0.6619),
    "mouthUpperUp": (0.001977, 0.795),
    "noseSneer": (3.173e-06, 4.849e-05),
}


def source_value(name: str, blendshapes: dict[str, float], geometry: dict[str, float]) -> float:
    """Raw value of one source: a geometry feature, a blendshape, or the mean of its L/R pair."""
    if name.startswith("geo:"):
        return geometry[name[4:]]
    if name in blendshapes:
        return blendshapes[name]
    pair = [blendshapes.get(name + side) for side in ("Left", "Right")]
    pair = [v for v in pair if v is not None]
    if not pair:
        raise KeyError(f"blendshape {name} missing")
    return float(np.mean(pair))


def _normalise(value: float, lo: float, hi: float, log: bool) -> float:
    if log:
        value, lo, hi = (np.log10(max(v, 1e-9)) for v in (value, lo, hi))
    if hi == lo:
        return 0.0
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0))


def aus_from_face(blendshapes: dict[str, float], landmarks: np.ndarray) -> dict[str, float]:
    """The 17 AU intensities (0-5, keyed 'AU01'…) of one face."""
    return aus_from_measurements(blendshapes, geometry_features(landmarks))


def aus_from_measurements(blendshapes: dict[str, float], geometry: dict[str, float]) -> dict[str, float]:
    """The 17 AUs from blendshapes and already computed geometry features (cached extraction)."""
    parts: dict[str, list[float]] = {code: [] for code in AU_CODES}
    for code, name, log in AU_SOURCE_NAMES:
        lo, hi = _CALIBRATION[name]
        parts[code].append(_normalise(source_value(name, blendshapes, geometry), lo, hi, log))
    return {code: round(5.0 * float(np.mean(vals)), 3) for code, vals in parts.items()}


# Face-mesh landmarks around the muscles of each AU, for drawing the strongest AUs on a face.
AU_LANDMARKS: dict[str, tuple[int, ...]] = {
    "AU01": (55, 65, 285, 295, 107, 336),            # inner brows
    "AU02": (46, 53, 276, 283, 70, 300),             # outer brows
    "AU04": (55, 285, 65, 295, 9, 107, 336),         # brows and glabella
    "AU05": (159, 158, 160, 386, 385, 387),          # upper lids
    "AU06": (145, 374, 50, 280, 117, 346),           # lower lids and cheeks
    "AU07": (145, 153, 374, 380, 159, 386),          # lids
    "AU09": (6, 197, 195, 5, 98, 327),               # nose bridge and wings
    "AU10": (0, 37, 267, 39, 269),                   # upper lip
    "AU12": (61, 291, 40, 270),                      # lip corners
    "AU14": (61, 291, 57, 287),                      # lip corners (dimples)
    "AU15": (61, 291, 146, 375),                     # lip corners pulled down
    "AU17": (17, 18, 200, 199, 175),                 # chin
    "AU20": (61, 291, 78, 308),                      # mouth stretched sideways
    "AU23": (0, 17, 13, 14, 82, 312),                # lips
    "AU25": (13, 14, 82, 87, 312, 317),              # inner lips
    "AU26": (152, 17, 14, 175),                      # jaw
    "AU45": (159, 145, 386, 374),                    # eyelids
}
