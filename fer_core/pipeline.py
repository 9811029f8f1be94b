"""The one face pipeline: images in, the faces every model sees out.

It decides, once, what each model is shown of a face — the crop for pixel models and the AUs
measured on that same face for AU models — so Try it, Compare, ``evaluate`` and the CLI agree.
FER2013-style inputs (smaller than ``SMALL_IMAGE_SIDE``) are face crops already and are passed
whole; in larger images the largest face is cropped with a margin, as FER2013's crops are.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import au_table
from .au_table import AU_COLUMNS
from .errors import FerError, one_line, printable
from .images import LabeledImage, load_image, relative_file, shown_size
from .measure.tasks import TURNED_UPRIGHT
from .predictors.base import Explanation, FaceInput, Predictor, au_columns_used, model_of_kind, predicted_labels
from .predictors.ensemble import predict_reusing

SMALL_IMAGE_SIDE = 160  # images smaller than this are face crops themselves
# Try it scales larger photos down before detection: seconds and memory saved (a session keeps its last
# photos), but a face under ~50 px at this size can be lost that the CLI, reading up to 4096 px, finds; said there.
MAX_ANALYSIS_SIDE = 1600
NO_FACE_MESSAGE = ("no face found; use a photo where the face is frontal, well lit, at least ~48 pixels wide "
                   "and not tiny in the picture (a thirtieth of its shorter side or more: crop a wide shot around the face)")

Progress = Callable[[int, int], None]


def face_crop(rgb: np.ndarray, box, margin: float = 0.25, small: int = SMALL_IMAGE_SIDE) -> np.ndarray:
    """What a pixel model (CNN, Teachable Machine) is shown of one face: a square around the
    face box, ``margin`` of its size on each side, like FER2013's crops. Images already smaller
    than ``small`` pixels are face crops themselves and are passed whole."""
    h, w = rgb.shape[:2]
    if max(h, w) < small or box is None:
        return rgb
    x, y, bw, bh = (float(v) for v in box)
    side = max(bw, bh) * (1 + 2 * margin)
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return rgb
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


MIN_FACE_CROP_SIDE = 16  # narrower than this, a picture holds no face a model can read (FER2013's are 48)
BLANK_RANGE = 8  # grey levels: a picture spanning fewer is blank (one colour)


def measured_face_crop(rgb: np.ndarray, measured) -> np.ndarray:
    """``face_crop`` of a measured face (None: the whole image), upright: a face measured in the
    photo turned over (``TURNED_UPRIGHT``) is cut from it turned over, so the pixel models see it
    as the AU models did (a CNN read the upside-down astronaut as sad 0.50, upright happy 1.00)."""
    if measured is None:
        return face_crop(rgb, None)
    if getattr(measured, "method", None) == TURNED_UPRIGHT:
        h, w = rgb.shape[:2]
        x, y, bw, bh = measured.box
        return face_crop(np.ascontiguousarray(rgb[::-1, ::-1]), (w - x - bw, h - y - bh, bw, bh))
    return face_crop(rgb, measured.box)


def why_no_face_crop(rgb: np.ndarray) -> str | None:
    """Why a picture cannot be a face crop, or None: too small, or blank. A 1 px placeholder and a
    grey thumbnail were given whole to the models that answer a face crop, and ``predict`` gave
    them a confident emotion with reasons ("happy, mostly because of AU23 ..."). Only the size
    rules a picture out everywhere (``is_face_crop``): evaluate and compare give a blank face crop
    to the pixel models as FER2013's published scores do (its val split has one, labelled angry)."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_FACE_CROP_SIDE:
        return f"too small to hold a face, {w}×{h} px"
    if int(rgb.max()) - int(rgb.min()) < BLANK_RANGE:
        return "a blank picture, one colour"
    return None


def no_face_message(rgb: np.ndarray, source=None) -> str:
    """Why no face was found, as ``predict`` and Try it say it: an animated or multi-page image's
    first frame alone was read; a blank or tiny picture (``why_no_face_crop``); else the advice
    for a photo (``NO_FACE_MESSAGE``)."""
    from .images import FIRST_FRAME_ONLY, has_more_frames

    why = why_no_face_crop(rgb)
    if source is not None and not isinstance(source, np.ndarray) and has_more_frames(source):
        return f"no face found in its first frame{f' ({why})' if why else ''}: {FIRST_FRAME_ONLY}"
    return f"no face: {why}" if why else NO_FACE_MESSAGE


def is_face_crop(rgb: np.ndarray, crops: bool = False) -> bool:
    """Whether a picture is a face crop itself, given whole to the pixel models (and to the
    AU-bottleneck network where no face is measured in it): under ``SMALL_IMAGE_SIDE``, or any
    size with ``crops``; never one under ``MIN_FACE_CROP_SIDE``."""
    return (crops or max(rgb.shape[:2]) < SMALL_IMAGE_SIDE) and min(rgb.shape[:2]) >= MIN_FACE_CROP_SIDE


# -- one photo, every face ---------------------------------------------------------------------
@dataclass
class FaceResult:
    """One face of a photo: where it is, its AUs, the input every model gets, and the explaining
    model's explanation (a model that does not explain gives its ``probabilities`` only)."""

    box: tuple[float, float, float, float]
    confidence: float
    aus: dict[str, float]
    face: FaceInput
    explanation: Explanation | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False)
    low_confidence: bool = False  # the face-quality gate let it through, but only just
    method: str = "detector"  # or "crop": measured on the whole crop, the detector found nothing
    probabilities: dict[str, float] | None = None  # a model's that does not explain (a CNN's)

    @property
    def emotion(self) -> str | None:
        """The model's emotion for this face (None without a model, or where it could not judge)."""
        if self.explanation is not None:
            return self.explanation.emotion
        if not self.probabilities or any(np.isnan(v) for v in self.probabilities.values()):
            return None
        return max(self.probabilities, key=self.probabilities.get)

    def to_dict(self, scale: float = 1.0) -> dict:
        """The per-face JSON of ``predict --json``; ``scale``: the file's pixels per pixel of the
        image measured (a large photo is decoded smaller), so the box is in the file's pixels."""
        out = {"box": [round(float(v) * scale, 1) for v in self.box], "confidence": round(float(self.confidence), 4),
               "low_confidence": self.low_confidence, "aus": {k: _number(v) for k, v in self.aus.items()}}  # masked: null
        if self.method == TURNED_UPRIGHT:  # upside down in the photo: measured in it turned over
            out["turned_upright"] = True
        if self.explanation is not None:
            out.update(self.explanation.to_dict())
        elif self.probabilities is not None:  # to 4 decimals, as an explaining model's
            out.update(emotion=self.emotion, probabilities={c: _number(p) for c, p in self.probabilities.items()})
        if "probabilities" in out:
            out.update(close_call_fields(out["probabilities"]))
        return out


def close_call_fields(probabilities: dict[str, float]) -> dict:
    """``close_call`` (the runner-up within ``CLOSE_CALL_MARGIN`` of the answer) and, when it is,
    ``runner_up``: for the JSON and CSVs, so a script can set such answers apart."""
    from .emotions import close_call

    runner_up = close_call(probabilities)
    return {"close_call": runner_up is not None, **({"runner_up": runner_up[0]} if runner_up else {})}


def analyze_image(image, model: Predictor | None = None, analyzer=None, top: int = 3,
                  crop: bool = False, masked: bool | None = None) -> list[FaceResult]:
    """Every face of an image (largest first) measured, cropped and, with an explaining
    ``model``, explained. Measured in a crash-isolated worker process, or in this process with
    ``analyzer`` when one is given. ``image``: anything ``load_image`` takes (an RGB, gray, RGBA
    or float array, a PIL image, a path or bytes); a FER2013 file reads as a gray array. ``crop``:
    the image is a face crop whatever its size (face-crop mode, as ``extract --crops``). ``model``:
    a Predictor or a registered model's name; one that does not explain gives probabilities.
    ``masked``: the faces wear a drawn mask (None: as the file says, ``masks.drawn_mask_of``).
    Boxes and landmarks are in the file's pixels as it is shown (EXIF orientation applied), also
    for a photo decoded smaller (over ``MAX_DECODE_SIDE``), as ``predict`` and ``extract`` give them."""
    from .masks import drawn_mask_of
    from .measure.extract import measure_faces, measure_image

    if isinstance(model, str):
        model = model_named(model)
    a_file = isinstance(image, (str, os.PathLike, bytes, bytearray))
    if masked is None:
        masked = a_file and drawn_mask_of(image) is not None
    rgb = load_image(image)
    measured = (measure_image(rgb, crop=crop) if analyzer is None
                else measure_faces(analyzer, rgb, keep_landmarks=True, crop=crop))
    faces = faces_from_measurements(rgb, measured, model, top, masked=masked)
    size = shown_size(image) if a_file else None
    scale = size[0] / rgb.shape[1] if size else 1.0
    if scale != 1.0:  # decoded smaller than the file: its boxes were in the decoded picture's pixels
        for face in faces:
            face.box = tuple(float(v) * scale for v in face.box)
            if face.landmarks is not None:
                face.landmarks = np.asarray(face.landmarks, dtype=float).copy()
                face.landmarks[:, :2] *= scale
    return faces


def model_named(ref: str) -> Predictor:
    """A registered model's name (or a model file) loaded once and kept while no file it could be
    loaded from changed (the models folder's files; the folder named, or the files beside the file
    named: a Teachable Machine export's labels.txt): a script's loop over images with
    ``analyze_image(img, "cnn-fer2013")`` reloaded the network for every image. A changed file is
    loaded again, so its checksum is checked again; a changed model replaces its stale copy (up
    to ``NAMED_MODELS_KEPT`` are kept). Where the files cannot all be looked at (one unreadable,
    more than ``MAX_STAMPED_FILES``), it is loaded every time, never kept unchecked."""
    from . import config
    from .predictors.registry import load_predictor

    folder = Path(config.models_dir())
    key = (ref, str(folder))
    stamp = _files_stamp(folder, recursive=True)
    named = _files_stamp(Path(ref), recursive=False)
    if stamp is None or named is None:
        return load_predictor(ref, folder)
    stamp += named
    with _named_lock:
        kept = _named_models.get(key)
        if kept is not None and kept[0] == stamp:
            _named_models[key] = _named_models.pop(key)  # most recently used last
            return kept[1]
    predictor = load_predictor(ref, folder)
    with _named_lock:
        _named_models.pop(key, None)
        _named_models[key] = (stamp, predictor)
        while len(_named_models) > NAMED_MODELS_KEPT:
            _named_models.pop(next(iter(_named_models)))
    return predictor


NAMED_MODELS_KEPT = 4
MAX_STAMPED_FILES = 2000  # a models folder holds tens; a folder given by mistake is not walked whole
_named_models: dict[tuple[str, str], tuple[tuple, Predictor]] = {}
_named_lock = threading.Lock()


def _files_stamp(path: Path, recursive: bool) -> tuple | None:
    """(path, mtime, size) of the regular files a model could be read from at ``path``: a folder's
    files (all under it with ``recursive``), or a file and the files beside it; () where nothing
    is (a name, not a path); None where they cannot all be looked at (an unreadable entry, more
    than ``MAX_STAMPED_FILES``), which must not read as unchanged."""
    try:
        if not path.exists():
            return ()
        folder = path if path.is_dir() else path.parent
        entries = list(itertools.islice(folder.rglob("*") if recursive and path.is_dir() else folder.iterdir(),
                                        MAX_STAMPED_FILES + 1))
        if len(entries) > MAX_STAMPED_FILES:
            return None
        return tuple(sorted((str(p), st.st_mtime_ns, st.st_size) for p in entries if p.is_file() for st in [p.stat()]))
    except ValueError:  # a NUL byte in a name: no such file (loading says so)
        return ()
    except OSError:
        return None


def faces_from_measurements(rgb: np.ndarray, measured, model: Predictor | None = None, top: int = 3,
                            masked: bool = False) -> list[FaceResult]:
    """``analyze_image`` for faces measured elsewhere (in a crash-isolated worker). ``masked``:
    the faces wear a drawn mask, so the AUs it hides are unknown (NaN)."""
    from .masks import hide

    out = []
    for m in measured:
        aus = hide(m.au_vector()) if masked else m.au_vector()
        face = FaceInput(pixels=measured_face_crop(rgb, m), aus=aus, masked=masked)
        explanation = model.explain(face, top=top) if model is not None and model.explains else None
        probabilities = None
        if model is not None and not model.explains:
            probabilities = dict(zip(model.classes, map(float, model.predict_proba([face])[0])))
        out.append(FaceResult(m.box, m.confidence, dict(zip(AU_COLUMNS, map(float, aus))), face, explanation,
                              m.landmarks, m.low_confidence, m.method, probabilities))
    return out


def whole_crop_face(rgb: np.ndarray, model: Predictor, top: int = 3, masked: bool = False) -> FaceResult:
    """A face crop in which no face was measured, given whole to a model that reads pixels (an
    AU-bottleneck network explains from its own AU reading), as ``evaluate`` and ``compare`` score
    it: predict had refused what they scored. Its measured AUs are unknown."""
    height, width = rgb.shape[:2]
    aus = np.full(len(AU_COLUMNS), np.nan)
    face = FaceInput(pixels=rgb, aus=aus, masked=masked)
    explanation = model.explain(face, top=top) if model.explains else None
    probabilities = None if model.explains else dict(zip(model.classes, map(float, model.predict_proba([face])[0])))
    return FaceResult((0.0, 0.0, float(width), float(height)), 0.0, dict(zip(AU_COLUMNS, aus)), face, explanation,
                      method=WHOLE_CROP, probabilities=probabilities)


WHOLE_CROP = "whole crop"  # a ``FaceResult.method``: no face measured, the crop given whole to a pixel model


def analyze_masked(rgb: np.ndarray, model: Predictor | None = None, style: str = "surgical", seed: int = 0,
                   top: int = 3, crop: bool = False) -> tuple[np.ndarray, list[FaceResult | None]]:
    """The same photo with a mask drawn on every face: (the masked image, its faces measured and
    explained under the mask, in the order of the unmasked faces; None for a face the mask could
    not be placed on, the largest too, which stays bare and must not be shown as masked). Raises
    ImageError ("image: " and the reason) when no face was found or none could take a mask.
    ``crop``: a face crop, measured in face-crop mode (``analyze_image``)."""
    from .measure.extract import measure_masked_image

    measure = measure_masked_image(rgb, style, seed, crop=crop)
    faces = faces_from_measurements(measure.image, measure.masked, model, top, masked=True)
    return measure.image, [None if i in measure.bare else face for i, face in enumerate(faces)]


@dataclass
class PhotoResult:
    """What Try it shows for one upload; ``error`` is the one-line reason it could not be used."""

    name: str
    image: np.ndarray | None
    faces: list[FaceResult]
    error: str | None = None
    scaled: bool = False
    seconds: float = 0.0
    original_size: tuple[int, int] | None = None  # (width, height) of the upload, before scaling
    crop: bool = False  # measured as a face crop (Try it's Face crops): said with it, masked so too


def analyze_photo(data: bytes | np.ndarray, name: str, model: Predictor | None, analyzer=None,
                  max_side: int = MAX_ANALYSIS_SIDE, crop: bool = False,
                  original_size: tuple[int, int] | None = None) -> PhotoResult:
    """Decode an upload, scale a huge photo down, find and explain every face (``crop``: the
    upload is a face crop, ``analyze_image``). ``original_size``: (width, height) of the picture
    an array was scaled down from (a video frame, measured at most 1,280 px), in whose pixels
    boxes are then given."""
    start = time.perf_counter()
    try:
        rgb = load_image(data, name=name)
    except FerError as exc:
        return PhotoResult(name, None, [], one_line(exc))
    decoded = (int(rgb.shape[1]), int(rgb.shape[0]))
    # a photo over MAX_DECODE_SIDE was decoded smaller: its boxes are given in the file's pixels
    size = original_size or (shown_size(data) if isinstance(data, (bytes, bytearray)) else None) or decoded
    scaled = size != decoded
    if max(rgb.shape[:2]) > max_side:
        im = Image.fromarray(rgb)
        im.thumbnail((max_side, max_side), Image.LANCZOS)
        rgb, scaled = np.asarray(im), True
    from .masks import drawn_mask_of

    masked = isinstance(data, (bytes, bytearray)) and drawn_mask_of(data) is not None  # a file mask wrote
    try:
        faces = analyze_image(rgb, model, analyzer, crop=crop, masked=masked)
    except FerError as exc:
        return PhotoResult(name, rgb, [], f"{name}: {one_line(exc).removeprefix('image: ')}", scaled,
                           time.perf_counter() - start, size, crop)
    error = None if faces else f"{name}: {no_face_message(rgb, data)}"
    return PhotoResult(name, rgb, faces, error, scaled, time.perf_counter() - start, size, crop)


def probabilities_for(predictor: Predictor, face: FaceInput,
                      known: Mapping[str, dict[str, float] | str] | None = None) -> dict[str, float] | str:
    """One model's probabilities for one face, or the one-line reason it could not judge it.
    ``known``: what other models (by name, loaded with this one's registry) already said about
    this face; an ensemble takes its members' probabilities from it instead of running them again."""
    try:
        row = predict_reusing(predictor, [face], _known_rows(predictor, known or {}))[0]
    except FerError as exc:
        return one_line(exc)
    if np.isnan(row).any():
        return f"{predictor.name}: could not judge this face"
    return {c: float(p) for c, p in zip(predictor.classes, row)}


def _known_rows(predictor: Predictor, known: Mapping[str, dict[str, float] | str]) -> dict:
    """``known`` as ``predict_reusing`` takes it, for the members of an ensemble ``predictor``."""
    members = {m.name: m for m in getattr(predictor, "members", ())}
    return {name: (members[name], np.array([[said[c] for c in members[name].classes]]))
            for name, said in known.items()
            if name in members and isinstance(said, dict) and set(said) == set(members[name].classes)}


# -- one photo, numbered and written out for download -------------------------------------------
def nearest_face(faces: Sequence[FaceResult], aus: np.ndarray) -> int:
    """Index of the face whose AUs (``AU_COLUMNS`` order) are nearest ``aus``: which face of a
    frame measured again as a still is the one a video's table tracked."""
    gaps = [np.nansum(np.abs(np.array([f.aus.get(c, np.nan) for c in AU_COLUMNS], dtype=float) - aus))
            for f in faces]
    return int(np.argmin(gaps))


def face_order(faces: Sequence[FaceResult]) -> list[int]:
    """Indices of ``faces`` from left to right (box x, then y): the order Try it numbers faces in,
    so "face 2" is the second face a reader meets from the left of a group photo."""
    return sorted(range(len(faces)), key=lambda i: (float(faces[i].box[0]), float(faces[i].box[1])))


@dataclass
class ModelOutput:
    """What one model said about every face of a photo (in ``PhotoResult.faces`` order): its
    probabilities, or the one-line reason it could not judge that face."""

    name: str
    kind: str
    per_face: list[dict[str, float] | str]


def _number(v: float) -> float | None:
    """A JSON-safe number: NaN (an AU hidden by a mask, unknown) becomes null."""
    v = float(v)
    return None if np.isnan(v) else round(v, 4)


def face_answers(result: PhotoResult, i: int, explainer: str, others: Sequence[ModelOutput] = ()) -> dict[str, str]:
    """Each model's emotion for face ``i`` (the explaining model first), leaving out a model that
    could not judge it: where they differ, no single answer should be taken alone."""
    face = result.faces[i]
    answers = {explainer: face.emotion} if explainer and face.emotion else {}
    for out in others:
        probs = out.per_face[i] if i < len(out.per_face) else None
        if isinstance(probs, dict) and probs:
            answers[out.name] = max(probs, key=probs.get)
    return answers


def photo_to_dict(result: PhotoResult, explainer: str, explainer_kind: str,
                  others: Sequence[ModelOutput] = (), digits: int | None = 4) -> dict:
    """A photo's faces for download, numbered left to right: box, detection score (``confidence``),
    the 17 AUs (``AU01_r`` ...: the names ``extract`` and ``predict --json`` give them),
    and per model its emotion and probabilities; the explaining model adds its explanation (the
    sentence, the reasons, what speaks against, and every AU's contribution). Emotion names are
    the models' class names (English), so the file reads the same whatever the page language.
    Boxes, ``width`` and ``height`` are in the uploaded photo's pixels, also when a large photo
    was analysed scaled down (``scaled_for_analysis``, at ``analysed_width`` x ``analysed_height``),
    so they match the CLI's and Compare's boxes for the same photo. Probabilities are rounded to
    ``digits`` for the file; a page that shows them as percentages takes them unrounded (None), so
    that 0.894959 is 89 % there as in its charts, not 90 % from 0.895."""

    def rounded(p: float) -> float:
        return float(p) if digits is None else round(float(p), digits)

    height, width = result.image.shape[:2] if result.image is not None else (0, 0)
    original_width, original_height = result.original_size or (width, height)
    scale = original_width / width if width else 1.0
    faces = []
    for number, i in enumerate(face_order(result.faces), start=1):
        face = result.faces[i]
        x, y, w, h = (round(float(v) * scale, 1) for v in face.box)
        models: dict[str, dict] = {}
        ex = face.explanation
        if ex is not None:
            explanation = {k: v for k, v in ex.to_dict().items() if k not in ("emotion", "probabilities")}
            # in AU order (columns of the CSV, whatever the face's ranking); a masked, unknown AU: null, not 0
            explanation["contributions"] = {c.au: round(float(c.contribution), 4) if c.intensity == c.intensity
                                            else None for c in sorted(ex.ranked, key=lambda c: c.au)}
            models[explainer] = {"kind": explainer_kind, "emotion": ex.emotion,
                                 "probabilities": {c: rounded(p) for c, p in ex.probabilities.items()},
                                 **close_call_fields(ex.probabilities), "explanation": explanation}
        for out in others:
            probs = out.per_face[i]
            if isinstance(probs, str):
                models[out.name] = {"kind": out.kind, "error": probs}
            else:
                models[out.name] = {"kind": out.kind, "emotion": max(probs, key=probs.get),
                                    "probabilities": {c: rounded(p) for c, p in probs.items()},
                                    **close_call_fields(probs)}
        faces.append({"face": number, "box": [x, y, w, h],
                      "confidence": round(float(face.confidence), 4), "low_confidence": face.low_confidence,
                      "method": face.method, "masked": bool(face.face.masked),
                      "aus": {k: _number(v) for k, v in face.aus.items()},
                      "models": models})
    from .measure.extract import SOURCE

    return {"file": result.name, "source": SOURCE, "width": int(original_width),
            "height": int(original_height),
            "scaled_for_analysis": result.scaled, "analysed_width": int(width), "analysed_height": int(height),
            "faces": faces}


def photo_rows(photo: dict) -> pd.DataFrame:
    """``photo_to_dict`` as one CSV row per face and model: the face's number, box (the uploaded
    photo's pixels), detection score, how it was measured and AUs (repeated on each model's row),
    the model's emotion and ``p_<emotion>`` columns, and for the explaining model
    ``contribution_<AU>`` columns and its sentence (empty for the others); an AU-bottleneck
    network's ``network_<AU>`` columns too, the AUs its contributions and sentence come from."""
    rows = []
    for face in photo["faces"]:
        base = {"file": photo["file"], "face": face["face"], **dict(zip(au_table.BOX_COLUMNS, face["box"])),
                "confidence": face["confidence"], "low_confidence": face["low_confidence"],
                "method": face["method"], "masked": face["masked"], "source": photo["source"],
                "scaled_for_analysis": photo["scaled_for_analysis"]}
        for name, out in face["models"].items():
            row = {**base, "model": name, "kind": out["kind"], "emotion": out.get("emotion", ""),
                   "close_call": out.get("close_call"), "runner_up": out.get("runner_up", ""),
                   "error": out.get("error", "")}
            row.update({f"p_{c}": p for c, p in out.get("probabilities", {}).items()})
            row.update(face["aus"])
            explanation = out.get("explanation")
            if explanation:
                # an AU-bottleneck network explains with the AUs it reads itself: beside the measured ones
                row.update({f"network_{au_table.au_code(c)}": v for c, v in explanation.get("aus_network", {}).items()})
                row.update({f"contribution_{au}": c for au, c in explanation["contributions"].items()})
                if "baseline" in explanation:
                    row["baseline"] = explanation["baseline"]
                row["sentence"] = explanation["sentence"]
            rows.append(row)
    return pd.DataFrame(rows)


# -- an AU table, however long ------------------------------------------------------------------
# what says which face a row is, where the table has it (the box: where in the picture)
TABLE_KEYS = ("file", "face", "time_s", "label", *au_table.BOX_COLUMNS)


def unknown_aus(table: pd.DataFrame, predictor: Predictor) -> pd.Series:
    """Per row with a face: the AUs ``predictor`` uses that the row lacks (a masked face's lower
    face), space-separated; "" where it has them all or has no face."""
    used = [c for c in au_columns_used(predictor) if c in table.columns]
    missing = table[used].isna().to_numpy() & au_table.face_found(table).to_numpy()[:, None]
    codes = np.array([au_table.au_code(c) for c in used], dtype=object)
    return pd.Series([" ".join(codes[row]) for row in missing], index=table.index, dtype=object)


def masked_note(unknown: pd.Series) -> str | None:
    """One line for the faces that lacked AUs the model uses (``unknown_aus``), or None; in the
    current language (English in the CLI)."""
    from .i18n import t

    lacking = unknown[unknown != ""]
    if lacking.empty:
        return None
    aus = sorted({au for row in lacking for au in row.split()})
    return t("notes.masked", n=f"{len(lacking):,}", aus=", ".join(aus))


def predict_table(table: pd.DataFrame, predictor: Predictor, explain: bool = True, top: int = 3,
                  progress: Progress | None = None) -> pd.DataFrame:
    """An AU model's answer for every row of an AU table (``extract``'s of a folder or of a long
    video): the row's ``file``, ``face``, ``time_s``, ``label`` and box where the table has them, the
    ``emotion``, ``p_<emotion>`` columns, ``unknown_aus`` (AUs it uses that the row lacks: a
    masked face's; read as uninformative), ``close_call`` and ``runner_up`` (``close_call_fields``) and, with ``explain``, ``contribution_<AU>`` columns and
    the sentence (naming ``top`` AUs), as Try it's download has them. A row without a face (or that the model cannot
    judge) keeps its place with an empty emotion and its ``reason``, so a video's time line shows
    its gaps. AUs come from the table, so no image is read again."""
    if predictor.inputs != "aus":
        raise FerError(f"{predictor.name}: {model_of_kind(predictor.kind)} reads face images, not an AU table; "
                       "pick an AU model (au-logreg-fer2013, au-logreg-upper-fer2013, ...)")
    au_table.require_columns(table, AU_COLUMNS, what=au_table.table_name(table))
    face = au_table.face_found(table).to_numpy()
    # AU12 = 99 is no measurement ("happy" at 100 % was its answer), in the AUs this model reads
    invalid = au_table.invalid_values(table, au_columns_used(predictor))
    found = np.flatnonzero(face & ~invalid)
    aus = au_table.values(table, found)
    proba = np.full((len(table), len(predictor.classes)), np.nan)
    if len(found):
        proba[found] = np.asarray(predictor.predict_proba([FaceInput(aus=row) for row in aus]), dtype=float)
    out = table[[c for c in TABLE_KEYS if c in table.columns and table[c].notna().any()]].reset_index(drop=True)
    out["emotion"] = predicted_labels(predictor.classes, proba)
    for c, column in zip(predictor.classes, proba.T):
        out[f"p_{c}"] = column
    reasons = (table["reason"].fillna("").astype(str).to_numpy(dtype=object) if "reason" in table.columns
               else np.full(len(table), "", dtype=object))
    judged = ~np.isnan(proba).any(axis=1)
    reasons[found[~judged[found]]] = f"{predictor.name}: could not judge this face (the AUs it uses are unknown)"
    reasons[face & invalid] = f"not judged: {au_table.AU_INVALID.removeprefix('with ')}"
    out["reason"] = np.where(judged, "", reasons)
    out["unknown_aus"] = np.where(judged, unknown_aus(table, predictor).to_numpy(), "")
    calls = [close_call_fields(dict(zip(predictor.classes, row))) if ok else {} for row, ok in zip(proba, judged)]
    out["close_call"] = pd.array([c.get("close_call") for c in calls], dtype="boolean")  # empty where not judged
    out["runner_up"] = [c.get("runner_up", "") for c in calls]
    if explain:
        contributions = np.full((len(table), len(AU_COLUMNS)), np.nan)
        baselines = np.full(len(table), np.nan)  # with the contributions, the emotion's centred logit
        sentences = np.full(len(table), "", dtype=object)
        positions = {au_table.au_code(c): j for j, c in enumerate(AU_COLUMNS)}
        rows = [(i, row) for i, row in zip(found, aus) if judged[i]]
        for done, (i, row) in enumerate(rows, start=1):
            explanation = predictor.explain(FaceInput(aus=row), top)
            for c in explanation.ranked:
                if c.intensity == c.intensity:  # an AU the face lacks (masked) weighed nothing: unknown, not 0
                    contributions[i, positions[c.au]] = c.contribution
            sentences[i] = explanation.sentence
            if explanation.baseline is not None:
                baselines[i] = explanation.baseline
            if progress and (done % 500 == 0 or done == len(rows)):
                progress(done, len(rows))
        for j, c in enumerate(AU_COLUMNS):
            out[f"contribution_{au_table.au_code(c)}"] = contributions[:, j]
        if not np.isnan(baselines).all():  # an additive model's (not an MLP's estimates)
            out["baseline"] = baselines
        out["sentence"] = sentences
    return out


# -- many labelled images ----------------------------------------------------------------------
@dataclass
class PreparedFaces:
    """The faces of a labelled image set, one per readable image (its largest face)."""

    faces: list[FaceInput]
    items: list[LabeledImage]  # the readable images, in the same order
    unreadable: list[str]  # one line per image left out
    several_faces: list[str] = field(default_factory=list)  # one line per image whose largest face was taken


def prepare_faces(items: Sequence[LabeledImage], need_aus: bool, need_pixels: bool, workers: int = 1,
                  progress: Progress | None = None, use_cache: bool = True,
                  root: str | os.PathLike[str] | None = None, crops: bool = False) -> PreparedFaces:
    """Decode every image (unreadable ones are reported and left out, for every model alike),
    measure faces where AU models need them or a large image must be cropped, and build the
    ``FaceInput`` of each: AUs of the largest face (NaN without one) and its crop. Reports name
    files relative to ``root``, the test set's folder (not a server's temporary folder). ``crops``:
    every image is a face crop whatever its size (``--crops``): measured in face-crop mode, and
    given whole to pixel models, as FER2013's 48 px crops are."""
    from .masks import drawn_mask_of, hide
    from .measure.extract import measure_items

    items = list(items)
    total = len(items) * (2 if need_aus else 1)
    kept: list[LabeledImage] = []
    pixels: list[np.ndarray | None] = []
    unreadable: list[str] = []
    large: list[int] = []
    whole: list[bool] = []  # per kept image: a face crop itself
    for i, it in enumerate(items):
        try:
            rgb = load_image(it.path, name=printable(relative_file(it.path, root)))
        except FerError as exc:
            unreadable.append(one_line(exc))
            continue
        whole.append(is_face_crop(rgb, crops))
        if need_pixels and not whole[-1]:
            large.append(len(kept))
        kept.append(it)
        pixels.append(rgb if need_pixels and whole[-1] else None)
        if progress and (i % 64 == 0 or i == len(items) - 1):
            progress(i + 1, total)
    to_measure = list(range(len(kept))) if need_aus else large
    measured: dict[int, object] = {}
    if to_measure:
        offset = len(items)
        part = (lambda d, t: progress(offset + d * len(items) // max(t, 1), total)) if progress and need_aus else None
        found = measure_items([kept[i] for i in to_measure], workers=workers, use_cache=use_cache, progress=part,
                              crops=crops)
        measured = {to_measure[j]: m for j, m in found.items()}
    faces = []
    several: list[str] = []
    for i, it in enumerate(kept):
        m = measured.get(i)
        first = m[0] if isinstance(m, list) and m else None
        if isinstance(m, list) and len(m) > 1:
            several.append(f"{printable(relative_file(it.path, root))}: {len(m)} faces found; the largest was scored")
        masked = drawn_mask_of(it.path) is not None  # an image mask wrote: what it hides is unknown
        aus = None
        if need_aus:
            aus = first.au_vector() if first is not None else np.full(len(AU_COLUMNS), np.nan)
            aus = hide(aus) if masked else aus
        crop = pixels[i]
        if need_pixels and crop is None:  # a large image: its largest face, or the whole image
            crop = measured_face_crop(load_image(it.path), first)
        # a face crop (under SMALL_IMAGE_SIDE) is the face itself, found or not; a photo needs one found
        faces.append(FaceInput(pixels=crop, aus=aus, name=str(it.path), found=first is not None or whole[i],
                               masked=masked))
    if progress:
        progress(total, total)
    return PreparedFaces(faces, kept, unreadable, several)

