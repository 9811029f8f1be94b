"""Synthetic face masks drawn from the 478 face-mesh landmarks, and what they hide.

The original study was motivated by masks: children who grew up among masked faces read emotions
less well. A mask drawn on any face (a 48 x 48 FER2013 crop or a photo) lets every model be scored
on the same faces with and without it, and an AU model shows what is still readable above it.

The mask is one polygon: its top edge runs from one side of the face over the cheeks to the nose
bridge (mesh points below the eyes, never on them), its lower edge follows the jaw line, pushed a
little outwards so the chin is covered. It is filled opaque in one of a few styles; its outline is
drawn at 2-8x resolution and shrunk, so its edge is anti-aliased on any face; the seed only varies
the shade and the folds, so the same seed gives the same picture. A face whose mesh is fitted
badly (``misplaced``) gets no mask: drawn from wrong landmarks, it would leave the mouth visible
and still count as masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .au_codes import AU_CODES

# Mesh points of the mask's outline, image-left to image-right along the top (cheek, cheekbone,
# below the eyes, the nose bridge), then back along the jaw under the chin.
MASK_TOP: tuple[int, ...] = (93, 137, 123, 50, 101, 100, 47, 197, 277, 329, 330, 280, 352, 366, 323)
MASK_JAW: tuple[int, ...] = (361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132)
JAW_MARGIN = 0.08  # the lower edge sits this share of the face height below the jaw line

# Landmarks a mask must hide and must leave visible (tests check both on real faces).
LOWER_FACE_POINTS: tuple[int, ...] = (1, 4, 0, 13, 14, 17, 61, 291, 152)  # nose tip, lips, mouth corners, chin
OUTER_LIP_POINTS: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375,  # the lips' outline
                                     291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
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
    # Small faces are drawn finer (a 48-pixel crop's mask at 8x); the fabric of a box of 400 pixels
    # or more is drawn at its own size: at 2x a 4k photo's mask took 15 s and 1.8 GB for no visible
    # gain. Its outline (``_alpha``, one channel) is still drawn at least MIN_EDGE_SCALE times finer.
    scale = int(np.clip(np.ceil(400 / max(x1 - x0, y1 - y0, 1)), 1, 8))
    return x0, y0, x1, y1, scale


MIN_EDGE_SCALE = 2  # the outline of a large face drawn 2x finer: its edge pixels partly covered, not 0 or 1


def _alpha(polygon: np.ndarray, region: tuple[int, int, int, int, int]) -> np.ndarray:
    """Share of each pixel of the region the polygon covers (0-255): drawn ``scale`` (at least
    MIN_EDGE_SCALE) times finer, then averaged (an anti-aliased edge without ringing, on any face;
    one 8-bit channel, so a large face's costs a few MB)."""
    x0, y0, x1, y1, scale = region
    scale = max(scale, MIN_EDGE_SCALE)
    alpha = Image.new("L", ((x1 - x0) * scale, (y1 - y0) * scale), 0)
    ImageDraw.Draw(alpha).polygon([tuple(p) for p in (polygon - [x0, y0]) * scale], fill=255)
    return np.asarray(alpha.resize((x1 - x0, y1 - y0), Image.Resampling.BOX))


STRIP_ROWS = 256  # a large face is shaded and blended this many rows at a time (bounded memory)


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
    # a soft vertical shading, so the mask reads as cloth rather than a flat sticker; in strips of
    # float32, so a face filling a 4k photo needs tens of MB, not GB
    shaded = np.array(fabric)
    ramp = np.linspace(1.06, 0.9, size[1], dtype=np.float32)[:, None, None]
    for r in range(0, size[1], STRIP_ROWS):
        rows = slice(r, r + STRIP_ROWS)
        shaded[rows] = np.clip(shaded[rows] * ramp[rows], 0, 255).astype(np.uint8)
    fabric = Image.fromarray(shaded).filter(ImageFilter.GaussianBlur(scale * 0.3))
    del shaded
    if scale > 1:
        fabric = fabric.resize((box_w, box_h), Image.Resampling.BOX)
    cloth, alpha = np.asarray(fabric), _alpha(polygon, region)
    out = rgb.copy()
    for r in range(0, box_h, STRIP_ROWS):
        rows, image_rows = slice(r, r + STRIP_ROWS), slice(y0 + r, min(y0 + r + STRIP_ROWS, y1))
        a = alpha[rows, :, None].astype(np.float32) / np.float32(255)
        top = cloth[rows].astype(np.float32)
        blended = out[image_rows, x0:x1].astype(np.float32)
        blended -= top
        blended *= 1 - a
        blended += top  # the face * (1 - a) + the cloth * a
        out[image_rows, x0:x1] = np.round(blended).astype(np.uint8)
    return out


def coverage(shape: tuple[int, ...], landmarks: np.ndarray) -> np.ndarray:
    """(h, w) share of each pixel the mask covers (0-1, anti-aliased at the edge), as drawn."""
    polygon = mask_polygon(landmarks)
    region = _region(polygon, shape)
    x0, y0, x1, y1, _ = region
    out = np.zeros(shape[:2], dtype=np.float32)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = _alpha(polygon, region) / np.float32(255)
    return out


def covered_points(shape: tuple[int, ...], landmarks: np.ndarray, points: Sequence[int]) -> np.ndarray:
    """Which of the landmarks ``points`` the mask hides (their pixel is more than half covered, as
    drawn; a point off the image is read at the nearest pixel). Only the mask's own box is drawn,
    so a 4k photo costs what its face does."""
    polygon = mask_polygon(landmarks)
    region = _region(polygon, shape)
    x0, y0, x1, y1, _ = region
    h, w = shape[:2]
    xy = np.asarray(landmarks, dtype=np.float64)[list(points), :2]
    x = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    if x1 <= x0 or y1 <= y0 or not inside.any():
        return np.zeros(len(xy), dtype=bool)
    alpha = _alpha(polygon, region)
    covered = np.zeros(len(xy), dtype=bool)
    covered[inside] = alpha[y[inside] - y0, x[inside] - x0] > 127
    return covered


# The placement gate: on about 3 % of FER2013 faces the face mesh is fitted badly (onto a cheek,
# an eye, the background: profiles, hands, drawings, faces upside down), and a mask drawn from it
# covers the wrong place while the mouth stays visible; its landmarks still say "covered", as they
# are the same wrong landmarks. Such a face is refused rather than scored as masked. Thresholds
# chosen on 1,492 faces of FER2013 *train* looked at one by one (tests check val crops and photos):
# together they refuse 44 faces (2.9 %): 26 of the 37 misplaced masks seen, 11 folded ones, 6 that
# were placed well (mostly faces behind hands, whose mouth is hidden anyway) and 1 unclear. On all of
# val (bench/mask_effect.py) they refused 81 of 3,074 faces (2.6 %); with the lips' check below,
# 43 of the 551 faces of 556 val images (7.8 %; bench/mask_effect.py, 100 per emotion).
MASK_NOT_PLACED_REASON = "the mask could not be placed on this face"
MIN_FACE_PRESENCE = 0.05  # the landmark model's face presence on the region around the mesh
MIN_CROP_SHARE = 0.15  # a face crop (FER2013's 48 x 48) is its face: the mesh covers this much of it,
SURE_FACE_PRESENCE = 0.99  # unless the landmark model is this sure (a whole photo shrunk small)
MIN_SOLIDITY = 0.7  # mask outline area / its convex hull: below it the outline is folded over itself
MIN_BOX_SHARE = 0.28  # mask outline area / the mesh's box: below it the mesh is squashed or turned away
# A turned face's mask (drawn from its mesh) can leave a lip corner, or half the mouth, showing
# while the face counts as masked (a reviewer's tilted FER2013 face: 6 of its lip points bare). On
# every 15th FER2013 *train* image (1,843 faces the gate above passed, looked at in montages), 109
# had lip points outside the mask: with 1-4 of the 20 mostly a corner on the mask's edge, with 5 or
# more mostly a mouth in sight (86 faces, 4.7 %), refused with this reason.
MAX_BARE_LIP_POINTS = 4
MOUTH_SHOWING_REASON = "the mask leaves the mouth showing"


def _area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of (k, 2) points (monotone chain), in order."""
    pts = sorted(map(tuple, points))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    return np.array(half(pts)[:-1] + half(pts[::-1])[:-1])


def misfit_geometry(landmarks: np.ndarray) -> str | None:
    """Why a mask drawn from these landmarks cannot be right, from their shape alone (a profile
    folds the outline over itself, a misfit squashes it); None when it may be."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    polygon = mask_polygon(landmarks)
    area = _area(polygon)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    if area <= 0 or area < MIN_SOLIDITY * _area(_hull(polygon)):
        return "the mask outline folds over itself"
    if area < MIN_BOX_SHARE * (x1 - x0) * (y1 - y0):
        return "the face mesh is squashed"
    return None


def crop_share(shape: tuple[int, ...], landmarks: np.ndarray) -> float | None:
    """The share of a face crop (an image the analyzer measures as one: FER2013's 48 x 48) that the
    face mesh's box covers; None for a larger image."""
    from .measure.landmarker import SMALL_IMAGE_SIDE

    h, w = shape[:2]
    if max(h, w) >= SMALL_IMAGE_SIDE:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0)) / (h * w)


def face_presence(analyzer, rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """The landmark model's probability that a face is in the square around ``landmarks``
    (``FaceAnalyzer.presence_around``: the sampling MIN_FACE_PRESENCE was tuned on)."""
    return analyzer.presence_around(rgb, landmarks)


def misplaced(analyzer, rgb: np.ndarray, landmarks: np.ndarray) -> str | None:
    """Why a mask drawn from these landmarks would miss the face: a folded or squashed outline
    (``misfit_geometry``), a mouth left showing, no face where the mesh lies (a face upside down, a cheek), or a mesh on
    a small part of a face crop; None when it fits."""
    problem = misfit_geometry(landmarks)
    if problem is not None:
        return problem
    if np.count_nonzero(~covered_points(rgb.shape, landmarks, OUTER_LIP_POINTS)) > MAX_BARE_LIP_POINTS:
        return MOUTH_SHOWING_REASON
    presence = face_presence(analyzer, rgb, landmarks)
    if presence < MIN_FACE_PRESENCE:
        return "no face where the face mesh lies"
    share = crop_share(rgb.shape, landmarks)
    if share is not None and share < MIN_CROP_SHARE and presence < SURE_FACE_PRESENCE:
        return "the face mesh covers a small part of the face crop"
    return None


# AUs a mask hides, from bench/mask_effect.py on FER2013 val: under the mask their measured values
# are invented (they change most and lose their correlation with the unmasked face), so on masked
# faces they are unknown, not zero.
HIDDEN_AUS: tuple[str, ...] = ("AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")
VISIBLE_AUS: tuple[str, ...] = tuple(c for c in AU_CODES if c not in HIDDEN_AUS)  # the upper face


MASK_SHIFT_SHOWN = 0.5  # a visible AU that moves this much under the drawn mask is named on its face


def shifted_by_mask(bare: dict[str, float], masked: dict[str, float],
                    threshold: float = MASK_SHIFT_SHOWN) -> list[tuple[str, float, float]]:
    """(AU code, bare value, masked value) of each AU the mask leaves visible whose reading moved by
    ``threshold`` or more: the face did not move, the drawn mask changed how it is measured (the
    brows read higher, the cheeks lower on average, by ``bench/mask_effect.py``), so an explanation
    that names it under the mask names the mask. Largest move first; AUs unknown on either side are
    left out. Keys are AU codes or ``AUxx_r`` columns, alike in both."""
    moved = []
    for code in VISIBLE_AUS:
        key = next((k for k in (code, f"{code}_r") if k in bare and k in masked), None)
        if key is None:
            continue
        before, after = float(bare[key]), float(masked[key])
        if np.isfinite(before) and np.isfinite(after) and abs(after - before) >= threshold:
            moved.append((code, before, after))
    return sorted(moved, key=lambda m: -abs(m[2] - m[1]))


@dataclass
class MaskedMeasure:
    """One image with its faces measured, a mask drawn on each, and measured again."""

    image: np.ndarray  # the masked image
    original: list  # FaceMeasurement of each face, largest first, unmasked
    masked: list  # FaceMeasurement of the same faces under the mask (same order)
    bare: list[int] = field(default_factory=list)  # faces left unmasked (``misplaced``): never all of them


# What ``mask`` writes into each image it masks (a JPEG comment, a PNG text chunk), so that every
# later use of the file knows its faces wear a drawn mask: the AUs it hides are then unknown, not
# read off the cloth (a stimulus folder scored with compare read AU17 1.2 off the mask). A mask of
# one's own, or a file saved again by another program, carries no mark.
DRAWN_MASK_KEY = "fer-workbench"
DRAWN_MASK_TEXT = "drawn mask"


ALREADY_MASKED = "already wears a mask drawn by mask (its file says so); mask the original"


def drawn_mask_mark(style: str, seed: int) -> str:
    return f"{DRAWN_MASK_TEXT}: {style}, seed {seed}"


def mark_options(suffix: str, style: str, seed: int) -> dict:
    """``Image.save`` options that mark a masked image as one, for the formats that keep a note
    (JPEG's comment, PNG's text); {} for the others."""
    mark = drawn_mask_mark(style, seed)
    if suffix.lower() in (".jpg", ".jpeg"):
        return {"comment": mark.encode()}
    if suffix.lower() == ".png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(DRAWN_MASK_KEY, mark)
        return {"pnginfo": info}
    return {}


def drawn_mask_of(source) -> str | None:
    """The mark ``mask`` left in an image file (a path or its bytes), or None: no mark, not an
    image, unreadable. Reads the header only."""
    import io

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as image:
            note = image.info.get("comment") or image.info.get(DRAWN_MASK_KEY) or ""
    except Exception:  # any unreadable file simply carries no mark (decoding it says why)
        return None
    text = note.decode("utf-8", "replace") if isinstance(note, bytes) else str(note)
    return text if text.startswith(DRAWN_MASK_TEXT) else None


def hide(aus: np.ndarray) -> np.ndarray:
    """AUs of a masked face: those in HIDDEN_AUS become unknown (NaN), the rest are kept."""
    out = np.asarray(aus, dtype=float).copy()
    out[[AU_CODES.index(c) for c in HIDDEN_AUS]] = np.nan
    return out


def mask_and_measure(analyzer, rgb: np.ndarray, style: str = DEFAULT_STYLE, seed: int = 0,
                     crop: bool = False) -> MaskedMeasure | str:
    """Measure every face, draw a mask on each (seed + face index), and measure the masked image
    the usual way. A masked face the usual way misses (the detector misses about one in ten on
    FER2013 crops) is measured where it was before the mask (``FaceAnalyzer.measure_at``).
    A face the mask cannot be placed on (``misplaced``: scored as masked, it would not be) is left
    bare and listed in ``bare``, the largest too: the others are still masked and measured. Returns
    the one-line reason when no face is found in the unmasked image, or when no face can take a
    mask (then nothing was masked, and no copy should be written or scored as masked). ``crop``:
    the image is a face crop whatever its size (face-crop mode, Try it's Face crops)."""
    from .measure.landmarker import iou
    from .measure.tasks import NO_FACE_REASON, TURNED_UPRIGHT, measure_faces, measurement_of, turned_back

    faces = measure_faces(analyzer, rgb, keep_landmarks=True, crop=crop)
    if not faces:
        return NO_FACE_REASON
    bare = [i for i, face in enumerate(faces) if misplaced(analyzer, rgb, face.landmarks)]
    if len(bare) == len(faces):
        return MASK_NOT_PLACED_REASON
    masked = rgb
    for i, face in enumerate(faces):
        if i not in bare:
            masked = draw_mask(masked, face.landmarks, style, seed + i)
    if crop:  # a crop's face is where it was: searched again under the mask, another route of face-crop
        # mode could take it (a 320 px crop measured whole came back from the detector with its eyes shut)
        again = [measurement_of(analyzer.measure_at(masked, face.landmarks)) for face in faces]
    else:
        found = measure_faces(analyzer, masked)
        turned: list | None = None
        again = []
        for face in faces:
            pool = found
            if face.method == TURNED_UPRIGHT:  # upside down: measured masked as it was bare, turned over
                if turned is None:
                    h, w = masked.shape[:2]
                    turned = [turned_back(m, w, h) for m in measure_faces(analyzer, np.ascontiguousarray(masked[::-1, ::-1]))]
                pool = turned
            match = max(pool, key=lambda m: iou(m.box, face.box), default=None)
            if match is None or iou(match.box, face.box) < 0.3:
                match = measurement_of(analyzer.measure_at(masked, face.landmarks))
            again.append(match)
    for face in faces:
        face.landmarks = None  # not sent back from a worker: large, and the mask is drawn already
    return MaskedMeasure(masked, faces, again, bare)


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
