"""The model registry: a new kind is one module's worth of code plus one registration, and then
works everywhere a model is named (the model list, evaluate, the comparison)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_core.cli import main
from fer_core.errors import FerError, ModelFileError
from fer_core.manifest import Metrics, one_writer, read_manifest
from fer_core.predictors import registry
from fer_core.predictors.base import Predictor

FORMAT = "always-one-emotion/1"


class AlwaysOneEmotion(Predictor):
    """A throwaway pixel kind: says the same emotion for every face it is shown."""

    kind = "always"

    def __init__(self, emotion: str, classes, name: str):
        self.emotion, self.classes, self.name = emotion, tuple(classes), name

    def predict_proba(self, faces, progress=None):
        n = len(self.pixels_of(faces))
        return np.tile(np.eye(len(self.classes))[self.classes.index(self.emotion)], (n, 1))


def _load(path: Path, entry) -> AlwaysOneEmotion:
    d = json.loads(path.read_text())
    return AlwaysOneEmotion(d["emotion"], d["classes"], entry.name)


def _save(artefact: dict, path: Path) -> list[Path]:
    path.write_text(json.dumps({"format": FORMAT, **artefact}))
    return [path]


def _claims(path: Path) -> bool:
    return path.suffix == ".always"


@pytest.fixture
def always_kind(monkeypatch):
    registry.kinds()  # the built-in kinds first
    kind = registry.ModelKind("always", "says one emotion whatever the face (a test kind)", "pixels", False,
                              _load, _save, "{name}.always", _claims)
    monkeypatch.setitem(registry._kinds, "always", kind)
    return kind


@pytest.fixture
def always_happy(models_dir, always_kind):
    classes = ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    return registry.save_and_register({"emotion": "happy", "classes": classes}, name="always-happy", kind="always",
                                      classes=classes, metrics=Metrics(evaluated_on="nothing"), command="pytest")


def test_a_registered_kind_is_saved_listed_and_loaded(capsys, models_dir, always_happy):
    assert (models_dir / "always-happy.always").is_file() and always_happy.sha256
    assert [e.name for e in read_manifest(models_dir)][-1] == "always-happy"
    assert main(["models"]) == 0
    assert any(line.startswith("always-happy") and " always " in line for line in capsys.readouterr().out.splitlines())
    predictor = registry.load_predictor("always-happy")
    assert isinstance(predictor, AlwaysOneEmotion) and predictor.name == "always-happy"


def test_a_registered_kind_is_evaluated_and_compared(capsys, models_dir, always_happy, fer_sample):
    assert main(["evaluate", "--model", "always-happy", "--images", str(fer_sample), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "always-happy" and report["accuracy"] == pytest.approx(4 / 24, abs=1e-4)
    assert report["per_class"]["happy"]["accuracy"] == 1.0
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", "always-happy",
                 "--json", "--workers", "1"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert list(both["models"]) == ["au-logreg-fer2013", "always-happy"] and both["n"] == 24


def test_a_photo_without_a_face_is_no_face_for_a_pixel_model_too(capsys, models_dir, always_happy, tmp_path,
                                                                 astronaut_jpeg, fer_sample):
    """A 300 px photo with no face went whole to the pixel models: "always happy" was right on a
    blank "happy" wall, while the AU model counted it as no face. A face crop stays the face itself."""
    from PIL import Image

    folder = tmp_path / "set"
    (folder / "happy").mkdir(parents=True)
    Image.new("RGB", (300, 300), (180, 180, 180)).save(folder / "happy" / "wall.png")
    shutil.copy(astronaut_jpeg, folder / "happy" / "astronaut.jpg")
    crop = next((fer_sample / "happy").iterdir())
    shutil.copy(crop, folder / "happy" / "crop.jpg")
    assert main(["compare", "--images", str(folder), "--models", "au-logreg-fer2013", "always-happy",
                 "--json", "--workers", "1", "--csv", str(tmp_path / "p.csv")]) == 0
    both = json.loads(capsys.readouterr().out)["models"]
    assert both["always-happy"]["no_face"] == 1 and both["always-happy"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    answers = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("file")
    assert answers.filter(like="wall.png", axis=0)["always-happy"].tolist() == ["no face"]
    assert answers.filter(like="crop.jpg", axis=0)["always-happy"].tolist() == ["happy"]


def test_a_pixel_kind_on_an_au_table_says_it_scores_images(capsys, models_dir, always_happy):
    assert main(["evaluate", "--model", "always-happy", "--au-table", "data/fer2013_val_au.csv.gz"]) == 2
    assert "scores images, not an AU table" in capsys.readouterr().err


def test_unknown_kinds_and_files_are_refused(models_dir, tmp_path):
    with pytest.raises(ModelFileError, match="unknown model kind 'nope'"):
        registry.get_kind("nope")
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model type"):
        registry.load_predictor(str(odd))


def test_saving_needs_a_new_valid_name(models_dir, always_happy):
    with pytest.raises(FerError, match="already exists"):
        registry.save_and_register({"emotion": "sad", "classes": ["sad", "happy"]}, name="always-happy",
                                   kind="always", classes=["happy", "sad"], metrics=Metrics(), command="pytest")
    with pytest.raises(FerError, match="not allowed"):
        registry.save_and_register({}, name="../x", kind="always", classes=[], metrics=Metrics(), command="pytest")


def test_every_built_in_kind_declares_how_it_is_used():
    kinds = registry.kinds()
    assert {"au-logreg", "au-mlp", "cnn", "teachable"} <= set(kinds)
    assert {k: (v.inputs, v.explains) for k, v in kinds.items() if k in ("au-logreg", "cnn")} == {
        "au-logreg": ("aus", True), "cnn": ("pixels", False)}


def test_a_second_caller_waits_for_every_built_in_kind(monkeypatch):
    """Two dashboard sessions on a fresh server ask for the kinds at once: the second must not get
    the first's half-loaded list ("unknown model kind 'cnn'; known kinds: " with none named)."""
    import importlib
    import threading
    import time

    slow_import = importlib.import_module

    def import_slowly(name):
        time.sleep(0.05)
        return slow_import(name)

    monkeypatch.setattr(registry, "_kinds", {})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry.importlib, "import_module", import_slowly)
    first = threading.Thread(target=registry.kinds)
    first.start()
    time.sleep(0.02)  # the first caller is importing the kind modules now
    seen = set(registry.kinds())
    first.join()
    assert {"au-logreg", "cnn", "au-bottleneck", "ensemble"} <= seen
    assert seen == set(registry.kinds())


def test_a_kind_module_failing_to_import_is_tried_again(monkeypatch):
    import importlib

    real_import = importlib.import_module
    failing = {"left": 1}

    def import_once_failing(name):
        if failing["left"] and name == registry.KIND_MODULES[0]:
            failing["left"] -= 1
            raise ImportError("a half-installed dependency")
        return real_import(name)

    monkeypatch.setattr(registry, "_kinds", {})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry.importlib, "import_module", import_once_failing)
    with pytest.raises(ImportError):
        registry.kinds()
    assert {"au-logreg", "cnn", "au-bottleneck", "ensemble"} <= set(registry.kinds())

def test_the_manifest_and_the_loaded_model_must_agree(models_dir):
    """A manifest entry whose classes or kind are not the model's: refused in one line (a class
    list in another order labelled every face wrongly; a logreg loaded as an MLP)."""
    from fer_core.config import REPO_ROOT
    from fer_core.manifest import write_manifest

    bundled = {e.name: e for e in read_manifest(REPO_ROOT / "models")}
    au, cnn = bundled["au-logreg-fer2013"], bundled["cnn-fer2013"]
    assert registry.load_predictor(cnn).classes == cnn.classes  # as bundled: they agree
    aliases = registry.find_entry(cnn.name, REPO_ROOT / "models")
    aliases.classes = ("anger", "disgust", "happiness", "neutral", "sadness", "surprise")  # the same, by other names
    write_manifest([aliases], models_dir)
    assert registry.load_predictor(cnn.name).classes == cnn.classes
    cases = [(cnn, {"classes": tuple(reversed(cnn.classes))}, "differ from those its training recorded"),
             (au, {"classes": ("happy", "sad")}, "differ from those the manifest lists for 'au-logreg-fer2013'"),
             (au, {"kind": "au-mlp"}, "the model's kind is au-logreg, but the manifest lists 'au-logreg-fer2013' as au-mlp")]
    for entry, change, expected in cases:
        changed = registry.find_entry(entry.name, REPO_ROOT / "models")
        for key, value in change.items():
            setattr(changed, key, value)
        write_manifest([changed], models_dir)
        with pytest.raises(ModelFileError, match=expected) as info:
            registry.load_predictor(entry.name)
        assert "\n" not in str(info.value)


def test_a_model_of_another_kind_or_an_ensembles_member_keeps_its_name(models_dir, tmp_path, capsys):
    """``--name`` of a model of another kind replaced it in the manifest (a bundled CNN became an
    AU model); an ensemble named after its member replaced the member with itself."""
    from fer_core.config import REPO_ROOT

    table = REPO_ROOT / "data" / "fer2013_val_au.csv.gz"
    assert main(["train-au", str(table), "--out", str(tmp_path / "x.json"), "--name", "au-logreg-fer2013",
                 "--kind", "mlp"]) == 2
    assert "a model named 'au-logreg-fer2013' of kind au-logreg exists; a model of kind au-mlp cannot replace it" in \
        capsys.readouterr().err
    assert [(e.name, e.kind) for e in read_manifest()] == [("au-logreg-fer2013", "au-logreg")]
    # training says so before it starts (it trained for minutes, then refused to register)
    assert main(["train-cnn", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.keras"),
                 "--name", "au-logreg-fer2013"]) == 2
    assert "a model named 'au-logreg-fer2013' of kind au-logreg exists; a model of kind cnn" in capsys.readouterr().err
    assert main(["ensemble", "--models", "au-logreg-fer2013", "--name", "au-logreg-fer2013"]) == 2
    assert "cannot take the name of one of its members" in capsys.readouterr().err
    assert main(["ensemble", "--models", "au-logreg-fer2013", "--name", "bad name!"]) == 2
    assert "is not allowed" in capsys.readouterr().err


def test_a_registered_name_in_another_file_needs_replace(models_dir, tmp_path, capsys):
    """``train-au --name au-logreg-fer2013 --out mine.json`` dropped the bundled default from the
    manifest unsaid: evaluate and Try it then used a model fitted on a few faces."""
    from fer_core.config import REPO_ROOT

    table = REPO_ROOT / "data" / "fer2013_val_au.csv.gz"
    before = read_manifest()[0]
    mine = tmp_path / "mine.json"
    args = ["train-au", str(table), "--out", str(mine), "--name", before.name, "--classes", "happy,sad"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"a model named '{before.name}' is already registered" in err and "--replace" in err
    assert read_manifest()[0].sha256 == before.sha256 and not mine.exists()
    # retraining a model into its own file replaces it, as make au-model does (here a model of the
    # test's own: the bundled entry's file is the repository's)
    own = ["train-au", str(table), "--out", str(tmp_path / "own.json"), "--name", "own", "--classes", "happy,sad"]
    assert main(own) == 0 and "in place of" not in capsys.readouterr().out
    assert main(own) == 0 and "in place of the model of that name" in capsys.readouterr().out
    assert main(["train-au", str(table), "--out", str(tmp_path / "x.json"), "--replace"]) == 2  # replace what?
    assert "--replace replaces a registered model by --name" in capsys.readouterr().err
    assert main([*args, "--replace"]) == 0
    assert [(e.name, e.classes, e.file) for e in read_manifest()] == [(before.name, ("happy", "sad"), mine),
                                                                       ("own", ("happy", "sad"), tmp_path / "own.json")]


def test_a_script_saving_again_under_one_name_replaces_with_replace(models_dir, always_happy):
    """A notebook refitting a model under its name was refused ("already exists") with replace=True
    too, which worked only beside a path: now the model is replaced, in its kind's own file."""
    classes = list(always_happy.classes)
    again = {"emotion": "sad", "classes": classes}
    with pytest.raises(FerError, match="already exists"):
        registry.save_and_register(again, name="always-happy", kind="always", classes=classes,
                                   metrics=Metrics(evaluated_on="nothing"), command="pytest")
    entry = registry.save_and_register(again, name="always-happy", kind="always", classes=classes,
                                       metrics=Metrics(evaluated_on="nothing"), command="pytest", replace=True)
    assert entry.file == always_happy.file and [e.name for e in read_manifest()].count("always-happy") == 1
    assert registry.load_predictor("always-happy").emotion == "sad"
    # a bundled model is not written over, nor a file the manifest does not list
    with pytest.raises(FerError, match="au-logreg-fer2013 is registered with the file .*au_logreg_fer2013.json; give "
                                       "that file as path to replace it, or save under another name"):
        registry.save_and_register(again, name="au-logreg-fer2013", kind="always", classes=classes,
                                   metrics=Metrics(evaluated_on="nothing"), command="pytest", replace=True)
    (models_dir / "stray.always").write_text("put there by hand")
    with pytest.raises(FerError, match="stray.always already exists .* but is not in the manifest"):
        registry.save_and_register(again, name="stray", kind="always", classes=classes,
                                   metrics=Metrics(evaluated_on="nothing"), command="pytest", replace=True)
    assert (models_dir / "stray.always").read_text() == "put there by hand"


def test_saves_at_the_same_time_keep_every_entry(models_dir):
    """Two saves at once each read the manifest before the other wrote it: one entry was lost."""
    from concurrent.futures import ThreadPoolExecutor

    from fer_core.manifest import ModelEntry, register

    source = read_manifest()[0]

    def save(i: int) -> None:
        register(ModelEntry(name=f"copy-{i}", kind=source.kind, path=source.path, classes=source.classes))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(40)))
    assert sorted(e.name for e in read_manifest())[:3] == ["au-logreg-fer2013", "copy-0", "copy-1"]
    assert len(read_manifest()) == 41


def test_two_train_au_runs_under_one_new_name_keep_the_first_and_refuse_the_second(models_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    """Both runs passed the name check before fitting, then both were told "registered" and the
    first's model was dropped from the manifest unsaid. The second run is now refused when it saves
    (the manifest's lock), as it would have been before fitting."""
    from fer_core.predictors import au_models

    fit = au_models.fit_au
    first = tmp_path / "first.json"

    def the_other_run_registers_meanwhile(*args, **kwargs):
        monkeypatch.setattr(au_models, "fit_au", fit)  # the other run fits as usual
        model = fit(*args, **kwargs)
        assert main(["train-au", str(AU_TABLE), "--out", str(first), "--name", "lab-same", "--classes", "happy,sad"]) == 0
        return model

    monkeypatch.setattr(au_models, "fit_au", the_other_run_registers_meanwhile)
    second = tmp_path / "second.json"
    args = ["train-au", str(AU_TABLE), "--out", str(second), "--name", "lab-same", "--classes", "happy,sad"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a model named 'lab-same' is already registered" in err and "--replace" in err
    assert [e.file for e in read_manifest() if e.name == "lab-same"] == [first] and not second.exists()
    kept = tmp_path / "second.unregistered.json"  # the fit is not thrown away
    assert f"the fitted model is kept, unregistered, in {kept}" in err and au_models.AUModel.load(kept).classes == (
        "happy", "sad")
    assert main([*args, "--replace"]) == 0  # replacing it is asked for
    assert [e.file for e in read_manifest() if e.name == "lab-same"] == [second]

def test_a_copied_models_folder_uses_its_own_files(models_dir):
    """FER_MODELS_DIR pointing at a copy of models/: its relative paths (models/x.json) are read in
    the copy, so exporting or retraining there never writes into the repository; a manifest
    listing bundled models without copying their files still finds them in the repository."""
    import shutil

    from fer_core.config import REPO_ROOT

    (entry,) = read_manifest()
    assert entry.path.startswith("models/") and entry.file == REPO_ROOT / entry.path  # no copy of the file
    shutil.copy(REPO_ROOT / entry.path, models_dir / entry.file.name)
    (entry,) = read_manifest()
    assert entry.file == models_dir / entry.file.name and entry.file.parent == models_dir
    assert registry.load_predictor(entry.name).classes == entry.classes
    # a copy under another name is its own too (models/ in a path means the manifest's folder)
    other = models_dir.parent / "my_models"
    shutil.copytree(models_dir, other)
    (entry,) = read_manifest(other)
    assert entry.file == other / entry.file.name


def test_a_models_folder_moved_or_copied_keeps_its_saved_models(tmp_path, monkeypatch, capsys):
    """A model saved into FER_MODELS_DIR was listed by its absolute path: a copy of the folder (sent
    to a colleague) used the original's files, and a moved folder found none. It is now listed as
    models/<file>, the manifest's own folder; a manifest saved before still loads after a move."""
    import shutil

    from fer_core.config import REPO_ROOT

    first = tmp_path / "mine" / "models"
    first.mkdir(parents=True)
    monkeypatch.setenv("FER_MODELS_DIR", str(first))
    table = REPO_ROOT / "data" / "fer2013_val_au.csv.gz"
    assert main(["train-au", str(table), "--out", str(first / "x.json"), "--name", "x-model"]) == 0
    (entry,) = read_manifest()
    assert entry.path == "models/x.json" and entry.file == first / "x.json"
    copy = tmp_path / "colleague"
    shutil.copytree(first, copy)
    assert registry.find_entry("x-model", copy).file == copy / "x.json"
    moved = tmp_path / "moved"
    first.rename(moved)
    monkeypatch.setenv("FER_MODELS_DIR", str(moved))
    assert registry.load_predictor("x-model").classes == entry.classes
    # a manifest written before names the file by its absolute path, gone with the move
    manifest = moved / "manifest.json"
    saved = json.loads(manifest.read_text())
    saved[0]["path"] = str(first / "x.json")
    manifest.write_text(json.dumps(saved))
    assert registry.find_entry("x-model").file == moved / "x.json"
    assert registry.load_predictor("x-model").classes == entry.classes


def test_the_first_save_into_a_new_models_folder_registers(tmp_path, monkeypatch):
    """The manifest's lock was opened before anything made the folder: the first save failed."""
    from fer_core.config import REPO_ROOT
    from fer_core.manifest import ModelEntry, register

    fresh = tmp_path / "new" / "models"
    monkeypatch.setenv("FER_MODELS_DIR", str(fresh))
    register(ModelEntry(name="mine", kind="au-logreg", path=str(REPO_ROOT / "models" / "au_logreg_fer2013.json"),
                        classes=()))
    assert [e.name for e in read_manifest()] == ["mine"]


def test_two_saves_under_one_new_name_keep_the_first_and_refuse_the_second(models_dir, always_kind, monkeypatch):
    """Two sessions saving under the same new name both passed the name check, wrote the same file,
    and the first was told "saved" while the name held the other's model."""
    import threading

    barrier = threading.Barrier(2)

    def save_when_both_checked(artefact: dict, path: Path) -> list[Path]:
        try:  # both saves meet here if both passed the name check (the old race); else time out
            barrier.wait(timeout=1.5)
        except threading.BrokenBarrierError:
            pass
        return _save(artefact, path)

    monkeypatch.setitem(registry._kinds, "always", registry.ModelKind(
        "always", always_kind.describe, "pixels", False, _load, save_when_both_checked, "{name}.always", _claims))
    classes = ["happy", "sad"]
    saved: dict[str, object] = {}

    def save(emotion: str) -> None:
        try:
            saved[emotion] = registry.save_and_register({"emotion": emotion, "classes": classes}, name="shared",
                                                        kind="always", classes=classes, metrics=Metrics(),
                                                        command="pytest")
        except FerError as exc:
            saved[emotion] = exc

    threads = [threading.Thread(target=save, args=(e,)) for e in ("happy", "sad")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    refused = [e for e, r in saved.items() if isinstance(r, FerError)]
    assert len(refused) == 1, saved
    assert str(saved[refused[0]]) == "a model named 'shared' already exists; choose another name"
    (winner,) = set(saved) - set(refused)
    assert [e.name for e in read_manifest(models_dir)].count("shared") == 1
    assert registry.load_predictor("shared").emotion == winner  # the file holds the model of the one told "saved"


AU_TABLE = Path(__file__).resolve().parents[1] / "data" / "fer2013_val_au.csv.gz"


@pytest.fixture
def registered_au_file(models_dir, capsys) -> Path:
    out = models_dir / "x.json"
    assert main(["train-au", str(AU_TABLE), "--out", str(out), "--name", "x-model"]) == 0
    capsys.readouterr()
    return out


@pytest.mark.parametrize("name", [None, "my-au"])
def test_a_training_never_writes_over_another_registered_models_file(models_dir, registered_au_file, capsys, name):
    """train-au (or train-cnn) with --out on a registered model's file, without --name or under
    another name, replaced that model: its entry then failed the checksum and its model was gone.
    Now refused before training, naming the model and the way to replace it."""
    before, manifest = registered_au_file.read_bytes(), (models_dir / "manifest.json").read_bytes()
    code = main(["train-au", str(AU_TABLE), "--out", str(registered_au_file), "--seed", "3",
                 *(["--name", name] if name else [])])
    err = capsys.readouterr().err
    assert code == 2 and "registered model 'x-model'" in err and "choose another --out" in err
    assert ("give --name x-model" in err) == (name is None)
    assert registered_au_file.read_bytes() == before and (models_dir / "manifest.json").read_bytes() == manifest
    assert registry.load_predictor("x-model").kind == "au-logreg"


def test_saving_at_another_models_file_is_refused(registered_au_file, always_kind):
    before = registered_au_file.read_bytes()
    with pytest.raises(FerError, match="registered model 'x-model'"):
        registry.save_and_register({"emotion": "happy", "classes": ["happy", "sad"]}, name="mine", kind="always",
                                   classes=["happy", "sad"], metrics=Metrics(), command="test",
                                   path=registered_au_file)
    assert registered_au_file.read_bytes() == before
    assert registry.load_predictor("x-model").kind == "au-logreg"


def test_a_training_that_registers_nothing_does_not_need_a_readable_manifest(models_dir, tmp_path, capsys):
    """Checking --out against the registered files made train-au without --name stop on a broken
    manifest.json, which it never reads; with --name the manifest is needed, and said before fitting."""
    (models_dir / "manifest.json").write_text("{broken")
    out = tmp_path / "private.json"
    assert main(["train-au", str(AU_TABLE), "--out", str(out)]) == 0 and out.is_file()
    assert main(["train-au", str(AU_TABLE), "--out", str(tmp_path / "named.json"), "--name", "mine"]) == 2
    assert "manifest" in capsys.readouterr().err and not (tmp_path / "named.json").exists()


def test_a_registered_model_given_by_path_is_reported_by_its_name(tmp_path, capsys, monkeypatch):
    """``evaluate --model models/au_logreg_fer2013.json`` reported 'au_logreg_fer2013', so one
    model had two names in a researcher's results; a copy elsewhere is its own file."""
    import shutil

    monkeypatch.delenv("FER_MODELS_DIR", raising=False)  # the repository's manifest names that file

    from fer_core.config import REPO_ROOT

    bundled = REPO_ROOT / "models" / "au_logreg_fer2013.json"
    copy = tmp_path / "my_logreg.json"
    shutil.copyfile(bundled, copy)
    table = str(REPO_ROOT / "data" / "fer2013_val_au.csv.gz")
    names = []
    for given in (bundled, bundled.relative_to(REPO_ROOT), copy):
        assert main(["evaluate", "--model", str(given), "--au-table", table, "--json"]) == 0
        names.append(json.loads(capsys.readouterr().out)["model"])
    assert names == ["au-logreg-fer2013", "au-logreg-fer2013", "my_logreg"]


def test_teachable_downloads_given_by_path_are_named_after_their_folders(tmp_path, models_dir):
    """Every Teachable Machine download names its file keras_model.h5 (or model.json, model.tflite):
    two exports given to compare by path were both "keras_model", refused as one model named twice."""
    names = []
    for folder, file in (("two", "keras_model.h5"), ("dup", "keras_model.h5"), ("web", "model.json"),
                         ("mine", "my_model.h5")):
        path = tmp_path / folder / file
        path.parent.mkdir()
        path.write_bytes(b"not read here")
        names.append(registry.find_entry(str(path), models_dir).name)
    assert names == ["two", "dup", "web", "my_model"]


def test_a_save_contradicting_the_model_is_refused_before_anything_is_written(models_dir):
    """A six-emotion AUModel saved with classes happy, sad was registered, and its entry then never
    loaded ("the model's classes differ from those the manifest lists"); saved as kind cnn it failed
    on an AttributeError inside the CNN's save."""
    from test_au_model import synthetic_table

    from fer_core.predictors.au_models import fit_au_model

    model = fit_au_model(synthetic_table(20))
    before = sorted(p.name for p in models_dir.iterdir())
    with pytest.raises(FerError, match="this model predicts angry, disgust, happy, neutral, sad, surprise, not happy, sad"):
        registry.save_and_register(model, name="mine", kind="au-logreg", classes=["happy", "sad"], metrics=Metrics(),
                                   command="pytest")
    with pytest.raises(FerError, match="this model is of kind au-logreg, not cnn; register it as au-logreg"):
        registry.save_and_register(model, name="mine", kind="cnn", classes=model.classes, metrics=Metrics(),
                                   command="pytest")
    assert sorted(p.name for p in models_dir.iterdir()) == before
    entry = registry.save_and_register(model, name="mine", kind="au-logreg", classes=[c.upper() for c in model.classes],
                                       metrics=Metrics(), command="pytest")
    assert registry.load_predictor(entry.name).classes == model.classes  # names in any case are the same classes
    # the README's AUPredictor(fit_au_model(...)) saves its model (the wrapper failed on an AttributeError);
    # a loaded predictor of another kind is refused in one line
    from fer_core.predictors.au_models import AUPredictor

    wrapped = AUPredictor(model, name="wrapped")
    entry = registry.save_and_register(wrapped, name="wrapped", kind=wrapped.kind, classes=wrapped.classes,
                                       metrics=Metrics(), command="pytest")
    np.testing.assert_allclose(registry.load_predictor("wrapped").proba_from_aus(np.ones((1, 17))),
                               wrapped.proba_from_aus(np.ones((1, 17))))
    loaded = AlwaysOneEmotion("happy", ["happy", "sad"], "always-happy")
    with pytest.raises(FerError, match="always-happy: a loaded always model is saved already"):
        registry.save_and_register(loaded, name="again", kind="cnn", classes=loaded.classes, metrics=Metrics(),
                                   command="pytest")


def test_a_model_saved_in_the_repositorys_models_is_named_absolutely_by_another_manifest(tmp_path, monkeypatch):
    """With FER_MODELS_DIR elsewhere, train-au --out models/x.json wrote the repository's models/
    and the other manifest named it "models/x.json", which reads as its own folder: the entry broke
    once that folder was copied, or the command run from another checkout."""
    from fer_core import config
    from fer_core.manifest import resolve_path, stored_path

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "models").mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.setattr(config, "REPO_ROOT", repo)
    model = repo / "models" / "x.json"
    model.write_text("{}")
    assert stored_path(model, elsewhere) == str(model.resolve())
    assert resolve_path(stored_path(model, elsewhere), elsewhere) == model.resolve()
    assert stored_path(model, repo / "models") == "models/x.json"  # the bundled manifest's own folder
    (repo / "runs").mkdir()
    assert stored_path(repo / "runs" / "y.json", elsewhere) == "runs/y.json"  # elsewhere in the repository


def test_a_models_folder_that_is_not_there_is_named(tmp_path, monkeypatch, capsys):
    """A mistyped FER_MODELS_DIR listed no models without a word and predict said "not found: give a
    file path or one of: none"; one naming a file failed a save on "manifest.json.lock: could not be
    written (File exists)". Each now names the variable and what is wrong with it."""
    missing = tmp_path / "modles"
    monkeypatch.setenv("FER_MODELS_DIR", str(missing))
    assert main(["models"]) == 0
    assert f"FER_MODELS_DIR={missing} does not exist" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match=r"one of: none \(FER_MODELS_DIR=.* does not exist"):
        registry.find_entry("au-logreg-fer2013")
    a_file = tmp_path / "models.txt"
    a_file.write_text("")
    monkeypatch.setenv("FER_MODELS_DIR", str(a_file))
    with pytest.raises(ModelFileError, match="is not a folder"):
        registry.find_entry("au-logreg-fer2013")
    with (pytest.raises(FerError, match=r"models.txt: not a folder, so no model can be registered there \(FER_MODELS_DIR\)"),
          one_writer()):
        pass


class RaisingPlugin(AlwaysOneEmotion):
    def predict_proba(self, faces, progress=None):
        raise RuntimeError("boom in my plugin")


def test_a_plugin_authors_mistakes_leave_the_other_models_working(capsys, models_dir, always_kind, fer_sample,
                                                                   monkeypatch):
    """A model author's review: one manifest entry mistyped by hand stopped every model (predict,
    compare of bundled models, every dashboard page); a kind this process does not know was listed
    as usable; the left-out line named the member or the file, not the model left out; a plugin
    kind with "happiness" registered but never loaded; a plugin raising printed its traceback."""
    aliases = ["anger", "disgust", "happiness", "neutral", "sadness", "surprise"]
    registry.save_and_register({"emotion": "happiness", "classes": aliases}, name="always-glad", kind="always",
                               classes=aliases, metrics=None, command="pytest")
    glad = registry.load_predictor("always-glad")  # refused: "(anger, …) differ from (anger, …)"
    assert glad.classes == ("angry", "disgust", "happy", "neutral", "sad", "surprise")
    entries = json.loads((models_dir / "manifest.json").read_text())
    entries.append({"name": "typo", "path": "models/typo.json"})  # no kind
    entries.append({"name": "ghost", "kind": "bright", "path": "models/ghost.bright"})
    (models_dir / "ghost.bright").write_text("{}")
    (models_dir / "manifest.json").write_text(json.dumps(entries))

    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "left out: " in captured.err and "has no 'kind'" in captured.err
    assert any(line.startswith("ghost ") and "cannot be used: unknown model kind 'bright'" in line
               for line in captured.out.splitlines())
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m["problem"] for m in json.loads(capsys.readouterr().out)}
    assert "typo" not in listed and "unknown model kind" in listed["ghost"] and listed["au-logreg-fer2013"] is None

    monkeypatch.setitem(registry._kinds, "always", registry.ModelKind(
        "always", always_kind.describe, "pixels", False,
        lambda path, entry: RaisingPlugin("happy", aliases, entry.name), _save, "{name}.always", _claims))
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013,typo,ghost,always-glad",
                 "--json", "--workers", "1"]) == 2  # the others' results given, the failures said
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert list(report["models"]) == ["au-logreg-fer2013"] and len(report["classes"]) == 6  # "happiness" is happy
    failed = report["failed_models"]
    assert failed[0].startswith("typo: left out of the manifest: ") and "has no 'kind'" in failed[0]
    assert failed[1].startswith("ghost: unknown model kind 'bright'")
    assert failed[2].startswith("always-glad") and "boom in my plugin" in failed[2]
    assert "Traceback" not in captured.err
    with pytest.raises(FerError, match="has no 'kind'"):  # writing the manifest back would drop the entry
        registry.save_and_register({"emotion": "happy", "classes": aliases}, name="another", kind="always",
                                   classes=aliases, metrics=None, command="pytest")
    assert "typo" in (models_dir / "manifest.json").read_text()


def test_an_ensemble_left_out_is_named_not_its_missing_member(models_dir, fer_sample, capsys, tmp_path, monkeypatch):
    """"model left out: model 'cnn-fer2013-7' not found": the ensemble was left out, not that member."""
    from fer_core.config import REPO_ROOT

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # no answers kept from an earlier run

    bundled = json.loads((REPO_ROOT / "models" / "manifest.json").read_text())
    (models_dir / "manifest.json").write_text(json.dumps([e for e in bundled if e["name"] != "cnn-fer2013-7"]))
    shutil.copy(REPO_ROOT / "models" / "cnn-ensemble-fer2013.ensemble.json", models_dir)  # its members: this manifest's
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013,cnn-ensemble-fer2013",
                 "--json", "--workers", "1"]) == 2
    (failed,) = json.loads(capsys.readouterr().out)["failed_models"]
    assert failed.startswith("cnn-ensemble-fer2013: ") and "'cnn-fer2013-7'" in failed


def test_a_model_file_you_have_is_registered_then_unregistered(capsys, models_dir, tmp_path):
    """A model author had no way to register a model file they already had but to write a manifest
    entry by hand, which had no checksum (a file replaced later was scored under the old name), and
    no way to take a model out but editing the manifest."""
    from fer_core.config import REPO_ROOT

    mine = tmp_path / "elsewhere" / "my_model.json"
    mine.parent.mkdir()
    shutil.copy(REPO_ROOT / "models" / "au_logreg_fer2013.json", mine)
    assert main(["register", str(mine), "--name", "mine", "--description", "fitted on our lab's table"]) == 0
    assert "registered mine (au-logreg; angry, disgust, happy, neutral, sad, surprise)" in capsys.readouterr().err
    entry = next(e for e in read_manifest(models_dir) if e.name == "mine")
    assert entry.file == mine.resolve() and entry.sha256 and entry.description == "fitted on our lab's table"
    assert registry.load_predictor("mine").name == "mine"
    assert main(["register", str(mine), "--name", "mine2"]) == 2
    assert "is already registered as 'mine'" in capsys.readouterr().err
    upper = shutil.copy(REPO_ROOT / "models" / "au_logreg_upper_fer2013.json", tmp_path / "upper.json")
    assert main(["register", str(upper), "--name", "mine"]) == 2
    assert "already registered; choose another --name, or add --replace" in capsys.readouterr().err
    assert main(["register", str(upper), "--name", "au-logreg-fer2013", "--replace"]) == 0
    assert "registered au-logreg-fer2013" in capsys.readouterr().err
    assert next(e for e in read_manifest() if e.name == "au-logreg-fer2013").file == Path(upper).resolve()

    mine.write_text(mine.read_text() + "\n")  # changed later (here harmlessly)
    with pytest.raises(ModelFileError, match="checksum does not match"):
        registry.load_predictor("mine")
    assert main(["register", str(mine), "--name", "other"]) == 2  # a second name on that file: refused
    assert "is the file of the registered model 'mine'; register it again as --name mine --replace" in \
        capsys.readouterr().err
    bare = tmp_path / "bare.keras"
    bare.write_bytes(b"PK\x05\x06" + bytes(18))
    assert main(["register", str(bare), "--name", "bare"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "bare" not in [e.name for e in read_manifest()]

    assert main(["unregister", "mine"]) == 0
    assert f"unregistered mine; its files are kept: {mine.resolve()}" in capsys.readouterr().err
    assert "mine" not in [e.name for e in read_manifest()] and mine.is_file()
    assert main(["unregister", "mine"]) == 2
    assert "no model named 'mine'" in capsys.readouterr().err
    # an entry the workbench cannot read is taken out by its name too, the rest kept as written
    entries = json.loads((models_dir / "manifest.json").read_text())
    (models_dir / "manifest.json").write_text(json.dumps(entries + [{"name": "broken", "kind": "cnn", "path": "b.keras",
                                                                     "classes": "happy"}, {"path": "nameless"}]))
    assert main(["unregister", "broken"]) == 0
    left = json.loads((models_dir / "manifest.json").read_text())
    assert [e.get("name") for e in left] == [e["name"] for e in entries] + [None]


def test_an_ensembles_member_is_not_unregistered_under_it(capsys, models_dir):
    from fer_core.config import REPO_ROOT

    bundled = json.loads((REPO_ROOT / "models" / "manifest.json").read_text())
    (models_dir / "manifest.json").write_text(json.dumps(bundled))
    shutil.copy(REPO_ROOT / "models" / "cnn-ensemble-fer2013.ensemble.json", models_dir)
    assert main(["unregister", "cnn-fer2013-7"]) == 2
    assert "member of the ensemble cnn-ensemble-fer2013: unregister that first" in capsys.readouterr().err
    member = shutil.copy(REPO_ROOT / "models" / "cnn_fer2013_7.keras", models_dir / "other7.keras")
    shutil.copy(REPO_ROOT / "models" / "cnn_fer2013_7.meta.json", models_dir / "other7.meta.json")
    assert main(["register", str(member), "--name", "cnn-fer2013-7", "--replace"]) == 0  # said, not refused
    assert "note: cnn-ensemble-fer2013 has cnn-fer2013-7 as a member; it is refused until made again" in \
        capsys.readouterr().err
    assert main(["unregister", "cnn-ensemble-fer2013"]) == 0
    assert main(["unregister", "cnn-fer2013-7"]) == 0
    assert {"cnn-fer2013-7", "cnn-ensemble-fer2013"}.isdisjoint(e.name for e in read_manifest())
    assert (REPO_ROOT / "models" / "cnn_fer2013_7.keras").is_file()


class HalvesPlugin(AlwaysOneEmotion):
    def predict_proba(self, faces, progress=None):
        return np.full((len(self.pixels_of(faces)), len(self.classes)), 0.5)


def test_a_plugin_whose_answers_are_not_probabilities_is_left_out_and_said(capsys, models_dir, always_kind,
                                                                            fer_sample, monkeypatch):
    """A plugin's rows of 0.5 each (summing to 3) were scored without a word."""
    classes = ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    registry.save_and_register({"emotion": "happy", "classes": classes}, name="halves", kind="always",
                               classes=classes, metrics=None, command="pytest")
    monkeypatch.setitem(registry._kinds, "always", registry.ModelKind(
        "always", always_kind.describe, "pixels", False,
        lambda path, entry: HalvesPlugin("happy", classes, entry.name), _save, "{name}.always", _claims))
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013,halves", "--json",
                 "--workers", "1", "--no-cache"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert list(report["models"]) == ["au-logreg-fer2013"]
    assert report["failed_models"] == ["halves: its answers are not probabilities (each face's should be 0 to 1 and "
                                       "sum to 1; one face got 0.5, 0.5, 0.5, 0.5, 0.5, 0.5); a model kind's "
                                       "predict_proba must give them"]
