"""How a network is fitted beyond its layers: learning-rate schedule, label smoothing, weight
averaging and batch augmentation (mixup, cutmix, random erasing).

One recipe object for ``train-cnn`` and the AU-bottleneck network, so a trick measured on one is
the same trick on the other. Everything here is Keras's own (``CosineDecay``, the optimizer's
``use_ema`` with ``SwapEMAWeights``, the ``MixUp``/``CutMix``/``RandomErasing`` layers); this
module only checks the settings and wires them together. The default recipe is the one the
bundled CNNs were trained with: Adam, halved on a validation-loss plateau, hard labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import FerError
from .keras_io import import_keras

SCHEDULES: tuple[str, ...] = ("plateau", "cosine")
COSINE_FLOOR = 0.05  # the cosine schedule ends at 5 % of the starting rate, not at zero


@dataclass(frozen=True)
class Recipe:
    """Training settings beyond the architecture; every field's zero/default turns it off."""
    schedule: str = "plateau"  # "plateau": halve on a val-loss plateau; "cosine": decay over all epochs
    warmup_epochs: int = 0  # cosine only: linear ramp from 10 % of the rate
    label_smoothing: float = 0.0  # share of each label spread over all classes (0.1 is usual)
    ema: float = 0.0  # momentum of the exponential moving average of the weights (e.g. 0.999)
    mixup: float = 0.0  # Beta(alpha, alpha) blend of image pairs and their labels
    cutmix: float = 0.0  # Beta(alpha, alpha) share of a patch pasted from another image
    erasing: float = 0.0  # at most this probability that a random patch of a face is blanked out

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise FerError(f"unknown learning-rate schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.warmup_epochs < 0 or (self.warmup_epochs and self.schedule != "cosine"):
            raise FerError("warm-up epochs must be 0 or more, and need the cosine schedule")
        if not 0 <= self.label_smoothing < 1:
            raise FerError(f"label smoothing {self.label_smoothing!r}: give a share from 0 to below 1, e.g. 0.1")
        if not (self.ema == 0 or 0.9 <= self.ema < 1):
            raise FerError(f"EMA momentum {self.ema!r}: give 0 (off) or a value from 0.9 to below 1, e.g. 0.999")
        for name in ("mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise FerError(f"{name} alpha must be 0 (off) or more, e.g. 0.2")
        if self.mixup and self.cutmix:
            raise FerError("use mixup or cutmix, not both")
        if not 0 <= self.erasing <= 1:
            raise FerError(f"random erasing {self.erasing!r}: give a probability from 0 to 1")

    @property
    def soft_labels(self) -> bool:
        """Whether labels travel as one-hot rows (smoothing and mixing blend them)."""
        return bool(self.label_smoothing or self.mixup or self.cutmix)

    @property
    def is_default(self) -> bool:
        return self == Recipe()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """A short line for logs and model cards, e.g. ``cosine, label smoothing 0.1, EMA 0.999``."""
        parts = [self.schedule + (f" (warm-up {self.warmup_epochs})" if self.warmup_epochs else "")]
        for label, value in (("label smoothing", self.label_smoothing), ("EMA", self.ema), ("mixup", self.mixup),
                             ("cutmix", self.cutmix), ("erasing", self.erasing)):
            if value:
                parts.append(f"{label} {value:g}")
        return ", ".join(parts)

    # -------------------------------------------------------------------------- Keras pieces

    def learning_rate(self, rate: float, steps_per_epoch: int, epochs: int):
        """Adam's rate: a number (the plateau callback lowers it) or a cosine schedule over ``epochs``."""
        if self.schedule == "plateau":
            return rate
        return cosine_schedule(rate, steps_per_epoch * epochs, steps_per_epoch * self.warmup_epochs)

    def optimizer(self, rate: float, steps_per_epoch: int, epochs: int):
        keras = import_keras()
        ema = {"use_ema": True, "ema_momentum": self.ema} if self.ema else {}
        return keras.optimizers.Adam(self.learning_rate(rate, steps_per_epoch, epochs), **ema)

    def loss(self):
        keras = import_keras()
        if self.soft_labels:
            return keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)
        return keras.losses.SparseCategoricalCrossentropy()

    def labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """Class indices as the loss wants them: unchanged, or one-hot float32 rows."""
        if not self.soft_labels:
            return y
        return np.eye(num_classes, dtype=np.float32)[y]

    def callbacks(self) -> list:
        """Callbacks that must run *before* checkpointing and early stopping: with EMA, the averaged
        weights are swapped in for validation and at each epoch's end, so the epoch is chosen, saved
        and restored on the averaged weights. A schedule's rate is logged per epoch, as the plateau
        callback logs its own."""
        keras = import_keras()
        calls = []
        if self.ema:
            calls.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        if self.schedule != "plateau":
            calls.append(_rate_logger())
        return calls

    def plateau_callbacks(self, patience: int) -> list:
        """Callbacks after checkpointing: the plateau schedule halves the rate after ``patience``
        epochs without a lower validation loss."""
        keras = import_keras()
        if self.schedule != "plateau":
            return []
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=patience, min_lr=1e-5)]

    def augment_batches(self, data, seed: int):
        """Add the batch-level augmentations to a ``tf.data`` dataset of (images 0..1, labels[, weights])
        batches; mixing needs plain (images, labels)."""
        import tensorflow as tf

        erase, mix = self._batch_layers(seed)
        if erase is not None:
            data = data.map(lambda x, *rest: (erase(x, training=True), *rest), num_parallel_calls=tf.data.AUTOTUNE)
        if mix is not None:
            data = data.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
        return data

    def _batch_layers(self, seed: int):
        """Keras's random erasing layer and an (images, labels) mixing function, each None when off."""
        keras = import_keras()
        erase = None
        if self.erasing:
            erase = keras.layers.RandomErasing(factor=self.erasing, value_range=(0, 1), seed=seed + 10)
        mixer = None
        if self.mixup:
            mixer = keras.layers.MixUp(alpha=self.mixup, seed=seed + 11)
        elif self.cutmix:
            mixer = keras.layers.CutMix(factor=self.cutmix, seed=seed + 12)
        if mixer is None:
            return erase, None

        def mix(x, y):
            out = mixer({"images": x, "labels": y}, training=True)
            return out["images"], out["labels"]

        return erase, mix

    def training_batches(self, x: np.ndarray, targets, weights=None, *, batch_size: int, seed: int,
                         augmenter=None, train: bool = True):
        """Batches of (images, targets[, weights]) for ``model.fit``; ``targets``/``weights`` are arrays
        or dicts of arrays (one per output). ``train``: reshuffled every epoch, ``augmenter`` and the
        recipe's batch augmentations applied; else in order, untouched (validation).

        On Keras's TensorFlow backend this is a parallel, prefetched ``tf.data`` pipeline; on the JAX
        or PyTorch backend (``KERAS_BACKEND``) a Keras ``PyDataset`` running the same Keras layers, so
        a machine without TensorFlow (a GPU box with only JAX, say) trains the same networks.
        """
        keras = import_keras()
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            data = tf.data.Dataset.from_tensor_slices((x, targets) if weights is None else (x, targets, weights))
            if train:
                data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            data = data.batch(batch_size)
            if train and augmenter is not None:
                data = data.map(lambda x, *rest: (augmenter(x, training=True), *rest),
                                num_parallel_calls=tf.data.AUTOTUNE)
            if train:
                data = self.augment_batches(data, seed)
            return data.prefetch(tf.data.AUTOTUNE)
        erase, mix = self._batch_layers(seed) if train else (None, None)
        return _array_batches(keras)(x, targets, weights, batch_size, seed, train,
                                     augmenter if train else None, erase, mix)


def _array_batches(keras):
    """The ``PyDataset`` behind ``Recipe.training_batches`` off the TensorFlow backend (a class made
    on first use, since Keras is imported lazily)."""

    def take(part, idx):
        if part is None:
            return None
        return {k: v[idx] for k, v in part.items()} if isinstance(part, dict) else part[idx]

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self, x, targets, weights, batch_size, seed, train, augmenter, erase, mix):
            super().__init__()
            self.x, self.targets, self.weights = x, targets, weights
            self.batch_size, self.train = batch_size, train
            self.augmenter, self.erase, self.mix = augmenter, erase, mix
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x)) if train else np.arange(len(x))

        def __len__(self) -> int:
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, i: int):
            idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
            x, targets, weights = self.x[idx], take(self.targets, idx), take(self.weights, idx)
            if self.augmenter is not None:
                x = self.augmenter(x, training=True)
            if self.erase is not None:
                x = self.erase(x, training=True)
            if self.mix is not None:
                x, targets = self.mix(x, targets)
            return (x, targets) if weights is None else (x, targets, weights)

        def on_epoch_end(self) -> None:
            if self.train:
                self.order = self.rng.permutation(len(self.x))

    return ArrayBatches


def _rate_logger():
    """A callback that writes the optimizer's current rate into each epoch's logs (and so the history)."""
    keras = import_keras()

    class LogRate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    return LogRate()


def cosine_schedule(rate: float, total_steps: int, warmup_steps: int = 0, floor: float = COSINE_FLOOR):
    """Keras's cosine decay from ``rate`` to ``floor * rate`` over ``total_steps``, after an optional
    linear warm-up from a tenth of ``rate``."""
    keras = import_keras()
    decay = max(1, total_steps - warmup_steps)
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=decay, alpha=floor)
    return keras.optimizers.schedules.CosineDecay(rate / 10, decay_steps=decay, alpha=floor,
                                                  warmup_target=rate, warmup_steps=warmup_steps)


def recipe_from_args(args) -> Recipe:
    """The recipe a ``train-cnn`` or ``train-au-bottleneck`` command line asks for."""
    return Recipe(schedule=args.schedule, warmup_epochs=args.warmup_epochs,
                  label_smoothing=getattr(args, "label_smoothing", 0.0), ema=args.ema,
                  mixup=getattr(args, "mixup", 0.0), cutmix=getattr(args, "cutmix", 0.0), erasing=args.erasing)


def add_recipe_arguments(parser, schedule: str = "plateau", soft_labels: bool = True) -> None:
    """The recipe's command-line options, shared by train-cnn and train-au-bottleneck (which has
    AU targets beside the labels, so no label smoothing or mixing: ``soft_labels=False``)."""
    g = parser.add_argument_group("training recipe (bench/train_cnn_bench.py measures them)")
    other = "cosine decay over --epochs" if schedule == "plateau" else "halve on a validation-loss plateau"
    g.add_argument("--schedule", choices=SCHEDULES, default=schedule,
                   help=f"learning rate: {schedule} or {other} (default: {schedule})")
    g.add_argument("--warmup-epochs", type=int, default=0, help="cosine: epochs of linear warm-up (default: 0)")
    g.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                   help="keep an exponential moving average of the weights and pick/save it, e.g. 0.999 (default: 0, off)")
    g.add_argument("--erasing", type=float, default=0.0, metavar="P",
                   help="random erasing of a face patch with probability up to P, e.g. 0.5 (default: 0, off)")
    if soft_labels:
        g.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing, e.g. 0.1 (default: 0, hard labels)")
        g.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup of image pairs, e.g. 0.2 (default: 0, off)")
        g.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="cutmix of image pairs, e.g. 1.0 (default: 0, off)")
