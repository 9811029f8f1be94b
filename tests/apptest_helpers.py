"""Small helpers shared by the Streamlit AppTest files."""

from __future__ import annotations

import json
import re

import numpy as np
from streamlit.testing.v1 import AppTest


def run_app(at: AppTest, timeout: float) -> AppTest:
    """Run the script and fail with the page's exception messages, if any."""
    at.run(timeout=timeout)
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def charts(at: AppTest) -> list[dict]:
    """The plotly figure specs the page rendered."""
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def plotly_values(v) -> np.ndarray:
    """A plotly spec's array: a list, or plotly 6's typed array ({"dtype", "bdata"})."""
    if isinstance(v, dict):
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


# Screen-reader users move through a page by its headings: none may skip a level (h1 then h3).
MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s")


def heading_levels(block) -> list[tuple[int, str]]:
    """(level, text) of every heading under ``block`` in page order: st.title/header/subheader by
    their HTML tag, and a Markdown element whose first line starts with ``#``."""
    found: list[tuple[int, str]] = []
    for _, node in sorted(getattr(block, "children", {}).items()):
        if node.type in ("title", "header", "subheader"):
            found.append((int(node.proto.tag.lstrip("h")), node.value))
        elif node.type == "markdown" and (marker := MARKDOWN_HEADING.match(node.value)):
            found.append((len(marker[1]), node.value))
        else:
            found.extend(heading_levels(node))
    return found


def skipped_heading_levels(headings: list[tuple[int, str]]) -> list[str]:
    """Headings that go down more than one level (h1 then h3), or a first heading that is not h1."""
    skipped, previous = [], 0
    for level, text in headings:
        if level > previous + 1:
            skipped.append(f"h{previous} -> h{level} {text!r}")
        previous = level
    return skipped


# Words that stay as they are on Korean pages: names of models, tools, datasets, units and codes.
KEEP_IN_KOREAN = {
    "au", "aus", "cnn", "fer2013", "openface", "mediapipe", "teachable", "machine", "keras", "tensorflow",
    "tflite", "tf.js", "json", "csv", "html", "zip", "png", "jpg", "jpeg", "parquet", "gz", "docker", "mlp",
    "gam", "ebm", "lr", "f1", "macro-f1", "mcnemar", "logreg", "bottleneck", "ci", "roi", "vgg", "ray",
    "jpg/png", "url", "id", "rgb", "px", "ms", "mb", "gb", "http", "https", "iou", "auc", "ko", "en", "lang",
}
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]+")
_IGNORED = re.compile(r"`[^`]*`|\*\*?[A-Z][A-Za-z0-9_-]*\*?\*?|\b[\w.-]+\.(?:json|h5|keras|csv|gz|py|zip|tflite|bin|txt|html|parquet)\b"
                      r"|\b[a-z0-9]+(?:-[a-z0-9]+)+\b|\bAU\d+\w*|\b\w*\d\w*\b|https?://\S+")


def english_left(values: list[str], model_names: tuple[str, ...] = ()) -> list[str]:
    """Texts of a Korean page that still hold an English phrase (two or more English words in a row).

    Model names, AU codes, file names, code spans and the words in ``KEEP_IN_KOREAN`` are allowed.
    """
    found = []
    for value in values:
        text = str(value)
        for name in model_names:
            text = text.replace(name, " ")
        text = _IGNORED.sub(" ", text)
        run = 0
        for token in re.split(r"(\s+)", text):
            if not token.strip():
                continue
            word = token.strip(".,:;!?()[]·—–\"'«»“”/")
            if _WORD.fullmatch(word) and word.lower() not in KEEP_IN_KOREAN:
                run += 1
                if run >= 2:
                    found.append(str(value))
                    break
            elif word:
                run = 0
    return found


def page_texts(at: AppTest) -> list[str]:
    """Every string a person reads on an AppTest page: text elements, labels, help and options."""
    out: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "text", "info", "warning", "error",
                 "success", "metric", "expander", "tab"):
        for element in at.get(kind):
            for attr in ("value", "label", "body"):
                value = getattr(element, attr, None)
                if isinstance(value, str) and value:
                    out.append(value)
    for kind in ("button", "checkbox", "toggle", "radio", "selectbox", "multiselect", "slider", "number_input",
                 "text_input", "select_slider", "download_button", "file_uploader"):
        for element in at.get(kind):
            label = getattr(element, "label", None)
            if isinstance(label, str) and label:
                out.append(label)
            help_text = getattr(element, "help", None) or getattr(getattr(element, "proto", None), "help", None)
            if isinstance(help_text, str) and help_text:
                out.append(help_text)
    return list(dict.fromkeys(out))
