"""Every dashboard page under Streamlit's AppTest: it loads, its widgets exist, real work happens
(training on the bundled AU table, MediaPipe on a real face), and failures are readable lines."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import charts, plotly_values, run_app, texts
from conftest import BUNDLED_AU_MODEL, copy_fer_sample
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core import config
from fer_core.au_table import au_label
from fer_core.manifest import ModelEntry, read_manifest, register, write_manifest

ROOT = config.REPO_ROOT
HOME = str(ROOT / "app.py")
EXPLORER = str(ROOT / "pages" / "1_Dataset_explorer.py")
AU_PAGE = str(ROOT / "pages" / "2_AU_model.py")
TRY_IT = str(ROOT / "pages" / "3_Try_it.py")
BUNDLED = BUNDLED_AU_MODEL
EXTRACT = "Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)"
T = 90  # seconds per script run: the first Try-it run starts MediaPipe, training fits 40 models


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def jpeg(astronaut) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _run(at: AppTest, timeout: float = T) -> AppTest:
    return run_app(at, timeout)


_texts, _charts = texts, charts


# -- home -------------------------------------------------------------------------------------
def test_home_lists_models_data_and_pages(models_dir):
    at = _run(AppTest.from_file(HOME))
    assert "Explainable facial-emotion workbench" in _texts(at.title)
    table = at.dataframe[0].value
    assert BUNDLED in list(table["model"])
    row = table[table["model"] == BUNDLED].iloc[0]  # no scores file in this models folder: not measured
    assert row["accuracy (95 % CI)"].startswith("not measured") and row["recorded at training"].endswith(")")
    links = [e.proto.label for e in at.get("page_link")]
    assert links[3:] == ["Dataset explorer", "AU model", "Try it", "CNN", "Teachable Machine", "Compare", "Masks"]
    assert any("derived data" in m for m in _texts(at.markdown))


def test_home_starts_without_tensorflow_or_mediapipe():
    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file('app.py').run(timeout=30); "
            "assert not at.exception; heavy = [m for m in ('tensorflow', 'keras', 'mediapipe', 'sklearn') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_home_starts_try_its_photo_worker_in_the_background():
    """After Home has drawn, Try it's MediaPipe worker is already starting (a process of its own),
    so the first photo there does not wait for it; the server itself still loads no MediaPipe."""
    code = ("import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file('app.py').run(timeout=30); "
            "assert not at.exception; from fer_core.measure.workers import _pools; pool = _pools.get(('photo', 1)); "
            "alive = pool is not None and any(w.process.is_alive() for w in pool._workers); "
            "print(alive, 'mediapipe' in sys.modules); sys.exit(0 if alive and 'mediapipe' not in sys.modules else 1)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]


def test_home_without_datasets_says_where_images_go(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    at = _run(AppTest.from_file(HOME))
    info = " ".join(_texts(at.info))
    assert "No image dataset" in info and "FER_DATA_DIR" in info and "<emotion>" in info


def test_broken_manifest_is_a_readable_error(models_dir):
    (models_dir / "manifest.json").write_text("{not json")
    at = _run(AppTest.from_file(HOME))
    assert any("manifest is not valid JSON" in e for e in _texts(at.error))


def test_unexpected_exceptions_become_one_line_errors(models_dir, monkeypatch):
    import ui.common

    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(ui.common, "manifest_entries", boom)
    at = _run(AppTest.from_file(TRY_IT))
    assert any("Unexpected error (RuntimeError: boom)" in e for e in _texts(at.error))


# -- dataset explorer -------------------------------------------------------------------------
def test_explorer_bundled_au_table_shows_balance_and_au_plots(models_dir):
    at = _run(AppTest.from_file(EXPLORER))
    assert at.radio(key="explorer_source").options[:3] == [
        "FER2013 split (data folder)", "A folder on this machine", "Upload a zip of images"]
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    _run(at)
    assert at.selectbox(key="explorer_table").value == "fer2013_train_au.csv.gz"
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Images"].replace(",", "")) > 20000 and metrics["Emotions"] == "7"
    assert float(metrics["Imbalance ratio (largest / smallest)"]) > 5  # disgust is rare in FER2013
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert titles == ["Images per emotion", "AU intensity per emotion", "Mean AU profile per emotion"]
    # the table's name in code font, not escaped to literal backticks
    assert any("`data/fer2013_train_au.csv.gz`" in c.value and "\\`" not in c.value for c in at.caption)
    box = _charts(at)[1]
    assert "AU12 lip corner puller" in box["data"][0]["x"]
    # a teacher would have taught "a nose wrinkle means happy" from the mean profile of these AUs
    assert any(c.value.startswith("Read these averages with care") and "AU09 nose wrinkler (r" in c.value
               for c in at.caption)


def test_explorer_gives_a_new_tables_emotions_their_default(models_dir, study_table):
    """Streamlit kept the emotions chosen for one table, cut to the next table's: after the study's
    six-emotion table, FER2013's fear started unselected (and its faces were left out unasked)."""
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    _run(at)
    at.selectbox(key="explorer_table").set_value(":study")
    _run(at)
    assert "fear" not in at.multiselect(key="explorer_classes").value
    assert not any(c.value.startswith("Read these averages with care") for c in at.caption)  # OpenFace's own AUs
    at.selectbox(key="explorer_table").set_value("fer2013_val_au.csv.gz")
    _run(at)
    assert "fear" in at.multiselect(key="explorer_classes").value
    at.multiselect(key="explorer_classes").set_value(["happy", "sad"])
    _run(at)
    assert at.multiselect(key="explorer_classes").value == ["happy", "sad"]  # one's own choice stays


def test_explorer_fer_split_shows_sample_images(models_dir, fer_val):
    at = AppTest.from_file(EXPLORER)
    _run(at)
    at.selectbox[0].set_value("val")
    _run(at)
    assert len(at.image) >= 6  # one row of thumbnails per emotion
    assert any(m.startswith("**happy**") for m in _texts(at.markdown))
    assert any("do not print, share or put them in teaching material" in c for c in _texts(at.caption))
    assert len(_charts(at)) == 3  # balance + AU plots from data/fer2013_val_au.csv.gz
    # the counts are of files by name: a damaged one counts until it is read, and the page says so
    assert any(c.startswith("Image files are counted by their names, not opened") for c in _texts(at.caption))


def test_explorer_without_datasets_explains_the_layout(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    at = _run(AppTest.from_file(EXPLORER))
    warning = " ".join(_texts(at.warning))
    assert "No FER2013 images" in warning and "<emotion>/*.jpg" in warning


def test_explorer_missing_folder_and_empty_folder_are_errors(models_dir, tmp_path):
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("A folder on this machine")
    _run(at)
    at.text_input[0].set_value(str(tmp_path / "does-not-exist"))
    _run(at)
    assert any("does not exist" in e for e in _texts(at.error))
    (tmp_path / "empty").mkdir()
    at.text_input[0].set_value(str(tmp_path / "empty"))
    _run(at)
    assert any("no images found" in e for e in _texts(at.error))


def test_explorer_says_what_it_does_not_read_from_a_folder(models_dir, tmp_path):
    """A folder holding happy/ and "Sad Faces/" showed the happy images as the whole dataset; what
    is passed over is now said above it, and a folder of nothing readable says why."""
    for folder in ("happy", "Sad Faces"):
        (tmp_path / "set" / folder).mkdir(parents=True)
        Image.new("L", (48, 48), 128).save(tmp_path / "set" / folder / "a.png")
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("A folder on this machine")
    _run(at)
    at.text_input[0].set_value(str(tmp_path / "set"))
    _run(at)
    warned = [w for w in _texts(at.warning) if w.startswith("Not read from this folder (1)")]
    assert len(warned) == 1 and "Sad Faces/: a folder not named after an emotion" in warned[0], _texts(at.warning)
    (tmp_path / "set" / "happy").rename(tmp_path / "happy")
    (tmp_path / "set").rename(tmp_path / "only sad")  # another path: the listing is not the cached one
    at.text_input[0].set_value(str(tmp_path / "only sad"))
    _run(at)
    assert any("no readable images found. Sad Faces/: a folder not named" in e for e in _texts(at.error)), _texts(at.error)
    # the layout advice is Markdown shown as written, not with its backticks escaped into the text
    [error] = [e for e in _texts(at.error) if "no readable images found" in e]
    assert "`<folder>/<emotion>/*.jpg`" in error and "\\`" not in error, error


def test_explorer_uploaded_zip_and_a_bad_zip(models_dir, astronaut):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for emotion, n in (("happy", 3), ("sad", 1)):
            for i in range(n):
                crop = Image.fromarray(astronaut[40 + i:240 + i, 150:350]).convert("L").resize((48, 48))
                out = io.BytesIO()
                crop.save(out, format="JPEG")
                zf.writestr(f"mydata/{emotion}/{emotion}{i}.jpg", out.getvalue())
        zf.writestr("mydata/readme.txt", "not an image")
        zf.writestr("mydata/happy/broken.jpg", "not a jpeg")
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("Upload a zip of images")
    _run(at)
    at.file_uploader(key="explorer_zip").set_value(("mydata.zip", buf.getvalue(), "application/zip"))
    _run(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "5" and metrics["Imbalance ratio (largest / smallest)"] == "4.0"
    assert len(at.image) == 2
    # the broken sample is named within the zip, not by the server's temporary folder
    [warned] = [w for w in _texts(at.warning) if "could not be read" in w]
    assert "happy/broken.jpg" in warned and "/tmp" not in warned and "fer_zip" not in warned, warned
    at.file_uploader(key="explorer_zip").set_value(("broken.zip", b"PK not really", "application/zip"))
    _run(at)
    assert any("not a zip file" in e for e in _texts(at.error))


def test_explorer_csv_without_au_columns_is_an_error(models_dir):
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    _run(at)
    at.selectbox(key="explorer_table").set_value("Upload a CSV…")
    _run(at)
    at.file_uploader(key="explorer_csv").set_value(("scores.csv", b"name,score\na,1\n", "text/csv"))
    _run(at)
    assert any("missing all 17 AU intensity columns" in e for e in _texts(at.error))


def test_explorer_counts_an_extracted_tables_passed_over_folder_apart(models_dir):
    """An extracted table has a row for each folder its extraction passed over ("Sad Faces/"): the
    Explorer counted it as an image without a measured face. Contempt's faces are an emotion of
    their own there (CK+ and AffectNet label it), not unlabelled."""
    import pandas as pd
    from test_au_model import synthetic_table

    from fer_core.images import NOT_EMOTION_FOLDER, VIDEO_IN_FOLDER

    table = synthetic_table(n_per_class=5, classes=("happy", "sad", "contempt"))
    folder = {"file": "Sad Faces/", "face": 0, "label": None, "success": 0, "reason": NOT_EMOTION_FOLDER}
    clip = {"file": "clip.mp4", "face": 0, "label": None, "success": 0, "reason": VIDEO_IN_FOLDER}  # nor a video
    data = pd.concat([table, pd.DataFrame([folder, clip])], ignore_index=True).to_csv(index=False).encode()
    at = _run(AppTest.from_file(EXPLORER))
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    _run(at)
    at.selectbox(key="explorer_table").set_value("Upload a CSV…")
    _run(at)
    at.file_uploader(key="explorer_csv").set_value(("extracted_au.csv", data, "text/csv"))
    _run(at)
    assert not at.error, _texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "15" and metrics["Emotions"] == "3"
    assert any("Not read from this folder (2): Sad Faces/: a folder not named" in w and "clip.mp4: a video" in w
               for w in _texts(at.warning)), _texts(at.warning)
    assert not any("have no measured face" in c for c in _texts(at.caption))
    assert at.multiselect(key="explorer_classes").value == ["happy", "sad", "contempt"]


# -- AU model ---------------------------------------------------------------------------------
def test_au_model_trains_on_bundled_table_shows_heatmaps_and_saves(models_dir):
    at = _run(AppTest.from_file(HOME))
    at.switch_page("pages/2_AU_model.py")
    _run(at)
    assert at.radio(key="au_source").value == "Bundled FER2013 AU table"
    assert at.multiselect(key="au_classes").value == ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    assert at.radio(key="au_kind").options == [
        "Logistic regression (explainable, the default)",
        "Additive glass-box (EBM: a shape function per AU, a few AU pairs; minutes)",
        "MLP 300-200-100-50 (the original study's network)"]
    at.button(key="au_train_button").click()
    _run(at, timeout=240)
    model = at.session_state["au_train"]["model"]
    assert model.kind == "au-logreg" and model.weights[0].shape == (6, 17)
    headers = [h.value for h in at.header]  # the result right under its button, before the table's emotions
    assert headers.index("Train") + 1 == headers.index("Result") < headers.index("Emotions of this table's faces")
    metrics = {m.label: m.value for m in at.metric}
    assert 0.4 < float(metrics["Held-out accuracy"].rstrip("%")) / 100 < 0.9
    charts = {c["layout"]["title"]["text"]: c for c in _charts(at)}
    coef = charts["How each AU weighs on each emotion: AU × emotion coefficients"]["data"][0]
    assert "AU12 lip corner puller" in coef["y"] and coef["x"] == list(model.classes)
    assert any(t.startswith("Confusion matrix") for t in charts)
    assert "Accuracy per emotion (recall)" in charts
    # a setting changed after training: the result says it is of the settings before
    assert not any("other emotions or settings" in i for i in _texts(at.info))
    at.checkbox(key="au_balanced").check()
    _run(at)
    assert any("trained with other emotions or settings than those chosen above" in i for i in _texts(at.info))
    at.checkbox(key="au_balanced").uncheck()
    _run(at)
    assert not any("other emotions or settings" in i for i in _texts(at.info))

    at.text_input(key="au_save_name").set_value("../../etc/evil")
    at.button(key="au_save").click()
    _run(at)
    assert any("is not allowed" in e for e in _texts(at.error))
    at.text_input(key="au_save_name").set_value(BUNDLED)
    at.button(key="au_save").click()
    _run(at)
    assert any("already exists" in e for e in _texts(at.error))
    assert len(at.session_state["_unsaved_models"]) == 1  # Compare offers it unsaved
    at.text_input(key="au_save_name").set_value("au-logreg-test")
    at.button(key="au_save").click()
    _run(at)
    assert any("Saved as **au-logreg-test**" in s for s in _texts(at.success))
    assert not at.session_state["_unsaved_models"]  # saved: not listed again beside it as "(not saved)"
    assert (models_dir / "au-logreg-test.json").is_file()
    entry = next(e for e in read_manifest(models_dir) if e.name == "au-logreg-test")
    assert entry.origin == "dashboard" and entry.sha256

    # it now appears everywhere else, and the trained result survives a page switch
    at.switch_page("app.py")
    _run(at)
    assert "au-logreg-test" in list(at.dataframe[0].value["model"])
    at.switch_page("pages/2_AU_model.py")
    _run(at)
    assert at.session_state["au_train"]["model"] is model and any("Saved as" in s for s in _texts(at.success))
    at.switch_page("pages/3_Try_it.py")
    _run(at)
    assert at.selectbox(key="try_model").value == "au-logreg-test"  # the model just made is the one tried


def test_au_model_inspects_the_bundled_model(models_dir):
    at = _run(AppTest.from_file(AU_PAGE))
    assert at.selectbox(key="au_inspect").value == BUNDLED
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert "How each AU weighs on each emotion: AU × emotion coefficients" in titles
    # it learned from the embedded AUs: the weights come with which of them do not follow OpenFace's
    caveat = next(c for c in _texts(at.caption) if c.startswith("This model learned from the embedded extractor"))
    assert "AU15 lip corner depressor (r 0.20)" in caveat and "AU12" not in caveat


def test_choices_survive_a_visit_to_another_page(models_dir, tmp_path):
    """Streamlit forgets a widget's value on a run that does not draw it: a researcher's source,
    folder, split and mask choices were back at their defaults after a look at another page."""
    at = _run(AppTest.from_file(HOME))
    at.switch_page("pages/1_Dataset_explorer.py")
    _run(at)
    at.radio(key="explorer_source").set_value("A folder on this machine")
    _run(at)
    at.text_input(key="explorer_folder").set_value(str(tmp_path))
    _run(at)
    at.switch_page("pages/2_AU_model.py")
    _run(at)
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.switch_page("pages/7_Masks.py")
    _run(at)
    at.selectbox(key="mask_style").set_value("cloth")
    at.radio(key="mask_source").set_value("A folder on this machine")
    _run(at)
    at.text_input(key="mask_folder").set_value(str(tmp_path))
    _run(at)
    at.switch_page("app.py")
    _run(at)

    at.switch_page("pages/1_Dataset_explorer.py")
    _run(at)
    assert at.radio(key="explorer_source").value == "A folder on this machine"
    assert at.text_input(key="explorer_folder").value == str(tmp_path)
    at.switch_page("pages/2_AU_model.py")
    _run(at)
    assert at.radio(key="au_source").value == "Import an OpenFace CSV"
    at.switch_page("pages/7_Masks.py")
    _run(at)
    assert at.selectbox(key="mask_style").value == "cloth"
    assert at.radio(key="mask_source").value == "A folder on this machine"
    assert at.text_input(key="mask_folder").value == str(tmp_path)
    # a choice drawn only for one source is kept while another source is shown
    at.radio(key="mask_source").set_value("60-image test set (drawn from a split)")
    _run(at)
    at.radio(key="mask_source").set_value("A folder on this machine")
    _run(at)
    assert at.text_input(key="mask_folder").value == str(tmp_path)
    assert not at.exception


def test_au_model_openface_csv_without_au_columns_is_an_error(models_dir):
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    at.file_uploader(key="au_csv").set_value(("faces.csv", b"face,confidence\n0,0.9\n", "text/csv"))
    _run(at)
    assert any("missing all 17 AU intensity columns" in e for e in _texts(at.error))
    assert not [b for b in at.button if b.key == "au_train_button"]


def test_au_model_page_predicts_every_row_of_an_unlabelled_video_table(models_dir, recorded_downloads):
    """A video's AU table (no labels, so nothing to train): every row through a saved AU model,
    drawn over time and downloaded, a frame without a face kept in its place; as the CLI's
    predict --au-table, which the page could not do."""
    import pandas as pd

    from fer_core import au_table

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").iloc[:12].reset_index(drop=True)
    rows = rows.assign(file="clip.mp4", label=None, time_s=[i / 10 for i in range(12)])
    rows.loc[5, ["success", "reason"]] = (0, "no face found")
    data = au_table.normalise(rows).to_csv(index=False).encode()
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    at.file_uploader(key="au_csv").set_value(("clip_au.csv", data, "text/csv"))
    _run(at)
    assert not [b for b in at.button if b.key == "au_train_button"]  # nothing labelled to train on
    at.selectbox(key="au_apply_model").set_value(BUNDLED)
    at.button(key="au_apply_button").click()
    _run(at)
    assert not at.error
    _, file_name, csv = recorded_downloads["au_apply_download"]
    answers = pd.read_csv(io.BytesIO(csv))
    assert file_name == f"clip_au_{BUNDLED}_emotions.csv" and len(answers) == 12
    assert list(answers["time_s"]) == [i / 10 for i in range(12)]
    assert pd.isna(answers.loc[5, "emotion"]) and answers.loc[5, "reason"] == "no face found"
    assert list(answers["emotion"].notna()) == list(rows["success"].eq(1))
    found = int(rows["success"].eq(1).sum())
    assert any(c.startswith(f"12 rows, {found} faces judged") for c in _texts(at.caption))
    assert any(c["layout"]["title"]["text"].startswith("Emotion probabilities over time") for c in _charts(at))


def _applied_to_upload(name: str, data: bytes) -> AppTest:
    """The AU model page with the AU table ``data`` uploaded and the bundled model applied to it."""
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    at.file_uploader(key="au_csv").set_value((name, data, "text/csv"))
    _run(at)
    at.selectbox(key="au_apply_model").set_value(BUNDLED)
    at.button(key="au_apply_button").click()
    return _run(at)


def test_au_model_page_scores_a_model_on_a_labelled_tables_labels(models_dir, recorded_downloads, tmp_path, capsys):
    """Applying a model to a labelled table gave only its answers' counts: its accuracy on the
    table was evaluate --au-table's alone (a reviewer's). The page now scores it as that command
    does, draws the per-emotion bars and the confusion matrix, and gives each as a file."""
    import json

    import pandas as pd

    from fer_core import au_table
    from fer_core.cli import main

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").sample(200, random_state=1).reset_index(drop=True)
    path = tmp_path / "labelled_au.csv"
    au_table.write(rows, path)
    assert main(["evaluate", "--model", BUNDLED, "--au-table", str(path), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    at = _applied_to_upload("labelled_au.csv", path.read_bytes())
    assert not at.error
    page = json.loads(recorded_downloads["au_applied_scores"][2])
    assert (page["n"], page["accuracy"], page["confusion"]) == (cli["n"], cli["accuracy"], cli["confusion"])
    assert {m.label: m.value for m in at.metric}["Accuracy on the table's labels"] == f"{cli['accuracy']:.1%}"
    per_emotion = pd.read_csv(io.BytesIO(recorded_downloads["au_applied_per_emotion"][2]), encoding="utf-8-sig")
    assert list(per_emotion.columns) == ["emotion", "precision", "recall", "f1", "support"]
    assert per_emotion["support"].sum() == cli["n"]
    confusion = pd.read_csv(io.BytesIO(recorded_downloads["au_applied_confusion"][2]), encoding="utf-8-sig")
    assert confusion["count"].sum() == cli["n"]
    assert any(c["layout"]["title"]["text"].startswith("Confusion matrix") for c in _charts(at))


def test_au_model_page_keeps_the_answers_when_the_labels_cannot_score_them(models_dir, recorded_downloads):
    """A table labelled only with an emotion the model lacks (fear for a six-emotion model): the
    answers stand, and the page says why they were not scored (an error had lost them)."""
    from fer_core import au_table

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").iloc[:8].reset_index(drop=True).assign(label="fear")
    at = _applied_to_upload("fear_au.csv", au_table.normalise(rows).to_csv(index=False).encode())
    assert not at.error and "au_apply_download" in recorded_downloads
    assert f"Not scored on the table's labels: {BUNDLED} predicts none of the table's labels (fear)" in _texts(at.caption)


def test_au_model_page_draws_one_video_at_a_time_of_a_folders_table(models_dir):
    """extract FOLDER puts several videos in one table: their frames were drawn as one line that
    ran to the end of one video and jumped back to 0 s for the next. Now a video is picked."""
    from fer_core import au_table

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").iloc[:12].reset_index(drop=True)
    rows = rows.assign(file=["happy/a.mp4"] * 6 + ["sad/b.mp4"] * 5 + ["happy/still.jpg"], label=None,
                       time_s=[i / 10 for i in range(6)] + [i / 10 for i in range(5)] + [None])
    at = _applied_to_upload("folder_au.csv", au_table.normalise(rows).to_csv(index=False).encode())
    def over_time() -> dict:
        (chart,) = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith("Emotion probabilities over time")]
        return chart

    assert not at.error and at.selectbox(key="au_applied_video").options == ["happy/a.mp4", "sad/b.mp4"]
    assert all(list(plotly_values(trace["x"])) == [i / 10 for i in range(6)] for trace in over_time()["data"])
    at.selectbox(key="au_applied_video").set_value("sad/b.mp4")
    _run(at)
    assert all(list(plotly_values(trace["x"])) == [i / 10 for i in range(5)] for trace in over_time()["data"])


def test_au_model_imports_an_openface_table_and_trains_the_mlp(models_dir):
    from fer_core.au_table import AU_COLUMNS

    cols = ",".join(("label",) + AU_COLUMNS)
    rng = np.random.default_rng(0)
    lines = [cols]
    for i in range(120):
        code = i % 3  # the study's codes: 0 angry, 1 disgust, 2 happy
        aus = rng.uniform(0, 1, 17)
        aus[2 if code == 0 else 6 if code == 1 else 8] += 3
        lines.append(f"{code}," + ",".join(f"{v:.3f}" for v in aus))
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    at.file_uploader(key="au_csv").set_value(("merged.csv", "\n".join(lines).encode(), "text/csv"))
    _run(at)
    assert at.multiselect(key="au_classes").value == ["angry", "disgust", "happy"]
    at.radio(key="au_kind").set_value("au-mlp")  # the study's MLP, on the study's label codes
    at.button(key="au_train_button").click()
    _run(at, timeout=120)
    model = at.session_state["au_train"]["model"]
    assert model.kind == "au-mlp" and model.classes == ("angry", "disgust", "happy")
    assert any("MLP has no single weight" in i for i in _texts(at.info))
    assert any(t.startswith("Confusion matrix") for t in (c["layout"]["title"]["text"] for c in _charts(at)))


def test_au_model_page_says_how_a_table_of_videos_was_split(models_dir):
    """train-au says whether whole videos were held out (or that the score flatters); the page
    trained on a folder's table of frames said nothing about it."""
    from fer_core import au_table

    rng = np.random.default_rng(0)
    rows = []
    for v in range(12):
        face, label = rng.uniform(0, 4, len(au_table.AU_COLUMNS)), ("happy", "sad", "neutral")[v % 3]
        rows += [{"file": f"{label}/v{v:02d}.mp4", "face": 0, "label": label, "success": 1, "time_s": f / 10,
                  **dict(zip(au_table.AU_COLUMNS, face + rng.normal(0, 0.05, len(face))))} for f in range(12)]
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    data = au_table.normalise(au_table.from_rows(rows)).to_csv(index=False).encode()
    at.file_uploader(key="au_csv").set_value(("folder_au.csv", data, "text/csv"))
    _run(at)
    at.button(key="au_train_button").click()
    _run(at, timeout=120)
    assert any(c.startswith("Whole videos were held out: ") for c in _texts(at.caption)), _texts(at.caption)
    assert any(c.startswith("Each held-out video scored once ") for c in _texts(at.caption))


def test_au_model_on_a_fresh_clone_without_images(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value(EXTRACT)
    _run(at)
    assert at.text_input(key="au_folder").value == ""
    assert any("<emotion>/*.jpg" in i for i in _texts(at.info))
    at.text_input(key="au_folder").set_value(str(tmp_path / "nowhere"))
    _run(at)
    at.button(key="au_extract").click()
    _run(at)
    assert any("does not exist" in e for e in _texts(at.error))


def _extracted_whole(folder) -> AppTest:
    """The AU model page after extracting every image of ``folder`` with the embedded extractor."""
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value(EXTRACT)
    _run(at)
    at.text_input(key="au_folder").set_value(str(folder))
    at.number_input(key="au_per").set_value(0)
    at.button(key="au_extract").click()
    return _run(at, timeout=180)


def test_au_model_extraction_counts_a_skipped_folders_images_among_the_folders(models_dir, fer_val, tmp_path):
    """A folder not named after an emotion has a row of its own (with its reason): the summary said
    '2 faces measured in 3 of 2 images', then counted the folder as an image; it is said apart."""
    import shutil

    folder = copy_fer_sample(fer_val, tmp_path / "set", per_class=1, classes=("happy", "sad"))
    (folder / "Sad Faces").mkdir()
    shutil.copy(next((folder / "sad").glob("*.jpg")), folder / "Sad Faces" / "x.jpg")
    at = _extracted_whole(folder)
    assert any("2 faces measured in 2 of 2 images" in s for s in _texts(at.success)), _texts(at.success)
    assert any("Sad Faces/: a folder not named after an emotion" in w for w in _texts(at.warning)), _texts(at.warning)
    assert not any("without a measured face" in e.label for e in at.expander)


def test_au_model_extracts_a_folder_with_the_embedded_extractor(models_dir, fer_sample):
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value(EXTRACT)
    _run(at)
    assert at.button(key="au_cancel").label == "Cancel"
    assert at.radio(key="au_backend").value == "mediapipe"
    at.text_input(key="au_folder").set_value(str(fer_sample))
    at.number_input(key="au_per").set_value(0)
    at.button(key="au_extract").click()
    _run(at, timeout=180)
    assert any("23 faces measured in 23 of 24 images" in s for s in _texts(at.success)), _texts(at.success)
    table = at.session_state["au_tables"][str(fer_sample)]["table"]
    assert set(table["label"]) == {"angry", "disgust", "happy", "neutral", "sad", "surprise"}
    assert at.multiselect(key="au_classes").value  # ready to train
    # the explorer shows the AUs of the folder just extracted (it showed an unexpected error)
    explorer = AppTest.from_file(EXPLORER)
    explorer.session_state["au_tables"] = at.session_state["au_tables"]
    _run(explorer)
    explorer.radio(key="explorer_source").set_value("A folder on this machine")
    _run(explorer)
    explorer.text_input[0].set_value(str(fer_sample))
    _run(explorer)
    assert not _texts(explorer.error) and not explorer.exception
    assert [c["layout"]["title"]["text"] for c in _charts(explorer)][-2:] == [
        "AU intensity per emotion", "Mean AU profile per emotion"]


def test_au_model_page_extracts_large_face_crops_with_face_crops_on(models_dir, fer_val, tmp_path):
    """A folder of 320 px face crops (AffectNet-like): the photo search misses them ("no face"),
    extract --crops measures them, and the page had no such switch. Face crops measures them as
    crops, passes the folder's videos over (no frame rate asked), and keeps the table from the
    explorer, which measures a folder as photos."""
    from PIL import Image

    folder = tmp_path / "crops"
    for emotion, name in (("surprise", "PublicTest_13980595.jpg"), ("surprise", "PublicTest_1597600.jpg")):
        (folder / emotion).mkdir(parents=True, exist_ok=True)
        Image.open(fer_val / emotion / name).convert("RGB").resize((320, 320), Image.BICUBIC).save(folder / emotion / name)
    at = _extracted_whole(folder)
    assert any("0 faces measured in 0 of 2 images" in s for s in _texts(at.success)), _texts(at.success)
    hint = ("2 of the images without a face found are square or nearly square pictures of 160 px or more. If they "
            "are face crops, the face filling each, turn on **Face crops** above and run it again.")
    assert hint in _texts(at.info)
    assert at.select_slider(key="au_video_fps")  # videos measured: their rate is asked
    at.toggle(key="au_crops").set_value(True)
    _run(at)
    assert not [s for s in at.select_slider if s.key == "au_video_fps"]  # face crops pass videos over
    assert any("Press **Extract AUs**" in s for s in _texts(at.info)), _texts(at.info)  # another table to make
    at.button(key="au_extract").click()
    _run(at, timeout=180)
    assert any("2 faces measured in 2 of 2 images" in s for s in _texts(at.success)), _texts(at.success)
    crops = next(v["table"] for k, v in at.session_state["au_tables"].items() if k.endswith("|True"))
    assert (crops["success"] == 1).all() and crops["AU26_r"].notna().all()
    assert hint not in _texts(at.info)
    assert at.session_state["au_tables"][str(folder)]["table"]["success"].sum() == 0  # the explorer's: as photos


def test_au_model_docker_backend_says_why_it_is_unavailable(models_dir, monkeypatch, tmp_path):
    """No Docker engine runs here: the selector must say so, with the fix, and not offer to run."""
    from ui.common import forget_docker_status

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    forget_docker_status()  # the page keeps the engine's answer for 30 s: an earlier test's, for another engine
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value(EXTRACT)
    _run(at)
    at.text_input(key="au_folder").set_value(str(tmp_path))  # a folder: the choice shows without the datasets
    _run(at)
    at.radio(key="au_backend").set_value("openface-docker")
    _run(at)
    warnings = _texts(at.warning)
    assert any("Docker engine not reachable" in w for w in warnings), warnings
    assert at.button(key="au_extract").disabled
    assert not at.exception


# -- try it -----------------------------------------------------------------------------------
def test_try_it_upload_of_a_real_face_gives_an_explained_prediction(models_dir, jpeg):
    at = _run(AppTest.from_file(TRY_IT))
    assert at.selectbox(key="try_model").value == BUNDLED
    uploader = at.file_uploader(key="try_upload")
    assert uploader.accept_multiple_files and ".jpg" in uploader.allowed_type
    uploader.set_value(("astronaut.jpg", jpeg, "image/jpeg"))
    _run(at)
    predicted = [m for m in _texts(at.markdown) if m.startswith("#### Predicted: ")]
    assert predicted == ["#### Predicted: happy (" + predicted[0].split("(")[1]]  # she smiles
    assert any("mostly because of" in m and "AU12 lip corner puller" in m for m in _texts(at.markdown))
    assert len(at.image) == 1
    titles = [c["layout"]["title"]["text"] for c in _charts(at)]
    assert titles == ["AU model: probabilities", "AU intensities (orange: the reasons)"]
    aus_chart = _charts(at)[1]["data"][0]
    assert "AU06 cheek raiser" in aus_chart["y"]
    # one source of truth: the orange bars are exactly the AUs the sentence gives as reasons
    sentence = next(m for m in _texts(at.markdown) if "mostly because of" in m)
    orange = [name for name, colour in zip(aus_chart["y"], aus_chart["marker"]["color"]) if colour == "#ff7f0e"]
    assert orange and all(f"{name} (" in sentence for name in orange)
    named = [label for label in aus_chart["y"] if f"{label} (" in sentence.split(";")[0]]
    assert sorted(named) == sorted(orange)
    assert not at.error and not at.warning


def test_try_it_batch_reports_bad_files_and_keeps_the_rest(models_dir, jpeg):
    at = _run(AppTest.from_file(TRY_IT))
    blank = _png(Image.new("RGB", (320, 240), (128, 128, 128)))
    at.file_uploader(key="try_upload").set_value([
        ("corrupt.jpg", b"\xff\xd8\xff this is not really a jpeg", "image/jpeg"),
        ("blank.png", blank, "image/png"),
        ("astronaut.jpg", jpeg, "image/jpeg"),
    ])
    _run(at)
    errors, warnings = _texts(at.error), _texts(at.warning)
    assert len(errors) == 1 and errors[0].startswith("corrupt.jpg:") and "\n" not in errors[0]
    assert warnings == ["blank.png: no face: a blank picture, one colour"]  # a photo without a face: a warning
    assert any(m.startswith("#### Predicted: ") for m in _texts(at.markdown))


def test_try_it_camera_photo(models_dir, jpeg):
    at = _run(AppTest.from_file(TRY_IT))
    assert not at.camera_input
    at.toggle(key="try_camera_on").set_value(True)
    _run(at)
    at.camera_input(key="try_camera").set_value(("shot.jpg", jpeg, "image/jpeg"))
    _run(at)
    assert any(m.startswith("## camera photo") for m in _texts(at.markdown))
    assert any(m.startswith("#### Predicted: ") for m in _texts(at.markdown))


def test_try_it_results_survive_a_page_switch_without_recomputing(models_dir, jpeg):
    at = _run(AppTest.from_file(HOME))
    at.switch_page("pages/3_Try_it.py")
    _run(at)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg, "image/jpeg"))
    _run(at)
    first, _ = at.session_state["try_last"][0]
    at.switch_page("app.py")
    _run(at)
    at.switch_page("pages/3_Try_it.py")
    _run(at)
    assert at.session_state["try_last"][0][0] is first  # same object: not analysed again
    assert any(m.startswith("#### Predicted: ") for m in _texts(at.markdown))


def test_try_it_without_any_au_model_says_how_to_get_one(models_dir):
    write_manifest([], models_dir)
    at = _run(AppTest.from_file(TRY_IT))
    assert any("No AU model is available" in w for w in _texts(at.warning))


def test_try_it_shows_a_cnn_beside_the_au_model(models_dir, jpeg):
    """A real (tiny, untrained) Keras CNN registered like a trained one: its probabilities for the
    face crop appear next to the AU model's, loaded lazily on this page only."""
    pytest.importorskip("keras", reason="keras is not installed")
    from fer_core.predictors.cnn import build_cnn

    classes = ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    path = models_dir / "tiny_cnn.keras"
    build_cnn("tiny", len(classes), seed=0).save(path)
    path.with_suffix(".meta.json").write_text(json.dumps({"kind": "cnn", "classes": classes}))
    register(ModelEntry(name="tiny-cnn", kind="cnn", path=str(path), classes=tuple(classes)), models_dir)
    at = _run(AppTest.from_file(TRY_IT))
    assert at.multiselect(key="try_others").value == ["tiny-cnn"]
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg, "image/jpeg"))
    _run(at, timeout=240)
    assert any(m.startswith("#### Predicted: ") for m in _texts(at.markdown))
    line = next(m for m in _texts(at.markdown) if m.startswith("tiny-cnn (CNN): **"))
    assert line.split("**")[1] in classes
    assert "tiny-cnn" in [c["layout"]["title"]["text"] for c in _charts(at)]
    assert not at.error and not at.warning


# -- the UI helpers that need no Streamlit run ----------------------------------------------
def test_upload_limit_and_quiet_errors_are_configured():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert 1 <= cfg["server"]["maxUploadSize"] <= 200
    assert cfg["server"]["headless"] is True and cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["showErrorDetails"] == "none"


def test_model_names_are_validated():
    from fer_core.errors import FerError
    from fer_core.manifest import validate_model_name

    assert validate_model_name(" au-logreg_2 ", []) == "au-logreg_2"
    for bad in ("", "../x", "a/b", "x", "name.json", "-lead", "a" * 80):
        with pytest.raises(FerError):
            validate_model_name(bad, [])
    with pytest.raises(FerError, match="already exists"):
        validate_model_name("mine", [ModelEntry(name="mine", kind="au-logreg", path="models/mine.json", classes=())])


def test_zip_unpacking_refuses_paths_outside_the_temporary_folder(tmp_path):
    from fer_core.errors import DatasetError
    from fer_core.images import unpack_image_zip as extract_image_zip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("happy/ok.jpg", b"x")
        zf.writestr("../../evil.jpg", b"x")  # dot-paths are skipped
    root = extract_image_zip(buf.getvalue(), tmp_path / "out")
    assert sorted(p.name for p in root.rglob("*.jpg")) == ["ok.jpg"]
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("happy/ok.jpg")
        info.filename = str(tmp_path / "abs" / "evil.jpg")  # an absolute member name
        zf.writestr(info, b"x")
    with pytest.raises(DatasetError, match="unsafe path"):
        extract_image_zip(buf.getvalue(), tmp_path / "out3")
    assert not (tmp_path / "abs").exists()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", b"no images here")
    with pytest.raises(DatasetError, match="no images"):
        extract_image_zip(buf.getvalue(), tmp_path / "out2")


def test_face_crop_for_pixel_models():
    from fer_core.pipeline import face_crop

    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    crop = face_crop(rgb, (300, 100, 100, 120))
    assert crop.shape[0] == crop.shape[1] == 180  # 120 px face + 25% on each side, square
    small = np.zeros((48, 48, 3), dtype=np.uint8)
    assert face_crop(small, (5, 5, 30, 30)) is small  # FER crops are passed whole


def test_a_download_does_not_rerun_the_page():
    """A click on a download reran the page, which drops the files the page's other buttons serve
    on click: Compare's HTML report, clicked after a few CSVs, downloaded nothing (the server said
    "Deferred file ... not found"). Every download button of the dashboard is told to ignore clicks."""
    import ast

    rerunning = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "download_button"):
                on_click = next((k.value for k in node.keywords if k.arg == "on_click"), None)
                if not (isinstance(on_click, ast.Constant) and on_click.value == "ignore"):
                    rerunning.append(f"{path.name}:{node.lineno}")
    assert rerunning == []


def test_au_model_page_fits_a_model_on_the_aus_a_mask_leaves_visible(models_dir):
    """A researcher of masked faces fits a model on the upper face's AUs on the page (train-au
    --aus had no twin there), or on AUs of their own choosing; a GAM's AU pairs can be set."""
    at = _run(AppTest.from_file(HOME))
    at.switch_page("pages/2_AU_model.py")
    _run(at)
    assert at.radio(key="au_aus").value == "all" and not [n for n in at.number_input if n.key == "au_pairs"]
    at.radio(key="au_aus").set_value("chosen")
    _run(at)
    assert at.multiselect(key="au_aus_list").value == ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU45"]
    at.multiselect(key="au_aus_list").set_value([])
    at.button(key="au_train_button").click()
    _run(at)
    assert "pick at least one AU" in _texts(at.error) and "au_train" not in at.session_state
    at.radio(key="au_kind").set_value("au-gam")
    _run(at)
    assert at.number_input(key="au_pairs").value is None  # interpret's default unless a number is given
    at.radio(key="au_kind").set_value("au-logreg")
    at.radio(key="au_aus").set_value("upper")
    at.button(key="au_train_button").click()
    _run(at, timeout=240)
    model = at.session_state["au_train"]["model"]
    assert model.au_columns == ("AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU45_r")
    assert "This model reads 7 of the 17 AUs: AU01, AU02, AU04, AU05, AU06, AU07, AU45." in _texts(at.caption)
    rows = [len(c["data"][0]["y"]) for c in _charts(at) if c["layout"]["title"]["text"].startswith("How each AU weighs")]
    assert 7 in rows  # the trained model's coefficients (beside the inspected bundled model's 17)
    assert "--aus upper" in model.info["command"]
    # the embedded extractor's caveat names the AUs this model reads (it named mouth AUs it never reads)
    caveat = [c for c in _texts(at.caption) if c.startswith("This model learned from the embedded extractor")]
    assert any("AU04 brow lowerer (r 0.32)" in c and "AU09" not in c for c in caveat)
    # the AU list drawn once and kept is no setting of an "upper" fit: back to "upper", nothing changed
    at.radio(key="au_aus").set_value("chosen")
    _run(at)
    assert any("other emotions or settings" in i for i in _texts(at.info))
    at.radio(key="au_aus").set_value("upper")
    _run(at)
    assert not any("other emotions or settings" in i for i in _texts(at.info))


def test_au_model_page_draws_a_gams_pairwise_terms(models_dir):
    """A GAM's pairs were only named under its shape functions; the page draws each one chosen,
    for the emotion chosen, as a surface over the two AUs' intensities."""
    pytest.importorskip("interpret", reason="interpret-core is not installed")
    from test_au_model import synthetic_table

    from fer_core.predictors.au_gam import fit_au_gam
    from fer_core.predictors.registry import save_and_register

    gam = fit_au_gam(synthetic_table(30), interactions=2, outer_bags=2)
    save_and_register(gam, name="au-gam-pairs", kind="au-gam", classes=gam.classes, metrics=None, command="test",
                      models_dir=models_dir)
    at = _run(AppTest.from_file(AU_PAGE))
    at.selectbox(key="au_inspect").set_value("au-gam-pairs")
    _run(at)
    pairs = at.selectbox(key="saved_au-gam-pairs_gam_pair")
    assert pairs.options == [f"{au_label(a)} × {au_label(b)}" for a, b in gam.pairs]
    at.selectbox(key="saved_au-gam-pairs_gam_pair_emotion").set_value("sad")
    pairs.set_value(gam.pairs[1])
    _run(at)
    first, second = (au_label(c).split()[0] for c in gam.pairs[1])
    surface = next(c for c in _charts(at) if c["layout"]["title"]["text"].startswith(f"{first} × {second} together"))
    assert surface["data"][0]["type"] == "heatmap" and "for sad:" in surface["layout"]["title"]["text"]
    assert not at.exception


def test_au_model_page_scores_a_table_of_videos_once_per_video_as_evaluate_does(models_dir, recorded_downloads,
                                                                                 tmp_path, capsys):
    """A labelled table of video frames was scored on the page frame by frame: an interval far too
    narrow, no per-video score, and "train longer" said of a saved model (a reviewer's). The page
    now says what evaluate --au-table says: the near-copies note and each video scored once."""
    import json

    from fer_core import au_table
    from fer_core.cli import main

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz")
    frames = []
    for emotion, clips in (("happy", 3), ("sad", 2), ("surprise", 2)):
        faces = rows[rows["label"] == emotion].iloc[:clips * 6]
        for clip in range(clips):
            part = faces.iloc[clip * 6:(clip + 1) * 6].copy()
            part["file"] = f"{emotion}/clip{clip}.mp4"
            part["time_s"] = [0.5 * i for i in range(len(part))]
            frames.append(part)
    table = au_table.normalise(pd.concat(frames, ignore_index=True))
    path = tmp_path / "clips_au.csv"
    au_table.write(table, path)
    assert main(["evaluate", "--model", BUNDLED, "--au-table", str(path), "--json"]) == 0
    said = capsys.readouterr()
    cli = json.loads(said.out)
    assert cli["per_video"]["n"] == 7 and "frames of 7 videos" in cli["note"]
    at = _applied_to_upload("clips_au.csv", path.read_bytes())
    assert not at.error
    page = json.loads(recorded_downloads["au_applied_scores"][2])
    assert page["per_video"] == cli["per_video"] and page["note"] == cli["note"]
    assert cli["note"] in _texts(at.info)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy per video"] == f"{cli['per_video']['accuracy']:.1%}" and metrics["Videos scored"] == "7"
    assert not any("Train longer" in w for w in _texts(at.warning))  # a saved model is scored, not trained here
    # the per-video confusion matrix too, beside the per-frame one (and the inspected model's)
    assert sum(c["layout"]["title"]["text"].startswith("Confusion matrix") for c in _charts(at)) == 3
    # the note is read in the page's language, switched after the click too; the JSON stays English
    at.query_params["lang"] = "ko"
    _run(at)
    assert any(i.startswith("점수를 매긴 행 중 42개는 동영상 7개의 프레임입니다") for i in _texts(at.info))
    assert json.loads(recorded_downloads["au_applied_scores"][2])["note"] == cli["note"]


def test_au_model_page_counts_a_masked_tables_faces_on_the_aus_it_holds(models_dir, recorded_downloads):
    """A masked table (hidden AUs empty, masked = 1) was captioned "0 usable faces" on the page,
    which then trained an upper-face model on all of them (a FACS reviewer)."""
    from fer_core import au_table
    from fer_core.masks import HIDDEN_AUS

    rows = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").iloc[:60].reset_index(drop=True)
    rows[[f"{c}_r" for c in HIDDEN_AUS]] = np.nan
    rows["masked"] = 1
    at = _applied_to_upload("masked_au.csv", au_table.normalise(rows).to_csv(index=False).encode())
    usable = int(au_table.select(rows, columns=au_table.columns_with_values(rows)).n)
    assert usable > 50
    captions = _texts(at.caption)
    assert any(c.startswith(f"60 rows, {usable} usable faces with measured AUs") for c in captions)
    assert ("The table holds values of 7 of the 17 AUs (AU01, AU02, AU04, AU05, AU06, AU07, AU45): a model for it "
            "reads those") in " ".join(captions)


def test_au_model_page_takes_several_openface_csvs_and_a_zip_of_an_out_dir(models_dir):
    """FaceLandmarkImg writes one CSV per image, and the page took one file: a study's -out_dir
    could only come in through the CLI (an OpenFace researcher's review). Several CSVs, or a zip
    of the folder, are read as import-openface reads a folder: labels from emotion folders or
    emotion-prefixed names, a header-only CSV a face not found."""
    import zipfile

    from fer_core.au_table import AU_COLUMNS

    header = ", ".join(["face", "confidence", *AU_COLUMNS])

    def csv(value: float) -> bytes:
        return (header + "\n" + ", ".join(["0", "0.95", *[f"{value:.2f}"] * len(AU_COLUMNS)]) + "\n").encode()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("out_dir/happy/img1.csv", csv(2.0))
        zf.writestr("out_dir/sad/img2.csv", csv(1.0))
        zf.writestr("out_dir/sad/img3.csv", (header + "\n").encode())  # OpenFace found no face
        zf.writestr("out_dir/img1.jpg", b"not read")
    at = _run(AppTest.from_file(AU_PAGE))
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    _run(at)
    at.radio(key="au_openface").set_value("Upload a CSV")
    _run(at)
    at.file_uploader(key="au_csv").set_value([("out_dir.zip", buf.getvalue(), "application/zip"),
                                              ("angry004.csv", csv(3.0), "text/csv"),
                                              ("surprise005.csv", csv(4.0), "text/csv")])
    _run(at)
    assert not at.exception and not at.error, _texts(at.error)
    assert any(c.startswith("5 rows, 4 usable faces") for c in _texts(at.caption)), _texts(at.caption)
