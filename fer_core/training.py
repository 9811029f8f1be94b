"""Training that outlives one call: a CNN training run in a background thread, with progress,
Stop and the result, for any caller (the dashboard's CNN page polls it).

Why a thread: a page script is stopped at its next UI call whenever a widget is clicked, so a
training loop inside it could never show a clickable Stop button. The job runs ``train_cnn`` in its
own thread; its callbacks only append to ``history`` (a thread must not touch the UI), and Stop
sets an event that ``train_cnn`` reads after every batch; the best epoch so far is kept. One
training runs per process at a time (two would halve each other's speed on a small machine).
"""

from __future__ import annotations

import logging
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FerError, StoppedBeforeAnEpoch, one_line
from .predictors.recipe import Recipe

log = logging.getLogger("fer_core")


@dataclass(frozen=True)
class CNNSettings:
    train_dir: str
    val_dir: str | None
    classes: tuple[str, ...]
    preset: str
    epochs: int
    batch_size: int
    limit_per_class: int | None
    recipe: Recipe = field(default_factory=Recipe)
    # a registered CNN (its manifest name) whose trunk and shared emotions' head start the network:
    # a small set of one's own photos is fine-tuned from the bundled CNN at FINE_TUNE_RATE
    init: str | None = None
    class_weighting: bool = False  # rare emotions weigh as much as common ones

    @property
    def learning_rate(self) -> float:
        return FINE_TUNE_RATE if self.init else 1e-3

    def describe(self) -> str:
        """For records (the manifest's command and description): always English."""
        from .i18n import using_language

        with using_language("en"):
            return self.summary()

    def train_command(self, out: str = "MODEL.keras") -> str:
        """The ``train-cnn`` command that trains this way (the record's re-runnable form: the page
        calls the same ``train_cnn`` with the same defaults)."""
        import shlex

        r = self.recipe
        parts = ["python -m fer_core train-cnn --data", shlex.quote(self.train_dir)]
        if self.val_dir:
            parts += ["--val", shlex.quote(self.val_dir)]
        parts += ["--out", shlex.quote(out), "--preset", self.preset, "--epochs", str(self.epochs), "--batch-size",
                  str(self.batch_size), "--classes", ",".join(self.classes)]
        if self.limit_per_class:
            parts += ["--limit-per-class", str(self.limit_per_class)]
        if self.init:
            parts += ["--init", shlex.quote(self.init), "--learning-rate", f"{self.learning_rate:g}"]
        if self.class_weighting:
            parts += ["--class-weighting"]
        parts += ["--schedule", r.schedule]
        for option, value in (("--warmup-epochs", r.warmup_epochs), ("--label-smoothing", r.label_smoothing),
                              ("--ema", r.ema), ("--mixup", r.mixup), ("--cutmix", r.cutmix), ("--erasing", r.erasing)):
            if value:
                parts += [option, f"{value:g}"]
        return " ".join(parts)

    def record(self, out: str = "MODEL.keras") -> str:
        """What the model's record says made it: the page, and the command that trains the same way."""
        return f"dashboard: CNN page; the same training: {self.train_command(out)}"

    def summary(self) -> str:
        """The settings for people, in the dashboard's language."""
        from .i18n import t

        limit = t("cnn.settings_limit", n=self.limit_per_class) if self.limit_per_class else ""
        val = (t("cnn.settings_val_folder", folder=Path(self.val_dir).name) if self.val_dir
               else t("cnn.settings_held_out"))
        recipe = "" if self.recipe.is_default else t("cnn.settings_recipe", recipe=self.recipe.describe())
        start = t("cnn.settings_init", model=self.init) if self.init else ""
        weighting = t("cnn.settings_weighting") if self.class_weighting else ""
        return t("cnn.settings_summary", preset=self.preset, k=len(self.classes), epochs=self.epochs,
                 batch=self.batch_size, limit=limit, train=Path(self.train_dir).name, val=val) + start + weighting + recipe


FINE_TUNE_RATE = 3e-4  # Adam's starting rate when a trained CNN starts the network (train-cnn --init's advice)


def starting_networks(preset: str) -> list[str]:
    """The registered CNNs of ``preset`` that can start a network (``CNNSettings.init``): the
    bundled one first, so a small set of one's own photos is fine-tuned rather than learnt anew."""
    from .manifest import read_manifest
    from .predictors.cnn import read_cnn_metadata

    names = []
    for entry in read_manifest():
        if entry.kind != "cnn":
            continue
        try:
            meta = read_cnn_metadata(entry.file) or {}
        except (OSError, ValueError, FerError):
            continue
        if meta.get("preset") == preset:
            names.append(entry.name)
    return names


class _Cancelled(Exception):
    """Raised inside image loading when Stop is pressed before the first epoch."""


_slot_lock = threading.Lock()
_active: dict[str, "CNNTrainingJob"] = {}


def last_training() -> "CNNTrainingJob | None":
    """The CNN training this server ran last (running or finished), whichever session started it."""
    with _slot_lock:
        return _active.get("job")


def active_training() -> "CNNTrainingJob | None":
    """The CNN training running on this server (any session), if any."""
    job = last_training()
    return job if job is not None and job.running else None


class CNNTrainingJob:
    """One ``train_cnn`` run in a daemon thread; all state the page shows, updated by the thread.

    ``phase``: ``loading`` (reading images), ``training``, ``done`` (result ready, also after
    Stop), ``cancelled`` (stopped before any epoch) or ``failed`` (``error`` says why).
    """

    def __init__(self, settings: CNNSettings, train: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        # Whoever holds it may stop and save this run: the session that started it, and a reload of
        # its page (the address carries it). Other people's sessions on a shared server see it only.
        self.token = secrets.token_urlsafe(9)
        self.stop_event = threading.Event()
        self.history: dict[str, list[float]] = {}
        self.loaded = (0, 0)
        self.folders_read = 0  # folders read whole: the training folder, then the validation folder
        self.phase = "loading"
        self.error: str | None = None
        self.result: Any = None
        self.saved_as: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        # TensorFlow is imported after the images are read: the first epoch of a server's first run
        # starts it (seconds the page says, not an epoch standing still)
        self.starts_tensorflow = "tensorflow" not in sys.modules
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
    def tensorflow_starting(self) -> bool:
        """This run imports TensorFlow and Keras has not finished loading (its module is there from
        the import's start, its ``Sequential`` only at the end): the first epoch waits on it."""
        return self.starts_tensorflow and not hasattr(sys.modules.get("keras"), "Sequential")

    @property
    def reading(self) -> str | None:
        """Which images are being read ("train", then "val"), or None once the last folder is read
        and the first epoch runs (the phase turns "training" only when that epoch ends)."""
        if self.phase != "loading":
            return None
        n, of = self.loaded
        if self.folders_read == (1 if self.settings.val_dir else 0) and of and n >= of:
            return None
        return "val" if self.folders_read else "train"

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
                               "(the session that started it can stop it on the CNN page)")
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
        if done < self.loaded[0]:  # the next folder began: validation images after the training images
            self.folders_read += 1
        self.loaded = (done, total)
        if self.stop_event.is_set():
            raise _Cancelled()

    def _run(self) -> None:
        s = self.settings
        try:
            if self._train is None:
                from .predictors.cnn import train_cnn
            else:
                train_cnn = self._train
            init = None
            if s.init:
                from .predictors.registry import find_entry

                init = find_entry(s.init).file
            self.result = train_cnn(
                s.train_dir, s.val_dir, classes=s.classes, preset=s.preset, epochs=s.epochs,
                batch_size=s.batch_size, out=self.out, limit_per_class=s.limit_per_class,
                progress=self._on_epoch, should_stop=self.stop_event.is_set, load_progress=self._on_load,
                recipe=s.recipe, command=s.record(), init=init, class_weighting=s.class_weighting,
                learning_rate=s.learning_rate)
            self.phase = "done"
        except (_Cancelled, StoppedBeforeAnEpoch):  # Stop while reading, or in the first epoch
            self.phase = "cancelled"
        except FerError as exc:
            self.error, self.phase = one_line(exc), "failed"
        except Exception as exc:
            log.exception("CNN training failed")
            self.error, self.phase = f"training failed ({one_line(exc)}); see the server log", "failed"
        finally:
            self.finished = time.time()

    def save(self, name: str, models_dir: Path | None = None):
        """Save the finished model as ``models/<name>.keras`` (+ sidecar) and register it."""
        from .predictors.registry import save_and_register

        result = self.result
        if result is None:
            raise FerError("there is no trained model to save; train one first")
        entry = save_and_register(result, name=name, kind="cnn", classes=self.settings.classes,
                                  metrics=result.metrics, command=self.settings.record(f"{name}.keras"),
                                  origin="dashboard", description=self.settings.describe(), models_dir=models_dir)
        self.saved_as = entry.name
        return entry
