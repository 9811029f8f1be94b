"""Light twins of our Keras models: the same network as a TensorFlow Lite file, run by LiteRT.

Importing TensorFlow costs 7-15 s on this machine; LiteRT's interpreter (``ai-edge-litert``) loads
in a fraction of a second and needs no TensorFlow. So every bundled or trained ``.keras`` model
(CNN, AU bottleneck) gets a ``.tflite`` twin beside it, converted by our own code from the Keras
model (float32, no quantization), and the predictors run on the twin; Keras stays for training.

The model's ``.meta.json`` sidecar records the twin under ``"lite"``: its file name, its SHA-256
and the SHA-256 of the ``.keras`` it was made from. A twin is used only while that ``.keras``
still has that checksum (else it is stale: the predictor falls back to Keras) and the twin's own
bytes still match theirs. Users' uploaded Keras models (Teachable Machine) never get one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..errors import FerError, ModelFileError, one_line
from .keras_safety import check_lite_tensor_sizes

LITE_SUFFIX = ".tflite"
LITE_RECORD = "lite"  # the sidecar key of the twin's record
LITE_FORMAT = "fer_core.lite/1"
MAX_LITE_BYTES = 128 * 2**20  # like a .keras file: our networks are 5 MB
# LiteRT threads per interpreter. The dashboard runs on two cores and serves one prediction at a
# time per model (a lock), so two threads use the machine without oversubscribing it; the
# environment variable overrides it (1 in worker processes that each take a core).
THREADS_ENV = "FER_LITE_THREADS"
DEFAULT_THREADS = 2

log = logging.getLogger(__name__)


def lite_threads() -> int:
    raw = os.environ.get(THREADS_ENV, "")
    try:
        value = int(raw) if raw else DEFAULT_THREADS
    except ValueError:
        value = DEFAULT_THREADS
    return max(1, min(value, config.usable_cpus()))


def lite_path(keras_path: str | os.PathLike[str]) -> Path:
    """Where a ``.keras`` model's twin goes: ``<name>.tflite`` beside it."""
    return Path(keras_path).with_suffix(LITE_SUFFIX)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LiteModel:
    """A twin loaded in LiteRT: float32 images (n, h, w, c) in, named float outputs out.

    ``input_shape`` / ``output_shape`` read like a Keras model's (batch ``None``). One
    interpreter guarded by a lock: the dashboard shares a loaded model between sessions.
    """

    def __init__(self, data: bytes, source: str, record: Mapping[str, Any] | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from ..measure.landmarker import quiet_native_logs

        self.record = dict(record or {})  # the sidecar's record of this twin

        self._data = bytes(data)  # the interpreter reads the buffer it was given
        hint = "remake it with: python -m fer_core export-lite --model <the .keras file>"  # no backticks: shown as typed
        try:
            self._interpreter = Interpreter(model_content=self._data, num_threads=lite_threads())
            check_lite_tensor_sizes(self._interpreter, source, hint)
            self._runner = self._interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{source}: cannot load this TensorFlow Lite twin ({one_line(exc, 160)}); "
                                 f"{hint}") from None
        details = self._runner.get_input_details()
        if len(details) != 1:
            raise ModelFileError(f"{source}: the twin has {len(details)} inputs, not one image; {hint}")
        self._input_name, info = next(iter(details.items()))
        self.input_shape: tuple[int | None, ...] = (None, *(int(s) for s in info["shape"][1:]))
        self.output_names = tuple(sorted(self._runner.get_output_details()))
        self._lock = threading.Lock()
        with quiet_native_logs():  # the first run applies the XNNPACK delegate, which says so on stderr
            out = self.run(np.zeros((1, *self.input_shape[1:]), np.float32))
        self.output_shapes = {k: (None, *v.shape[1:]) for k, v in out.items()}

    @property
    def output_name(self) -> str:
        """The only output's name (a one-output network's class probabilities)."""
        if len(self.output_names) != 1:
            raise FerError(f"this network has outputs {', '.join(self.output_names)}; name the one you want")
        return self.output_names[0]

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        return self.output_shapes[self.output_name]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for a batch of inputs (float32), by name."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        with self._lock:
            out = self._runner(**{self._input_name: x})
        return {k: np.array(v) for k, v in out.items()}

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The only output for a batch of inputs."""
        return self.run(x)[self.output_name]


def lite_record(metadata: Mapping[str, Any] | None) -> dict | None:
    """The sidecar's record of the twin, if it has a well-formed one."""
    record = (metadata or {}).get(LITE_RECORD)
    if not isinstance(record, dict):
        return None
    name = record.get("file")
    if (not isinstance(name, str) or not name.endswith(LITE_SUFFIX) or Path(name).name != name
            or not all(isinstance(record.get(k), str) for k in ("sha256", "keras_sha256"))):
        return None
    return record


def fresh_twin(keras_path: str | os.PathLike[str], metadata: Mapping[str, Any] | None,
               keras_sha256: str | None = None, warn: bool = True) -> Path | None:
    """The recorded twin of a ``.keras`` model if it exists and was made from this very file
    (its SHA-256, ``keras_sha256`` if already known); else None (stale, missing or never made)."""
    from ..manifest import sha256_file

    keras_path = Path(keras_path)
    record = lite_record(metadata)
    if record is None:
        return None
    twin = keras_path.parent / record["file"]
    if not twin.is_file():
        if warn:
            log.warning("%s: its TensorFlow Lite twin %s is missing; using Keras", keras_path, twin.name)
        return None
    if (keras_sha256 or sha256_file(keras_path)) != record["keras_sha256"]:
        if warn:
            log.warning("%s: its TensorFlow Lite twin was made from another version of it; using Keras "
                        "(remake the twin with export-lite)", keras_path)
        return None
    return twin


def load_twin(keras_path: str | os.PathLike[str], metadata: Mapping[str, Any] | None,
              keras_sha256: str | None = None) -> LiteModel | None:
    """The fresh twin (``fresh_twin``) of a ``.keras`` model loaded in LiteRT (its sidecar record
    as ``.record``), or None when there is none or its bytes changed since it was recorded."""
    from ..safe_files import read_regular_file

    twin = fresh_twin(keras_path, metadata, keras_sha256)
    if twin is None:
        return None
    record = lite_record(metadata)
    data = read_regular_file(twin, MAX_LITE_BYTES, "remake it with export-lite", what="TensorFlow Lite model")
    if _sha256(data) != record["sha256"]:
        log.warning("%s: changed since it was made (checksum differs from its record); using Keras", twin)
        return None
    return LiteModel(data, str(twin), record)


def copy_twin(source: str | os.PathLike[str], target: str | os.PathLike[str], metadata: dict) -> dict:
    """The sidecar of ``source`` for a copy of it at ``target``: its twin copied beside the copy
    and recorded under the new name, or the record dropped when there is no twin to copy."""
    from ..fileio import atomic_copy

    record = lite_record(metadata)
    twin = Path(source).parent / record["file"] if record else None
    out = {k: v for k, v in metadata.items() if k != LITE_RECORD}
    if twin is not None and twin.is_file():
        atomic_copy(twin, lite_path(target))
        out[LITE_RECORD] = {**record, "file": lite_path(target).name}
    return out


def export_lite(keras_path: str | os.PathLike[str],
                extra: Callable[[Any], Mapping[str, Any]] | None = None) -> Path:
    """Convert a ``.keras`` model that has a sidecar to its twin (float32) and record it in the
    sidecar; returns the twin's path. ``extra(model)``: further keys of the record (what a
    predictor needs besides the network's outputs, e.g. the AU bottleneck's head weights).

    The twin is checked before it is recorded: it must give the Keras model's outputs on random
    inputs (max abs difference below 1e-4)."""
    from .. import fileio
    from ..manifest import sha256_file
    from ..measure.landmarker import quiet_native_logs
    from .cnn import _write_metadata, load_keras_file, read_cnn_metadata
    from .keras_io import import_keras

    keras_path = Path(keras_path)
    metadata = read_cnn_metadata(keras_path)
    if metadata is None:
        raise FerError(f"{keras_path}: no {keras_path.with_suffix('.meta.json').name} beside it; only this "
                       "project's CNN and AU-bottleneck models get a TensorFlow Lite twin")
    backend = import_keras().backend.backend()
    if backend != "tensorflow":
        raise FerError(f"{keras_path}: TensorFlow Lite twins are converted on Keras's TensorFlow backend (this "
                       f"one runs {backend}); run export-lite where TensorFlow is installed")
    keras_sha256 = sha256_file(keras_path)
    model = load_keras_file(keras_path)
    import tensorflow as tf

    shape = tuple(model.input_shape)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # float32: no optimizations asked for
    try:
        with contextlib.redirect_stdout(io.StringIO()), quiet_native_logs():  # Keras prints the SavedModel
            data = converter.convert()
    except Exception as exc:  # the converter raises many types; all mean "this network does not convert"
        raise FerError(f"{keras_path}: cannot convert to TensorFlow Lite ({one_line(exc, 200)})") from None
    twin = LiteModel(data, str(lite_path(keras_path)))
    x = np.random.default_rng(0).random((4, *shape[1:]), dtype=np.float32)
    y = model(x, training=False)
    expected = {k: np.asarray(v) for k, v in y.items()} if isinstance(y, Mapping) else {twin.output_name: np.asarray(y)}
    got = twin.run(x)
    if set(got) != set(expected):
        raise FerError(f"{keras_path}: the TensorFlow Lite twin has outputs {sorted(got)}, not {sorted(expected)}")
    diff = max(float(np.abs(got[k] - expected[k]).max()) for k in expected)
    if not diff < 1e-4:  # NaN too
        raise FerError(f"{keras_path}: the TensorFlow Lite twin differs from the Keras model by {diff:.2g}; not kept")
    target = fileio.atomic_write_bytes(lite_path(keras_path), data)
    record = {"format": LITE_FORMAT, "file": target.name, "sha256": _sha256(data), "keras_sha256": keras_sha256,
              "outputs": sorted(got), "tensorflow_version": tf.__version__, "max_abs_diff_check": diff}
    record.update(extra(model) if extra else {})
    _write_metadata(keras_path, {**metadata, LITE_RECORD: record})
    return target
