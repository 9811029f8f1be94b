"""A second comparison on the same files takes the networks' answers from the cache: a researcher
comparing FER2013 val again (another class set, one model added, the report remade) waited about
4 minutes each time for answers already given. What keys an answer (the file's bytes, the model's
files and settings, the code) must make a changed model or setting run again, and what the cache
keeps must be forgotten with the measurements."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main

CNN = "cnn-fer2013"


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache: what an earlier test measured or answered must not serve this one."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FER_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def test_set(fer_sample, astronaut_jpeg, tmp_path) -> Path:
    """FER2013 crops, one photo of a face and one photo without a face (a grey 400 px picture)."""
    root = tmp_path / "set"
    shutil.copytree(fer_sample, root)
    shutil.copy(astronaut_jpeg, root / "happy" / "astronaut.jpg")
    Image.new("RGB", (400, 300), (128, 128, 128)).save(root / "sad" / "grey.png")
    return root


def test_a_second_comparison_takes_the_networks_answers_from_the_cache(own_cache, test_set):
    from fer_core.evaluation.compare import run_comparison
    from fer_core.measure.extract import MeasureCache
    from fer_core.predictors.registry import load_predictor

    cnn, au = load_predictor(CNN), load_predictor("au-logreg-fer2013")
    first = run_comparison([cnn, au], test_set, workers=1)
    assert first.answers_from_cache == {}
    n = first.n
    # the grey picture has no face: no network answers it; AU models' answers are not kept
    assert MeasureCache().count_answers() == n - 1

    answered: list[int] = []
    original = cnn.predict_proba

    def refuse(faces, progress=None):
        raise AssertionError(f"ran again on {len(faces)} faces")

    cnn.predict_proba = refuse
    second = run_comparison([cnn, au], test_set, workers=1)
    assert second.answers_from_cache == {CNN: n - 1}
    assert second.failed_models == []
    np.testing.assert_array_equal(second.probabilities[CNN], first.probabilities[CNN])
    assert second.table.equals(first.table)

    # one image more: only it is answered
    with Image.open(next((test_set / "angry").glob("*.jpg"))) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(test_set / "angry" / "flipped.png")
    cnn.predict_proba = lambda faces, progress=None: answered.append(len(faces)) or original(faces, progress)
    third = run_comparison([cnn, au], test_set, workers=1)
    assert answered == [1]
    assert third.answers_from_cache == {CNN: n - 1}

    # asked not to use the cache, the network runs on every face (but the picture without one)
    answered.clear()
    run_comparison([cnn, au], test_set, workers=1, use_cache=False)
    assert answered == [n]


def test_a_changed_model_or_setting_is_not_served_the_old_answers(tmp_path):
    """The answers are keyed by the model's files (the sidecar with its test-time views too), its
    runtime and views as loaded, and the code; a model made in code and AU models are not cached."""
    from fer_core.evaluation.answers import model_identity
    from fer_core.predictors.registry import find_entry, load_predictor

    entry = find_entry(CNN)
    copy = tmp_path / Path(entry.file).name
    for source in Path(entry.file).parent.glob(Path(entry.file).stem + ".*"):  # .keras, .meta.json, .tflite
        shutil.copy(source, tmp_path / source.name)
    bundled, copied = load_predictor(CNN), load_predictor(str(copy))
    assert copied.runtime == bundled.runtime == "litert"
    assert model_identity(bundled) == model_identity(copied), "the same bytes give the same answers"
    sidecar = next(tmp_path.glob("*.meta.json"))
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "note": "edited"}))
    assert model_identity(load_predictor(str(copy))) not in (None, model_identity(bundled))
    copied.tta = "none"  # views set in code, after loading
    assert model_identity(copied) != model_identity(bundled)
    copied.source_digest = None  # a model made or changed in code says nothing of its files
    assert model_identity(copied) is None
    assert model_identity(load_predictor("au-logreg-fer2013")) is None


def test_the_cache_command_counts_and_forgets_the_answers(own_cache, test_set, capsys):
    assert main(["compare", "--images", str(test_set), "--models", f"{CNN},au-logreg-fer2013", "--workers", "1",
                 "--json"]) == 0
    first = capsys.readouterr()
    assert "answers kept" not in first.err
    assert main(["compare", "--images", str(test_set), "--models", f"{CNN},au-logreg-fer2013", "--workers", "1",
                 "--json"]) == 0
    second = capsys.readouterr()
    n = json.loads(first.out)["n"]
    assert f"answers kept from an earlier run on the same files: {CNN} {n - 1:,} of {n:,}" in second.err
    assert second.out == first.out, "the same JSON, whether answered now or kept"
    assert main(["compare", "--images", str(test_set), "--models", CNN, "--workers", "1", "--no-cache"]) == 0
    assert "answers kept" not in capsys.readouterr().err

    assert main(["cache"]) == 0
    assert f"{n:,} measurements and {n - 1:,} models' answers" in capsys.readouterr().out
    assert main(["cache", "forget", str(test_set / "happy")]) == 0
    happy = len(list((test_set / "happy").iterdir()))
    assert f"{happy} measurements and {happy} models' answers of {happy} files removed" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0
    assert f"{n - happy:,} measurements and {n - 1 - happy:,} models' answers removed" in capsys.readouterr().err


def test_a_stopped_comparison_keeps_the_answers_of_the_networks_that_finished(own_cache, fer_sample):
    """Compare's Stop (or leaving the page) ends a run by an exception that is no error (Streamlit's,
    like Ctrl-C's): the answers of the networks that had finished are kept for the next run."""
    from fer_core.evaluation.compare import run_comparison
    from fer_core.predictors.registry import load_predictor

    cnn, seven = load_predictor(CNN), load_predictor("cnn-fer2013-7")

    def stopped(faces, progress=None):
        raise KeyboardInterrupt

    seven.predict_proba = stopped
    with pytest.raises(KeyboardInterrupt):
        run_comparison([cnn, seven], fer_sample, workers=1)
    again = run_comparison([cnn], fer_sample, workers=1)
    assert again.answers_from_cache == {CNN: again.n}


def test_a_large_set_is_compared_in_parts_with_the_same_answers(own_cache, fer_sample, tmp_path):
    """A comparison decodes and answers its images a part at a time (``CHUNK_IMAGES``), so memory
    holds one part's faces, not the set's (28,709 crops of 224 px held 4.3 GB). In parts it gives
    what one pass gives: the same answers, files, unreadable images and failed models."""
    import fer_core.evaluation.compare as compare
    from fer_core.predictors.registry import load_predictor

    root = tmp_path / "set"
    shutil.copytree(fer_sample, root)
    (root / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    models = [load_predictor(CNN), load_predictor("au-logreg-fer2013"), load_predictor("cnn-ensemble-fer2013")]
    whole = compare.run_comparison(models, root, workers=1, use_cache=False)
    seen: list[int] = []
    original = models[0].predict_proba
    models[0].predict_proba = lambda faces, progress=None: seen.append(len(faces)) or original(faces, progress)
    chunk, compare.CHUNK_IMAGES = compare.CHUNK_IMAGES, 5
    try:
        parts = compare.run_comparison(models, root, workers=1, use_cache=False)
    finally:
        compare.CHUNK_IMAGES = chunk
    assert max(seen) <= 5 and sum(seen) == parts.n
    assert parts.table.equals(whole.table) and parts.unreadable == whole.unreadable and len(parts.unreadable) == 1
    for name in parts.names:
        np.testing.assert_allclose(parts.probabilities[name], whole.probabilities[name], atol=1e-6)


def test_a_model_failing_on_a_later_part_is_left_out_whole(own_cache, fer_sample):
    import fer_core.evaluation.compare as compare
    from fer_core.errors import FerError
    from fer_core.predictors.registry import load_predictor

    cnn, au = load_predictor(CNN), load_predictor("au-logreg-fer2013")
    calls = [0]
    original = cnn.predict_proba

    def second_part_fails(faces, progress=None):
        calls[0] += 1
        if calls[0] == 2:
            raise FerError(f"{CNN}: could not judge this part")
        return original(faces, progress)

    cnn.predict_proba = second_part_fails
    chunk, compare.CHUNK_IMAGES = compare.CHUNK_IMAGES, 10
    try:
        result = compare.run_comparison([cnn, au], fer_sample, workers=1, use_cache=False)
    finally:
        compare.CHUNK_IMAGES = chunk
    assert result.names == ["au-logreg-fer2013"] and result.failed_models == [f"{CNN}: could not judge this part"]
    assert calls[0] == 2, "not run again on the parts after it failed"
    assert result.n == 24


def test_cache_prune_removes_what_an_older_measuring_code_left(own_cache, test_set, capsys, monkeypatch):
    """After an upgrade, ``cache`` counted measurements of the older measuring code as held, though
    none is served again, and only ``clear`` could remove them (an upgrading user's review)."""
    from fer_core.measure import extract

    args = ["compare", "--images", str(test_set), "--models", f"{CNN},au-logreg-fer2013", "--workers", "1", "--json"]
    current = extract.MEASURE_VERSION
    monkeypatch.setattr(extract, "MEASURE_VERSION", "mp-0")  # the version before the upgrade
    assert main(args) == 0
    monkeypatch.setattr(extract, "MEASURE_VERSION", current)
    capsys.readouterr()
    assert main(args) == 0
    assert "answers kept" not in capsys.readouterr().err, "the older code's measurements are not served"
    assert main(["cache"]) == 0
    n = len([p for p in test_set.rglob("*") if p.is_file()])
    said = capsys.readouterr().out
    assert f"{2 * n:,} measurements and {2 * (n - 1):,} models' answers" in said
    assert f"; {n:,} measurements and {n - 1:,} models' answers of them made by an older version" in said
    assert main(["cache", "prune"]) == 0
    assert f"{n:,} measurements and {n - 1:,} models' answers made by an older version" in capsys.readouterr().err
    assert main(["cache"]) == 0
    said = capsys.readouterr().out
    assert f"{n:,} measurements and {n - 1:,} models' answers" in said and "older version" not in said
    assert main(args) == 0
    assert f"answers kept from an earlier run on the same files: {CNN} {n - 1:,} of {n:,}" in capsys.readouterr().err


def test_cache_prune_keeps_what_a_newer_checkout_sharing_the_cache_measured(own_cache, test_set, capsys, monkeypatch):
    """Another version's measurements were all "older": pruning from an older checkout that shares
    the cache removed a newer one's (a code review)."""
    from fer_core.measure import extract

    args = ["extract", str(test_set), "--out", str(own_cache / "au.csv"), "--workers", "1"]
    current = extract.MEASURE_VERSION
    monkeypatch.setattr(extract, "MEASURE_VERSION", f"mp-{int(current.split('-')[1]) + 1}")
    assert main(args) == 0
    monkeypatch.setattr(extract, "MEASURE_VERSION", current)
    capsys.readouterr()
    assert main(["cache"]) == 0
    assert "older version" not in capsys.readouterr().out
    assert main(["cache", "prune"]) == 0
    assert "0 measurements made by an older version" in capsys.readouterr().err
