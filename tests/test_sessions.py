"""Several researchers on one dashboard server: what one session sees must be its own.

Streamlit runs every session's script in threads of one process; these tests run two AppTest
sessions side by side, each in its own language, and check what is shared between them.
"""

from __future__ import annotations

import gc
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import run_app
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.config import REPO_ROOT
from fer_core.i18n import catalogue
from fer_core.predictors.base import Predictor
from ui.common import ZIP


def _callback_and_fragment_page() -> None:
    """A widget callback and a fragment writing catalogue text, as the CNN page's live view does."""
    import streamlit as st

    from fer_core.i18n import t
    from ui.common import choose_language

    def remember() -> None:
        st.session_state["said_in_callback"] = t("nav.compare")

    choose_language()
    st.button("callback", key="callback", on_click=remember)

    @st.fragment
    def live() -> None:
        if st.button("fragment", key="fragment"):
            st.session_state["said_in_fragment"] = t("nav.compare")

    live()


def _session(lang: str) -> AppTest:
    at = AppTest.from_function(_callback_and_fragment_page, default_timeout=30)
    at.query_params["lang"] = lang
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_callbacks_and_fragment_reruns_write_in_the_sessions_language():
    """A fragment's rerun and a callback run before the page sets the language (a fresh thread):
    a Korean session's CNN live view turned English after its first second. With an English
    session beside it, neither may take the other's language."""
    korean, english = _session("ko"), _session("en")
    korean.button(key="callback").click().run()
    english.button(key="callback").click().run()
    korean.button(key="fragment").click().run()
    english.button(key="fragment").click().run()
    assert korean.session_state["said_in_callback"] == catalogue("ko")["nav.compare"]
    assert korean.session_state["said_in_fragment"] == catalogue("ko")["nav.compare"]
    assert english.session_state["said_in_callback"] == catalogue("en")["nav.compare"]
    assert english.session_state["said_in_fragment"] == catalogue("en")["nav.compare"]


def test_outside_a_session_the_language_is_the_threads_own():
    """Away from any session (the CLI, a report download) the language is what the code set."""
    import threading

    import ui.common  # noqa: F401  (registers the session's language as the fallback)
    from fer_core.i18n import current_language, using_language

    seen: list[str] = []

    def work() -> None:
        seen.append(current_language())
        with using_language("ko"):
            seen.append(current_language())
        seen.append(current_language())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == ["en", "ko", "en"]


# -- temporary folders of Compare: a zip's photos, a comparison's images ----------------------------
COMPARE_PAGE = str(REPO_ROOT / "pages" / "6_Compare.py")
LABELS = ["happy", "happy", "sad", "sad", "angry", "angry"]
ANSWERS = ["happy", "sad", "sad", "sad", "angry", "happy"]  # two wrong: the page shows their thumbnails


class GrayLookup(Predictor):
    """A pixel model answering from the image's gray value (no face measuring needed)."""

    kind = "test"
    name = "lookup"
    classes = ("angry", "happy", "sad")

    def __init__(self) -> None:
        self.model = ANSWERS

    def predict_proba(self, faces, progress=None):
        return np.array([np.eye(3)[self.classes.index(ANSWERS[int(img[0, 0, 0])])]
                         for img in self.pixels_of(faces)])


def _zip(offset: int) -> bytes:
    """Six labelled gray squares; ``offset`` makes each zip's bytes (not its answers) differ. The
    members carry a fixed date: a name alone takes the clock's (2 s steps), so the same zip built
    twice could differ and be unpacked twice (a flaky failure in CI)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for value, label in enumerate(LABELS):
            image = io.BytesIO()
            Image.new("L", (48 + offset, 48), value).save(image, format="PNG")
            zf.writestr(zipfile.ZipInfo(f"{label}/{value}.png", date_time=(2020, 1, 1, 0, 0, 0)),
                        image.getvalue())
    return buf.getvalue()


def _compare_session() -> AppTest:
    at = AppTest.from_file(COMPARE_PAGE, default_timeout=120)
    at.session_state["_unsaved_models"] = {"lookup": GrayLookup()}
    run_app(at, 120)
    at.radio(key="cmp_source").set_value(ZIP)
    return run_app(at, 120)


def _upload(at: AppTest, offset: int) -> Path:
    at.file_uploader(key="cmp_zip").set_value((f"photos{offset}.zip", _zip(offset), "application/zip"))
    run_app(at, 120)
    return at.session_state["_held_folders"]["cmp"][0].root


def test_a_sessions_zip_is_its_own_and_goes_with_the_session(models_dir):
    """Unpacked zips were kept in a cache shared by every session: a researcher's photos stayed on
    the server after their session ended, until two other uploads pushed them out."""
    mine, theirs = _compare_session(), _compare_session()
    my_root, their_root = _upload(mine, 0), _upload(theirs, 1)
    assert my_root != their_root and len(list(my_root.rglob("*.png"))) == 6
    _upload(mine, 0)  # the same zip again: unpacked once
    assert mine.session_state["_held_folders"]["cmp"][0].root == my_root
    del mine
    gc.collect()
    assert not my_root.exists(), "the session is gone: its photos must not stay"
    assert their_root.is_dir() and len(list(their_root.rglob("*.png"))) == 6


def test_a_comparison_keeps_reading_its_images_after_later_choices(models_dir):
    """A session holds its last two test sets only: results two choices old lost their images (no
    thumbnails, no explanation, an image-less report), sooner when other sessions draw too."""
    at = _compare_session()
    root = _upload(at, 0)
    at.multiselect(key="cmp_models").set_value(["lookup"])
    at.button(key="cmp_run").click()
    run_app(at, 120)
    assert at.session_state["cmp_result"]["comparison"].reports["lookup"].accuracy == round(4 / 6, 6)
    for offset in (1, 2):  # two other zips looked at since
        _upload(at, offset)
    gc.collect()
    assert root.is_dir() and len(list(root.rglob("*.png"))) == 6
    run_app(at, 120)
    assert at.session_state["cmp_result"]["root"] == str(root)
    assert not any("no longer available" in c.value for c in at.caption)


def test_a_second_sessions_ray_run_on_the_same_images_is_told_in_the_sessions_words(monkeypatch):
    """The Ray engine's refusal names an --out and a cache file a dashboard user never chose; the
    AU page says another session is measuring these images instead, in the session's language."""
    from fer_core.errors import FerError
    from fer_core.i18n import using_language
    from fer_core.measure import ray_engine
    from ui import common

    def busy(items, out, **_):
        raise ray_engine.OutputInUse(f"another run is writing {out}; wait for it or choose another --out")

    monkeypatch.setattr(ray_engine, "extract_on_ray", busy)
    for lang, words in (("en", "Another session is measuring these images"), ("ko", "다른 세션이 Ray")):
        with using_language(lang), pytest.raises(FerError) as refused:
            common._keep_ray_run([], lambda table, cancelled: None, lambda done, total: None, lambda: False,
                                 "127.0.0.1:6379", None, [])
        assert str(refused.value).startswith(words) and "--out" not in str(refused.value)
