"""Streamlit glue every page shares: the page frame, error display, caches and progress bridges.

Only Streamlit concerns live here: models and MediaPipe load once per process
(``st.cache_resource``), tables once per content (``st.cache_data``), every failure becomes one
readable line instead of a traceback, and long work reports into progress bars. What is done
(loading, measuring, comparing, saving) is ``fer_core``'s.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw

from fer_core import config, i18n
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import DatasetError, FerError, one_line
from fer_core.i18n import t
from fer_core.images import FILE_COLUMNS, IMAGE_SUFFIXES, class_counts, csv_delimiter, unpack_image_zip
from fer_core.manifest import ModelEntry

log = logging.getLogger("fer_dashboard")

# Pages, in the order of the sidebar; used for links. Material icons ship with Streamlit (emoji
# need a colour-emoji font, which many Linux machines lack), but only for links and messages: given
# to st.navigation, the page's icon became the tab's, fetched from Google's font servers.
# The middle field is the page's title key in the ``nav`` catalogue (shown in the chosen language).
PAGES: tuple[tuple[str, str, str], ...] = (
    ("pages/1_Dataset_explorer.py", "nav.dataset_explorer", ":material/bar_chart:"),
    ("pages/2_AU_model.py", "nav.au_model", ":material/tune:"),
    ("pages/3_Try_it.py", "nav.try_it", ":material/photo_camera:"),
    ("pages/4_CNN.py", "nav.cnn", ":material/memory:"),
    ("pages/5_Teachable_Machine.py", "nav.teachable", ":material/school:"),
    ("pages/6_Compare.py", "nav.compare", ":material/compare_arrows:"),
    ("pages/7_Masks.py", "nav.masks", ":material/masks:"),
)
IMAGE_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]  # what load_image decodes here
# What au_table.read reads (it goes by the bytes): Excel's "Unicode text" is a .txt, a TSV a .tsv; a
# workbook is accepted here so that the reader says how to save it as CSV, not the uploader "wrong type"
TABLE_TYPES = ["csv", "tsv", "txt", "gz", "bz2", "xz", "parquet", "xlsx", "xls", "ods"]


def data_layout_help() -> str:
    """The expected dataset layout, in the current language."""
    return t("common.data_layout")


# -- language ----------------------------------------------------------------------------------
def _wanted_language() -> str:
    """The address's ``?lang=`` first (links can be shared), then this session's choice."""
    return i18n.normalise(st.query_params.get("lang") or st.session_state.get("_lang"))


def _session_language() -> str | None:
    """This session's language when called from its script thread (a fragment's rerun, a widget's
    callback), else None: the download of a report runs outside any session and passes its own."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return _wanted_language() if get_script_run_ctx(suppress_warning=True) is not None else None


i18n.follow_language(_session_language)


def choose_language() -> str:
    """The sidebar's language selector, kept in the address (``?lang=ko``) and the session.

    Called by ``app.py`` before the page runs, so every page, chart and message of this run is
    written in the chosen language (``fer_core.i18n.t`` reads it).
    """
    lang = _wanted_language()
    choice = st.sidebar.selectbox(i18n.catalogue(lang)["nav.language"], list(i18n.LANGUAGES),
                                  index=list(i18n.LANGUAGES).index(lang), key="_lang_choice",
                                  format_func=i18n.LANGUAGES.__getitem__,
                                  help=i18n.catalogue(lang)["nav.language_help"])
    lang = i18n.set_language(choice)
    st.session_state["_lang"] = lang
    st.session_state[_RAN_APP] = True
    if st.query_params.get("lang") != lang:
        st.query_params["lang"] = lang
    if lang != "en":
        st.html(f"<style>{_UPLOAD_BUTTON_CSS % json.dumps(t('common.upload_button'), ensure_ascii=False)}</style>")
    st.sidebar.html(_PAGE_LANGUAGE_SCRIPT % (json.dumps(lang), json.dumps(t("common.upload_button") if lang != "en" else "",
                                                                         ensure_ascii=False)),
                    unsafe_allow_javascript=True)
    return lang


# Screen readers choose their voice by the page's lang attribute, which Streamlit leaves "en": a
# Korean page was read in an English voice. The upload buttons, whose word is drawn over in the
# page's language (_UPLOAD_BUTTON_CSS), are named in it too: they were read "Upload파일 올리기".
# Checked in Chromium (lang, and each button's accessible name).
_PAGE_LANGUAGE_SCRIPT = """<script>
(() => {
  document.documentElement.lang = %s;
  window.ferUploadName = %s;
  const name = () => document.querySelectorAll('[data-testid="stFileUploaderDropzone"] button').forEach(b => {
    if (window.ferUploadName) b.setAttribute("aria-label", window.ferUploadName); else b.removeAttribute("aria-label");
  });
  name();
  if (!window.ferUploadNamer) {
    window.ferUploadNamer = new MutationObserver(name);
    window.ferUploadNamer.observe(document.body, {childList: true, subtree: true});
  }
})();
</script>"""


# Streamlit's upload button says "Upload" whatever the page's language, and has no option for
# it: its text is drawn over in the page's language (checked in Chromium, tests/test_e2e_browser.py).
_UPLOAD_BUTTON = '[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p'
_UPLOAD_BUTTON_CSS = _UPLOAD_BUTTON + " {font-size: 0} " + _UPLOAD_BUTTON + "::after {content: %s; font-size: 0.875rem}"


# -- page frame and errors ---------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def favicon() -> Image.Image:
    """The tab's icon, a face drawn here and served by the dashboard itself: a ":material/...:" icon
    as a page's (set_page_config, or st.navigation's page icon) was fetched from Google's font
    servers on every page view, and an emoji needs a colour-emoji font many Linux machines lack."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.ellipse((2, 2, 61, 61), fill="#1f77b4")
    for x in (20, 38):
        draw.ellipse((x, 20, x + 7, 28), fill="white")
    draw.arc((16, 22, 47, 48), start=20, end=160, fill="white", width=5)
    return icon


def page_setup(title: str) -> None:
    """Same page config everywhere (wide layout: heatmaps need the room).

    ``title`` is a catalogue key (``nav.compare``) or, for old callers, the English title.
    """
    _run_through_the_app()
    _keep_choices()
    i18n.set_language(_wanted_language())
    shown = t(title) if title.startswith("nav.") else title
    st.set_page_config(page_title=f"{shown} · FER workbench", page_icon=favicon(), layout="wide")


_KEPT = "_kept_choices"  # the keys of widgets made with kept_choice()


def show_crops_hint(n: int) -> None:
    """Where ``n`` images without a face found look like face crops (``images.looks_like_face_crop``):
    the page's Face crops switch measures them as crops."""
    if n:
        from fer_core.pipeline import SMALL_IMAGE_SIDE

        st.info(t("common.no_face_crops_hint", n=f"{n:,}", side=SMALL_IMAGE_SIDE), icon=":material/crop_free:")


def show_evaluation(ev, key: str, warn: bool = True, advice: bool = True) -> None:
    """Per-emotion accuracy bars and the confusion matrix of an evaluation (and, with ``warn``,
    a warning when the model has not learned to tell the emotions apart; ``advice``: with how to
    train a better one)."""
    from fer_core.evaluation.metrics import degenerate_model_warning
    from fer_core.figures import plots

    left, right = st.columns(2)
    left.plotly_chart(plots.per_class_accuracy_bars(ev.per_class, overall=ev.accuracy, title=t("cnn.per_class_title")),
                      key=f"{key}_bars")
    right.plotly_chart(plots.confusion_heatmap(ev, title=t("cnn.confusion_title"), compact=True),
                       key=f"{key}_confusion")
    warning = degenerate_model_warning(ev, advice=advice) if warn else None
    if warning:
        st.warning(warning)


METRICS_PER_ROW = 3  # five side by side were cut to "Validati…" and "70.…" in an 800 px window


def caption_aus_read(model) -> None:
    """"This model reads N of the 17 AUs: …" under a model that reads fewer (an upper-face model):
    its sentence can name only those (the AU model page and Try it)."""
    from fer_core.predictors.base import some_aus_read

    reads = some_aus_read(model)
    if reads:
        st.caption(t("au_model.uses_aus", n=len(reads), aus=", ".join(reads)))


def metric_row(ev, extra: dict[str, str], label: str | None = None) -> None:
    """The accuracy (with its 95% interval), macro F1 and ``extra`` figures of an evaluation, in rows."""
    from fer_core.evaluation.metrics import share_text

    lo, hi = (share_text(v, 1, percent=True) for v in ev.accuracy_ci95)
    shown = [(label or t("cnn.val_accuracy"), share_text(ev.accuracy, 1, percent=True), t("cnn.ci_help", lo=lo, hi=hi)),
             (t("cnn.macro_f1"), f"{ev.macro_f1:.3f}", None), *((name, value, None) for name, value in extra.items())]
    for start in range(0, len(shown), METRICS_PER_ROW):
        for col, (name, value, help_text) in zip(st.columns(METRICS_PER_ROW), shown[start:start + METRICS_PER_ROW]):
            col.metric(name, value, help=help_text)


def kept_choice(key: str) -> str:
    """``key``, for a widget whose choice should still be there when the person comes back to it.

    Streamlit forgets a widget's value on a run that does not draw it: a folder typed on one page
    was gone after a look at another page, or after switching the test set's source and back.
    page_setup hands these values back to Streamlit as session state on every run (the way its
    documentation keeps a widget's value across pages). Not for buttons and uploaders, whose
    values session state cannot set."""
    st.session_state.setdefault(_KEPT, {})[key] = True
    return key


def _keep_choices() -> None:
    for key in st.session_state.get(_KEPT, {}):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


_RAN_APP = "_ran_app"  # this session has run app.py (its navigation), set by choose_language


def _run_through_the_app() -> None:
    """A page run by itself is run again through app.py: its sidebar, language and workers.

    With a ``pages/`` folder, Streamlit (1.67) runs a page's script alone for an address opened
    before any session has run app.py's ``st.navigation`` (a bookmark of /Compare on a fresh
    server): its sidebar listed file names ("app", no Home) and had no language selector."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get(_RAN_APP):
        PagesManager.uses_pages_directory = False
        st.rerun()


def model_version(model) -> str:
    """A chosen model's name with what can change under it: a manifest entry's checksum; for an
    unsaved model (a Predictor) which object it is, since a retrained one keeps its default name,
    and a Teachable model's class mapping (remapped on its page under the same name). The
    results keep the models they ran, so an object's id is not reused while they show. Compare
    and Masks mark their results as the previous choice's when a chosen model's version changed."""
    name = getattr(model, "name", str(model))
    if hasattr(model, "predict_proba"):
        # the network or fitted model it wraps: a page may wrap the same one anew on every rerun
        mapping = getattr(getattr(model, "mapping", None), "emotions", None)
        return f"{name}:{id(getattr(model, 'model', model))}:{mapping or ''}"
    return f"{name}:{getattr(model, 'sha256', '') or ''}"


# What Streamlit's Markdown turns into something other than the text itself: links and images
# ("[x](url)", "![x](url)": an image is fetched from its server when the page opens), autolinks and
# tags ("<...>"), math ("$"), code, emphasis and strike-through, and the backslash that escapes them.
_MARKDOWN_ACTIVE = re.compile(r"([\\`*~\[\]<>$])")
# "_" emphasises only at a word's edge (__init__.jpg read as a bold "init"); inside a word
# (keras_model.h5) it is text and stays as typed.
_UNDERSCORES_AT_EDGE = re.compile(r"(?<![^\W_])_+|_+(?![^\W_])")
# At the start of the text "#" makes a heading, "-" and "+" a list item or a rule ("- x.jpg", "---")
# and "1." or "1)" before a space a numbered item ("1. x.jpg"); "*" and ">" are escaped everywhere.
_BLOCK_MARKER_AT_START = re.compile(r"^(\s*)([#+-]|\d{1,9}[.)](?=\s|$))")
# Streamlit's own Markdown: ":smile:" (and ":material/home:") becomes an icon, ":red[x]" coloured text.
# Both colons of such a shortcode, and the colon of a directive, are escaped (checked in Chromium:
# an escaped opening colon alone still made the emoji, and an icon's "/" is escaped too); a colon
# before a space stays as typed.
_SHORTCODE_OPENING = re.compile(r":(?=[\w+\-/]+:)")
_SHORTCODE_CLOSING = re.compile(r"(\\:[\w+\-/]+):")
_DIRECTIVE = re.compile(r":(?=[A-Za-z][\w-]*\\\[)")
# GitHub's autolinks: "http://x", "https://x", "www.x" and "a@b.example" become links, and no
# backslash escape stops them (checked in Chromium). An invisible word joiner (U+2060) after
# "http"/"https"/"www" and before "@" does: the text shows as typed, as plain text.
_AUTOLINK = re.compile(r"(?i)(?<![a-z0-9])(https?(?=://)|www(?=\.))|(?=@)")
_WORD_JOINER = "\u2060"


def shown_literally(text: object) -> str:
    """``text`` someone else chose (a file, folder or class name, an error naming one) for a
    Markdown-interpreting call (``st.markdown``, ``st.caption``, ``st.success``, widget labels):
    shown as typed on one line, never as a link (a bare URL included), an image, an icon, math
    or formatting."""
    escaped = _AUTOLINK.sub(lambda start: start.group() + _WORD_JOINER, " ".join(str(text).splitlines()))
    escaped = _MARKDOWN_ACTIVE.sub(r"\\\1", escaped)
    escaped = _UNDERSCORES_AT_EDGE.sub(lambda run: "\\_" * len(run.group()), escaped)
    escaped = _SHORTCODE_CLOSING.sub(lambda code: code[1].replace("/", "\\/") + "\\:",
                                     _SHORTCODE_OPENING.sub(r"\\:", escaped))
    escaped = _DIRECTIVE.sub(r"\\:", escaped)
    return _BLOCK_MARKER_AT_START.sub(lambda start: f"{start[1]}{start[2][:-1]}\\{start[2][-1]}", escaped)


def shown_in_code(text: object) -> str:
    """``text`` someone else chose, for a Markdown code span (`` `{name}` ``), where nothing is
    interpreted but a backtick, which would end the span: that one becomes a quote."""
    return " ".join(str(text).splitlines()).replace("`", "'")


@dataclass(frozen=True)
class Described:
    """A text kept with a result and said in the reader's language whenever it is shown (``str``),
    not in the language it was made in: Compare's and Masks' test-set line stayed English after
    a switch to Korean. ``plain()``: the same text without its Markdown code spans, for a file
    (an HTML report is built in its own language, so it is said there too)."""

    key: str
    args: tuple[tuple[str, Any], ...] = ()
    code_spans: bool = True

    @classmethod
    def of(cls, key: str, **args: Any) -> "Described":
        return cls(key, tuple(args.items()))

    def plain(self) -> "Described":
        return Described(self.key, tuple((k, v.plain() if isinstance(v, Described) else v) for k, v in self.args),
                         code_spans=False)

    def __str__(self) -> str:
        text = t(self.key, **dict(self.args))
        # shown_in_code made the names' own backticks quotes: those left are the spans' ends
        return text if self.code_spans else text.replace("`", "")


def show_error(exc: BaseException | str, prefix: str | None = None, warning: bool = False,
               literal: bool = False) -> None:
    """Show a failure as one readable line (``st.error`` or ``st.warning``), never a traceback.
    An exception's text (or ``literal`` text: an error kept from one) names files and classes as
    uploaded: it is shown literally."""
    text = i18n.message(one_line(exc))
    if literal or isinstance(exc, BaseException):
        text = shown_literally(text)
    if prefix and not text.startswith(prefix):
        text = f"{prefix}: {text}"
    if getattr(exc, "advice", None):
        text = f"{text} {exc.advice}"
    (st.warning if warning else st.error)(text, icon=":material/warning:" if warning else ":material/error:")


def run_page(body: Callable[[], None]) -> None:
    """Run a page body so that nothing unexpected reaches the browser as a traceback.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, page switches) raises
    ``BaseException`` subclasses and passes through untouched.
    """
    try:
        body()
    except FerError as exc:
        show_error(exc)
    except Exception as exc:
        log.exception("unexpected error in page")
        show_error(t("common.unexpected", error=shown_literally(one_line(exc))))


# -- what a page keeps for one result in session state -------------------------------------
def kept_for(result, store: str, key: tuple):
    """What session-state ``store`` keeps for this very ``result`` (any object) under ``key``, else
    None. An entry holds the result itself: a bare ``id(result)`` is reused by Python once the
    result is dropped elsewhere, and would hand a new photo another photo's answers."""
    held = st.session_state.setdefault(store, {}).get((id(result), *key))
    return held[1] if held is not None and held[0] is result else None


def keep_for(result, store: str, key: tuple, value, limit: int = 64):
    """Keep ``value`` for ``result`` (see ``kept_for``), oldest entries dropped past ``limit``."""
    kept: dict = st.session_state.setdefault(store, {})
    kept[(id(result), *key)] = (result, value)
    while len(kept) > limit:
        kept.pop(next(iter(kept)))
    return value


# -- MediaPipe and models, shared by every session ---------------------------------------------
def manifest_entries() -> list[ModelEntry]:
    from fer_core.manifest import read_manifest

    return read_manifest()


def warn_manifest_problems() -> None:
    """A warning for each manifest entry that could not be read, and so is left out of the lists:
    one entry mistyped by hand had stopped every page that lists models, the bundled ones too."""
    from fer_core.manifest import read_manifest

    for line in read_manifest().problems:
        st.warning(t("common.manifest_left_out", problem=line))


def entries_of(explains: bool | None = None, inputs: str | None = None) -> list[ModelEntry]:
    """Manifest entries whose kind explains (or not) / takes these inputs; unknown kinds left out."""
    from fer_core.predictors.registry import kinds

    known = kinds()
    return [e for e in manifest_entries() if e.kind in known
            and (explains is None or known[e.kind].explains == explains)
            and (inputs is None or known[e.kind].inputs == inputs)]


@st.cache_resource(show_spinner=False, max_entries=16)
def _predictor(entry_json: str, models_now: str = "", base: str = ""):
    """``models_now``: for an ensemble, every manifest entry's name and SHA-256, so a member
    retrained while the server runs gives a fresh load (which refuses the stale ensemble) instead
    of the kept one averaging its old weights with the new member's answers elsewhere on the page.
    ``base``: the folder of the manifest that lists the entry (not in its JSON), where its file is:
    without it a FER_MODELS_DIR elsewhere had its models read from the repository's models/."""
    from fer_core.predictors.registry import load_predictor

    entry = ModelEntry.from_dict(json.loads(entry_json))
    entry.base = Path(base) if base else None
    return load_predictor(entry)


def load_predictor(entry: ModelEntry):
    """A manifest entry's Predictor, loaded once per file version and kept for the process.

    The spinner (shown only when loading takes over half a second: not for a cached model) says
    that TensorFlow starts only for a model that needs it, while it is not loaded in this process."""
    from fer_core.predictors.registry import needs_tensorflow

    slow = "tensorflow" not in sys.modules and needs_tensorflow(entry)
    text = t("loading.model_tf") if slow else t("loading.model")
    with st.spinner(text):
        from fer_core.predictors.ensemble import KIND as ENSEMBLE_KIND

        models_now = (json.dumps([(e.name, e.sha256) for e in manifest_entries()])
                      if entry.kind == ENSEMBLE_KIND else "")
        return _predictor(json.dumps(entry.to_dict(), sort_keys=True), models_now, str(entry.base or ""))


# -- tables and image folders ------------------------------------------------------------------
def derived_tables() -> dict[str, Path]:
    """The AU tables the project ships in data/ (no images needed), by display name."""
    return {p.name: p for p in sorted(config.data_dir().glob("*_au.csv*"))}


@st.cache_data(show_spinner=False, max_entries=8)
def _au_table_at(path: str, stamp: float) -> pd.DataFrame:
    from fer_core import au_table

    return au_table.read(path)


def load_au_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found; pick an existing AU table")
    with st.spinner(t("common.reading_table")):  # the spinner in the page's language, not the cache's
        return _au_table_at(str(path), path.stat().st_mtime)


def au_table_from_bytes(data: bytes, name: str) -> pd.DataFrame:
    with st.spinner(t("common.reading_upload")):
        return _au_table_of(data, name)


@st.cache_data(show_spinner=False, max_entries=4)
def _au_table_of(data: bytes, name: str) -> pd.DataFrame:
    from fer_core import au_table

    buf = io.BytesIO(data)
    buf.name = name
    return au_table.read(buf)


def openface_uploads_table(files: list[tuple[str, bytes]]) -> pd.DataFrame:
    """Several OpenFace per-image CSVs, or zips of the folder OpenFace wrote (``-out_dir``), as
    ``import-openface`` reads a folder: each upload on its own, labelled by its emotion folder or
    an emotion-prefixed name."""
    with st.spinner(t("common.reading_upload")):
        return _openface_uploads_of(tuple(files))


@st.cache_data(show_spinner=False, max_entries=2)
def _openface_uploads_of(files: tuple[tuple[str, bytes], ...]) -> pd.DataFrame:
    from fer_core.measure.openface_csv import import_openface_uploads

    return import_openface_uploads(files)


def dataset_listing(root: str, classes: tuple[str, ...] | None = None, every_folder: bool = False):
    """The folder's images and the image-like files it skips (with why); ``every_folder``:
    ``scan_images``'."""
    with st.spinner(t("common.listing_images")):
        return _listing_of(root, classes, _folder_stamp(root, every_folder), every_folder)


def _folder_stamp(root: str, deep: bool = False) -> tuple[int, ...]:
    """The modification times of a folder and of the folders in it: a file deleted, added or renamed
    changes its folder's, so the listing (cached for every session) is made again at once. Photos
    deleted from a study were still listed, and shown, to a new session for two minutes."""
    stamps = []
    if deep:  # every folder under it, as the listing of every subfolder reads them
        for folder, _folders, _files in os.walk(root):
            with contextlib.suppress(OSError):
                stamps.append(os.stat(folder).st_mtime_ns)
        return tuple(stamps)
    with contextlib.suppress(OSError):
        stamps.append(os.stat(root).st_mtime_ns)
        with os.scandir(root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir():
                        stamps.append(entry.stat().st_mtime_ns)
    return tuple(stamps)


@st.cache_data(show_spinner=False, ttl=120, max_entries=8)
def _listing_of(root: str, classes: tuple[str, ...] | None = None, stamp: tuple[int, ...] = (),
                every_folder: bool = False):
    from fer_core.images import scan_images

    listing = scan_images(root, classes, every_folder)
    if not listing.items and not listing.skipped:
        raise DatasetError(f"{root}: no images found. {data_layout_help()}")
    return listing


def dataset_items(root: str, classes: tuple[str, ...] | None = None, every_folder: bool = False):
    """The folder's images; what it passes over (a folder not named after an emotion, a video) is
    said above the page's results, else a researcher reads the rest as the whole dataset."""
    listing = dataset_listing(root, classes, every_folder)
    if not listing.items:  # show_error escapes the names, not the layout advice
        first = listing.skipped[0] if listing.skipped else None
        error = DatasetError(f"{root}: no readable images found." + (f" {first.file}: {first.reason}." if first else ""))
        error.advice = data_layout_help()
        raise error
    if listing.skipped:
        examples = [f"{shown_literally(s.file)}: {i18n.reason(s.reason)}" for s in listing.skipped[:3]]
        st.warning(t("common.passed_over", n=f"{len(listing.skipped):,}", examples="; ".join(examples)
                     + ("; …" if len(listing.skipped) > 3 else "")), icon=":material/folder_off:")
    return listing.items


# What a table shows where it has no number (a model not measured, an emotion without images):
# Streamlit's own placeholder is the word "None".
MISSING = "–"


def against_text(ex) -> str:
    """'Speaking against it' under an explanation (Try it, Compare): AUs that count by being there,
    with their intensity, then those that count by being weaker than the model's usual value:
    below the 'present' threshold called absent (not 'AU12 (0.0)'), above it "weaker than usual"
    (not 'AU06 (0.7)', read as its presence speaking against), and masked ones unknown."""
    from fer_core.au_table import au_label

    known = [a for a in ex.against if a.intensity == a.intensity]
    present = [f"{au_label(a.au)} ({a.intensity:.1f})" for a in known if a.stronger]
    weak = [f"{au_label(a.au)} ({a.intensity:.1f})" for a in known if a.weaker_than_usual]
    absent = [au_label(a.au) for a in known if not a.stronger and not a.present]
    unknown = [au_label(a.au) for a in ex.against if a.intensity != a.intensity]  # NaN: hidden by a mask
    parts = [", ".join(present)] if present else []  # "; " only between the groups
    if weak:
        parts.append(t("try_it.weak_list", aus=", ".join(weak)))
    if absent:
        parts.append(t("try_it.absent_list", aus=", ".join(absent)))
    if unknown:
        parts.append(t("try_it.unknown_list", aus=", ".join(unknown)))
    return t("try_it.against", aus="; ".join(parts))


def reading_notes(ex) -> list[str]:
    """Cautions on the AUs a sentence and its "speaking against it" line name, as this workbench
    measures them from the face landmarks (Try it): an AU whose mean per emotion disagrees with
    OpenFace's (a teacher read "sad, because of AU15" with no word that the embedded AU15 does not
    follow OpenFace's), and the two AUs whose source is not what their name says (AU23 is lips
    pressed; AU45 on a photo is closed eyes: "AU23 lip tightener absent" against happy was read at
    face value); and an MLP's reasons being estimates. An AU-bottleneck network's reasons are its
    own AU reading: a note names those it follows loosely (``loosely_read``), before the extractor's
    (which it learned to read)."""
    from fer_core.au_table import au_label
    from fer_core.measure.au_mapping import LOW_PROFILE_AGREEMENT, READ_AS

    named = list(dict.fromkeys(c.au for c in (*ex.reasons, *ex.against)))
    notes = []
    if "aus_network" in ex.extra:  # an AU-bottleneck network: the AUs are its own reading of the extractor's
        loose = [f"{au_label(au)} (r {r:.2f})" for au, r in ex.extra.get("loosely_read", {}).items()]
        notes += [t("try_it.loosely_read", aus=", ".join(loose))] if loose else []
    # the extractor's AUs, which the network learned to read, agree poorly with OpenFace's for these
    low = [f"{au_label(au)} (r {LOW_PROFILE_AGREEMENT[au]:.2f})" for au in named if au in LOW_PROFILE_AGREEMENT]
    notes += [t("try_it.low_agreement", aus=", ".join(low))] if low else []
    if ex.extra.get("contribution_method", "").startswith("occlusion"):
        notes.append(t("try_it.occlusion_note"))
    return notes + [t(f"try_it.read_{au}") for au in named if au in READ_AS]


def embedded_au_caveat(columns=None) -> str | None:
    """Under an AU model's weights when it learned from the embedded extractor's AUs: which of them
    do not follow OpenFace's, and the two whose source is not what their name says. ``columns``:
    the AUs the model reads (an upper-face model's caveat named mouth AUs it never reads); None
    when it reads none of those listed."""
    from fer_core.au_table import au_code, au_label
    from fer_core.measure.au_mapping import LOW_PROFILE_AGREEMENT

    read = None if columns is None else {au_code(c) for c in columns}
    listed = [f"{au_label(au)} (r {r:.2f})" for au, r in LOW_PROFILE_AGREEMENT.items() if read is None or au in read]
    return t("au_model.embedded_caveat", aus=", ".join(listed)) if listed else None


def warn_passed_over(table: pd.DataFrame) -> pd.Series:
    """Say which folders and videos an extracted table's extraction passed over (``au_table.passed_over``,
    as ``dataset_items`` says them for a folder), and return the mask of their rows: no images."""
    from fer_core import au_table

    passed = au_table.passed_over(table)
    if passed.any():
        examples = [f"{shown_literally(f)}: {i18n.reason(str(r))}"
                    for f, r in table.loc[passed, ["file", "reason"]].head(3).itertuples(index=False)]
        st.warning(t("common.passed_over", n=f"{int(passed.sum()):,}", examples="; ".join(examples)
                     + ("; …" if passed.sum() > 3 else "")), icon=":material/folder_off:")
    return passed


def thumbnail(path: str, side: int = 96, name: str | None = None) -> np.ndarray:
    """An image scaled so its longest side is ``side`` (48 px FER crops are enlarged, crisply);
    ``name``: how an error names it (within its dataset, not by a zip's temporary folder). Cached
    for every session by the file's path and stamp: a photo deleted or replaced is not shown again."""
    try:
        info = os.stat(path)
        stamp = (info.st_mtime_ns, info.st_size)
    except OSError:
        stamp = None  # said by the reading, not cached
    return _thumbnail(path, side, name, stamp)


@st.cache_data(max_entries=2000, show_spinner=False)
def _thumbnail(path: str, side: int, name: str | None, stamp: tuple[int, int] | None) -> np.ndarray:
    from fer_core.images import thumbnail as scaled

    return scaled(path, side, name=name)


@dataclass
class TempFolder:
    """A temporary folder removed when nothing holds it any more (``TemporaryDirectory`` removes
    itself then): a drawn test set is shared through a cache entry and held by the sessions using
    it too (``held``), so another session's choices cannot remove the folder a comparison is
    reading; an unpacked zip is its session's alone. ``key``: what it was made from (an upload's
    digest), to find it again on the next run."""
    tmp: tempfile.TemporaryDirectory
    root: Path
    count: int = 0
    key: str = ""


def held(slot: str, folder: TempFolder) -> TempFolder:
    """``folder``, held by this session beside the one it used before in ``slot`` (results of
    the previous choice stay on the page, marked as such, and still read their images)."""
    kept: dict = st.session_state.setdefault("_held_folders", {})
    kept[slot] = [folder] + [f for f in kept.get(slot, []) if f is not folder][:1]
    return folder


def held_folder(slot: str, root: str | Path) -> TempFolder | None:
    """The temporary folder at ``root`` this session holds in ``slot``, if any: results made from
    it keep it, so they still read their images after two other choices (and other sessions'
    draws) let it go."""
    return next((f for f in st.session_state.get("_held_folders", {}).get(slot, []) if str(f.root) == str(root)),
                None)


def unpacked_zip(digest: str, data: bytes) -> TempFolder:
    """The uploaded zip unpacked into a temporary folder of this session, once per content (a
    folder the session holds for it is reused). Not shared through a cache: a researcher's photos
    stayed on the server after their session ended, until two other uploads pushed them out."""
    for folders in st.session_state.get("_held_folders", {}).values():
        for folder in folders:
            if folder.key == digest:
                return folder
    tmp = tempfile.TemporaryDirectory(prefix="fer_zip_")
    try:
        return TempFolder(tmp, unpack_image_zip(data, Path(tmp.name)), key=digest)
    except BaseException:
        tmp.cleanup()
        raise


@st.cache_resource(show_spinner=False, max_entries=4)
def drawn_test_set(source: str, per_class: int, seed: int, classes: tuple[str, ...]) -> TempFolder:
    """``draw_test_set`` into a temporary folder, once per (source, size, seed, emotions), with the
    ``testset.json`` draw-testset writes: a comparison reads where the set was drawn from in it (a
    network whose epoch that folder chose is said so, as for the CLI's drawn set)."""
    from fer_core.fileio import atomic_write_text
    from fer_core.images import draw_test_set
    from fer_core.provenance import TEST_SET_RECORD, test_set_file_record

    tmp = tempfile.TemporaryDirectory(prefix="fer_testset_")
    try:
        chosen = draw_test_set(source, tmp.name, per_class=per_class, classes=classes, seed=seed)
        record = test_set_file_record(chosen, tmp.name, source=source, per_class=per_class, classes=classes,
                                      seed=seed, command="dashboard: Compare page")
        atomic_write_text(Path(tmp.name) / TEST_SET_RECORD, json.dumps(record, indent=1) + "\n")
        return TempFolder(tmp, Path(tmp.name), len(chosen))
    except BaseException:
        tmp.cleanup()
        raise


def digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def env_summary() -> dict[str, tuple[str, str]]:
    """Where the app reads from, for the home page: each folder and a note to show beside it (apart,
    so that the note is not set in the path's code font, which has no Hangul)."""
    return {
        t("home.env_datasets"): (str(config.datasets_dir()),
                                 "" if os.environ.get("FER_DATA_DIR") else t("home.env_default")),
        t("home.env_models"): (str(config.models_dir()), ""),
        t("home.env_derived"): (str(config.data_dir()), ""),
    }


# -- Teachable Machine uploads -----------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def load_teachable_upload(key: str, _upload):
    """The uploaded export (any of Teachable Machine's three downloads) as a ``TeachablePredictor``
    with its automatic label mapping, once per upload (``key`` is the content digest; the page
    shows its own spinner, in the page's language); it loads even when no class name is an emotion,
    for the page to map. Raises the FerError that says what is wrong."""
    from fer_core.predictors.teachable import load_upload

    return load_upload(_upload, name="teachable")


# -- progress bridges ------------------------------------------------------------------------
def fraction_bar(text: str | None = None):
    """A progress bar and the ``(fraction, text)`` callback that moves it."""
    bar = st.progress(0.0, text=text or t("common.starting"))
    return bar, lambda fraction, label: bar.progress(min(max(float(fraction), 0.0), 1.0), text=label)


def _extraction_lock() -> threading.Lock:
    """One per browser session: held while an extraction (or its cancelling) runs."""
    return st.session_state.setdefault("_extraction_lock", threading.Lock())


def wait_for_extraction(timeout: float = 30.0) -> None:
    """Let a cancelled extraction of this session hand over its rows before the page reads them.

    Streamlit stops the running script and starts the next run at once (fast reruns), so the
    old run may still be saving its partial table while the new one renders.
    """
    lock = _extraction_lock()
    if lock.acquire(timeout=timeout):
        lock.release()


def docker_status() -> tuple[bool, str]:
    """Whether OpenFace can run in Docker here, and if not, why and the command that fixes it."""
    with st.spinner(t("common.asking_docker")):
        return _docker_status()


def forget_docker_status() -> None:
    """Ask the Docker engine again on the next ``docker_status`` (after a pull)."""
    _docker_status.clear()


@st.cache_data(ttl=30, show_spinner=False)
def _docker_status() -> tuple[bool, str]:
    from fer_core.measure.openface_docker import OpenFaceDocker

    return OpenFaceDocker().status()


def translated_reason(file: str, reason: str) -> str:
    """A failure row's reason in the current language. A reason of a whole file (a video that
    could not be read) is the message about that file without its name, and its template in the
    catalogue starts with the name: it is matched with it, then shown without it."""
    named = f"{file}: "
    whole = i18n.message(named + str(reason))
    return whole.removeprefix(named) if whole.startswith(named) else i18n.message(str(reason))


VIDEO_FPS_CHOICES = (1, 2, 5, 10)  # frames per second of video the dashboard offers (Try it, AU model page)


def extract_with_cancel(items: list, label: str, keep: Callable[[pd.DataFrame, bool], None],
                        backend: str = "mediapipe", root: str | None = None, skipped: Sequence = (),
                        ray_address: str | None = None, video_fps: float | None = None,
                        crops: bool = False) -> None:
    """Run an AU extractor on ``items`` with a progress bar; ``keep(table, cancelled)``
    receives the finished rows (it must not touch ``st`` - the run may be stopping).

    ``backend="openface-docker"`` runs OpenFace 2 in its container; a cancel there stops and
    removes the container (its ``finally``) and the partial OpenFace output is discarded.

    Cancel: a click on any widget (the page's Cancel button included) makes Streamlit stop this
    run at its next UI call, the progress update. That stop is caught there and turned into
    ``should_stop``, so ``extract_table`` returns the rows done so far (its cache keeps them too);
    they go to ``keep`` and the stop is re-raised so Streamlit carries on with the new run, which
    waits for this hand-over (``wait_for_extraction``). Faces are measured in one crash-isolated
    worker process, so an image that crashes MediaPipe costs that image, not the server.

    ``ray_address``: measure on that Ray cluster instead (``measure.ray_engine``); a cancelled run's
    rows wait on disk and the next click on the same images measures only the rest.

    ``video_fps``: the folder's videos (``skipped`` lists them) are measured too, after its images,
    at that rate, as ``extract FOLDER`` measures them (the local MediaPipe engine only).

    ``crops``: the images are face crops, measured in face-crop mode (``extract --crops``).
    """

    from fer_core.measure.extract import default_workers, extract_table

    lock = _extraction_lock()
    bar = st.progress(0.0, text=t("common.starting_landmarker", label=label))
    state: dict[str, Any] = {"stop": None}
    progress = _stoppable_progress(bar, state, "common.images_done", label)

    if backend == "openface-docker":
        from fer_core.measure.openface_docker import OpenFaceDocker

        def docker_progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=t("common.images_done_docker", label=label, done=f"{done:,}",
                                                      total=f"{total:,}"))

        with lock:
            keep(OpenFaceDocker().extract(items, progress=docker_progress, root=root, skipped=skipped), False)
        bar.empty()
        return
    with lock:
        if ray_address:
            _keep_ray_run(items, keep, progress, lambda: state["stop"] is not None, ray_address, root, skipped)
        else:
            from fer_core.measure.video import videos_apart

            videos, passed_over = videos_apart(skipped, measured=bool(video_fps))
            table = extract_table(items, workers=default_workers(), use_cache=True, progress=progress,
                                  should_stop=lambda: state["stop"] is not None, root=root, skipped=passed_over,
                                  crops=crops)
            if videos and state["stop"] is None:
                table = _with_videos(table, videos, video_fps, label, bar, state)
            keep(table, state["stop"] is not None)
    if state["stop"] is not None:
        raise state["stop"]
    bar.empty()


def _stoppable_progress(bar, state: dict, key: str, label: str) -> Callable[[int, int], None]:
    """A progress callback drawing ``bar`` with text ``key``. A click makes Streamlit stop the run at
    this UI call: the stop is kept in ``state["stop"]`` (the measuring code's ``should_stop``), and
    nothing more is drawn."""
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

    def progress(done: int, total: int) -> None:
        if state["stop"] is not None:
            return
        try:
            bar.progress(done / max(total, 1), text=t(key, label=label, done=f"{done:,}", total=f"{total:,}"))
        except ScriptControlException as exc:  # rerun or stop requested by a click
            state["stop"] = exc
    return progress


def _with_videos(table: pd.DataFrame, videos: list, fps: float, label: str, bar, state: dict) -> pd.DataFrame:
    """``table`` and the rows of the folder's ``videos`` (``extract_videos``), their progress on
    the same bar; a click stops them as it stops the images (the parts measured are cached)."""
    from fer_core import au_table
    from fer_core.measure.extract import default_workers
    from fer_core.measure.video import extract_videos

    return au_table.concat([table, extract_videos(
        videos, fps=fps, workers=default_workers(), should_stop=lambda: state["stop"] is not None,
        reading=_stoppable_progress(bar, state, "common.videos_read", label),
        progress=_stoppable_progress(bar, state, "common.video_parts_done", label))])


def _keep_ray_run(items: list, keep: Callable[[pd.DataFrame, bool], None], progress: Callable[[int, int], None],
                  should_stop: Callable[[], bool], address: str, root: str | None, skipped: Sequence) -> None:
    """``extract_with_cancel`` on a Ray cluster: the table is kept in the session, its file only
    while a cancelled run waits to be resumed."""
    from fer_core.measure.ray_engine import (
        OutputInUse,
        extract_on_ray,
        foreign_rows,
        forget,
        resume_path,
        run_record,
    )

    out = resume_path(items)
    if foreign_rows(out, run_record(root)):  # a cancelled run's rows the measuring code has changed since
        forget(out)
    try:
        run = extract_on_ray(items, out, root=root, skipped=skipped, address=address, progress=progress,
                             should_stop=should_stop)
    except OutputInUse:  # the same images, another session: its resume file, not an --out of the user's
        raise FerError(t("common.ray_other_session")) from None
    if not run.cancelled:
        forget(out)
    keep(run.table, run.cancelled)


# -- choosers shared by Compare and Masks ------------------------------------------------------
DRAWN = "60-image test set (drawn from a split)"
FOLDER = "A folder on this machine"
ZIP = "Upload a zip of images"
SPLIT = "A whole FER2013 split"


def drawn_classes(prefix: str) -> tuple[str, ...]:
    """The emotions a drawn test set holds: the six, and fear too when every model to be compared
    predicts it (the models chosen on the page's last run, or all of them before any choice), so
    seven-emotion models can be scored on seven emotions without giving a folder."""
    sets = list(_chosen_classes(prefix).values())
    return SEVEN_EMOTIONS if sets and all(set(SEVEN_EMOTIONS) <= set(c) for c in sets) else SIX_EMOTIONS


def _chosen_classes(prefix: str) -> dict[str, tuple[str, ...]]:
    """The emotions of each model to be compared (those chosen on the page's last run, or all of
    them before any choice)."""
    models = {e.name: tuple(e.classes) for e in manifest_entries()}
    models.update({p.name: tuple(p.classes) for p in unsaved_models().values()})
    chosen = st.session_state.get(f"{prefix}_models")
    return {n: models[n] for n in (chosen if chosen is not None else models) if models.get(n)}


def choose_test_set(prefix: str, groups: bool = False) -> tuple[list, str, Described, list[str]] | None:
    """The test-set chooser of Compare and Masks: (labelled images, their folder, a description,
    what was passed over or left out with why, for the downloads), or None with a message shown.
    Widget keys start with ``prefix``; a drawn set holds ``drawn_classes``; ``groups``: a labels
    sheet's columns can group the faces (``chosen_groups``)."""
    st.session_state[f"{prefix}_groups_chosen"] = {}  # none unless own_labels reads a sheet's
    st.session_state[f"{prefix}_cluster_chosen"] = None
    shown = {DRAWN: t("common.source_drawn"), FOLDER: t("common.source_folder"), ZIP: t("common.source_zip"),
             SPLIT: t("common.source_split")}
    source = st.radio(t("common.test_set"), (DRAWN, FOLDER, ZIP, SPLIT), horizontal=True, key=kept_choice(f"{prefix}_source"),
                      format_func=shown.__getitem__)
    fer_root, splits = config.fer_root(), config.fer_splits()
    if source in (DRAWN, SPLIT) and not splits:
        st.warning(t("common.no_fer_images", root=fer_root, layout=data_layout_help()))
        return None
    if source == DRAWN:
        c1, c2, c3 = st.columns(3)
        split = c1.selectbox(t("common.drawn_from"), splits, index=splits.index("val") if "val" in splits else 0,
                             key=kept_choice(f"{prefix}_draw_split"), help=t("common.drawn_from_help"))
        classes = drawn_classes(prefix)
        counts = class_counts(dataset_listing(str(fer_root / split), classes).items)
        fewest = min(classes, key=lambda e: counts.get(e, 0))  # no more per emotion than the split holds of each
        most = max(1, min(500, counts.get(fewest, 0)))
        if st.session_state.get(f"{prefix}_draw_per", 0) > most:  # a number kept from a larger split
            st.session_state[f"{prefix}_draw_per"] = most
        per = int(c2.number_input(t("common.per_emotion"), 1, most, min(10, most), key=kept_choice(f"{prefix}_draw_per"),
                                  help=t("common.per_emotion_help", most=most, emotion=i18n.emotion_label(fewest), split=split)))
        seed = int(c3.number_input(t("common.seed"), 0, 1_000_000, 0, key=kept_choice(f"{prefix}_seed"),
                                   help=t("common.seed_help")))
        if split == "train":
            st.warning(t("common.train_optimistic"))
        chosen = _chosen_classes(prefix)
        fear = [n for n, c in chosen.items() if "fear" in c]
        six_only = [n for n in chosen if n not in fear]
        if "fear" not in classes and fear and six_only:  # fear left out without a word (a seven-emotion review)
            st.caption(t("common.drawn_without_fear", fear=shown_literally(", ".join(fear)),
                         six=shown_literally(", ".join(six_only))))
        with st.spinner(t("common.drawing")):
            drawn = held(prefix, drawn_test_set(str(fer_root / split), per, seed, classes))
        return (dataset_items(str(drawn.root)), str(drawn.root),
                Described.of("common.drawn_description", count=drawn.count, per=per, split=split, seed=seed),
                dataset_listing(str(drawn.root)).skipped_lines)
    if source == FOLDER:
        path = st.text_input(t("common.folder_input"), key=kept_choice(f"{prefix}_folder"), help=data_layout_help()).strip()
        if not path:
            st.info(t("common.folder_hint", layout=data_layout_help()))
            return None
        folder = Path(path).expanduser()
        return own_labels(prefix, str(folder), Described.of("common.folder_description", folder=shown_in_code(folder)),
                          groups)
    if source == ZIP:
        up = st.file_uploader(t("common.zip_input"), type=["zip"], key=f"{prefix}_zip", help=data_layout_help())
        if up is None:
            st.info(t("common.zip_hint", layout=data_layout_help()))
            return None
        data = up.getvalue()
        with st.spinner(t("common.unpacking")):
            unpacked = held(prefix, unpacked_zip(digest(data), data))
        return own_labels(prefix, str(unpacked.root), Described.of("common.zip_description", name=shown_in_code(up.name)),
                          groups)
    split = st.selectbox(t("common.split"), splits, index=splits.index("val") if "val" in splits else 0,
                         key=kept_choice(f"{prefix}_split"))
    if split == "train":
        st.warning(t("common.train_optimistic"))
    items = dataset_items(str(fer_root / split))
    st.caption(t("common.split_caption", n=f"{len(items):,}"))
    return (items, str(fer_root / split), Described.of("common.split_description", split=split, n=f"{len(items):,}"),
            dataset_listing(str(fer_root / split)).skipped_lines)


def _csv_columns(data: bytes) -> list[str]:
    """The header of an uploaded CSV, to choose a column from (none where it is not UTF-8 CSV:
    reading it says why)."""
    import csv

    try:
        first = data.decode("utf-8-sig").splitlines()[:1]
        return [c.strip() for c in next(csv.reader(first, delimiter=csv_delimiter(first[0] if first else "")), [])
                if c.strip()]
    except (UnicodeDecodeError, csv.Error):
        return []


@st.cache_data(show_spinner=False, ttl=600, max_entries=4)
def _relabelled(root: str, stamp: tuple[int, ...], name: str, sha: str, column: str | None, _data: bytes,
                file_column: str | None = None, group_columns: tuple[str, ...] = ()):
    """``relabel`` of the folder's every image, kept while the folder and the sheet (``sha``) are
    the same: 28,709 rows took 3 s, paid again on every click of the page."""
    from fer_core.images import relabel

    return relabel(_listing_of(root, None, stamp, True).items, name, root, column, data=_data, file_column=file_column,
                   group_columns=group_columns)


def chosen_groups(prefix: str) -> tuple[dict, str | None]:
    """The grouping columns chosen beside the labels sheet (``own_labels`` with ``groups``): per
    column, each image's value by its path (empty without a sheet or a choice), and the column of
    them naming who posed each image, if one was chosen (``Comparison.attach_groups``)."""
    return (st.session_state.get(f"{prefix}_groups_chosen") or {}, st.session_state.get(f"{prefix}_cluster_chosen"))


def own_labels(prefix: str, root: str, description: Described,
               groups: bool = False) -> tuple[list, str, Described, list[str]] | None:
    """A folder's or zip's images (``dataset_items``), scored against a study's own labels where a
    CSV of them is given (``--labels``: its raters', their majority's), not against the folders' or
    names' emotions: then every image in its folders is read, whatever they are named (a folder per
    participant). The description names the file, its column and its SHA-256, so the results and
    report say which. The expander comes first: a folder no emotion names can still be labelled.
    ``groups``: offer the sheet's other columns to group the faces by (``chosen_groups``)."""
    box = st.expander(t("common.labels_expander"), expanded=st.session_state.get(f"{prefix}_labels") is not None)
    with box:
        up = st.file_uploader(t("common.labels_input"), type=["csv"], key=f"{prefix}_labels", help=t("common.labels_help"))
    if up is None:
        try:
            return dataset_items(root), root, description, dataset_listing(root).skipped_lines
        except DatasetError as exc:  # a folder per participant: labelled by a sheet, not renamed
            exc.advice = f"{getattr(exc, 'advice', None) or ''} {t('common.labels_instead')}".strip()
            raise
    dataset_items(root, every_folder=True)  # said: what it passes over; the sheet labels its images
    with box:
        data = up.getvalue()
        header = _csv_columns(data)
        # the column naming the images, found as the CLI finds it (a sheet's img may be a trial number
        # beside its Stimulus: chosen here, as --file-column chooses it)
        found = next((i for name in FILE_COLUMNS for i, c in enumerate(header) if c.lower() == name), None)
        file_column = st.selectbox(t("common.labels_file_column"), header, index=found, key=f"{prefix}_file_column",
                                   placeholder=t("common.choose_option")) if header else None
        if header and file_column is None:
            st.info(t("common.labels_pick_file_column"))
            return None
        columns = [c for c in header if c != file_column]
        auto = ""
        column = st.selectbox(t("common.labels_column"), [auto, *columns], key=f"{prefix}_label_column",
                              format_func=lambda c: t("common.labels_column_auto") if c == auto else c)
        if column == auto and columns and not {"label", "emotion"} & {c.lower() for c in columns}:
            st.info(t("common.labels_pick_column"))  # Majority, R1, R2: which is the study's to say
            return None
        grouping: list[str] = []
        cluster = None
        if groups:
            others = [c for c in columns if c != column and c.lower() not in ({"label", "emotion"} if column == auto else set())]
            grouping = st.multiselect(t("compare.group_by"), others, key=f"{prefix}_group_by", help=t("compare.group_by_help"),
                                      placeholder=t("common.choose_options")) if others else []
            if grouping:  # who posed each image: one person's images are not independent
                cluster = st.selectbox(t("compare.cluster_by"), [c for c in others if c not in grouping], index=None,
                                       key=f"{prefix}_cluster_by", help=t("compare.cluster_by_help"),
                                       placeholder=t("common.choose_option"))
        labelled, record = _relabelled(root, _folder_stamp(root, True), up.name, digest(data), column or None, data,
                                       file_column, tuple(grouping) + ((cluster,) if cluster else ()))
        st.session_state[f"{prefix}_groups_chosen"] = record.groups
        st.session_state[f"{prefix}_cluster_chosen"] = cluster
        if not labelled:
            raise DatasetError(f"{up.name}: labels no image of the folder with an emotion ({record.no_row:,} without "
                               f"a row, {sum(record.not_emotions.values()):,} naming none)")
        st.caption(t("common.labels_caption", n=f"{record.labelled:,}", column=shown_literally(record.column),
                     no_row=f"{record.no_row:,}", not_emotion=f"{sum(record.not_emotions.values()):,}"))
        if record.rater_agreement:
            st.caption(t("common.labels_agreement", pairs="; ".join(
                f"{shown_literally(r.a)} – {shown_literally(r.b)} {MISSING if r.kappa is None else f'{r.kappa:.3f}'} "
                f"(n {r.n:,})" for r in record.rater_agreement[:10])))
        if record.rows_without_image:
            st.warning(t("common.labels_rows_without_image", n=f"{len(record.rows_without_image):,}",
                         examples=shown_literally(", ".join(record.rows_without_image[:3]))))
    return (labelled, root, Described.of("common.labelled_description", source=description, labels=shown_in_code(up.name),
                                         column=shown_in_code(record.column), sha=record.sha256[:12]),
            dataset_listing(root, every_folder=True).skipped_lines + record.left_out_lines)


def choose_models(prefix: str, unsaved: bool = True) -> list:
    """Models to run (every one by default): manifest entries, and with ``unsaved`` this session's
    models not saved yet (as Predictors, listed "(not saved)"; one named like a saved model is
    renamed "<name> (not saved)" for the run, so both can be compared side by side)."""
    import copy

    warn_manifest_problems()
    entries = manifest_entries()
    pending = unsaved_models() if unsaved else {}
    if not entries and not pending:
        st.warning(t("compare.no_models"))
        return []
    options: dict[str, Any] = {e.name: e for e in entries}
    from fer_core.i18n import kind_label

    labels = {e.name: f"{e.name} ({kind_label(e.kind)})" for e in entries}
    for name, predictor in pending.items():
        if name in options:
            predictor = copy.copy(predictor)
            predictor.name = t("compare.unsaved_name", name=name)
        options[predictor.name] = predictor
        labels[predictor.name] = t("compare.unsaved_label", name=predictor.name, kind=predictor.kind)
    key = kept_choice(f"{prefix}_models")
    add_new_options(key, list(options))
    chosen = st.multiselect(t("compare.models"), list(options), default=list(options), key=key,
                            format_func=lambda n: labels.get(n, n), help=t("compare.models_help"),
                            placeholder=t("common.choose_options"))
    return [options[n] for n in chosen if n in options]


def show_scoring_notes(res) -> None:
    """What a reader of a comparison's accuracy must know (Compare and Masks): images of several
    faces, test images of emotions not scored or without a label, and emotions scored that a
    model never answers."""
    if res.several_faces:
        st.caption(t("compare.several_faces", n=len(res.several_faces),
                     example=shown_literally(i18n.message(res.several_faces[0]))))
    if res.skipped:
        st.caption(t("compare.skipped", n=sum(res.skipped.values()),
                     per_emotion=", ".join(f"{i18n.emotion_label(e)} {n:,}" for e, n in res.skipped.items())))
    if res.unlabelled:
        st.caption(t("compare.unlabelled", n=f"{res.unlabelled:,}"))
    for name, emotions in res.cannot_predict.items():
        st.warning(t("compare.cannot_predict", model=shown_literally(name),
                     emotions=", ".join(i18n.emotion_labels(emotions))), icon=":material/block:")
    for note in res.tie_notes():
        st.warning(note, icon=":material/balance:")
    for note in res.source_notes():
        st.warning(note, icon=":material/swap_horiz:")
    for note in res.learned_notes():
        st.warning(note, icon=":material/school:")
    for note in res.never_notes():
        st.caption(note)


def choose_scored_emotions(prefix: str, items: list, models: list) -> list[str] | None:
    """Compare's and Masks' "emotions scored": by default those every chosen model predicts and
    the test set holds (seven with fear when every model predicts it), else, for models that
    share none, those some model predicts. A change of models or images that changes that
    default puts it back; otherwise the person's own choice stays. None, and nothing drawn, when
    no model predicts any emotion of the images: the run then says so in one line instead of
    scoring answers none of them can give."""
    from fer_core.emotions import shared_classes

    present = list(shared_classes([], {it.label for it in items}))
    common = list(shared_classes([m.classes for m in models if m.classes], present))
    answered = [e for e in present if any(e in (m.classes or ()) for m in models)]
    if not answered:
        return None
    key = kept_choice(f"{prefix}_classes")
    default_unless_chosen(key, present, common or answered)
    shown = {e: i18n.emotion_label(e) for e in present}  # now: format_func may run outside the run
    chosen = st.multiselect(t("compare.emotions_scored"), present, key=key, format_func=shown.__getitem__,
                            help=t("compare.emotions_scored_help"), placeholder=t("common.choose_options"))
    # the default narrowed to what every model predicts: said where it is seen, naming what is left
    # out and which models cannot answer it
    dropped = [e for e in present if e not in common]
    if common and dropped and list(chosen) == common:
        # per emotion left out, the models that cannot answer it (not every model lacking any of them)
        lacking: dict[tuple[str, ...], list[str]] = {}
        for e in dropped:
            lacking.setdefault(tuple(m.name for m in models if m.classes and e not in m.classes), []).append(e)
        groups = []
        for narrowing, emotions in lacking.items():
            names = ", ".join(shown_literally(n) for n in narrowing[:3])
            if len(narrowing) > 3:
                names = t("compare.models_and_more", names=names, n=len(narrowing) - 3)
            groups.append(t("compare.dropped_by", emotions=", ".join(i18n.emotion_labels(emotions)), models=names))
        st.caption(t("compare.emotions_narrowed", emotions=", ".join(i18n.emotion_labels(common)),
                     dropped="; ".join(groups)))
    return chosen


def add_new_options(key: str, options: Sequence) -> None:
    """Before the multiselect ``key``, every option chosen by default, is drawn: options added since
    it was last drawn (a model trained, imported or saved meanwhile) join the kept choice, as they
    would have joined a fresh one; the person's unticking of older options stays."""
    marker = f"_{key}_offered"
    offered, kept = st.session_state.get(marker), st.session_state.get(key)
    if offered is not None and kept is not None:
        new = [o for o in options if o not in offered]
        if new:
            st.session_state[key] = [o for o in options if o in kept or o in new]
    st.session_state[marker] = list(options)


def default_unless_chosen(key: str, options: Sequence, default: Sequence) -> None:
    """Before the multiselect ``key`` over ``options`` is drawn (without a ``default`` of its own):
    put ``default`` in it when the default changed (another table, other models) or the kept
    choice is not among the options; otherwise the person's own choice stays. Streamlit alone
    keeps the old choice cut to the new options: a new table's own emotions started unselected."""
    marker = f"_{key}_default"
    kept = st.session_state.get(key)  # gone when the widget was not drawn on the last run
    if kept is None or st.session_state.get(marker) != list(default) or not set(kept) <= set(options):
        st.session_state[marker] = list(default)
        st.session_state[key] = list(default)


# -- models made in this session and not saved yet ---------------------------------------------
_UNSAVED = "_unsaved_models"


def remember_unsaved(predictor) -> None:
    """Offer a model trained or imported on a page, not yet saved to models/, to Compare and Masks.

    Kept per browser session under its name (a newer model of the same name replaces it). Saving it
    on its page withdraws it (``forget_unsaved``): Compare then lists the saved model alone, not a
    copy of it as "(not saved)" beside it.
    """
    st.session_state.setdefault(_UNSAVED, {})[predictor.name] = predictor


def forget_unsaved(name: str) -> None:
    """Withdraw an unsaved model from Compare and Masks once it is saved, or when its page can no
    longer make it (a Teachable Machine mapping that leaves no emotion), so they do not run an
    older version of it."""
    st.session_state.get(_UNSAVED, {}).pop(name, None)


def unsaved_models() -> dict:
    """This session's unsaved models by name (Predictors, ready for ``run_comparison``)."""
    return dict(st.session_state.get(_UNSAVED, {}))
