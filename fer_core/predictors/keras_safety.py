"""Checks on Keras model files (HDF5 weights, architectures) before anything in them is read or built.

HDF5 can point outside itself: an external dataset takes its values from any file on the server
(``/etc/passwd`` as "weights"), a virtual dataset maps other files in, external links open other
files and filter plugins load shared libraries. A model file can also *declare* far more than it
holds: a 1 GiB dataset stored as unwritten chunks takes a few KB on disk, and an architecture with
a 150-million-parameter Dense layer allocates 600 MB the moment Keras builds it.

So every link and dataset is checked from HDF5 metadata alone, and the architecture is first
built with Keras' ``StatelessScope``, which creates variables without memory, to count its
parameters and compare their shapes with the file; only then are the variables allocated.
"""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import ModelFileError, one_line

CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})  # layers that carry Python code
MAX_PARAMETERS = 8_000_000  # Teachable Machine's MobileNetV2 (alpha 0.35) has 0.4 M, our CNNs 1.3 M
# Values one image makes a layer compute, and all layers together: a model of few parameters can
# still ask for gigabytes (a 1.3 KB export whose UpSampling2D made 3.4 G values took the dashboard
# to 14 GB). Teachable Machine's MobileNetV2 computes at most 0.6 M in a layer and 9.6 M in all.
MAX_LAYER_VALUES = 16_000_000  # 64 MB of float32 per image
MAX_MODEL_VALUES = 160_000_000
_SAFE_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32000: "lzf"}  # built into HDF5 / h5py


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def check_hdf5_storage(h5: Any, source: str, max_bytes: int, hint: str) -> None:
    """Refuse links to other files or objects, and datasets stored outside the file, virtual,
    filtered by a plugin, or declaring more than ``max_bytes`` (each and together) - reading
    only metadata."""
    import h5py
    from h5py import h5d

    # h5py's visit callbacks must not raise: each returns the problem found, which stops the visit.
    def link_problem(name: str, link: Any) -> str | None:
        if isinstance(link, h5py.HardLink):
            return None
        what = "an external link to another file" if isinstance(link, h5py.ExternalLink) else "a soft link"
        return f"{name!r} is {what}, which is not followed"

    total = 0

    def dataset_problem(name: str, obj: Any) -> str | None:
        nonlocal total
        if not isinstance(obj, h5py.Dataset):
            return None
        plist = obj.id.get_create_plist()
        layout = plist.get_layout()
        if layout == h5d.VIRTUAL:
            return f"dataset {name!r} is a virtual dataset (values mapped from other files), which is not read"
        if plist.get_external_count():
            external = plist.get_external(0)[0]
            external = external.decode("utf8", "replace") if isinstance(external, bytes) else str(external)
            return f"dataset {name!r} takes its values from a file outside the model ({external}), which is not read"
        if layout not in (h5d.CONTIGUOUS, h5d.CHUNKED, h5d.COMPACT):
            return f"dataset {name!r} has an unknown storage layout ({layout})"
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in _SAFE_FILTERS:
                return f"dataset {name!r} needs HDF5 filter {code} (a plugin), which is not loaded"
        declared = obj.id.get_space().get_simple_extent_npoints() * obj.dtype.itemsize
        total += declared
        if declared > max_bytes:
            return f"dataset {name!r} declares {_mb(declared)}, more than a model file holds ({_mb(max_bytes)})"
        if total > max_bytes:
            return f"its datasets declare more than a model file holds ({_mb(max_bytes)})"
        return None

    problem = h5.visititems_links(link_problem) or h5.visititems(dataset_problem)
    if problem:
        raise ModelFileError(f"{source}: {problem}; {hint}")


def read_dataset(dataset: Any, source: str, name: str, hint: str):
    """A numeric dataset's values (checked by ``check_hdf5_storage`` before), as a NumPy array."""
    import numpy as np

    if dataset.dtype.kind not in "fiu" or dataset.dtype.fields is not None:
        raise ModelFileError(f"{source}: weight {name} holds {dataset.dtype} values, not numbers; {hint}")
    try:
        values = np.asarray(dataset[()])
    except (OSError, ValueError, TypeError) as exc:  # damaged chunks, failed checksums
        raise ModelFileError(f"{source}: unreadable weight {name} ({one_line(exc, 160)}); {hint}") from None
    return finite_weight(values, source, name, hint)


def finite_weight(values: Any, source: str, name: str, hint: str):
    """``values`` if every one is a finite number: a flipped bit in a float32 makes NaN or
    infinity, which no trained network holds and which turns every answer into NaN."""
    import numpy as np

    if not np.isfinite(values).all():
        raise ModelFileError(f"{source}: weight {name} holds NaN or infinite values (a damaged file); {hint}")
    return values


def build_deferred(build: Callable[[], Any], check: Callable[[Any], None], source: str, hint: str,
                   keep: bool = True, max_parameters: int = MAX_PARAMETERS,
                   failure: str = "cannot rebuild the model") -> Any:
    """``build()`` a Keras model from a config without allocating its variables, refuse it if it
    has more than ``max_parameters``, run ``check(model)`` (e.g. compare shapes with the file),
    and only then allocate (``keep``) and return it; with ``keep=False`` nothing is allocated and
    None is returned. A config Keras cannot build is refused as "``failure`` (why)".

    Keras records variables created in a ``StatelessScope`` as "to initialise later" in
    thread-local state, so the build runs in a thread of its own: a refused model's variables
    are forgotten with that thread instead of being allocated by the next scope to close.
    """
    from ..measure.landmarker import quiet_native_logs
    from .keras_io import import_keras

    keras = import_keras()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with keras.StatelessScope(initialize_variables=False):
                model = build()
                parameters = sum(math.prod(v.shape) for v in model.variables)
                if parameters > max_parameters:
                    raise ModelFileError(f"{source}: the architecture declares {parameters:,} parameters, more "
                                         f"than a model here may have ({max_parameters:,}); {hint}")
                check_activation_sizes(model, source, hint)
                check(model)
            if keep:
                with keras.StatelessScope():  # closing it allocates the variables created above
                    pass
                outcome["model"] = model
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="keras-deferred-build", daemon=True)
    # Garbage is freed here, not in the build thread: an h5py object freed there (a traceback's
    # frames still holding a file's dataset) waits for h5py's lock, which the thread waiting in
    # join() can hold, and the load hung for good. The build thread runs with collection paused.
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        with quiet_native_logs():  # TensorFlow's device set-up lines (CLI only: see its doc)
            thread.start()
            thread.join()
    finally:
        if collecting:
            gc.enable()
    error = outcome.get("error")
    if isinstance(error, ModelFileError) or (error is not None and not isinstance(error, Exception)):
        raise error
    if error is not None:  # Keras raises many types for configs it cannot build
        raise ModelFileError(f"{source}: {failure} ({one_line(error, 160)}); {hint}") from None
    return outcome.get("model")


def _layer_outputs(model: Any) -> Iterator[tuple[str, int]]:
    """(layer name, values it computes per image) for every output of every layer, nested models'
    layers included, from the shapes Keras inferred while building (nothing is computed)."""
    for layer in getattr(model, "layers", ()):
        for node in getattr(layer, "_inbound_nodes", ()):
            for tensor in getattr(node, "output_tensors", None) or ():
                yield layer.name, math.prod(int(d) for d in tuple(tensor.shape)[1:] if d is not None)
        yield from _layer_outputs(layer)


def check_activation_sizes(model: Any, source: str, hint: str) -> None:
    """Refuse a Keras model whose layers would compute more values per image than
    ``MAX_LAYER_VALUES`` (one layer) or ``MAX_MODEL_VALUES`` (all): said before anything runs,
    not as memory lost."""
    check_value_counts(_layer_outputs(model), source, hint, "layer", "computes")


def check_lite_tensor_sizes(interpreter: Any, source: str, hint: str) -> None:
    """The same limits for a TensorFlow Lite model, from the tensor shapes its file declares, read
    before ``allocate_tensors`` (which would take the memory: 2.6 GB for a 3 KB file). Only declared
    shapes are checked: a tensor whose size LiteRT works out while allocating (a dynamic reshape)
    declares a placeholder and is not caught here."""
    counts = ((str(d.get("name", "?")), math.prod(int(n) for n in d.get("shape", ())))
              for d in interpreter.get_tensor_details())
    check_value_counts(counts, source, hint, "tensor", "holds")


def check_value_counts(counts: Iterable[tuple[str, int]], source: str, hint: str, part: str, verb: str) -> None:
    total = 0
    for name, values in counts:
        if values > MAX_LAYER_VALUES:
            raise ModelFileError(f"{source}: its {part} {name!r} {verb} {values:,} values for each image, more "
                                 f"than a model here may ({MAX_LAYER_VALUES:,}; about {_mb(4 * values)}); {hint}")
        total += values
        if total > MAX_MODEL_VALUES:
            raise ModelFileError(f"{source}: its {part}s {verb.removesuffix('s')} more than {MAX_MODEL_VALUES:,} "
                                 f"values for each image, more than a model here may; {hint}")


def check_keras_archive(path: str, max_bytes: int, max_json_bytes: int, hint: str) -> dict:
    """A ``.keras`` zip's architecture (``config.json``), after checking the declared sizes of its
    members and the storage of its HDF5 weights, reading nothing large."""
    import zipfile

    import h5py

    from ..safe_files import check_zip_members, parse_json

    try:
        with open(path, "rb") as fh:  # the end record is in the last 64 KB
            fh.seek(max(0, fh.seek(0, 2) - (22 + 0xFFFF)))
            check_zip_members(fh.read(), path, hint)
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            for info in members.values():
                limit = max_json_bytes if info.filename.endswith(".json") else max_bytes
                if info.file_size > limit:
                    raise ModelFileError(f"{path}: {info.filename} inside declares {_mb(info.file_size)}, more "
                                         f"than a model file holds ({_mb(limit)}); {hint}")
            if "config.json" not in members:
                raise ModelFileError(f"{path}: cannot load this Keras model (no config.json inside); {hint}")
            config = parse_json(zf.read("config.json"), f"{path} (its config.json)", hint)
            if "model.weights.h5" in members:
                with zf.open("model.weights.h5") as fh, h5py.File(fh, "r") as h5:
                    check_hdf5_storage(h5, f"{path} (its model.weights.h5)", max_bytes, hint)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: cannot load this Keras model (damaged archive: {one_line(exc, 160)}); "
                             f"{hint}") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: cannot load this Keras model (config.json holds no architecture); {hint}")
    return config


def code_layer(config: Any) -> str | None:
    """The class name of the first layer in a Keras config (any nesting) that carries Python
    code (``CODE_LAYERS``), or None: such a model is refused by name, not by Keras's own error."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") in CODE_LAYERS:
                return str(node["class_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None
