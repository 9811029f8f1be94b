"""Bad model files end as one clear line naming the file: never a traceback, never a silent wrong
result, never more than 1 GB of memory.

Every bad file is made here, at test time. The Python API is tested in this process (nothing
here imports TensorFlow: each bad file is refused before it would be needed); the command line,
and the inputs whose refusal needs Keras (an architecture declaring 150 M parameters), run as
subprocesses whose peak memory is measured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from model_edits import set_at as _set

from fer_core.au_table import AU_COLUMNS
from fer_core.config import REPO_ROOT
from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import ModelFileError
from fer_core.manifest import read_manifest
from fer_core.predictors.au_gam import AUGam
from fer_core.predictors.au_models import AUModel
from fer_core.predictors.cnn import load_keras_file
from fer_core.predictors.registry import find_entry, load_predictor
from fer_core.predictors.teachable import load_teachable, read_export

ONE_GB_KB = 2**20  # ru_maxrss is in kilobytes on Linux


def refused(call: Callable, *args, match: str, names: Path | str | None = None) -> str:
    """The one-line ModelFileError message of ``call(*args)``, checked to name ``names``."""
    with pytest.raises(ModelFileError, match=match) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    if names is not None:
        assert str(names) in message
    return message


# ----------------------------------------------------------------------------- AU model JSON

def logreg_dict() -> dict:
    rng = np.random.default_rng(0)
    return {"format": "fer-au-model/1", "kind": "au-logreg", "classes": list(SIX_EMOTIONS),
            "au_columns": list(AU_COLUMNS), "mean": [0.5] * 17, "scale": [1.0] * 17,
            "weights": [rng.normal(size=(6, 17)).tolist()], "biases": [[0.0] * 6], "info": {}}


def mlp_dict() -> dict:
    d = logreg_dict()
    d.update(kind="au-mlp", weights=[np.ones((17, 8)).tolist(), np.ones((8, 6)).tolist()],
             biases=[[0.0] * 8, [0.0] * 6])
    return d


def gam_dict() -> dict:
    return {"format": "fer-au-gam/1", "kind": "au-gam", "classes": list(SIX_EMOTIONS),
            "au_columns": list(AU_COLUMNS), "intercept": [0.0] * 6,
            "terms": [{"features": [0], "cuts": [[0.5, 1.5]], "scores": np.zeros((5, 6)).tolist()},
                      {"features": [1, 2], "cuts": [[1.0], [2.0]], "scores": np.zeros((4, 4, 6)).tolist()}],
            "info": {}}


def changed(make: Callable[[], dict], *edits: Callable[[dict], None], **fields) -> bytes:
    """A good model's JSON with ``fields`` replaced and ``edits`` applied."""
    d = {**make(), **fields}
    for edit in edits:
        edit(d)
    return json.dumps(d).encode()  # NaN and Infinity are written as JSON's common extension


DEEP = "[" * 100_000 + "]" * 100_000

AU_FILES = {
    "latin1": (json.dumps({**logreg_dict(), "info": {"data": {"description": "café"}}}, ensure_ascii=False)
               .encode("latin-1"), r"not UTF-8 text \(byte 0xe9"),
    "utf16": (json.dumps(logreg_dict()).encode("utf-16"), r"not UTF-8 text .*UTF-16"),
    "utf16-no-bom": (json.dumps(logreg_dict()).encode("utf-16-le"), r"not UTF-8 text .*UTF-16"),
    "deep": (('{"format": "fer-au-model/1", "kind": "au-logreg", "info": ' + DEEP + "}").encode(),
             "JSON nested too deeply"),
    "deep-but-parseable": (('{"format": "fer-au-model/1", "info": ' + "[" * 500 + "]" * 500 + "}").encode(),
                           r"nested too deeply \(more than 64 levels\)"),
    "not-an-object": (b"[1, 2, 3]", "not a JSON AU model|not an AU model file"),
    "coef-6x5": (changed(logreg_dict, weights=[np.ones((6, 5)).tolist()]),
                 r"field 'weights\[0\]' is 6×5 but au-logreg needs 6×17"),
    "mlp-no-chain": (changed(mlp_dict, weights=[np.ones((17, 8)).tolist(), np.ones((9, 6)).tolist()]),
                     r"field 'weights\[1\]' takes 9 inputs but weights\[0\] gives 8"),
    "mlp-wrong-outputs": (changed(mlp_dict, weights=[np.ones((17, 8)).tolist(), np.ones((8, 4)).tolist()],
                                  biases=[[0.0] * 8, [0.0] * 4]), r"field 'weights\[1\]' gives 4 outputs for 6 classes"),
    "bias-size": (changed(logreg_dict, biases=[[0.0] * 5]), r"field 'biases\[0\]' has 5 values for 6 units"),
    "ragged": (changed(logreg_dict, weights=[[[1.0] * 17] * 5 + [[1.0] * 3]]),
               r"field 'weights\[0\]' is not a rectangular array"),
    "no-classes": (changed(logreg_dict, classes=None), "field 'classes' is missing or empty"),
    "empty-classes": (changed(logreg_dict, classes=[]), "field 'classes' is missing or empty"),
    "one-emotion": (changed(logreg_dict, classes=["happy"]), "field 'classes' has only 'happy'"),
    "same-emotion-twice": (changed(logreg_dict, classes=["happy", "sad", "happy", "neutral", "angry", "disgust"]),
                           "field 'classes' names 'happy' more than once"),
    "unknown-emotion": (changed(logreg_dict, classes=["angry", "bored", "happy", "neutral", "sad", "surprise"]),
                        "field 'classes' names unknown emotion 'bored'"),
    "au-unknown": (changed(logreg_dict, au_columns=list(AU_COLUMNS[:16]) + ["AU99_r"]),
                   "field 'au_columns' names unknown AU column 'AU99_r'"),
    "au-twice": (changed(logreg_dict, au_columns=list(AU_COLUMNS[:16]) + ["AU01_r"]),
                 "field 'au_columns' names 'AU01_r' more than once"),
    "au-subset-mean": (changed(logreg_dict, au_columns=list(AU_COLUMNS[:7])), "field 'mean' has 17 values, expected 7"),
    "scale-zero": (changed(logreg_dict, scale=[1.0] * 16 + [0.0]), "field 'scale' has zeros; retrain the model"),
    "scale-short": (changed(logreg_dict, scale=[1.0] * 16), "field 'scale' has 16 values, expected 17"),
    "nan-weight": (changed(logreg_dict, _set("weights.0.2.3", float("nan"))),
                   r"field 'weights\[0\]' holds NaN or infinite values"),
    "inf-mean": (changed(logreg_dict, _set("mean.4", float("inf"))), "field 'mean' holds NaN or infinite"),
    "nan-scale": (changed(logreg_dict, _set("scale.0", float("nan"))), "field 'scale' holds NaN or infinite"),
    "nan-bias-mlp": (changed(mlp_dict, _set("biases.0.1", float("nan"))),
                     r"field 'biases\[0\]' holds NaN or infinite"),
    "overflowing-number": (json.dumps(logreg_dict()).replace('"mean": [0.5', '"mean": [1e999', 1).encode(),
                           "field 'mean' holds NaN or infinite"),
    "bad-holdout": (changed(logreg_dict, info={"metrics": {"holdout": {"n": "many"}}}),
                    "field 'info.metrics.holdout' is malformed"),
    "gam-scores": (changed(gam_dict, _set("terms.0.scores", [[0.0]])), r"field 'terms\[0\]\.scores' is 1×1, expected 5×6"),
    "gam-cuts-order": (changed(gam_dict, _set("terms.0.cuts", [[1.5, 0.5]])), r"'terms\[0\]\.cuts\[0\]' is not increasing"),
    "gam-feature": (changed(gam_dict, _set("terms.1.features", [1, 17])), r"'terms\[1\]\.features' must name distinct AUs"),
    "gam-nan-intercept": (changed(gam_dict, _set("intercept.2", float("nan"))), "field 'intercept' holds NaN"),
    "gam-no-terms": (changed(gam_dict, terms=[]), "field 'terms' is missing or empty"),
    "gam-one-emotion": (changed(gam_dict, classes=["sad", "sad"]), "field 'classes' names 'sad' more than once"),
    # an integer of 400 digits: math.isfinite raised OverflowError (a traceback) in the metrics check
    "huge-count": (changed(logreg_dict, info={"metrics": {"holdout": {"n": 10**400}}}),
                   "field 'info.metrics.holdout' is malformed"),
    "huge-share": (changed(logreg_dict, info={"metrics": {"holdout": {"accuracy": 10**400}}}),
                   "field 'info.metrics.holdout' is malformed"),
    "long-text-among-weights": (changed(mlp_dict, _set("weights.0.3.2", "x" * 1000)),
                                r"field 'weights\[0\]' holds text or true/false where numbers belong"),
}


def test_good_au_files_load(tmp_path):
    """The fixtures' good versions load: each bad file differs from a good one in one way."""
    for name, make in (("logreg", logreg_dict), ("mlp", mlp_dict), ("gam", gam_dict)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(make()))
        predictor = load_predictor(str(path))
        assert predictor.classes == SIX_EMOTIONS
        assert np.isfinite(predictor.proba_from_aus(np.ones((2, 17)))).all()


@pytest.mark.parametrize("case", sorted(AU_FILES))
def test_bad_au_model_files_are_refused_naming_file_and_field(tmp_path, models_dir, case):
    data, match = AU_FILES[case]
    path = tmp_path / f"{case}.json"
    path.write_bytes(data)
    refused(load_predictor, str(path), match=match, names=path)
    refused(AUGam.load if case.startswith("gam") else AUModel.load, path, match=match, names=path)


def test_one_long_text_in_a_weight_matrix_costs_no_gigabytes(tmp_path):
    """numpy made a text array as wide as the longest string for every value of the matrix: one
    100,000-character string among a GAM's 6,000 scores asked for 2.4 GB before the refusal."""
    import tracemalloc

    path = tmp_path / "wide.json"
    path.write_bytes(changed(mlp_dict, _set("weights.0", np.ones((17, 300)).tolist()),
                             _set("biases.0", [0.0] * 300), _set("weights.1", np.ones((300, 6)).tolist()),
                             _set("weights.0.5.7", "x" * 100_000)))
    tracemalloc.start()
    try:
        refused(AUModel.load, path, match=r"'weights\[0\]' holds text", names=path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MB"  # was 2 GB (17 x 300 cells of 400 KB)


# ----------------------------------------------------------------------------- special files

def special_files(folder: Path, suffix: str) -> dict[str, Path]:
    """A symlink to /dev/zero, a FIFO, a folder and a sparse file larger than any model, all
    named like a model file."""
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / f"zero{suffix}"
    zero.symlink_to("/dev/zero")
    fifo = folder / f"fifo{suffix}"
    os.mkfifo(fifo)
    directory = folder / f"folder{suffix}"
    directory.mkdir()
    huge = folder / f"huge{suffix}"
    with open(huge, "wb") as fh:
        fh.truncate(129 * 2**20)  # sparse: no disk, no time
    return {"zero": zero, "fifo": fifo, "folder": directory, "huge": huge}


SPECIAL_MESSAGES = {"zero": "is a character device, not a regular file", "fifo": "is a named pipe",
                    "folder": "is a folder", "huge": "larger than"}


@pytest.mark.parametrize("suffix", [".json", ".keras", ".h5", ".zip"])
def test_special_files_are_never_read(tmp_path, models_dir, suffix):
    direct = {".json": AUModel.load, ".keras": load_keras_file, ".h5": load_teachable, ".zip": read_export}[suffix]
    for what, path in special_files(tmp_path, suffix).items():
        match = SPECIAL_MESSAGES[what]
        if what == "folder" and suffix in (".h5", ".zip"):  # read as a Teachable Machine export folder
            match = "no keras_model.h5 in this folder"
        refused(load_predictor, str(path), match=match, names=path)
        refused(direct, path, match=match, names=path)


def test_special_labels_and_manifest_files(tmp_path):
    export = tmp_path / "export"
    write_tm_h5(export / "keras_model.h5", labels=None)
    os.mkfifo(export / "labels.txt")  # beside the model: would block a plain read for ever
    refused(load_teachable, export, match="labels.txt: is a named pipe", names=export / "labels.txt")
    refused(load_teachable, export / "keras_model.h5", match="is a named pipe")
    refused(load_teachable, export / "keras_model.h5", tmp_path, match="is a folder")
    for what, path in special_files(tmp_path / "m", ".json").items():
        models = tmp_path / f"models-{what}"
        models.mkdir()
        (models / "manifest.json").symlink_to(path)
        refused(read_manifest, models, match=SPECIAL_MESSAGES[what], names=models / "manifest.json")
    upload = b"\x89HDF\r\n\x1a\n" + bytes(65 * 2**20)
    refused(load_teachable, upload, match="uploaded file: larger than 64 MB")


# ----------------------------------------------------------------------------- manifest

MANIFEST_CASES = {
    "object": (b'{"name": "x"}', "manifest must be a JSON list of model entries, not an object"),
    "entry-not-object": (b'[{"name": "a", "kind": "au-logreg", "path": "a.json"}, "b"]',
                         "entry 2 is text, not an object; fix or remove it"),
    "no-kind": (json.dumps([{"name": "a", "kind": "au-logreg", "path": "a.json"},
                            {"name": "b", "kind": "au-logreg", "path": "b.json"},
                            {"name": "c", "path": "c.json"}]).encode(), "entry 3 has no 'kind'; fix or remove it"),
    "no-path": (b'[{"name": "a", "kind": "au-logreg"}]', "entry 1 has no 'path'"),
    "null-name": (b'[{"name": null, "kind": "au-logreg", "path": "a.json"}]', "entry 1 has no 'name'"),
    "number-kind": (b'[{"name": "a", "kind": 3, "path": "a.json"}]', "entry 1 has a 'kind' that is a number, not text"),
    "classes-text": (b'[{"name": "a", "kind": "cnn", "path": "a.keras", "classes": "happy"}]',
                     r"entry 1 \('a'\) has 'classes' that are not a list of emotion names"),
    "metrics-list": (b'[{"name": "a", "kind": "cnn", "path": "a.keras", "metrics": [1]}]',
                     r"entry 1 \('a'\) has 'metrics' that are a list, not an object"),
    "mapping-list": (b'[{"name": "a", "kind": "teachable", "path": "a.h5", "mapping": ["happy"]}]',
                     r"entry 1 \('a'\) has a 'mapping' that is not an object"),
    "duplicate": (b'[{"name": "a", "kind": "cnn", "path": "a.keras"}, {"name": "a", "kind": "cnn", "path": "b.keras"}]',
                  "entries 1 and 2 are both named 'a'"),
    "deep": (DEEP.encode(), "JSON nested too deeply"),
    "latin1": ('[{"name": "café", "kind": "cnn", "path": "a.keras"}]'.encode("latin-1"), "not UTF-8 text"),
    "utf16": ('[{"name": "a", "kind": "cnn", "path": "a.keras"}]'.encode("utf-16"), "not UTF-8 text.*UTF-16"),
    "syntax": (b'[{"name": "a",}]', r"not valid JSON \(Expecting property name"),
}


# A manifest that is no list of entries: nothing in it can be read. The rest are one entry's fault.
WHOLE_MANIFEST_CASES = {"object", "deep", "latin1", "utf16", "syntax"}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifests_name_the_file_and_entry(tmp_path, case):
    """One entry mistyped by hand had stopped every model, the bundled ones too: it is left out,
    said in ``problems`` (and by name, so asking for it says why), and the others load. Whatever
    writes the manifest back reads it strictly (it would drop the entry) and is refused."""
    data, match = MANIFEST_CASES[case]
    (tmp_path / "manifest.json").write_bytes(data)
    refused(read_manifest, tmp_path, True, match=match, names=tmp_path / "manifest.json")
    if case in WHOLE_MANIFEST_CASES:
        refused(read_manifest, tmp_path, match=match, names=tmp_path / "manifest.json")
        return
    entries = read_manifest(tmp_path)
    assert len(entries.problems) == 1 and re.search(match, entries.problems[0])
    assert str(tmp_path / "manifest.json") in entries.problems[0]
    readable = [e for e in json.loads(data) if isinstance(e, dict) and isinstance(e.get("kind"), str)
                and isinstance(e.get("path"), str) and e.get("name") and isinstance(e.get("classes", []), list)
                and isinstance(e.get("metrics", {}), dict) and isinstance(e.get("mapping", {}), dict)]
    if case == "duplicate":
        readable = []  # neither of the two: which one is meant cannot be told
    assert [e.name for e in entries] == [e["name"] for e in readable]
    for name in entries.left_out:
        refused(find_entry, name, tmp_path, match=re.escape(entries.left_out[name]))


def test_a_damaged_manifest_is_mended_not_reset_and_a_model_file_still_loads_by_path(tmp_path, capsys):
    """The advice was "restore it with git checkout": that drops every model the researcher
    registered (and a FER_MODELS_DIR copy has no git). A model given by its path needs no manifest,
    yet was refused with it."""
    from fer_core import i18n
    from fer_core.cli import main
    from fer_core.config import REPO_ROOT

    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text('[{"name": "mine", "kind": "au-logreg",')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FER_MODELS_DIR", str(models))
        with pytest.raises(ModelFileError) as info:
            read_manifest()
        assert "git checkout" not in str(info.value) and "mend it where it says" in str(info.value)
        with i18n.using_language("ko"):
            assert "알려 준 위치를 고치거나" in i18n.message(str(info.value))
        bundled = REPO_ROOT / "models" / "au_logreg_fer2013.json"
        assert main(["evaluate", "--model", str(bundled), "--au-table", "data/fer2013_val_au.csv.gz"]) == 0
        assert "accuracy" in capsys.readouterr().out


def test_odd_metrics_are_ignored_not_fatal(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps([{"name": "a", "kind": "cnn", "path": "a.keras", "metrics": {
        "accuracy": "high", "accuracy_ci95": ["a", "b"], "n": True, "evaluated_on": 3}}]))
    entry = read_manifest(tmp_path)[0]
    assert entry.metrics.accuracy is None and entry.metrics.accuracy_ci95 is None and entry.metrics.n is None


def test_huge_metrics_and_overlong_paths_do_not_break_the_manifest(tmp_path, models_dir):
    """A metric written as a 400-digit integer raised OverflowError; a path with a name longer
    than the file system allows raised OSError (File name too long) from ``Path.exists`` when the
    entry, or a model given by such a path, was looked up."""
    long_name = "x" * 300 + ".json"
    (tmp_path / "manifest.json").write_text(json.dumps([
        {"name": "a", "kind": "au-logreg", "path": long_name, "metrics": {"accuracy": 10**400, "macro_f1": 0.5,
                                                                          "accuracy_ci95": [0, 10**400]}}]))
    entry = read_manifest(tmp_path)[0]
    assert entry.metrics.accuracy is None and entry.metrics.macro_f1 == 0.5 and entry.metrics.accuracy_ci95 is None
    refused(load_predictor, "a", tmp_path, match="model file of 'a' is missing")
    refused(load_predictor, str(tmp_path / long_name), match="not found: give a file path or one of")


# ----------------------------------------------------------------------------- Teachable Machine HDF5

def tm_config(head: list[dict] | None = None) -> dict:
    """A tf.keras 2.x style Sequential config: a 224x224 RGB input, pooling, one Dense layer."""
    layers = [{"class_name": "GlobalAveragePooling2D",
               "config": {"name": "gap", "batch_input_shape": [None, 224, 224, 3], "dtype": "float32"}}]
    layers += head or [{"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "softmax",
                                                          "dtype": "float32"}}]
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def write_tm_h5(path: Path, config: dict | bytes | None = None, edit: Callable[[h5py.File], None] | None = None,
                labels: str | None = "0 happy\n1 sad\n") -> Path:
    """A Teachable-Machine-shaped ``keras_model.h5`` (Keras 2 layout) written with h5py alone,
    plus ``labels.txt``; ``edit`` may then damage it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = config if isinstance(config, bytes) else json.dumps(config or tm_config()).encode()
    with h5py.File(path, "w", libver="latest") as f:  # libver: attributes over 64 KB
        f.attrs["model_config"] = np.bytes_(raw)
        f.attrs["keras_version"] = b"2.4.0"
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"gap", b"dense"]
        weights.create_group("gap").attrs["weight_names"] = []
        dense = weights.create_group("dense")
        dense.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        dense.create_dataset("dense/kernel:0", data=np.ones((3, 2), np.float32))
        dense.create_dataset("dense/bias:0", data=np.zeros(2, np.float32))
        if edit:
            edit(f)
    if labels is not None:
        (path.parent / "labels.txt").write_text(labels)
    return path


def _external_kernel(f: h5py.File) -> None:
    del f["model_weights/dense/dense/kernel:0"]
    f["model_weights/dense"].create_dataset("dense/kernel:0", shape=(3, 2), dtype="u1",
                                            external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])


def _virtual_kernel(f: h5py.File) -> None:
    source = Path(f.filename).with_name("elsewhere.h5")
    with h5py.File(source, "w") as other:
        other.create_dataset("secret", data=np.arange(6, dtype="f4").reshape(3, 2))
    layout = h5py.VirtualLayout(shape=(3, 2), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "secret", shape=(3, 2))
    del f["model_weights/dense/dense/kernel:0"]
    f["model_weights/dense"].create_virtual_dataset("dense/kernel:0", layout)


def _external_link(f: h5py.File) -> None:
    f["model_weights/dense/other"] = h5py.ExternalLink("/etc/passwd", "/")


def _gigabyte_dataset(f: h5py.File) -> None:
    """1 GiB declared in unwritten chunks: the file stays a few KB."""
    f["model_weights/dense"].create_dataset("dense/huge:0", shape=(2**28,), dtype="f4", chunks=(2**16,))


def _compressed_gigabyte_kernel(f: h5py.File) -> None:
    del f["model_weights/dense/dense/kernel:0"]
    f["model_weights/dense"].create_dataset("dense/kernel:0", shape=(2**14, 2**14), dtype="f4", chunks=(1024, 1024),
                                            compression="gzip", fillvalue=0.0)


def _plugin_filter(f: h5py.File) -> None:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((3, 2))
    dcpl.set_filter(32015, h5py.h5z.FLAG_OPTIONAL)  # zstd: a plugin HDF5 would look for on disk
    del f["model_weights/dense/dense/kernel:0"]
    space = h5py.h5s.create_simple((3, 2))
    h5py.h5d.create(f["model_weights/dense/dense"].id, b"kernel:0", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)


def _string_kernel(f: h5py.File) -> None:
    del f["model_weights/dense/dense/kernel:0"]
    f["model_weights/dense"].create_dataset("dense/kernel:0", data=np.array([[b"a", b"b"]] * 3))


def _million_names(f: h5py.File) -> None:
    f["model_weights/dense"].attrs["weight_names"] = np.array([b"dense/kernel:0"] * 20_000)


def _long_bias(f: h5py.File) -> None:
    del f["model_weights/dense/dense/bias:0"]
    f["model_weights/dense"].create_dataset("dense/bias:0", data=np.zeros(7, np.float32))


def _config_attr(value) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f.attrs["model_config"] = value
    return edit


TM_CONFIG_JSON = json.dumps(tm_config())

TM_FILES: dict[str, tuple[dict, str]] = {
    "external-dataset": ({"edit": _external_kernel}, r"takes its values from a file outside the model \(/etc/passwd\)"),
    "virtual-dataset": ({"edit": _virtual_kernel}, "is a virtual dataset"),
    "external-link": ({"edit": _external_link}, "is an external link to another file, which is not followed"),
    "gigabyte-dataset": ({"edit": _gigabyte_dataset}, "declares 1,024 MB, more than a model file holds"),
    "compressed-gigabyte": ({"edit": _compressed_gigabyte_kernel}, "declares 1,024 MB"),
    "plugin-filter": ({"edit": _plugin_filter}, "needs HDF5 filter 32015 \\(a plugin\\)"),
    "many-names": ({"edit": _million_names}, "'weight_names' lists more than 10,000 names"),
    "config-latin1": ({"config": TM_CONFIG_JSON.replace('"sequential"', '"séquence"').encode("latin-1")},
                      r"\(its model_config\): not UTF-8 text \(byte 0xe9"),
    "config-utf16": ({"config": TM_CONFIG_JSON.encode("utf-16")}, r"\(its model_config\): not UTF-8 text.*UTF-16"),
    "config-deep": ({"config": ('{"class_name": "Sequential", "config": ' + DEEP + "}").encode()},
                    r"\(its model_config\): JSON nested too deeply"),
    "config-5mb": ({"config": b'{"class_name": "Sequential", "x": "' + b"a" * (5 * 2**20) + b'"}'},
                   "not one JSON text of at most 4 MB"),
    "config-not-text": ({"edit": _config_attr(np.void(b"{}"))}, r"\(its model_config\): not JSON text"),
    "config-not-model": ({"config": b"[1, 2]"}, "holds no Keras model architecture"),
    "config-lambda": ({"config": json.dumps(tm_config([{"class_name": "Lambda", "config": {"name": "x"}}])).encode()},
                      "Lambda layer"),
}


def test_hand_made_teachable_file_passes_the_file_checks(tmp_path):
    """The good file that each bad one alters gets through every check that needs no Keras
    (the full load is in ``test_huge_declared_models_cli_and_memory``)."""
    from fer_core.predictors.keras_safety import check_hdf5_storage
    from fer_core.predictors.teachable import _read_model_config, sanitize_model_config

    path = write_tm_h5(tmp_path / "keras_model.h5")
    with h5py.File(path) as f:
        check_hdf5_storage(f, str(path), 2**26, "hint")
        assert sanitize_model_config(_read_model_config(f, str(path)))["class_name"] == "Sequential"


@pytest.mark.parametrize("case", sorted(TM_FILES))
def test_bad_teachable_files_are_refused_before_keras(tmp_path, case):
    options, match = TM_FILES[case]
    path = write_tm_h5(tmp_path / case / "keras_model.h5", **options)
    refused(load_teachable, path.parent, match=match, names=path)
    if case == "external-dataset":  # also as an upload and in a zip
        refused(load_teachable, path.read_bytes(), ["happy", "sad"], match=match, names="uploaded file")
        zipped = tmp_path / "export.zip"
        with zipfile.ZipFile(zipped, "w") as zf:
            zf.write(path, "keras_model.h5")
            zf.write(path.parent / "labels.txt", "labels.txt")
        refused(load_teachable, zipped, match=match, names=zipped)


def _nan_kernel(f: h5py.File) -> None:
    f["model_weights/dense/dense/kernel:0"][0, 1] = np.nan  # one flipped bit of a float32 can make NaN


def _linear_head(f: h5py.File) -> None:
    f["model_weights/dense/dense/kernel:0"][...] = 1000.0


def test_teachable_files_that_would_answer_nan_or_no_probabilities_are_refused(tmp_path):
    """A NaN weight loaded, and every face then scored NaN; so did a model whose weights are all
    numbers but whose answers are not probabilities (the fuzzer's batch-norm epsilon of -9e18):
    each is refused at load, naming the file. The same model with sound weights loads."""
    good = write_tm_h5(tmp_path / "good" / "keras_model.h5")
    assert load_teachable(good.parent).classes == ("happy", "sad")
    path = write_tm_h5(tmp_path / "nan" / "keras_model.h5", edit=_nan_kernel)
    refused(load_teachable, path.parent, match="weight dense/kernel holds NaN or infinite values", names=path)
    linear = [{"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "linear", "dtype": "float32"}}]
    path = write_tm_h5(tmp_path / "linear" / "keras_model.h5", tm_config(linear), edit=_linear_head)
    refused(load_teachable, path.parent, match="answers .* for a plain gray image, not class probabilities", names=path)


def test_tfjs_weights_that_are_nan_are_refused():
    from fer_core.predictors.teachable_formats import tfjs_weights

    def spec(scale: float) -> dict:
        return {"weightsManifest": [{"paths": ["weights.bin"], "weights": [
            {"name": "dense/kernel", "shape": [2], "dtype": "float32"},
            {"name": "dense/bias", "shape": [2], "dtype": "float32",
             "quantization": {"dtype": "uint8", "scale": scale, "min": 0.0}}]}]}

    def load(scale: float, data: bytes):
        return tfjs_weights(spec(scale), {"weights.bin": data}, "model.json", "model.json", "hint")

    good = np.array([1.0, 2.0], np.float32).tobytes() + b"\x01\x02"
    assert load(0.5, good)["dense"]["kernel"].tolist() == [1, 2] and load(0.5, good)["dense"]["bias"].tolist() == [0.5, 1]
    refused(load, 0.5, np.array([1.0, np.nan], np.float32).tobytes() + b"\x01\x02",
            match="weight dense/kernel holds NaN or infinite values")
    refused(load, 1e300, good, match="weight dense/bias holds NaN or infinite values")  # 1e300 is inf in float32


def test_a_zip_whose_member_offsets_point_before_it_is_one_line(tmp_path):
    """Bytes cut from the middle of a zip move its directory: zipfile then seeks to a negative
    offset and raised a bare ValueError."""
    path = write_tm_h5(tmp_path / "keras_model.h5")
    zipped = tmp_path / "cut.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(path, "keras_model.h5")
        zf.write(path.parent / "labels.txt", "labels.txt")
    data = zipped.read_bytes()
    zipped.write_bytes(data[:200] + data[600:])
    refused(read_export, zipped, match="damaged zip", names=zipped)


def test_zip_members_that_declare_too_much(tmp_path):
    path = write_tm_h5(tmp_path / "keras_model.h5")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(path, "keras_model.h5")
        zf.writestr("labels.txt", b"0 happy\n" + b" " * (2 * 2**20))
    refused(read_export, bomb, match="labels.txt is larger than 1024 KB", names=bomb)
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("keras_model.h5", b"\x89HDF\r\n\x1a\n" + bytes(65 * 2**20))
    refused(read_export, bomb, match="keras_model.h5 is larger than 64 MB", names=bomb)
    crowded = tmp_path / "crowded.keras"  # zipfile would make an object per listed file first
    with zipfile.ZipFile(crowded, "w") as zf:
        zf.write(path, "keras_model.h5")
        for i in range(1001):
            zf.writestr(f"{i}.txt", b"")
    refused(read_export, crowded, match="the zip lists more than 1,000 files", names=crowded)
    refused(load_keras_file, crowded, match="the zip lists more than 1,000 files", names=crowded)


def test_registered_entry_whose_file_became_special(tmp_path, models_dir):
    """A manifest entry with a checksum is hashed before loading: never a FIFO or a device."""
    for what, path in special_files(tmp_path / "files", ".json").items():
        entries = json.loads((models_dir / "manifest.json").read_text())
        entries.append({"name": f"bad-{what}", "kind": "au-logreg", "path": str(path), "sha256": "0" * 64})
        (models_dir / "manifest.json").write_text(json.dumps(entries))
        match = "checksum does not match" if what == "huge" else SPECIAL_MESSAGES[what]
        refused(load_predictor, f"bad-{what}", match=match, names=path)


# ----------------------------------------------------------------------------- command line

def run_cli(*args: str | Path, env: dict | None = None) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=300, env={**os.environ, **(env or {})})
    return result.returncode, result.stderr


def assert_one_line_error(code: int, err: str, *names: Path) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0]
    return lines[0]


@pytest.fixture
def labelled_images(tmp_path, astronaut_jpeg) -> Path:
    folder = tmp_path / "images" / "happy"
    folder.mkdir(parents=True)
    shutil.copy(astronaut_jpeg, folder / "astronaut.jpg")
    return folder.parent


def test_cli_bad_files_are_one_line(tmp_path, astronaut_jpeg, labelled_images):
    """Without TensorFlow: evaluate, predict, compare and models, each with bad files."""
    scale = tmp_path / "scale.json"
    scale.write_bytes(AU_FILES["scale-zero"][0])
    line = assert_one_line_error(*run_cli("evaluate", "--model", scale, "--au-table", tmp_path / "t.csv"), scale)
    assert "field 'scale' has zeros; retrain the model" in line

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    line = assert_one_line_error(*run_cli("predict", "--model", fifo, astronaut_jpeg), fifo)
    assert "is a named pipe" in line

    external = write_tm_h5(tmp_path / "external" / "keras_model.h5", edit=_external_kernel)
    line = assert_one_line_error(*run_cli("evaluate", "--model", external, "--au-table", tmp_path / "t.csv"), external)
    assert "/etc/passwd" in line

    deep = tmp_path / "deep.json"
    deep.write_bytes(AU_FILES["deep"][0])
    line = assert_one_line_error(*run_cli("compare", "--models", deep, "--images", labelled_images), deep)
    assert "nested too deeply" in line

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_bytes(MANIFEST_CASES["no-kind"][0])
    code, err = run_cli("models", env={"FER_MODELS_DIR": str(tmp_path / "models")})
    assert code == 0 and err.startswith("left out: ") and "manifest.json: entry 3 has no 'kind'" in err
    (tmp_path / "models" / "manifest.json").write_bytes(MANIFEST_CASES["syntax"][0])
    line = assert_one_line_error(*run_cli("models", env={"FER_MODELS_DIR": str(tmp_path / "models")}))
    assert "manifest.json: manifest is not valid JSON" in line


def _huge_cnn(folder: Path) -> Path:
    """The bundled CNN with its output layer widened to 600,000 units (154 M parameters) in
    config.json; the weights file is unchanged."""
    bundled = REPO_ROOT / "models" / "cnn_fer2013.keras"
    path = folder / "huge_cnn.keras"
    with zipfile.ZipFile(bundled) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                data = data.replace(b'"units": 6,', b'"units": 600000,')
            dst.writestr(info, data)
    shutil.copy(bundled.with_suffix(".meta.json"), path.with_suffix(".meta.json"))
    return path


# Linux carries a process's peak RSS across fork and exec, so a child started straight from a
# large pytest process would report pytest's size: measured commands run under this small wrapper.
MEASURED_RUN = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""

LOAD_EACH = """
import json, resource, sys
from fer_core.errors import FerError
from fer_core.predictors.registry import find_entry, load_predictor
for path in sys.argv[1:]:
    try:
        load_predictor(path)
        error = None
    except FerError as exc:
        error = str(exc)
    print(json.dumps({"path": path, "error": error, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def huge_declared_models(folder: Path) -> dict[Path, str]:
    """Model files that declare far more than they hold, and what refusing each must say."""
    flatten = [{"class_name": "Flatten", "config": {"name": "flat", "batch_input_shape": [None, 224, 224, 3]}},
               {"class_name": "Dense", "config": {"name": "dense", "units": 1000}}]
    huge_input = tm_config()
    huge_input["config"]["layers"][0]["config"]["batch_input_shape"] = [None, 50_000, 50_000, 3]
    # few parameters, but 224x224 enlarged 150 times: 3.4 G values per image (the dashboard grew to 14 GB)
    enlarged = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "UpSampling2D", "config": {"name": "up", "batch_input_shape": [None, 224, 224, 3],
                                                   "size": [150, 150]}},
        *tm_config()["config"]["layers"]]}}
    enlarged["config"]["layers"][1]["config"].pop("batch_input_shape")
    return {
        write_tm_h5(folder / "gigabyte" / "keras_model.h5", edit=_compressed_gigabyte_kernel): "declares 1,024 MB",
        write_tm_h5(folder / "huge_tm" / "keras_model.h5",  # 224*224*3*1000 + 1000
                    config={"class_name": "Sequential", "config": {"name": "s", "layers": flatten}}):
            "the architecture declares 150,529,000 parameters",
        _huge_cnn(folder): "the architecture declares 155,",  # 256*600000 + 600000 + the trunk
        write_tm_h5(folder / "wrong" / "keras_model.h5", edit=_long_bias):
            "weight dense/bias has shape (7,), the architecture needs (2,)",
        write_tm_h5(folder / "huge_input" / "keras_model.h5", config=huge_input):  # each image: 7.5 GB
            "model input 50000x50000 is larger than an image model takes here",
        write_tm_h5(folder / "enlarged" / "keras_model.h5", config=enlarged):
            "its layer 'up' computes 3,386,880,000 values for each image",
        _enlarging_tflite(folder / "enlarged_tflite"): "values for each image, more than a model here may",
    }


def _enlarging_tflite(folder: Path) -> Path:
    """A 3 KB TensorFlow Lite export whose upsampling makes 241 M values per image: LiteRT's
    ``allocate_tensors`` took 2.6 GB for it before anything checked the declared shapes."""
    from fer_core.predictors.keras_io import import_keras
    from fer_core.predictors.teachable_example import write_tflite_export

    keras = import_keras()
    image = keras.Input((224, 224, 3), batch_size=1)
    enlarged = keras.layers.UpSampling2D(size=(40, 40))(image)
    output = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(enlarged))
    return write_tflite_export(folder, keras.Model(image, output), ["happy", "sad"])


def test_huge_declared_models_stay_under_1_gb(tmp_path):
    """Architectures declaring 150 M+ parameters, 50,000 x 50,000 inputs or a 3.4 G-value layer (a
    Keras file or TensorFlow Lite), and a dataset declaring 1 GiB: refused before anything is allocated, in one process (one TensorFlow import) whose
    peak memory stays under 1 GB."""
    cases = huge_declared_models(tmp_path)
    result = subprocess.run([sys.executable, "-c", MEASURED_RUN, str(tmp_path / "peak_kb"), sys.executable, "-c",
                             LOAD_EACH, *map(str, cases)], cwd=REPO_ROOT, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in reports] == [str(p) for p in cases]
    for report, (path, expected) in zip(reports, cases.items()):
        print(f"{path.relative_to(tmp_path)}: peak so far {report['peak_kb'] / 1024:.0f} MB")
        assert report["error"] and report["error"].startswith(f"{path}: ") and expected in report["error"]
        assert "\n" not in report["error"]
        assert report["peak_kb"] < ONE_GB_KB


def test_cli_refuses_a_huge_architecture_in_one_line_under_1_gb(tmp_path, labelled_images):
    huge_tm = next(p for p in huge_declared_models(tmp_path) if p.parent.name == "huge_tm")
    peak_file = tmp_path / "peak_kb"
    result = subprocess.run(
        [sys.executable, "-c", MEASURED_RUN, str(peak_file), sys.executable, "-m", "fer_core", "compare",
         "--models", str(huge_tm), "--images", str(labelled_images)],
        cwd=REPO_ROOT, text=True, capture_output=True, timeout=300)
    line = assert_one_line_error(result.returncode, result.stderr, huge_tm)
    assert "declares 150,529,000 parameters" in line
    peak_kb = int(peak_file.read_text())
    print(f"peak memory of the command: {peak_kb / 1024:.0f} MB")
    assert peak_kb < ONE_GB_KB
