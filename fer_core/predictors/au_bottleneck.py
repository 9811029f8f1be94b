"""The AU-bottleneck network (kind ``au-bottleneck``): a concept-bottleneck model whose only path
from pixels to emotion runs through the 17 Action Units.

    face crop (48x48 gray) -> CNN trunk -> 17 AU units -> one linear softmax layer -> emotion

The AU units are trained to be the AUs the embedded extractor measures on the same image (as
z-scores of the training faces: ``AU = mean + std * z``), so the emotion head is a multinomial
logistic regression over AU intensities — exactly an ``AUModel`` of kind ``au-logreg`` whose
"standardisation" is that fixed affine map. Its explanation is therefore the logistic
regression's: per-AU contributions plus the intercept reproduce the logits. Each face is read
together with its mirror image (the AU units are averaged; AUs are left/right means, so the
mirror is the same face), and the head is applied to that average, so the explanation stays exact.

Three ways to train a concept-bottleneck model (Koh et al., ICML 2020), ``recipe``:

- ``joint``: both losses at once, cross-entropy on the emotion + ``lam`` x masked MSE between the
  AU units and the measured AUs, usually starting from the trained CNN's trunk;
- ``sequential``: the AU regressor first (MSE only), then the head fitted on the regressor's AUs;
- ``independent``: the AU regressor first, then the head fitted on the measured AUs.

Images whose face the extractor did not measure have no AU targets and contribute only the
emotion loss. The best epoch is chosen on a stratified share of the *training* folder held out
from fitting (``selected_on``); a validation folder, when given, is scored once at the end
(``evaluated_on``), never used for a choice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..au_table import AU_COLUMNS, au_code
from ..emotions import SIX_EMOTIONS
from ..errors import DatasetError, FerError, ModelFileError, StoppedBeforeAnEpoch, one_line
from ..evaluation.metrics import EvaluationReport, evaluation_report
from ..fileio import atomic_copy
from ..provenance import file_sha256, fitted_by
from .au_models import MAX_MODEL_VALUE, MIN_SCALE, AUModel, check_info, field_error, read_array, read_classes
from .base import Explanation, FaceInput, Predictor, Progress
from .cnn import (
    CNN_SIZE,
    TRAINING_LIBRARIES,
    _augmenter,
    _write_metadata,
    build_cnn,
    check_keras_path,
    copies_to_fitting,
    copy_trunk,
    drawn_name,
    epoch_guard,
    load_dataset,
    load_keras_file,
    load_network,
    metadata_path,
    picked_on_split,
    put_in_place,
    read_cnn_metadata,
    remove_killed_training_parts,
    remove_training,
    require_every_emotion,
    sidecar_files,
    sidecar_folder,
    stratified_split,
    training_path,
    whole_epochs,
    write_twin,
)
from .keras_io import fit_images, import_keras, predict_views, sidecar_tta
from .lite import copy_twin, lite_path, lite_record
from .recipe import Recipe

KIND = "au-bottleneck"
RECIPES = ("joint", "sequential", "independent")
AU_LAYER = "au_units"
HEAD_LAYER = "emotion"

EpochProgress = Callable[[int, Mapping[str, float]], None]


# ----------------------------------------------------------------------------- the network

def build_bottleneck(num_classes: int, preset: str = "strong", seed: int | None = None,
                     init_from: Any = None, tap: str = "dense"):
    """Trunk of the ``preset`` CNN -> Dense(17) AU units (linear z-scores) -> Dense(k, softmax).

    ``tap``: where the AU units read the trunk: ``dense``, the CNN's last hidden layer (after its
    dropout), or ``gap``, its pooled convolutional features (the dense block is then not used).
    ``init_from`` (a Keras model of the same preset, e.g. the trained CNN) gives the trunk its
    weights, layer by layer in order (Keras may have named its layers automatically); the AU units
    and the head start fresh.
    """
    keras = import_keras()
    from keras import layers

    base = build_cnn(preset, num_classes, seed=seed)
    if init_from is not None:
        copy_trunk(base, init_from, preset)
    if tap == "dense":
        trunk = base.get_layer(HEAD_LAYER).input
    elif tap == "gap":
        pools = [layer for layer in base.layers if isinstance(layer, layers.GlobalAveragePooling2D)]
        if not pools:
            raise FerError(f"the {preset!r} preset has no pooled features to tap; use --tap dense")
        trunk = pools[-1].output
    else:
        raise FerError(f"unknown tap {tap!r}: use dense or gap")
    aus = layers.Dense(len(AU_COLUMNS), name=AU_LAYER)(trunk)
    emotion = layers.Dense(num_classes, activation="softmax", name=HEAD_LAYER)(aus)
    return keras.Model(base.input, {HEAD_LAYER: emotion, AU_LAYER: aus}, name=f"au_bottleneck_{preset}")


def head_weights(model, source: str = "model") -> tuple[np.ndarray, np.ndarray]:
    """(kernel (17, k), bias (k,)) of the emotion head: of the Keras network, or of its twin's
    record (the twin's graph has them only as constants). The record is read like an AU model
    file (``read_array``: finite numbers of sane size, 17 rows), since the explanation and every
    prediction go through it; ``source`` names the sidecar in the refusal."""
    from .lite import LITE_RECORD, LiteModel

    if isinstance(model, LiteModel):
        head = (model.record or {}).get("head")
        if not isinstance(head, dict):
            raise KeyError("the TensorFlow Lite twin's record has no head weights")
        kernel = read_array(head.get("kernel"), source, f"{LITE_RECORD}.head.kernel", (len(AU_COLUMNS), None))
        bias = read_array(head.get("bias"), source, f"{LITE_RECORD}.head.bias", (None,))
        return kernel.astype(np.float32), bias.astype(np.float32)
    kernel, bias = model.get_layer(HEAD_LAYER).get_weights()
    return kernel, bias


def lite_extra(model) -> dict:
    """What the twin's record keeps besides the network: the head's weights, which the
    explanation reads (``head_as_au_model``)."""
    kernel, bias = head_weights(model)
    return {"head": {"kernel": kernel.tolist(), "bias": bias.tolist()}}


def export_lite_twin(path: Path) -> Path:
    """The ``.keras`` network's TensorFlow Lite twin, with the head's weights in its record."""
    from .lite import export_lite

    return export_lite(path, lite_extra)


def head_as_au_model(model, classes: Sequence[str], mean: np.ndarray, std: np.ndarray, info: dict | None = None,
                     source: str = "model") -> AUModel:
    """The emotion head as the AU logistic regression it is: ``logits = W . (AU - mean) / std + b``."""
    kernel, bias = head_weights(model, source)
    return AUModel(kind="au-logreg", classes=tuple(classes), au_columns=tuple(AU_COLUMNS),
                   mean=np.asarray(mean, float), scale=np.asarray(std, float),
                   weights=[np.asarray(kernel, float).T.copy()], biases=[np.asarray(bias, float).copy()],
                   info=info or {})


def au_units(model, x: np.ndarray, batch_size: int = 256, tta: str = "mirror",
             progress: Progress | None = None) -> np.ndarray:
    """The AU units (z-scores) of faces ``x`` (n, 48, 48, 1), averaged over each face's test-time
    views (``keras_io.tta_views``: face + mirror by default). The head is applied to the average,
    so the explanation stays exact whatever the views.
    ``model``: the Keras network or its TensorFlow Lite twin (``lite.LiteModel``)."""
    return predict_views(model, x, tta, batch_size, progress, AU_LAYER)


# ----------------------------------------------------------------------------- the predictor

def _sidecar_count(metadata: Mapping[str, Any], key: str, sidecar: str) -> int:
    """A face count of the sidecar (0 when absent), or one line naming the field."""
    value = metadata.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53 \
            or not float(value).is_integer():
        raise field_error(sidecar, key, "is not a whole number of at least 0")
    return int(value)


# An AU unit whose correlation with the measured AU on val is below this is "read loosely" (its
# sidecar's ``au_fidelity``; the bundled networks' AU14, AU15, AU17 and AU23, r 0.33-0.44).
LOOSE_FIDELITY = 0.5


class AUBottleneckPredictor(Predictor):
    """Face crops in; the AUs the network reads from the pixels, and the head's emotion over them."""

    kind = KIND
    inputs = "pixels"
    explains = True

    def __init__(self, path: str | os.PathLike[str], name: str | None = None, batch_size: int = 256,
                 runtime: str = "auto", keras_sha256: str | None = None, tta: str | None = None) -> None:
        self.path = Path(path)
        check_keras_path(self.path)
        self.metadata = read_cnn_metadata(self.path) or {}
        if self.metadata.get("kind") != KIND:
            raise ModelFileError(f"{self.path}: not an AU-bottleneck model ({metadata_path(self.path).name} "
                                 "must say kind au-bottleneck); train one with train-au-bottleneck")
        # The sidecar is checked like an AU model file: known distinct classes, 17 finite AU
        # means and positive scales (a zero or NaN would give constant or NaN AUs silently).
        sidecar = str(metadata_path(self.path))
        self.tta = sidecar_tta(tta, self.metadata, sidecar)  # the views whose AU units are averaged
        self.classes = read_classes(self.metadata.get("classes"), sidecar)
        self.mean = read_array(self.metadata.get("au_mean"), sidecar, "au_mean", (len(AU_COLUMNS),))
        self.std = read_array(self.metadata.get("au_std"), sidecar, "au_std", (len(AU_COLUMNS),))
        if (self.std < MIN_SCALE).any():  # training puts 1 for an AU that barely varied
            raise field_error(sidecar, "au_std", f"has zeros, negative values or values below {MIN_SCALE:g}")
        # The head's record, checked before the network is loaded: the AU model page shows it.
        head_metrics = self.metadata.get("head_metrics")
        if head_metrics is not None and not isinstance(head_metrics, dict):
            raise field_error(sidecar, "head_metrics", "is not an object")
        rows = sum(_sidecar_count(self.metadata, key, sidecar) for key in ("n_train", "n_selection"))
        # the faces that fitted the emotion layer, plus those held out to choose its penalty
        # (scored, never refitted on)
        head_info = {"metrics": head_metrics or {}, "data": {"rows": rows, "network_head": True}}
        check_info(head_info, sidecar, "head_metrics")
        self.network, self.runtime = load_network(self.path, self.metadata, runtime, keras_sha256)
        self.name = name or self.path.stem
        self.batch_size = batch_size
        try:
            self.head = head_as_au_model(self.network, self.classes, self.mean, self.std, head_info, source=sidecar)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{self.path}: not an AU-bottleneck network ({one_line(exc, 120)}); "
                                 "retrain the model") from None
        kernel = self.head.weights[0]
        if kernel.shape != (len(self.classes), len(AU_COLUMNS)) or len(self.head.biases[0]) != len(self.classes):
            raise ModelFileError(f"{self.path}: the network's layers do not match its metadata; retrain it")
        if not all(np.isfinite(a).all() and (np.abs(a) <= MAX_MODEL_VALUE).all() for a in (kernel, self.head.biases[0])):
            raise ModelFileError(f"{self.path}: the emotion layer's weights are not finite numbers of a trained "
                                 "network (training diverged?); retrain the model")

    def network_aus(self, faces: Sequence[FaceInput | np.ndarray], progress: Progress | None = None) -> np.ndarray:
        """(n, 17) AU intensities on OpenFace's 0-5 scale as the network reads them from the crop."""
        images = self.pixels_of(faces)
        if not images:
            return np.zeros((0, len(AU_COLUMNS)))
        x = fit_images(images, (CNN_SIZE, CNN_SIZE), 1).astype(np.float32) / 255.0
        return self.mean + self.std * au_units(self.network, x, self.batch_size, self.tta, progress)

    def head_aus(self, faces: Sequence[FaceInput | np.ndarray], progress: Progress | None = None) -> np.ndarray:
        """What the head decides on: the network's AUs, with those a mask hides set unknown on
        masked faces (an intervention on the bottleneck, as concept-bottleneck models allow: the
        network would otherwise read AUs off the mask's cloth)."""
        au = self.network_aus(faces, progress)
        masked = [i for i, f in enumerate(faces) if isinstance(f, FaceInput) and f.masked]
        if masked:
            from ..masks import hide

            au[masked] = [hide(a) for a in au[masked]]
        return au

    def predict_proba(self, faces, progress: Progress | None = None) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)))
        return self.head.predict_proba(self.head_aus(faces, progress))

    def explain(self, face: FaceInput | np.ndarray, top: int = 3) -> Explanation:
        au = self.head_aus([face])[0]
        ex = self.head.explain(au, top)
        extra = {"aus_network": {c: round(float(v), 3) for c, v in zip(AU_COLUMNS, au) if not np.isnan(v)}}
        measured = face.aus if isinstance(face, FaceInput) else None
        if measured is not None and not np.isnan(measured).all():
            extra["aus_measured"] = {c: round(float(v), 3) for c, v in zip(AU_COLUMNS, measured) if not np.isnan(v)}
        unknown = [au_code(c) for c, v in zip(AU_COLUMNS, au) if np.isnan(v)]
        if unknown:
            extra["unknown_aus"] = unknown
        # How closely its AU units follow the measured AUs on val (its sidecar's ``au_fidelity``),
        # for the AUs the sentence and its "against" line name that it reads only loosely: a reason
        # resting on one of those says less than its number suggests.
        fidelity = self.metadata.get("au_fidelity") or {}
        named = dict.fromkeys(c.au for c in (*ex.reasons, *ex.against))
        loose = {au: float(fidelity[au]) for au in named
                 if isinstance(fidelity.get(au), (int, float)) and fidelity[au] < LOOSE_FIDELITY}
        if loose:
            extra["loosely_read"] = loose
        return Explanation(ex.emotion, ex.probabilities, ex.ranked, ex.top, extra, baseline=ex.baseline)

    def au_model(self) -> AUModel:
        return self.head


# ----------------------------------------------------------------------------- training

@dataclass
class BottleneckTrainResult:
    """What ``train_au_bottleneck`` made and how good it is (selection share, validation, AU fidelity)."""
    path: Path
    metadata_path: Path
    history: dict[str, list[float]]
    selection: EvaluationReport  # the held-out share of the training folder that chose the epoch
    evaluation: EvaluationReport | None  # the validation folder, scored once at the end
    fidelity: dict[str, float]  # Pearson r per AU (network vs measured) on validation faces, and "mean"
    epochs_run: int
    stopped_by_user: bool
    seconds: float
    classes: tuple[str, ...] = ()
    selected_on: str = ""
    evaluated_on: str = ""
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def metrics(self):
        from ..manifest import Metrics

        report = self.evaluation or self.selection
        return Metrics.from_report(report, self.evaluated_on if self.evaluation else self.selected_on)


def _au_targets(paths: Sequence[Path], root: str | os.PathLike[str], table, progress: Progress | None) -> np.ndarray:
    """(n, 17) measured AUs of each image (NaN where no face was measured), from an AU table whose
    ``file`` is relative to ``root`` (this project's extract output), else measured now (cached)."""
    from .. import au_table as aut
    from ..errors import printable
    from ..images import LabeledImage, relative_file

    if table is None:
        from ..measure.extract import extract_table

        table = extract_table([LabeledImage(p, None) for p in paths], progress=progress, root=root)
    table = aut.first_faces(table)
    values = np.array(table[list(AU_COLUMNS)], dtype=float)  # a copy: pandas may hand out read-only views
    values[~aut.measured(table).to_numpy()] = np.nan
    by_file = dict(zip(table["file"].astype(str), values))
    keys = [printable(relative_file(p, root)) for p in paths]
    found = sum(k in by_file for k in keys)
    if found < 0.5 * len(keys):
        raise DatasetError(f"the AU table names only {found} of the {len(keys)} training images; give the table "
                           f"that python -m fer_core extract {root} wrote (file names relative to that folder)")
    return np.array([by_file.get(k, np.full(len(AU_COLUMNS), np.nan)) for k in keys], dtype=float)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def au_fidelity(network: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Pearson r per AU between the network's and the measured AUs (faces with both), and the mean."""
    r = {c.split("_")[0]: round(_pearson(network[:, j], measured[:, j]), 4) for j, c in enumerate(AU_COLUMNS)}
    values = [v for v in r.values() if not np.isnan(v)]
    r["mean"] = round(float(np.mean(values)), 4) if values else float("nan")
    return r


MIN_FIDELITY = 0.6  # mean Pearson r the AU units must reach to count as AUs when choosing
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)


def _trunk_features(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """What the AU units read, for each face averaged with its mirror image (as predictions are)."""
    keras = import_keras()
    trunk = keras.Model(model.input, model.get_layer(AU_LAYER).input)
    out = 0.0
    for view in (x, x[:, :, ::-1]):
        out = out + np.concatenate([keras.ops.convert_to_numpy(trunk(view[i:i + batch_size], training=False))
                                    for i in range(0, len(x), batch_size)])
    return out / 2


def _warm_start(model, fit: tuple, sel: tuple, k: int, mean: np.ndarray, std: np.ndarray) -> list[dict]:
    """AU units <- ridge regression of the measured AUs on the trunk's features; head <- logistic
    regression of the emotion on those AUs (both in z units). ``fit`` and ``sel`` are
    (x, z, has_au, y, targets) of the fitting and the selection share; the ridge penalty is chosen
    on the selection share: the best emotion accuracy among penalties whose AU units reach mean
    r >= MIN_FIDELITY there (else the most faithful). Returns the table it chose from."""
    from sklearn.linear_model import LogisticRegression, Ridge

    (xf, zf, hf, yf, _), (xs, _, _, ys, ts) = fit, sel
    feats_fit, feats_sel = _trunk_features(model, xf), _trunk_features(model, xs)
    grid = []
    for alpha in RIDGE_ALPHAS:
        ridge = Ridge(alpha=alpha).fit(feats_fit[hf], zf[hf])
        head = LogisticRegression(C=1.0, max_iter=3000).fit(ridge.predict(feats_fit), yf)
        z_sel = ridge.predict(feats_sel)
        grid.append({"alpha": alpha, "ridge": ridge, "head": head,
                     "selection_accuracy": round(float((head.predict(z_sel) == ys).mean()), 4),
                     "selection_mean_r": au_fidelity(mean + std * z_sel, ts)["mean"]})
    faithful = [g for g in grid if g["selection_mean_r"] >= MIN_FIDELITY]
    best = (max(faithful, key=lambda g: g["selection_accuracy"]) if faithful
            else max(grid, key=lambda g: g["selection_mean_r"]))
    ridge, head = best["ridge"], best["head"]
    model.get_layer(AU_LAYER).set_weights([ridge.coef_.T.astype(np.float32), ridge.intercept_.astype(np.float32)])
    coef, intercept = head.coef_, head.intercept_
    if k == 2:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    model.get_layer(HEAD_LAYER).set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return [{"alpha": g["alpha"], "selection_accuracy": g["selection_accuracy"],
             "selection_mean_r": g["selection_mean_r"], "chosen": g is best} for g in grid]


def check_training_settings(*, lam: float, holdout: float, epochs: int, batch_size: int, learning_rate: float,
                            limit_per_class: int | None, warm_start: bool) -> None:
    """Refuse settings that cannot train (one line each), before TensorFlow starts or a face is read."""
    def whole(value: Any, least: int) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= least

    def number(value: Any) -> bool:
        return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value)

    if not number(lam) or lam < 0:
        raise FerError(f"lambda {lam!r}: give the AU loss's weight, 0 or more")
    if not number(holdout) or not 0 < holdout < 1:
        raise FerError(f"holdout {holdout!r}: give the share of training images that picks the epoch, e.g. 0.1")
    if not whole(epochs, 0):
        raise FerError(f"epochs {epochs!r}: give a whole number, 0 or more (0 keeps the warm start)")
    if epochs == 0 and not warm_start:
        raise FerError("0 epochs without the warm start leaves the network untrained; train for an epoch or more")
    if not whole(batch_size, 1):
        raise FerError(f"batch size {batch_size!r}: give a whole number of at least 1")
    if not number(learning_rate) or learning_rate <= 0:
        raise FerError(f"learning rate {learning_rate!r}: give a number above 0, e.g. 1e-4")
    if limit_per_class is not None and not whole(limit_per_class, 1):
        raise FerError(f"limit per class {limit_per_class!r}: give a whole number of at least 1")


def train_au_bottleneck(train_dir: str | os.PathLike[str], val_dir: str | os.PathLike[str] | None = None, *,
                        out: str | os.PathLike[str], classes: Sequence[str] = SIX_EMOTIONS, recipe: str = "joint",
                        lam: float = 1.0, init: str | os.PathLike[str] | None = None, preset: str = "strong",
                        train_au_table=None, val_au_table=None, epochs: int = 10, batch_size: int = 64,
                        learning_rate: float = 1e-4, holdout: float = 0.1, augment: bool = True, seed: int = 0,
                        warm_start: bool = True, tap: str = "dense",
                        limit_per_class: int | None = None, progress: EpochProgress | None = None,
                        should_stop: Callable[[], bool] | None = None, load_progress: Progress | None = None,
                        command: str | None = None, training: Recipe | None = None,
                        in_place: bool = True, stop_reason: str = "user") -> BottleneckTrainResult:
    """Train an AU-bottleneck network on a labelled folder and save the best epoch to ``out``.

    ``init``: a ``.keras`` CNN whose trunk starts the network (the bundled cnn-fer2013 works);
    ``warm_start``: before fine-tuning, the AU units are fitted to the measured AUs by ridge
    regression on the trunk's features and the head by logistic regression on those AUs (closed
    form, seconds), so training starts from AU units that already are AUs;
    the learning rate decays along a cosine over the epochs (``training``: the shared ``recipe.Recipe``,
    for EMA, random erasing or another schedule; its label smoothing and mixing are not for AU targets);
    ``train_au_table`` / ``val_au_table``: AU tables of the two folders (``extract`` output), else
    the AUs are measured now (cached). ``lam`` weighs the AU loss against the emotion loss
    (``joint``); ``lam = 0`` trains an unnamed bottleneck, the reference of the lambda sweep.
    ``should_stop`` is asked after every batch; a Stop ends training at the last whole epoch
    (``StoppedBeforeAnEpoch`` in the first), as ``train_cnn``'s.
    """
    from .. import au_table as aut

    started = time.perf_counter()
    if recipe not in RECIPES:
        raise FerError(f"unknown recipe {recipe!r}: use one of {', '.join(RECIPES)}")
    check_training_settings(lam=lam, holdout=holdout, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, limit_per_class=limit_per_class, warm_start=warm_start)
    training = training or Recipe(schedule="cosine")
    if training.soft_labels:
        raise FerError("label smoothing, mixup and cutmix blend emotion labels but not AU targets: the AU "
                       "bottleneck takes only the recipe's schedule, EMA and erasing")
    out = Path(out)
    if out.suffix != ".keras":
        raise FerError(f"{out}: the AU-bottleneck output file must end with .keras")
    classes = tuple(classes)
    keras = import_keras()

    def read_table(t):
        return aut.read(t) if isinstance(t, (str, os.PathLike)) else t

    train = load_dataset(train_dir, classes, load_progress, limit_per_class, seed)
    require_every_emotion(train, train_dir)
    targets = _au_targets(train.paths, train_dir, read_table(train_au_table), load_progress)
    has_au = ~np.isnan(targets).any(axis=1)
    if has_au.sum() < 10:
        raise DatasetError(f"{train_dir}: fewer than 10 training faces have measured AUs; the AU units need targets")
    mean = targets[has_au].mean(axis=0)
    std = targets[has_au].std(axis=0)
    std[std < 1e-6] = 1.0
    z = np.where(has_au[:, None], (np.nan_to_num(targets) - mean) / std, 0.0).astype(np.float32)
    fit_idx, sel_idx = stratified_split(train.y, holdout, seed, classes)
    fit_idx, sel_idx, copies_moved = copies_to_fitting(train.paths, fit_idx, sel_idx, train.y)

    init_model = load_keras_file(init) if init else None
    trunk_picked_on_val = init is not None and val_dir is not None and picked_on_split(init, val_dir)
    model = build_bottleneck(len(classes), preset, seed=seed, init_from=init_model, tap=tap)
    warm_grid: list[dict] = []
    if warm_start:
        def share(idx):
            return train.x[idx], z[idx], has_au[idx], train.y[idx], targets[idx]

        warm_grid = _warm_start(model, share(fit_idx), share(sel_idx), len(classes), mean, std)
    joint = recipe == "joint"
    loss_weights = {HEAD_LAYER: 1.0 if joint else 0.0, AU_LAYER: float(lam) if joint else 1.0}
    model.compile(optimizer=training.optimizer(learning_rate, -(-len(fit_idx) // batch_size), epochs),
                  loss={HEAD_LAYER: "sparse_categorical_crossentropy", AU_LAYER: "mse"},
                  loss_weights=loss_weights, metrics={HEAD_LAYER: ["accuracy"]})

    def dataset(idx: np.ndarray, fitting: bool):
        return training.training_batches(
            train.x[idx], {HEAD_LAYER: train.y[idx], AU_LAYER: z[idx]},
            {HEAD_LAYER: np.ones(len(idx), np.float32), AU_LAYER: has_au[idx].astype(np.float32)},
            batch_size=batch_size, seed=seed, augmenter=_augmenter(seed) if fitting and augment else None,
            train=fitting)

    monitor, mode = (f"val_{HEAD_LAYER}_accuracy", "max") if joint else (f"val_{AU_LAYER}_loss", "min")
    guard = epoch_guard(progress, should_stop, monitor, mode)  # first: a cut-short epoch is never the best
    keep_best = keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=max(epochs, 1),
                                              restore_best_weights=True)  # no early stop: the best epoch's weights
    metadata: dict[str, Any] = {
        "format": "fer_core.au_bottleneck/1", "kind": KIND, "preset": preset, "recipe": recipe, "lambda": lam,
        "classes": list(classes), "au_columns": list(AU_COLUMNS), "au_mean": mean.tolist(), "au_std": std.tolist(),
        "input_shape": [CNN_SIZE, CNN_SIZE, 1], "input_scale": "gray 0..1", "init": None if init is None else str(init),
        "train_dir": sidecar_folder(train_dir), "val_dir": None if val_dir is None else sidecar_folder(val_dir),
        "n_train": int(len(fit_idx)), "n_selection": int(len(sel_idx)), "held_out_copies_moved": copies_moved, "faces_with_aus": int(has_au.sum()),
        # the share that chose the head's fit (its slice, drawn again, scores test-time views: bench/tta_bench.py)
        # and whether the trunk's epoch was chosen on --val, so ``picked_on_split`` reads this network right
        "holdout": holdout, "init_picked_on_val": trunk_picked_on_val,
        "seed": seed, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "warm_start": warm_start, "tap": tap, "warm_start_grid": warm_grid, "training_recipe": training.to_dict(),
        "augment": augment, "limit_per_class": limit_per_class, "command": command,
        "keras_version": keras.__version__, "keras_backend": keras.backend.backend(),
        "init_sha256": None if init is None else file_sha256(init), "fitted_by": fitted_by(TRAINING_LIBRARIES),
        "status": "training",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    work = training_path(out)  # out (perhaps the --init model) stays as it is until the end
    remove_killed_training_parts(work)
    _write_metadata(work, metadata)
    hist: dict[str, list[float]] = {}
    if epochs > 0:  # 0: the warm start is the model (AU units and head fitted on the frozen trunk)
        history = model.fit(dataset(fit_idx, True), validation_data=dataset(sel_idx, False), epochs=epochs,
                            callbacks=[guard, *training.callbacks(), keep_best, *training.plateau_callbacks(2)],
                            shuffle=False, verbose=0)
        hist = whole_epochs(history, guard)
        if not hist.get("loss"):
            remove_training(work)
            raise StoppedBeforeAnEpoch("training was stopped before the first epoch finished: there is nothing to save")

    if not joint and epochs > 0:  # the head, fitted on the regressor's AUs (sequential) or on the measured ones
        from sklearn.linear_model import LogisticRegressionCV

        if recipe == "sequential":
            features, rows = au_units(model, train.x[fit_idx]), fit_idx
        else:
            rows = fit_idx[has_au[fit_idx]]
            features = z[rows]
        head = LogisticRegressionCV(Cs=[0.01, 0.1, 1.0, 10.0], cv=3, max_iter=2000, scoring="accuracy",
                                    l1_ratios=(0.0,), use_legacy_attributes=False).fit(features, train.y[rows])
        coef, intercept = head.coef_, head.intercept_
        if len(classes) == 2:
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
        model.get_layer(HEAD_LAYER).set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])

    def scores(x: np.ndarray, y: np.ndarray, name: str) -> tuple[EvaluationReport, np.ndarray]:
        au = mean + std * au_units(model, x)
        proba = head_as_au_model(model, classes, mean, std).predict_proba(au)
        report = evaluation_report([classes[i] for i in y], [classes[i] for i in proba.argmax(1)], classes,
                                   model=name)
        return report, au

    selection, sel_aus = scores(train.x[sel_idx], train.y[sel_idx], out.stem)
    moved = f"; {copies_moved:,} byte-for-byte copies of fitted images moved to fitting" if copies_moved else ""
    selected_on = f"{holdout:.0%} of {Path(train_dir).name} held out from fitting ({len(sel_idx):,} images{moved})"
    selection_fidelity = au_fidelity(sel_aus, targets[sel_idx])
    evaluation, fidelity, skipped = None, selection_fidelity, train.skipped
    evaluated_on = ""
    if val_dir is not None:
        val = load_dataset(val_dir, classes, load_progress, limit_per_class, seed)
        evaluation, val_aus = scores(val.x, val.y, out.stem)
        fidelity = au_fidelity(val_aus, _au_targets(val.paths, val_dir, read_table(val_au_table), load_progress))
        scored = drawn_name(val_dir, limit_per_class)
        evaluated_on = f"{scored} ({len(val.y):,} images, six emotions; not used for any choice)" \
            if len(classes) == 6 else f"{scored} ({len(val.y):,} images; not used for any choice)"
        if trunk_picked_on_val:  # honest about the trunk's past
            evaluated_on = evaluated_on[:-1] + f" of this model, but its trunk is {Path(init).stem}'s, " \
                                               "whose best epoch this split picked)"
        skipped = skipped + val.skipped
    # Save the best weights into an uncompiled twin: no optimizer state.
    inference = build_bottleneck(len(classes), preset, tap=tap)
    inference.set_weights(model.get_weights())
    inference.save(work)
    seconds = time.perf_counter() - started
    final = out if in_place else work  # in_place=False: left for save_and_register, as train_cnn's
    result = BottleneckTrainResult(final, metadata_path(final), hist, selection, evaluation, fidelity,
                                   len(hist.get("loss", [])), guard.stopped_by_user, seconds, classes,
                                   selected_on, evaluated_on, tuple(skipped))
    head_metrics = {"holdout": {k: v for k, v in selection.to_dict().items()
                                if k in ("n", "accuracy", "accuracy_ci95", "macro_f1", "per_class", "labels", "confusion")}}
    metadata.update(status="done", epochs_run=result.epochs_run, best_epoch=keep_best.best_epoch + 1 if hist else 0,
                    stopped_by_user=guard.stopped_by_user and stop_reason == "user",
                    stopped_by=stop_reason if guard.stopped_by_user and result.epochs_run < epochs else None,
                    seconds=round(seconds, 1),
                    selected_on=selected_on,
                    evaluated_on=evaluated_on, metrics=result.metrics.to_dict(), selection=selection.to_dict(),
                    evaluation=None if evaluation is None else evaluation.to_dict(), au_fidelity=fidelity,
                    selection_fidelity=selection_fidelity,
                    head_metrics=head_metrics, history=hist)
    _write_metadata(work, metadata)
    if in_place:
        put_in_place(work, out)
    write_twin(export_lite_twin, final)
    return result


# ----------------------------------------------------------------------------- registry

def _load(path: Path, entry) -> AUBottleneckPredictor:
    return AUBottleneckPredictor(path, name=entry.name, keras_sha256=entry.sha256)


def _save(result: BottleneckTrainResult | Path, path: Path) -> list[Path]:
    """A finished training (its result, or the ``.keras`` it wrote) copied to ``path`` with its sidecar."""
    path = Path(path)
    if path.suffix != ".keras":
        raise FerError(f"{path}: the AU-bottleneck file must end with .keras")
    source = Path(result) if isinstance(result, (str, os.PathLike)) else Path(result.path)
    if source.resolve() != path.resolve():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(source, path)
        meta = copy_twin(source, path, json.loads(metadata_path(source).read_text(encoding="utf8")))
        _write_metadata(path, {**meta, "name": path.stem})
    written = [path, metadata_path(path)]
    return written + [lite_path(path)] if lite_record(read_cnn_metadata(path)) else written


def _claims(path: Path) -> bool:
    if path.suffix.lower() != ".keras" or path.is_dir() or not metadata_path(path).is_file():
        return False
    return (read_cnn_metadata(path) or {}).get("kind") == KIND


def _kinds():
    from .registry import ModelKind

    return (ModelKind(KIND, "CNN trunk -> the 17 AUs -> one linear layer: pixel accuracy, explained like the "
                      "logistic regression", "pixels", True, _load, _save, "{name}.keras", _claims, export_lite_twin,
                      companions=sidecar_files),)
