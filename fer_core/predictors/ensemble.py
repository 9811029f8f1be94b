"""Ensembles: the mean probability of several registered pixel models, as one model.

FER2013's best results average two or three networks; networks that err differently (the CNN,
the AU-bottleneck network, a seven-emotion CNN read on six emotions) gain a point or two together.
An ensemble is a small JSON file naming its members in the manifest and the emotions it
predicts; each member's probabilities are restricted to those emotions and renormalised, then
averaged with equal weights (no weight is fitted, so nothing is tuned on the data it is scored on).
Members must take face images (CNN, AU bottleneck, Teachable Machine); an ensemble does not
explain its predictions - its members that explain still do, each on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..emotions import SEVEN_EMOTIONS, normalize_emotion
from ..errors import FerError, ModelFileError
from ..safe_files import json_format_claims, read_json_file
from .base import Predictor, Progress, model_of_kind

KIND = "ensemble"
FORMAT = "fer_core.ensemble/1"
MAX_ENSEMBLE_BYTES = 64 * 2**10
MAX_MEMBERS = 8
HINT = "make it with: python -m fer_core ensemble --models A,B --name NAME"


@dataclass(frozen=True)
class EnsembleSpec:
    """What an ensemble file holds: member model names (manifest) and the emotions it predicts."""

    members: tuple[str, ...]
    classes: tuple[str, ...]
    # Each member's model-file SHA-256 when the ensemble was made: its scores hold for those files only.
    member_sha256: tuple[str | None, ...] = ()

    def to_dict(self) -> dict:
        return {"format": FORMAT, "kind": KIND, "members": list(self.members), "classes": list(self.classes),
                "member_sha256": list(self.member_sha256)}

    def save(self, path: Path) -> Path:
        """Written whole or not at all: it may replace the ensemble the manifest lists."""
        from .. import fileio

        path.parent.mkdir(parents=True, exist_ok=True)
        return fileio.atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> "EnsembleSpec":
        d = read_json_file(path, MAX_ENSEMBLE_BYTES, HINT, what="ensemble file")
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not an ensemble file (format {FORMAT}); {HINT}")
        members, classes = d.get("members"), d.get("classes")
        if (not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS
                or not all(isinstance(m, str) and m for m in members) or len(set(members)) != len(members)):
            raise ModelFileError(f"{path}: 'members' must list 2 to {MAX_MEMBERS} different model names; {HINT}")
        if (not isinstance(classes, list) or len(classes) < 2
                or any(not isinstance(c, str) or normalize_emotion(c) != c for c in classes)
                or len(set(classes)) != len(classes)):
            raise ModelFileError(f"{path}: 'classes' must list at least two emotions from "
                                 f"{', '.join(SEVEN_EMOTIONS)}; {HINT}")
        sums = d.get("member_sha256", [])
        if not isinstance(sums, list) or (sums and len(sums) != len(members)) or not all(
                s is None or isinstance(s, str) for s in sums):
            raise ModelFileError(f"{path}: 'member_sha256' must give one checksum per member; {HINT}")
        return cls(tuple(members), tuple(classes), tuple(sums))


def shared_classes(members: Sequence[Predictor], classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The emotions an ensemble of ``members`` predicts: ``classes`` (each member must predict all
    of them), else those every member predicts, in the usual order."""
    common = [e for e in SEVEN_EMOTIONS if all(e in m.classes for m in members)]
    if classes is None:
        if len(common) < 2:
            raise FerError("these models share fewer than two emotions: "
                           + "; ".join(f"{m.name}: {', '.join(m.classes)}" for m in members))
        return tuple(common)
    missing = {m.name: [c for c in classes if c not in m.classes] for m in members}
    missing = {name: cs for name, cs in missing.items() if cs}
    if missing:
        raise FerError("every member must predict every emotion of the ensemble: "
                       + "; ".join(f"{name} lacks {', '.join(cs)}" for name, cs in missing.items()))
    return tuple(classes)


class EnsemblePredictor(Predictor):
    """Face crops in; the mean of the members' (restricted, renormalised) probabilities out."""

    kind = KIND
    inputs = "pixels"

    def __init__(self, members: Sequence[Predictor], classes: Sequence[str] | None = None,
                 name: str = "ensemble") -> None:
        if len(members) < 2:
            raise FerError("an ensemble needs at least two models")
        for member in members:
            if member.inputs != "pixels":
                raise FerError(f"{member.name}: {model_of_kind(member.kind)} reads AU tables; an ensemble averages models "
                               "that take face images (CNN, AU bottleneck, Teachable Machine)")
        self.members = tuple(members)
        self.classes = shared_classes(self.members, classes)
        self.name = name

    def predict_proba(self, faces, progress: Progress | None = None,
                      known: Mapping[str, tuple[Predictor, np.ndarray]] | None = None) -> np.ndarray:
        """``known``: (model, its probabilities) that models already gave for these same faces, by
        name (a comparison's other columns); a member whose name, kind and emotions match one is not
        run again, so comparing an ensemble beside its members costs no second pass of each."""
        faces = list(faces)
        total = len(faces) * len(self.members)
        mean = np.zeros((len(faces), len(self.classes)))
        for k, member in enumerate(self.members):
            step = (lambda done, _n, k=k: progress(k * len(faces) + done, total)) if progress else None
            proba = _known_proba(member, len(faces), known or {})
            if proba is None:
                proba = np.asarray(member.predict_proba(faces, step), dtype=float)
            elif step:
                step(len(faces), len(faces))
            part = proba[:, [member.classes.index(c) for c in self.classes]]
            # A member sure of an emotion the ensemble leaves out (fear) says nothing about the
            # others: an even row, not 0 / 0, so its NaN does not wipe out the other members.
            shared = part.sum(axis=1, keepdims=True)
            mean += np.divide(part, shared, out=np.full_like(part, 1.0 / part.shape[1]), where=shared > 0)
        return mean / len(self.members)


def predict_reusing(predictor: Predictor, faces, known: Mapping[str, tuple[Predictor, np.ndarray]],
                    progress: Progress | None = None) -> np.ndarray:
    """``predictor``'s probabilities for ``faces``; an ensemble takes those of its members from
    ``known`` (what other models already said about these faces) instead of running them again.
    Run ensembles after the other models, so their members are known."""
    if isinstance(predictor, EnsemblePredictor):
        return predictor.predict_proba(faces, progress=progress, known=known)
    return np.asarray(predictor.predict_proba(faces, progress=progress), dtype=float)


def _known_proba(member: Predictor, n: int, known: Mapping[str, tuple[Predictor, np.ndarray]]) -> np.ndarray | None:
    """The probabilities ``known`` holds for a model that is ``member`` (same name, kind and
    emotions, one row per face), else None."""
    model, proba = known.get(member.name, (None, None))
    if (model is None or model.kind != member.kind or tuple(model.classes) != tuple(member.classes)
            or np.shape(proba) != (n, len(member.classes)) or _other_file(model, member)):
        return None
    return np.asarray(proba, dtype=float)


def _other_file(model: Predictor, member: Predictor) -> bool:
    """Whether two models of one name were loaded from different files (an ensemble of another
    models folder beside this folder's model of that name)."""
    paths = [getattr(m, "path", None) for m in (model, member)]
    return None not in paths and Path(paths[0]).resolve() != Path(paths[1]).resolve()


# ----------------------------------------------------------------------------- registry

def members_folder(path: str | Path) -> Path | None:
    """The models folder whose manifest names an ensemble's members: the one the ensemble file is
    in (a copied or second models folder brings its own), else the default (None)."""
    folder = Path(path).parent
    return folder if (folder / "manifest.json").is_file() else None


def _load(path: Path, entry) -> EnsemblePredictor:
    from .registry import find_entry, load_predictor

    spec = EnsembleSpec.read(Path(path))
    members = []
    for k, member in enumerate(spec.members):
        entry_k = find_entry(member, members_folder(path))
        if entry_k.kind == KIND:
            raise ModelFileError(f"{path}: member {member!r} is itself an ensemble; list its models instead")
        made_with = spec.member_sha256[k] if spec.member_sha256 else None
        if made_with and entry_k.sha256 and made_with != entry_k.sha256:
            raise ModelFileError(f"{entry.name}: its member {member} has been retrained or replaced since the ensemble "
                                 f"was made, so its scores no longer hold; make it again ({HINT.split(': ', 1)[1]})")
        members.append(load_predictor(entry_k))
    return EnsemblePredictor(members, spec.classes, name=entry.name)


def member_entries(entry, entries: Sequence) -> list:
    """The manifest entries (of ``entries``) of ensemble ``entry``'s members; none where its file
    cannot be read (loading says why)."""
    try:
        spec = EnsembleSpec.read(Path(entry.file))
    except (FerError, OSError):
        return []
    by_name = {e.name: e for e in entries}
    return [by_name[name] for name in spec.members if name in by_name]


def members_changed(entry, entries: Sequence) -> bool:
    """Whether a member of ensemble ``entry`` has been retrained or replaced since the ensemble
    was made (its recorded SHA-256 differs from the one ``entries``, the manifest, gives now): its
    scores no longer hold, and loading it is refused. False when the file cannot be read (loading
    says why) or recorded no checksums."""
    try:
        spec = EnsembleSpec.read(Path(entry.file))
    except (FerError, OSError):
        return False
    now = {e.name: e.sha256 for e in entries}
    return any(made and now.get(name) and made != now[name]
               for name, made in zip(spec.members, spec.member_sha256 or ()))


def _save(spec: EnsembleSpec, path: Path) -> list[Path]:
    if Path(path).suffix.lower() != ".json":
        raise FerError(f"{path}: an ensemble file must end with .json")
    return [spec.save(Path(path))]


_claims = json_format_claims(FORMAT, MAX_ENSEMBLE_BYTES)


def members_need_tensorflow(entry) -> bool:
    """Loading an ensemble starts TensorFlow when loading any of its members does."""
    from .registry import find_entry, needs_tensorflow

    try:
        return any(needs_tensorflow(find_entry(m, members_folder(entry.file)))
                   for m in EnsembleSpec.read(entry.file).members)
    except (OSError, FerError):
        return True


def _kinds():
    from .registry import ModelKind

    return (ModelKind(KIND, "the mean probability of several pixel models (equal weights)", "pixels", False,
                      _load, _save, "{name}.ensemble.json", _claims, None, members_need_tensorflow),)
