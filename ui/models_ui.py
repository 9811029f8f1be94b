"""Streamlit-side code of the model pages (CNN, Teachable Machine, Compare).

What lives here and why:

* ``CNNTrainingJob``: a CNN training run in a background thread. Streamlit stops a script run at
  its next UI call whenever a widget is clicked, so a training loop inside the script could never
  show a clickable *Stop* button. The job runs ``fer_core.cnn.train_cnn`` in its own thread, kept
  in ``st.session_state``; its progress callback only appends to ``job.history`` (a thread must
  not touch ``st``), and the CNN page polls the job with ``st.fragment(run_every=…)``, redrawing
  the curves into placeholders. *Stop* sets a ``threading.Event`` that ``train_cnn`` reads as
  ``should_stop`` after every batch; the best epoch so far is kept and evaluated. One training
  runs per server at a time (two would halve each other's speed on a small machine).
* Saving: a trained CNN or an imported Teachable Machine export is written into ``models/``
  under a validated name and registered in the manifest, so every page lists it.
* Comparison: the same images through every chosen model, with progress per model.

Nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from fer_core.errors import DatasetError, FerError, ModelFileError
from fer_core.manifest import validate_model_name
from ui.common import load_au_model, load_other_predictor, manifest_entries, models_dir, one_line

log = logging.getLogger("fer_dashboard")

IGNORE = "ignore"  # the mapping choice that drops a Teachable Machine class


# -- CNN training in a background thread --------------------------------------------------------
@dataclass(frozen=True)
class CNNSettings:
    train_dir: str
    val_dir: str | None
    classes: tuple[str, ...]
    preset: str
    epochs: int
    batch_size: int
    limit_per_class: int | None

    def describe(self) -> str:
        limit = f", {self.limit_per_class} images per emotion" if self.limit_per_class else ""
        val = Path(self.val_dir).name if self.val_dir else "10% of train held out"
        return (f"{self.preset} preset, {len(self.classes)} emotions, {self.epochs} epochs, batch {self.batch_size}"
                f"{limit}; train {Path(self.train_dir).name}, validation {val}")


class _Cancelled(Exception):
    """Raised inside image loading when Stop is pressed before the first epoch."""


_slot_lock = threading.Lock()
_active: dict[str, "CNNTrainingJob"] = {}


def active_training() -> "CNNTrainingJob | None":
    """The CNN training running on this server (any session), if any."""
    with _slot_lock:
        job = _active.get("job")
        return job if job is not None and job.running else None


class CNNTrainingJob:
    """One ``train_cnn`` run in a daemon thread; all state the page shows, updated by the thread.

    ``phase``: ``loading`` (reading images), ``training``, ``done`` (result ready, also after
    Stop), ``cancelled`` (stopped before any epoch) or ``failed`` (``error`` says why).
    """

    def __init__(self, settings: CNNSettings, train: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.stop_event = threading.Event()
        self.history: dict[str, list[float]] = {}
        self.loaded = (0, 0)
        self.phase = "loading"
        self.error: str | None = None
        self.result: Any = None
        self.saved_as: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="fer_cnn_")  # removed with the job
        self.out = Path(self._tmp.name) / "cnn.keras"
        self._train = train
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="cnn-training", daemon=True)

    # state read by the page
    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    @property
    def epochs_done(self) -> int:
        return len(self.history.get("loss", []))

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self.history.items()}

    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    # control
    def start(self) -> None:
        with _slot_lock:
            other = _active.get("job")
            if other is not None and other.running:
                raise FerError("another CNN training is running on this server; wait for it to finish "
                               "or stop it on the page that started it")
            _active["job"] = self
            self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    # callbacks (training thread)
    def _on_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        with self._lock:
            for key, value in logs.items():
                if key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                    self.history.setdefault(key, []).append(float(value))
            self.phase = "training"

    def _on_load(self, done: int, total: int) -> None:
        self.loaded = (done, total)
        if self.stop_event.is_set():
            raise _Cancelled()

    def _run(self) -> None:
        s = self.settings
        try:
            if self._train is None:
                from fer_core.cnn import train_cnn
            else:
                train_cnn = self._train
            self.result = train_cnn(
                s.train_dir, s.val_dir, classes=s.classes, preset=s.preset, epochs=s.epochs,
                batch_size=s.batch_size, out=self.out, limit_per_class=s.limit_per_class,
                progress=self._on_epoch, should_stop=self.stop_event.is_set, load_progress=self._on_load,
                command=f"dashboard: CNN page ({s.describe()})")
            self.phase = "done"
        except _Cancelled:
            self.phase = "cancelled"
        except FerError as exc:
            self.error, self.phase = one_line(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - reported on the page, never a traceback
            log.exception("CNN training failed")
            self.error, self.phase = f"training failed ({one_line(exc)}); see the server log", "failed"
        finally:
            self.finished = time.time()


def save_cnn(job: CNNTrainingJob, name: str) -> dict:
    """Copy a finished job's model and sidecar into ``models/<name>.keras`` and register it."""
    from fer_core.cnn import metadata_path
    from fer_core.manifest import register_model, relative_to_repo

    result = job.result
    if result is None:
        raise FerError("there is no trained model to save; train one first")
    name = validate_model_name(name, manifest_entries())
    target = models_dir() / f"{name}.keras"
    meta_target = metadata_path(target)
    if target.exists() or meta_target.exists():
        raise FerError(f"{target.name} already exists in {models_dir()}; choose another name")
    meta = json.loads(Path(result.metadata_path).read_text(encoding="utf8"))
    meta["name"] = name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.path, target)
    meta_target.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf8")
    ev = result.evaluation
    try:
        return register_model({
            "name": name, "kind": "cnn", "path": relative_to_repo(target), "classes": list(job.settings.classes),
            "metrics": {"val_accuracy": ev["accuracy"], "val_macro_f1": ev["macro_f1"]},
            "command": meta.get("command") or "dashboard: CNN page", "origin": "dashboard",
            "description": job.settings.describe(),
        }, models_dir())
    except (OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        meta_target.unlink(missing_ok=True)
        raise FerError(f"could not register {name} in the manifest ({one_line(exc)})") from None


# -- Teachable Machine ---------------------------------------------------------------------------
@dataclass
class TeachableUpload:
    """What the user uploaded, sorted into the export's two files."""
    model_bytes: bytes
    model_name: str
    labels_bytes: bytes | None
    source: str  # the file name(s), for messages and the default model name


def sort_teachable_upload(files: Sequence[tuple[str, bytes]]) -> TeachableUpload:
    """A zip, or ``keras_model.h5`` (+ ``labels.txt``): which is which, by name and content."""
    def kind(name: str) -> str:
        suffix = Path(name).suffix.lower()
        return {".zip": "zip", ".h5": "h5", ".hdf5": "h5", ".txt": "txt"}.get(suffix, "other")

    zips = [(n, d) for n, d in files if kind(n) == "zip"]
    h5s = [(n, d) for n, d in files if kind(n) == "h5"]
    txts = [(n, d) for n, d in files if kind(n) == "txt"]
    others = [n for n, _ in files if kind(n) == "other"]
    if others:
        raise ModelFileError(f"{others[0]}: not part of a Teachable Machine export; upload the zip, or "
                             "keras_model.h5 with labels.txt (Export model -> Tensorflow -> Keras)")
    if len(zips) + len(h5s) > 1:
        raise ModelFileError("upload one model at a time: one zip, or one keras_model.h5 with its labels.txt")
    if len(txts) > 1:
        raise ModelFileError("upload one labels.txt (the one of the same export)")
    if zips:
        name, data = zips[0]
        return TeachableUpload(data, name, txts[0][1] if txts else None, name)
    if h5s:
        name, data = h5s[0]
        return TeachableUpload(data, name, txts[0][1] if txts else None,
                               " + ".join([name] + [t[0] for t in txts]))
    raise ModelFileError("labels.txt alone is not a model; add keras_model.h5 from the same export "
                         "(or upload the export zip)")


@st.cache_resource(show_spinner="Loading the Teachable Machine model (the first one starts TensorFlow: ~15 s)…",
                   max_entries=4)
def load_teachable_upload(key: str, _upload: TeachableUpload):
    """The uploaded export as a ``TeachablePredictor`` with its automatic label mapping, once per
    upload (``key`` is the content digest). Raises the FerError that says what is wrong."""
    from fer_core.teachable import load_teachable

    return load_teachable(_upload.model_bytes, labels=_upload.labels_bytes, name="teachable")


def remap_teachable(base, mapping: dict[str, str | None], name: str):
    """The same loaded Keras model with another label -> emotion mapping (no reload)."""
    from fer_core.teachable import TeachablePredictor

    return TeachablePredictor(base.model, base.labels, mapping, name=name)


def save_teachable(upload: TeachableUpload, predictor, name: str) -> dict:
    """Write ``models/teachable/<name>/keras_model.h5`` + ``labels.txt`` and register the model
    with its mapping (``load_predictor`` passes it back to ``load_teachable``)."""
    from fer_core.manifest import register_model, relative_to_repo
    from fer_core.teachable import LABELS_NAME, MODEL_NAME, read_export

    name = validate_model_name(name, manifest_entries())
    folder = models_dir() / "teachable" / name
    if folder.exists():
        raise FerError(f"{folder} already exists; choose another name")
    files = read_export(upload.model_bytes, upload.labels_bytes)  # the h5 itself, also out of a zip
    folder.mkdir(parents=True)
    try:
        (folder / MODEL_NAME).write_bytes(files.model_bytes)
        (folder / LABELS_NAME).write_text("".join(f"{i} {label}\n" for i, label in enumerate(predictor.labels)),
                                          encoding="utf8")
        return register_model({
            "name": name, "kind": "teachable", "path": relative_to_repo(folder / MODEL_NAME),
            "classes": list(predictor.classes), "mapping": predictor.mapping.as_dict(),
            "metrics": {}, "command": f"dashboard: Teachable Machine page (import of {upload.source})",
            "origin": "imported", "description": f"Teachable Machine export {upload.source}",
        }, models_dir())
    except (OSError, ValueError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise FerError(f"could not save {name} ({one_line(exc)})") from None


# -- comparison --------------------------------------------------------------------------------
class _AUWithProgress:
    """An AU predictor whose folder extraction reports progress (``predictions_table`` calls
    ``predict_items`` without one)."""

    def __init__(self, inner, progress: Callable[[int, int], None]) -> None:
        self.inner, self.progress = inner, progress
        self.name, self.kind, self.classes = inner.name, inner.kind, inner.classes

    def predict_items(self, items):
        return self.inner.predict_items(items, progress=self.progress)

    def predict_proba(self, images):
        return self.inner.predict_proba(images)


def load_compare_predictor(entry: dict):
    """The Predictor of a manifest entry, from the dashboard's caches (AU models without
    starting MediaPipe: they read the images through the cached extractor)."""
    from fer_core.analysis import AUPredictor
    from fer_core.manifest import AU_KINDS

    if entry.get("kind") in AU_KINDS:
        return AUPredictor(load_au_model(entry), None, name=entry["name"])
    return load_other_predictor(entry)


@dataclass
class Comparison:
    table: Any  # pandas DataFrame, one row per image
    report: dict
    names: list[str]
    kinds: dict[str, str]
    root: str
    description: str
    signature: str
    unreadable: list[str] = field(default_factory=list)
    failed_models: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_comparison(entries: Sequence[dict], items: Sequence, classes: Sequence[str], root: str,
                   description: str, signature: str,
                   progress: Callable[[float, str], None] | None = None) -> Comparison:
    """Every model on exactly the same (readable) images; a model that fails to load is reported
    and left out, the others go on."""
    import pandas as pd

    from fer_core.compare import compare_report, load_labeled, predictions_table

    start = time.perf_counter()
    report_progress = progress or (lambda fraction, text: None)
    items = [it for it in items if it.label in set(classes)]
    if not items:
        raise DatasetError(f"the test set has no images of {', '.join(classes)}")
    report_progress(0.0, f"Reading {len(items):,} images…")
    images, kept, unreadable = load_labeled(items)
    if not kept:
        raise DatasetError(f"none of the {len(items)} test images could be read")
    table = None
    names, kinds, failed = [], {}, []
    share = 1.0 / len(entries)
    for i, entry in enumerate(entries):
        name = entry["name"]

        def step(done: int, total: int, i=i, name=name) -> None:
            report_progress(min(1.0, (i + done / max(total, 1)) * share), f"{name}: {done:,} / {total:,}")

        report_progress(i * share, f"{name}: loading…")
        try:
            predictor = load_compare_predictor(entry)
            if hasattr(predictor, "predict_items"):
                predictor = _AUWithProgress(predictor, step)
            part = predictions_table([predictor], kept, images, progress=step)
        except FerError as exc:
            failed.append(one_line(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others
            log.exception("model %s failed in the comparison", name)
            failed.append(f"{name}: could not run ({one_line(exc)})")
            continue
        if table is None:
            table = part[["file", "label"]].copy()
        table[name] = part[name]
        table[f"{name} p(true)"] = part[f"{name} p(true)"]
        names.append(name)
        kinds[name] = entry.get("kind", "")
    if table is None:
        raise FerError("no model could be run: " + "; ".join(failed))
    report = compare_report(table, names, classes)
    report_progress(1.0, "Done")
    return Comparison(table=pd.DataFrame(table), report=report, names=names, kinds=kinds, root=root,
                      description=description, signature=signature, unreadable=unreadable,
                      failed_models=failed, seconds=time.perf_counter() - start)


def evaluate_cnn_on_folder(entry: dict, items: Sequence, progress: Callable[[float, str], None] | None = None) -> dict:
    """A registered CNN scored on labelled images of its own classes (per-emotion accuracy and
    confusion matrix, as ``evaluation_report``)."""
    classes = list(entry.get("classes") or [])
    result = run_comparison([entry], items, classes, "", "", "", progress)
    if result.failed_models:
        raise FerError(result.failed_models[0])
    return result.report["models"][entry["name"]]


def sample_per_class(items: Sequence, per_class: int | None, seed: int = 0) -> list:
    """Up to ``per_class`` items of each label, drawn reproducibly (all when ``per_class`` is falsy)."""
    if not per_class:
        return list(items)
    rng = np.random.default_rng(seed)
    by_label: dict = {}
    for it in items:
        by_label.setdefault(it.label, []).append(it)
    out = []
    for group in by_label.values():
        idx = sorted(rng.choice(len(group), size=min(per_class, len(group)), replace=False))
        out.extend(group[i] for i in idx)
    return out


@dataclass
class DrawnTestSet:
    tmp: tempfile.TemporaryDirectory
    root: Path
    count: int


def _cleanup_drawn(value: DrawnTestSet) -> None:
    value.tmp.cleanup()


@st.cache_resource(show_spinner="Drawing the test set…", max_entries=4, on_release=_cleanup_drawn)
def drawn_test_set(source: str, per_class: int, seed: int, classes: tuple[str, ...]) -> DrawnTestSet:
    """``draw_test_set`` into a temporary folder, once per (source, size, seed)."""
    from fer_core.images import draw_test_set

    tmp = tempfile.TemporaryDirectory(prefix="fer_testset_")
    try:
        chosen = draw_test_set(source, tmp.name, per_class=per_class, classes=classes, seed=seed)
        return DrawnTestSet(tmp, Path(tmp.name), len(chosen))
    except BaseException:
        tmp.cleanup()
        raise
