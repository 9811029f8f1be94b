"""Every model on the same faces with and without a mask: what a mask costs, per emotion.

The faces are measured, a mask is drawn on each from its landmarks (``fer_core.masks``) and the
masked image is measured again, in crash-isolated workers. Then the usual comparison runs twice on
exactly the same images: once on the original faces, once on the masked ones (pixel models see the
masked crop; AU models see the AUs a mask leaves visible, the hidden ones unknown). The report adds,
per model, the confusion shift (for each true emotion, how the share of each answer moves under the
mask) and, for the explaining models, which AUs carried their decisions before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DatasetError, FerError, one_line
from ..i18n import t
from ..images import LabeledImage, load_image
from ..masks import DEFAULT_STYLE, HIDDEN_AUS, HUMAN_FINDINGS, VISIBLE_AUS, MaskedMeasure, hide, style_of
from ..predictors.base import FaceInput, Predictor
from .compare import Comparison, _load_all, run_comparison, scored_images

FractionProgress = Callable[[float, str], None]


@dataclass
class MaskReport:
    original: Comparison
    masked: Comparison
    style: str
    seed: int
    unmaskable: list[str] = field(default_factory=list)  # images without a face to put a mask on
    reasons: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # model -> condition -> AU -> share
    examples: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)  # (file, face, masked)

    @property
    def names(self) -> list[str]:
        return [n for n in self.original.names if n in self.masked.reports]

    def shift(self, name: str) -> dict[str, dict[str, float]]:
        """For each true emotion: masked share minus original share of each answer (rows of the
        row-normalised confusion matrices; "no face" is the last answer)."""
        out = {}
        for true in self.original.classes:
            before, after = _answers(self.original, name, true), _answers(self.masked, name, true)
            out[true] = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 4) for k in sorted(set(before) | set(after))}
        return out

    def to_dict(self) -> dict:
        """The ``mask-report --json`` output: per model the ``evaluate --json`` fields on the original
        and the masked images, the shift, and for explaining models the AUs behind the decisions."""
        models = {}
        for name in self.names:
            entry = {"original": self.original.reports[name].to_dict(), "masked": self.masked.reports[name].to_dict(),
                     "shift": self.shift(name)}
            if name in self.reasons:
                entry["reasons"] = self.reasons[name]
            models[name] = entry
        return {"n": self.original.n, "classes": list(self.original.classes), "style": self.style, "seed": self.seed,
                "hidden_aus": list(HIDDEN_AUS), "visible_aus": list(VISIBLE_AUS), "models": models,
                "unmaskable": list(self.unmaskable), "skipped": list(self.original.unreadable),
                "skipped_classes": dict(self.original.skipped),
                "human_findings": dict(HUMAN_FINDINGS)}


def _answers(comparison: Comparison, name: str, true: str) -> dict[str, float]:
    rows = comparison.table[comparison.table["label"] == true]
    if rows.empty:
        return {}
    answers = rows[name].fillna("no face")
    return {k: float(v) for k, v in (answers.value_counts() / len(rows)).items()}


def run_mask_report(models: Sequence, items: Sequence[LabeledImage], classes: Sequence[str] | None = None,
                    style: str = DEFAULT_STYLE, seed: int = 0, workers: int = 1,
                    progress: FractionProgress | None = None, loader: Callable | None = None,
                    examples: int = 6) -> MaskReport:
    """Every model (names, entries or Predictors) on the same images, original and masked."""
    from ..measure.extract import iter_tasks
    from ..pipeline import PreparedFaces, face_crop
    from ..predictors.registry import load_predictor

    style_of(style)
    report = progress or (lambda fraction, text: None)
    report(0.0, t("loading.models"))
    predictors, failed = _load_all(models, loader or load_predictor)
    if not predictors:
        raise FerError("no model could be run: " + "; ".join(failed) if failed else "no models to compare")
    classes, chosen, skipped = scored_images(predictors, items, classes)
    # Each masked photo is cut to its face as it arrives and dropped: only the crops are kept.
    faces: dict[int, tuple[FaceInput, FaceInput] | str] = {}
    for i, measure in iter_tasks([("mask", str(it.path), style, seed) for it in chosen], workers,
                                 progress=lambda d, n: report(0.4 * d / max(n, 1), t(
                                     "loading.masking_faces", done=f"{d:,}", total=f"{n:,}"))):
        it = chosen[i]
        if not isinstance(measure, MaskedMeasure):
            faces[i] = f"{it.path.name}: {measure or 'not measured'}"
            continue
        first, again = measure.original[0], measure.masked[0]
        try:
            face = face_crop(load_image(it.path), first.box)
        except FerError as exc:  # changed or removed since it was masked
            faces[i] = f"{it.path.name}: {one_line(exc)}"
            continue
        faces[i] = (FaceInput(pixels=face, aus=first.au_vector(), name=str(it.path)),
                    FaceInput(pixels=face_crop(measure.image, first.box), aus=hide(again.au_vector()),
                              name=str(it.path), masked=True))
    kept: list[LabeledImage] = []
    original: list[FaceInput] = []
    masked: list[FaceInput] = []
    unmaskable: list[str] = []
    shown: list[tuple[str, np.ndarray, np.ndarray]] = []
    for i, it in enumerate(chosen):
        pair = faces.get(i, f"{it.path.name}: not measured")
        if isinstance(pair, str):
            unmaskable.append(pair)
            continue
        kept.append(it)
        original.append(pair[0])
        masked.append(pair[1])
        if len(shown) < examples and it.label not in {s[0].split("/")[0] for s in shown}:
            shown.append((f"{it.label}/{it.path.name}", pair[0].pixels, pair[1].pixels))
    if not kept:
        raise DatasetError(f"no face found to put a mask on in {len(chosen)} images")

    def given(faces: list[FaceInput]):
        return lambda *args, **kw: PreparedFaces(faces, kept, [])

    before = run_comparison(predictors, kept, classes, prepare=given(original),
                            progress=lambda f, step: report(0.4 + 0.25 * f, t("loading.original_faces", step=step)))
    after = run_comparison(predictors, kept, classes, prepare=given(masked),
                           progress=lambda f, step: report(0.65 + 0.25 * f, t("loading.masked_faces", step=step)))
    before.failed_models.extend(failed)
    before.failed_models.extend(f"{problem} (on the masked faces)" for problem in after.failed_models
                                if problem not in before.failed_models)
    before.skipped = after.skipped = skipped
    out = MaskReport(before, after, style, seed, unmaskable, examples=shown)
    explaining = [p for p in predictors if p.explains and p.name in after.reports]
    for j, p in enumerate(explaining):
        report(0.9 + 0.1 * j / max(len(explaining), 1), t("loading.which_aus", name=p.name))
        out.reasons[p.name] = {"original": _reason_shares(p, original), "masked": _reason_shares(p, masked)}
    report(1.0, t("loading.done"))
    return out


def _reason_shares(predictor: Predictor, faces: Sequence[FaceInput]) -> dict[str, float]:
    """For each AU, the share of faces whose explanation gives it as a reason."""
    counts: dict[str, int] = {}
    n = 0
    for face in faces:
        try:
            explanation = predictor.explain(face)
        except FerError:
            continue
        n += 1
        for c in explanation.reasons:
            counts[c.au] = counts.get(c.au, 0) + 1
    return {au: round(k / n, 4) for au, k in sorted(counts.items(), key=lambda kv: -kv[1])} if n else {}
