"""Every model on the same faces with and without a mask: what a mask costs, per emotion.

The faces are measured, a mask is drawn on each from its landmarks (``fer_core.masks``) and the
masked image is measured again, in crash-isolated workers. Then the usual comparison runs twice on
exactly the same images: once on the original faces, once on the masked ones (pixel models see the
masked crop; AU models see the AUs a mask leaves visible, the hidden ones unknown). The report adds,
per model, the confusion shift (for each true emotion, how the share of each answer moves under the
mask), a paired test of right answers without and with the mask (McNemar) and, for the explaining
models, which AUs carried their decisions before and after.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DatasetError, FerError, one_line, printable
from ..i18n import t
from ..images import LabeledImage, load_image, looks_like_face_crop, relative_file
from ..masks import (
    DEFAULT_STYLE,
    HIDDEN_AUS,
    HUMAN_FINDINGS,
    MASK_NOT_PLACED_REASON,
    VISIBLE_AUS,
    MaskedMeasure,
    hide,
    style_of,
)
from ..predictors.base import FaceInput, Predictor
from .compare import Comparison, _load_all, check_model_names, run_comparison, scored_images
from .metrics import McNemarResult, mcnemar

log = logging.getLogger("fer_core")
FractionProgress = Callable[[float, str], None]


# A masked face's missing answer: every masked face was found (a face without one is not masked),
# so a model without an answer is an AU model whose AUs the mask all hides, not "no face".
NOT_JUDGED = "not judged"


@dataclass(frozen=True)
class MaskExample:
    """One emotion's example face, before and under the mask (the face as each model saw it)."""

    emotion: str
    file: str  # the image's file name
    face: np.ndarray = field(repr=False)
    masked: np.ndarray = field(repr=False)


@dataclass
class MaskReport:
    original: Comparison
    masked: Comparison
    style: str
    seed: int
    unmaskable: list[str] = field(default_factory=list)  # "happy/001.jpg: reason": no face, the mask misses
    # the largest, or its measuring crashed, timed out or failed
    unmaskable_emotions: list[str | None] = field(default_factory=list)  # the label of each, in order
    reasons: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # model -> condition -> AU -> share
    examples: list[MaskExample] = field(default_factory=list, repr=False)  # one face per emotion
    reasons_failed: list[str] = field(default_factory=list)  # faces an explaining model could not explain
    root: str | None = None  # the test set's folder: files are named relative to it
    crops: bool = False  # the images were measured as face crops (--crops / Face crops)
    # unmaskable images without a face found that look like face crops (``images.looks_like_face_crop``)
    crop_like_no_face: list[str] = field(default_factory=list)
    unmaskable_files: list[str] = field(default_factory=list)  # the file of each ``unmaskable`` line, in order

    @property
    def names(self) -> list[str]:
        return [n for n in self.original.names if n in self.masked.reports]

    @property
    def empty_classes(self) -> list[str]:
        """Emotions scored with no image left (all unmaskable): no answer moved, none was given."""
        present = set(self.original.table["label"])
        return [c for c in self.original.classes if c not in present]

    @property
    def not_placed(self) -> int:
        """Images whose face the mask could not be placed on (``masks.misplaced``)."""
        return sum(line.endswith(f": {MASK_NOT_PLACED_REASON}") for line in self.unmaskable)

    def shift(self, name: str) -> dict[str, dict[str, float]]:
        """For each true emotion with images: masked share minus original share of each answer
        (rows of the row-normalised confusion matrices; "no face" is the last answer, and under the
        mask ``NOT_JUDGED``: the face was found, but an AU model had none of its AUs left to read)."""
        out = {}
        for true in self.original.classes:
            if true in self.empty_classes:
                continue
            before, after = _answers(self.original, name, true), _answers(self.masked, name, true, NOT_JUDGED)
            out[true] = {k: round(after.get(k, 0.0) - before.get(k, 0.0), 4) for k in sorted(set(before) | set(after))}
        return out

    def most_gained(self, name: str, emotion: str) -> tuple[list[str], float]:
        """The answers other than ``emotion`` its images gained most under the mask, and by how
        much (a share): every answer tied for the most (a table naming one of two equal gains hid
        the other), ([], 0.0) when none gained."""
        gained = {k: v for k, v in self.shift(name).get(emotion, {}).items() if k != emotion and v > 0}
        most = max(gained.values(), default=0.0)
        return [k for k, v in gained.items() if v >= most - 1e-9], most

    def paired_test(self, name: str) -> McNemarResult:
        """McNemar on the same images: right without the mask against right with it."""
        return mcnemar(self.original.correct(name), self.masked.correct(name), "original", "masked")

    def file_name(self, file: str) -> str:
        """A file of the comparison tables as the report names it (relative to the test set)."""
        return printable(relative_file(self.original.path_of(file), self.root))

    def per_image_frame(self) -> pd.DataFrame:
        """One row per image: file, label, and each model's answer without and with the mask
        (empty where it found no face); then each image that could not be masked, its answers
        empty and ``left_out`` saying why (the CSV had dropped them without a word)."""
        frame = pd.DataFrame({"file": [self.file_name(f) for f in self.original.table["file"]],
                              "label": self.original.table["label"].to_numpy()})
        for name in self.names:
            frame[f"{name} original"] = self.original.table[name].to_numpy()
            frame[f"{name} masked"] = self.masked.table[name].to_numpy()
        frame["left_out"] = ""
        files = (self.unmaskable_files if len(self.unmaskable_files) == len(self.unmaskable)
                 else [line.rsplit(": ", 1)[0] for line in self.unmaskable])  # a report built without them
        left_out = pd.DataFrame({"file": files, "label": list(self.unmaskable_emotions)[:len(files)]
                                 + [None] * (len(files) - len(self.unmaskable_emotions)),
                                 "left_out": [line.removeprefix(f"{file}: ") for file, line in zip(files, self.unmaskable)]})
        return pd.concat([frame, left_out], ignore_index=True) if len(left_out) else frame

    def to_dict(self) -> dict:
        """The ``mask-report --json`` output: per model the ``evaluate --json`` fields on the original
        and the masked images, the shift, the paired test, and for explaining models the AUs behind
        the decisions; every image left out, and why; and each pair of models on the masked faces
        (``masked_pairs``: does the upper-face model read them better than the others?)."""
        models = {}
        for name in self.names:
            entry = {"original": self.original.reports[name].to_dict(), "masked": _not_judged(self.masked.reports[name]),
                     "shift": self.shift(name), "mcnemar": self.paired_test(name).to_dict()}
            if name in self.reasons:
                entry["reasons"] = self.reasons[name]
            models[name] = entry
        return {"n": self.original.n, "classes": list(self.original.classes), "style": self.style, "seed": self.seed,
                "hidden_aus": list(HIDDEN_AUS), "visible_aus": list(VISIBLE_AUS), "models": models,
                "no_images": self.empty_classes, "unmaskable": list(self.unmaskable),
                "mask_not_placed": self.not_placed, "skipped": list(self.original.unreadable),
                "skipped_classes": dict(self.original.skipped), "unlabelled": self.original.unlabelled,
                "several_faces": list(self.original.several_faces),
                # said on stderr only before: a script reading the JSON lost why a model scored 0 on fear
                "cannot_predict": self.original.cannot_predict,
                # answers of an emotion not scored (a seven-emotion model's fear), counted wrong: under a mask too
                "unscored_answers": {"original": self.original.unscored_answer_counts,
                                     "masked": self.masked.unscored_answer_counts},
                "failed_models": list(self.original.failed_models), "reasons_failed": list(self.reasons_failed),
                # which model reads the masked faces better: each pair on the same masked faces (McNemar, Holm)
                "masked_pairs": [pair.to_dict() for pair in self.masked.mcnemar],
                "human_findings": dict(HUMAN_FINDINGS), "crops": bool(self.crops),
                "crop_like_no_face": list(self.crop_like_no_face)}


def _not_judged(report) -> dict:
    """A masked report's fields: every masked face was found (a face is masked only once found),
    so a face without an answer was not judged (an AU model with none of its AUs left to read):
    ``not_judged`` and ``not_judged_per_class``, where ``no_face`` read as the detector failing."""
    d = report.to_dict()
    d["not_judged"], d["not_judged_per_class"] = d.pop("no_face"), d.pop("no_face_per_class")
    return d


def _answers(comparison: Comparison, name: str, true: str, missing: str = "no face") -> dict[str, float]:
    rows = comparison.table[comparison.table["label"] == true]
    if rows.empty:
        return {}
    answers = rows[name].fillna(missing)
    return {k: float(v) for k, v in (answers.value_counts() / len(rows)).items()}


def _about_the_face(measure: object) -> bool:
    """Whether a mask task's failure is about the face or its measuring (no face, the mask misses
    it, the worker crashed, timed out or failed: a ``WorkerFailure``, whatever its text) rather than
    about reading the file, which the task answers with the reason in a plain str."""
    from ..measure.tasks import NO_FACE_REASON
    from ..measure.workers import WorkerFailure

    return measure is None or isinstance(measure, WorkerFailure) or measure in (NO_FACE_REASON, MASK_NOT_PLACED_REASON)


def crops_advice(n: int) -> str:
    """What the mask report's refusal adds of ``n`` pictures without a face that look like face
    crops (``images.looks_like_face_crop``)."""
    from ..pipeline import SMALL_IMAGE_SIDE

    return (f"{n} of the images without a face are square or nearly square pictures of {SMALL_IMAGE_SIDE} px or "
            "more; if they are face crops, the face filling each, measure them as such (--crops, Face crops)")


def _nothing_masked(total: int, unmaskable: Sequence[str], unreadable: int, crop_like_no_face: int = 0) -> str:
    """Why no image of ``total`` was left to score, with each cause counted (the lines listed);
    ``crop_like_no_face``: how many without a face look like face crops (``--crops`` would help)."""
    from ..measure.tasks import NO_FACE_REASON

    no_face = sum(line.endswith(f": {NO_FACE_REASON}") for line in unmaskable)
    advice = f"; {crops_advice(crop_like_no_face)}" if crop_like_no_face else ""
    if no_face == total:
        return f"no face found to put a mask on in {total} images" + advice
    not_placed = sum(line.endswith(f": {MASK_NOT_PLACED_REASON}") for line in unmaskable)
    failed = len(unmaskable) - no_face - not_placed
    return (f"none of {total} images could be masked: {no_face} without a face, {not_placed} with no face the "
            f"mask could be placed on, {failed} whose measuring failed, {unreadable} unreadable" + advice)


def run_mask_report(models: Sequence, items: Sequence[LabeledImage], classes: Sequence[str] | None = None,
                    style: str = DEFAULT_STYLE, seed: int = 0, workers: int = 1,
                    progress: FractionProgress | None = None, loader: Callable | None = None,
                    examples: int | None = None, root: str | os.PathLike[str] | None = None,
                    crops: bool = False) -> MaskReport:
    """Every model (names, entries or Predictors) on the same images, original and masked. Files
    are named relative to ``root`` (else to the folder holding them all). ``crops``: the images are
    face crops, measured in face-crop mode and given whole to pixel models (``prepare_faces``).
    ``examples``: how many emotions get an example face (None: every emotion scored; six left
    seven emotions' surprise without one)."""
    from ..measure.extract import iter_tasks
    from ..measure.tasks import NO_FACE_REASON
    from ..pipeline import PreparedFaces, measured_face_crop
    from ..predictors.registry import load_predictor

    style_of(style)
    report = progress or (lambda fraction, text: None)
    report(0.0, t("loading.models"))
    predictors, failed = _load_all(models, loader or load_predictor)
    if not predictors:
        raise FerError("no model could be run: " + "; ".join(failed) if failed else "no models to compare")
    check_model_names(predictors)  # before minutes of masking, not after
    classes, chosen, skipped, unlabelled = scored_images(predictors, items, classes)
    if root is None:
        root = os.path.commonpath([str(it.path.parent) for it in chosen])

    def name_of(it: LabeledImage) -> str:
        return printable(relative_file(it.path, root))

    # Each masked photo is cut to its face as it arrives and dropped: only the crops are kept.
    faces: dict[int, tuple[FaceInput, FaceInput] | str] = {}
    unreadable: dict[int, str] = {}
    several: dict[int, str] = {}
    for i, measure in iter_tasks([("mask", str(it.path), style, seed, crops) for it in chosen], workers,
                                 progress=lambda d, n: report(0.4 * d / max(n, 1), t(
                                     "loading.masking_faces", done=f"{d:,}", total=f"{n:,}"))):
        it = chosen[i]
        if not isinstance(measure, MaskedMeasure):
            reason = str(measure or "not measured")
            if _about_the_face(measure):
                faces[i] = f"{name_of(it)}: {reason}"
            else:  # the file could not be read: skipped, as compare skips it
                unreadable[i] = f"{name_of(it)}: {reason}"
            continue
        if 0 in measure.bare:  # the largest face, the one scored, got no mask (others may have)
            faces[i] = f"{name_of(it)}: {MASK_NOT_PLACED_REASON}"
            continue
        first, again = measure.original[0], measure.masked[0]
        try:
            image = load_image(it.path, name=name_of(it))
        except FerError as exc:  # changed or removed since it was masked
            unreadable[i] = one_line(exc)
            continue
        # a face crop is given whole, as compare --crops gives it; a photo is cut to its face
        face = image if crops else measured_face_crop(image, first)
        if len(measure.original) > 1:
            several[i] = f"{name_of(it)}: {len(measure.original)} faces found; the largest was scored"
        faces[i] = (FaceInput(pixels=face, aus=first.au_vector(), name=str(it.path)),
                    FaceInput(pixels=measure.image if crops else measured_face_crop(measure.image, first),
                              aus=hide(again.au_vector()),
                              name=str(it.path), masked=True))
    kept: list[LabeledImage] = []
    original: list[FaceInput] = []
    masked: list[FaceInput] = []
    unmaskable: list[str] = []
    unmaskable_files: list[str] = []
    unmaskable_emotions: list[str | None] = []
    shown: list[tuple[str, np.ndarray, np.ndarray]] = []
    no_face: list[LabeledImage] = []
    for i, it in enumerate(chosen):
        if i in unreadable:
            continue
        pair = faces.get(i, f"{name_of(it)}: not measured")
        if isinstance(pair, str):
            unmaskable.append(pair)
            unmaskable_files.append(name_of(it))
            unmaskable_emotions.append(it.label)
            if not crops and pair.endswith(f": {NO_FACE_REASON}"):
                no_face.append(it)
            continue
        kept.append(it)
        original.append(pair[0])
        masked.append(pair[1])
        if (examples is None or len(shown) < examples) and it.label not in {s.emotion for s in shown}:
            shown.append(MaskExample(str(it.label), it.path.name, pair[0].pixels, pair[1].pixels))
    crop_like_names = [name_of(it) for it in no_face if looks_like_face_crop(it.path)]
    if not kept:
        raise DatasetError(_nothing_masked(len(chosen), unmaskable, len(unreadable), len(crop_like_names)))

    skipped_files = [unreadable[i] for i in sorted(unreadable)]
    several_faces = [several[i] for i in sorted(several)]

    def given(faces: list[FaceInput]):
        return lambda *args, **kw: PreparedFaces(faces, kept, list(skipped_files), list(several_faces))

    before = run_comparison(predictors, kept, classes, prepare=given(original),
                            progress=lambda f, step: report(0.4 + 0.25 * f, t("loading.original_faces", step=step)))
    after = run_comparison(predictors, kept, classes, prepare=given(masked),
                           progress=lambda f, step: report(0.65 + 0.25 * f, t("loading.masked_faces", step=step)))
    before.failed_models.extend(failed)
    before.failed_models.extend(f"{problem} (on the masked faces)" for problem in after.failed_models
                                if problem not in before.failed_models)
    before.skipped = after.skipped = skipped
    before.crops = after.crops = crops
    before.unlabelled = after.unlabelled = unlabelled
    out = MaskReport(before, after, style, seed, unmaskable, unmaskable_emotions, examples=shown, root=str(root),
                     crops=crops, crop_like_no_face=crop_like_names, unmaskable_files=unmaskable_files)
    explaining = [p for p in predictors if p.explains and p.name in after.reports]
    for j, p in enumerate(explaining):
        report(0.9 + 0.1 * j / max(len(explaining), 1), t("loading.which_aus", name=p.name))
        out.reasons[p.name] = {}
        for condition, inputs in (("original", original), ("masked", masked)):
            shares, problem = _reason_shares(p, inputs, condition)
            out.reasons[p.name][condition] = shares
            if problem:
                out.reasons_failed.append(problem)
    report(1.0, t("loading.done"))
    return out


def _reason_shares(predictor: Predictor, faces: Sequence[FaceInput], condition: str
                   ) -> tuple[dict[str, float], str | None]:
    """For each AU, the share of faces whose explanation gives it as a reason; and one line saying
    how many faces could not be explained (None when all were). A face that fails is left out, as
    run_comparison leaves out a model that fails: the finished comparisons are kept."""
    counts: dict[str, int] = {}
    n, failures, first = 0, 0, ""
    for face in faces:
        try:
            explanation = predictor.explain(face)
        except Exception as exc:
            if not isinstance(exc, FerError) and not failures:
                log.exception("model %s failed to explain a face", predictor.name)
            failures += 1
            first = first or one_line(exc)
            continue
        n += 1
        for c in explanation.reasons:
            counts[c.au] = counts.get(c.au, 0) + 1
    shares = {au: round(k / n, 4) for au, k in sorted(counts.items(), key=lambda kv: -kv[1])} if n else {}
    problem = (f"{predictor.name}: could not explain {failures} of {len(faces)} {condition} faces ({first})"
               if failures else None)
    return shares, problem
