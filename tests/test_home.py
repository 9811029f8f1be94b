"""Home's models table: every bundled model on the same images (models/scores_fer2013_val.json),
the seven-emotion table of the models that predict fear (models/scores_fer2013_val_seven.json, made
here by bench/bundled_scores.py with a tiny real seven-emotion CNN), "not measured" where a model
changed since, the Start-here path, and Home and the Dataset explorer in Korean with no English left."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
from dataclasses import replace

import pandas as pd
import pytest
from apptest_helpers import charts, english_left, page_texts, run_app, texts
from conftest import BUNDLED_AU_MODEL, SEVEN_CNN, copy_fer_sample, seven_cnn_entry
from streamlit.testing.v1 import AppTest

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.evaluation.scores import (
    SCORES_FILE,
    SEVEN_SCORES_FILE,
    BundledScores,
    accuracy_text,
    predicts_all_seven,
    read_scores,
    status_of,
    statuses,
    val_role,
    write_scores,
)
from fer_core.images import scan_images
from fer_core.manifest import read_manifest, sha256_file, write_manifest

ROOT = config.REPO_ROOT
BUNDLED_MODELS = ROOT / "models"
HOME = str(ROOT / "app.py")
EXPLORER = str(ROOT / "pages" / "1_Dataset_explorer.py")
T = 90
NOT_MEASURED = "not measured on the shared images — run python bench/bundled_scores.py"
CI_TEXT = re.compile(r"^\d{1,3}\.\d % \(\d{1,3}\.\d–\d{1,3}\.\d\)$")


@pytest.fixture
def shipped_models(tmp_path, monkeypatch):
    """A private copy of models/manifest.json and the scores file (the model files stay where the
    manifest's repository-relative paths point; Home never loads them)."""
    d = tmp_path / "models"
    d.mkdir()
    for name in ("manifest.json", SCORES_FILE, SEVEN_SCORES_FILE):
        if (BUNDLED_MODELS / name).exists():
            shutil.copy(BUNDLED_MODELS / name, d / name)
    monkeypatch.setenv("FER_MODELS_DIR", str(d))
    return d




def _bench():
    spec = importlib.util.spec_from_file_location("bundled_scores", ROOT / "bench" / "bundled_scores.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seven_scores(tmp_path_factory, fer_val, tiny_seven_cnn):
    """bench/bundled_scores.py's two test sets on 2 val images per emotion (fear included) for the
    bundled AU model and a tiny seven-emotion CNN: (manifest entries, six-emotion, seven-emotion scores)."""
    sample = copy_fer_sample(fer_val, tmp_path_factory.mktemp("val7"), per_class=2, classes=SEVEN_EMOTIONS)
    entries = [next(e for e in read_manifest(BUNDLED_MODELS) if e.name == BUNDLED_AU_MODEL),
               seven_cnn_entry(tiny_seven_cnn)]
    bench, listing = _bench(), scan_images(sample)
    command = "python bench/bundled_scores.py --workers 1"
    six = bench.score_test_set(entries, listing, SIX_EMOTIONS, "val", 1, command)
    seven = bench.score_test_set([e for e in entries if predicts_all_seven(e)], listing, SEVEN_EMOTIONS, "val", 1,
                                 command)
    return entries, six, seven, listing


@pytest.fixture
def seven_models(tmp_path, monkeypatch, seven_scores):
    """A models folder with the bundled AU model and the tiny seven-emotion CNN, and both scores files."""
    entries, six, seven, _ = seven_scores
    d = tmp_path / "models"
    d.mkdir()
    write_manifest(entries, d)
    write_scores(six, d)
    write_scores(seven, d)
    monkeypatch.setenv("FER_MODELS_DIR", str(d))
    return d


def _home(lang: str = "en") -> AppTest:
    at = AppTest.from_file(HOME)
    at.query_params["lang"] = lang
    return run_app(at, T)


# -- the scores file ----------------------------------------------------------------------------
def test_scores_file_covers_every_manifest_model_and_matches_its_file():
    """Fails when a model is added or retrained without rerunning bench/bundled_scores.py."""
    entries = read_manifest(BUNDLED_MODELS)
    scores = read_scores(BUNDLED_MODELS)
    assert scores is not None, "models/scores_fer2013_val.json is missing: run python bench/bundled_scores.py"
    assert {n: s.state for n, s in statuses(entries, scores).items()} == {e.name: "ok" for e in entries}, \
        "a manifest model has no current score: run python bench/bundled_scores.py"
    for e in entries:
        assert scores.score(e.name).sha256 == sha256_file(e.file), f"{e.name} changed since it was scored"
    test_set = scores.test_set
    assert test_set.name == "FER2013 val" and test_set.classes == SIX_EMOTIONS
    assert test_set.left_out.get("fear", 0) > 0 and test_set.n == sum(test_set.per_emotion.values())
    assert scores.command.startswith("python bench/bundled_scores.py") and re.fullmatch(r"\d{4}-\d\d-\d\d", scores.date)
    for m in scores.models:
        lo, hi = m.accuracy_ci95
        assert m.n == test_set.n and 0 <= m.no_face < m.n
        assert lo <= m.accuracy <= hi and hi - lo < 0.1
        assert set(m.recall) == set(SIX_EMOTIONS)
        # accuracy is the images-weighted mean of the per-emotion recalls (no face counted wrong)
        weighted = sum(m.recall[e] * test_set.per_emotion[e] for e in SIX_EMOTIONS) / test_set.n
        assert weighted == pytest.approx(m.accuracy, abs=5e-4)
        # how sure it was against how often right, over every face it answered (none without a face)
        c = m.calibration
        assert c is not None and c.n == m.n - m.no_face == sum(b.n for b in c.bins), m.name
        assert c.accuracy * c.n == pytest.approx(m.accuracy * m.n, abs=0.01) and 0 <= c.ece < 0.2
    assert BundledScores.from_dict(json.loads(scores_json := (BUNDLED_MODELS / SCORES_FILE).read_text())) == scores
    assert json.loads(scores_json) == scores.to_dict()


def test_seven_emotion_scores_cover_every_manifest_model_that_predicts_fear():
    """Fails when a seven-emotion model is added or retrained without rerunning bench/bundled_scores.py."""
    seven = [e for e in read_manifest(BUNDLED_MODELS) if predicts_all_seven(e)]
    scores = read_scores(BUNDLED_MODELS, SEVEN_EMOTIONS)
    if not seven:
        return
    assert scores is not None, "models/scores_fer2013_val_seven.json is missing: run python bench/bundled_scores.py"
    assert {n: s.state for n, s in statuses(seven, scores).items()} == {e.name: "ok" for e in seven}, \
        "a seven-emotion model has no current seven-emotion score: run python bench/bundled_scores.py"
    test_set = scores.test_set
    assert test_set.name == "FER2013 val" and test_set.classes == SEVEN_EMOTIONS and test_set.left_out == {}
    assert test_set.n == 3589 and test_set.per_emotion["fear"] == 496
    assert {m.name for m in scores.models} == {e.name for e in seven}  # six-emotion models are not on it
    for m in scores.models:
        assert m.n == test_set.n and set(m.recall) == set(SEVEN_EMOTIONS)
        assert m.sha256 == sha256_file(next(e for e in seven if e.name == m.name).file)


def test_scores_file_counts_the_images_of_the_val_folder(fer_val):
    listing = scan_images(fer_val, SEVEN_EMOTIONS)
    counts = pd.Series([it.label for it in listing.items]).value_counts().to_dict()
    test_set = read_scores(BUNDLED_MODELS).test_set
    assert {e: counts[e] for e in SIX_EMOTIONS} == {e: test_set.per_emotion[e] + 0 for e in SIX_EMOTIONS}
    assert test_set.left_out == {"fear": counts["fear"]}


def test_val_role_reads_what_the_manifest_says():
    assert val_role("FER2013 val, six emotions (face + mirror averaged; val also picked the best epoch)") == "yes"
    assert val_role("val (3,093 images; not used for any choice of this model, but its trunk is cnn_fer2013's, "
                    "whose best epoch this split picked)") == "trunk"
    assert val_role("25% of data/fer2013_train_au.csv.gz held out from fitting (stratified, seed 0)") == "no"
    assert val_role("an interval picked on train") == "no"  # 'interval' is not the val split
    assert val_role("val (1,000 images; the epoch was chosen on val)") == "yes"
    # the bundled seven-emotion scratch CNN: its crops were chosen on train, not val
    assert val_role("val (3,589 images, 7 emotions; not used for any choice; ten test-time crops, chosen on "
                    "its held-out tenth of train, rescored by bench/bundled_scores.py)") == "no"
    # the bundled seven-emotion bottleneck: its trunk was picked on val, and val chose its own crops too
    assert val_role("val (3,589 images; not used for any choice of this model, but its trunk is cnn_fer2013_7's, "
                    "whose best epoch this split picked; ten test-time crops, chosen on half of val, rescored by "
                    "bench/bundled_scores.py)") == "yes"
    assert val_role("") == ""
    assert accuracy_text(0.70264, (0.687, 0.7184)) == "70.3 % (68.7–71.8)"


def test_status_of_a_manifest_entry():
    scores = read_scores(BUNDLED_MODELS)
    entry = next(e for e in read_manifest(BUNDLED_MODELS) if e.name == "cnn-fer2013")
    assert status_of(entry, scores, entry.sha256).score == scores.score("cnn-fer2013")
    assert status_of(entry, scores, "f" * 64).state == "stale"
    assert status_of(entry, scores, None).state == "stale"  # no checksum recorded: cannot tell
    assert status_of(entry, None, entry.sha256).state == "missing"
    others = replace(scores, models=tuple(m for m in scores.models if m.name != entry.name))
    assert status_of(entry, others, entry.sha256).state == "missing"
    failed = replace(others, failed={entry.name: "cnn-fer2013: could not load (no TensorFlow)"})
    state = status_of(entry, failed, entry.sha256)
    assert (state.state, state.score, state.reason) == ("failed", None, "cnn-fer2013: could not load (no TensorFlow)")


def test_a_networks_sidecar_edited_since_it_was_scored_is_not_shown_as_measured(tmp_path, monkeypatch):
    """A reproducibility audit set "tta": "none" in cnn-fer2013's sidecar: its accuracy moved from
    0.595 to 0.571 while its checksum, its provenance and Home's score stayed those of before."""
    import json
    import shutil

    from fer_core.evaluation.scores import statuses
    from fer_core.provenance import sidecar_sha256

    models = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS, models)
    monkeypatch.setenv("FER_MODELS_DIR", str(models))  # the ensemble's members are this folder's
    scores = read_scores(models)
    assert statuses(read_manifest(models), scores)["cnn-fer2013"].state == "ok"
    sidecar = models / "cnn_fer2013.meta.json"
    settings = json.loads(sidecar.read_text())
    settings["tta"] = "none"
    sidecar.write_text(json.dumps(settings, indent=1) + "\n")
    shown = statuses(read_manifest(models), scores)
    assert shown["cnn-fer2013"].state == "stale" and shown["au-logreg-fer2013"].state == "ok"
    assert sidecar_sha256(models / "cnn_fer2013.keras") != scores.score("cnn-fer2013").sidecar_sha256
    # its answers are the ensemble's too (a code review: the ensemble kept its score)
    assert shown["cnn-ensemble-fer2013"].state == "stale" and shown["cnn-fer2013-7"].state == "ok"
    sidecar.unlink()  # a sidecar the score recorded, gone: not the network that was scored either
    entry = next(e for e in read_manifest(models) if e.name == "cnn-fer2013")
    assert status_of(entry, scores, entry.sha256, sidecar_sha256(entry.file)).state == "stale"


# -- Home -------------------------------------------------------------------------------------
def test_home_shows_every_bundled_model_on_the_same_images(shipped_models, downloads):
    scores = read_scores()
    names = [e.name for e in read_manifest()]
    at = _home()
    table = at.dataframe[0].value
    assert list(table["model"]) == names
    assert set(table["images"]) == {scores.test_set.n}  # the same images for every model
    columns = json.loads(at.dataframe[0].proto.columns)  # counts read "3,093", as in the captions
    assert columns["images"]["type_config"]["format"] == columns["no face"]["type_config"]["format"] == "localized"
    for name, cell, f1 in zip(table["model"], table["accuracy (95 % CI)"], table["macro-F1"]):
        s = scores.score(name)
        assert CI_TEXT.match(cell) and cell == accuracy_text(s.accuracy, s.accuracy_ci95)
        assert f1 == s.macro_f1
    assert list(table["calibration error"]) == [scores.score(n).calibration.ece for n in names]
    assert "ten bins of confidence" in columns["calibration error"]["help"]
    roles = dict(zip(table["model"], table["val also chose it"]))
    assert roles["cnn-fer2013"] == "yes" and roles["au-logreg-fer2013"] == "no"
    assert roles["au-bottleneck-fer2013"] == "its trunk only"
    recorded = dict(zip(table["model"], table["recorded at training"]))
    held_out = next(e for e in read_manifest() if e.name == "au-logreg-fer2013").metrics
    # the manifest's held-out figure, apart from the same-image one
    assert recorded["au-logreg-fer2013"] == accuracy_text(held_out.accuracy, held_out.accuracy_ci95)
    assert recorded["au-logreg-fer2013"] != table.set_index("model").loc["au-logreg-fer2013", "accuracy (95 % CI)"]
    caption = " ".join(texts(at.caption))
    assert f"FER2013 val, six emotions, {scores.test_set.n:,} images" in caption
    assert "fear 496" in caption and "counts as wrong" in caption and scores.command in caption
    assert scores.date in caption
    assert not any("not measured" in w for w in texts(at.warning))
    # both downloads parse back to what the table shows
    csv = pd.read_csv(io.BytesIO(downloads["models_fer2013_val.csv"]))
    assert list(csv["model"]) == names and set(csv["state"]) == {"ok"}
    for _, row in csv.iterrows():
        s = scores.score(row["model"])
        assert (row["accuracy"], row["ci95_low"], row["ci95_high"], row["n"]) == (
            s.accuracy, *s.accuracy_ci95, s.n)
        assert row["recall_happy"] == s.recall["happy"]
    # the recorded figure comes with the interval the table shows beside it
    recorded_row = csv.set_index("model").loc["au-logreg-fer2013"]
    assert (recorded_row["recorded_accuracy"], recorded_row["recorded_ci95_low"], recorded_row["recorded_ci95_high"]) \
        == (held_out.accuracy, *held_out.accuracy_ci95)
    assert BundledScores.from_dict(json.loads(downloads[SCORES_FILE])) == scores


def test_home_models_download_keeps_a_formula_name_as_text(shipped_models, downloads):
    """A received manifest naming a model "=2+5+cmd|..." (nothing checks names as a manifest is
    read): Home's CSV wrote it as a formula a spreadsheet runs, unlike every other download."""
    entries = read_manifest()
    hostile = replace(next(e for e in entries if e.name == "au-logreg-fer2013"), name="=2+5+cmd|' /C calc'!A0")
    write_manifest(entries + [hostile])
    _home()
    raw = downloads["models_fer2013_val.csv"].decode()
    assert "\n'=2+5+cmd|" in raw and "\n=2+5" not in raw


def test_home_start_here_links_the_three_steps(shipped_models):
    at = _home()
    assert texts(at.header)[0] == "Start here"
    links = [(e.proto.label, e.proto.page) for e in at.get("page_link")]
    steps = links[:3]
    assert [label[:2] for label, _ in steps] == ["1.", "2.", "3."]
    assert [page for _, page in steps] == ["Dataset_explorer", "Try_it", "Compare"]
    assert "Explore the data" in steps[0][0] and "Try a photo" in steps[1][0] and "Compare the models" in steps[2][0]


def test_home_says_not_measured_for_a_retrained_model(shipped_models, downloads):
    entries = read_manifest()
    retrained = next(e for e in entries if e.name == "cnn-fer2013")
    retrained.sha256 = "0" * 64  # as register() writes it after retraining: the file is another one
    write_manifest(entries)
    at = _home()
    # the download's counts stay whole numbers beside a model without them (they read 3093.0)
    raw = downloads["models_fer2013_val.csv"].decode()
    assert ",3093," in raw and "3093.0" not in raw
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["cnn-fer2013", "accuracy (95 % CI)"] == NOT_MEASURED
    assert pd.isna(table.loc["cnn-fer2013", "images"])
    assert at.dataframe[0].proto.placeholder == "–"  # a missing count reads "–", not Streamlit's "None"
    assert table.loc["cnn-fer2013", "recorded at training"] == "70.3 % (68.6–71.8)"  # its own, labelled apart
    assert CI_TEXT.match(table.loc["au-logreg-fer2013", "accuracy (95 % CI)"])
    # the ensemble's own file did not change, but its member did: its scores no longer hold either
    assert table.loc["cnn-ensemble-fer2013", "accuracy (95 % CI)"] == NOT_MEASURED
    warning = " ".join(texts(at.warning))
    assert "cnn-fer2013" in warning and "cnn-ensemble-fer2013" in warning and "au-logreg-fer2013" not in warning
    assert "`python bench/bundled_scores.py`" in warning
    recall = at.dataframe[1].value  # the per-emotion recall, under the table: only what is measured now
    assert "happy" in recall.columns and "au-logreg-fer2013" in set(recall["model"])
    column = at.dataframe[1].proto.columns  # percent, one decimal for every share ("25.0%", not "25%")
    assert '"%.1f%%"' in str(column) and recall["happy"].between(0, 100).all() and recall["happy"].max() > 1
    assert not {"cnn-fer2013", "cnn-ensemble-fer2013"} & set(recall["model"])
    # nor does the scores download give them as the models' scores: it names them instead
    document = json.loads(downloads[SCORES_FILE])
    assert not {"cnn-fer2013", "cnn-ensemble-fer2013"} & {m["name"] for m in document["models"]}
    assert document["changed_since_scored"] == ["cnn-ensemble-fer2013", "cnn-fer2013"]
    assert "au-logreg-fer2013" in {m["name"] for m in document["models"]}


def test_a_bundled_models_percentage_is_told_by_how_often_it_was_right_that_sure(shipped_models):
    """Try it's line under an answer: the bin of the shared images' calibration the answer's
    confidence falls in, while that score belongs to the model's file; nothing for a model of one's
    own, one retrained since, or a bin of too few faces to say."""
    from fer_core.evaluation.scores import TRACK_RECORD_MIN_FACES, track_record

    score = read_scores().score("cnn-fer2013")
    top = max(score.calibration.bins, key=lambda b: b.low)
    record = track_record("cnn-fer2013", top.low + 0.001)
    assert record.test_set == "FER2013 val" and record.bin == top and top.n >= TRACK_RECORD_MIN_FACES
    assert track_record("cnn-fer2013", 1.0).bin == top  # a confidence of 1 is in the last bin
    # a seven-emotion model is told by its seven-emotion score (its fear answers are not wrong there)
    seven_top = max(read_scores(classes=SEVEN_EMOTIONS).score("cnn-fer2013-7").calibration.bins, key=lambda b: b.low)
    assert track_record("cnn-fer2013-7", 0.999).bin == seven_top
    few = [b for b in score.calibration.bins if b.n < TRACK_RECORD_MIN_FACES]
    if few:
        assert track_record("cnn-fer2013", few[0].low) is None
    assert track_record("my-own-model", 0.95) is None
    entries = read_manifest()
    next(e for e in entries if e.name == "cnn-fer2013").sha256 = "0" * 64  # retrained since it was scored
    write_manifest(entries)
    assert track_record("cnn-fer2013", 0.95) is None


def test_home_without_or_with_a_damaged_scores_file(shipped_models):
    (shipped_models / SCORES_FILE).unlink()
    at = _home()
    assert set(at.dataframe[0].value["accuracy (95 % CI)"]) == {NOT_MEASURED}
    assert any("Not measured on the shared images" in w for w in texts(at.warning))
    (shipped_models / SCORES_FILE).write_text('{"models": "not a list"')
    at = _home()
    assert set(at.dataframe[0].value["accuracy (95 % CI)"]) == {NOT_MEASURED}
    assert any(SCORES_FILE in w and "\n" not in w for w in texts(at.warning))


# -- seven emotions ---------------------------------------------------------------------------
def test_bench_scores_seven_emotion_models_on_seven_emotions_and_everyone_on_six(seven_scores, tiny_seven_cnn):
    from fer_core.evaluation.compare import run_comparison

    entries, six, seven, listing = seven_scores
    assert six.test_set.classes == SIX_EMOTIONS and six.test_set.left_out == {"fear": 2} and six.test_set.n == 12
    assert [m.name for m in six.models] == [BUNDLED_AU_MODEL, SEVEN_CNN] and not six.failed
    assert seven.test_set.classes == SEVEN_EMOTIONS and seven.test_set.left_out == {} and seven.test_set.n == 14
    assert seven.test_set.per_emotion == {e: 2 for e in SEVEN_EMOTIONS}
    assert [m.name for m in seven.models] == [SEVEN_CNN]  # the six-emotion AU model is skipped
    score = seven.score(SEVEN_CNN)
    assert score.n == 14 and set(score.recall) == set(SEVEN_EMOTIONS) and score.sha256 == sha256_file(tiny_seven_cnn)
    assert sum(score.recall[e] * 2 for e in SEVEN_EMOTIONS) / 14 == pytest.approx(score.accuracy, abs=5e-4)
    # on the six-emotion images a seven-emotion model saying "fear" is wrong, as in any comparison
    comparison = run_comparison([entries[1]], listing.items, classes=SIX_EMOTIONS)
    said = comparison.table[SEVEN_CNN]
    assert not comparison.correct(SEVEN_CNN)[(said == "fear").to_numpy()].any()
    assert six.score(SEVEN_CNN).accuracy == pytest.approx(comparison.reports[SEVEN_CNN].accuracy)


def test_home_shows_the_seven_emotion_table_under_the_six_one(seven_models, seven_scores, downloads):
    seven = seven_scores[2]
    at = _home()
    tables = [d.value for d in at.dataframe if "kind" in d.value.columns]
    assert [list(t["model"]) for t in tables] == [[BUNDLED_AU_MODEL, SEVEN_CNN], [SEVEN_CNN]]
    six_table, seven_table = (t.set_index("model") for t in tables)
    assert six_table.loc[SEVEN_CNN, "images"] == 12 and seven_table.loc[SEVEN_CNN, "images"] == 14
    s = seven.score(SEVEN_CNN)
    assert seven_table.loc[SEVEN_CNN, "accuracy (95 % CI)"] == accuracy_text(s.accuracy, s.accuracy_ci95)
    assert seven_table.loc[SEVEN_CNN, "macro-F1"] == s.macro_f1
    assert seven_table.loc[SEVEN_CNN, "no face"] == s.no_face
    assert seven_table.loc[SEVEN_CNN, "val also chose it"] == "no"  # picked on a train share, val scored once
    assert "**Seven emotions, fear included (the models that predict all seven)**" in texts(at.markdown)
    captions = texts(at.caption)
    fear = next(c for c in captions if c.startswith(f"Also predicting fear: {SEVEN_CNN}. On these six-emotion "
                                                    "images a fear answer counts as wrong."))
    # a fear answer lowers recall but no scored emotion's precision: their macro-F1 flatters them
    assert "macro-F1 is not directly comparable to the six-emotion models'" in fear
    seven_caption = next(c for c in captions if "FER2013 val, seven emotions, 14 images" in c)
    assert "fear 2" in seven_caption and seven.command in seven_caption
    references = next(c for c in captions if "73.3 %" in c)
    assert all(w in references for w in ("74.1 %", "VGG", "arXiv 2105.03588", "Residual Masking Network",
                                         "PrivateTest", "PublicTest"))
    assert not at.warning
    csv = pd.read_csv(io.BytesIO(downloads["models_fer2013_val_seven.csv"]))
    assert list(csv["model"]) == [SEVEN_CNN] and csv.loc[0, "recall_fear"] == s.recall["fear"]
    assert BundledScores.from_dict(json.loads(downloads[SEVEN_SCORES_FILE])) == read_scores(seven_models, SEVEN_EMOTIONS)
    assert BundledScores.from_dict(json.loads(downloads[SCORES_FILE])) == read_scores(seven_models)


def test_home_shows_no_seven_emotion_table_without_a_seven_emotion_model(seven_models, seven_scores):
    entries, *_ = seven_scores
    write_manifest(entries[:1])
    at = _home()
    assert [list(d.value["model"]) for d in at.dataframe if "kind" in d.value.columns] == [[BUNDLED_AU_MODEL]]
    assert not any("Seven emotions" in m for m in texts(at.markdown))
    assert not any("Also predicting fear" in c or "73.3 %" in c for c in texts(at.caption))


def test_home_says_not_measured_for_a_seven_emotion_model_without_its_seven_score(seven_models):
    (seven_models / SEVEN_SCORES_FILE).unlink()
    at = _home()
    six_table, seven_table = (d.value.set_index("model") for d in at.dataframe if "kind" in d.value.columns)
    assert CI_TEXT.match(six_table.loc[SEVEN_CNN, "accuracy (95 % CI)"])  # its six-emotion score stands
    assert seven_table.loc[SEVEN_CNN, "accuracy (95 % CI)"] == NOT_MEASURED
    warning = " ".join(texts(at.warning))
    assert f"Not measured on the seven-emotion images: {SEVEN_CNN}" in warning
    # retrained: neither of its scores belongs to the file any more
    entries = read_manifest()
    entries[1].sha256 = "0" * 64
    write_manifest(entries)
    at = _home()
    six_table, seven_table = (d.value.set_index("model") for d in at.dataframe if "kind" in d.value.columns)
    assert six_table.loc[SEVEN_CNN, "accuracy (95 % CI)"] == NOT_MEASURED
    assert seven_table.loc[SEVEN_CNN, "accuracy (95 % CI)"] == NOT_MEASURED
    assert CI_TEXT.match(six_table.loc[BUNDLED_AU_MODEL, "accuracy (95 % CI)"])


def test_a_seven_emotion_scores_file_of_other_classes_is_refused_in_one_line(seven_models):
    from fer_core.errors import ModelFileError

    shutil.copy(seven_models / SCORES_FILE, seven_models / SEVEN_SCORES_FILE)  # six emotions under the seven name
    with pytest.raises(ModelFileError, match="expected angry, disgust, fear"):
        read_scores(seven_models, SEVEN_EMOTIONS)
    at = _home()
    assert any(SEVEN_SCORES_FILE in w and "\n" not in w for w in texts(at.warning))
    seven_table = [d.value for d in at.dataframe if "kind" in d.value.columns][1]
    assert list(seven_table["accuracy (95 % CI)"]) == [NOT_MEASURED]


def test_korean_home_with_the_seven_emotion_table_has_no_english_left(seven_models):
    names = tuple(e.name for e in read_manifest())
    at = _home("ko")
    assert english_left(page_texts(at), names) == []
    captions = texts(at.caption)
    assert any("두려움 2" in c for c in captions) and any("74.1 %" in c for c in captions)
    tables = [d.value for d in at.dataframe if "종류" in d.value.columns]
    assert list(tables[1]["모델"]) == [SEVEN_CNN] and list(tables[1]["val로도 선택됨"]) == ["아니요"]


# -- Korean -----------------------------------------------------------------------------------
def test_korean_home_has_no_english_left(shipped_models, monkeypatch, tmp_path):
    names = tuple(e.name for e in read_manifest())
    at = _home("ko")
    shown = page_texts(at)
    assert english_left(shown, names) == []
    assert texts(at.title) == ["설명 가능한 얼굴 감정 워크벤치"]
    table = at.dataframe[0].value
    assert list(table.columns[:3]) == ["모델", "종류", "정확도 (95 % 신뢰구간)"]
    assert set(table["val로도 선택됨"]) <= {"예", "바탕 신경망(몸통)만", "아니요", "기록 없음"}
    assert any("화남 467" in c for c in texts(at.caption))
    labels = [e.proto.label for e in at.get("page_link")]
    assert labels[0].startswith("1. 데이터 살펴보기")
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    without_images = _home("ko")
    assert english_left(page_texts(without_images), names) == []
    assert any("이미지 데이터셋이 없습니다" in i for i in texts(without_images.info))
    # the English page is still English
    english = _home("en")
    assert texts(english.title) == ["Explainable facial-emotion workbench"]
    assert english_left(page_texts(english), names)
    # what a prediction is, first (an affective scientist's review: "recognition" of felt emotion claimed
    # nowhere, the label said to be annotators', nothing validated on children)
    limits = texts(english.info)[0]
    assert "not a reading of what the person feels" in limits and "validated on children" in limits
    assert "어린이 얼굴로 검증되지 않았습니다" in texts(at.info)[0]


def test_korean_explorer_has_no_english_left(shipped_models, fer_val):
    at = AppTest.from_file(EXPLORER)
    at.query_params["lang"] = "ko"
    run_app(at, T)
    at.selectbox[0].set_value("val")
    run_app(at, T)
    assert english_left(page_texts(at)) == []
    assert [c["layout"]["title"]["text"] for c in charts(at)] == [
        "감정별 이미지 수", "감정별 AU 강도", "감정별 평균 AU 프로필"]
    assert any(m.startswith("**행복**") for m in texts(at.markdown))
    assert list(at.dataframe[0].value.columns[:3]) == ["감정", "이미지 수", "비율"]
    assert json.loads(at.dataframe[0].proto.columns)["이미지 수"]["type_config"]["format"] == "localized"  # 3,093
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    run_app(at, T)
    assert english_left(page_texts(at)) == []
    assert at.radio(key="explorer_source").options == [
        "FER2013 분할 (데이터 폴더)", "이 컴퓨터의 폴더", "이미지 zip 올리기", "AU 표 (CSV)"]
    at.radio(key="explorer_source").set_value("A folder on this machine")
    run_app(at, T)
    assert english_left(page_texts(at)) == []


def test_korean_explorer_without_datasets_and_english_explorer(shipped_models, monkeypatch, tmp_path, downloads):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    at = AppTest.from_file(EXPLORER)
    at.query_params["lang"] = "ko"
    run_app(at, T)
    assert english_left(page_texts(at)) == []
    assert any("FER2013 이미지가 없습니다" in w for w in texts(at.warning))
    english = run_app(AppTest.from_file(EXPLORER), T)
    english.radio(key="explorer_source").set_value("AU table (CSV)")
    run_app(english, T)
    assert english_left(page_texts(english))  # still English
    assert texts(english.title) == ["Dataset explorer"]
    balance = pd.read_csv(io.BytesIO(downloads["class_balance.csv"]))
    assert list(balance.columns) == ["emotion", "images", "percent", "faces found percent"]
    assert balance["images"].sum() > 20000 and "disgust" in set(balance["emotion"])
    # numbers, as the percent beside it (it was text such as "99%")
    assert balance["faces found percent"].dtype == float and balance["faces found percent"].between(90, 100).all()
    means = pd.read_csv(io.BytesIO(downloads["mean_au_profile.csv"]), index_col=0)
    assert "happy" in means.index and means.shape[1] == 17


def test_a_dashboard_whose_code_changed_since_it_started_says_to_restart(shipped_models, monkeypatch):
    """A git pull under a running server: the pages imported new names from the old, still loaded
    modules and failed for everyone with Streamlit's redacted error. Now one line says to restart."""
    from ui import freshness

    at = run_app(AppTest.from_file(HOME), T)
    assert not at.error and texts(at.title)
    stamps = list(freshness.LOADED)
    stamps[0] = (stamps[0][0], stamps[0][1] - 1, stamps[0][2])  # a file the server loaded, since changed
    monkeypatch.setattr(freshness, "LOADED", tuple(stamps))
    at = run_app(AppTest.from_file(HOME), T)
    assert [e.value for e in at.error] == [freshness.RESTART] and not texts(at.title)
    # the update that brings this check along: the server imported the old code before the check
    # existed, so its first stamps are already the new files'; they are newer than the server itself
    monkeypatch.setattr(freshness, "LOADED", freshness.code_stamp())
    assert not freshness.code_changed()
    monkeypatch.setattr(freshness, "STARTED", min(m for _, m, _ in freshness.LOADED) / 1e9 - 60)
    at = run_app(AppTest.from_file(HOME), T)
    assert [e.value for e in at.error] == [freshness.RESTART]
    # a checkout dated in the future (a clock ahead where it was copied from) is no update: a restart
    # could not clear it
    import time

    future = tuple((f, int((time.time() + 600) * 1e9), size) for f, _, size in freshness.LOADED)
    monkeypatch.setattr(freshness, "code_stamp", lambda: future)
    monkeypatch.setattr(freshness, "LOADED", future)
    monkeypatch.setattr(freshness, "STARTED", time.time())
    assert not freshness.code_changed()


def test_home_leaves_out_a_mistyped_manifest_entry_and_lists_the_rest(shipped_models):
    """A model author added one entry by hand without its "kind": Home (and every page listing
    models) showed only that line, and no model at all."""
    entries = json.loads((shipped_models / "manifest.json").read_text())
    (shipped_models / "manifest.json").write_text(json.dumps(entries + [{"name": "mine", "path": "models/mine.keras"}]))
    at = _home()
    assert not at.exception and not at.error
    warnings = texts(at.warning)
    assert any("Left out of the model lists" in w and "has no 'kind'" in w for w in warnings)
    listed = set(at.dataframe[0].value["model"])
    assert {"au-logreg-fer2013", "cnn-fer2013"} <= listed and "mine" not in listed
