"""Try it on a group photo: faces numbered left to right, the face table, the downloads (read back
from the bytes the page serves), "absent" AUs against a prediction, and the page in Korean."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import charts, english_left, page_texts, run_app, texts
from conftest import BUNDLED_AU_MODEL, SEVEN_CNN, seven_cnn_entry
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
TRY_IT = str(ROOT / "pages" / "3_Try_it.py")
T = 120  # the first analysis starts MediaPipe's worker process


@pytest.fixture(scope="session")
def group_png(group_photo) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(group_photo).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def served(monkeypatch) -> list:
    """The media stores AppTest runs use, so a test can read a download button's bytes."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stores: list = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint: str) -> None:
            super().__init__(endpoint)
            stores.append(self)

    class Managing(MediaFileManager):  # a deferred download is made by its manager, as a click makes it
        def __init__(self, storage) -> None:
            super().__init__(storage)
            storage.manager = self

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)
    monkeypatch.setattr(app_test, "MediaFileManager", Managing)
    return stores


def _served_url(button, stores: list) -> str:
    """The button's file address; a deferred one's (made on click) is made now."""
    if button.proto.deferred_file_id:
        return stores[-1].manager.execute_deferred(button.proto.deferred_file_id)
    return button.proto.url


def download(at: AppTest, stores: list, key: str) -> tuple[str, bytes]:
    """(file name, bytes) the download button ``key`` serves."""
    button = next(b for b in at.get("download_button") if b.proto.id.endswith(key))
    url = _served_url(button, stores)
    return url, stores[-1].get_file(url.rsplit("/", 1)[-1]).content


def file_name(at: AppTest, stores: list, key: str) -> str | None:
    """The name the download button ``key`` saves its file under."""
    button = next(b for b in at.get("download_button") if b.proto.id.endswith(key))
    return stores[-1].get_file(_served_url(button, stores).rsplit("/", 1)[-1]).filename


# -- the library side: order, table, downloads ------------------------------------------------
def test_group_photo_faces_are_numbered_left_to_right(group_photo, analyzer):
    from fer_core.figures import plots
    from fer_core.pipeline import ModelOutput, analyze_photo, face_order, photo_rows, photo_to_dict
    from fer_core.predictors.registry import load_predictor

    model = load_predictor(BUNDLED_AU_MODEL)
    result = analyze_photo(group_photo, "group.png", model, analyzer=analyzer)
    assert result.error is None and len(result.faces) == 3, "real MediaPipe finds every pasted face"
    order = face_order(result.faces)
    xs = [result.faces[i].box[0] for i in order]
    assert xs == sorted(xs) and order != list(range(3)), "largest first is not left to right"
    other = ModelOutput("other", "cnn", [{"happy": 0.7, "sad": 0.3}, "other: could not judge this face",
                                         {"happy": 0.2, "sad": 0.8}])
    photo = photo_to_dict(result, "au", "au-logreg", [other])
    assert [f["face"] for f in photo["faces"]] == [1, 2, 3]
    assert [f["box"][0] for f in photo["faces"]] == [round(float(x), 1) for x in xs]
    for number, i in enumerate(order):
        face = photo["faces"][number]
        assert face["models"]["au"]["emotion"] == result.faces[i].explanation.emotion
        assert face["models"]["other"] == ({"kind": "cnn", "error": other.per_face[i]} if i == 1 else
                                           {"kind": "cnn", "emotion": max(other.per_face[i], key=other.per_face[i].get),
                                            "probabilities": other.per_face[i], "close_call": False})
        assert {f"{au}_r" for au in face["models"]["au"]["explanation"]["contributions"]} == set(face["aus"])
        assert len(face["aus"]) == 17
    back = json.loads(json.dumps(photo))
    assert back == photo
    table = pd.read_csv(io.StringIO(photo_rows(photo).to_csv(index=False)))
    assert len(table) == 3 * 2 and list(table["face"]) == [1, 1, 2, 2, 3, 3]
    au_rows = table[table["model"] == "au"]
    assert np.allclose(au_rows[[c for c in table.columns if c.startswith("p_")]].sum(axis=1), 1, atol=1e-3)
    assert au_rows["contribution_AU12"].notna().all() and table[table["model"] == "other"]["contribution_AU12"].isna().all()
    # the contribution columns in AU order, not in the first face's ranking of them
    contributions = [c for c in table.columns if c.startswith("contribution_")]
    assert contributions == sorted(contributions) and len(contributions) == 17
    image = plots.draw_numbered_faces(result.image, [result.faces[i].box for i in order], ["행복", None, "happy"])
    assert image.size == (900, 340)
    # the numbers' tags are drawn (white) on the grey background just above each box
    pixels = np.asarray(image)
    for i in order:
        x, y, _, _ = (int(v) for v in result.faces[i].box)
        assert (pixels[max(0, y - 8), x + 4] == 255).all() or (pixels[y + 8, x + 4] == 255).all()


def test_a_face_box_does_not_strike_through_another_faces_tag():
    """Face 2's box was drawn after face 1's tag, so its line crossed "1 angry" (a review's group
    photo): every box is drawn first, then the tags."""
    from fer_core.figures import plots

    black = np.zeros((400, 400, 3), np.uint8)
    alone = np.asarray(plots.draw_numbered_faces(black, [(50, 100, 100, 100)], ["angry"], min_side=0))
    both = np.asarray(plots.draw_numbered_faces(black, [(50, 100, 100, 100), (20, 85, 300, 300)], ["angry", None],
                                                min_side=0))
    tag = (slice(80, 98), slice(52, 75))  # face 1's tag, above its box, where face 2's top edge runs (y 85)
    assert (alone[tag] == 0).any() and np.array_equal(alone[tag], both[tag])


def test_a_photo_analysed_scaled_down_gives_boxes_in_its_own_pixels(group_photo, analyzer):
    """A photo over the analysis size is measured scaled down; its downloads give boxes in the
    uploaded photo's pixels (they were in the smaller copy's, with its size as the photo's)."""
    from fer_core.pipeline import analyze_photo, photo_rows, photo_to_dict
    from fer_core.predictors.registry import load_predictor

    model = load_predictor(BUNDLED_AU_MODEL)
    whole = photo_to_dict(analyze_photo(group_photo, "group.png", model, analyzer=analyzer), "au", "au-logreg")
    half = photo_to_dict(analyze_photo(group_photo, "group.png", model, analyzer=analyzer, max_side=450),
                         "au", "au-logreg")
    assert (whole["width"], whole["height"], whole["scaled_for_analysis"]) == (900, 340, False)
    assert (half["width"], half["height"], half["scaled_for_analysis"]) == (900, 340, True)
    assert (half["analysed_width"], half["analysed_height"]) == (450, 170)
    assert len(half["faces"]) == len(whole["faces"]) == 3
    for a, b in zip(half["faces"], whole["faces"]):
        assert all(abs(a["box"][k] - b["box"][k]) < 0.1 * b["box"][2] for k in range(4))
    rows = photo_rows(half)
    assert rows["scaled_for_analysis"].all() and set(rows["method"]) <= {"detector", "crop"}


# -- the page ---------------------------------------------------------------------------------
def _upload_group(at: AppTest, png: bytes) -> AppTest:
    at.file_uploader(key="try_upload").set_value(("group.png", png, "image/png"))
    return run_app(at, T)


def test_try_it_group_photo_numbered_table_and_downloads(models_dir, group_png, served):
    at = run_app(AppTest.from_file(TRY_IT), T)
    _upload_group(at, group_png)
    result, _ = at.session_state["try_last"][0]
    assert len(result.faces) == 3
    assert len(at.image) == 1 + 3, "the whole photo numbered, then one panel per face"
    heads = [m for m in texts(at.markdown) if m.startswith("### Face ")]
    assert heads == ["### Face 1", "### Face 2", "### Face 3"]
    table = at.dataframe[0].value
    assert list(table["face"]) == [1, 2, 3]
    xs = [float(b.split(",")[0]) for b in table["box (x, y, w, h; pixels)"]]
    assert xs == sorted(xs)
    assert all(0 < float(s) <= 1 for s in table["detection score"])
    assert all(v.split(" (")[0] in ("angry", "disgust", "happy", "neutral", "sad", "surprise")
               for v in table[BUNDLED_AU_MODEL])
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Faces (CSV)", "Faces (JSON)", "Numbered image (PNG)", *["Picture with its explanation (PNG)"] * 3]
    _, csv = download(at, served, "try_csv_0")
    rows = pd.read_csv(io.BytesIO(csv))
    assert list(rows["face"]) == [1, 2, 3] and set(rows["model"]) == {BUNDLED_AU_MODEL}
    assert [round(x) for x in rows["box_x"]] == xs and rows["sentence"].str.len().gt(0).all()
    _, raw = download(at, served, "try_json_0")
    photo = json.loads(raw)
    assert photo["file"] == "group.png" and [f["face"] for f in photo["faces"]] == [1, 2, 3]
    assert [f["models"][BUNDLED_AU_MODEL]["emotion"] for f in photo["faces"]] == [
        e.split(" (")[0] for e in table[BUNDLED_AU_MODEL]]
    _, png = download(at, served, "try_png_0")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (900, 340)


def test_speaking_against_calls_absent_aus_absent(models_dir, jpeg_bytes):
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, T)
    result, _ = at.session_state["try_last"][0]
    against = result.faces[0].explanation.against
    caption = next(c for c in texts(at.caption) if c.startswith("Speaking against it: "))
    assert "(0.0)" not in caption
    for a in against:
        if a.present:
            assert f"{a.name} ({a.intensity:.1f})" in caption
        else:
            assert f"{a.name}" in caption.split("absent: ", 1)[1]
    # the downloads of a single face exist too, and the photo is not shown twice
    assert len(at.get("download_button")) == 4 and len(at.image) == 1  # the photo's three, the face's picture


def test_the_aus_a_sentence_names_come_with_how_to_read_them(models_dir, jpeg_bytes):
    """A FACS coder read "happy, mostly because of AU23 lip tightener" and "sad, because of AU45
    blink" as FACS codes, with no word of what the AUs are here: AU23 is lips pressed, AU45 on a
    photo closed eyes, AU15 does not follow OpenFace's; nor of what 0, 5, absent and usual mean."""
    from fer_core.predictors.base import AUContribution, Explanation
    from ui.common import reading_notes

    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, T)
    result, _ = at.session_state["try_last"][0]
    named = [c.au for c in result.faces[0].explanation.reasons]
    captions = texts(at.caption)
    assert "AU23" in named  # "happy, mostly because of AU12 lip corner puller (4.8) and AU23 lip tightener (2.0)"
    assert any(c.startswith("AU23 here is lips pressed together") for c in captions), captions
    assert any("0 is a typical face there (the median), 5 the strongest 0.5 %" in c for c in captions)
    against = {c.au for c in result.faces[0].explanation.against}
    for caption in (c for c in captions if c.startswith("Read with care")):  # AU12 and AU23 follow OpenFace's
        assert "AU12" not in caption and "AU23" not in caption and any(au in caption for au in against)

    ranked = (AUContribution("AU15", "AU15 lip corner depressor", 3.1, 0.9, 0.8),
              AUContribution("AU45", "AU45 blink", 2.0, 0.5, 0.7), AUContribution("AU12", "AU12 lip corner puller", 0.1, 0.3, 1.0))
    notes = reading_notes(Explanation("sad", {"sad": 0.7, "happy": 0.3}, ranked))
    assert notes[0].startswith("Read with care") and "AU15 lip corner depressor (r 0.20)" in notes[0]
    assert "AU12" not in notes[0] and notes[1].startswith("AU45 on a photo is how closed the eyes are")
    # an AU named only in "Speaking against it" (AU23 absent, AU17 against sad) is read with the same care
    ranked = (AUContribution("AU12", "AU12 lip corner puller", 3.1, 2.0, 1.0),
              AUContribution("AU17", "AU17 chin raiser", 0.9, -0.3, 0.5), AUContribution("AU23", "AU23 lip tightener", 0.1, -0.5, 0.8))
    explanation = Explanation("happy", {"happy": 0.8, "sad": 0.2}, ranked)
    assert [c.au for c in explanation.reasons] == ["AU12"] and {"AU17", "AU23"} <= {c.au for c in explanation.against}
    notes = reading_notes(explanation)
    assert notes[0].startswith("Read with care") and "AU17 chin raiser (r 0.67)" in notes[0]
    assert any(n.startswith("AU23 here is lips pressed together") for n in notes)


@pytest.fixture(scope="session")
def jpeg_bytes(astronaut) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_try_it_in_korean_and_english(models_dir, group_png):
    names = (BUNDLED_AU_MODEL,)
    import shutil

    from fer_core.config import REPO_ROOT
    from fer_core.evaluation.scores import SCORES_FILE

    shutil.copy(REPO_ROOT / "models" / SCORES_FILE, models_dir)  # Home's scores: how often right when that sure
    at = AppTest.from_file(TRY_IT)
    at.query_params["lang"] = "ko"
    run_app(at, T)
    assert texts(at.title) == ["직접 해보기"]
    assert english_left(page_texts(at), names) == []
    _upload_group(at, group_png)
    assert any(m.startswith("#### 예측: ") for m in texts(at.markdown))
    assert english_left(page_texts(at), names) == []
    assert any(c.startswith(f"FER2013 val의 48픽셀 얼굴(여섯 감정, 공포 제외)에서 {BUNDLED_AU_MODEL}이 ")
               and "확신했을 때" in c for c in texts(at.caption))
    assert list(at.dataframe[0].value.columns[:3]) == ["얼굴", "상자 (x, y, w, h; 픽셀)", "검출 점수"]
    assert [b.proto.label for b in at.get("download_button")][:4] == ["얼굴 (CSV)", "얼굴 (JSON)", "번호 붙은 이미지 (PNG)",
                                                                  "설명을 곁들인 그림 (PNG)"]
    at.toggle(key="try_mask").set_value(True)
    run_app(at, T)
    assert at.selectbox(key="try_mask_style").format_func("surgical") == "수술용, 하늘색"
    assert any(m.startswith("마스크 없이: **") for m in texts(at.markdown))
    assert english_left(page_texts(at), names) == []
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, format="PNG")
    at.file_uploader(key="try_upload").set_value(("blank.png", blank.getvalue(), "image/png"))
    run_app(at, T)
    assert texts(at.warning) == ["blank.png: 얼굴 없음: 한 가지 색뿐인 빈 그림입니다"]  # a blank upload, said as such
    wall = io.BytesIO()  # a picture with no face that is not blank: the photo advice
    Image.fromarray(np.tile(np.linspace(60, 200, 320, dtype=np.uint8), (240, 1))).convert("RGB").save(wall, format="PNG")
    at.file_uploader(key="try_upload").set_value(("blank.png", wall.getvalue(), "image/png"))
    run_app(at, T)
    assert texts(at.warning) == ["blank.png: 얼굴을 찾지 못했습니다. 얼굴이 정면을 향하고 조명이 밝으며 폭이 약 48픽셀 "
                                 "이상이고, 사진에서 너무 작지 않은(짧은 변의 30분의 1 이상) 사진을 사용하세요. 멀리서 찍은 "
                                 "사진은 얼굴 주위를 잘라 내세요"]
    en = run_app(AppTest.from_file(TRY_IT), T)
    assert texts(en.title) == ["Try it"]
    _upload_group(en, group_png)
    assert any(m.startswith("#### Predicted: ") for m in texts(en.markdown))
    assert english_left(page_texts(en), names), "the English page is in English"
    # each face's probabilities also in words under their chart (its numbers were in the hover alone)
    said = [c for c in texts(en.caption) if c.startswith("Probabilities: ")]
    assert len(said) >= 3 and all(re.fullmatch(r"Probabilities: (\w+ \d+%, )+\w+ \d+%\.", c) for c in said), said
    # what its percentage has meant: how often the model was right on FER2013 val when about as sure
    records = [c for c in texts(en.caption) if c.startswith("On FER2013 val's 48-px faces ")]
    assert records and all(re.fullmatch(rf"On FER2013 val's 48-px faces \(six emotions, fear left out\), when "
                                        rf"{BUNDLED_AU_MODEL} was (\d+)%–(\d+)% sure, it was right on \d+% of those "
                                        r"[\d,]+ \(95% CI \d+%–\d+%\); photos, children's faces and masks may differ\.", c)
                           for c in records), records


def test_try_it_shows_a_seven_emotion_cnn_in_both_languages(models_dir, jpeg_bytes, tiny_seven_cnn):
    """A seven-emotion CNN beside the AU model: its seven probabilities, fear named in the page's language."""
    from fer_core.emotions import SEVEN_EMOTIONS
    from fer_core.i18n import catalogue
    from fer_core.manifest import read_manifest, write_manifest

    write_manifest(read_manifest(models_dir) + [seven_cnn_entry(tiny_seven_cnn)], models_dir)
    names = (BUNDLED_AU_MODEL, SEVEN_CNN)
    for lang in ("ko", "en"):
        at = AppTest.from_file(TRY_IT)
        at.query_params["lang"] = lang
        run_app(at, T)
        assert at.multiselect(key="try_others").value == [SEVEN_CNN]
        at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
        run_app(at, 240)
        labels = {e: catalogue(lang)[f"emotions.{e}"] for e in SEVEN_EMOTIONS}
        bars = next(c for c in charts(at) if c["layout"]["title"]["text"] == SEVEN_CNN)["data"][0]
        assert sorted(bars["y"]) == sorted(labels.values()) and sum(bars["x"]) == pytest.approx(1, abs=1e-4)
        line = next(m for m in texts(at.markdown) if m.startswith(f"{SEVEN_CNN} (CNN): **"))
        assert line.split("**")[1] in labels.values()
        # the tiny CNN says otherwise than the AU model: said, and nothing else is wrong
        assert not at.error and [w.icon for w in at.warning] == [":material/call_split:"]
        # a model of one's own has no track record on FER2013 val: its own record is said instead
        own = [c for c in texts(at.caption) if "val (3,589 images, 7 emotions; not used for any choice)" in c]
        assert len(own) == 1 and own[0].startswith(SEVEN_CNN) and "20%" in own[0], texts(at.caption)
        if lang == "ko":
            assert labels["fear"] == "두려움" and english_left(page_texts(at), names) == []
        else:
            assert "fear" in bars["y"]
            # the six-emotion AU model beside a seven-emotion one: its answer on a fear face is no other reading
            assert f"{BUNDLED_AU_MODEL} cannot answer fear: where another model says fear, their answer is the " \
                   "nearest of their other emotions, not a different reading of the face." in texts(at.caption)


def test_the_face_table_gives_the_percentage_the_panel_gives(models_dir, jpeg_bytes, tiny_seven_cnn, monkeypatch):
    """The table rounded the download's 4-decimal probability again: 0.894959 was 90 % there (from
    0.895) and 89 % in the model's panel under the face."""
    from fer_core import pipeline
    from fer_core.manifest import read_manifest, write_manifest

    write_manifest(read_manifest(models_dir) + [seven_cnn_entry(tiny_seven_cnn)], models_dir)
    answer = {"happy": 0.894959, "sad": 0.105041}
    monkeypatch.setattr(pipeline, "probabilities_for", lambda *a, **k: dict(answer))
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, 240)
    assert f"{SEVEN_CNN} (CNN): **happy** (89%)" in texts(at.markdown)
    assert list(at.dataframe[0].value[SEVEN_CNN]) == ["happy (89%)"]


def test_a_model_just_trained_is_named_as_compare_names_it_and_earlier_photos_are_said(models_dir, jpeg_bytes):
    """Coming back from the AU page, Try it explains with the model just trained: the photos
    explained before by another model vanished without a word, and the model was "model trained
    in this session" here but au-logreg-…_train in Compare."""
    from test_au_model import synthetic_table

    from fer_core.predictors.au_models import fit_au_model

    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, 240)
    assert len(at.session_state["try_last"]) == 1
    at.session_state["au_train"] = {"model": fit_au_model(synthetic_table(), kind="au-logreg"), "saved_as": None,
                                    "name": "au-logreg-mine_train", "origin": "mine_train_au.csv"}
    at.file_uploader(key="try_upload").set_value([])  # gone, as after a visit to another page
    run_app(at, T)
    box = at.selectbox(key="try_model")
    assert box.value == "__session_model__"
    assert "au-logreg-mine_train (trained in this session, not saved)" in box.options
    assert any(f"Your last 1 photo(s) were explained by {BUNDLED_AU_MODEL}" in i for i in texts(at.info)), texts(at.info)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, 240)
    assert "au-logreg-mine_train" in at.dataframe[0].value.columns  # the face table names it so too


def test_other_models_fill_in_under_each_face_and_a_broken_one_is_one_line(models_dir, group_png, tiny_seven_cnn,
                                                                           tmp_path):
    """The other models' columns are filled in one model at a time, after every face's explained
    prediction is shown: each model's line still lands under its own face, in the order picked, a
    model that cannot load is a one-line warning under each face, and the table lists them all."""
    from fer_core.manifest import ModelEntry, read_manifest, sha256_file, write_manifest

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a keras file")
    broken_entry = ModelEntry(name="broken-cnn", kind="cnn", path=str(broken), classes=("happy", "sad"),
                              sha256=sha256_file(broken))
    write_manifest(read_manifest(models_dir) + [broken_entry, seven_cnn_entry(tiny_seven_cnn)], models_dir)
    at = run_app(AppTest.from_file(TRY_IT), T)
    assert at.multiselect(key="try_others").value == ["broken-cnn", SEVEN_CNN]
    at.file_uploader(key="try_upload").set_value(("group.png", group_png, "image/png"))
    run_app(at, 240)

    lines = [m for m in texts(at.markdown) if m.startswith(("### Face ", "## ", f"{SEVEN_CNN} (CNN): **"))]
    assert [m.split(" (")[0] if m.startswith(SEVEN_CNN) else m for m in lines if not m.startswith("## ")] == [
        "### Face 1", SEVEN_CNN, "### Face 2", SEVEN_CNN, "### Face 3", SEVEN_CNN]
    warnings = [w.value for w in at.warning if not w.value.startswith("The models disagree")]
    assert len(warnings) == 3 and all(w.startswith("broken-cnn: could not run (") and "\n" not in w
                                      for w in warnings)
    assert not at.error and not at.exception
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert titles.count(SEVEN_CNN) == 3 and len(titles) == 3 * 3, "each face: probabilities, AUs, the CNN"
    table = at.dataframe[0].value
    assert list(table["face"]) == [1, 2, 3] and table[SEVEN_CNN].str.len().gt(0).all()


def test_answers_kept_for_a_photo_are_not_handed_to_a_new_photo_that_reuses_its_id():
    """Python reuses an object's id once the object is gone, and Try it drops old results; what the
    page keeps for a photo (other models' answers, the masked faces) must not reach a new photo
    that happens to get the old one's id."""
    import streamlit as st

    from ui.common import keep_for, kept_for

    class Photo:
        pass

    old, new = Photo(), Photo()
    keep_for(old, "test_kept", ("cnn-fer2013",), "old photo's answer")
    assert kept_for(old, "test_kept", ("cnn-fer2013",)) == "old photo's answer"
    kept = st.session_state["test_kept"]
    kept[(id(new), "cnn-fer2013")] = kept.pop((id(old), "cnn-fer2013"))  # as if `new` had taken old's id
    assert kept_for(new, "test_kept", ("cnn-fer2013",)) is None
    for k in range(70):
        keep_for(Photo(), "test_kept", ("cnn-fer2013",), k, limit=64)
    assert len(st.session_state["test_kept"]) == 64
    st.session_state.pop("test_kept")


def test_try_it_keeps_every_photo_on_the_page_analysed(models_dir, fer_val, monkeypatch):
    """More photos than the 64 results kept by default: each rerun (any click) analysed every
    photo again, each evicting the next."""
    import fer_core.pipeline as pipeline
    from fer_core.images import list_images

    files = [(it.path.name, it.path.read_bytes(), "image/jpeg") for it in list_images(fer_val)[:66]]
    calls = []
    real = pipeline.analyze_photo
    monkeypatch.setattr(pipeline, "analyze_photo", lambda *a, **k: calls.append(1) or real(*a, **k))
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(files)
    run_app(at, T)
    assert len(calls) == 66 and len(at.session_state["try_last"]) == 66
    run_app(at, T)
    assert len(calls) == 66, "a rerun analyses nothing again"


def test_compare_says_which_test_images_hold_several_faces(group_photo, astronaut, tmp_path):
    """A labelled image of several faces is scored on its largest face, and now says so."""
    from fer_core.evaluation.compare import run_comparison
    from fer_core.i18n import message, using_language
    from fer_core.images import list_images

    (tmp_path / "happy").mkdir()
    Image.fromarray(group_photo).save(tmp_path / "happy" / "group.png")
    Image.fromarray(astronaut).save(tmp_path / "happy" / "one.png")
    comparison = run_comparison([BUNDLED_AU_MODEL], list_images(tmp_path), ["happy"])
    assert comparison.n == 2
    assert comparison.several_faces == [f"{tmp_path / 'happy' / 'group.png'}: 3 faces found; the largest was scored"]
    assert comparison.to_dict()["several_faces"] == comparison.several_faces
    with using_language("ko"):
        assert message(comparison.several_faces[0]).endswith("group.png: 얼굴 3개를 찾았습니다. 가장 큰 얼굴로 채점했습니다")


def test_try_it_says_in_full_why_a_face_is_low_confidence(models_dir, fer_val):
    """A FER2013 crop the detector misses is measured whole and flagged: "Low confidence" and the
    reason written in full (in a badge, a narrow column cut it off), as a warning: a cup or the moon
    measured whole reads as a face too (a reviewer's, with Face crops on)."""
    from fer_core.config import data_dir

    table = pd.read_csv(data_dir() / "fer2013_val_au.csv.gz")
    crop = table[(table.success == 1) & (table.confidence == 0)].file.iloc[0]  # measured whole
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value([(Path(crop).name, (fer_val / crop).read_bytes(), "image/jpeg")])
    run_app(at, T)
    assert texts(at.warning) == ["Low confidence: no face was detected, so the whole picture was measured as one "
                                 "face. If the picture shows no face, this reading means nothing."]


def test_try_it_says_when_the_runner_up_is_nearly_as_likely(models_dir, fer_val):
    """"Predicted: surprise (30%)" over neutral at 29% read as sure as a 98% answer: an answer whose
    runner-up is within 0.10 says it is a close call, naming the runner-up; a clear one does not."""
    from fer_core.au_table import AU_COLUMNS
    from fer_core.config import data_dir
    from fer_core.predictors.base import FaceInput
    from fer_core.predictors.registry import load_predictor

    table = pd.read_csv(data_dir() / "fer2013_val_au.csv.gz")
    table = table[(table.success == 1) & (table.confidence > 0.8)].iloc[:200]
    model = load_predictor(BUNDLED_AU_MODEL)
    proba = model.predict_proba([FaceInput(aus=row) for row in table[list(AU_COLUMNS)].to_numpy(float)])
    ranked = np.sort(proba, axis=1)
    margins = ranked[:, -1] - ranked[:, -2]
    close, clear = int(np.argmin(margins)), int(np.argmax(margins))
    assert margins[close] < 0.03 and margins[clear] > 0.5
    runner_up = model.classes[int(np.argsort(proba[close])[-2])]
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value([(Path(f).name, (fer_val / f).read_bytes(), "image/jpeg")
                                                  for f in table.file.iloc[[close, clear]]])
    run_app(at, T)
    said = [c for c in texts(at.caption) if c.startswith("A close call: ")]
    assert said == [f"A close call: {runner_up} ({proba[close].max() - margins[close]:.0%}) is almost "
                    "as likely. The model can hardly tell the two apart in this face."]


def test_speaking_against_says_an_au_weaker_than_usual_as_such():
    """An AU above the 'present' threshold but below the model's usual value speaks against an
    emotion by being weak: 'Speaking against it: AU06 cheek raiser (0.7)' read as the cheek raise
    itself speaking against."""
    from fer_core.predictors.base import AUContribution, Explanation
    from ui.common import against_text

    against = (AUContribution("AU06", "AU06 cheek raiser", 0.7, -0.4, usual=0.9),
               AUContribution("AU04", "AU04 brow lowerer", 2.0, -0.3, usual=0.5),
               AUContribution("AU12", "AU12 lip corner puller", 0.1, -0.2, usual=1.0))
    ex = Explanation("sad", {"sad": 0.6, "happy": 0.4}, (AUContribution("AU15", "AU15 lip corner depressor", 2.0,
                                                                          0.9, usual=0.3), *reversed(against)))
    assert against_text(ex) == ("Speaking against it: AU04 brow lowerer (2.0); weaker than usual: AU06 cheek raiser "
                                "(0.7); absent: AU12 lip corner puller")
    # the AUs of one group are separated by commas, the groups by semicolons
    two = Explanation("sad", ex.probabilities, (*ex.ranked[:3], AUContribution("AU02", "AU02 outer brow raiser", 2.0,
                                                                                 -0.35, usual=0.5), *ex.ranked[3:]))
    assert against_text(two) == ("Speaking against it: AU02 outer brow raiser (2.0), AU04 brow lowerer (2.0); weaker "
                                 "than usual: AU06 cheek raiser (0.7)")


def test_a_face_crop_the_photo_search_misses_is_measured_with_face_crops_on(models_dir, fer_val):
    """A FER2013 face enlarged to 320 px: "no face found; ... at least ~48 pixels wide" of a face
    320 px wide (a reviewer's), with no word of the face-crop mode ``extract --crops`` has. The page
    says to turn on Face crops, and with it on the face is measured and explained."""
    buf = io.BytesIO()
    Image.open(fer_val / "surprise" / "PublicTest_13980595.jpg").convert("RGB").resize(
        (320, 320), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=95)
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("big.jpg", buf.getvalue(), "image/jpeg"))
    run_app(at, T)
    assert any(w.startswith("big.jpg: no face found") for w in texts(at.warning))
    assert any("turn on **Face crops** above" in c for c in texts(at.caption))
    at.toggle(key="try_crops").set_value(True)
    run_app(at, T)
    result, _ = at.session_state["try_last"][0]
    assert result.error is None and len(result.faces) == 1 and result.faces[0].explanation is not None
    assert result.faces[0].box[2] > 160 and not any("no face found" in w for w in texts(at.warning))
    # found by no detector, measured whole (as a cup would be): said plainly, not in a small badge
    assert result.faces[0].method == "crop" and any("Measured as a face crop (Face crops is on)." in c
                                                    for c in texts(at.caption))
    assert any(w.startswith("Low confidence: no face was detected, so the whole picture") for w in texts(at.warning))
    at.toggle(key="try_mask").set_value(True)  # the mask goes on the face the crop mode found
    run_app(at, T)
    assert not any("no face found" in e for e in texts(at.warning) + texts(at.error))
    assert any(m.startswith("Without a mask: **") for m in texts(at.markdown))
    blank = io.BytesIO()  # a picture without a face (not blank), Face crops still on: said, with how to turn it off
    Image.fromarray(np.tile(np.linspace(60, 200, 320, dtype=np.uint8), (240, 1))).convert("RGB").save(blank, format="PNG")
    at.file_uploader(key="try_upload").set_value(("blank.png", blank.getvalue(), "image/png"))
    run_app(at, T)
    assert any(w.startswith("blank.png: no face found") for w in texts(at.warning))
    assert any(c.startswith("**Face crops** is on") for c in texts(at.caption))


def test_last_results_say_how_they_were_measured_not_how_the_switch_stands(models_dir, jpeg_bytes):
    """A photo measured with Face crops off, shown again under "Last results" after the switch went
    on, said "Measured as a face crop" (the switch's state, not the result's: a second review)."""
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, T)
    at.file_uploader(key="try_upload").set_value([])
    at.toggle(key="try_crops").set_value(True)
    run_app(at, T)
    assert any(h == "Last results" for h in texts(at.header)), texts(at.header)
    assert not any("Measured as a face crop" in c for c in texts(at.caption))


def test_try_it_says_when_the_model_learned_from_openfaces_aus(models_dir):
    """Try it explains with the AUs this workbench measures; a model trained on OpenFace's (another
    scale) gave an ordinary sentence with no word that it does not carry over."""
    from fer_core import au_table
    from fer_core.predictors.au_models import fit_au_model
    from fer_core.predictors.registry import save_and_register

    table = au_table.read(ROOT / "data" / "fer2013_val_au.csv.gz").sample(900, random_state=0).assign(source="openface")
    model = fit_au_model(table, holdout=0.25)
    save_and_register(model, name="study-openface", kind="au-logreg", classes=model.classes, metrics=None,
                      command="test", models_dir=models_dir)
    at = run_app(AppTest.from_file(TRY_IT), T)
    assert not any("learned from" in w for w in texts(at.warning))
    at.selectbox(key="try_model").set_value("study-openface")
    at = run_app(at, T)
    assert any(w.startswith("study-openface learned from OpenFace's AUs") for w in texts(at.warning)), texts(at.warning)


def test_try_it_reads_a_file_the_mask_command_wrote_as_masked(astronaut_jpeg, tmp_path, models_dir):
    """A lab-mate's stimulus made by mask, uploaded to Try it, was explained from AUs read off the
    drawn cloth; its file says it is masked, so the page reads those AUs as unknown and says why."""
    from fer_core.au_table import au_label
    from fer_core.cli import main
    from fer_core.masks import HIDDEN_AUS

    (tmp_path / "in" / "happy").mkdir(parents=True)
    (tmp_path / "in" / "happy" / "a.jpg").write_bytes(astronaut_jpeg.read_bytes())
    assert main(["mask", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("a.jpg", (tmp_path / "out" / "happy" / "a.jpg").read_bytes(),
                                                  "image/jpeg"))
    at = run_app(at, T)
    said = [c for c in texts(at.caption) if c.startswith("This picture was masked by the workbench's mask command or Try it")]
    assert said and said[0].endswith(", ".join(au_label(c) for c in HIDDEN_AUS))  # named, not only coded
    assert not any(au in " ".join(texts(at.markdown)) for au in ("AU12 lip corner puller (", "AU25 lips part ("))
    # "Put a mask on" drew a second mask and called the masked face "without a mask" (a reviewer's)
    at.toggle(key="try_mask").set_value(True)
    at = run_app(at, T)
    assert any(i.startswith("This picture wears a mask already") for i in texts(at.info)), texts(at.info)
    assert not any("Without a mask" in m for m in texts(at.markdown))


def test_try_it_masked_faces_can_be_downloaded(models_dir, jpeg_bytes, tiny_seven_cnn, served, tmp_path):
    """'Put a mask on' showed the masked faces and answers but gave nothing to take away (a mask
    researcher's stimuli): their table, and the masked picture marked as the mask command marks
    its files, so the workbench reads it as masked when it comes back."""
    from fer_core.manifest import read_manifest, write_manifest
    from fer_core.masks import HIDDEN_AUS, drawn_mask_of

    write_manifest(read_manifest(models_dir) + [seven_cnn_entry(tiny_seven_cnn)], models_dir)
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, 240)
    at.toggle(key="try_mask").set_value(True)
    run_app(at, 240)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Faces (CSV)", "Faces (JSON)", "Numbered image (PNG)", "Picture with its explanation (PNG)",
                      "Masked face with its explanation (PNG)",
                      "Faces (CSV)", "Faces (JSON)", "Masked picture (PNG)"], labels
    _, raw = download(at, served, "try_masked_csv_0")
    assert file_name(at, served, "try_masked_csv_0") == "astronaut_masked_faces.csv"
    rows = pd.read_csv(io.BytesIO(raw))
    assert set(rows["model"]) == {BUNDLED_AU_MODEL, SEVEN_CNN} and rows["masked"].all()
    hidden = [c for c in rows.columns if c.split("_")[0] in {a.split("_")[0] for a in HIDDEN_AUS}]
    assert hidden and rows[hidden].isna().all().all(), "what the mask hides is unknown, not 0"
    _, unmasked = download(at, served, "try_csv_0")
    assert not pd.read_csv(io.BytesIO(unmasked))["masked"].any()
    explained = rows[rows["model"] == BUNDLED_AU_MODEL].iloc[0]
    shown = next(m for m in texts(at.markdown) if m.startswith("Without a mask: **"))
    assert shown.split("→")[1].split("**")[1] == explained["emotion"]
    cnn_line = next(m for m in texts(at.markdown) if "without a mask →" in m and "with it." in m)
    assert cnn_line.split("→")[1].split("**")[1] == rows[rows["model"] == SEVEN_CNN].iloc[0]["emotion"]
    _, png = download(at, served, "try_masked_png_0")
    assert file_name(at, served, "try_masked_png_0") == "astronaut_masked.png"
    path = tmp_path / "astronaut_masked.png"
    path.write_bytes(png)
    assert drawn_mask_of(path) is not None, "the picture says it was masked"
    with Image.open(path) as image:
        assert image.size == Image.open(io.BytesIO(jpeg_bytes)).size


def test_try_it_says_when_the_models_disagree_and_what_a_prediction_is_not(models_dir, fer_val):
    """A teacher's review: a screaming face read "happy (56%)" by the AU model, "angry (66%)" by a
    CNN and "fear (47%)" by another, and nothing pointed the three answers out; nor did the page
    say a prediction is no diagnosis, or that its percentage is not how often the model is right."""
    from dataclasses import replace

    from fer_core.config import REPO_ROOT
    from fer_core.manifest import read_manifest, write_manifest

    cnns = [replace(e, path=str(e.file)) for e in read_manifest(REPO_ROOT / "models") if e.name in ("cnn-fer2013", "cnn-fer2013-7")]
    write_manifest(read_manifest(models_dir) + cnns, models_dir)
    at = run_app(AppTest.from_file(TRY_IT), T)
    assert any("not a diagnosis" in c and "not how often the model is right" in c for c in texts(at.caption))
    at.toggle(key="try_crops").set_value(True)
    at.multiselect(key="try_others").set_value(["cnn-fer2013", "cnn-fer2013-7"])
    at.file_uploader(key="try_upload").set_value([
        ("screaming.jpg", (fer_val / "fear" / "PublicTest_10918056.jpg").read_bytes(), "image/jpeg"),
        ("sad.jpg", (fer_val / "sad" / "PublicTest_10974073.jpg").read_bytes(), "image/jpeg")])
    run_app(at, T)
    said = [w for w in texts(at.warning) if w.startswith("The models disagree")]
    assert said == ["The models disagree on this face (au-logreg-fer2013 happy, cnn-fer2013 angry, cnn-fer2013-7 "
                    "fear): no one answer should be taken alone."], texts(at.warning)  # the sad face: all say sad


def test_try_it_gives_each_face_as_a_picture_with_its_explanation_to_print(models_dir, jpeg_bytes, served):
    """A teacher making material for children who find faces hard to read got a CSV, a numbered
    photo and a chart without the face: nothing to print with the face and its reasons together."""
    at = run_app(AppTest.from_file(TRY_IT), T)
    at.toggle(key="try_mask").set_value(True)
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", jpeg_bytes, "image/jpeg"))
    run_app(at, 240)
    assert any(c.startswith("In plain words: the corners of the mouth are pulled up and back, as in a smile (AU12)")
               for c in texts(at.caption)), texts(at.caption)
    for key, name in (("try_card_0_0", "astronaut_face1_card.png"), ("try_card_masked_0_0", "astronaut_masked_face1_card.png")):
        assert file_name(at, served, key) == name
        card = np.asarray(Image.open(io.BytesIO(download(at, served, key)[1])).convert("L"))
        assert card.shape[1] == 960 and card.shape[0] > 1.3 * 960, card.shape  # the face, then its words below it
        words = card[int(card.shape[0] * 0.8):]  # the footer: dark letters on white
        assert (words < 100).mean() > 0.005 and (words > 240).mean() > 0.8
    english = download(at, served, "try_card_0_0")[1]
    at.query_params["lang"] = "ko"  # a Korean card in Korean
    run_app(at, 240)
    assert download(at, served, "try_card_0_0")[1] != english
    assert any(c.startswith("쉬운 말로: 입꼬리가 위로, 뒤로 당겨집니다") for c in texts(at.caption)), texts(at.caption)
