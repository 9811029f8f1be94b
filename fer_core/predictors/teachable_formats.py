"""Teachable Machine's two other image-model downloads: TensorFlow.js and TensorFlow Lite.

TensorFlow.js (the default download) is ``model.json`` + ``weights.bin`` + ``metadata.json``.
``model.json`` holds a Keras model config (``modelTopology``) and a ``weightsManifest``: groups of
shard files whose concatenated bytes are the weights, little-endian, in the listed order and
shapes. We read it without the ``tensorflowjs`` package: the topology goes through the same
sanitising as a Keras file's config (``teachable.sanitize_model_config``), the shards are only
files of the same upload (no absolute paths, no ``..``), and the weights are decoded with NumPy.

TensorFlow Lite is ``model_unquant.tflite`` (float) or ``model.tflite`` (quantized, uint8 in and
out) + ``labels.txt``; LiteRT's interpreter runs it (its built-in operators only: a model that
needs custom or TensorFlow operators fails to load). It needs no TensorFlow at all.
"""

from __future__ import annotations

import math
import posixpath
import re
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ModelFileError, one_line
from ..safe_files import parse_json
from .base import Progress
from .keras_safety import MAX_PARAMETERS, check_lite_tensor_sizes, finite_weight

TFJS_NAME = "model.json"
METADATA_NAME = "metadata.json"
TFLITE_FLOAT_NAME = "model_unquant.tflite"
TFLITE_SIGNATURE = b"TFL3"  # the FlatBuffer file identifier, at bytes 4..8
MAX_RANK = 8
# weightsManifest dtypes: stored dtype of a plain weight and of a quantized one.
_PLAIN_DTYPES = {"float32": "<f4"}
_QUANTIZED_DTYPES = {"uint8": "<u1", "uint16": "<u2", "float16": "<f2"}


# ----------------------------------------------------------------------------- TensorFlow.js

def tfjs_spec(data: bytes, source: str, hint: str) -> dict:
    """``model.json`` of a TF.js *layers* model (what Teachable Machine writes), parsed."""
    spec = parse_json(data, source, hint)
    if not isinstance(spec, dict) or ("modelTopology" not in spec and "weightsManifest" not in spec):
        raise ModelFileError(f"{source}: not a TensorFlow.js model.json (no modelTopology); {hint}")
    fmt = spec.get("format")
    if fmt == "graph-model" or (isinstance(spec.get("modelTopology"), dict) and "node" in spec["modelTopology"]):
        raise ModelFileError(f"{source}: a TensorFlow.js graph model, not a layers model; only Teachable "
                             f"Machine's layers models load here; {hint}")
    if fmt not in (None, "layers-model"):
        raise ModelFileError(f"{source}: TensorFlow.js format {fmt!r}, not layers-model; {hint}")
    return spec


def tfjs_topology(spec: dict) -> Any:
    """The Keras model config: ``modelTopology`` itself (tfjs ``model.save``) or its
    ``model_config`` (tensorflowjs_converter from a Keras file)."""
    topology = spec.get("modelTopology")
    if isinstance(topology, dict) and "model_config" in topology:
        return topology["model_config"]
    return topology


def _groups(spec: dict, source: str, hint: str) -> list[dict]:
    groups = spec.get("weightsManifest")
    if not isinstance(groups, list) or not groups or not all(
            isinstance(g, dict) and isinstance(g.get("paths"), list) and isinstance(g.get("weights"), list)
            for g in groups):
        raise ModelFileError(f"{source}: weightsManifest is missing or is not a list of "
                             f"{{paths, weights}} groups; {hint}")
    return groups


def shard_key(model_key: str, path: Any, source: str, hint: str) -> str:
    """The member a weightsManifest path names, relative to ``model.json``'s folder; paths that
    could leave the upload (absolute, ``..``, URLs, backslashes) are refused."""
    if (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or ":" in path
            or "\x00" in path or ".." in path.split("/")):
        raise ModelFileError(f"{source}: weight file path {str(path)[:80]!r} points outside the export, so it is "
                             f"not read; {hint}")
    return posixpath.normpath(posixpath.join(posixpath.dirname(model_key), path))


def shard_keys(spec: dict, model_key: str, source: str, hint: str) -> list[str]:
    """Every shard file the weightsManifest names, in order."""
    return [shard_key(model_key, path, source, hint) for group in _groups(spec, source, hint)
            for path in group["paths"]]


def missing_shard(source: str, key: str) -> ModelFileError:
    return ModelFileError(f"{source}: weight file {posixpath.basename(key)} named in model.json is missing; "
                          "upload it together with model.json (or the whole export zip)")


def _shape(weight: dict, source: str, hint: str) -> tuple[int, ...]:
    shape = weight.get("shape")
    if (not isinstance(shape, list) or len(shape) > MAX_RANK
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_PARAMETERS for s in shape)
            or math.prod(shape) > MAX_PARAMETERS):
        raise ModelFileError(f"{source}: weight {str(weight.get('name'))[:80]!r} has no valid shape "
                             f"(at most {MAX_PARAMETERS:,} values); {hint}")
    return tuple(shape)


def _hold(shards: str) -> str:
    return "hold" if "," in shards else "holds"


def _decode(buffer: bytes, offset: int, weight: dict, shape: tuple[int, ...], name: str,
            shards: str, source: str, hint: str) -> tuple[np.ndarray, int]:
    """One weight's float32 values at ``offset`` (dequantized if stored quantized) and its size."""
    quant = weight.get("quantization")
    dtype = weight.get("dtype", "float32")
    if not isinstance(dtype, str):  # a list or an object: no dtype name (and not hashable)
        raise ModelFileError(f"{source}: weight {name} has a dtype that is not text ({str(dtype)[:40]!r}); {hint}")
    if quant is not None:
        qtype = quant.get("dtype") if isinstance(quant, dict) else None
        if not isinstance(qtype, str) or qtype not in _QUANTIZED_DTYPES or dtype != "float32":
            raise ModelFileError(f"{source}: weight {name} is quantized as {qtype!r}; only uint8, uint16 and "
                                 f"float16 quantization load here; {hint}")
        stored = np.dtype(_QUANTIZED_DTYPES[qtype])
    elif dtype in _PLAIN_DTYPES:
        stored = np.dtype(_PLAIN_DTYPES[dtype])
    else:
        raise ModelFileError(f"{source}: weight {name} holds {dtype!r} values; only float32 weights (or uint8, "
                             f"uint16, float16 quantized ones) load here; {hint}")
    count = math.prod(shape)
    size = count * stored.itemsize
    if offset + size > len(buffer):
        raise ModelFileError(f"{source}: {shards} {_hold(shards)} {len(buffer):,} bytes, "
                             f"too few for the weights model.json lists (weight {name} ends at byte "
                             f"{offset + size:,}); download the export again")
    raw = np.frombuffer(buffer, stored, count, offset).reshape(shape)
    if quant is None or qtype == "float16":
        return finite_weight(raw.astype(np.float32), source, name, hint), size
    scale, low = quant.get("scale"), quant.get("min")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (scale, low)):
        raise ModelFileError(f"{source}: weight {name} is {qtype}-quantized without a numeric scale and min; {hint}")
    with np.errstate(over="ignore", invalid="ignore"):  # a scale beyond float32: refused as infinite below
        values = (raw.astype(np.float32) * np.float32(scale) + np.float32(low)).astype(np.float32)
    return finite_weight(values, source, name, hint), size


def tfjs_weights(spec: dict, files: Mapping[str, bytes], model_key: str, source: str,
                 hint: str) -> dict[str, dict[str, np.ndarray]]:
    """``leaf layer name -> {variable name: values}`` from the weightsManifest and its shards.

    Names such as ``Conv1/kernel``, ``model1/Conv1/kernel`` or ``Conv1/kernel:0`` all give
    ``Conv1`` / ``kernel``; every shard must hold exactly the bytes its group lists.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for group in _groups(spec, source, hint):
        keys = [shard_key(model_key, path, source, hint) for path in group["paths"]]
        missing = [k for k in keys if k not in files]
        if missing:
            raise missing_shard(source, missing[0])
        buffer = b"".join(files[k] for k in keys)
        shards = ", ".join(posixpath.basename(k) for k in keys)
        offset = 0
        for weight in group["weights"]:
            name = weight.get("name") if isinstance(weight, dict) else None
            parts = re.sub(r":\d+$", "", name).split("/") if isinstance(name, str) else []
            if len(parts) < 2 or not all(parts[-2:]):
                raise ModelFileError(f"{source}: weightsManifest lists a weight without a 'layer/variable' name "
                                     f"({str(name)[:80]!r}); {hint}")
            value, size = _decode(buffer, offset, weight, _shape(weight, source, hint), name, shards, source, hint)
            offset += size
            leaf = out.setdefault(parts[-2], {})
            if parts[-1] in leaf:
                raise ModelFileError(f"{source}: weight {parts[-2]}/{parts[-1]} is listed twice; {hint}")
            leaf[parts[-1]] = value
        if offset != len(buffer):
            raise ModelFileError(f"{source}: {shards} {_hold(shards)} {len(buffer):,} bytes but model.json lists "
                                 f"{offset:,}; download the export again")
    return out


def tfjs_labels(data: bytes, source: str, hint: str) -> tuple[str, ...]:
    """Class names from Teachable Machine's ``metadata.json`` (``labels``, in output order)."""
    meta = parse_json(data, source, hint)
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise ModelFileError(f"{source}: no 'labels' list of class names in it; use the metadata.json of "
                             "the same export")
    return tuple(x.strip() for x in labels)


# ----------------------------------------------------------------------------- TensorFlow Lite

def is_tflite(data: bytes) -> bool:
    return data[4:8] == TFLITE_SIGNATURE


class TFLiteModel:
    """A TFLite image classifier (one image input, one probability vector out) run by LiteRT.

    Quantized models (uint8/int8 tensors) get their inputs quantized and outputs dequantized with
    the tensors' own scale and zero point, so they take the same [-1, 1] inputs and give
    probabilities in 0..1 like the float model. One interpreter, guarded by a lock: the
    dashboard shares a loaded model between sessions.
    """

    def __init__(self, data: bytes, source: str, hint: str) -> None:
        if not is_tflite(data):
            raise ModelFileError(f"{source}: not a TensorFlow Lite model file; {hint}")
        from ai_edge_litert.interpreter import Interpreter

        from ..measure.landmarker import quiet_native_logs

        self._data = bytes(data)  # the interpreter reads the buffer it was given
        try:
            with quiet_native_logs():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" on stderr
                self._interpreter = Interpreter(model_content=self._data, num_threads=2)
                check_lite_tensor_sizes(self._interpreter, source, hint)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{source}: cannot load this TensorFlow Lite model ({one_line(exc, 160)}); "
                                 f"{hint}") from None
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"{source}: the model has {len(inputs)} inputs and {len(outputs)} outputs, not one "
                                 f"image in and one list of class probabilities out; {hint}")
        self._in, self._out = inputs[0], outputs[0]
        in_shape, out_shape = tuple(int(s) for s in self._in["shape"]), tuple(int(s) for s in self._out["shape"])
        if len(in_shape) != 4 or in_shape[0] != 1 or len(out_shape) != 2 or out_shape[0] != 1:
            raise ModelFileError(f"{source}: input {list(in_shape)} and output {list(out_shape)} are not one image "
                                 f"in and one list of class probabilities out; {hint}")
        self.input_shape: tuple[int | None, ...] = (None, *in_shape[1:])
        self.output_shape: tuple[int | None, ...] = (None, out_shape[1])
        self.quantized = np.dtype(self._in["dtype"]) != np.float32
        self._lock = threading.Lock()

    @staticmethod
    def _quantize(x: np.ndarray, details: dict) -> np.ndarray:
        dtype = np.dtype(details["dtype"])
        if dtype.kind == "f":
            return x.astype(dtype)
        scale, zero = details["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    @staticmethod
    def _dequantize(y: np.ndarray, details: dict) -> np.ndarray:
        if np.dtype(details["dtype"]).kind == "f":
            return y.astype(np.float64)
        scale, zero = details["quantization"]
        return (y.astype(np.float64) - zero) * scale

    def predict(self, x: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Class probabilities for model inputs ``x`` ((n, h, w, 3) float32 in [-1, 1]), one image per call."""
        out = np.zeros((len(x), int(self.output_shape[1])))
        with self._lock:
            for i in range(len(x)):
                self._interpreter.set_tensor(self._in["index"], self._quantize(x[i:i + 1], self._in))
                self._interpreter.invoke()
                out[i] = self._dequantize(self._interpreter.get_tensor(self._out["index"])[0], self._out)
                if progress and (i + 1 == len(x) or (i + 1) % 32 == 0):
                    progress(i + 1, len(x))
        return out


def tflite_format(model: TFLiteModel) -> str:
    return "tflite-quantized" if model.quantized else "tflite"
