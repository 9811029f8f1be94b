"""Keras, shared by the pixel kinds (CNN, Teachable Machine): imported on first use, inputs
shaped in one place, prediction in inference mode chunk by chunk with progress.

TensorFlow is imported lazily: importing it costs ~13 s and most users of ``fer_core`` never
touch a pixel model. Our own networks predict through their TensorFlow Lite twins (``lite``) when
they have one, without TensorFlow: ``predict_in_batches`` takes either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..errors import FerError, ModelFileError
from ..images import load_image

Progress = Callable[[int, int], None]


def import_keras():
    """Import Keras on first use, with TensorFlow's C++ log noise turned down.

    The backend is TensorFlow unless ``KERAS_BACKEND`` names another: training also runs on JAX
    or PyTorch (a GPU machine without TensorFlow), while TensorFlow Lite twins need TensorFlow.
    TensorFlow's Python logger is set to ERROR: its warnings (tf.function retracing after a few
    trainings in one server, deprecations) are nothing a user can act on, and its errors and all
    raised exceptions still show.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from ..measure.landmarker import quiet_native_logs

    with quiet_native_logs():  # TensorFlow's C++ start-up lines (CUDA probing, CPU features)
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # its start-up happens here, not at the first model call

            tensorflow.get_logger().setLevel("ERROR")
            # its devices are probed here too: on a machine without a GPU driver the first model
            # call printed "E0000 ... failed call to cuInit" on stderr of a run that went well
            tensorflow.config.list_physical_devices()

    return keras


def fit_images(images: Sequence[Any], size: tuple[int, int], channels: int) -> np.ndarray:
    """Centre-crop each image to the model's aspect ratio and resize: (n, h, w, channels) uint8.

    Accepts anything ``load_image`` does (arrays in any common layout, paths, bytes); this is the
    one place where CNN and Teachable Machine inputs are shaped, for training and prediction alike.
    """
    height, width = size
    out = np.empty((len(images), height, width, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        label = None if isinstance(image, (str, os.PathLike)) else f"image {i + 1}"
        pil = Image.fromarray(load_image(image, name=label))
        if pil.size != (width, height):
            pil = ImageOps.fit(pil, (width, height), Image.Resampling.LANCZOS)
        if channels == 1:
            out[i, ..., 0] = np.asarray(pil.convert("L"))
        else:
            out[i] = np.asarray(pil)
    return out


def run_network(model: Any, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """One batch through a network in inference mode: a Keras model or its TensorFlow Lite twin
    (``lite.LiteModel``, no TensorFlow); ``output`` names one output of a multi-output network."""
    from .lite import LiteModel

    if isinstance(model, LiteModel):
        return model.run(x)[output] if output else model.predict(x)
    keras = import_keras()
    y = model(x, training=False)
    return keras.ops.convert_to_numpy(y[output] if output else y)


def predict_in_batches(model: Any, x: np.ndarray, batch_size: int = 128,
                       progress: Progress | None = None) -> np.ndarray:
    """Call the model (Keras, or a ``lite.LiteModel``) in inference mode chunk by chunk (no
    ``predict`` tracing overhead per call)."""
    chunks = []
    for i in range(0, len(x), batch_size):
        chunks.append(run_network(model, x[i:i + batch_size]))
        if progress:
            progress(min(len(x), i + batch_size), len(x))
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, model.output_shape[-1]))


TTA_CHOICES: tuple[str, ...] = ("none", "mirror", "crops")
CROP_SHIFT = 2  # pixels of a 48-pixel face: inside the 10 % shifts training saw


def sidecar_tta(requested: str | None, metadata: dict, sidecar: Any) -> str:
    """The test-time views a saved network predicts with: as asked, else the ``"tta"`` its sidecar
    records (chosen by ``bench/tta_bench.py``), else face + mirror, as training scores epochs."""
    tta = requested or metadata.get("tta") or "mirror"
    if tta not in TTA_CHOICES:
        raise ModelFileError(f"{sidecar}: unknown test-time augmentation {tta!r}; use one of {', '.join(TTA_CHOICES)}")
    return tta


def tta_views(x: np.ndarray, tta: str = "mirror") -> list[np.ndarray]:
    """The test-time views of a batch of (n, h, w, c) faces: ``none`` the faces; ``mirror`` each
    face and its mirror; ``crops`` five crops of the edge-padded face (centre and the four corners,
    shifted ``CROP_SHIFT`` pixels) and their mirrors, ten views in all."""
    if tta not in TTA_CHOICES:
        raise FerError(f"unknown test-time augmentation {tta!r}: use one of {', '.join(TTA_CHOICES)}")
    if tta == "none":
        return [x]
    bases = [x]
    if tta == "crops":
        s, (h, w) = CROP_SHIFT, x.shape[1:3]
        padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
        bases += [padded[:, dy:dy + h, dx:dx + w] for dy, dx in ((0, 0), (0, 2 * s), (2 * s, 0), (2 * s, 2 * s))]
    return [view for base in bases for view in (base, base[:, :, ::-1])]


def predict_views(model: Any, x: np.ndarray, tta: str = "mirror", batch_size: int = 128,
                  progress: Progress | None = None, output: str | None = None) -> np.ndarray:
    """Mean prediction over each face's test-time views (``tta_views``), chunk by chunk.

    Training flips, shifts and zooms faces at random, so those views are equally valid; averaging
    face and mirror adds about 0.8 points of FER2013 val accuracy for the strong preset
    (``bench/tta_bench.py`` measures the crops). ``output`` names one output of a multi-output
    network (the AU bottleneck's AU units).
    """
    chunks = []
    for i in range(0, len(x), batch_size):
        views = tta_views(x[i:i + batch_size], tta)
        chunks.append(np.mean([run_network(model, v, output).astype(np.float64) for v in views], axis=0))
        if progress:
            progress(min(len(x), i + batch_size), len(x))
    return np.concatenate(chunks) if chunks else np.zeros((0, model.output_shape[-1]))
