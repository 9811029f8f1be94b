"""One interface for every model the workbench compares: AU models, CNNs, Teachable Machine.

``predict_proba(images)`` takes RGB uint8 arrays and returns an (n, len(classes)) array whose
rows sum to 1; a row of NaN means the model could not judge that image (the AU model found no
face) and counts as wrong in every evaluation.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    name: str
    kind: str  # "au-logreg" | "au-mlp" | "cnn" | "teachable"
    classes: tuple[str, ...]

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def predicted_labels(predictor: Predictor, proba: np.ndarray) -> list[str | None]:
    """Class names of the arg-max, None where the row is NaN (no face)."""
    out: list[str | None] = []
    for row in np.asarray(proba, dtype=float):
        out.append(None if np.isnan(row).any() else predictor.classes[int(np.argmax(row))])
    return out
