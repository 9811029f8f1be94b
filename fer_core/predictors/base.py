"""The one contract every model kind meets, and the typed explanation of the AU kinds.

A model sees faces as the face pipeline (``fer_core.pipeline``) prepared them: a ``FaceInput``
holds the crop every pixel model is shown and the AUs measured on that same face. Pixel models
read ``pixels``, AU models read ``aus``; which one a model needs is its declared ``inputs``.
``predict_proba`` returns an (n, len(classes)) array whose rows sum to 1; a row of NaN means the
model could not judge that face (no face was measured) and counts as wrong in every evaluation.
Models that can say why (``explains = True``) also give an ``Explanation`` per face.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from ..errors import FerError, article

Inputs = Literal["aus", "pixels"]
Progress = Callable[[int, int], None]

ACTIVE_INTENSITY = 0.5  # below this an AU reads as "absent"
# The sentence names a reason only when it weighs at least this share of the strongest one: "mostly
# because of" AU06 at 0.02 logit beside an absent AU25 at 0.34 put the slight one first.
REASON_FLOOR = 0.1


def model_of_kind(kind: str) -> str:
    """"an au-logreg model", "a cnn model": messages name a model by its kind with the right article."""
    return f"{article(kind)} {kind} model"


@dataclass
class FaceInput:
    """One face as models see it. ``pixels``: RGB uint8 crop around the face (FER-style crops
    whole); ``aus``: the 17 measured AU intensities, NaN where no face was measured; either is
    None when the source did not provide it (an AU table has no pixels)."""

    pixels: np.ndarray | None = None
    aus: np.ndarray | None = None
    name: str = ""
    masked: bool = False  # the face wears a (drawn) mask: the AUs it hides are unknown to every AU model
    # False: a photo in which no face was found. ``pixels`` is then the whole photo, which a pixel
    # model would still answer (a coffee cup "angry"); a comparison counts it as no face for every model.
    found: bool = True



@dataclass(frozen=True)
class AUContribution:
    """How much one AU pushed the predicted emotion's score above the other emotions'."""

    au: str  # "AU12"
    name: str  # "AU12 lip corner puller"
    intensity: float  # 0-5, as the model read it
    contribution: float  # centred logit contribution towards the predicted emotion
    # The intensity the model weighs this face's against (its training faces' mean): a linear
    # model's evidence is the AU being stronger or weaker than that, not merely present. None
    # where the model has no such reference (a GAM reads each value on its own curve).
    usual: float | None = None
    # Where the model scores each value on a curve of its own (a GAM): whether the AU counts by
    # its value, speaking for (or against) the emotion more than its absence (0) would. None:
    # decided by ``usual``.
    by_value: bool | None = None

    @property
    def present(self) -> bool:
        return self.intensity >= ACTIVE_INTENSITY  # False for an unknown (NaN) AU

    @property
    def stronger(self) -> bool:
        """Whether the AU counts by being there: at or above its usual value (for a GAM, by its
        value rather than its absence; present, where the model has neither). An AU below it counts
        by being absent or weaker than usual, and is said so, not "because of" it."""
        if self.by_value is not None:
            return self.by_value
        if self.usual is None:
            return self.present
        return bool(self.intensity >= self.usual)  # False for an unknown (NaN) AU

    @property
    def weaker_than_usual(self) -> bool:
        """There, but counting by being below the model's usual value. A GAM has no usual value: an
        AU there whose value speaks less than its absence would is no reason either way, and is not
        said "weaker than usual"."""
        return self.present and not self.stronger and self.by_value is None

    def to_dict(self) -> dict:
        known = not np.isnan(self.intensity)
        out = {"au": self.au, "name": self.name, "intensity": round(float(self.intensity), 3) if known else None,
               "contribution": round(float(self.contribution), 4)}
        if self.usual is not None:
            out["usual"] = round(float(self.usual), 3)
        if self.by_value is not None:  # a GAM's: the value, not the absence, is what counts
            out["by_value"] = self.by_value
        return out


@dataclass(frozen=True)
class Explanation:
    """A prediction and its reasons in muscle movements.

    ``ranked`` holds every AU, strongest support for the predicted emotion first. ``reasons``
    are the AUs the sentence gives, taken from the ``top`` strongest supports (each at least
    ``REASON_FLOOR`` of the strongest): those there at or above their usual value ("because of"),
    then what it lacks (``lacking``), said as absent or weaker than usual: the one list the JSON's
    ``top_aus`` and the sentence give as "the reasons"; the charts highlight those the face shows
    (``active_reasons``).
    """

    emotion: str
    probabilities: dict[str, float]
    ranked: tuple[AUContribution, ...]
    top: int = 3
    extra: dict = field(default_factory=dict)  # kind-specific fields for the JSON (e.g. measured AUs)
    # An additive model's leaning to the emotion before any AU (its intercept, centred as the
    # contributions are): with them it sums to the emotion's centred logit. None where the
    # contributions are estimates (an MLP's) and nothing sums.
    baseline: float | None = None

    @property
    def baseline_decided(self) -> bool:
        """Whether the AUs together speak against the emotion, so the baseline decided it (8.8 % of
        FER2013 val faces had an intercept outweighing the AUs; 11 got "mostly because of" unsaid)."""
        total = float(np.nansum([c.contribution for c in self.ranked]))
        return self.baseline is not None and total <= 0 < self.baseline

    @property
    def _strongest(self) -> list[AUContribution]:
        """The ``top`` strongest supports of the emotion, each a fair share of the strongest."""
        support = [c for c in self.ranked if c.contribution > 0][:self.top]
        return [c for c in support if c.contribution >= REASON_FLOOR * support[0].contribution]

    @property
    def active_reasons(self) -> list[AUContribution]:
        """The reasons the face shows ("because of"): among the strongest, AUs at or above usual."""
        return [c for c in self._strongest if c.stronger]

    @property
    def lacking(self) -> list[AUContribution]:
        """The reasons the face lacks, said after those it shows, strongest first: every absent one
        among the strongest ("AU25 lips part and AU26 jaw drop are absent": one named alone hid
        the others that outweighed it), and the strongest AU that is there but weaker than usual
        (said with its value; behind an absent one it had been in neither the sentence nor the JSON)."""
        lows = [c for c in self._strongest if not c.stronger]
        weak = next((c for c in lows if c.weaker_than_usual), None)
        return [c for c in lows if c is weak or not c.present]

    @property
    def reasons(self) -> list[AUContribution]:
        return self.active_reasons + self.lacking

    @property
    def against(self) -> list[AUContribution]:
        return [c for c in reversed(self.ranked) if c.contribution < 0][:self.top]

    @property
    def sentence(self) -> str:
        """'happy, mostly because of AU12 lip corner puller (3.8) and AU06 cheek raiser (2.9);
        AU04 brow lowerer is absent.' In the current language (catalogue area ``explain``), the
        emotion and AU names included, so a page shows it in the reader's language."""
        from ..i18n import emotion_label, t

        emotion = emotion_label(self.emotion)
        return self._reasons_sentence(emotion) + (t("explain.baseline_decided", emotion=emotion)
                                                  if self.baseline_decided else "")

    def _reasons_sentence(self, emotion: str) -> str:
        from ..au_table import au_label
        from ..i18n import t

        def listed(items: list[str]) -> str:
            return items[0] if len(items) == 1 else t("explain.list_and", first=", ".join(items[:-1]), last=items[-1])

        active, lacking = self.active_reasons, self.lacking
        if not active and not lacking:
            return t("explain.no_single", emotion=emotion)
        parts = [f"{au_label(c.au)} ({c.intensity:.1f})" for c in active]
        reasons = listed(parts) if parts else ""
        if not lacking:
            return t("explain.because", emotion=emotion, reasons=reasons)
        weak = [c for c in lacking if c.present]  # there, but below what the model weighs it against
        absent = [c for c in lacking if not c.present]
        said = ["weak", "absent"] if lacking[0].present else ["absent", "weak"]  # the stronger first
        key = ("because_" if parts else "only_") + "_".join(w for w in said if {"weak": weak, "absent": absent}[w]) \
            + ("_many" if len(absent) > 1 else "")
        return t(f"explain.{key}", emotion=emotion, reasons=reasons, weak=au_label(weak[0].au) if weak else "",
                 absent=listed([au_label(c.au) for c in absent]) if absent else "",
                 intensity=f"{weak[0].intensity:.1f}" if weak else "")

    def to_dict(self) -> dict:
        return {
            "emotion": self.emotion,
            "probabilities": {c: round(float(p), 4) for c, p in self.probabilities.items()},
            "top_aus": [c.to_dict() for c in self.reasons],
            "against": [c.to_dict() for c in self.against],
            "sentence": self.sentence,
            **({"baseline": round(float(self.baseline), 4)} if self.baseline is not None else {}),
            **self.extra,
        }


class Predictor(ABC):
    """A loaded model of any kind. Subclasses set ``inputs`` (and ``explains``) and implement
    ``predict_proba``; explaining kinds implement ``explain`` too."""

    inputs: ClassVar[Inputs] = "pixels"
    explains: ClassVar[bool] = False

    name: str
    kind: str
    classes: tuple[str, ...]
    # The checksum of the files it was loaded from (``registry.load_predictor``): with the code's,
    # what keys its cached answers (``evaluation.answers``). None for a model made in code: not cached.
    source_digest: str | None = None

    def __repr__(self) -> str:  # what a notebook shows of a loaded model
        name, kind = getattr(self, "name", "?"), getattr(self, "kind", "?")
        return f"<{type(self).__name__} {name!r}: {kind}, {', '.join(getattr(self, 'classes', ()))}>"

    @abstractmethod
    def predict_proba(self, faces: Sequence[FaceInput | np.ndarray],
                      progress: Progress | None = None) -> np.ndarray:
        """(n, len(classes)) probabilities; NaN rows for faces the model could not judge."""

    def predict(self, faces: Sequence[FaceInput | np.ndarray], progress: Progress | None = None) -> list[str | None]:
        """The emotion of each face (scikit-learn's ``predict``: the most probable class), None
        where there is nothing to judge: a photo without a face found (``FaceInput.found``; a pixel
        model would answer its whole picture), or no AU the model needs (as ``compare`` scores).
        Arrays are taken as face crops; for photos use ``analyze_image``."""
        return predicted_labels(self.classes, judged_only(faces, self.predict_proba(faces, progress=progress)))

    def explain(self, face: FaceInput | np.ndarray, top: int = 3) -> Explanation:
        raise FerError(f"{self.name}: {model_of_kind(self.kind)} does not explain its predictions; "
                       "use an AU model for reasons")

    def au_model(self):
        """The linear AU model whose weights explain this predictor (``AUModel``), if it has one:
        the AU model page draws its AU x emotion weights."""
        return None

    # -- shared input handling --------------------------------------------------------------
    def pixels_of(self, faces: Sequence[FaceInput | np.ndarray]) -> list[np.ndarray]:
        """The face crops of ``faces`` (arrays are taken as crops), or a FerError when a face
        comes without pixels (an AU table)."""
        out = []
        for face in faces:
            pixels = face.pixels if isinstance(face, FaceInput) else face
            if pixels is None:
                raise FerError(f"{self.name}: {model_of_kind(self.kind)} scores face images, not an AU table; "
                               "give it images (--images; FaceInput pixels in Python)")
            out.append(pixels)
        return out


def au_columns_used(predictor: Predictor) -> tuple[str, ...]:
    """The AU columns an AU model reads (an upper-face model: seven), all 17 when it does not
    say: what decides which of a table's values it needs, and which bad values concern it."""
    from ..au_table import AU_COLUMNS

    model = predictor.au_model()
    return tuple(getattr(model, "au_columns", None) or AU_COLUMNS)


def some_aus_read(model) -> list[str]:
    """The AU codes a model reads when it reads fewer than all 17 (an upper-face model), else []:
    of a fitted AU model (``au_columns``) or a loaded predictor (a pixel model's: [])."""
    from ..au_table import AU_COLUMNS, au_code

    if isinstance(model, Predictor):
        if model.inputs != "aus":
            return []
        columns = au_columns_used(model)
    else:
        columns = tuple(getattr(model, "au_columns", None) or AU_COLUMNS)
    return [au_code(c) for c in columns] if len(set(columns)) < len(AU_COLUMNS) else []


def judged_only(faces: Sequence[FaceInput | np.ndarray], proba: np.ndarray) -> np.ndarray:
    """``proba`` with NaN rows for photos in which no face was found (``FaceInput.found``): what
    every model is scored on, a pixel model's answer to the whole picture counting for nothing."""
    proba = np.array(proba, dtype=float)
    proba[[isinstance(f, FaceInput) and not f.found for f in faces]] = np.nan
    return proba


def predicted_labels(classes: Sequence[str], proba: np.ndarray) -> list[str | None]:
    """Class names of the arg-max, None where the row is NaN (no face)."""
    out: list[str | None] = []
    for row in np.asarray(proba, dtype=float):
        out.append(None if np.isnan(row).any() else classes[int(np.argmax(row))])
    return out
