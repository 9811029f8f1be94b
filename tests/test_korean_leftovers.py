"""Texts a review found in English on Korean pages (``?lang=ko``): an unreadable image's bare reason,
a broken ``.keras`` file, a fake video, Compare's no-face table, the "too few faces" counts and
Try it's name for a camera shot."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from apptest_helpers import english_left, page_texts, run_app, texts
from conftest import BUNDLED_AU_MODEL
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_bad_tables import AU_PAGE, _one_angry
from test_compare import COMPARE_PAGE, LookupPredictor
from test_try_it import TRY_IT

from fer_core.i18n import catalogue, message, using_language

T = 120  # seconds per script run: the first analysis starts MediaPipe's worker process
KO = catalogue("ko")


def _korean_try_it() -> AppTest:
    at = AppTest.from_file(TRY_IT)
    at.query_params["lang"] = "ko"
    return run_app(at, T)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_an_unreadable_images_bare_reason_reads_in_korean():
    """Measuring gives a file's reason without its name ("not a readable image (use JPEG or PNG)":
    the name is the row's file), and pages show it through ``message``: it stayed English."""
    from fer_core.errors import ImageError
    from fer_core.images import load_image

    with pytest.raises(ImageError) as caught:
        load_image(b"certainly not an image", name="image")
    bare = str(caught.value).removeprefix("image: ")  # as the measuring workers give it (measure.tasks)
    assert bare == "not a readable image (use JPEG or PNG)"
    with using_language("ko"):
        assert message(bare) == "읽을 수 있는 이미지가 아닙니다 (JPEG나 PNG를 쓰세요)"
        assert message(f"photo.jpg: {bare}") == "photo.jpg: 읽을 수 있는 이미지가 아닙니다 (JPEG나 PNG를 쓰세요)"
    assert message(bare) == bare


def test_a_broken_keras_model_says_why_in_korean_in_try_it(models_dir, astronaut, tmp_path):
    """A .keras file that is not a Keras model, among Try it's other models: its warning under
    the face read "not a Keras model (a .keras file is a zip archive); pick the file …" in Korean."""
    from fer_core.manifest import ModelEntry, read_manifest, sha256_file, write_manifest

    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a keras file")
    write_manifest(read_manifest(models_dir) + [ModelEntry(name="broken-cnn", kind="cnn", path=str(broken),
                                                           classes=("happy", "sad"), sha256=sha256_file(broken))],
                   models_dir)
    at = _korean_try_it()
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", _jpeg(Image.fromarray(astronaut)), "image/jpeg"))
    run_app(at, T)
    (warning,) = texts(at.warning)
    assert english_left([warning], ("broken-cnn",)) == []
    assert warning.startswith("broken-cnn: 실행할 수 없습니다 (") and warning.endswith(
        "broken.keras: Keras 모델이 아닙니다 (.keras 파일은 zip 압축 파일입니다). model.save('name.keras')로 저장한 파일을 "
        "고르세요)")


def test_broken_keras_archives_say_why_in_korean(tmp_path):
    """The other ways a .keras file is broken end in the same hint, which stayed English."""
    import zipfile

    from fer_core.errors import ModelFileError, one_line
    from fer_core.predictors.cnn import load_keras_file

    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("notes.txt", "no model here")
    with pytest.raises(ModelFileError) as caught:
        load_keras_file(no_config)
    english = one_line(caught.value)
    assert english == f"{no_config}: cannot load this Keras model (no config.json inside); re-save it with Keras 3"
    with using_language("ko"):
        assert message(english) == f"{no_config}: 이 Keras 모델을 불러올 수 없습니다 (안에 config.json이 없습니다). " \
                                   "Keras 3으로 다시 저장하세요"


def test_a_fake_video_says_why_in_korean_not_in_pyavs_words(models_dir, tmp_path):
    """Random bytes named x.mp4: the refusal carried PyAV's "Invalid data found when processing
    input" on the Korean page."""
    import random

    fake = random.Random(0).randbytes(5000)
    at = _korean_try_it()
    at.file_uploader(key="try_video").set_value(("x.mp4", fake, "video/mp4"))
    run_app(at, T)
    assert texts(at.error) == ["x.mp4: 읽을 수 있는 동영상이 아닙니다 (동영상 파일이 아니거나 데이터가 손상되었습니다). "
                               "손상되었거나 잘린 파일입니다. 다시 저장하거나 다시 복사하세요"]


def test_compare_names_the_emotions_of_images_without_a_face_in_korean(models_dir, tmp_path):
    """The table under "no face" listed each image's true emotion as "sad", beside Korean
    everywhere else on the page."""
    from ui.common import FOLDER

    for value, label in enumerate(["happy", "happy", "sad", "sad"]):
        Image.new("L", (48, 48), value).save(tmp_path / f"{label}{value:03d}.png")
    model = LookupPredictor("mine", ["happy", "sad"], ["happy", "happy", "sad", None])  # no answer for sad003
    at = AppTest.from_file(COMPARE_PAGE)
    at.query_params["lang"] = "ko"
    at.session_state["_unsaved_models"] = {"mine": model}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(tmp_path))
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value(["mine"])
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert [Path(f).name for f in at.session_state["cmp_result"]["comparison"].no_face_files("mine")] == ["sad003.png"]
    (table,) = [d.value for d in at.dataframe if list(d.value.columns) == ["file", "label"]]
    assert table.to_dict("list") == {"file": ["sad003.png"], "label": [KO["emotions.sad"]]}


def test_too_few_faces_counts_name_the_emotions_in_korean(models_dir):
    """The AU page's line for too few faces to train: "… 이상 필요합니다. angry 1. 얼굴을 …"."""
    at = AppTest.from_file(AU_PAGE)
    at.query_params["lang"] = "ko"
    # AppTest finds a radio's option by the page's format_func, run here: in the page's language
    with using_language("ko"):
        run_app(at, 90)
        at.radio(key="au_source").set_value("Import an OpenFace CSV")
        run_app(at, 90)
        at.radio(key="au_openface").set_value("Upload a CSV")
        run_app(at, 90)
        at.file_uploader(key="au_csv").set_value(("faces.csv", _one_angry().to_csv(index=False).encode(),
                                                  "text/csv"))
        run_app(at, 90)
        at.button(key="au_train_button").click()
        run_app(at, 90)
    (error,) = texts(at.error)
    assert error.startswith("faces.csv: 학습에는 감정마다 쓸 수 있는 얼굴이 10개 이상 필요합니다. ")
    assert f". {KO['emotions.angry']} 1. " in error and "angry" not in error


def test_emotions_missing_from_a_table_are_named_in_korean():
    """The same check's line for emotions without any usable row, in both languages."""
    from test_au_model import synthetic_table

    from fer_core.au_table import training_set
    from fer_core.errors import AUTableError, one_line

    table = synthetic_table(3, classes=("happy", "sad"))
    with pytest.raises(AUTableError) as caught:
        training_set(table, ("angry", "happy"), name="faces.csv")
    assert one_line(caught.value) == ("faces.csv: no usable rows of angry; choose emotions present in the table "
                                      "(it has happy, sad)")
    with using_language("ko"):
        with pytest.raises(AUTableError) as caught:
            training_set(table, ("angry", "happy"), name="faces.csv")
        shown = message(one_line(caught.value))
    assert "angry" not in shown and "sad" not in shown
    assert f"{KO['emotions.angry']}" in shown and f"{KO['emotions.happy']}, {KO['emotions.sad']}" in shown


def test_try_it_names_a_camera_shot_in_korean(models_dir):
    """A photo from the camera was headed "camera photo" on the Korean page."""
    at = _korean_try_it()
    at.toggle(key="try_camera_on").set_value(True)
    run_app(at, T)
    at.camera_input(key="try_camera").set_value(("image.jpg", _jpeg(Image.new("RGB", (320, 240), (128, 128, 128))),
                                                 "image/jpeg"))
    run_app(at, T)
    assert "## 카메라 사진" in texts(at.markdown)
    assert english_left(page_texts(at), (BUNDLED_AU_MODEL,)) == []
