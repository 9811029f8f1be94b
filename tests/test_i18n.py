"""Korean and English catalogues: same keys, same placeholders, and every key the code uses exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fer_core import i18n
from fer_core.emotions import SEVEN_EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
# t("area.key", ...) and keys named in tuples such as ui.common.PAGES
KEY_USE = re.compile(r"""\bt\(\s*["']([a-z0-9_]+\.[a-z0-9_.]+)["']""")
SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py")),
           *sorted((ROOT / "fer_core").rglob("*.py"))]


def test_every_language_has_the_same_keys_and_placeholders():
    english = i18n.catalogue("en")
    for lang in i18n.LANGUAGES:
        other = i18n.catalogue(lang)
        assert sorted(set(english) - set(other)) == [], f"missing in {lang}"
        assert sorted(set(other) - set(english)) == [], f"only in {lang}"
        for key, text in english.items():
            assert i18n.placeholders(other[key]) == i18n.placeholders(text), (lang, key)


def test_every_key_used_in_the_code_is_in_the_catalogue():
    known = set(i18n.catalogue("en"))
    used = {(path.relative_to(ROOT).as_posix(), key)
            for path in SOURCES for key in KEY_USE.findall(path.read_text(encoding="utf-8"))}
    from ui.common import PAGES

    used |= {("ui/common.py", key) for _, key, _ in PAGES}
    assert used, "the scan found no t(...) calls"
    assert sorted((where, key) for where, key in used if key not in known) == []


def test_korean_emotion_names_and_fallbacks():
    with i18n.using_language("ko"):
        assert i18n.emotion_labels(["angry", "disgust", "happy", "neutral", "sad", "surprise", "fear"]) == [
            "화남", "혐오", "행복", "무표정", "슬픔", "놀람", "두려움"]
        assert i18n.emotion_label("contempt") == "경멸"  # labelled by CK+ and AffectNet, predicted by no model
        assert i18n.emotion_label("bored") == "bored"
        assert i18n.t("nav.compare") == "모델 비교"
        assert i18n.t("no.such.key") == "no.such.key"
    assert i18n.current_language() == "en"
    assert i18n.emotion_label("happy") == "happy"
    assert set(SEVEN_EMOTIONS) <= {k.split(".", 1)[1] for k in i18n.catalogue("ko") if k.startswith("emotions.")}


@pytest.mark.parametrize("raw, code", [("ko", "ko"), ("KO", "ko"), ("en", "en"), ("fr", "en"), (None, "en"),
                                       ("ko-KR", "ko")])
def test_language_codes_from_the_address_are_normalised(raw, code):
    assert i18n.normalise(raw) == code


def test_hangul_font_is_installed_and_draws_hangul():
    from PIL import ImageFont

    path = i18n.hangul_font_path()
    assert path is not None, "koreanize-matplotlib (NanumGothic) is a runtime requirement"
    font = ImageFont.truetype(str(path), 24)
    # a glyph the font lacks is drawn as the same empty box for every character
    boxes = {font.getmask("행").getbbox(), font.getmask("복").getbbox()}
    assert len(boxes) == 2 and None not in boxes


def test_common_fer_core_messages_are_shown_in_korean():
    from fer_core.errors import ImageError, one_line
    from fer_core.images import load_image

    with pytest.raises(ImageError) as caught:
        load_image(b"certainly not an image", name="photo.jpg")
    english = one_line(caught.value)
    assert english == "photo.jpg: not a readable image (use JPEG or PNG)"
    with i18n.using_language("ko"):
        assert i18n.message(english) == "photo.jpg: 읽을 수 있는 이미지가 아닙니다 (JPEG나 PNG를 쓰세요)"
        assert i18n.message("x.jpg: no face found") == "x.jpg: 얼굴을 찾지 못함"
        assert i18n.message("something new went wrong") == "something new went wrong"
        # the Docker engine's status and OpenFace's reasons, as the AU page shows them
        from fer_core.measure.openface_docker import OpenFaceDocker

        docker = OpenFaceDocker()
        for status in (docker._engine_message(OSError("refused")), docker._image_message(),
                       "OpenFace found no face", f"OpenFace timed out after {docker.limit_for(3):g} s; send fewer "
                       "images at a time"):
            assert i18n.message(status) != status and "Docker engine not" not in i18n.message(status)
    assert i18n.message(english) == english


def test_templates_split_their_placeholders_where_the_words_are():
    """Two placeholders side by side, an empty one, and a phrase that is also part of a file name."""
    with i18n.using_language("ko"):
        assert i18n.message("OpenFace exited with code 137 (killed)") == "OpenFace가 코드 137로 끝났습니다 (killed)"
        assert i18n.message("t.csv: no usable rows (it has no rows); use a table of measured faces with AU values "
                            "from 0 to 5").startswith("t.csv: 쓸 수 있는 행이 없습니다 (행이 하나도 없습니다)")
        assert i18n.message("/data/the endgame/a.jpg: no face found") == "/data/the endgame/a.jpg: 얼굴을 찾지 못함"
        assert i18n.message("a.mp4: video is corrupt (bad); no frames from 4.25 s to the end") == \
            "a.mp4: 동영상이 손상되었습니다 (bad). 4.25초부터 끝까지 프레임이 없습니다"


def test_a_damaged_manifest_names_what_it_found_in_korean(tmp_path):
    """A manifest holding one object, not a list: the Korean message embedded "an object"."""
    from fer_core.errors import ModelFileError
    from fer_core.manifest import read_manifest

    (tmp_path / "manifest.json").write_text('{"name": "x"}', encoding="utf-8")
    with pytest.raises(ModelFileError) as caught:
        read_manifest(tmp_path)
    with i18n.using_language("ko"):
        korean = i18n.message(str(caught.value))
    assert "목록이어야 하는데 객체입니다" in korean and "an object" not in korean


def test_reports_carry_a_small_font_for_their_hangul():
    css = i18n.embedded_font_css("감정별 정확도 happy 행복")
    assert css.startswith("@font-face") and "NanumGothic" in css
    assert 1_000 < len(css) < 200_000, "a subset, not the 4.7 MB font"
    assert i18n.embedded_font_css("only latin text") == ""


def test_page_problems_of_tables_folders_and_names_read_in_korean():
    """Lines the AU, CNN and explorer pages show (a review found them in English on the Korean page)."""
    lines = {
        "model name 'x y' is not allowed: use 2-63 letters, digits, '-' or '_', starting with a letter or digit":
            "모델 이름 'x y'은(는) 쓸 수 없습니다",
        "/d/train: images of happy only; a network learns to tell at least two emotions apart (<emotion>/*.jpg folders)":
            "/d/train: happy 이미지만 있습니다",
        "/d/train: no training images of fear; add fear/ images or train on the emotions it has (--classes angry,happy)":
            "/d/train: fear의 학습 이미지가 없습니다",
        "t.csv: no usable rows (it has no rows); use a table of measured faces with AU values from 0 to 5":
            "t.csv: 쓸 수 있는 행이 없습니다 (행이 하나도 없습니다)",
        # the emotions asked for stood in English in the Korean line
        "t.csv: no usable rows labelled angry, happy (it has no rows); training needs labels: add a label (or emotion) "
        "column naming each row's emotion": "t.csv: 화남, 행복 레이블의 행 중 쓸 수 있는 행이 없습니다 (행이 하나도 없습니다)",
    }
    with i18n.using_language("ko"):
        for english, korean in lines.items():
            assert i18n.message(english).startswith(korean), english


def _families(stack: str) -> list[str]:
    return [f.strip().strip("'\"") for f in stack.split(",")]


def test_figures_draw_digits_in_the_pages_latin_font_and_hangul_after_it():
    """NanumGothic came first, so it drew every digit and point too: at screen size its point reads
    as a comma ("0,42", "overall 55,7%"). Figures use the page's fonts in the page's order (the
    theme's Source Sans, which has no Hangul, then NanumGothic), and a report's cut of NanumGothic
    holds Hangul only, so its digits go on to the Latin fonts listed after it."""
    import tomllib

    theme = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))["theme"]
    page_fonts = [f for f in _families(theme["font"]) if f != "sans-serif"]
    families = _families(i18n.FONT_FAMILY)
    assert families[:len(page_fonts)] == page_fonts == ["Source Sans", "NanumGothic"]
    assert {"Arial", "Helvetica Neue", "Segoe UI"} <= set(families) and families[-1] == "sans-serif"
    css = i18n.embedded_font_css("전체 55.7%")
    assert "unicode-range: U+3131-318E, U+AC00-D7A3;" in css


def test_teachable_refusals_of_damaged_weights_read_in_korean():
    """Two refusals a Korean session's Teachable page shows when an upload's weights are damaged."""
    hint = "download it from Teachable Machine with Export model"
    with i18n.using_language("ko"):
        gray = i18n.message(f"m.tflite: the model answers nan, 0.5 for a plain gray image, not class probabilities "
                            f"(a damaged or edited file); {hint}")
        weight = i18n.message(f"keras_model.h5: weight dense/kernel holds NaN or infinite values (a damaged file); {hint}")
    assert gray.startswith("m.tflite: 이 모델은 회색 이미지에 nan, 0.5로 답합니다") and gray.endswith(hint)
    assert weight.startswith("keras_model.h5: 가중치 dense/kernel에 NaN이나") and weight.endswith(hint)


def test_two_servers_installing_the_browser_font_at_once_both_succeed(tmp_path, monkeypatch):
    """Both wrote one NanumGothic.tmp: when the second had written it and the first renamed it, the
    second's rename found nothing and its server failed to start."""
    from fer_core import i18n

    if i18n.hangul_font_path() is None:
        pytest.skip("no Hangul font installed (koreanize-matplotlib)")
    web_safe, nested = i18n._web_safe, []

    def second_server_meanwhile(font):  # the other server writes its copy between this one's save and rename
        font = web_safe(font)
        save = font.save

        def save_then_interleave(file):
            save(file)
            if not nested:
                nested.append(None)
                nested[0] = i18n.install_browser_font(tmp_path)
        font.save = save_then_interleave
        return font

    monkeypatch.setattr(i18n, "_web_safe", second_server_meanwhile)
    target = i18n.install_browser_font(tmp_path)
    assert target == nested[0] == tmp_path / "NanumGothic.ttf" and target.stat().st_size > 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["NanumGothic.ttf"]  # no temporary file left


@pytest.mark.parametrize("language", ["en", "ko"])
def test_error_messages_name_commands_without_backticks(language):
    """Errors reach the dashboard escaped as literal text (``ui.common.shown_literally``), where a
    command in backticks (`docker pull X`) showed its backticks; messages.json holds the errors."""
    import json

    messages = json.loads((Path(i18n.__file__).parent / "locales" / language / "messages.json").read_text("utf8"))
    assert [key for key, text in messages.items() if "`" in text] == []
