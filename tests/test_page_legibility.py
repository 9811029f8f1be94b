"""What a reader sees on the pages, found by looking at them in a browser: Hangul is never set in the
code font (it has no Hangul: boxes), two inputs never share a label, thumbnails are captioned by whole
file names, and the Masks downloads are not cut off."""

from __future__ import annotations

import re

from apptest_helpers import page_texts, run_app
from streamlit.testing.v1 import AppTest

from fer_core import config
from fer_core.i18n import catalogue

HOME = str(config.REPO_ROOT / "app.py")
EXPLORER = str(config.REPO_ROOT / "pages" / "1_Dataset_explorer.py")
MASKS = str(config.REPO_ROOT / "pages" / "7_Masks.py")
T = 90
_CODE = re.compile(r"`([^`]+)`")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def hangul_in_code(values: list[str]) -> list[str]:
    """The `code spans` of these texts that hold Hangul (drawn in a monospace font without it)."""
    return [span for value in values for span in _CODE.findall(value) if _HANGUL.search(span)]


def _page(path: str, lang: str) -> AppTest:
    at = AppTest.from_file(path)
    at.query_params["lang"] = lang
    return run_app(at, T)


def test_korean_home_sets_no_hangul_in_the_code_font(models_dir, monkeypatch, tmp_path):
    """The data folder's note '(기본값; ...)' was inside the path's code span, and without datasets the
    layout help's `<폴더>/<감정>/*.jpg` too: boxes in the browser."""
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    at = _page(HOME, "ko")
    shown = page_texts(at)
    assert hangul_in_code(shown) == []
    assert any("(기본값; 바꾸려면 FER_DATA_DIR를 설정하세요)" in m for m in shown)
    assert any(m.startswith("- **모델**: `") and m.endswith("`") for m in shown)  # no trailing space
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "nowhere"))
    without = page_texts(_page(HOME, "ko"))
    assert any("이미지 데이터셋이 없습니다" in m for m in without) and hangul_in_code(without) == []


def test_no_korean_message_sets_hangul_in_the_code_font():
    """Every Korean catalogue entry, including those a page shows only on some paths."""
    found = {key: spans for key, value in catalogue("ko").items() if isinstance(value, str)
             for spans in [hangul_in_code([value])] if spans}
    assert found == {}


def test_masks_page_names_its_two_seeds_apart(models_dir):
    """The test set's seed and the mask's seed sat on one screen, both labelled 'Seed'."""
    for lang in ("en", "ko"):
        at = _page(MASKS, lang)
        labels = [n.label for n in at.number_input]
        assert len(labels) == len(set(labels)), labels
        assert at.number_input(key="mask_draw_seed").label == {"en": "Mask seed", "ko": "마스크 시드"}[lang]


def test_explorer_captions_sample_images_by_their_whole_name(models_dir, fer_val):
    """Captions were the first 18 characters of the file name: 'Training_11820572.' or '...71.j'."""
    at = _page(EXPLORER, "en")
    at.selectbox[0].set_value("val")
    run_app(at, T)
    captions = [img.caption for element in at.image for img in element.proto.imgs]
    assert len(captions) >= 6 * 4
    names = {p.stem for p in (fer_val).rglob("*") if p.is_file()}
    assert all(c in names or (c.endswith("…") and len(c) == 20) for c in captions), captions[:8]
    assert not any(c.endswith(".") or re.search(r"\.[a-z]{1,3}$", c) for c in captions), captions[:8]


def test_no_page_text_names_a_raw_table_column_for_a_missing_face():
    """The explorer said "(success 0)": OpenFace's column as it is in the table, not words."""
    for lang in ("en", "ko"):
        texts = catalogue(lang)
        assert [k for k, v in texts.items() if re.search(r"\bsuccess\s*[=:]?\s*0\b", v)] == [], lang
    assert "the face tracker did not succeed" in catalogue("en")["explorer.no_face_rows"]
    assert "얼굴 추적기" in catalogue("ko")["explorer.no_face_rows"]
