"""Several models on exactly the same labelled images: the comparison the CLI (``compare``,
``evaluate``) and the dashboard (Compare, the CNN page) all run.

The classes scored are the ones every model predicts and the test set contains
(``emotions.shared_classes``), unless given; images of other emotions are left out and counted.
Every model sees the same faces, prepared once by the face pipeline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from ..emotions import classes_given, shared_classes
from ..errors import DatasetError, FerError, one_line, printable
from ..i18n import t
from ..images import LabeledImage, copies_in, looks_like_face_crop, relative_file
from ..manifest import ModelEntry
from ..measure.extract import SOURCE as MEASURED_SOURCE
from ..measure.extract import MeasureCache
from ..measure.workers import telling_waits
from ..predictors.base import Explanation, Predictor, au_columns_used, judged_only, model_of_kind, predicted_labels
from ..predictors.ensemble import EnsemblePredictor, predict_reusing
from .answers import cached_answers, face_keys
from .metrics import (
    EvaluationReport,
    McNemarResult,
    evaluation_report,
    holm_adjusted,
    mcnemar,
    never_answered,
    per_video_report,
    report_from_codes,
    scoring_rows,
    share_text,
)

log = logging.getLogger("fer_core")
FractionProgress = Callable[[float, str], None]


@dataclass
class Comparison:
    """Per-image predictions (``table``: file, label, then per model its prediction, missing (NaN)
    where it found no face, and its probability of the true label), one report per model and the
    pairwise tests."""

    table: pd.DataFrame
    reports: dict[str, EvaluationReport]
    mcnemar: list[McNemarResult]
    classes: tuple[str, ...]
    kinds: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # images left out, one line each
    several_faces: list[str] = field(default_factory=list)  # images of several faces (the largest scored)
    failed_models: list[str] = field(default_factory=list)  # models that could not run, one line each
    skipped: dict[str, int] = field(default_factory=dict)  # test images of emotions not scored
    unlabelled: int = 0  # loose images whose file names name no emotion: nothing to score them on
    probabilities: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # full (n, k) per model
    model_classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seconds: float = 0.0
    paths: dict[str, Path] = field(default_factory=dict, repr=False)  # table "file" -> the file to open
    crops: bool = False  # the images were measured as face crops (--crops): an explanation measures them so too
    # images no face was found in that look like face crops (``images.looks_like_face_crop``), as
    # the table names them: measured without --crops, they could be measured as crops
    crop_like_no_face: list[str] = field(default_factory=list)
    # per model, how many of its answers were kept from an earlier run on the same files (``answers``)
    answers_from_cache: dict[str, int] = field(default_factory=dict)
    # the AU models that learned from another source's AUs than the images were measured with
    other_au_source: list[Predictor] = field(default_factory=list, repr=False)
    # per AU model, how many of the faces scored it was fitted on (by their fingerprints), and of how many
    learned_from: dict[str, tuple[int, int]] = field(default_factory=dict)
    # per network that recorded its training folder (its sidecar's train_dir): how many of the images
    # scored come from that folder (a drawn set: from its testset.json's source), of how many, and the folder
    from_training_folder: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # per network whose training folder is on this machine: the images scored (table "file") that are
    # byte-for-byte copies of files in it (FER2013 repeats images across its splits), and the folder
    copies_of_training: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    # per network whose epoch was chosen on a folder (its sidecar's val_dir, no held-out share): how many
    # of the images scored come from it (a drawn set: from its testset.json's source), of how many, the folder
    from_choosing_folder: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # per column of the labels sheet asked to group by (the poser's sex), each row's value as written
    # (None: no row), for ``groups.group_analysis``
    groups: dict[str, list[str | None]] = field(default_factory=dict)
    # who posed each row (a participant column, ``cluster_column``): one person's images are not independent
    clusters: list[str | None] | None = None
    cluster_column: str | None = None

    def path_of(self, file: str) -> Path:
        """The image behind a ``file`` of the table (file names that are not UTF-8 are shown escaped)."""
        return self.paths.get(file, Path(file))

    @property
    def names(self) -> list[str]:
        return list(self.reports)

    @property
    def n(self) -> int:
        return int(len(self.table))

    def correct(self, name: str) -> np.ndarray:
        return (self.table[name] == self.table["label"]).to_numpy()

    def wrong_files(self, name: str) -> list[str]:
        return self.table.loc[~self.correct(name), "file"].tolist()

    def wrong_rows(self, name: str, emotion: str | None = None) -> pd.DataFrame:
        """The rows ``name`` got wrong (no face included), of images of ``emotion`` if given."""
        wrong = self.table[~self.correct(name)]
        return wrong if emotion is None else wrong[wrong["label"] == emotion]

    def no_face_files(self, name: str) -> list[str]:
        return self.table.loc[self.table[name].isna(), "file"].tolist()

    @property
    def cannot_predict(self) -> dict[str, list[str]]:
        """Per model, the emotions scored and tested that it never answers (``--classes`` or the
        page chose them): each of their images counts as wrong for it, which a reader must be told."""
        tested = set(self.table["label"])  # --classes may name emotions the images do not hold
        missing = {m: [e for e in self.classes if e in tested and e not in self.model_classes[m]]
                   for m in self.names if m in self.model_classes}
        return {m: emotions for m, emotions in missing.items() if emotions}

    @property
    def unscored_answer_counts(self) -> dict[str, dict[str, int]]:
        """Per model, how many of its answers named an emotion not scored (a seven-emotion model's
        fear among six emotions), per emotion: each counts as wrong, which a reader must be told.
        Models without such answers are absent."""
        out: dict[str, dict[str, int]] = {}
        for name in self.names:
            answers = self.table[name].dropna()
            other = answers[~answers.isin(self.classes)].value_counts()
            if len(other):
                out[name] = {str(e): int(n) for e, n in other.items()}
        return out

    @property
    def tied(self) -> dict[str, int]:
        """Per model, the images whose highest probability two or more of its emotions share
        exactly (an untrained model answers every face alike): the arg-max gives the first of them,
        so one emotion collects those answers and scores well by chance. Models without ties are
        absent."""
        out = {}
        for name, proba in self.probabilities.items():
            p = np.asarray(proba, dtype=float)
            if p.ndim != 2 or not p.size:
                continue
            judged = ~np.isnan(p).any(axis=1)
            top = np.where(judged, np.nan_to_num(p).max(axis=1), np.inf)[:, None]
            n = int(np.count_nonzero(judged & ((np.abs(p - top) <= 1e-9).sum(axis=1) >= 2)))
            if n:
                out[name] = n
        return out

    def tie_notes(self) -> list[str]:
        """``tied`` as lines for the reader, in the current language (English in the CLI)."""
        return [t("notes.tied", model=name, n=f"{n:,}", total=f"{self.n:,}") for name, n in self.tied.items()]

    def never_answers(self) -> dict[str, list[str]]:
        """Per model, the emotions scored that the test images show and it can answer but never
        did (``never_answered``): in its confusion matrix an empty column, said in words."""
        return {name: never for name, r in self.reports.items()
                if (never := never_answered(r, self.model_classes.get(name) or r.labels))}

    def never_notes(self) -> list[str]:
        from ..i18n import emotion_labels

        return [t("notes.never_answers", model=name, emotions=", ".join(emotion_labels(emotions)))
                for name, emotions in self.never_answers().items()]

    def learned_notes(self) -> list[str]:
        """For each AU model fitted on some of the very faces scored: its score there is what it
        learned, not a test (a lab trained on its whole folder, then drew a test set from it)."""
        return ([t("notes.learned_from", model=name, k=f"{k:,}", n=f"{n:,}")
                 for name, (k, n) in self.learned_from.items() if k]
                + [t("notes.from_training_folder", model=name, k=f"{k:,}", n=f"{n:,}", folder=printable(folder))
                   for name, (k, n, folder) in self.from_training_folder.items() if k]
                + self._copies_notes() + self._choosing_notes())

    def _choosing_notes(self) -> list[str]:
        """One note per folder that chose some networks' epochs, naming them: their scores on its
        images are a little optimistic (bundled ones chose on FER2013 val, which Compare draws from)."""
        by_folder: dict[tuple[int, int, str], list[str]] = {}
        for name, (k, n, folder) in self.from_choosing_folder.items():
            if k and name in self.reports:
                by_folder.setdefault((k, n, folder), []).append(name)
        return [t("notes.from_choosing_folder", models=", ".join(names), k=f"{k:,}", n=f"{n:,}",
                  folder=printable(folder)) for (k, n, folder), names in by_folder.items()]

    def without_training_copies(self, name: str) -> tuple[float | None, int]:
        """``name``'s accuracy on the images scored that are not copies of its training images (a
        face not found is wrong, as in its report), and on how many."""
        copies, _folder = self.copies_of_training.get(name, ([], ""))
        rest = ~self.table["file"].isin(copies).to_numpy()
        n = int(rest.sum())
        return (float(self.correct(name)[rest].mean()) if n else None), n

    def _copies_notes(self) -> list[str]:
        """One note per training folder whose copies were scored, naming the networks that learned
        from it with each one's accuracy on all images and on the others."""
        by_folder: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for name, (copies, folder) in self.copies_of_training.items():
            if name in self.reports:
                by_folder.setdefault((folder, tuple(copies)), []).append(name)
        notes = []
        for (folder, copies), names in by_folder.items():
            k = int(self.table["file"].isin(copies).sum())
            rest = self.n - k
            scores = "; ".join(
                f"{name} {share_text(self.reports[name].accuracy)} → "
                + ("–" if (without := self.without_training_copies(name)[0]) is None else share_text(without))
                for name in names)
            notes.append(t("notes.copies_of_training", models=", ".join(names), k=f"{k:,}", n=f"{self.n:,}",
                           folder=printable(folder), rest=f"{rest:,}", scores=scores))
        return notes

    def source_notes(self) -> list[str]:
        """For each AU model that learned from OpenFace's AUs, scored here on this extractor's
        (``au_source_note``), in the current language."""
        return [note for p in self.other_au_source if (note := au_source_note(p, [MEASURED_SOURCE]))]

    def to_dict(self, root: str | Path | None = None) -> dict:
        """The ``compare --json`` output; ``root``: the test set's folder, to which its files are
        given relative, as in the predictions CSV (``--csv``), so the two can be joined."""
        def relative(files: list[str]) -> list[str]:
            return [relative_file(f, root) for f in files]

        return {"n": self.n, "classes": list(self.classes),
                "models": {m: r.to_dict() for m, r in self.reports.items()},
                "mcnemar": [p.to_dict() for p in self.mcnemar],
                # what p_holm is adjusted for: every pair of the models compared (pass --models with the
                # planned ones: with every registered model, another registered later moves the p-values)
                "mcnemar_correction": {"method": "holm", "test": "exact McNemar (two-sided binomial)",
                                       "pairs": len(self.mcnemar)},
                "wrong": {m: relative(self.wrong_files(m)) for m in self.names},
                "no_face": {m: relative(self.no_face_files(m)) for m in self.names},
                "skipped": list(self.unreadable), "skipped_classes": dict(self.skipped),
                "unlabelled": self.unlabelled,
                "several_faces": list(self.several_faces), "failed_models": list(self.failed_models),
                "cannot_predict": self.cannot_predict, "never_answers": self.never_answers(),
                "unscored_answers": self.unscored_answer_counts,
                # the same keys whatever the run found (empty where nothing was), for a workflow's reader
                "tied": dict(self.tied), "crops": bool(self.crops),
                "crop_like_no_face": relative(self.crop_like_no_face),
                "learned_from": {m: k for m, (k, _) in self.learned_from.items() if k},
                "from_training_folder": {m: k for m, (k, _, _) in self.from_training_folder.items() if k},
                # the files scored that are copies of a network's training images, and its accuracy without them
                "copies_of_training": {m: {"files": relative(files), "folder": folder,
                                           "accuracy_without": self.without_training_copies(m)[0],
                                           "n_without": self.without_training_copies(m)[1]}
                                       for m, (files, folder) in self.copies_of_training.items() if m in self.reports},
                "from_choosing_folder": {m: k for m, (k, _, _) in self.from_choosing_folder.items() if k},
                "groups": {**{column: analysis.to_dict() for column, analysis in self.group_analyses().items()},
                           **{column: {"column": column, "error": problem}
                              for column, problem in self.group_problems().items()}}}

    def attach_groups(self, groups: dict[str, dict[Path, str]], cluster_column: str | None = None) -> None:
        """Each row's value of each grouping column (``LabelFile.groups``: by image path);
        ``cluster_column``: the one of them that names who posed each image (not a grouping)."""
        rows = {column: [values.get(self.path_of(f)) for f in self.table["file"]] for column, values in groups.items()}
        self.cluster_column = cluster_column if cluster_column in rows else None
        self.clusters = rows.pop(cluster_column) if self.cluster_column else None
        self.groups = rows

    def group_analyses(self) -> dict:
        """``groups.group_analysis`` per grouping column it can group by; the others are in
        ``group_problems`` (an unreadable image can leave a column one group: the rest is kept)."""
        from .groups import group_analysis

        out = {}
        for column, values in self.groups.items():
            try:
                out[column] = group_analysis(self, values, column, self.clusters, self.cluster_column)
            except FerError:
                continue
        return out

    def group_problems(self) -> dict[str, str]:
        """Per grouping column the images scored cannot be grouped by, why, in a line."""
        from .groups import check_groups

        problems = {}
        for column, values in self.groups.items():
            try:
                check_groups(values, column)
            except FerError as exc:
                problems[column] = str(exc)
        return problems

    @classmethod
    def from_table(cls, table: pd.DataFrame, names: Sequence[str], classes: Sequence[str], **fields) -> "Comparison":
        """Score a predictions table (one column of predicted labels per model, None = no face):
        a report per model and McNemar tests for every pair."""
        probabilities = fields.get("probabilities") or {}
        model_classes = fields.get("model_classes") or {}

        def scores_of(m: str) -> tuple[np.ndarray, np.ndarray] | None:
            """Log loss and Brier score per image, where the model's classes are known."""
            if m not in probabilities or m not in model_classes:
                return None
            index = {c: j for j, c in enumerate(model_classes[m])}
            return scoring_rows(probabilities[m], np.array([index.get(label, -1) for label in table["label"]]))

        reports = {m: evaluation_report(table["label"].tolist(), [None if pd.isna(v) else v for v in table[m]],
                                        classes, model=m, confidence=top_probability(probabilities.get(m)),
                                        scores=scores_of(m))
                   for m in names}
        for r in reports.values():
            r.skipped = dict(fields.get("skipped") or {})
        correct = {m: (table[m] == table["label"]).to_numpy() for m in names}
        pairs = [mcnemar(correct[a], correct[b], a, b) for a, b in combinations(list(names), 2)]
        pairs = [replace(pair, p_holm=p) for pair, p in zip(pairs, holm_adjusted([q.p_value for q in pairs]))]
        return cls(table=table, reports=reports, mcnemar=pairs, classes=tuple(classes), **fields)

    def unscored_answers(self, name: str) -> list[str]:
        """The emotions model ``name`` answers that this comparison does not score (a seven-emotion
        model's fear among six): what its confusion matrix's extra column holds."""
        return [c for c in self.model_classes.get(name, ()) if c not in self.classes]

    def per_emotion_frame(self) -> pd.DataFrame:
        """Long table (model, emotion, accuracy, n) for grouped bar charts and CSV download."""
        rows = [{"model": m, "emotion": e, "accuracy": s.accuracy, "n": s.n}
                for m, r in self.reports.items() for e, s in r.per_class.items()]
        return pd.DataFrame(rows, columns=["model", "emotion", "accuracy", "n"])


def top_probability(proba: np.ndarray | None) -> np.ndarray | None:
    """Each row's highest probability, the confidence its answer is shown with (NaN: no face)."""
    if proba is None:
        return None
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or not p.shape[1]:
        return None
    judged = ~np.isnan(p).any(axis=1)
    return np.where(judged, np.nan_to_num(p).max(axis=1), np.nan)


def _load_all(models: Sequence, loader: Callable) -> tuple[list[Predictor], list[str]]:
    predictors, failed = [], []
    for ref in models:
        if isinstance(ref, Predictor):
            predictors.append(ref)
            continue
        if not isinstance(ref, (str, os.PathLike, ModelEntry)):  # an AUModel from fit_au_model, say
            failed.append(f"{type(ref).__name__}: not a model name, model file or Predictor; wrap a fitted AU "
                          "model as AUPredictor(model, name='my-model')")
            continue
        name = getattr(ref, "name", str(ref))
        try:
            predictors.append(loader(ref))
        except FerError as exc:
            failed.append(_naming(name, one_line(exc)))
        except Exception as exc:
            log.exception("model %s failed to load", name)
            failed.append(f"{name}: could not load ({one_line(exc)})")
    return predictors, failed


def _naming(name: str, message: str) -> str:
    """A model's load failure, starting with the model's name where the message does not name it:
    an ensemble's missing member, a checksum of the file a model loads, or an unknown kind had said
    only the member, the file or the kind, so another model seemed left out, or none."""
    name = printable(str(name))
    return message if message.startswith(f"{name}:") or repr(name) in message else f"{name}: {message}"


def check_model_names(predictors: Sequence[Predictor]) -> None:
    """Refuse models that share a name or take one of the comparison table's own columns (one
    would overwrite the other's answers, or the true labels): said as soon as they are loaded,
    before any image is measured or masked."""
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise FerError(f"models share a name ({', '.join(names)}); give distinct models")
    taken = [n for n in names if n in ("file", "label") or n.endswith((" p(true)", " correct"))]
    if taken:  # the table's own columns: a model of that name would overwrite the true labels
        raise FerError(f"a model is named {taken[0]!r}, which the comparison table uses for its own column; "
                       "register it under another name (or rename its file)")


CHUNK_IMAGES = 4096  # images a comparison decodes and answers at once (``run_comparison``)


def scored_images(predictors: Sequence[Predictor], items: Sequence[LabeledImage], classes: Sequence[str] | None
                  ) -> tuple[tuple[str, ...], list[LabeledImage], dict[str, int], int]:
    """The emotions scored (``classes``, else those every model predicts and the images hold),
    the images of them, how many images of each other emotion are left out, and how many
    images have no label at all (loose files whose names name no emotion)."""
    present = {it.label for it in items if it.label}
    if not present:  # not "no shared emotion": nothing to score any model on
        raise DatasetError("no labelled images: put them in <emotion>/ folders or name them like angry001.jpg")
    # a script's classes are read as --classes is ("Happy" is happy, "hapy" a one-line error)
    classes = classes_given(classes) if classes else shared_classes(
        [p.classes for p in predictors], present)
    if not classes:
        raise DatasetError("the models share no emotion with the test set's labels; pick other models or images")
    chosen = [it for it in items if it.label in set(classes)]
    skipped: dict[str, int] = {}
    for it in items:
        if it.label and it.label not in classes:
            skipped[it.label] = skipped.get(it.label, 0) + 1
    if not chosen:
        raise DatasetError(f"the test set has no images of {', '.join(classes)}")
    return classes, chosen, skipped, sum(1 for it in items if not it.label)


def preparing_label(done: int, total: int, images: int, before: int = 0, overall: int | None = None) -> str:
    """What ``prepare_faces``'s progress counts, in images: it reads every image (``total`` =
    ``images``), then, for AU models, measures each (``total`` = 2 x ``images``). Shown as one
    count of steps, 6,186 for 3,093 images read a user as "of 6,186 images". A part of a larger
    set (``run_comparison``'s chunks) counts on from the ``before`` images of the ``overall``."""
    shown = f"{overall if overall is not None else images:,}"
    if total > images and done > images:
        return t("loading.measuring_faces", done=f"{before + min(done - images, images):,}", total=shown)
    return t("loading.reading_images", done=f"{before + min(done, images):,}", total=shown)


def run_comparison(models: Sequence, items: Sequence[LabeledImage] | str | os.PathLike[str],
                   classes: Sequence[str] | None = None, workers: int = 1, progress: FractionProgress | None = None,
                   loader: Callable | None = None, prepare: Callable | None = None,
                   root: str | Path | None = None, crops: bool = False, use_cache: bool = True) -> Comparison:
    """Every model (Predictors, manifest entries or names) on exactly the same readable images
    (``items``: ``list_images``'s, or the folder itself).

    A model that fails to load or run is reported in ``failed_models`` and left out; the others
    go on. ``progress(fraction, text)`` follows loading, measuring and each model. ``prepare``
    replaces the face pipeline (same arguments as ``prepare_faces``), e.g. with masked faces.
    ``root``: the test set's folder, to which the files left out are named relative. ``crops``:
    the images are face crops whatever their size (``prepare_faces``). ``use_cache``: take the
    measurements and the networks' answers kept from an earlier run (``answers``) and keep new ones;
    a ``prepare`` of one's own (masked faces) keeps no answers.
    """
    from ..pipeline import PreparedFaces, prepare_faces
    from ..predictors.registry import load_predictor

    start = time.perf_counter()
    if isinstance(items, (str, os.PathLike)):  # a script's folder, read as the CLI's --images
        from ..images import list_images

        root = items if root is None else root
        items = list_images(items)
    report = progress or (lambda fraction, text: None)
    report(0.0, t("loading.models"))
    predictors, failed = _load_all(models, loader or load_predictor)
    if not predictors:
        raise FerError("no model could be run: " + "; ".join(failed) if failed else "no models to compare")
    check_model_names(predictors)
    classes, chosen, skipped, unlabelled = scored_images(predictors, items, classes)
    need_aus = any(p.inputs == "aus" for p in predictors)
    need_pixels = any(p.inputs == "pixels" for p in predictors)
    share = 1.0 / (len(predictors) + 1)
    shown = [0.0]  # where the bar stands, for a wait on another run's measuring
    # Images in parts: each part's decoded faces are dropped once every model has answered them,
    # so memory holds one part, not the set (28,709 crops of 224 px held 4.3 GB). A ``prepare``
    # of one's own gives every face at once: one part.
    parts = [chosen] if prepare is not None else [chosen[i:i + CHUNK_IMAGES]
                                                  for i in range(0, len(chosen), CHUNK_IMAGES)]
    order = sorted(range(len(predictors)), key=lambda i: isinstance(predictors[i], EnsemblePredictor))
    items_kept: list[LabeledImage] = []
    found: list[bool] = []
    unreadable: list[str] = []
    several_faces: list[str] = []
    answers: dict[str, list[np.ndarray]] = {}
    from_cache: dict[str, int] = {}
    gave_up: set[str] = set()  # models that failed on a part: left out of every part
    width = 1.0 / len(parts)
    cache = MeasureCache() if use_cache and prepare is None and need_pixels else None

    def answer_part(c: int, prepared: PreparedFaces, faces_before: int) -> None:
        """Every model on one part's faces (their answers added to ``answers``); its closures
        die with it, so the part's decoded faces go when the caller lets them go."""
        keys = face_keys(prepared, crops) if cache is not None else []
        # Ensembles run last and reuse the probabilities of their members compared beside them.
        known: dict[str, tuple[Predictor, np.ndarray]] = {}
        for k, i in enumerate(order):
            p = predictors[i]
            if p.name in gave_up:
                continue

            def step(done: int, total: int, k=k, name=p.name, faces=len(prepared.faces), c=c,
                     faces_before=faces_before) -> None:
                # an ensemble counts each member's answers (members x faces): shown as faces answered
                report(width * (c + share * (1 + k + done / max(total, 1))),
                       t("loading.model_progress", name=name, k=k + 1, n=len(predictors),
                         done=f"{faces_before + done * faces // max(total, 1):,}",
                         total=f"{faces_before + faces:,}" if len(parts) == 1 else f"{len(chosen):,}"))

            # "model 5 of 9": each model takes an equal share of the bar, though a CNN with ten
            # test-time crops takes a minute where an AU model takes a second
            report(width * (c + share * (1 + k)), t("loading.model_running", name=p.name, k=k + 1,
                                                    n=len(predictors)))

            def answer(rows: list[int], progress, p=p, prepared=prepared, known=known) -> np.ndarray:
                return predict_reusing(p, [prepared.faces[i] for i in rows],
                                       {name: (model, proba[rows]) for name, (model, proba) in known.items()},
                                       progress=progress)

            try:
                raw, n = cached_answers(p, prepared.faces, keys, answer, cache, progress=step)
                # a photo without a face: no face for every model
                proba = judged_only(prepared.faces, raw)
                known[p.name] = (p, proba)
                answers.setdefault(p.name, []).append(proba)
                from_cache[p.name] = from_cache.get(p.name, 0) + n
            except FerError as exc:
                failed.append(_naming(p.name, one_line(exc)))
                gave_up.add(p.name)
            except Exception as exc:
                log.exception("model %s failed in the comparison", p.name)
                failed.append(f"{p.name}: could not run ({one_line(exc)})")
                gave_up.add(p.name)

    from ..predictors.au_models import au_fingerprints, fitted_fingerprints

    prints = {p.name: fp for p in predictors if p.inputs == "aus" and (fp := fitted_fingerprints(p)) is not None}
    learned = {name: [0, 0] for name in prints}

    def count_learned(prepared: PreparedFaces) -> None:
        """Per AU model that keeps its training faces' fingerprints, how many faces measured here it
        was fitted on (``learned_from``)."""
        measured = [f.aus for f in prepared.faces
                    if f.found and f.aus is not None and not np.isnan(f.aus).all()] if learned else []
        if not measured:
            return
        mine = au_fingerprints(np.stack(measured))  # once, whatever the number of models
        for name, fitted in prints.items():
            learned[name][0] += int(np.isin(mine, fitted).sum())
            learned[name][1] += len(measured)
    try:  # the answers of each model that finished are kept, also when a click on the page stops the run
        for c, part in enumerate(parts):
            before = sum(len(q) for q in parts[:c])
            faces_before = len(found)

            def preparing(done: int, total: int, c=c, part=part, before=before) -> None:
                shown[0] = width * (c + share * done / max(total, 1))
                report(shown[0], preparing_label(done, total, len(part), before, len(chosen)))

            # The measuring workers are shared by the server's sessions: when another run holds them,
            # say so instead of a bar that stands still without a word.
            with telling_waits(lambda: report(shown[0], t("loading.waiting_for_pool"))):
                prepared = (prepare or prepare_faces)(part, need_aus, need_pixels, workers=workers,
                                                      progress=preparing, root=root,
                                                      **({"crops": True} if crops else {}),
                                                      **({} if use_cache else {"use_cache": False}))
            items_kept += prepared.items
            found += [face.found for face in prepared.faces]
            unreadable += prepared.unreadable
            several_faces += prepared.several_faces
            if not prepared.items:
                continue
            answer_part(c, prepared, faces_before)
            count_learned(prepared)
            del prepared  # this part's decoded faces
    finally:
        if cache is not None:
            cache.close()
    if not items_kept:
        raise DatasetError(f"none of the {len(chosen)} test images could be read")
    files = [printable(str(it.path)) for it in items_kept]
    crop_like_no_face = [] if crops else [f for f, it, face_found in zip(files, items_kept, found)
                                          if not face_found and looks_like_face_crop(it.path)]
    paths = {f: it.path for f, it in zip(files, items_kept)}
    table = pd.DataFrame({"file": files, "label": [it.label for it in items_kept]})
    kinds: dict[str, str] = {}
    probabilities: dict[str, np.ndarray] = {}
    model_classes: dict[str, tuple[str, ...]] = {}
    for p in predictors:  # the columns in the order the models were given
        chunks = answers.get(p.name) or []
        if p.name in gave_up or not chunks:
            continue
        proba = np.concatenate(chunks)
        table[p.name] = predicted_labels(p.classes, proba)
        index = {c: j for j, c in enumerate(p.classes)}
        table[f"{p.name} p(true)"] = [
            float(row[index[lab]]) if lab in index and not np.isnan(row).any() else np.nan
            for row, lab in zip(proba, table["label"])]
        kinds[p.name] = p.kind
        probabilities[p.name] = proba
        model_classes[p.name] = tuple(p.classes)
    if not kinds:
        raise FerError("no model could be run: " + "; ".join(failed))
    report(1.0, t("loading.done"))
    return Comparison.from_table(table, list(kinds), classes, kinds=kinds, unreadable=unreadable,
                                 several_faces=several_faces,
                                 failed_models=failed, skipped=skipped, unlabelled=unlabelled,
                                 probabilities=probabilities,
                                 model_classes=model_classes, seconds=time.perf_counter() - start, paths=paths,
                                 crops=crops, crop_like_no_face=crop_like_no_face,
                                 answers_from_cache={k: v for k, v in from_cache.items() if v and k in kinds},
                                 other_au_source=[p for p in predictors if p.name in kinds
                                                  and au_source_note(p, [MEASURED_SOURCE])],
                                 learned_from={k: (v[0], v[1]) for k, v in learned.items() if k in kinds},
                                 from_training_folder=(in_folder := from_training_folders(
                                     [p for p in predictors if p.name in kinds], items_kept, root)),
                                 from_choosing_folder=from_training_folders(
                                     [p for p in predictors if p.name in kinds and p.name not in in_folder],
                                     items_kept, root, choosing_folders),
                                 copies_of_training=copies_of_training(
                                     [p for p in predictors if p.name in kinds and p.name not in in_folder],
                                     items_kept, files))


def training_folders(predictor: Predictor) -> list[Path]:
    """The folders a network recorded training on (its sidecar's ``train_dir``; an ensemble's
    members'), resolved as the sidecar records them (``cnn.recorded_folder``)."""
    from ..predictors.cnn import recorded_folder

    folders = []
    for p in (predictor, *getattr(predictor, "members", ())):
        metadata = getattr(p, "metadata", None)
        folder = recorded_folder(metadata.get("train_dir")) if isinstance(metadata, dict) else None
        if isinstance(folder, Path) and folder not in folders:
            folders.append(folder)
    return folders


def choosing_folders(predictor: Predictor) -> list[Path]:
    """The folders that chose a network's epoch (its sidecar's ``val_dir`` without a held-out share of
    train, or where the network it started from chose on it: ``cnn.picked_on_split``); an ensemble's
    members'."""
    from ..predictors.cnn import recorded_folder

    folders = []
    for p in (predictor, *getattr(predictor, "members", ())):
        metadata = getattr(p, "metadata", None)
        if not isinstance(metadata, dict) or (metadata.get("holdout") and not metadata.get("init_picked_on_val")):
            continue
        folder = recorded_folder(metadata.get("val_dir"))
        if isinstance(folder, Path) and folder not in folders:
            folders.append(folder)
    return folders


def from_training_folders(predictors: Sequence[Predictor], items: Sequence[LabeledImage],
                          root: str | Path | None,
                          folders_of: Callable[[Predictor], list[Path]] = training_folders
                          ) -> dict[str, tuple[int, int, str]]:
    """``Comparison.from_training_folder``: a set drawn from FER2013 train (its testset.json's
    ``source``), or that folder itself, scored a network trained on it with no word said.
    ``folders_of=choosing_folders``: the same for the folder that chose a network's epoch
    (``Comparison.from_choosing_folder``)."""
    from ..provenance import TEST_SET_RECORD

    folders = {p.name: folders_of(p) for p in predictors}
    if not any(folders.values()):
        return {}
    drawn_from = None
    if root is not None:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            drawn_from = Path(json.loads((Path(root) / TEST_SET_RECORD).read_text())["source"]).resolve()
    parents: dict[Path, Path | None] = {}  # each folder resolved once: 28,709 files took a second
    origins = []
    for it in items:
        if drawn_from is not None:
            origins.append(drawn_from)
            continue
        parent = Path(it.path).parent
        if parent not in parents:
            try:
                parents[parent] = parent.resolve()
            except (OSError, RuntimeError):
                parents[parent] = None
        origins.append(None if parents[parent] is None else parents[parent] / Path(it.path).name)
    out = {}
    for p in predictors:
        for folder in folders[p.name]:
            k = sum(1 for o in origins if o is not None and (o == folder or folder in o.parents))
            if k:
                out[p.name] = (k, len(origins), str(folder))
                break
    return out


def copies_of_training(predictors: Sequence[Predictor], items: Sequence[LabeledImage],
                       files: Sequence[str]) -> dict[str, tuple[list[str], str]]:
    """``Comparison.copies_of_training``: per network whose recorded training folder is on this
    machine, the ``files`` (one per item) that are byte-for-byte copies of files in it. Each folder
    is searched once, however many networks were trained on it."""
    found: dict[Path, list[str]] = {}
    out = {}
    for p in predictors:
        for folder in training_folders(p):
            if folder not in found:
                found[folder] = ([f for f, copy in zip(files, copies_in(folder, [it.path for it in items])) if copy]
                                 if folder.is_dir() else [])
            if found[folder]:
                out[p.name] = (found[folder], str(folder))
                break
    return out


def evaluate_images(predictor: Predictor, items: Sequence[LabeledImage], workers: int = 1,
                    progress: FractionProgress | None = None, root: str | Path | None = None,
                    crops: bool = False, use_cache: bool = True) -> tuple[EvaluationReport, Comparison]:
    """One model on labelled images of its own emotions (others are counted in ``skipped``;
    ``crops`` and ``use_cache``: ``run_comparison``'s)."""
    comparison = run_comparison([predictor], items, classes=predictor.classes, workers=workers, progress=progress,
                                root=root, crops=crops, use_cache=use_cache)
    if comparison.failed_models:
        raise FerError(comparison.failed_models[0])
    return comparison.reports[predictor.name], comparison


SCORE_CHUNK_ROWS = 20_000  # faces predicted at once when scoring an AU table


LEARNED_CHUNK_ROWS = 50_000


def learned_rows_note(predictor: Predictor, table: pd.DataFrame) -> str | None:
    """``Comparison.learned_notes`` for an AU table: how many of its measured faces (first faces,
    as scored) the AU model was fitted on, by their fingerprints; None when none, or when the model
    keeps none (then ``training_table_note`` guesses from the counts)."""
    from .. import au_table
    from ..predictors.au_models import faces_learned_from, fitted_fingerprints

    prints = fitted_fingerprints(predictor)
    if prints is None or not set(au_table.AU_COLUMNS) <= set(table.columns):
        return None
    scored = au_table.labels_of(table).isin(list(predictor.classes)).to_numpy() if "label" in table.columns \
        else np.ones(len(table), dtype=bool)  # the rows it scores: of the emotions it predicts
    rows = np.flatnonzero(au_table.first_face_mask(table) & au_table.measured(table).to_numpy() & scored)
    # a chunk at a time: a million rows' AUs at once (and their rounded copies) passed 800 MB
    k = sum(faces_learned_from(prints, au_table.values(table, rows[i:i + LEARNED_CHUNK_ROWS]))
            for i in range(0, len(rows), LEARNED_CHUNK_ROWS))
    return t("notes.learned_from", model=predictor.name, k=f"{k:,}", n=f"{len(rows):,}") if k else None


def training_table_note(predictor: Predictor, table: pd.DataFrame) -> str | None:
    """A note when ``table`` has exactly the usable faces per emotion that the AU model recorded
    fitting on: most likely its training table, on which the score is what it learned, not a test
    (the model is refitted on every row after its held-out score). None otherwise."""
    from .. import au_table

    info = getattr(getattr(predictor, "model", None), "info", None) or {}
    data = info.get("data") if isinstance(info, dict) else None
    recorded = data.get("class_counts") if isinstance(data, dict) else None
    if not isinstance(recorded, dict) or not recorded:
        return None
    try:
        counts = au_table.training_set(table, predictor.classes, au_columns_used(predictor)).class_counts
    except FerError:
        return None
    if counts != recorded:
        return None
    held = (info.get("metrics") or {}).get("holdout") or {}
    named = f" ({data['description']})" if data.get("description") else ""
    score = (t("notes.training_table_score", accuracy=f"{held['accuracy']:.3f}", n=f"{held['n']:,}")
             if isinstance(held.get("accuracy"), float) and isinstance(held.get("n"), int) else "")
    return t("notes.training_table", table=au_table.table_name(table), model=predictor.name, named=named, score=score)


def au_source(source: object) -> str | None:
    """The family of an AU table's ``source`` (a model's training sources too): "openface",
    "embedded" (this workbench's MediaPipe extractor, photos and videos), or None (a table of
    one's own, a calibrated one: unknown)."""
    from ..measure.calibration import ARROW

    text = str(source)
    if ARROW in text:  # calibrated from one to the other: on neither's own scale
        return None
    return "openface" if text.startswith("openface") else "embedded" if text.startswith("mediapipe") else None


def au_source_note(predictor: Predictor, sources: Iterable[object]) -> str | None:
    """A note when an AU model learned from one source's AUs (OpenFace's, or this extractor's) and
    is given only the other's: their scales differ, so its score or answer there says little of it
    (an OpenFace researcher scored a study model on FER2013's embedded AUs: 0.461, unsaid)."""
    if predictor.inputs != "aus":
        return None
    info = getattr(getattr(predictor, "model", None), "info", None) or {}
    data = info.get("data") if isinstance(info, dict) else None
    recorded = data.get("source") if isinstance(data, dict) else None
    learned = {au_source(s) for s in recorded} - {None} if isinstance(recorded, list) else set()
    given = {au_source(s) for s in sources} - {None}
    if not learned or not given or learned & given or len(learned) > 1 or len(given) > 1:
        return None
    (was,), (now,) = learned, given
    return t("notes.other_au_source", model=predictor.name, learned=t(f"notes.source_{was}"),
             given=t(f"notes.source_{now}"), evidence=t(f"notes.evidence_{was}"))


ZERO_TO_ONE_ROWS = 20  # fewer faces may all read low by chance


def zero_to_one_note(table: pd.DataFrame) -> str | None:
    """A note when every AU value of a table's measured faces is at most 1 (at least
    ``ZERO_TO_ONE_ROWS`` of them): AUs on a 0-1 scale, which the models, on OpenFace's 0-5, read
    as nearly absent (an OpenFace researcher's table divided by 5 scored 0.192 unsaid)."""
    from .. import au_table

    used = np.flatnonzero(au_table.found_first_faces(table))
    present = [c for c in au_table.AU_COLUMNS if c in table.columns]
    if len(used) < ZERO_TO_ONE_ROWS or not present:
        return None
    values = au_table.values(table, used, present)
    finite = values[np.isfinite(values)]
    if not finite.size or finite.max() > 1.0 or finite.max() <= 0:
        return None
    return t("notes.zero_to_one", table=au_table.table_name(table))


def table_sources(table: pd.DataFrame) -> set[str]:
    """The ``source`` of an AU table's measured first faces (empty without the column)."""
    from .. import au_table

    if "source" not in table.columns:
        return set()
    return {str(s) for s in table.loc[au_table.found_first_faces(table), "source"].dropna().unique()}


def video_frames_note(table: pd.DataFrame) -> str | None:
    """A note when the table's labelled pictures are mostly frames of a few videos: frames a tenth
    of a second apart are near copies, so the accuracy's interval, which takes every face for an
    independent one, is narrower than the evidence. None for a table of pictures."""
    from .. import au_table

    if "time_s" not in table.columns:
        return None
    names = au_table.video_names(table)[au_table.first_face_mask(table) & au_table.labels_of(table).notna()
                                        & table["time_s"].notna()].dropna()  # frames (not an unread video's row)
    videos = names.nunique()
    if not videos or len(names) <= videos:
        return None
    return t("notes.video_frames_one" if videos == 1 else "notes.video_frames", n=f"{len(names):,}", videos=f"{videos:,}")


@dataclass
class TableScores:
    """An AU model scored on a labelled AU table, as ``evaluate --au-table`` and the AU model page
    score it: the report (a face per row), each video scored once (None without videos), and the
    notes that qualify them (masked faces, the model's own training table, frames of few videos),
    written in the reader's language when asked for (a page switched to Korean kept the English
    of the click), in English in the JSON as the CLI writes it."""

    report: EvaluationReport
    per_video: EvaluationReport | None
    predictor: Predictor = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    _said: dict[str, tuple[str | None, list[str]]] = field(default_factory=dict, repr=False)

    def _notes(self) -> tuple[str | None, list[str]]:
        from .. import au_table
        from ..i18n import current_language
        from ..pipeline import masked_note, unknown_aus

        lang = current_language()
        if lang not in self._said:
            self._said[lang] = (masked_note(unknown_aus(au_table.first_faces(self.table), self.predictor)),
                                [n for n in (zero_to_one_note(self.table),
                                             au_source_note(self.predictor, table_sources(self.table)),
                                             learned_rows_note(self.predictor, self.table)
                                             or training_table_note(self.predictor, self.table),
                                             video_frames_note(self.table)) if n])
        return self._said[lang]

    @property
    def masked(self) -> str | None:
        """The faces that lacked AUs the model uses (a mask's), or None."""
        return self._notes()[0]

    @property
    def notes(self) -> list[str]:
        """The model's own training table, frames of few videos."""
        return self._notes()[1]

    def to_dict(self) -> dict:
        """``evaluate --au-table --json``'s object: the report, ``per_video`` and ``note`` (English)."""
        from ..i18n import using_language

        with using_language("en"):
            notes = self.notes
        return {**self.report.to_dict(), **({"note": "; ".join(notes)} if notes else {}),
                **({"per_video": self.per_video.to_dict()} if self.per_video is not None else {})}


def score_au_table(predictor: Predictor, table: pd.DataFrame) -> TableScores:
    """``evaluate_au_table`` with each video scored once and the notes a reader needs beside it."""
    return TableScores(evaluate_au_table(predictor, table), evaluate_videos(predictor, table), predictor, table)


def evaluate_au_table(predictor: Predictor, table: pd.DataFrame) -> EvaluationReport:
    """An AU model on a labelled AU table: the first face of each image labelled with one of its
    emotions (``au_table.select``); unmeasured faces count wrong, rows of unreadable files or with
    invalid AU values are left out and counted in ``left_out``, other emotions in ``skipped``. Pixel models cannot be
    scored on AUs and say so. Rows are predicted in chunks and scored as integer codes, so memory
    stays bounded however long the table."""
    from .. import au_table

    if predictor.inputs != "aus":
        raise FerError(f"{predictor.name}: {model_of_kind(predictor.kind)} scores images, not an AU table; "
                       "score it on a folder of labelled images (--images; evaluate_images in Python)")
    classes = list(predictor.classes)
    # The rule on AU values applies to the AUs the model uses (README): a bad value in an AU a subset
    # model ignores does not leave the face out, and a face with none of its AUs known is not
    # measured for it (counted wrong, no face).
    columns = au_columns_used(predictor)
    used = [au_table.AU_COLUMNS.index(c) for c in columns]
    selection = au_table.scoring_selection(table, classes, columns)
    labels = au_table.labels_of(table).to_numpy()
    truth = pd.Categorical(labels[selection.index], categories=classes).codes.astype(np.int64)
    predicted = np.empty(selection.n, dtype=np.int64)
    confidence = np.empty(selection.n, dtype=np.float64)  # as compare keeps it: 0.7 in float32 fell in 0.6-0.7
    nll, brier = np.empty(selection.n, dtype=np.float64), np.empty(selection.n, dtype=np.float64)
    for start, proba in _scored_chunks(predictor, table, selection, used, columns):
        codes = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
        codes[np.isnan(proba).any(axis=1)] = -1  # no face measured: no prediction
        end = start + len(codes)
        predicted[start:end] = codes
        confidence[start:end] = top_probability(proba) if len(proba) else []
        nll[start:end], brier[start:end] = scoring_rows(proba, truth[start:end]) if len(proba) else ([], [])
    report = report_from_codes(truth, predicted, classes, model=predictor.name, confidence=confidence,
                               scores=(nll, brier))
    first = au_table.first_face_mask(table)
    passed = au_table.passed_over(table).to_numpy()  # counted in left_out, not as another emotion's image
    other = pd.Series(labels[first & pd.notna(labels) & ~np.isin(labels, classes) & ~passed], dtype=object)
    report.skipped = {str(k): int(v) for k, v in other.value_counts().items()}
    # every row not scored is counted (a table joined wrongly loses most of its rows here): later
    # faces, rows without a label (a folder the extraction passed over is no image), files the
    # extraction could not read (as evaluate --images leaves them out), bad AU values
    unlabelled = int(np.count_nonzero(first & pd.isna(labels) & ~passed))
    counts = {au_table.NOT_FIRST_FACE: selection.left_out.get(au_table.NOT_FIRST_FACE, 0),
              au_table.PASSED_OVER: selection.left_out.get(au_table.PASSED_OVER, 0),
              au_table.UNLABELLED: unlabelled, au_table.UNREADABLE: selection.left_out.get(au_table.UNREADABLE, 0),
              au_table.AU_INVALID: selection.left_out.get(au_table.AU_INVALID, 0)}
    report.left_out = {reason: n for reason, n in counts.items() if n}
    return report


def _scored_chunks(predictor: Predictor, table: pd.DataFrame, selection, used: list[int], columns: Sequence[str]):
    """(first position, probabilities) of the selection's rows a chunk at a time; NaN rows where
    no face was measured."""
    from .. import au_table
    from ..predictors.base import FaceInput

    proba_from_aus = getattr(predictor, "proba_from_aus", None)
    for start in range(0, selection.n, SCORE_CHUNK_ROWS):
        rows = selection.index[start:start + SCORE_CHUNK_ROWS]
        X = np.full((len(rows), len(au_table.AU_COLUMNS)), np.nan)  # AUs the model does not use stay unknown
        X[:, used] = au_table.values(table, rows, columns)
        X[~selection.measured[start:start + SCORE_CHUNK_ROWS]] = np.nan
        yield start, np.asarray(proba_from_aus(X) if proba_from_aus is not None
                                else predictor.predict_proba([FaceInput(aus=x) for x in X]), dtype=float)


def evaluate_videos(predictor: Predictor, table: pd.DataFrame) -> EvaluationReport | None:
    """Each labelled video of a table of frames scored once, as its frames are no independent
    faces: its answer the emotion of the highest mean probability over its frames with a face (no
    face in any frame: no answer; a video that could not be read is left out, as an unreadable
    image is), its label its frames' commonest. None for a table without videos (``au_table.video_names``). Pictures in the table
    are left to ``evaluate_au_table``."""
    from .. import au_table

    if predictor.inputs != "aus":
        return None
    classes = list(predictor.classes)
    columns = au_columns_used(predictor)
    selection = au_table.scoring_selection(table, classes, columns)
    names = au_table.video_names(table).to_numpy()[selection.index]
    video = pd.notna(names)
    if not video.any():
        return None
    used = [au_table.AU_COLUMNS.index(c) for c in columns]
    proba = np.concatenate([p for _, p in _scored_chunks(predictor, table, selection, used, columns)])
    labels = au_table.labels_of(table).to_numpy()[selection.index]
    truth = pd.Categorical(labels[video], categories=classes).codes
    return per_video_report(names[video], truth, proba[video], classes, model=predictor.name)


@dataclass
class ImageExplanation:
    """One test image as an AU model reads it: its measured AUs (NaN without a face) and the
    model's explanation (None when no face was found, so there is nothing to explain)."""

    aus: dict[str, float]
    explanation: Explanation | None


def explain_image(path: str | Path, label: str | None, predictor: Predictor, crops: bool = False) -> ImageExplanation:
    """Why an explaining (AU) model reads a compared image as it does: the face prepared exactly as
    the comparison prepared it (``prepare_faces``, measurements cached; ``crops``: as a face crop,
    as ``Comparison.crops`` says), then ``predictor.explain``."""
    from ..au_table import AU_COLUMNS
    from ..pipeline import prepare_faces

    if not predictor.explains:
        raise FerError(f"{predictor.name}: {model_of_kind(predictor.kind)} does not explain its predictions")
    prepared = prepare_faces([LabeledImage(Path(path), label)], need_aus=True, crops=crops,
                             need_pixels=predictor.inputs == "pixels")
    if not prepared.faces:
        raise FerError(prepared.unreadable[0] if prepared.unreadable else f"{printable(str(path))}: cannot be read")
    face = prepared.faces[0]
    aus = {c: float(v) for c, v in zip(AU_COLUMNS, face.aus)}
    if np.isnan(face.aus).all() and predictor.inputs == "aus":
        return ImageExplanation(aus, None)
    return ImageExplanation(aus, predictor.explain(face))
