"""Folders written by earlier versions of the workbench, read by this one.

Each fixture is a file as an older commit wrote it (``tests/fixtures/upgrade``, taken with
``git show``) or a literal dict with the keys that version wrote: a models folder must still load
(or say in one line what to do), an older measurement cache must be measured again, not read.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.images import LabeledImage
from fer_core.manifest import read_manifest
from fer_core.measure import extract, tasks
from fer_core.predictors.registry import load_predictor

FIXTURES = Path(__file__).parent / "fixtures" / "upgrade"
OLD_CLASSES = ["angry", "disgust", "happy", "neutral", "sad", "surprise"]


@pytest.fixture
def old_models(tmp_path, monkeypatch) -> Path:
    """The models folder of bc73204 (the first manifest), copied and made the workbench's."""
    folder = tmp_path / "models"
    shutil.copytree(FIXTURES / "models_bc73204", folder)
    monkeypatch.setenv("FER_MODELS_DIR", str(folder))
    return folder


def test_first_manifest_lists_its_model_with_the_old_metric_names(old_models, capsys):
    (entry,) = read_manifest()
    assert entry.name == "au-logreg-fer2013" and entry.metrics.accuracy == pytest.approx(0.5637)
    assert "held out" in entry.metrics.evaluated_on  # "holdout_accuracy" said what it was measured on
    assert main(["models"]) == 0
    assert "accuracy 0.564" in capsys.readouterr().out


def test_first_au_model_scores_an_au_table_of_the_first_extract(old_models, capsys):
    # The folder's own file, not the repository's newer one of the same name (that one's
    # checksum is not the manifest's: loading it would be refused).
    predictor = load_predictor("au-logreg-fer2013")
    assert list(predictor.classes) == OLD_CLASSES
    code = main(["evaluate", "--model", "au-logreg-fer2013", "--au-table", str(FIXTURES / "au_table_98620e7.csv"),
                 "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["n"] == 4 and report["no_face"] == 0


def test_au_model_trained_on_an_old_table_keeps_its_class_order(tmp_path, monkeypatch, capsys):
    """train-au on a table without the later ``masked`` / ``time_s`` columns."""
    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "models"))
    old = Path(FIXTURES / "au_table_98620e7.csv").read_text(encoding="utf-8").splitlines()
    header, rows = old[0], old[1:]
    table = tmp_path / "old.csv"  # each of the four faces as ten files, so that a model can be fitted
    copies = [f"copy{k}/{row}" for k in range(10) for row in rows]
    table.write_text("\n".join([header, *copies]) + "\n", encoding="utf-8")
    out = tmp_path / "models" / "m.json"
    code = main(["train-au", str(table), "--out", str(out), "--classes", "angry,happy,sad,surprise"])
    assert code == 0, capsys.readouterr().err
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["classes"] == ["angry", "happy", "sad", "surprise"]


# ----------------------------------------------------------------------------- measurement cache

def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(path)
    return path


def test_cache_entries_of_an_older_measure_version_are_measured_again(tmp_path, monkeypatch):
    """A cache written by mp-3 … mp-9 holds answers under the same file's digest: they must not be
    served (the face detection changed), and the current version's own entries must be."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    image = _png(tmp_path / "happy" / "a.png")
    digest = tasks.content_digest(image.read_bytes())
    current = extract.content_key(image)
    settings = current.split(":", 1)[0].removeprefix(extract.MEASURE_VERSION)  # "" or "+<settings>"
    old = {f"{version}{suffix}:{digest}": f"answer of {version}" for version in ("mp-3", "mp-4", "mp-6", "mp-9")
           for suffix in ("", settings)}
    cache = extract.MeasureCache()
    cache.put_many(old)
    cache.close()
    calls: list[int] = []

    def measure_now(task_list, todo, workers):
        calls.extend(todo)
        return ((i, (True, "measured now")) for i in todo)

    monkeypatch.setattr(extract, "_run_measurements", measure_now)
    items = [LabeledImage(image, "happy")]
    assert extract.measure_items(items) == {0: "measured now"} and calls == [0]

    # The answer is now cached under this version's key, and served from there: no measuring.
    monkeypatch.setattr(extract, "_run_measurements", lambda *a: iter(()))
    assert extract.measure_items(items) == {0: "measured now"}
    cache = extract.MeasureCache()
    assert cache.get_many([current]) == {current: "measured now"}
    cache.close()


# ----------------------------------------------------------------------------- sidecars and ensembles

def test_ensemble_file_made_before_member_checksums_reads(tmp_path):
    """6188d47 wrote ensembles without ``member_sha256``: they still read (nothing to compare)."""
    from fer_core.predictors.ensemble import EnsembleSpec

    path = tmp_path / "old.ensemble.json"
    path.write_text(json.dumps({"format": "fer_core.ensemble/1", "kind": "ensemble",
                                "members": ["cnn-fer2013", "au-bottleneck-fer2013"], "classes": OLD_CLASSES}))
    spec = EnsembleSpec.read(path)
    assert spec.members == ("cnn-fer2013", "au-bottleneck-fer2013") and spec.member_sha256 == ()
    assert spec.classes == tuple(OLD_CLASSES)


def test_cnn_sidecar_of_the_first_bundled_cnn_loads(tmp_path):
    """e9d60b4's sidecar: no ``tta``, no ``lite`` twin, metrics in the old names."""
    from fer_core.predictors.cnn import CNNPredictor, build_cnn

    model = build_cnn("tiny", num_classes=len(OLD_CLASSES), seed=0)
    path = tmp_path / "cnn_fer2013.keras"
    model.save(path)
    sidecar = {"format": "fer_core.cnn/1", "kind": "cnn", "preset": "tiny", "classes": OLD_CLASSES,
               "input_shape": [48, 48, 1], "input_scale": "gray 0..1", "train_dir": "../shared/datasets/fer2013/train",
               "val_dir": "../shared/datasets/fer2013/val", "n_train": 24612, "n_val": 3093, "seed": 0, "epochs": 60,
               "batch_size": 64, "augment": True, "class_weighting": False, "limit_per_class": None,
               "command": "python -m fer_core train-cnn ...", "keras_version": "3.15.1", "status": "done",
               "epochs_run": 32, "stopped_by_user": True, "seconds": 4509.0,
               "metrics": {"val_accuracy": 0.7026, "val_macro_f1": 0.6404},
               "metrics_single_view": {"val_accuracy": 0.6967, "val_macro_f1": 0.6371}}
    path.with_suffix(".meta.json").write_text(json.dumps(sidecar))
    predictor = CNNPredictor(path)
    assert predictor.classes == tuple(OLD_CLASSES) and predictor.tta == "mirror" and predictor.runtime == "keras"
    proba = predictor.predict_proba([np.full((48, 48), 100, np.uint8)])
    assert proba.shape == (1, len(OLD_CLASSES)) and np.isclose(proba.sum(), 1.0)


def test_dashboard_loads_the_old_folders_own_model(old_models, monkeypatch):
    """The dashboard's model cache rebuilt the entry from its JSON and lost the folder of its
    manifest: with FER_MODELS_DIR elsewhere it read the repository's models/ (a checksum error, or
    silently the repository's file)."""
    import ui.common

    monkeypatch.setattr(ui.common.st, "spinner", lambda *a, **k: contextlib.nullcontext())  # no page here

    (entry,) = read_manifest()
    predictor = ui.common.load_predictor(entry)
    assert list(predictor.classes) == OLD_CLASSES


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_an_old_folder_without_its_bundled_file_says_the_repositorys_file_differs(old_models, lang):
    """The folder's manifest names a bundled file it has no copy of, and this version's file of that
    name differs: the message named the repository's models/manifest.json (not the folder's) and
    said only "restore it or retrain"."""
    from fer_core import i18n
    from fer_core.errors import ModelFileError

    (old_models / "au_logreg_fer2013.json").unlink()  # the repository's newer file is found instead
    (entry,) = read_manifest()
    with pytest.raises(ModelFileError) as refused:
        entry.verify_checksum()
    text = str(refused.value)
    assert str(old_models / "manifest.json") in text and "copy the entry from the repository's" in text
    with i18n.using_language(lang):
        shown = i18n.message(text)
    assert lang == "en" or ("저장소의 models/manifest.json에서 항목을 복사" in shown and str(old_models) in shown)


def test_a_model_replaced_by_an_unfinished_save_reads_in_korean(old_models):
    from fer_core import i18n
    from fer_core.errors import ModelFileError
    from fer_core.manifest import previous_path

    model = old_models / "au_logreg_fer2013.json"
    previous_path(model).write_bytes(model.read_bytes())  # the registered version, kept by the save
    model.write_text("{}")  # the new one the killed save had put in place
    (entry,) = read_manifest()
    with pytest.raises(ModelFileError) as refused:
        entry.verify_checksum()
    with i18n.using_language("ko"):
        assert "끝나지 않은 저장이 파일을 바꿨습니다" in i18n.message(str(refused.value))
