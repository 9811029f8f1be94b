"""Import a Teachable Machine image model: any of its three downloads, as a zip or its files.

* Keras (``keras_model.h5`` + ``labels.txt``, lines ``0 angry``): saved by tf.keras 2.x, which
  Keras 3 refuses (``DepthwiseConv2D`` saved with ``groups: 1``) and whose ``load_model`` would
  deserialize whatever the file names. So we never hand the file to ``load_model``: we read the
  architecture JSON with h5py, refuse anything but standard layers (no ``Lambda``: it carries
  code), clean the known Keras 2 leftovers, rebuild the model with Keras from that config and copy
  the weights in by layer and variable name.
* TensorFlow.js (``model.json`` + ``weights.bin`` + ``metadata.json``, the default): the same
  route, the config taken from ``model.json`` and the weights from its shards
  (``teachable_formats``).
* TensorFlow Lite (``model_unquant.tflite`` or the quantized ``model.tflite`` + ``labels.txt``):
  run by LiteRT's interpreter, quantized tensors scaled back (``teachable_formats``).

The format is chosen from the files (``read_export``, ``read_upload``) and kept on the predictor
(``format``). Class names are mapped to this project's emotions (``Happiness`` -> happy).
Classes that are no emotion (``background``, ``no face``) are dropped and the remaining
probabilities renormalised, so a Teachable Machine model scores on the same classes as the other
models; the mapping and the dropped names are kept on the predictor for the dashboard to show.
Several labels mapping to one emotion are merged (their probabilities summed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import posixpath
import re
import secrets
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..emotions import SEVEN_EMOTIONS, emotion_in_name, normalize_emotion
from ..errors import FerError, ModelFileError, one_line
from ..fileio import hold_while_written, write_error
from ..safe_files import check_zip_members, parse_json, read_json_file, read_regular_file
from .base import Predictor, Progress
from .keras_io import fit_images, import_keras, predict_in_batches
from .keras_safety import CODE_LAYERS, build_deferred, check_hdf5_storage, read_dataset
from .teachable_formats import (
    METADATA_NAME,
    TFJS_NAME,
    TFLiteModel,
    is_tflite,
    missing_shard,
    shard_keys,
    tfjs_labels,
    tfjs_spec,
    tfjs_topology,
    tfjs_weights,
    tflite_format,
)

MODEL_NAME = "keras_model.h5"
LABELS_NAME = "labels.txt"
# Beside a saved model: its class names in output order. labels.txt is not covered by the
# manifest's checksum, and reordering its lines would silently swap the emotions of the outputs.
SAVED_RECORD = "teachable.json"
MAX_EXPORT_BYTES = 64 * 2**20  # Teachable Machine image models are ~2.5 MB; this keeps a load under 1 GB
MAX_CONFIG_BYTES = 4 * 2**20  # the architecture JSON of MobileNetV2 is 80 KB
MAX_LABELS_BYTES = 2**20
MAX_NAMES = 10_000  # weight or layer names in one HDF5 attribute (MobileNetV2 has 263 weights)
MAX_INPUT_SIDE = 1024  # Teachable Machine image models take 224 x 224
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
EXPORT_HINT = ("download it from Teachable Machine with Export model (Tensorflow.js, Tensorflow -> Keras "
               "or Tensorflow Lite)")

# Standard layers a Teachable Machine image model (MobileNet backbone + dense head) may contain.
ALLOWED_LAYERS = frozenset({
    "InputLayer", "Sequential", "Functional", "Model",
    "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense",
    "BatchNormalization", "LayerNormalization", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Activation", "ZeroPadding2D", "Cropping2D", "Add", "Subtract", "Multiply", "Average",
    "Maximum", "Minimum", "Concatenate", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "AveragePooling2D", "MaxPooling2D", "UpSampling2D", "Dropout", "SpatialDropout2D",
    "Flatten", "Reshape", "Permute", "Rescaling",
})
# Objects nested in layer configs: initializers, regularizers, constraints.
ALLOWED_OBJECTS = frozenset({
    "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Orthogonal", "Identity", "L1", "L2", "L1L2", "MaxNorm", "NonNeg", "UnitNorm",
    "MinMaxNorm",
    "__keras_tensor__",  # a call argument in configs written by Keras 3
})
# Keras 2 variable names that Keras 3 calls differently.
_STORED_NAMES = {"kernel": ("kernel", "depthwise_kernel")}


# ----------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class LabelMapping:
    """Teachable Machine class names (model output order) and the emotion each one stands for."""
    labels: tuple[str, ...]
    emotions: tuple[str | None, ...]  # None: not an emotion, dropped from predictions
    chosen: frozenset[str] = frozenset()  # labels whose emotion (or None) was given, not read from the name

    @property
    def classes(self) -> tuple[str, ...]:
        """The distinct emotions, in the project's canonical order."""
        present = set(e for e in self.emotions if e is not None)
        return tuple(e for e in SEVEN_EMOTIONS if e in present)

    @property
    def unmapped(self) -> tuple[str, ...]:
        return tuple(label for label, e in zip(self.labels, self.emotions) if e is None)

    @property
    def unmapped_unasked(self) -> tuple[str, ...]:
        """Classes dropped because their name is no emotion, not because someone chose to ignore
        them (a saved mapping's "Background": None): the ones worth a note."""
        return tuple(label for label in self.unmapped if label not in self.chosen)

    def as_dict(self) -> dict[str, str | None]:
        return dict(zip(self.labels, self.emotions))


def parse_labels(text: str, source: str = LABELS_NAME) -> tuple[str, ...]:
    """Class names from ``labels.txt``: ``0 angry`` lines (Teachable Machine) or one name per line."""
    rows = [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if not rows:
        raise ModelFileError(f"{source}: no class names in it; use the labels.txt of the same export")
    numbered = [re.fullmatch(r"(\d+)\s+(.+)", row) for row in rows]
    if all(numbered):
        by_index = {int(m.group(1)): m.group(2).strip() for m in numbered}
        if sorted(by_index) != list(range(len(rows))):
            raise ModelFileError(f"{source}: class numbers are not 0..{len(rows) - 1}; "
                                 "use the labels.txt of the same export")
        return tuple(by_index[i] for i in range(len(rows)))
    if any(numbered):
        raise ModelFileError(f"{source}: mixes numbered and unnumbered lines; write '0 angry' on every line")
    return tuple(rows)


def map_labels(labels: Sequence[str], override: Mapping[str, str | None] | None = None) -> LabelMapping:
    """Map class names to emotions (case-insensitive, aliases such as anger/happiness/sadness).

    ``override`` maps a class name to an emotion (or None/"" to drop it) where the name alone
    does not say it, e.g. ``{"Class 1": "happy", "background": None}``.
    """
    labels = tuple(labels)
    emotions: list[str | None] = [emotion_in_name(label) for label in labels]
    chosen: set[str] = set()
    for key, value in (override or {}).items():
        matches = [i for i, label in enumerate(labels) if label == key] or \
                  [i for i, label in enumerate(labels) if label.strip().lower() == str(key).strip().lower()]
        if not matches:
            raise FerError(f"mapping names class {key!r}, which the model does not have "
                           f"(its classes: {', '.join(labels)})")
        emotion = None
        if value is not None and str(value).strip():
            emotion = normalize_emotion(value)
            if emotion is None:
                raise FerError(f"mapping {key!r} -> {value!r}: unknown emotion; use one of "
                               f"{', '.join(SEVEN_EMOTIONS)} or leave it empty to drop the class")
        for i in matches:
            emotions[i] = emotion
            chosen.add(labels[i])
    return LabelMapping(labels, tuple(emotions), frozenset(chosen))


# ----------------------------------------------------------------------------- reading an export

@dataclass(frozen=True)
class ExportFiles:
    """The files of one export, read into memory: the model file (``files[model_key]``), for
    TensorFlow.js also its weight shards, and the class names; names kept for messages."""
    format: str  # "keras", "tfjs" or "tflite" (whether a TFLite model is quantized shows when it loads)
    model_name: str
    files: Mapping[str, bytes]
    model_key: str
    labels: tuple[str, ...] | None
    labels_name: str | None

    @property
    def model_bytes(self) -> bytes:
        return self.files[self.model_key]


@dataclass(frozen=True)
class _Members:
    """Files of a zip, a folder or an upload: declared sizes, and a reader that checks them."""
    name: str  # the zip, folder or upload, for messages
    kind: str  # "zip", "folder" or "upload"
    sizes: Mapping[str, int]
    read: Callable[[str, int], bytes]  # (member, size limit) -> bytes

    def label(self, key: str) -> str:
        """How a member is named in messages: ``faces.zip:model.json``, a path, or the file name."""
        return {"zip": f"{self.name}:{posixpath.basename(key)}", "folder": str(Path(self.name) / key)}.get(
            self.kind, key)

    def get(self, key: str, limit: int) -> bytes:
        size = self.sizes[key]
        if size > limit:
            raise ModelFileError(f"{self.name}: {posixpath.basename(key)} is larger than {_size_text(limit)}; "
                                 f"{EXPORT_HINT}")
        data = self.read(key, limit)
        if len(data) > limit:
            raise ModelFileError(f"{self.name}: {posixpath.basename(key)} is larger than {_size_text(limit)}; "
                                 f"{EXPORT_HINT}")
        return data


def _size_text(limit: int) -> str:
    return f"{limit // 2**20} MB" if limit >= 4 * 2**20 else f"{limit // 2**10} KB"


def _role(name: str) -> str:
    """What a file of an export is, by its name."""
    base = posixpath.basename(name).lower()
    if base == SAVED_RECORD:  # what saving writes beside the model: a saved folder's files upload as they are
        return "record"
    if base == METADATA_NAME or re.fullmatch(r"metadata[ _-]?(\(\d+\))?\.json", base):  # "metadata (1).json"
        return "metadata"
    return {".h5": "keras", ".hdf5": "keras", ".json": "tfjs", ".tflite": "tflite", ".bin": "shard",
            ".txt": "labels", ".zip": "zip"}.get(posixpath.splitext(base)[1], "other")


def _hidden(name: str) -> bool:
    """Files that are no part of an export: macOS's ``__MACOSX/`` and ``._name`` copies, dot files."""
    return name.startswith("__MACOSX/") or posixpath.basename(name).startswith(".")


def _sniff(data: bytes) -> str:
    """The format of a model file given as bytes alone (no name): TFLite, TF.js JSON, else Keras."""
    if is_tflite(data):
        return "tflite"
    return "tfjs" if data.lstrip()[:1] == b"{" else "keras"


def read_export(source: str | os.PathLike[str] | bytes,
                labels: str | os.PathLike[str] | bytes | Sequence[str] | None = None) -> ExportFiles:
    """Find the model of an export (Keras, TensorFlow.js or TFLite) and its class names in a zip,
    a folder, a model file path (its export's other files beside it) or raw bytes.

    ``labels`` (a path, the file's bytes, or the class names) overrides the labels found beside
    or inside ``source``.
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "uploaded file"
        _check_size(len(data), name)
        if zipfile.is_zipfile(io.BytesIO(data)):
            return _read_zip(data, name, labels)
        fmt = _sniff(data)
        key = {"keras": MODEL_NAME, "tfjs": TFJS_NAME, "tflite": "model.tflite"}[fmt]
        members = _Members(name, "upload", {key: len(data)}, lambda _key, _limit: data)
        return _pick(members, labels, key, model_name=name)
    path = Path(source)
    if path.is_dir():
        return _pick(_folder_members(path), labels, where="in this folder")
    data = _read_bytes(path)
    if zipfile.is_zipfile(io.BytesIO(data)):
        return _read_zip(data, str(path), labels)
    if path.suffix.lower() == ".zip":
        raise ModelFileError(f"{path} is not a zip; {EXPORT_HINT}")
    return _pick(_folder_members(path.parent, {path.name: data}), labels, path.name)


def _folder_members(folder: Path, known: Mapping[str, bytes] | None = None) -> _Members:
    """The files directly in ``folder`` (nothing is read until asked for, and then only regular files)."""
    known = dict(known or {})
    sizes: dict[str, int] = {}
    try:
        for entry in os.scandir(folder):
            if _hidden(entry.name):
                continue
            try:
                sizes[entry.name] = 0 if not entry.is_file() else entry.stat().st_size
            except OSError:
                sizes[entry.name] = 0
    except OSError as exc:
        raise ModelFileError(f"{folder}: cannot be listed ({exc.strerror or exc}); {EXPORT_HINT}") from None
    sizes.update({k: len(v) for k, v in known.items()})

    def read(key: str, limit: int) -> bytes:
        if key in known:
            return known[key]
        return read_regular_file(folder / key, limit, "pick the files of a Teachable Machine export",
                                 what="Teachable Machine export file")

    return _Members(str(folder), "folder", sizes, read)


def _pick(members: _Members, labels, model_key: str | None = None, model_name: str | None = None,
          where: str = "inside") -> ExportFiles:
    """The export's model (the one of ``model_key``, or the only model file among the members),
    with its shards and class names read from the members."""
    if model_key is None:
        upload = members.kind == "upload"
        candidates = [k for k in members.sizes if _role(k) == "tflite" or (
            _role(k) in ("keras", "tfjs")
            and (upload or posixpath.basename(k) == (MODEL_NAME if _role(k) == "keras" else TFJS_NAME)))]
        if not candidates:
            if where == "in this folder":
                raise ModelFileError(f"{members.name}: no {MODEL_NAME} in this folder, nor {TFJS_NAME} or a "
                                     f".tflite; {EXPORT_HINT}")
            raise ModelFileError(f"{members.name}: no {MODEL_NAME}, {TFJS_NAME} or .tflite {where}; {EXPORT_HINT}")
        if len(candidates) > 1:
            raise ModelFileError(f"{members.name}: holds more than one model "
                                 f"({', '.join(posixpath.basename(k) for k in candidates[:4])}); "
                                 "upload one export at a time")
        model_key = candidates[0]
    fmt = _role(model_key) if _role(model_key) in ("tfjs", "tflite") else "keras"
    model_name = model_name or members.label(model_key)
    data = members.get(model_key, MAX_CONFIG_BYTES if fmt == "tfjs" else MAX_EXPORT_BYTES)
    files = {model_key: data}
    if fmt == "keras":
        _check_hdf5(data, model_name)
    elif fmt == "tflite" and not is_tflite(data):
        raise ModelFileError(f"{model_name}: not a TensorFlow Lite model file; {EXPORT_HINT}")
    elif fmt == "tfjs":
        total = 0
        for key in shard_keys(tfjs_spec(data, model_name, EXPORT_HINT), model_key, model_name, EXPORT_HINT):
            if key not in members.sizes:
                raise missing_shard(model_name, key)
            files[key] = members.get(key, MAX_EXPORT_BYTES)
            total += len(files[key])
            _check_size(total, model_name)
    names, labels_name = _labels_for(members, model_key, fmt, labels)
    return ExportFiles(fmt, model_name, files, model_key, names, labels_name)


def _labels_for(members: _Members, model_key: str, fmt: str, labels) -> tuple[tuple[str, ...] | None, str | None]:
    """Class names: the ``labels`` argument, else TF.js's metadata.json, else labels.txt - the
    one beside the model, or the only one there is."""
    if labels is not None:
        return _read_labels_arg(labels, None)
    folder = posixpath.dirname(model_key)

    def beside(role: str, basename: str) -> str | None:
        keys = [k for k in members.sizes if _role(k) == role
                and (members.kind == "upload" or posixpath.basename(k) == basename)]
        near = [k for k in keys if posixpath.dirname(k) == folder]
        if len(near) > 1 or (not near and len(keys) > 1):
            raise ModelFileError(f"{members.name}: more than one {basename}; upload the one of the same export")
        return (near or keys or [None])[0]

    if fmt == "tfjs":
        key = beside("metadata", METADATA_NAME)
        if key is not None:
            return tfjs_labels(members.get(key, MAX_LABELS_BYTES), members.label(key), EXPORT_HINT), \
                members.label(key)
    key = beside("labels", LABELS_NAME)
    if key is None:
        return None, None
    data = members.get(key, MAX_LABELS_BYTES)
    return parse_labels(_decode(data, members.label(key)), members.label(key)), members.label(key)


def _check_hdf5(data: bytes, name: str) -> None:
    """Refuse non-HDF5 data early (the signature sits at 0, 512, 1024, ... bytes)."""
    offsets = [0] + [512 * 2**i for i in range(12)]
    if not any(data[o:o + 8] == HDF5_SIGNATURE for o in offsets if o < len(data)):
        raise ModelFileError(f"{name}: not an HDF5 Keras model file; pick {MODEL_NAME} ({EXPORT_HINT})")


def _check_size(size: int, name: str) -> None:
    if size > MAX_EXPORT_BYTES:
        raise ModelFileError(f"{name}: larger than {MAX_EXPORT_BYTES // 2**20} MB, not a Teachable Machine "
                             f"image model; {EXPORT_HINT}")


def _read_bytes(path: Path) -> bytes:
    """A regular file's bytes, its size checked first (a FIFO or /dev/zero is refused, not read)."""
    return read_regular_file(path, MAX_EXPORT_BYTES, "pick the zip or the model file of a Teachable Machine "
                             "export", what="Teachable Machine export")


def _read_zip(data: bytes, name: str, labels) -> ExportFiles:
    check_zip_members(data, name, EXPORT_HINT)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = {info.filename: info for info in zf.infolist() if not info.is_dir() and not _hidden(info.filename)}
            members = _Members(name, "zip", {k: i.file_size for k, i in infos.items()},
                               lambda key, _limit: zf.read(infos[key]))
            return _pick(members, labels)
    except (RuntimeError, NotImplementedError) as exc:  # a password or a compression zipfile cannot read
        raise ModelFileError(f"{name}: the zip is encrypted or uses a compression this cannot read "
                             f"({one_line(exc, 120)}); zip the export again without a password") from None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:  # ValueError: a member's
        # offset pointing before the archive ("negative seek value")
        raise ModelFileError(f"{name}: damaged zip ({one_line(exc, 160)}); download the export again") from None


def _read_labels_arg(labels, default: Path | None) -> tuple[tuple[str, ...] | None, str | None]:
    """Class names from a labels argument (path, bytes or names) or the default file if it exists."""
    if labels is None:
        if default is None or not os.path.lexists(default):
            return None, None
        labels = default
    if isinstance(labels, (bytes, bytearray)):
        if len(labels) > MAX_LABELS_BYTES:
            raise ModelFileError(f"{LABELS_NAME}: larger than {MAX_LABELS_BYTES // 2**10} KB; "
                                 "use the labels.txt of the same export")
        return parse_labels(_decode(bytes(labels), LABELS_NAME), LABELS_NAME), LABELS_NAME
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not os.path.lexists(path):
            raise ModelFileError(f"{path}: labels file not found; use the labels.txt of the same export")
        data = read_regular_file(path, MAX_LABELS_BYTES, "use the labels.txt of the same export", what="labels file")
        return parse_labels(_decode(data, str(path)), str(path)), str(path)
    names = tuple(str(n).strip() for n in labels)
    if not names or not all(names):
        raise FerError("class names must be non-empty")
    return names, "given class names"


def _decode(data: bytes, name: str) -> str:
    """labels.txt as text: UTF-8, or UTF-16 when it starts with its byte-order mark (Windows
    Notepad's "Unicode")."""
    try:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelFileError(f"{name}: not a text file; use the labels.txt of the same export") from None


# ----------------------------------------------------------------------------- the model

def sanitize_model_config(config: Any, source: str = MODEL_NAME) -> dict:
    """Check a Keras 2 model config for safety and make it loadable by Keras 3 (a cleaned copy).

    Refuses code-carrying layers (Lambda), unknown classes and non-Keras modules; drops
    ``groups`` from depthwise/separable convolutions, turns dtype policies into names, gives a
    Sequential written as a bare list of layers its ``{"layers": ...}`` form, unwraps
    single model inputs/outputs (``[["input_1", 0, 0]]``) and moves a first layer's
    ``batch_input_shape`` to its Sequential's ``build_input_shape``.
    """
    if not isinstance(config, dict) or config.get("class_name") not in ("Sequential", "Functional", "Model"):
        raise ModelFileError(f"{source}: the file holds no Keras model architecture; {EXPORT_HINT}")
    return _sanitize(json.loads(json.dumps(config)), source)


def _sanitize(node: Any, source: str) -> Any:
    if isinstance(node, list):
        return [_sanitize(item, source) for item in node]
    if not isinstance(node, dict):
        return node
    module = node.get("module")
    if isinstance(module, str) and module.split(".")[0] != "keras":
        raise ModelFileError(f"{source}: the model refers to Python module {module!r}, which is not loaded "
                             f"for safety; {EXPORT_HINT}")
    dtype = node.get("dtype")
    if isinstance(dtype, dict) and dtype.get("class_name") in ("Policy", "DTypePolicy"):
        policy = dtype.get("config")
        policy = policy.get("name") if isinstance(policy, dict) else None
        node["dtype"] = policy if isinstance(policy, str) else "float32"
    name = node.get("class_name")
    if name is not None and not isinstance(name, str):
        raise ModelFileError(f"{source}: a layer or object has a class_name that is not text "
                             f"({str(name)[:60]!r}); {EXPORT_HINT}")
    if name is not None:
        if name in CODE_LAYERS:
            raise ModelFileError(f"{source}: the model contains a {name} layer (Python code), which is not "
                                 f"loaded for safety; {EXPORT_HINT}")
        if name not in ALLOWED_LAYERS and name not in ALLOWED_OBJECTS:
            raise ModelFileError(f"{source}: unsupported layer or object {name!r}; only standard Keras image "
                                 f"layers load here; {EXPORT_HINT}")
        if name == "Sequential" and isinstance(node.get("config"), list):
            # tfjs-layers 1.x (Teachable Machine's model.json) and Keras <= 2.1 wrote the layers alone
            node["config"] = {"name": None, "layers": node["config"]}
        cfg = node.get("config")
        if isinstance(cfg, dict):
            if name in ("DepthwiseConv2D", "SeparableConv2D"):
                cfg.pop("groups", None)  # tf.keras 2.x wrote it, Keras 3 refuses it
            if name in ("Functional", "Model"):
                for key in ("input_layers", "output_layers"):
                    ends = cfg.get(key)
                    if isinstance(ends, list) and len(ends) == 1 and isinstance(ends[0], list):
                        # Keras 2 wrote [[name, 0, 0]] for one input; Keras 3 would then hand the
                        # next layer a one-element list instead of a tensor.
                        cfg[key] = ends[0]
            if name == "Sequential":
                layers = cfg.get("layers") or []
                if layers and isinstance(layers[0], dict) and isinstance(layers[0].get("config"), dict):
                    shape = layers[0]["config"].get("batch_input_shape")
                    if shape is not None and layers[0].get("class_name") != "InputLayer":
                        del layers[0]["config"]["batch_input_shape"]
                        cfg.setdefault("build_input_shape", shape)
    return {key: _sanitize(value, source) for key, value in node.items()}


def _attr_strings(obj, key: str, source: str) -> list[str]:
    """A short list of names from an HDF5 attribute; its length is checked before it is read."""
    if key not in obj.attrs:
        return []
    if math.prod(obj.attrs.get_id(key).shape or ()) > MAX_NAMES:
        raise ModelFileError(f"{source}: attribute {key!r} lists more than {MAX_NAMES:,} names; {EXPORT_HINT}")
    values = obj.attrs[key]
    if isinstance(values, (bytes, str)):
        values = [values]
    return [v.decode("utf8", "replace") if isinstance(v, bytes) else str(v) for v in np.ravel(values)]


def _leaf_layers(layer) -> Iterator[Any]:
    inner = getattr(layer, "layers", None)
    if inner:
        for sub in inner:
            yield from _leaf_layers(sub)
    else:
        yield layer


def _read_model_config(h5, source: str) -> Any:
    """The architecture JSON from the ``model_config`` attribute: size checked before reading,
    UTF-8 only, shallow."""
    import h5py

    where = f"{source} (its model_config)"
    if "model_config" not in h5.attrs or not isinstance(h5.get("model_weights"), h5py.Group):
        raise ModelFileError(f"{source}: holds no complete Keras model (architecture and weights); "
                             f"{EXPORT_HINT}")
    attr = h5.attrs.get_id("model_config")
    if attr.shape not in ((), None) or attr.get_storage_size() > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{where}: not one JSON text of at most {MAX_CONFIG_BYTES // 2**20} MB; {EXPORT_HINT}")
    raw = h5.attrs["model_config"]
    if isinstance(raw, str):  # h5py decodes variable-length strings, keeping bad bytes as surrogates
        raw = raw.encode("utf8", "surrogateescape")
    if not isinstance(raw, bytes):
        raise ModelFileError(f"{where}: not JSON text; {EXPORT_HINT}")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{where}: larger than {MAX_CONFIG_BYTES // 2**20} MB; {EXPORT_HINT}")
    return parse_json(raw, where, EXPORT_HINT)


def _stored_weights(group, source: str) -> dict[str, dict[str, Any]]:
    """``leaf layer name -> {variable name: HDF5 dataset}`` of one top-level layer's weight group
    (datasets, not values: nothing is read yet)."""
    import h5py

    out: dict[str, dict[str, Any]] = {}
    for weight_name in _attr_strings(group, "weight_names", source):
        parts = re.sub(r":\d+$", "", weight_name).split("/")
        dataset = group.get(weight_name) if len(parts) >= 2 else None
        if not isinstance(dataset, h5py.Dataset):
            raise ModelFileError(f"{source}: weight {weight_name!r} is malformed or missing; {EXPORT_HINT}")
        out.setdefault(parts[-2], {})[parts[-1]] = dataset
    return out


def _stored_layers(weights_group, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``top-level layer name -> leaf layer -> {variable: dataset}`` for the whole ``model_weights``
    group, from metadata only: checked before TensorFlow is even imported."""
    import h5py

    if len(weights_group) > MAX_NAMES:
        raise ModelFileError(f"{source}: model_weights holds more than {MAX_NAMES:,} layers; {EXPORT_HINT}")
    return {name: _stored_weights(group, source) for name, group in weights_group.items()
            if isinstance(group, h5py.Group)}


def _match_leaves(leaves: Iterable[Any], stored: dict[str, dict[str, Any]], source: str) -> list[tuple[Any, Any, str]]:
    """(variable, stored values, name) for every variable of ``leaves``, matched by layer and
    variable name and checked for shape from metadata (HDF5 datasets are not read); weights left
    over fit no layer and are refused."""
    stored = {leaf: dict(variables) for leaf, variables in stored.items()}
    plan = []
    for leaf in leaves:
        values = stored.get(leaf.name, {})
        for variable in leaf.weights:
            key = next((k for k in _STORED_NAMES.get(variable.name, (variable.name,)) if k in values), None)
            if key is None:
                raise ModelFileError(f"{source}: weight {leaf.name}/{variable.name} is missing from the file; "
                                     f"{EXPORT_HINT}")
            value = values.pop(key)
            if tuple(value.shape or ()) != tuple(variable.shape):
                raise ModelFileError(f"{source}: weight {leaf.name}/{variable.name} has shape {tuple(value.shape)}, "
                                     f"the architecture needs {tuple(variable.shape)}; {EXPORT_HINT}")
            plan.append((variable, value, f"{leaf.name}/{variable.name}"))
    left = [f"{leaf}/{var}" for leaf, vars_ in stored.items() for var in vars_]
    if left:
        raise ModelFileError(f"{source}: weights {', '.join(left[:3])} fit no layer of the architecture; "
                             f"{EXPORT_HINT}")
    return plan


def _match_weights(stored_layers: dict[str, dict[str, dict[str, Any]]], model, source: str) -> list[tuple[Any, Any, str]]:
    """``_match_leaves`` per top-level layer, as a Keras HDF5 file groups its weights."""
    plan = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in stored_layers:
            raise ModelFileError(f"{source}: no weights for layer {layer.name!r}; the file is incomplete, "
                                 f"{EXPORT_HINT}")
        plan.extend(_match_leaves(_leaf_layers(layer), stored_layers[layer.name], source))
    return plan


def _rebuild(config: dict, match: Callable[[Any], list[tuple[Any, Any, str]]], source: str):
    """The Keras model of a sanitised config, its variables matched by ``match`` (and the
    parameter count capped) before any is allocated; returns (model, plan)."""
    plan: list[tuple[Any, Any, str]] = []

    def build():
        keras = import_keras()
        cls = keras.Sequential if config["class_name"] == "Sequential" else keras.Model
        return cls.from_config(config["config"])

    def check(model) -> None:
        if not model.built:
            raise ModelFileError(f"{source}: the model has no input shape; {EXPORT_HINT}")
        plan.extend(match(model))

    return build_deferred(build, check, source, EXPORT_HINT), plan


def load_teachable_model(model_file: bytes | str | os.PathLike[str], source: str | None = None):
    """Rebuild a Teachable Machine (tf.keras 2.x HDF5) model without executing anything from it.

    Everything that can be checked from the file's metadata is checked before TensorFlow is
    imported (``keras_safety``); the architecture is then counted and compared with the weights
    before its variables are allocated, and the weights are read last.
    """
    import h5py

    if isinstance(model_file, bytes):
        data, source = model_file, source or MODEL_NAME
        _check_size(len(data), source)
    else:
        data, source = _read_bytes(Path(model_file)), source or str(model_file)
    _check_hdf5(data, source)
    try:
        h5 = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError, SystemError) as exc:
        raise ModelFileError(f"{source}: unreadable HDF5 file ({one_line(exc, 160)}); download the export again") from None
    with h5:
        try:
            check_hdf5_storage(h5, source, MAX_EXPORT_BYTES, EXPORT_HINT)
            config = sanitize_model_config(_read_model_config(h5, source), source)
            stored_layers = _stored_layers(h5["model_weights"], source)
        except (OSError, KeyError, ValueError, TypeError, AttributeError, RuntimeError,
                SystemError) as exc:  # damaged HDF5 structures, values of unexpected JSON types
            # h5py's SystemError names a Cython function and its address: no help to anyone
            detail = "h5py could not read its structure" if isinstance(exc, SystemError) else one_line(exc, 160)
            raise ModelFileError(f"{source}: unreadable HDF5 file ({detail}); download the export again") from None
        model, plan = _rebuild(config, lambda m: _match_weights(stored_layers, m, source), source)
        for variable, dataset, name in plan:
            variable.assign(read_dataset(dataset, source, name, "download the export again"))
    return model


def load_tfjs_model(files: ExportFiles):
    """Rebuild a TensorFlow.js layers model (``model.json`` + shards) the same way: the topology
    sanitised like a Keras file's config, weights decoded and matched by name and shape before
    anything is allocated."""
    source = files.model_name
    spec = tfjs_spec(files.model_bytes, source, EXPORT_HINT)
    try:
        config = sanitize_model_config(tfjs_topology(spec), source)
        stored = tfjs_weights(spec, files.files, files.model_key, source, EXPORT_HINT)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:  # a value of an unexpected JSON type
        raise ModelFileError(f"{source}: malformed model.json ({one_line(exc, 160)}); {EXPORT_HINT}") from None
    model, plan = _rebuild(config, lambda m: _match_leaves(_leaf_layers(m), stored, source), source)
    for variable, values, _ in plan:
        variable.assign(values)
    return model


FORMAT_LABELS = {"keras": "Keras (keras_model.h5)", "tfjs": "TensorFlow.js (model.json)",
                 "tflite": "TensorFlow Lite (float)", "tflite-quantized": "TensorFlow Lite (quantized)"}


class TeachablePredictor(Predictor):
    """A Teachable Machine image model as a Predictor over project emotions.

    Inputs follow Teachable Machine's own code: centre crop to a square, resize (224x224), RGB
    scaled to [-1, 1]. ``classes`` are the mapped emotions; see the module doc for unmapped ones.
    ``format`` is the download it was imported from (``FORMAT_LABELS``); ``model`` is a Keras
    model, or a ``TFLiteModel`` for the TensorFlow Lite downloads.

    ``require_emotion=False`` (an upload, before its classes are mapped) lets a model whose class
    names are no emotion ("Class 1") load, so the page can show the boxes that map them; such a
    predictor refuses to score or be saved (``check_usable``) until ``remapped`` gives it one.
    """

    kind = "teachable"
    inputs = "pixels"

    def __init__(self, model, labels: Sequence[str], mapping: Mapping[str, str | None] | None = None,
                 name: str = "teachable", source: str = MODEL_NAME, batch_size: int = 32,
                 format: str = "keras", labels_name: str = LABELS_NAME, require_emotion: bool = True) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.format = format
        self.mapping = map_labels(labels, mapping)
        self.source, self.labels_name = source, labels_name
        out_shape = model.output_shape
        if not (isinstance(out_shape, tuple) and len(out_shape) == 2 and isinstance(out_shape[-1], int)):
            raise ModelFileError(f"{source}: model output {out_shape} is not one row of class scores per image; "
                                 "import a Teachable Machine image model")
        outputs = int(out_shape[-1])
        if outputs != len(self.mapping.labels):
            raise ModelFileError(f"{source}: model has {outputs} outputs but {labels_name} names "
                                 f"{len(self.mapping.labels)} classes; use the {labels_name} of the same export")
        if require_emotion:
            self.check_usable()
        shape = tuple(model.input_shape)
        if len(shape) != 4 or shape[-1] != 3 or None in shape[1:]:
            raise ModelFileError(f"{source}: model input {shape} is not an RGB image; "
                                 "import a Teachable Machine image model")
        if max(shape[1:3]) > MAX_INPUT_SIDE:
            raise ModelFileError(f"{source}: model input {shape[1]}x{shape[2]} is larger than an image model takes "
                                 f"here ({MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}); import a Teachable Machine image model")
        self.input_size: tuple[int, int] = (int(shape[1]), int(shape[2]))
        self.classes: tuple[str, ...] = self.mapping.classes
        # (labels x classes) 0/1 matrix: merges labels of one emotion, drops unmapped ones.
        self._merge = np.array([[float(e == c) for c in self.classes] for e in self.mapping.emotions])

    def check_usable(self) -> None:
        """Refuse to predict, save or evaluate with fewer than two classes counting as emotions:
        with none there is nothing to score, and with one ("Happy" beside "Background", which is
        dropped and the rest renormalised) every face is that emotion at 100 %, a trivial score
        that also narrows a comparison to that one emotion."""
        if not self.mapping.classes:
            raise ModelFileError(f"{self.source}: none of the classes ({', '.join(self.mapping.labels)}) is an "
                                 "emotion; map them (import-teachable --map, or the dashboard's Teachable Machine "
                                 f"page) and save the model, or name them like {', '.join(SEVEN_EMOTIONS[:3])}")
        if len(self.mapping.classes) < 2:
            (only,) = self.mapping.classes
            raise ModelFileError(f"{self.source}: only {only} counts as an emotion, and the model would give it to "
                                 "every face; map a second class to an emotion (import-teachable --map, or the "
                                 "dashboard's Teachable Machine page): a model of one emotion cannot be scored or "
                                 "compared")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.mapping.labels

    @property
    def unmapped(self) -> tuple[str, ...]:
        return self.mapping.unmapped

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Model inputs for ``images``: (n, h, w, 3) float32 in [-1, 1], as Teachable Machine does."""
        x = fit_images(images, self.input_size, 3).astype(np.float32)
        x /= 127.5  # in place: no second float copy of the batch
        x -= 1.0
        return x

    def raw_proba(self, faces, progress: Progress | None = None) -> np.ndarray:
        """Probabilities over the model's own labels, (n, len(labels)).

        Images are shaped one batch at a time: a 224x224x3 float copy of a whole test set
        (7,178 FER2013 faces) would take 8 GB.
        """
        images = self.pixels_of(faces)
        n = len(images)
        out = np.zeros((n, len(self.labels)))
        step = max(1, int(self.batch_size))
        for start in range(0, n, step):
            x = self.preprocess(images[start:start + step])
            done = None if progress is None else (lambda i, _total, s=start: progress(s + i, n))
            if isinstance(self.model, TFLiteModel):
                out[start:start + len(x)] = self.model.predict(x, done)
            else:
                out[start:start + len(x)] = predict_in_batches(self.model, x, len(x), done)
        return out

    def remapped(self, mapping: Mapping[str, str | None], name: str | None = None) -> "TeachablePredictor":
        """The same loaded network with another label -> emotion mapping (no reload)."""
        return TeachablePredictor(self.model, self.labels, mapping, name=name or self.name, format=self.format,
                                  source=self.source, labels_name=self.labels_name, batch_size=self.batch_size)

    def predict_proba(self, faces, progress: Progress | None = None) -> np.ndarray:
        self.check_usable()
        merged = self.raw_proba(faces, progress) @ self._merge
        total = merged.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 1e-12, merged / total, np.nan)


def predictor_from_export(files: ExportFiles, mapping: Mapping[str, str | None] | None = None,
                          name: str = "teachable", require_emotion: bool = True) -> TeachablePredictor:
    """The predictor of an export read by ``read_export`` or ``read_upload``, whatever its format
    (``require_emotion``: see ``TeachablePredictor``)."""
    if files.labels is None:
        missing = METADATA_NAME if files.format == "tfjs" else LABELS_NAME
        raise ModelFileError(f"{files.model_name}: missing {missing}; add the {missing} of the same export")
    if files.format == "tfjs":
        model, fmt = load_tfjs_model(files), "tfjs"
    elif files.format == "tflite":
        model = TFLiteModel(files.model_bytes, files.model_name, EXPORT_HINT)
        fmt = tflite_format(model)
    else:
        model, fmt = load_teachable_model(files.model_bytes, files.model_name), "keras"
    labels_name = METADATA_NAME if (files.labels_name or "").endswith(METADATA_NAME) else LABELS_NAME
    predictor = TeachablePredictor(model, files.labels, mapping, name=name, source=files.model_name, format=fmt,
                                   labels_name=labels_name, require_emotion=require_emotion)
    _check_answers(predictor)
    return predictor


def _check_answers(predictor: TeachablePredictor) -> None:
    """One plain gray image through the network at load: a damaged or edited file whose weights
    all look like numbers (a TensorFlow Lite buffer, a batch-norm epsilon of -1e19) can answer NaN
    or no probabilities for every face; refused here, not shown as NaN scores later."""
    raw = predictor.raw_proba([np.full((*predictor.input_size, 3), 128, np.uint8)])
    if not np.isfinite(raw).all() or (raw < -0.01).any() or (raw > 1.01).any():
        shown = ", ".join(f"{v:.3g}" for v in raw[0][:4])
        raise ModelFileError(f"{predictor.source}: the model answers {shown} for a plain gray image, not class "
                             f"probabilities (a damaged or edited file); {EXPORT_HINT}")


def load_teachable(source: str | os.PathLike[str] | bytes,
                   labels: str | os.PathLike[str] | bytes | Sequence[str] | None = None,
                   mapping: Mapping[str, str | None] | None = None, name: str | None = None) -> TeachablePredictor:
    """Load a Teachable Machine export (zip, folder, model file path or bytes; Keras, TensorFlow.js
    or TensorFlow Lite) as a predictor."""
    files = read_export(source, labels)
    if name is None:
        name = "teachable" if isinstance(source, (bytes, bytearray)) else f"teachable:{Path(source).stem}"
    return predictor_from_export(files, mapping, name)


# ----------------------------------------------------------------------------- uploads and saving

@dataclass(frozen=True)
class TeachableUpload:
    """What a user uploaded: (file name, bytes) pairs, checked to be one export."""
    files: tuple[tuple[str, bytes], ...]
    source: str  # the file name(s), for messages

    @property
    def model_file(self) -> str:
        """The zip's or the model file's name (not labels.txt, which may come first): the default
        model name's stem."""
        return next((name for name, _ in self.files if _role(name) in ("zip", "keras", "tfjs", "tflite")),
                    self.files[0][0])


def sort_upload(files: Sequence[tuple[str, bytes]]) -> TeachableUpload:
    """Check that the uploaded files can be one export: one zip (with at most a labels.txt that
    replaces its own), or the files of one download."""
    roles = [_role(name) for name, _ in files]
    others = [name for (name, _), role in zip(files, roles) if role == "other"]
    if others:
        raise ModelFileError(f"{others[0]}: not part of a Teachable Machine export; upload the zip, or its files "
                             f"({MODEL_NAME} + {LABELS_NAME}, {TFJS_NAME} + weights.bin + {METADATA_NAME}, "
                             f"or a .tflite + {LABELS_NAME})")
    if roles.count("zip") > 1 or (roles.count("zip") and set(roles) - {"zip", "labels"}):
        raise ModelFileError("upload one model at a time: one zip (and at most a labels.txt), or the files "
                             "of one export")
    if not set(roles) & {"zip", "keras", "tfjs", "tflite"}:
        raise ModelFileError(f"{', '.join(n for n, _ in files)} alone is not a model; add the model file of the same "
                             f"export ({MODEL_NAME}, {TFJS_NAME} or .tflite), or upload the export zip")
    return TeachableUpload(tuple((name, bytes(data)) for name, data in files), " + ".join(n for n, _ in files))


def read_upload(upload: TeachableUpload) -> ExportFiles:
    """The export in an upload: a zip is read like a zip file, loose files by their names."""
    zips = [(n, d) for n, d in upload.files if _role(n) == "zip"]
    if zips:
        name, data = zips[0]
        _check_size(len(data), name)
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise ModelFileError(f"{name} is not a zip; upload the zip Teachable Machine downloaded, or its files")
        labels = next((d for n, d in upload.files if _role(n) == "labels"), None)
        return _read_zip(data, name, labels)
    names = [n for n, _ in upload.files]
    if len(set(names)) != len(names):
        raise ModelFileError(f"{upload.source}: the same file name twice; upload each file of the export once")
    data = dict(upload.files)
    return _pick(_Members(upload.source, "upload", {n: len(d) for n, d in data.items()},
                          lambda key, _limit: data[key]), None)


def load_upload(upload: TeachableUpload, name: str = "teachable") -> TeachablePredictor:
    """An upload's predictor with its automatic label mapping. It loads even when no class name is
    an emotion ("Class 1"), so that its classes can be mapped; it scores once ``remapped``."""
    return predictor_from_export(read_upload(upload), name=name, require_emotion=False)


def upload_from_path(path: str | os.PathLike[str]) -> TeachableUpload:
    """An export on disk as the dashboard receives one (``import-teachable``): a zip alone, the
    export files of a folder, or a model file with the export files beside it (labels.txt,
    metadata.json, weight shards)."""
    path = Path(path)
    try:
        if path.is_dir():
            files = [p for p in sorted(path.iterdir()) if _role(p.name) not in ("other", "zip")]
        elif _role(path.name) == "zip":
            files = [path]
        else:  # the export's own files only: a Downloads folder holds other .txt and .bin files
            own = {LABELS_NAME, METADATA_NAME, SAVED_RECORD}
            tfjs = _role(path.name) == "tfjs"
            files = [path] + [p for p in sorted(path.parent.iterdir())
                              if p != path and (p.name in own or (tfjs and _role(p.name) == "shard"))]
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc}); {EXPORT_HINT}") from None
    files = [p for p in files if not _hidden(p.name) and (p == path or p.is_file())]
    if not files:
        raise ModelFileError(f"{path}: holds no Teachable Machine export files; {EXPORT_HINT}")
    return sort_upload([(p.name, _read_bytes(p)) for p in files])


def register_teachable(upload: TeachableUpload, predictor: TeachablePredictor, name: str, command: str):
    """Save an import (``_save``) and register it under ``name`` with its label mapping: the one
    way the Teachable Machine page and ``import-teachable`` keep a model. Returns the entry."""
    from ..manifest import Metrics
    from .registry import save_and_register

    return save_and_register(TeachableImport(upload, predictor), name=name, kind="teachable",
                             classes=predictor.classes, metrics=Metrics(), mapping=predictor.mapping.as_dict(),
                             command=command, origin="imported", description=f"Teachable Machine export {upload.source}",
                             extra={"format": predictor.format})


@dataclass(frozen=True)
class TeachableImport:
    """What ``save_and_register`` stores for a Teachable Machine model: the upload and the
    predictor whose label order (and mapping) it was checked with."""
    upload: TeachableUpload
    predictor: TeachablePredictor


def _save(artefact: TeachableImport, path: Path) -> list[Path]:
    """``<path>/keras_model.h5`` (a Keras or TensorFlow.js import; the latter written by Keras from
    the model as loaded) or ``<path>/<name>.tflite``, ``labels.txt`` in model order and
    ``SAVED_RECORD`` (the same order, checked on load).

    Written into a hidden folder beside ``path``, renamed to ``path`` when complete: a full disk
    or a failed write leaves nothing behind that would block the name (an OSError is one line).
    """
    folder = Path(path)
    predictor = artefact.predictor
    predictor.check_usable()
    files = read_upload(artefact.upload)
    name = posixpath.basename(files.model_key) if files.format == "tflite" else MODEL_NAME
    if os.path.lexists(folder):
        raise FerError(f"{folder} already exists; choose another name")
    part = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.part")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        part.mkdir()
        held = os.open(part, os.O_RDONLY)  # locked while written: a later save removes it only if a kill left it
    except OSError as exc:
        raise write_error(folder, exc) from None
    try:
        hold_while_written(held)
        if files.format == "tfjs":
            with _quiet_absl():  # Keras calls HDF5 "legacy" on every save: a student read it as a failure
                predictor.model.save(part / name)  # HDF5, read back by load_teachable_model
        else:
            (part / name).write_bytes(files.model_bytes)
        (part / LABELS_NAME).write_text("".join(f"{i} {label}\n" for i, label in enumerate(predictor.labels)),
                                        encoding="utf8")
        (part / SAVED_RECORD).write_text(json.dumps({"labels": list(predictor.labels)}, ensure_ascii=False,
                                                    indent=1) + "\n", encoding="utf8")
        os.rename(part, folder)
    except BaseException as exc:
        shutil.rmtree(part, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_error(folder, exc) from None
        raise
    finally:
        os.close(held)
    return [folder / name, folder / LABELS_NAME, folder / SAVED_RECORD, folder]


@contextlib.contextmanager
def _quiet_absl():
    """absl's (Keras's) warnings held back for a moment; errors still shown."""
    import logging

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def _check_saved_order(path: Path, files: ExportFiles) -> None:
    """Refuse a saved model whose labels.txt no longer lists its classes in the order it was saved
    with (``SAVED_RECORD``): the outputs would silently count as other emotions."""
    if path.suffix.lower() == ".zip" or files.labels is None:
        return
    record = (path if path.is_dir() else path.parent) / SAVED_RECORD
    if not os.path.lexists(record):  # an export folder, or a model saved before the record existed
        return
    saved = read_json_file(record, MAX_LABELS_BYTES, "save the model again from the Teachable Machine page",
                           what="saved class order")
    labels = saved.get("labels") if isinstance(saved, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ModelFileError(f"{record}: no 'labels' list of class names in it; save the model again from the "
                             "Teachable Machine page")
    if tuple(labels) != tuple(files.labels):
        raise ModelFileError(f"{files.labels_name}: lists the classes as {', '.join(files.labels)}, but the model "
                             f"was saved with {', '.join(labels)}; restore that order (the outputs follow it)")


def _load(path: Path, entry) -> TeachablePredictor:
    if path.name == TFJS_NAME and path.is_file():  # a TensorFlow.js export named by its model.json
        path = path.parent
    files = read_export(path)
    _check_saved_order(path, files)
    predictor = predictor_from_export(files, entry.mapping, entry.name)
    predictor.source_digest = export_digest(files)
    imported = (entry.extra or {}).get("format")
    if imported in FORMAT_LABELS:  # a TensorFlow.js import is stored as keras_model.h5
        predictor.format = imported
    return predictor


def export_digest(files: ExportFiles) -> str:
    """SHA-256 of what an export's model is made of: every file read (a TensorFlow.js export's
    weight shards too) and its class names in their order (the outputs follow it), however it was
    given (a model file names only itself; labels.txt beside it reordered swaps the answers)."""
    digest = hashlib.sha256()
    for key in sorted(files.files):
        digest.update(f"{key}\0{hashlib.sha256(files.files[key]).hexdigest()}\0".encode())
    digest.update("\0".join(files.labels or ()).encode())
    return digest.hexdigest()


def _claims(path: Path) -> bool:
    return (path.suffix.lower() in (".h5", ".zip", ".tflite") or (path.name == TFJS_NAME and path.is_file())
            or (path.is_dir() and (any((path / name).is_file() for name in (MODEL_NAME, TFJS_NAME))
                                   or (any(p.is_file() for p in path.glob("*.tflite"))  # not a CNN's twins
                                       and (path / LABELS_NAME).is_file()))))


def _kinds():
    from .registry import ModelKind

    return (ModelKind("teachable", "a Teachable Machine image model (imported; transfer learning, no reasons)",
                      "pixels", False, _load, _save, "teachable/{name}", _claims),)
