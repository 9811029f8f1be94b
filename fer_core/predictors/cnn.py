"""The pixel CNN of the comparison: build, train on FER2013 (48x48 gray), save, load, predict.

A trained model is two files: ``<name>.keras`` (Keras 3 format, loaded with ``safe_mode``) and
``<name>.meta.json`` beside it (class order, preset, input shape, metrics, the command that made it), so
a checkpoint written mid-training is already usable and the class order never has to be guessed.
TensorFlow is imported on first use (``keras_io``).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..emotions import SIX_EMOTIONS, normalize_emotion
from ..errors import DatasetError, FerError, ImageError, ModelFileError, StoppedBeforeAnEpoch, one_line, printable
from ..evaluation.metrics import EvaluationReport, evaluation_report
from ..fileio import atomic_copy, remove_stale_parts
from ..images import list_images, load_image, sample_per_class, scan_images
from ..provenance import file_sha256, fitted_by
from ..safe_files import check_regular_file, read_json_file
from .base import Predictor, Progress
from .keras_io import fit_images, import_keras, predict_views, sidecar_tta
from .keras_safety import build_deferred, check_keras_archive, code_layer
from .lite import copy_twin, export_lite, lite_path, lite_record
from .recipe import Recipe

TRAINING_LIBRARIES = ("numpy", "tensorflow", "ai-edge-litert")  # named in a trained network's ``fitted_by``

CNN_SIZE = 48
MAX_KERAS_BYTES = 128 * 2**20  # our CNNs are 5 MB; the limit keeps loading one under 1 GB
MAX_INPUT_SIDE = 1024  # our CNNs take 48 x 48 faces
MAX_METADATA_BYTES = 4 * 2**20  # the .meta.json sidecar and a .keras file's config.json: tens of KB
# The default first: the order the CLI and the CNN page offer them in.
PRESETS: tuple[str, ...] = ("strong", "resnet", "original", "tiny")
METADATA_FORMAT = "fer_core.cnn/1"

ProgressFn = Callable[[int, Mapping[str, float]], None]
CountFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------- architectures

def build_cnn(preset: str = "strong", num_classes: int = len(SIX_EMOTIONS), seed: int | None = None):
    """An uncompiled Keras model for 48x48x1 inputs scaled to 0..1.

    ``original``: the original study's network (conv 256/128/64 with BN, pooling and dropout, dense
    512-256-128). ``strong``: a VGG-style net (2 convs per block, 32-64-128-256, BN, growing
    dropout, global average pooling), about 1.2 M parameters - most of the accuracy of wider VGG
    nets for a quarter of their CPU time. ``resnet``: the deeper trunk of the strongest published
    FER2013 single models, scaled to a CPU: two residual blocks per stage at the same widths
    (ResNet-18's layout: 16 convolutions in the blocks), about 2.9 M parameters and twice strong's
    CPU time per epoch (``bench/train_cnn_bench.py`` compares them). ``tiny``: ~1.5 k parameters, for tests.
    """
    keras = import_keras()
    from keras import layers

    if preset not in PRESETS:
        raise FerError(f"unknown CNN preset {preset!r}: use one of {', '.join(PRESETS)}")
    if num_classes < 2:
        raise FerError("a CNN needs at least two classes")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    # Every layer is named here: Keras's automatic names come from per-thread counters that can
    # repeat when models are built from several threads (the dashboard trains in a worker thread).
    n = iter(range(1000))

    def name(kind: str) -> str:
        return f"{kind}_{next(n)}"

    inputs = keras.Input((CNN_SIZE, CNN_SIZE, 1), name="face")
    x = inputs
    if preset == "tiny":
        x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name=name("conv"))(x)
        x = layers.BatchNormalization(name=name("bn"))(x)
        x = layers.ReLU(name=name("relu"))(x)
        x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name=name("conv"))(x)
        x = layers.GlobalAveragePooling2D(name=name("gap"))(x)
    elif preset == "original":
        for filters in (256, 128, 64):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=name("conv"))(x)
            x = layers.BatchNormalization(name=name("bn"))(x)
            x = layers.MaxPooling2D(2, name=name("pool"))(x)
            x = layers.Dropout(0.25, name=name("dropout"))(x)
        x = layers.Flatten(name=name("flatten"))(x)
        for units in (512, 256, 128):
            x = layers.Dense(units, activation="relu", name=name("dense"))(x)
            x = layers.BatchNormalization(name=name("bn"))(x)
            x = layers.Dropout(0.3, name=name("dropout"))(x)
    elif preset == "resnet":
        x = _conv_bn(layers, x, 32, 1, name, relu=True)
        for stage, filters in enumerate((32, 64, 128, 256)):
            for block in range(2):
                stride = 2 if stage and not block else 1
                shortcut = x
                if stride != 1 or x.shape[-1] != filters:
                    shortcut = _conv_bn(layers, x, filters, stride, name, relu=False, kernel=1)
                y = _conv_bn(layers, x, filters, stride, name, relu=True)
                y = _conv_bn(layers, y, filters, 1, name, relu=False)
                x = layers.Add(name=name("add"))([shortcut, y])
                x = layers.ReLU(name=name("relu"))(x)
            x = layers.Dropout(0.1 + 0.1 * stage, name=name("dropout"))(x)
        x = _pooled_head(layers, x, name)
    else:  # strong
        for block, filters in enumerate((32, 64, 128, 256)):
            for _ in range(2):
                x = _conv_bn(layers, x, filters, 1, name, relu=True)
            if block < 3:
                x = layers.MaxPooling2D(2, name=name("pool"))(x)
            x = layers.Dropout(0.1 + 0.1 * block, name=name("dropout"))(x)
        x = _pooled_head(layers, x, name)
    outputs = layers.Dense(num_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name=f"fer_cnn_{preset}")


def _conv_bn(layers, x, filters: int, stride: int, name: Callable[[str], str], relu: bool, kernel: int = 3):
    """Convolution without bias, batch normalisation, and a ReLU where ``relu``: a residual unit's step."""
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name("conv"))(x)
    x = layers.BatchNormalization(name=name("bn"))(x)
    return layers.ReLU(name=name("relu"))(x) if relu else x


def _pooled_head(layers, x, name: Callable[[str], str]):
    """Global average pooling, then one hidden layer of 256 (batch-normalised, half dropped out):
    the strong and resnet presets' head, the features the AU bottleneck taps."""
    x = layers.GlobalAveragePooling2D(name=name("gap"))(x)
    x = layers.Dense(256, use_bias=False, name=name("dense"))(x)
    x = layers.BatchNormalization(name=name("bn"))(x)
    x = layers.ReLU(name=name("relu"))(x)
    return layers.Dropout(0.5, name=name("dropout"))(x)


def copy_trunk(model, init_from, preset: str) -> None:
    """Give ``model`` the trunk weights of ``init_from`` (a CNN of the same preset), layer by layer
    in order (Keras may have named its layers automatically); the last layer (the head) is left alone.
    """
    pairs = list(zip(model.layers[:-1], init_from.layers[:-1]))
    if len(model.layers) != len(init_from.layers) or any(
            type(a) is not type(b) or [w.shape for w in a.get_weights()] != [w.shape for w in b.get_weights()]
            for a, b in pairs):
        raise ModelFileError(f"the CNN to start from is not a {preset!r} preset network; give --init a CNN "
                             f"trained with --preset {preset}, or leave out --init")
    for a, b in pairs:
        if a.weights:
            a.set_weights(b.get_weights())


def copy_head(model, init_from, classes: Sequence[str], init_classes: Sequence[str]) -> list[str]:
    """Copy the head's weights of the emotions both class sets share (a six-emotion CNN starts a
    seven-emotion one predicting six of them as well as before); returns the emotions that start fresh."""
    kernel, bias = (w.copy() for w in model.layers[-1].get_weights())
    old_kernel, old_bias = init_from.layers[-1].get_weights()
    if len(init_classes) != old_bias.shape[0]:
        raise ModelFileError(f"the CNN to start from has {old_bias.shape[0]} outputs but its sidecar names "
                             f"{len(init_classes)} emotions; give --init a CNN with its own .meta.json")
    if old_kernel.shape[0] != kernel.shape[0]:
        return list(classes)
    old = {c: i for i, c in enumerate(init_classes)}
    fresh = []
    for i, c in enumerate(classes):
        if c in old:
            kernel[:, i], bias[i] = old_kernel[:, old[c]], old_bias[old[c]]
        else:
            fresh.append(c)
    if fresh:  # a new emotion starts as likely as the rarest known one, not at a random logit
        known = [i for i, c in enumerate(classes) if c in old]
        bias[[classes.index(c) for c in fresh]] = bias[known].min() if known else 0.0
    model.layers[-1].set_weights([kernel, bias])
    return fresh


def sidecar_folder(path: str | os.PathLike[str]) -> str:
    """A data folder as a sidecar records it: relative to the repository (as the bundled models'
    are), so the honesty checks below agree whatever folder a command runs from."""
    from .. import config

    return os.path.relpath(Path(path).resolve(), config.REPO_ROOT)


def recorded_folder(value: str | None) -> Path | None:
    """A sidecar's data folder, resolved against the repository (an absolute one as it is). A
    folder under the repository's default datasets folder (``../shared/datasets/fer2013/train``)
    that is not there is looked for under ``FER_DATA_DIR``, where a lab keeps FER2013 elsewhere:
    the checks of a test set against a network's training and choosing folders found nothing."""
    from .. import config

    if not value:
        return None
    path = (config.REPO_ROOT / value).resolve()
    if not path.exists():
        parts = Path(value).parts
        if "datasets" in parts and not Path(value).is_absolute():
            moved = config.datasets_dir() / Path(*parts[parts.index("datasets") + 1:])
            if moved.exists():
                return moved.resolve()
    return path


def fitted_on(init: str | os.PathLike[str], train_dir: str | os.PathLike[str]) -> bool:
    """Did the CNN that starts a network fit all of ``train_dir`` (no share held out; its sidecar)?"""
    try:
        meta = json.loads(metadata_path(init).read_text())
        return recorded_folder(meta.get("train_dir")) == Path(train_dir).resolve() and not meta.get("holdout") \
            and bool(meta.get("val_dir"))
    except (OSError, ValueError, TypeError):
        return False


def fitted_among(init: str | os.PathLike[str], train_dir: str | os.PathLike[str], held: Sequence[Path]) -> int:
    """How many of ``held`` (a new run's held-out images of ``train_dir``) the CNN that starts the
    network was fitted on, from its sidecar: its own split of the same folder is drawn again (the
    same listing, emotions, limit, share and seed), so a starting network trained on another class
    set or share is caught too. 0 when its sidecar says too little."""
    try:
        meta = json.loads(metadata_path(init).read_text())
        if recorded_folder(meta.get("train_dir")) != Path(train_dir).resolve():
            return 0
        classes = tuple(meta["classes"])
        share = meta.get("holdout") or (0.1 if not meta.get("val_dir") else None)  # no --val: 10 % held out
        items = sample_per_class(list_images(train_dir, classes), meta.get("limit_per_class"), meta.get("seed", 0))
    except (OSError, ValueError, TypeError, KeyError, FerError):
        return 0
    fitted = [it.path for it in items]
    if share:
        index = {c: i for i, c in enumerate(classes)}
        try:
            labels = np.array([index[it.label] for it in items])
            kept, held_out = stratified_split(labels, share, meta.get("seed", 0))
        except FerError:
            return 0
        if "held_out_copies_moved" in meta:  # trained since held-out copies of fitted images were moved
            kept, _, _ = copies_to_fitting(fitted, kept, held_out, labels)
        fitted = [fitted[i] for i in kept]
    seen = {Path(p).resolve() for p in fitted}
    return sum(Path(p).resolve() in seen for p in held)


def drawn_name(folder: str | os.PathLike[str], limit_per_class: int | None) -> str:
    """A validation folder as a record names it: with ``--limit-per-class`` the draw of it that was
    scored ("val, at most 10 per emotion"), so its figure is not read as the whole folder's."""
    name = Path(folder).name
    return f"{name}, at most {limit_per_class:,} per emotion" if limit_per_class else name


def picked_on_split(init: str | os.PathLike[str], val_dir: str | os.PathLike[str]) -> bool:
    """Did the CNN that starts a network choose its epoch on ``val_dir``, or did the network it
    started from (``init_picked_on_val``: on the same folder, its own validation folder)? Its
    sidecar says; another folder was chosen on by neither."""
    try:
        meta = json.loads(metadata_path(init).read_text())
        same = recorded_folder(meta.get("val_dir")) == Path(val_dir).resolve()
        return same and (not meta.get("holdout") or bool(meta.get("init_picked_on_val")))
    except (OSError, ValueError, TypeError):
        return False


def _augmenter(seed: int):
    """Training-only augmentation: flips, +-10 degree rotation, 10 % shifts and zoom."""
    keras = import_keras()
    from keras import layers

    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed + 1),
        layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed + 2),
        layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 3),
    ], name="augment")


# ----------------------------------------------------------------------------- data

SKIPPED_KEPT = 100  # a sidecar lists at most this many skipped files (and counts them all)
PHOTO_CHUNK = 64  # training photos measured at once (``load_dataset``): memory, progress and Stop between chunks


@dataclass(frozen=True)
class ImageArrays:
    """A labelled image set as CNN inputs: ``x`` (N, 48, 48, 1) float32 in 0..1, ``y`` class indices."""
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[Path, ...] = ()
    skipped: tuple[str, ...] = ()  # one-line messages for files that could not be read
    face_cut: int = 0  # photos (not face crops) whose largest face was cut out, as prediction cuts it

    def __len__(self) -> int:
        return len(self.y)


def load_dataset(root: str | os.PathLike[str], classes: Sequence[str] = SIX_EMOTIONS,
                 progress: CountFn | None = None, limit_per_class: int | None = None,
                 seed: int = 0) -> ImageArrays:
    """Read a labelled folder (Kaggle layout or flat names) into 48x48 gray arrays, each image as
    prediction shows it to a network (``pipeline.prepare_faces``): a face crop (FER2013's 48 px,
    anything under ``SMALL_IMAGE_SIDE``) whole, a larger photo by its largest face with a margin.
    A network trained on whole photos was shown a small face off-centre, and answered the cut-out
    faces of Try it and Compare worse (a review of a child-photo set: 0.51 against 0.57).

    Unreadable files and photos without a face are skipped and listed in ``skipped``;
    ``limit_per_class`` draws a reproducible sample per class (quick runs, tests).
    ``progress(done, total)`` is called as files are read and photos measured.
    """
    from ..pipeline import NO_FACE_MESSAGE, is_face_crop, prepare_faces

    classes = tuple(classes)
    listing = scan_images(root, classes)  # with what it passed over: a folder named after no emotion, a .svg
    items = sample_per_class(listing.items, limit_per_class, seed)
    if not items:
        raise DatasetError(f"{root}: no images of {', '.join(classes)}; use <emotion>/*.jpg folders")
    index = {c: i for i, c in enumerate(classes)}
    x = np.empty((len(items), CNN_SIZE, CNN_SIZE, 1), dtype=np.uint8)
    read = [False] * len(items)  # per item: its pixels are in x
    photos: list[int] = []  # items that are photos, not face crops: a face is cut from each
    skipped: list[str] = list(listing.skipped_lines)
    step = max(1, len(items) // 100)
    for n, item in enumerate(items):
        try:
            rgb = load_image(item.path)
        except ImageError as exc:
            skipped.append(str(exc))
        else:
            if is_face_crop(rgb):
                x[n], read[n] = fit_images([rgb], (CNN_SIZE, CNN_SIZE), 1)[0], True
            else:
                photos.append(n)
        if progress is not None and (n % step == 0 or n == len(items) - 1):
            progress(n + 1, len(items) + len(photos))
    # Photos are measured as prediction measures them (cached, crash-safe) and their largest face cut
    # out, a chunk at a time: each chunk's full-size crops are shrunk before the next is read, the
    # measuring pool (shared by the dashboard's sessions) is let go between chunks, and progress, which
    # a Stop on the CNN page is read in, is said after each.
    for start in range(0, len(photos), PHOTO_CHUNK):
        chunk = photos[start:start + PHOTO_CHUNK]
        prepared = prepare_faces([items[n] for n in chunk], need_aus=False, need_pixels=True)
        skipped += prepared.unreadable
        faces = {id(it): face for it, face in zip(prepared.items, prepared.faces)}
        for n in chunk:
            face = faces.get(id(items[n]))
            if face is not None and face.found:
                x[n], read[n] = fit_images([face.pixels], (CNN_SIZE, CNN_SIZE), 1)[0], True
            elif face is not None:
                skipped.append(f"{printable(str(items[n].path))}: {NO_FACE_MESSAGE}")
        del prepared, faces
        if progress is not None:
            progress(len(items) + start + len(chunk), len(items) + len(photos))
    kept = [n for n in range(len(items)) if read[n]]
    if not kept:
        raise DatasetError(f"{root}: none of the {len(items)} images could be read"
                           + (" or held a face" if photos else ""))
    return ImageArrays((x[kept] / 255.0).astype(np.float32),
                       np.asarray([index[items[n].label] for n in kept], dtype=np.int64),
                       classes, tuple(items[n].path for n in kept), tuple(skipped),
                       face_cut=sum(read[n] for n in photos))


def require_every_emotion(train: ImageArrays, train_dir: str | os.PathLike[str]) -> None:
    """Refuse training images of one emotion (it scores 100 % whatever the network learns) or
    missing an emotion asked for (the network would be saved as predicting one it never saw)."""
    present = [c for i, c in enumerate(train.classes) if np.any(train.y == i)]
    if len(present) < 2:
        raise DatasetError(f"{train_dir}: images of {', '.join(present)} only; a network learns to tell at least "
                           "two emotions apart (<emotion>/*.jpg folders)")
    missing = [c for c in train.classes if c not in present]
    if missing:
        raise DatasetError(f"{train_dir}: no training images of {', '.join(missing)}; add {missing[0]}/ images "
                           f"or train on the emotions it has (--classes {','.join(present)})")


def stratified_split(y: np.ndarray, fraction: float = 0.1, seed: int = 0,
                     classes: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out) holding out ``fraction`` of every class (scikit-learn's
    stratified ``train_test_split``); ``classes`` name the classes in its refusal."""
    from sklearn.model_selection import train_test_split

    try:
        train, held = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
    except ValueError:  # scikit-learn's reason names its own arguments, not the user's images
        counts = np.bincount(y) if len(y) else np.zeros(0, int)
        present = np.flatnonzero(counts)
        rarest = int(present[counts[present].argmin()]) if len(present) else 0
        name = classes[rarest] if rarest < len(classes) else None
        fewest = int(counts[rarest]) if len(present) else 0
        raise DatasetError(f"too few images to hold out {fraction:.0%} of every emotion ({len(y)} images, the "
                           f"fewest {fewest} of {name or 'one emotion'}); add {name or 'its'} images, or let a "
                           "validation folder choose the epoch (--val without --holdout)") from None
    return np.sort(train), np.sort(held)


def copies_to_fitting(paths: Sequence[Path], fit: np.ndarray, held: np.ndarray,
                      y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(fit, held, moved): held-out images that are byte-for-byte copies of fitted ones moved to the
    fitted part. FER2013 train repeats 1,236 of its files (2,271 in groups of copies), so a tenth
    held out held about 200 pictures the network was learning: the epoch was chosen partly on them
    (``train-au`` moves its held-out rows equal to fitting rows the same way). ``y``: the classes;
    an emotion none of whose held-out images would stay keeps its copies (it would drop out of
    the choice)."""
    from ..images import file_digest

    digests = [file_digest(p) for p in paths]
    fitted = {digests[i] for i in fit} - {None}
    moving = [i for i in held if digests[i] in fitted]
    if y is not None:
        staying = {int(y[i]) for i in held if i not in set(moving)}
        moving = [i for i in moving if int(y[i]) in staying]
    if not moving:
        return fit, held, 0
    moving = np.array(moving, dtype=held.dtype)
    return np.sort(np.concatenate([fit, moving])), np.setdiff1d(held, moving), len(moving)


def balanced_class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (k * count)`` per present class (scikit-learn's "balanced"), so rare emotions
    (disgust) weigh as much as common ones."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y).tolist()))
    return {i: float(weights.get(i, 0.0)) for i in range(num_classes)}


# ----------------------------------------------------------------------------- training

@dataclass
class CNNTrainResult:
    """What ``train_cnn`` made: the model file, its sidecar, per-epoch history and validation scores."""
    path: Path
    metadata_path: Path
    history: dict[str, list[float]]
    evaluation: EvaluationReport  # on the validation images (which picked the best epoch unless ``holdout``)
    epochs_run: int
    stopped_by_user: bool
    seconds: float
    skipped: tuple[str, ...] = field(default_factory=tuple)
    model: Any = None  # the trained Keras model (best weights), for immediate use
    evaluated_on: str = ""
    classes: tuple[str, ...] = ()
    selected_on: str = ""
    selection: EvaluationReport | None = None  # the held-out share of train that picked the epoch
    face_cut: int = 0  # training and validation photos whose largest face was cut out (``load_dataset``)
    class_counts: dict[str, int] = field(default_factory=dict)  # training images per emotion, before any hold-out

    @property
    def metrics(self):
        from ..manifest import Metrics

        return Metrics.from_report(self.evaluation, self.evaluated_on, self.selected_on)


def metadata_path(model_path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a ``.keras`` file: ``<name>.meta.json`` (not ``<name>.json``, which
    would read as an AU model file of the same name)."""
    return Path(model_path).with_suffix(".meta.json")


def epoch_guard(progress: ProgressFn | None, should_stop: Callable[[], bool] | None,
                monitor: str = "val_accuracy", mode: str = "max"):
    """A Keras callback that reports each epoch and stops training (at the next batch) on request;
    the CNN and the AU-bottleneck network both train under it.

    An epoch stopped midway is no epoch run: Keras still scores and checkpoints it, so it goes
    first among the callbacks and gives that epoch the worst possible ``monitor`` value (never the
    best, never kept; ``partial_epoch`` says to drop it from the history). Stopped in the first
    epoch, the "model" had seen one batch, and was offered as a trained one."""
    keras = import_keras()
    worst = float("-inf") if mode == "max" else float("inf")

    class _EpochGuard(keras.callbacks.Callback):
        stopped_by_user = False
        partial_epoch = False

        def on_train_batch_end(self, batch, logs=None):
            if not self.stopped_by_user and should_stop is not None and should_stop():
                self.stopped_by_user = True
                # after the epoch's last batch the epoch is whole: judged and kept as any other
                steps = (self.params or {}).get("steps")
                self.partial_epoch = steps is None or batch + 1 < steps
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if self.partial_epoch:
                if logs is not None:
                    logs[monitor] = worst
                return
            if progress is not None:
                progress(epoch, {k: float(v) for k, v in (logs or {}).items()})
            if should_stop is not None and should_stop():
                self.stopped_by_user = True
                self.model.stop_training = True

    return _EpochGuard()


def whole_epochs(history, guard) -> dict[str, list[float]]:
    """A ``fit``'s history as plain lists, without the epoch a Stop cut short (``epoch_guard``)."""
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return {k: vals[:-1] for k, vals in hist.items()} if guard.partial_epoch else hist


def train_cnn(train_dir: str | os.PathLike[str], val_dir: str | os.PathLike[str] | None = None, *,
              classes: Sequence[str] = SIX_EMOTIONS, preset: str = "strong", epochs: int = 60,
              batch_size: int = 64, out: str | os.PathLike[str] | None = None,
              progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None,
              load_progress: CountFn | None = None, seed: int = 0, limit_per_class: int | None = None,
              class_weighting: bool = False, augment: bool = True, patience: int = 10,
              learning_rate: float = 1e-3, command: str | None = None,
              holdout: float | None = None, init: str | os.PathLike[str] | None = None,
              recipe: Recipe | None = None, in_place: bool = True, stop_reason: str = "user") -> CNNTrainResult:
    """Train a CNN on a labelled folder and save the best epoch (by validation accuracy) to ``out``.

    Without ``val_dir`` a stratified 10 % of the training images is held out. With ``holdout`` a
    stratified share of the training images picks the epoch and ``val_dir`` is scored once at the
    end, untouched by any choice (``selected_on`` / ``evaluated_on``). Training stops early
    when validation accuracy has not improved for ``patience`` epochs, or when ``should_stop()``
    returns True (checked after every batch); either way the best weights are kept. Checkpoints and
    their sidecar go to ``training_path(out)`` (loadable at once) and replace ``out`` only when the
    training is done: an interrupted run leaves ``out`` as it was.
    ``init``: a trained ``.keras`` CNN of the same preset that starts the network (transfer): its
    trunk, and the head weights of the emotions both class sets share. A six-emotion CNN so starts a
    seven-emotion one, which then only has to learn fear: on two CPU cores, an hour instead of many.
    ``recipe``: schedule, label smoothing, weight averaging and batch augmentation (``recipe.Recipe``;
    default: Adam halved on a plateau, hard labels, as the bundled CNNs were trained).
    ``in_place=False``: the finished model (and twin) stays at ``training_path(out)`` for a caller
    that puts it in place itself (``save_and_register``, which keeps a registered ``out`` until the
    manifest names the new model: replaced here first, a kill before registering lost both).
    """
    from .. import config

    started = time.perf_counter()
    recipe = recipe or Recipe()
    out = Path(out) if out is not None else config.models_dir() / "cnn.keras"
    if out.suffix != ".keras":
        raise FerError(f"{out}: the CNN output file must end with .keras")
    classes = tuple(classes)
    if holdout is not None and not 0 < holdout < 1:
        raise FerError(f"holdout {holdout!r}: give the share of training images that picks the epoch, e.g. 0.1")
    train = load_dataset(train_dir, classes, load_progress, limit_per_class, seed)
    skipped = train.skipped
    require_every_emotion(train, train_dir)
    class_counts = {c: int(np.sum(train.y == i)) for i, c in enumerate(classes)}
    copies_moved = 0
    if val_dir is None or holdout is not None:
        share = 0.1 if holdout is None else holdout
        train_idx, val_idx = stratified_split(train.y, share, seed, classes)
        train_idx, val_idx, copies_moved = copies_to_fitting(train.paths, train_idx, val_idx, train.y)
        x_train, y_train = train.x[train_idx], train.y[train_idx]
        x_val, y_val = train.x[val_idx], train.y[val_idx]
        moved = f"; {copies_moved:,} byte-for-byte copies of fitted images moved to fitting" if copies_moved else ""
        selected_on = f"{share:.0%} of {Path(train_dir).name} held out from fitting ({len(y_val):,} images{moved})"
    else:
        x_train, y_train = train.x, train.y
    test = None
    if val_dir is not None:
        test = load_dataset(val_dir, classes, load_progress, limit_per_class, seed)
        skipped += test.skipped
        if holdout is None:  # the old way: the validation folder picks the epoch and is scored
            x_val, y_val = test.x, test.y
            selected_on = f"{drawn_name(val_dir, limit_per_class)} ({len(y_val):,} images)"
    if len(y_val) == 0:
        raise DatasetError(f"{train_dir}: too few images to hold out a validation set; give a val folder")
    if test is not None and holdout is not None:
        evaluated_on = (f"{drawn_name(val_dir, limit_per_class)} ({len(test.y):,} images, {len(classes)} emotions; "
                        "not used for any choice)")
    else:
        evaluated_on = f"{selected_on.split(' (')[0]} ({len(y_val):,} images; it also picked the best epoch)"
    untested = [c for i, c in enumerate(classes) if test is not None and not np.any(test.y == i)]
    if untested:  # a six-emotion network scored on a folder without disgust says nothing of disgust
        evaluated_on = evaluated_on[:-1] + f"; no {', '.join(untested)} images: not tested on {'them' if len(untested) > 1 else 'it'})"
    init_picked_on_val = init is not None and val_dir is not None and picked_on_split(init, val_dir)
    if init_picked_on_val and holdout is not None:  # honest about the starting weights' past
        evaluated_on = evaluated_on[:-1] + f"; but the network started from {Path(init).stem}, whose best " \
                                           "epoch this split picked)"
    if init is not None and holdout is not None and fitted_on(init, train_dir):
        # The starting network learnt these very images: the slice flatters the first epochs
        # (the bundled six-emotion CNN scores 0.759 on such a slice, 0.703 on val).
        selected_on = selected_on[:-1] + f", but {Path(init).stem} was fitted on them)"
        import logging

        logging.getLogger(__name__).warning(
            "%s was fitted on all of %s, so the held-out share is not new to the network and will favour early "
            "epochs; give a starting CNN trained with --holdout, or let --val choose the epoch", init, train_dir)
    elif init is not None and holdout is not None and (seen := fitted_among(init, train_dir,
                                                                            [train.paths[i] for i in val_idx])):
        # Its own held-out share was drawn over other emotions, another share or seed: most of
        # this one may be images it learnt (a seven-emotion start for a six-emotion run).
        about = "about " if train.skipped else ""  # unreadable images shift the redrawn split a little
        selected_on = selected_on[:-1] + f", but {Path(init).stem} was fitted on {about}{seen:,} of them)"
        import logging

        logging.getLogger(__name__).warning(
            "%s was fitted on %d of the %d held-out images (its own split differs: other emotions, share, limit or "
            "seed), so the held-out share favours early epochs; hold out with the starting CNN's own settings",
            init, seen, len(val_idx))

    keras = import_keras()
    model = build_cnn(preset, len(classes), seed=seed)
    fresh_classes = None
    if init is not None:
        start = load_keras_file(init)
        init_meta = read_cnn_metadata(init) or {}
        copy_trunk(model, start, preset)
        fresh_classes = copy_head(model, start, classes, init_meta.get("classes") or ())
        del start
    steps_per_epoch = -(-len(y_train) // batch_size)
    model.compile(optimizer=recipe.optimizer(learning_rate, steps_per_epoch, epochs), loss=recipe.loss(),
                  metrics=["accuracy"])
    data = recipe.training_batches(x_train, recipe.labels(y_train, len(classes)), batch_size=batch_size, seed=seed,
                                   augmenter=_augmenter(seed) if augment else None)

    metadata = {
        "format": METADATA_FORMAT, "kind": "cnn", "preset": preset, "classes": list(classes),
        "input_shape": [CNN_SIZE, CNN_SIZE, 1], "input_scale": "gray 0..1",
        "train_dir": sidecar_folder(train_dir), "val_dir": None if val_dir is None else sidecar_folder(val_dir),
        "n_train": int(len(y_train)), "n_val": int(len(y_val)), "seed": seed, "epochs": epochs,
        "holdout": holdout, "selected_on": selected_on, "learning_rate": learning_rate, "recipe": recipe.to_dict(),
        "init": None if init is None else str(init), "init_picked_on_val": init_picked_on_val,
        "init_fresh_classes": fresh_classes,
        "batch_size": batch_size, "augment": augment, "class_weighting": class_weighting,
        "limit_per_class": limit_per_class, "command": command, "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(), "init_sha256": None if init is None else file_sha256(init),
        "fitted_by": fitted_by(TRAINING_LIBRARIES),
        "class_counts": class_counts,
        "held_out_copies_moved": copies_moved,  # held-out images that were copies of fitted ones, fitted instead
        # photos (not face crops) whose largest face was cut out as prediction cuts it, and files left out
        "face_cut": train.face_cut + (test.face_cut if test is not None else 0),
        "skipped": list(skipped[:SKIPPED_KEPT]), "skipped_count": len(skipped),
        "status": "training",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    work = training_path(out)
    remove_killed_training_parts(work)
    _write_metadata(work, metadata)
    reporter = epoch_guard(progress, should_stop)
    callbacks = [
        reporter,  # first: an epoch Stop cut short is given no validation score the others could keep
        *recipe.callbacks(),  # EMA: swap the averaged weights in before the epoch is judged and saved
        keras.callbacks.ModelCheckpoint(work, monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience,
                                      restore_best_weights=True),
        *recipe.plateau_callbacks(max(2, patience // 3)),
    ]
    try:
        history = model.fit(data, validation_data=(x_val, recipe.labels(y_val, len(classes))), epochs=epochs,
                            callbacks=callbacks,
                            class_weight=balanced_class_weights(y_train, len(classes)) if class_weighting else None,
                            shuffle=False, verbose=0)  # the dataset reshuffles every epoch itself
    except BaseException:  # Ctrl-C or a failure: out is untouched; say where the best epoch so far is
        if work.is_file():
            import logging

            logging.getLogger(__name__).warning("%s %s; the best epoch so far is in %s", out,
                                                "is unchanged" if out.exists() else "was not written", work)
        raise
    hist = whole_epochs(history, reporter)
    if not hist.get("loss"):
        remove_training(work)
        raise StoppedBeforeAnEpoch("training was stopped before the first epoch finished: there is nothing to save")

    def score(x: np.ndarray, y: np.ndarray) -> EvaluationReport:
        proba = predict_views(model, x, "mirror")
        return evaluation_report([classes[i] for i in y], [classes[i] for i in proba.argmax(1)],
                                 classes, model=out.stem)

    selection = score(x_val, y_val)
    evaluation = score(test.x, test.y) if test is not None and holdout is not None else selection
    # Save the best weights into an uncompiled twin: no optimizer state, a third of the size.
    inference = build_cnn(preset, len(classes))
    inference.set_weights(model.get_weights())
    inference.save(work)
    seconds = time.perf_counter() - started
    final = out if in_place else work
    result = CNNTrainResult(final, metadata_path(final), hist, evaluation, len(hist.get("loss", [])),
                            reporter.stopped_by_user, seconds, skipped, inference, evaluated_on, classes,
                            selected_on, selection, face_cut=metadata["face_cut"], class_counts=class_counts)
    # what ended it early: the person (Stop) or --max-minutes ("stop_reason"), whose epoch count a rerun
    # elsewhere does not repeat
    metadata.update(status="done", epochs_run=result.epochs_run,
                    stopped_by_user=reporter.stopped_by_user and stop_reason == "user",
                    stopped_by=stop_reason if reporter.stopped_by_user and result.epochs_run < epochs else None,
                    seconds=round(seconds, 1), metrics=result.metrics.to_dict(),
                    evaluation=evaluation.to_dict(), selection=selection.to_dict(), history=hist)
    _write_metadata(work, metadata)
    if in_place:
        put_in_place(work, out)
    write_twin(export_lite, final)
    return result


def training_path(out: Path) -> Path:
    """Where a training keeps its checkpoint and sidecar until it is done: beside ``out``, so a run
    that is interrupted or fails leaves ``out`` (often its own ``--init`` model) as it was."""
    return out.with_name(f"{out.stem}.training{out.suffix}")


def remove_killed_training_parts(work: Path) -> None:
    """The part files that killed writes of an earlier training at ``work`` left (its sidecar, its
    TensorFlow Lite twin: megabytes): no save writes these names, so no save's tidying removed them."""
    for path in (work, *sidecar_files(work)):
        remove_stale_parts(path)


def remove_training(work: Path) -> None:
    """A finished training left at ``training_path`` (``in_place=False``) once it has been saved elsewhere."""
    for path in (work, *sidecar_files(work)):
        path.unlink(missing_ok=True)


def put_in_place(work: Path, out: Path) -> None:
    """A finished training's model and sidecar moved from ``training_path`` onto ``out``."""
    os.replace(work, out)
    os.replace(metadata_path(work), metadata_path(out))


def write_twin(export: Callable[[Path], Path], out: Path) -> Path | None:
    """A finished training's TensorFlow Lite twin (``lite``), so predictions never need TensorFlow;
    a network that does not convert keeps its Keras model (predictions then load TensorFlow)."""
    try:
        return export(out)
    except FerError as exc:
        import logging

        logging.getLogger(__name__).warning("%s: no TensorFlow Lite twin (%s); predictions will use Keras",
                                            out, one_line(exc))
        return None


def _write_metadata(model_path: Path, metadata: Mapping[str, Any]) -> None:
    """The sidecar, whole or not at all (``fileio``)."""
    from .. import fileio

    fileio.atomic_write_text(metadata_path(model_path), json.dumps(metadata, indent=1) + "\n")


def read_cnn_metadata(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar of a ``.keras`` file, or None when there is none (no TensorFlow needed)."""
    path = metadata_path(model_path)
    if not os.path.lexists(path):
        return None
    data = read_json_file(path, MAX_METADATA_BYTES, "retrain or delete it", what="model metadata file")
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not CNN metadata (expected a JSON object); retrain or delete it")
    return data


# ----------------------------------------------------------------------------- prediction

def check_keras_path(path: Path) -> None:
    """A ``.keras`` regular file of a model's size (checked before its sidecar or any of it is read)."""
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"{path}: not a .keras file; save Keras models with model.save('name.keras')")
    check_regular_file(path, "train a CNN or pick an existing .keras file", MAX_KERAS_BYTES, what="Keras model")


def load_keras_file(path: str | os.PathLike[str]):
    """Load a ``.keras`` model without running code from it (``safe_mode``), or raise ModelFileError."""
    path = Path(path)
    check_keras_path(path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a Keras model (a .keras file is a zip archive); "
                             "pick the file that model.save('name.keras') wrote")
    hint = "re-save it with Keras 3"
    config = check_keras_archive(str(path), MAX_KERAS_BYTES, MAX_METADATA_BYTES, hint)
    code = code_layer(config)
    if code is not None:  # Keras's safe mode would refuse it too, in words that suggest re-saving
        raise ModelFileError(f"{path}: the model contains a {code} layer (Python code), which is not loaded for "
                             "safety; build it from standard Keras layers")
    keras = import_keras()
    # Count the architecture's parameters before Keras allocates them (a config can declare GBs).
    build_deferred(lambda: keras.saving.deserialize_keras_object({**config, "compile_config": None},
                                                                 safe_mode=True),
                   lambda model: None, str(path), hint, keep=False, failure="cannot load this Keras model")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for bad archives; all mean "bad file"
        raise ModelFileError(f"{path}: cannot load this Keras model ({one_line(exc, 160)}); "
                             "re-save it with Keras 3") from None


RUNTIMES = ("auto", "litert", "keras")


def load_network(path: Path, metadata: Mapping[str, Any], runtime: str = "auto",
                 keras_sha256: str | None = None) -> tuple[Any, str]:
    """(network, "litert" or "keras"): the ``.keras`` model's TensorFlow Lite twin when it has a
    fresh one (``lite``; no TensorFlow needed), else the Keras model. ``runtime`` forces one:
    ``litert`` fails without a fresh twin. ``keras_sha256``: the file's, if already known."""
    if runtime not in RUNTIMES:
        raise FerError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime != "keras":
        from .lite import load_twin

        twin = load_twin(path, metadata, keras_sha256)
        if twin is not None:
            return twin, "litert"
        if runtime == "litert":
            raise ModelFileError(f"{path}: has no up-to-date TensorFlow Lite twin; make one with "
                                 f"python -m fer_core export-lite --model {path}")
    return load_keras_file(path), "keras"


class CNNPredictor(Predictor):
    """A saved pixel CNN as a Predictor: any face crop in, class probabilities out.

    Images are centre-cropped to the model's input aspect, resized and converted to gray when the
    model takes one channel - FER2013 images are already 48x48 gray face crops.
    """

    kind = "cnn"
    inputs = "pixels"

    def __init__(self, path: str | os.PathLike[str], classes: Sequence[str] | None = None,
                 name: str | None = None, batch_size: int = 128, tta: str | None = None,
                 runtime: str = "auto", keras_sha256: str | None = None) -> None:
        self.path = Path(path)
        check_keras_path(self.path)
        self.metadata = read_cnn_metadata(self.path) or {}
        self.tta = sidecar_tta(tta, self.metadata, metadata_path(self.path))  # views averaged per face
        self.classes = self._classes(classes)
        self.model, self.runtime = load_network(self.path, self.metadata, runtime, keras_sha256)
        self.name = name or self.path.stem
        self.batch_size = batch_size
        shape = tuple(self.model.input_shape)
        outputs = self.model.output_shape[-1]
        if len(shape) != 4 or shape[-1] not in (1, 3) or None in shape[1:]:
            raise ModelFileError(f"{self.path}: model input {shape} is not an image of fixed size; "
                                 "use a CNN taking (height, width, 1 or 3) images")
        if max(shape[1:3]) > MAX_INPUT_SIDE:  # every face would be resized to it: gigabytes per batch
            raise ModelFileError(f"{self.path}: model input {shape[1]}x{shape[2]} is larger than a face model "
                                 f"takes here ({MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}); use a CNN on face crops")
        if outputs != len(self.classes):
            raise ModelFileError(f"{self.path}: model has {outputs} outputs but {len(self.classes)} classes "
                                 f"({', '.join(self.classes)}); give the class list the model was trained on")
        self.input_size: tuple[int, int] = (int(shape[1]), int(shape[2]))
        self.channels = int(shape[3])

    def _classes(self, classes: Sequence[str] | None) -> tuple[str, ...]:
        recorded = self.metadata.get("classes")
        if classes is not None and isinstance(recorded, list) and \
                [normalize_emotion(c) for c in classes] != [normalize_emotion(c) for c in recorded]:
            raise ModelFileError(f"{self.path}: the classes given ({', '.join(map(str, classes))}) differ from those "
                                 f"its training recorded in {metadata_path(self.path).name} "
                                 f"({', '.join(map(str, recorded))}); fix manifest.json or retrain")
        raw = classes if classes is not None else recorded
        if raw is None:
            sidecar = metadata_path(self.path)
            where = (f"{sidecar.name} has no \"classes\"" if os.path.lexists(sidecar)
                     else f"{sidecar.name} is missing")
            raise ModelFileError(f"{self.path}: no class list ({where}); write it beside the model as "
                                 '{"classes": ["angry", "happy", ...]} in the order of the model\'s outputs')
        if not isinstance(raw, (list, tuple)) or not all(isinstance(item, str) for item in raw):
            raise ModelFileError(f"{self.path}: the class list must be emotion names, e.g. [\"angry\", \"happy\"]; "
                                 "give the class list the model was trained on")
        names = []
        for item in raw:
            emotion = normalize_emotion(item)
            if emotion is None:
                raise ModelFileError(f"{self.path}: unknown class {item!r}; use emotion names such as angry, happy")
            names.append(emotion)
        if len(set(names)) != len(names):
            raise ModelFileError(f"{self.path}: class list {list(raw)} names one emotion twice (as {names}); "
                                 "give each of the model's outputs its own emotion")
        return tuple(names)

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Model inputs for ``images``: (n, h, w, c) float32 scaled to 0..1."""
        return fit_images(images, self.input_size, self.channels).astype(np.float32) / 255.0

    def predict_proba(self, faces, progress: Progress | None = None) -> np.ndarray:
        images = self.pixels_of(faces)
        if len(images) == 0:
            return np.zeros((0, len(self.classes)))
        return predict_views(self.model, self.preprocess(images), self.tta, self.batch_size, progress)


# ----------------------------------------------------------------------------- registry

def _load(path: Path, entry) -> CNNPredictor:
    return CNNPredictor(path, classes=entry.classes or None, name=entry.name, keras_sha256=entry.sha256)


def _save(result: CNNTrainResult, path: Path) -> list[Path]:
    """A finished training's model and sidecar, copied to ``path`` unless already there."""
    path = Path(path)
    if path.suffix != ".keras":
        raise FerError(f"{path}: the CNN file must end with .keras")
    meta_target = metadata_path(path)
    if Path(result.path).resolve() != path.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(result.path, path)
        meta = copy_twin(result.path, path, json.loads(Path(result.metadata_path).read_text(encoding="utf8")))
        meta["name"] = path.stem
        _write_metadata(path, meta)
    written = [path, meta_target]
    return written + [lite_path(path)] if lite_record(read_cnn_metadata(path)) else written


def sidecar_files(path: Path) -> tuple[Path, ...]:
    """The files a saved network has beside its ``.keras``: the sidecar and the TensorFlow Lite twin."""
    return metadata_path(path), lite_path(path)


def _claims(path: Path) -> bool:
    if path.suffix.lower() != ".keras" or path.is_dir():
        return False
    meta = read_cnn_metadata(path) if metadata_path(path).is_file() else None
    return meta is None or meta.get("kind", "cnn") == "cnn"


def _kinds():
    from .registry import ModelKind

    return (ModelKind("cnn", "convolutional network on the 48x48 gray face crop (accurate, no reasons)",
                      "pixels", False, _load, _save, "{name}.keras", _claims, export_lite,
                      companions=sidecar_files),)
