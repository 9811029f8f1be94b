"""Build a Teachable Machine style export ("Tensorflow" -> "Keras") in a folder: for tests,
benchmarks and trying the import page, since no real export can be downloaded here.

Teachable Machine exports ``keras_model.h5`` + ``labels.txt``; the model was saved by tf.keras 2.x:
``Sequential[Sequential[Functional MobileNetV2 "model1", GlobalAveragePooling2D],
Sequential "sequential_3"[Dense 100 relu, Dense N softmax]]``, with Keras 2 configs (plain dtype
strings, ``[[["layer", 0, 0, {}]]]`` inbound nodes, ``batch_input_shape``, DepthwiseConv2D with
``groups: 1``) and Keras 2 weight names (``Conv1/kernel:0``, ``.../depthwise_kernel:0``).
Keras 3 cannot write such a file, so we build a small model of the same shape with Keras 3, save it
as legacy HDF5 and rewrite its config and weight names with h5py the way Keras 2 would have
written them. The backbone is a shrunken MobileNetV2 (same layer names and types, few channels).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KERAS2_VERSION = "2.4.0"
INPUT_SIZE = 224


@dataclass
class TeachableExport:
    folder: Path
    model_path: Path
    labels_path: Path
    model: Any  # the in-memory Keras 3 model the file was written from
    labels: tuple[str, ...]

    def zip(self, name: str = "converted_keras.zip", members: Sequence[str] | None = None) -> Path:
        """Zip the export the way Teachable Machine's download does (files at the zip root)."""
        path = self.folder / name
        with zipfile.ZipFile(path, "w") as zf:
            for member in members or ("keras_model.h5", "labels.txt"):
                zf.write(self.folder / member, member)
        return path


def build_teachable_model(num_classes: int, seed: int = 0, mobilenet: bool = False):
    """A Teachable Machine shaped model (Keras 3, in memory).

    The backbone is a tiny MobileNetV2 look-alike, or with ``mobilenet`` the real
    ``MobileNetV2(alpha=0.35)`` architecture Teachable Machine uses (random weights, ~0.4 M).
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    if mobilenet:
        app = keras.applications.MobileNetV2(input_shape=(INPUT_SIZE, INPUT_SIZE, 3), alpha=0.35,
                                             include_top=False, weights=None)
        backbone = keras.Model(app.input, app.output, name="model1")
    else:
        backbone = _tiny_backbone()
    width = backbone.output_shape[-1]
    features = keras.Sequential(
        [keras.Input((INPUT_SIZE, INPUT_SIZE, 3)), backbone,
         layers.GlobalAveragePooling2D(name="global_average_pooling2d_GlobalAveragePooling2D1")],
        name="sequential_1")
    head = keras.Sequential(
        [keras.Input((width,)),
         layers.Dense(16, activation="relu", name="dense_Dense1"),
         layers.Dense(num_classes, activation="softmax", use_bias=False, name="dense_Dense2")],
        name="sequential_3")
    model = keras.Sequential([keras.Input((INPUT_SIZE, INPUT_SIZE, 3)), features, head], name="sequential_4")
    # Random, non-trivial BN statistics so that a wrong weight mapping shows in the predictions.
    rng = np.random.default_rng(seed)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    # A confident head, so that class probabilities differ clearly between images.
    dense = head.get_layer("dense_Dense2")
    dense.set_weights([w * 8.0 for w in dense.get_weights()])
    return model


def _tiny_backbone():
    """MobileNetV2's first blocks with its layer names and types, 4-8 channels."""
    import keras
    from keras import layers

    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input_1")
    x = layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inp)
    x = layers.BatchNormalization(name="bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="expanded_conv_depthwise")(x)
    y = layers.BatchNormalization(name="expanded_conv_depthwise_BN")(y)
    y = layers.ReLU(6.0, name="expanded_conv_depthwise_relu")(y)
    y = layers.Conv2D(4, 1, use_bias=False, name="expanded_conv_project")(y)
    y = layers.BatchNormalization(name="expanded_conv_project_BN")(y)
    x = layers.Add(name="expanded_conv_add")([x, y])
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="block_1_pad")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name="block_1_depthwise")(x)
    x = layers.BatchNormalization(name="block_1_depthwise_BN")(x)
    x = layers.Conv2D(8, 1, use_bias=False, name="Conv_1")(x)
    x = layers.BatchNormalization(name="Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    return keras.Model(inp, x, name="model1")


def write_teachable_export(folder: str | Path, labels: Sequence[str], seed: int = 0,
                           functional_class: str = "Functional", config_hook=None,
                           mobilenet: bool = False, model=None) -> TeachableExport:
    """Write ``keras_model.h5`` (Keras 2 style) and ``labels.txt`` (``0 angry`` lines) to ``folder``.

    ``config_hook(config) -> config`` may alter the Keras 2 model config before it is written
    (e.g. to insert a Lambda layer). ``model``: a model of ``build_teachable_model``'s shape to
    write instead of a new one.
    """
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_teachable_model(len(labels), seed=seed, mobilenet=mobilenet)
    model_path = folder / "keras_model.h5"
    model.save(model_path)
    with h5py.File(model_path, "r+") as f:
        config = keras2_config(json.loads(f.attrs["model_config"]), functional_class)
        if config_hook is not None:
            config = config_hook(config)
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        f.attrs["keras_version"] = KERAS2_VERSION.encode("utf8")
        depthwise = {layer.name for layer in _leaf_layers(model) if type(layer).__name__ == "DepthwiseConv2D"}
        _keras2_weights(f["model_weights"], depthwise)
    labels_path = folder / "labels.txt"
    labels_path.write_text("".join(f"{i} {name}\n" for i, name in enumerate(labels)), encoding="utf8")
    return TeachableExport(folder, model_path, labels_path, model, tuple(labels))


# ---------------------------------------------------------------- Keras 3 -> Keras 2 rewriting

_DROP_KEYS = {"module", "registered_name", "build_config", "compile_config", "optional",
              "synchronized", "renorm", "renorm_clipping", "renorm_momentum",
              "input_axes", "output_axes", "quantization_config", "lora_rank", "lora_alpha"}


def keras2_config(node: Any, functional_class: str = "Functional") -> Any:
    """Rewrite a Keras 3 model config the way tf.keras 2.x writes it."""
    if isinstance(node, list):
        return [keras2_config(item, functional_class) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") == "DTypePolicy":
        return node["config"]["name"]
    out = {k: keras2_config(v, functional_class) for k, v in node.items() if k not in _DROP_KEYS}
    cls = out.get("class_name")
    cfg = out.get("config")
    if cls == "Functional":
        out["class_name"] = functional_class
        for key in ("input_layers", "output_layers"):
            if cfg[key] and isinstance(cfg[key][0], str):
                cfg[key] = [cfg[key]]  # Keras 2 always wrote a list of [layer, node, tensor]
    if cls == "InputLayer":
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    if cls == "DepthwiseConv2D":
        cfg["groups"] = 1  # what tf.keras 2.x wrote and Keras 3 refuses
    if cls == "BatchNormalization":
        cfg["axis"] = [3]
    if cls == "Sequential":
        _keras2_sequential(cfg)
    if "inbound_nodes" in out:
        out["inbound_nodes"] = [_keras2_node(n) for n in node["inbound_nodes"]]
    return out


def _keras2_sequential(cfg: dict) -> None:
    """Keras 2 kept the input shape on the first layer and a ``build_input_shape``."""
    layers = cfg["layers"]
    if layers and layers[0]["class_name"] == "InputLayer":
        shape = layers.pop(0)["config"]["batch_input_shape"]
        cfg["build_input_shape"] = shape
        if layers and layers[0]["class_name"] not in ("Functional", "Model", "Sequential"):
            layers[0]["config"]["batch_input_shape"] = shape


def _keras2_node(node: dict) -> list:
    """``{"args": [tensor | [tensors]]}`` -> ``[["layer", node_index, tensor_index, {}], ...]``."""
    tensors = node["args"][0]
    if isinstance(tensors, dict):
        tensors = [tensors]
    return [[*t["config"]["keras_history"], {}] for t in tensors]


def _leaf_layers(layer) -> list:
    inner = getattr(layer, "layers", None)
    return [leaf for sub in inner for leaf in _leaf_layers(sub)] if inner else [layer]


def _keras2_weights(group, depthwise_layers: set[str]) -> None:
    """Rename weights to Keras 2 style (``Conv1/kernel:0``, ``depthwise_kernel``), same order."""
    group.attrs["keras_version"] = KERAS2_VERSION.encode("utf8")
    for layer_name in [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]:
        layer_group = group[layer_name]
        names = [n.decode() if isinstance(n, bytes) else n for n in layer_group.attrs["weight_names"]]
        values = [layer_group[n][()] for n in names]
        for key in list(layer_group.keys()):
            del layer_group[key]
        new_names = []
        for name, value in zip(names, values):
            leaf, var = name.split("/")[-2:]
            if leaf in depthwise_layers and var == "kernel":
                var = "depthwise_kernel"
            new_name = f"{leaf}/{var}:0"
            layer_group.create_dataset(new_name, data=value)
            new_names.append(new_name.encode("utf8"))
        layer_group.attrs["weight_names"] = new_names
    if "top_level_model_weights" in group:
        del group["top_level_model_weights"]


def face_like_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Varied RGB uint8 images of different sizes (predictors must resize them)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(40, 300)), int(rng.integers(40, 300)), 3), dtype=np.uint8)
            for _ in range(n)]


# ---------------------------------------------------------------- the other two downloads

TFJS_FILES = ("model.json", "weights.bin", "metadata.json")


def zip_export(folder: str | Path, members: Sequence[str], name: str) -> Path:
    """Zip files of an export folder at the zip root, as Teachable Machine's download does."""
    folder = Path(folder)
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            zf.write(folder / member, member)
    return path


def tfjs_topology_of(model, teachable_style: bool = True) -> dict:
    """The ``modelTopology`` of a model: Keras 3's own config, or (``teachable_style``) the
    tfjs-layers 1.x shape of Teachable Machine's model.json - Keras 2 configs, ``Model`` for
    functional models, each Sequential's config a bare list of its layers (no name, no
    ``build_input_shape``), weight-file paths like ``./weights.bin``."""
    config = json.loads(model.to_json())
    if teachable_style:
        config = _tfjs_layers_style(keras2_config(config, "Model"))
    return {**config, "keras_version": "tfjs-layers 1.3.1", "backend": "tensor_flow.js"}


def _tfjs_layers_style(node: Any) -> Any:
    if isinstance(node, list):
        return [_tfjs_layers_style(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tfjs_layers_style(v) for k, v in node.items()}
    if out.get("class_name") == "Sequential" and isinstance(out.get("config"), dict):
        out["config"] = out["config"]["layers"]
    return out


def _quantize(value: np.ndarray, how: str | None) -> tuple[bytes, dict | None]:
    """A weight's bytes and tfjs ``quantization`` entry (as ``tensorflowjs_converter`` writes them)."""
    if how is None:
        return value.astype("<f4").tobytes(), None
    if how == "float16":
        return value.astype("<f2").tobytes(), {"dtype": "float16", "original_dtype": "float32"}
    levels = {"uint8": 255, "uint16": 65535}[how]
    low, high = float(value.min(initial=0.0)), float(value.max(initial=0.0))
    scale = (high - low) / levels or 1.0
    q = np.round((value - low) / scale).astype("<u1" if how == "uint8" else "<u2")
    return q.tobytes(), {"dtype": how, "scale": scale, "min": low, "original_dtype": "float32"}


def write_tfjs_export(folder: str | Path, model, labels: Sequence[str], teachable_style: bool = True,
                      quantization: str | None = None, shards: int = 1) -> Path:
    """Write ``model.json`` + weight shards + ``metadata.json`` the way Teachable Machine's
    TensorFlow.js download has them (tfjs ``model.save``): weights named ``layer/variable``,
    trainable ones first, little-endian float32 (or quantized), split into ``shards`` files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    leaves = _leaf_layers(model)
    ordered = [(leaf, v) for leaf in leaves for v in leaf.trainable_weights] + \
              [(leaf, v) for leaf in leaves for v in leaf.non_trainable_weights]
    specs, chunks = [], []
    for leaf, variable in ordered:
        value = np.asarray(variable.numpy(), dtype=np.float32)
        name = "depthwise_kernel" if type(leaf).__name__ == "DepthwiseConv2D" and variable.name == "kernel" \
            else variable.name
        data, quant = _quantize(value, quantization)
        spec: dict[str, Any] = {"name": f"{leaf.name}/{name}", "shape": list(value.shape), "dtype": "float32"}
        if quant:
            spec["quantization"] = quant
        specs.append(spec)
        chunks.append(data)
    blob = b"".join(chunks)
    step = -(-len(blob) // shards)
    paths = ["weights.bin"] if shards == 1 else [f"group1-shard{i + 1}of{shards}.bin" for i in range(shards)]
    for i, path in enumerate(paths):
        (folder / path).write_bytes(blob[i * step:(i + 1) * step])
    if teachable_style:
        paths = [f"./{path}" for path in paths]
    (folder / "model.json").write_text(json.dumps({
        "modelTopology": tfjs_topology_of(model, teachable_style),
        "weightsManifest": [{"paths": paths, "weights": specs}],
        "format": "layers-model", "generatedBy": "TensorFlow.js tfjs-layers v1.3.1", "convertedBy": None}),
        encoding="utf8")
    (folder / "metadata.json").write_text(json.dumps({
        "tfjsVersion": "1.3.1", "tmVersion": "2.4.7", "packageVersion": "0.8.4-alpha2",
        "packageName": "@teachablemachine/image", "timeStamp": "2026-01-01T00:00:00.000Z", "userMetadata": {},
        "modelName": "tm-my-image-model", "labels": list(labels), "imageSize": INPUT_SIZE}), encoding="utf8")
    return folder


def write_tflite_export(folder: str | Path, model, labels: Sequence[str],
                        calibration: np.ndarray | None = None) -> Path:
    """Write Teachable Machine's TensorFlow Lite download: ``model_unquant.tflite`` (float), or
    with ``calibration`` inputs ((n, h, w, 3) in [-1, 1]) the fully integer-quantized
    ``model.tflite`` (uint8 input and output); and ``labels.txt``. Returns the model file."""
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    name = "model_unquant.tflite"
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
        name = "model.tflite"
    path = folder / name
    path.write_bytes(converter.convert())
    (folder / "labels.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(labels)), encoding="utf8")
    return path
