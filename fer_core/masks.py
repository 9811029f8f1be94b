"""Synthetic face masks drawn from the 478 face-mesh landmarks, and what they hide.

The original study was motivated by masks: children who grew up among masked faces read emotions
less well. A mask drawn on any face (a 48 x 48 FER2013 crop or a photo) lets every model be scored
on the same faces with and without it, and an AU model shows what is still readable above it.

The mask is one polygon: its top edge runs from one side of the face over the cheeks to the nose
bridge (mesh points below the eyes, never on them), its lower edge follows the jaw line, pushed a
little outwards so the chin is covered. It is filled opaque in one of a few styles, drawn at 4-8x
resolution and shrunk, so its edge is anti-aliased; the seed only varies the shade and the folds,
so the same seed gives the same picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Mesh points of the mask's outline, image-left to image-right along the top (cheek, cheekbone,
# below the eyes, the nose bridge), then back along the jaw under the chin.
MASK_TOP: tuple[int, ...] = (93, 137, 123, 50, 101, 100, 47, 197, 277, 329, 330, 280, 352, 366, 323)
MASK_JAW: tuple[int, ...] = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)
JAW_MARGIN = 0.08  # the lower edge sits this share of the face height below the jaw line

# Landmarks a mask must hide and must leave visible (tests check both on real faces).
LOWER_FACE_POINTS: tuple[int, ...] = (1, 4, 0, 13, 14, 17, 61, 291, 152)  # nose tip, lips, mouth corners, chin
UPPER_FACE_POINTS: tuple[int, ...] = (33, 133, 159, 145, 263, 362, 386, 374,  # eyes
                                      70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows
                                      468, 473)  # iris centres


@dataclass(frozen=True)
class MaskStyle:
    name: str
    colour: tuple[int, int, int]
    folds: bool  # pleats drawn as darker lines
    label: str


STYLES: dict[str, MaskStyle] = {s.name: s for s in (
    MaskStyle("surgical", (148, 196, 226), True, "surgical, light blue"),
    MaskStyle("white", (236, 236, 232), True, "white"),
    MaskStyle("cloth", (38, 38, 42), False, "black cloth"),
)}
DEFAULT_STYLE = "surgical"


def style_of(name: str) -> MaskStyle:
    if name not in STYLES:
        from .errors import FerError

        raise FerError(f"unknown mask style {name!r}; use one of: {', '.join(STYLES)}")
    return STYLES[name]


def mask_polygon(landmarks: np.ndarray) -> np.ndarray:
    """(k, 2) outline of the mask in the landmarks' pixel coordinates."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    top = pts[list(MASK_TOP)]
    jaw = pts[list(MASK_JAW)]
    nose_tip = pts[4]
    height = np.linalg.norm(pts[152] - pts[6])  # chin to nose bridge
    out = jaw - nose_tip
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    jaw = jaw + out / np.maximum(norms, 1e-6) * JAW_MARGIN * height
    return np.vstack([top, jaw])


def _region(polygon: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    """The mask's bounding box in the image (x0, y0, x1, y1) and how finely to draw it there."""
    h, w = shape[:2]
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    scale = int(np.clip(np.ceil(400 / max(x1 - x0, y1 - y0, 1)), 2, 8))  # small faces are drawn finer
    return x0, y0, x1, y1, scale


def _alpha(polygon: np.ndarray, region: tuple[int, int, int, int, int]) -> np.ndarray:
    """Share of each pixel of the region the polygon covers: drawn ``scale`` times finer, then
    averaged (an anti-aliased edge without ringing)."""
    x0, y0, x1, y1, scale = region
    alpha = Image.new("L", ((x1 - x0) * scale, (y1 - y0) * scale), 0)
    ImageDraw.Draw(alpha).polygon([tuple(p) for p in (polygon - [x0, y0]) * scale], fill=255)
    return np.asarray(alpha.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), dtype=np.float64) / 255.0


def draw_mask(rgb: np.ndarray, landmarks: np.ndarray, style: str = DEFAULT_STYLE, seed: int = 0) -> np.ndarray:
    """A copy of ``rgb`` with an opaque mask over the face whose ``landmarks`` (478, 2 or 3) are
    given in its pixels."""
    kind = style_of(style)
    rng = np.random.default_rng(seed)
    polygon = mask_polygon(landmarks)
    region = _region(polygon, rgb.shape)
    x0, y0, x1, y1, scale = region
    if x1 <= x0 or y1 <= y0:
        return rgb.copy()
    box_w, box_h = x1 - x0, y1 - y0
    local = (polygon - [x0, y0]) * scale
    size = (box_w * scale, box_h * scale)
    shade = np.clip(np.array(kind.colour) + rng.integers(-8, 9, 3), 0, 255)
    fabric = Image.new("RGB", size, tuple(int(v) for v in shade))
    draw = ImageDraw.Draw(fabric)
    top_y = local[: len(MASK_TOP), 1].max()
    bottom_y = local[len(MASK_TOP):, 1].max()
    if kind.folds:  # pleats: three darker lines across, a little irregular per seed
        dark = tuple(int(v * 0.82) for v in shade)
        for frac in (0.3, 0.5, 0.7):
            y = top_y + (bottom_y - top_y) * (frac + rng.uniform(-0.04, 0.04)) * 0.8
            draw.line([(0, y), (size[0] / 2, y + rng.uniform(-2, 2) * scale), (size[0], y)], fill=dark,
                      width=max(1, scale))
    # a soft vertical shading, so the mask reads as cloth rather than a flat sticker
    ramp = np.linspace(1.06, 0.9, size[1])[:, None, None]
    fabric = Image.fromarray(np.clip(np.asarray(fabric, dtype=np.float64) * ramp, 0, 255).astype(np.uint8))
    fabric = fabric.filter(ImageFilter.GaussianBlur(scale * 0.3)).resize((box_w, box_h), Image.Resampling.BOX)
    a = _alpha(polygon, region)[..., None]
    out = rgb.copy()
    region_pixels = out[y0:y1, x0:x1].astype(np.float64)
    out[y0:y1, x0:x1] = np.round(region_pixels * (1 - a) + np.asarray(fabric, dtype=np.float64) * a).astype(np.uint8)
    return out


def coverage(shape: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """(h, w) share of each pixel the mask covers (0-1, anti-aliased at the edge), as drawn."""
    polygon = mask_polygon(landmarks)
    region = _region(polygon, shape)
    x0, y0, x1, y1, _ = region
    out = np.zeros(shape[:2])
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = _alpha(polygon, region)
    return out


def covered_points(shape: tuple[int, ...], landmarks: np.ndarray, points: Sequence[int]) -> np.ndarray:
    """Which of the landmarks ``points`` the mask hides (their pixel is more than half covered)."""
    cover = coverage(shape, landmarks)
    h, w = cover.shape
    xy = np.asarray(landmarks, dtype=np.float64)[list(points), :2]
    x = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
    return cover[y, x] > 0.5


# AUs a mask hides, from bench/mask_effect.py on FER2013 val: under the mask their measured values
# are invented (they change most and lose their correlation with the unmasked face), so on masked
# faces they are unknown, not zero.
HIDDEN_AUS: tuple[str, ...] = ("AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")
VISIBLE_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU45")


@dataclass
class MaskedMeasure:
    """One image with its faces measured, a mask drawn on each, and measured again."""

    image: np.ndarray  # the masked image
    original: list  # FaceMeasurement of each face, largest first, unmasked
    masked: list  # FaceMeasurement of the same faces under the mask (same order)

    def masked_aus(self, face: int = 0) -> np.ndarray:
        """The 17 AUs of a masked face with those the mask hides unknown (NaN)."""
        return hide(self.masked[face].au_vector())


def hide(aus: np.ndarray) -> np.ndarray:
    """AUs of a masked face: those in HIDDEN_AUS become unknown (NaN), the rest are kept."""
    from .au_codes import AU_CODES

    out = np.asarray(aus, dtype=float).copy()
    out[[AU_CODES.index(c) for c in HIDDEN_AUS]] = np.nan
    return out


def mask_and_measure(analyzer, rgb: np.ndarray, style: str = DEFAULT_STYLE, seed: int = 0) -> MaskedMeasure | str:
    """Measure every face, draw a mask on each (seed + face index), and measure the masked image
    the usual way. A masked face the usual way misses (the detector misses about one in ten on
    FER2013 crops) is measured where it was before the mask (``FaceAnalyzer.measure_at``).
    Returns the one-line reason when no face is found in the unmasked image."""
    from .measure.landmarker import iou
    from .measure.tasks import NO_FACE_REASON, measure_faces, measurement_of

    faces = measure_faces(analyzer, rgb, keep_landmarks=True)
    if not faces:
        return NO_FACE_REASON
    masked = rgb
    for i, face in enumerate(faces):
        masked = draw_mask(masked, face.landmarks, style, seed + i)
    found = measure_faces(analyzer, masked)
    again = []
    for face in faces:
        match = max(found, key=lambda m: iou(m.box, face.box), default=None)
        if match is None or iou(match.box, face.box) < 0.3:
            match = measurement_of(analyzer.measure_at(masked, face.landmarks))
        again.append(match)
    for face in faces:
        face.landmarks = None  # not sent back from a worker: large, and the mask is drawn already
    return MaskedMeasure(masked, faces, again)



# What people do with masked faces, to read beside the models (the Masks page, mask-report JSON).
HUMAN_FINDINGS: dict[str, str] = {
    "source": "Carbon (2020), Wearing face masks strongly confuses counterparts in reading emotions, "
              "Frontiers in Psychology 11:566886",
    "summary": "With a mask, adults read emotions less accurately and less confidently; disgust is "
               "confused with anger, and happy, sad and angry faces are more often read as neutral; "
               "fear and neutral are affected least.",
    "angry": "often read as neutral", "disgust": "often read as angry", "happy": "often read as neutral",
    "sad": "often read as neutral", "neutral": "little affected", "fear": "little affected",
}
