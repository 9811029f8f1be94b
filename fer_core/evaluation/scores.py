"""Every bundled model scored on the same images: ``models/scores_fer2013_val.json`` (six emotions)
and ``models/scores_fer2013_val_seven.json`` (seven).

The manifest's own figures were measured on different data (a held-out share of the AU table, the
val split that also picked the CNN's best epoch), so they cannot be set side by side. A scores
file holds one comparison (``bench/bundled_scores.py``: ``run_comparison`` on FER2013 val, no
face = wrong) and, per model, the SHA-256 of the file that was scored, so Home can tell a figure
that still belongs to the file on disk from one left behind by a retrained model.

Two test sets, one file each, same format: every model on the six emotions (fear images left out
and counted; a model that also predicts fear is wrong when it says fear there, as in any
comparison), and the models that predict all seven emotions on all seven (fear included).

Kept light (no scikit-learn, TensorFlow or MediaPipe) because Home reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import config, fileio
from ..emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from ..errors import FerError, ModelFileError
from ..safe_files import read_json_file
from .metrics import Calibration, ConfidenceBin

SCORES_FILE = "scores_fer2013_val.json"  # six emotions, every model
SEVEN_SCORES_FILE = "scores_fer2013_val_seven.json"  # seven emotions, the models that predict all seven
MAX_SCORES_BYTES = 2**20  # a few models, a few hundred bytes each
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelScore:
    """One model on the shared images; ``sha256`` is its file's when it was scored."""

    name: str
    kind: str
    sha256: str | None
    accuracy: float
    accuracy_ci95: tuple[float, float]
    macro_f1: float
    recall: dict[str, float | None]  # per emotion (recall = accuracy on that emotion's images)
    n: int
    no_face: int
    sidecar_sha256: str | None = None  # a network's sidecar when it was scored (its test-time views)
    # how sure it said it was against how often it was right there: what its "98 %" has meant
    calibration: Calibration | None = None

    @classmethod
    def from_report(cls, report, kind: str, sha256: str | None, sidecar_sha256: str | None = None) -> "ModelScore":
        """From an ``EvaluationReport`` of the comparison (its CI is the comparison's Wilson interval)."""
        return cls(name=report.model, kind=kind, sha256=sha256, accuracy=report.accuracy,
                   accuracy_ci95=(float(report.accuracy_ci95[0]), float(report.accuracy_ci95[1])),
                   macro_f1=report.macro_f1, recall={e: s.accuracy for e, s in report.per_class.items()},
                   n=report.n, no_face=report.no_face, sidecar_sha256=sidecar_sha256, calibration=report.calibration)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelScore":
        ci = d["accuracy_ci95"]
        return cls(name=str(d["name"]), kind=str(d.get("kind", "")), sha256=d.get("sha256"),
                   accuracy=float(d["accuracy"]), accuracy_ci95=(float(ci[0]), float(ci[1])),
                   macro_f1=float(d["macro_f1"]),
                   recall={str(k): (None if v is None else float(v)) for k, v in (d.get("recall") or {}).items()},
                   n=int(d["n"]), no_face=int(d.get("no_face", 0)), sidecar_sha256=d.get("sidecar_sha256"),
                   calibration=Calibration.from_dict(d["calibration"]) if d.get("calibration") else None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy_ci95"] = list(self.accuracy_ci95)
        out["calibration"] = None if self.calibration is None else self.calibration.to_dict()
        return out


@dataclass(frozen=True)
class TestSet:
    """What the scores were measured on, in words and counts."""

    name: str  # "FER2013 val"
    root: str  # the folder, as given to the bench (relative to FER_DATA_DIR)
    classes: tuple[str, ...]
    per_emotion: dict[str, int]  # images scored per emotion
    left_out: dict[str, int] = field(default_factory=dict)  # images of emotions not scored (fear)
    unreadable: int = 0
    no_face_rule: str = "a face not found counts as wrong"

    @property
    def n(self) -> int:
        return int(sum(self.per_emotion.values()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["classes"] = list(self.classes)
        out["n"] = self.n
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TestSet":
        return cls(name=str(d["name"]), root=str(d.get("root", "")), classes=tuple(d["classes"]),
                   per_emotion={str(k): int(v) for k, v in d["per_emotion"].items()},
                   left_out={str(k): int(v) for k, v in (d.get("left_out") or {}).items()},
                   unreadable=int(d.get("unreadable", 0)),
                   no_face_rule=str(d.get("no_face_rule", "a face not found counts as wrong")))


@dataclass(frozen=True)
class BundledScores:
    """The scores file: the test set, when and how it was made, one score per model that ran and
    one line per model that could not."""

    test_set: TestSet
    date: str
    command: str
    models: tuple[ModelScore, ...]
    failed: dict[str, str] = field(default_factory=dict)  # model name -> why it could not be scored
    seconds: float = 0.0

    def score(self, name: str) -> ModelScore | None:
        return next((m for m in self.models if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "test_set": self.test_set.to_dict(), "date": self.date,
                "command": self.command, "seconds": round(self.seconds, 1),
                "models": [m.to_dict() for m in self.models], "failed": dict(self.failed)}

    @classmethod
    def from_dict(cls, d: dict) -> "BundledScores":
        return cls(test_set=TestSet.from_dict(d["test_set"]), date=str(d["date"]), command=str(d["command"]),
                   models=tuple(ModelScore.from_dict(m) for m in d["models"]),
                   failed={str(k): str(v) for k, v in (d.get("failed") or {}).items()},
                   seconds=float(d.get("seconds", 0.0)))


def scores_file(classes: Sequence[str] = SIX_EMOTIONS) -> str:
    """The file name of a test set's scores: six emotions or seven."""
    if tuple(classes) == SIX_EMOTIONS:
        return SCORES_FILE
    if tuple(classes) == SEVEN_EMOTIONS:
        return SEVEN_SCORES_FILE
    raise ValueError(f"no scores file for the classes {', '.join(classes)}: six or seven emotions")


def scores_path(models_dir: Path | None = None, classes: Sequence[str] = SIX_EMOTIONS) -> Path:
    return Path(models_dir or config.models_dir()) / scores_file(classes)


def predicts_all_seven(entry) -> bool:
    """Whether a manifest entry's model predicts every one of the seven emotions (so it is scored on
    the seven-emotion test set too)."""
    return set(SEVEN_EMOTIONS) <= set(getattr(entry, "classes", None) or ())


def read_scores(models_dir: Path | None = None, classes: Sequence[str] = SIX_EMOTIONS) -> BundledScores | None:
    """A test set's scores file (six emotions by default), None when there is none, or one
    ModelFileError line when it is damaged or holds another test set's classes."""
    path = scores_path(models_dir, classes)
    if not path.exists():
        return None
    data = read_json_file(path, MAX_SCORES_BYTES, "run python bench/bundled_scores.py", what="scores file")
    try:
        scores = BundledScores.from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # a list where a mapping belongs
        raise ModelFileError(f"{path}: not a scores file ({type(exc).__name__}: {exc}); "
                             "run python bench/bundled_scores.py") from None
    if scores.test_set.classes != tuple(classes):
        raise ModelFileError(f"{path}: scored on {', '.join(scores.test_set.classes)}, expected "
                             f"{', '.join(classes)}; run python bench/bundled_scores.py")
    return scores


def write_scores(scores: BundledScores, models_dir: Path | None = None) -> Path:
    """Whole or not at all (``fileio``), to the file of its test set's classes."""
    path = scores_path(models_dir, scores.test_set.classes)
    fileio.atomic_write_text(path, json.dumps(scores.to_dict(), indent=2) + "\n")
    return path


@dataclass(frozen=True)
class ScoreStatus:
    """What Home can say about one manifest entry: its shared-image score, or why there is none."""

    score: ModelScore | None
    state: str  # "ok", "stale" (file changed since it was scored), "missing" (never scored), "failed"
    reason: str = ""


_UNCHECKED = object()  # status_of without a sidecar's checksum: not compared


def status_of(entry, scores: BundledScores | None, file_sha256: str | None,
              sidecar_sha256: str | object | None = _UNCHECKED) -> ScoreStatus:
    """Match a manifest entry to its score. ``file_sha256`` is the model file's checksum now (the
    manifest's recorded one is enough: a file that no longer matches it cannot be loaded anyway);
    ``sidecar_sha256`` its sidecar's now, where the score recorded one (its test-time views, edited,
    change the answers while the file stays the same)."""
    if scores is None:
        return ScoreStatus(None, "missing")
    if entry.name in scores.failed:
        return ScoreStatus(None, "failed", scores.failed[entry.name])
    score = scores.score(entry.name)
    if score is None:
        return ScoreStatus(None, "missing")
    if not file_sha256 or score.sha256 != file_sha256:
        return ScoreStatus(None, "stale")
    if score.sidecar_sha256 and sidecar_sha256 is not _UNCHECKED and sidecar_sha256 != score.sidecar_sha256:
        return ScoreStatus(None, "stale")
    return ScoreStatus(score, "ok")


def statuses(entries: Sequence, scores: BundledScores | None) -> dict[str, ScoreStatus]:
    """``status_of`` for every manifest entry, by name, against the checksum the manifest records;
    an ensemble whose member has changed since it was made is "stale" too (its file has not)."""
    from ..manifest import read_manifest
    from ..predictors.ensemble import KIND as ENSEMBLE_KIND
    from ..predictors.ensemble import member_entries, members_changed
    from ..provenance import sidecar_sha256

    out = {e.name: status_of(e, scores, e.sha256, sidecar_sha256(e.file)) for e in entries}

    def sidecar_changed(member) -> bool:  # a member's test-time views edited change the ensemble's answers
        score = scores.score(member.name) if scores is not None else None
        return bool(score and score.sidecar_sha256 and sidecar_sha256(member.file) != score.sidecar_sha256)

    ensembles = [e for e in entries if e.kind == ENSEMBLE_KIND and out[e.name].state == "ok"]
    if ensembles:
        manifest = read_manifest()  # the members may be outside ``entries`` (the seven-emotion table's)
        for e in ensembles:
            if members_changed(e, manifest) or any(map(sidecar_changed, member_entries(e, manifest))):
                out[e.name] = ScoreStatus(None, "stale")
    return out


def scores_table(entries: Sequence, scores: BundledScores | None, state: dict[str, ScoreStatus]):
    """The models table Home shows and offers as CSV: per manifest entry its state (``statuses``),
    its figures on the shared images (blank where it has none) with the recall of each emotion, and
    apart from them the figure recorded when it was made, on what, and whether val chose it. English
    column names and numbers a program reads; Home words and formats them for people."""
    import pandas as pd

    classes = scores.test_set.classes if scores else ()
    rows = []
    for e in entries:
        s = state[e.name].score
        row = {"model": e.name, "kind": e.kind, "state": state[e.name].state,
               "accuracy": s.accuracy if s else None,
               "ci95_low": s.accuracy_ci95[0] if s else None, "ci95_high": s.accuracy_ci95[1] if s else None,
               "macro_f1": s.macro_f1 if s else None, "n": s.n if s else None, "no_face": s.no_face if s else None,
               "mean_confidence": s.calibration.mean_confidence if s and s.calibration else None,
               "calibration_error": s.calibration.ece if s and s.calibration else None}
        row.update({f"recall_{c}": (s.recall.get(c) if s else None) for c in classes})
        recorded_ci = e.metrics.accuracy_ci95 or (None, None)  # the interval Home shows beside it
        row.update({"val_chose_it": val_role(e.metrics.evaluated_on), "recorded_accuracy": e.metrics.accuracy,
                    "recorded_ci95_low": recorded_ci[0], "recorded_ci95_high": recorded_ci[1],
                    "recorded_on": e.metrics.evaluated_on})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["model", "kind", "state", "accuracy", "ci95_low", "ci95_high", "macro_f1",
                                        "n", "no_face", "mean_confidence", "calibration_error",
                                        *(f"recall_{c}" for c in classes), "val_chose_it",
                                        "recorded_accuracy", "recorded_ci95_low", "recorded_ci95_high", "recorded_on"])
    # counts stay whole numbers where a model has none (a blank): not 3093.0
    frame[["n", "no_face"]] = frame[["n", "no_face"]].astype("Int64")
    return frame


TRACK_RECORD_MIN_FACES = 30  # fewer answers that sure on the shared images: too few to say how often right


@dataclass(frozen=True)
class TrackRecord:
    """How often a bundled model was right on the shared images when it was about as sure as it is
    now: what its "98 %" has meant, where a percentage alone reads as a chance."""

    model: str
    test_set: str  # "FER2013 val"
    bin: ConfidenceBin
    classes: tuple[str, ...] = ()  # the emotions of the shared images it was scored on


def track_record(name: str, confidence: float, models_dir: Path | None = None) -> TrackRecord | None:
    """The bin of ``confidence`` in model ``name``'s calibration on the shared images (all seven
    emotions for a model that predicts them, else six), where that score still belongs to its file
    (``statuses``) and the bin holds ``TRACK_RECORD_MIN_FACES`` answers or more; else None (a model
    of your own, one retrained since, a damaged scores file)."""
    from ..manifest import read_manifest

    try:
        entry = next((e for e in read_manifest(models_dir) if e.name == name), None)
        if entry is None:
            return None
        scores = None
        if predicts_all_seven(entry):
            scores = read_scores(models_dir, SEVEN_EMOTIONS)
        if scores is None or scores.score(name) is None:
            scores = read_scores(models_dir, SIX_EMOTIONS)
        score = statuses([entry], scores)[name].score if scores is not None else None
    except (FerError, OSError):  # Home says what is wrong with the files; here there is just no record
        return None
    if score is None or score.calibration is None:
        return None
    inside = [b for b in score.calibration.bins
              if b.low <= confidence < b.high or (confidence >= b.high == 1.0)]
    if not inside or inside[0].n < TRACK_RECORD_MIN_FACES:
        return None
    return TrackRecord(model=name, test_set=scores.test_set.name, bin=inside[0], classes=scores.test_set.classes)


def own_record(name: str, models_dir: Path | None = None):
    """A registered model's own record where it has no track record on the shared images (a lab's
    network trained on its photos): its manifest entry, whose ``metrics`` say how it scored and on
    what, and whose ``classes`` the emotions it can answer at all; None when it is not registered or
    is scored on the shared images (a bundled model whose answer falls in a sparse bin has a record
    there, just not one for this percentage)."""
    from ..manifest import read_manifest

    try:
        entry = next((e for e in read_manifest(models_dir) if e.name == name), None)
        scored = any((scores := read_scores(models_dir, classes)) is not None and scores.score(name) is not None
                     for classes in (SIX_EMOTIONS, SEVEN_EMOTIONS))
    except (FerError, OSError):
        return None
    return None if scored else entry


def val_role(evaluated_on: str) -> str:
    """Whether FER2013 val also chose the model, read from the manifest's ``evaluated_on`` words:
    "yes" (val picked it, e.g. its best epoch: its figure on val is optimistic), "trunk" (only the
    network it was built on was picked on val), "no" (val played no part, or the figure is not on
    val), "" (the manifest does not say)."""
    text = (evaluated_on or "").lower()
    if not text:
        return ""
    # Whole words: "crops chosen on its held-out tenth of train" is not val choosing.
    own_choice = re.search(r"\bchosen on [^;,)]*\bval\b", text) is not None  # its test-time views, say
    chose = own_choice or re.search(r"\b(picked|selected|chose|early stopping)\b", text) is not None
    if not re.search(r"\bval\b", text) or not chose:
        return "no"
    # a network built on a trunk val picked, whose own views val chose too, was chosen on val itself
    return "trunk" if "trunk" in text and not own_choice else "yes"


def accuracy_text(accuracy: float, ci95: tuple[float, float] | None) -> str:
    """``70.3 % (68.6–71.8)``: the accuracy and its 95 % interval, in percent, rounded as the command
    line and the report round them (``share_text``; Home read 63.0 % where they read 63.1 %)."""
    from .metrics import share_text

    out = f"{share_text(accuracy, 1, points=True)} %"
    return out if ci95 is None else f"{out} ({share_text(ci95[0], 1, points=True)}–{share_text(ci95[1], 1, points=True)})"
