"""The library as a notebook uses it (a reviewer's session): what a script gives the functions of
the README's Python API is read as the command line reads it, and a mistake is one FerError line,
not a numpy or attribute traceback."""

from __future__ import annotations

import pytest
from conftest import copy_fer_sample

import fer_core
from fer_core.errors import FerError
from fer_core.manifest import read_manifest


def test_analyze_image_takes_a_model_by_name_and_gives_a_cnns_emotion(astronaut):
    """A CNN does not explain: its faces had no emotion anywhere (``explanation`` None), and a name
    instead of a loaded model was an AttributeError."""
    [face] = fer_core.analyze_image(astronaut, "cnn-fer2013")
    assert face.explanation is None and face.emotion == "happy"
    assert set(face.probabilities) == set(fer_core.load_predictor("cnn-fer2013").classes)
    assert face.to_dict()["emotion"] == "happy" and face.to_dict()["probabilities"]["happy"] > 0.9
    [explained] = fer_core.analyze_image(astronaut, "au-logreg-fer2013")
    assert explained.emotion == explained.explanation.emotion == "happy" and explained.probabilities is None
    for nothing in (None, [1, 2, 3]):
        with pytest.raises(FerError, match="is no image: give a path, bytes, a PIL image or an array"):
            fer_core.analyze_image(nothing)


def test_emotions_given_by_a_script_are_read_as_classes_is(fer_val, tmp_path):
    """``classes=["hapy", "sad"]`` scored sad alone and reported 'hapy' with no images; ``Happy``
    listed nothing. A folder given as the images is listed as the CLI lists --images."""
    folder = copy_fer_sample(fer_val, tmp_path / "set", per_class=2, classes=("happy", "sad", "angry"))
    assert {it.label for it in fer_core.list_images(folder, classes=["Happy", "SAD"])} == {"happy", "sad"}
    with pytest.raises(FerError, match="unknown emotion 'hapy'.*did you mean 'happy'"):
        fer_core.list_images(folder, classes=["hapy"])
    with pytest.raises(FerError, match="unknown emotion 'hapy'.*did you mean 'happy'"):
        fer_core.run_comparison(["cnn-fer2013"], fer_core.list_images(folder), classes=["hapy", "sad"])
    result = fer_core.run_comparison(["cnn-fer2013"], str(folder), classes=["Happy", "sad"])
    assert result.classes == ("happy", "sad") and result.n == 4 and result.skipped == {"angry": 2}


def test_fitting_and_saving_mistakes_are_one_line_and_metrics_may_be_a_dict(models_dir):
    table = fer_core.au_table.read("data/fer2013_val_au.csv.gz").sample(1500, random_state=0)
    with pytest.raises(FerError, match="kind 'svm': must be one of au-logreg, au-mlp"):
        fer_core.fit_au_model(table, kind="svm")
    model = fer_core.fit_au_model(table, Cs=(1.0,))
    entry = fer_core.save_and_register(model, name="mine", kind=model.kind, classes=model.classes,
                                       metrics={"accuracy": 0.5, "evaluated_on": "a notebook"}, command="notebook")
    assert next(e for e in read_manifest() if e.name == "mine").metrics.accuracy == 0.5 == entry.metrics.accuracy
    for wrong in (0.5, {"holdout": {}}):  # not a Metrics, a dict naming none of its fields
        with pytest.raises(FerError, match="metrics: give a Metrics"):
            fer_core.save_and_register(model, name="mine2", kind=model.kind, classes=model.classes, metrics=wrong,
                                       command="notebook")
    # no metrics given: a fitted AU model's held-out scores are its metrics, not "not evaluated"
    fer_core.save_and_register(model, name="mine3", kind=model.kind, classes=model.classes, metrics=None,
                               command="notebook")
    saved = next(e for e in read_manifest() if e.name == "mine3").metrics
    assert saved.accuracy == pytest.approx(model.holdout.accuracy) and saved.evaluated_on
    assert repr(fer_core.load_predictor("mine")).startswith("<AUPredictor 'mine': au-logreg, angry, disgust")


def test_a_model_given_by_name_is_loaded_once_while_its_files_are_unchanged(models_dir, astronaut, monkeypatch):
    """A notebook's loop ``for img in images: analyze_image(img, "cnn-fer2013")`` loaded the network
    again for every image (seconds each). The model is kept until a file it is read from changes;
    a replaced model file is loaded (and its checksum checked) again, not answered from the cache."""
    import os

    from fer_core import pipeline
    from fer_core.errors import ModelFileError
    from fer_core.predictors import registry

    loads = []
    real = registry.load_predictor
    monkeypatch.setattr(registry, "load_predictor", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    pipeline._named_models.clear()
    first = pipeline.model_named("au-logreg-fer2013")
    for _ in range(3):
        fer_core.analyze_image(astronaut, "au-logreg-fer2013")
    assert loads == ["au-logreg-fer2013"] and pipeline.model_named("au-logreg-fer2013") is first
    manifest = models_dir / "manifest.json"
    stat = manifest.stat()
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a model saved or replaced since
    again = pipeline.model_named("au-logreg-fer2013")
    assert again is not first and len(loads) == 2 and len(pipeline._named_models) == 1  # no stale copy kept
    mine = fer_core.save_and_register(again.au_model(), name="mine", kind="au-logreg", classes=again.classes,
                                      metrics=None, command="test", models_dir=models_dir)
    assert mine.file.parent == models_dir  # the script's own file, not the bundled one the manifest points to
    fer_core.analyze_image(astronaut, "mine")
    mine.file.write_text(mine.file.read_text().replace('"info": {', '"info": {"edited": 1, ', 1))
    with pytest.raises(ModelFileError, match="checksum does not match"):  # the manifest itself is unchanged
        fer_core.analyze_image(astronaut, "mine")
    with pytest.raises(ModelFileError, match="not found"):  # a NUL byte in a name is one FerError line
        pipeline.model_named("a\x00b")
    # files that cannot all be looked at never read as unchanged: loaded (and checked) every time
    loads.clear()
    monkeypatch.setattr(pipeline, "MAX_STAMPED_FILES", 1)
    assert pipeline.model_named("au-logreg-fer2013") is not pipeline.model_named("au-logreg-fer2013")
    assert loads == ["au-logreg-fer2013"] * 2


def test_a_scikit_learn_model_fitted_in_a_notebook_is_registered_and_explained(models_dir, astronaut):
    """A model author fitted a LogisticRegression on AUs in a notebook: save_and_register raised
    "'LogisticRegression' object has no attribute 'save'", AUPredictor(clf) "no attribute 'kind'".
    ``AUModel.from_estimator`` makes it this workbench's AU model, with the same probabilities."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from fer_core.au_table import AU_COLUMNS

    table = fer_core.au_table.read("data/fer2013_val_au.csv.gz").dropna(subset=list(AU_COLUMNS)).sample(
        1200, random_state=0)
    aus, labels = table[list(AU_COLUMNS)], table["label"].replace({"happy": "happiness"})  # aliases read as everywhere
    for wrapped in (LogisticRegression(max_iter=2000), SVC(probability=True)):
        with pytest.raises(FerError, match="is not an AU model of this workbench.*AUModel.from_estimator"):
            fer_core.save_and_register(wrapped, name="mine", kind="au-logreg", classes=["happy"], metrics=None,
                                       command="notebook")
        with pytest.raises(FerError, match="is not an AU model of this workbench"):
            fer_core.AUPredictor(wrapped)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(aus, labels)
    model = fer_core.AUModel.from_estimator(pipe, description="our notebook")
    assert model.kind == "au-logreg" and "happy" in model.classes and model.au_columns == AU_COLUMNS
    np.testing.assert_allclose(model.predict_proba(aus.to_numpy()), pipe.predict_proba(aus), atol=1e-6)
    fer_core.save_and_register(model, name="mine", kind=model.kind, classes=model.classes, metrics=None,
                               command="notebook")
    [face] = fer_core.analyze_image(astronaut, "mine")
    assert face.explanation.emotion == "happy" and "AU12" in face.explanation.sentence
    upper = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU45_r"]
    two = table["label"].isin(["happy", "sad"])
    mlp = MLPClassifier((16,), max_iter=2000, random_state=0).fit(table.loc[two, upper].to_numpy(), table.loc[two, "label"])
    small = fer_core.AUModel.from_estimator(mlp, au_columns=upper)
    assert small.kind == "au-mlp" and small.classes == ("happy", "sad")
    np.testing.assert_allclose(small.predict_proba(table.loc[two, upper].to_numpy()),
                               mlp.predict_proba(table.loc[two, upper].to_numpy()), atol=1e-6)
    with pytest.raises(FerError, match="reads 7 inputs but 17 AU columns were named"):
        fer_core.AUModel.from_estimator(mlp)
    with pytest.raises(FerError, match="SVC: give a LogisticRegression or MLPClassifier"):
        fer_core.AUModel.from_estimator(SVC().fit(aus[:200], labels[:200]))
