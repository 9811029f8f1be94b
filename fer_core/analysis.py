"""Single images end to end: faces -> AUs -> explained emotion from an AU model.

``AUPredictor`` wraps an AU model as a ``Predictor`` (images in, probabilities out) so the compare
code treats it like the CNN and Teachable Machine models.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .au_mapping import aus_from_face
from .au_model import AUModel
from .aus import AU_CODES, AU_COLUMNS
from .extract import measure_faces, aus_from_measurement


def analyze_image(rgb: np.ndarray, model: AUModel, analyzer, top: int = 3) -> list[dict]:
    """Per face (largest first): box, confidence, the 17 AUs, probabilities, emotion, reasons.

    Landmarks are kept under ``landmarks`` (pixels) for drawing; drop them before printing JSON.
    """
    faces = analyzer.detect(rgb)
    out = []
    for face in faces:
        by_code = aus_from_face(face.blendshapes, face.landmarks)
        aus = {f"{code}_r": by_code[code] for code in AU_CODES}
        x = np.array([aus[c] for c in AU_COLUMNS])
        explanation = model.explain(x, top=top)
        out.append({
            **face.to_dict(),
            "aus": aus,
            **explanation,
            "landmarks": face.landmarks,
        })
    return out


class AUPredictor:
    """Images -> largest face's AUs -> AU model; NaN rows where no face is found."""

    def __init__(self, model: AUModel, analyzer=None, name: str = "AU model"):
        self.model = model
        self._analyzer = analyzer
        self.name = name
        self.kind = model.kind
        self.classes = model.classes

    @property
    def analyzer(self):
        """MediaPipe is started only when images (not AU tables) are given."""
        if self._analyzer is None:
            from .faces import shared_analyzer

            self._analyzer = shared_analyzer()
        return self._analyzer

    def aus(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for rgb in images:
            measured = measure_faces(self.analyzer, rgb)
            if measured:
                aus = aus_from_measurement(measured[0])
                rows.append([aus[c] for c in AU_COLUMNS])
            else:
                rows.append([np.nan] * len(AU_CODES))
        return np.array(rows, dtype=float).reshape(len(rows), len(AU_CODES))

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.proba_from_aus(self.aus(images))

    def proba_from_aus(self, X: np.ndarray) -> np.ndarray:
        out = np.full((len(X), len(self.classes)), np.nan)
        ok = ~np.isnan(X).any(axis=1)
        if ok.any():
            out[ok] = self.model.predict_proba(X[ok])
        return out

    def predict_items(self, items, workers: int = 1, progress=None) -> np.ndarray:
        """Probabilities for image files via the cached, multi-process extractor (faster for
        folders than ``predict_proba``); unreadable or face-less files give NaN rows."""
        from .extract import extract_table

        table = extract_table(items, workers=workers, progress=progress)
        first = table[table["face"] == 0].drop_duplicates("file").set_index("file")
        X = first.reindex([str(it.path) for it in items])[list(AU_COLUMNS)].to_numpy(dtype=float)
        return self.proba_from_aus(X)
