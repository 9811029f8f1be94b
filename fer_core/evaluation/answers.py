"""The models' answers on faces, kept in the measurement cache: a second comparison on the same
test set (another class set, one model added, the report made again) runs only what is new. On
FER2013 val the nine bundled models took 148 s on 2 cores each time, nearly all of it the networks'
test-time views; the second run now takes 2.2 s (``bench/compare_rerun.py``).

An answer is keyed by the face's measurement key (the file's bytes, face-crop mode and the
measuring settings: what decides the face a model is shown) and the model's identity: the bytes
of the files it was loaded from, its emotions, runtime and test-time views, a Teachable Machine
model's label mapping, and the workbench's code. A model made in code (no files) and AU models (their answers take milliseconds) are not
cached, nor a face that was not found (a crashed measurement is not cached either, and a later
one may find it). ``cache forget`` and ``cache clear`` remove the answers with the measurements.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import FerError, ImageError
from ..measure.extract import ANSWER_KEY, MeasureCache, content_key, measure_settings
from ..pipeline import PreparedFaces
from ..predictors.base import FaceInput, Predictor, Progress
from ..predictors.ensemble import EnsemblePredictor
from ..provenance import code_digest

# The answers on some faces (their positions among all), given a progress callback.
Answer = Callable[[list[int], Progress | None], np.ndarray]


def model_identity(predictor: Predictor) -> str | None:
    """What decides ``predictor``'s answer on a face, as 16 hex digits (never the 40 of a file's
    digest, which ``MeasureCache.forget`` looks for); None where it is not known: a model made in
    code, an AU model, an ensemble with such a member."""
    if predictor.inputs != "pixels" or not predictor.source_digest:
        return None
    mapping = getattr(predictor, "mapping", None)  # a Teachable Machine model's labels -> emotions (the manifest's)
    parts = [predictor.source_digest, predictor.kind, ",".join(predictor.classes),
             str(getattr(predictor, "runtime", "")), str(getattr(predictor, "tta", "")), code_digest(),
             json.dumps(mapping.as_dict(), sort_keys=True) if hasattr(mapping, "as_dict") else "",
             ",".join(getattr(mapping, "labels", ()) or ()), _plugin_code(type(predictor))]
    if isinstance(predictor, EnsemblePredictor):
        members = [model_identity(m) for m in predictor.members]
        if None in members:
            return None
        parts += members
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _plugin_code(kind: type) -> str:
    """The checksum of a model kind's code where it lies outside the workbench (a plugin's
    ``register_kind``): its answers depend on it as on ``code_digest``'s."""
    import inspect
    from pathlib import Path

    try:
        source = Path(inspect.getfile(kind)).resolve()
    except (TypeError, OSError):
        return ""
    if Path(__file__).resolve().parents[1] in source.parents:
        return ""
    try:
        return hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def face_keys(prepared: PreparedFaces, crops: bool) -> list[str | None]:
    """Each prepared face's measurement key, None for a face not found (its answer is not kept)
    or a file changed or gone since it was read."""
    settings = measure_settings()
    keys: list[str | None] = []
    for item, face in zip(prepared.items, prepared.faces):
        try:
            keys.append(content_key(item.path, crops, settings) if face.found else None)
        except (ImageError, OSError):
            keys.append(None)
    return keys


def _check_probabilities(predictor: Predictor, proba: np.ndarray) -> None:
    """A model's answers must be probabilities (each face's from 0 to 1, summing to 1; NaN where it
    does not judge): a plugin kind whose rows were all 0.5 was scored without a word, its argmax
    taken for answers and its "probability of the true emotion" written to the tables."""
    judged = proba[np.isfinite(proba).all(axis=1)]
    if len(judged) and ((judged < -1e-6).any() or (judged > 1 + 1e-6).any()
                        or not np.allclose(judged.sum(axis=1), 1.0, atol=1e-3)):
        bad = next(row for row in judged if (row < -1e-6).any() or (row > 1 + 1e-6).any() or abs(row.sum() - 1) > 1e-3)
        raise FerError(f"{predictor.name}: its answers are not probabilities (each face's should be 0 to 1 and sum "
                       f"to 1; one face got {', '.join(f'{v:.3g}' for v in bad[:7])}); a model kind's predict_proba "
                       "must give them")


def cached_answers(predictor: Predictor, faces: Sequence[FaceInput], keys: Sequence[str | None],
                   answer: Answer, cache: MeasureCache | None, progress: Progress | None = None
                   ) -> tuple[np.ndarray, int]:
    """``predictor``'s probabilities for ``faces`` and how many came from ``cache``: the answers
    it holds for this model on these faces (``keys``: ``face_keys``), ``answer`` for the others,
    which are then kept. A photo in which no face was found is not answered (NaN): a comparison
    counts it as no face for every model, whatever a pixel model says of the whole picture."""
    identity = model_identity(predictor) if cache is not None else None
    full = [f"{ANSWER_KEY}:{identity}:{key}" if identity and key else None for key in keys] or [None] * len(faces)
    found = cache.get_many([k for k in full if k]) if identity else {}
    proba = np.full((len(faces), len(predictor.classes)), np.nan)
    missing = []
    for i, (face, key) in enumerate(zip(faces, full)):
        row = found.get(key) if key else None
        if isinstance(row, list) and len(row) == len(predictor.classes):
            proba[i] = row
        elif not isinstance(face, FaceInput) or face.found:
            missing.append(i)
    if missing:
        proba[missing] = answer(missing, progress)
        _check_probabilities(predictor, proba[missing])
        if identity:
            cache.put_many({full[i]: [float(v) for v in proba[i]] for i in missing
                            if full[i] and np.isfinite(proba[i]).all()})
    elif progress:
        progress(1, 1)
    return proba, sum(1 for key in full if key in found)
