"""Accessibility of the dashboard's own colours, labels and pictures.

About 1 in 12 men sees colours with a deficiency: the palettes of a chart must stay apart when
simulated (Machado, Oliveira & Fernandes 2009, severity 1.0) for protanopia, deuteranopia and
tritanopia, measured as CIEDE2000 in CIELAB; a label inside a bar needs WCAG's 4.5:1 contrast; a
meaning carried by colour (masked or not) needs a second cue; a picture needs a caption a screen
reader can read.
"""

from __future__ import annotations

import ast
import io
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import heading_levels, run_app, skipped_heading_levels
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab
from streamlit.testing.v1 import AppTest

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.figures import compare, masks, plots

# Under this CIEDE2000 difference two colours are hard to tell apart in a chart.
MIN_DIFFERENCE = 10.0
WCAG_TEXT_CONTRAST = 4.5

# Machado et al. (2009), severity 1.0, on linear RGB.
DEFICIENCIES: dict[str, np.ndarray] = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
def _linear(color: str) -> np.ndarray:
    srgb = np.array([int(color.lstrip("#")[k:k + 2], 16) / 255 for k in (0, 2, 4)])
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), scikit-image's."""
    return float(deltaE_ciede2000(np.asarray(lab1, float), np.asarray(lab2, float)))


def _seen(color: str, deficiency: str | None) -> np.ndarray:
    """The colour in CIELAB (D65) as someone with ``deficiency`` (None: typical vision) sees it."""
    linear = _linear(color)
    simulated = np.clip(linear if deficiency is None else DEFICIENCIES[deficiency] @ linear, 0, 1)
    srgb = np.where(simulated <= 0.0031308, 12.92 * simulated, 1.055 * simulated ** (1 / 2.4) - 0.055)
    return rgb2lab(srgb.reshape(1, 1, 3)).reshape(3)


def _pairs_too_close(colors: dict[str, str]) -> list[str]:
    """Every pair under MIN_DIFFERENCE, for typical vision or any simulated deficiency."""
    close = []
    for deficiency in (None, *DEFICIENCIES):
        for (n1, c1), (n2, c2) in itertools.combinations(colors.items(), 2):
            difference = _ciede2000(_seen(c1, deficiency), _seen(c2, deficiency))
            if difference < MIN_DIFFERENCE:
                close.append(f"{n1}/{n2} ({deficiency or 'typical'}): {difference:.1f}")
    return close


def test_the_colour_difference_matches_sharmas_published_pairs():
    """The CIEDE2000 here is right (two rows of Sharma et al.'s test data), or the checks below mean nothing."""
    assert _ciede2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485])) == pytest.approx(2.0425, abs=1e-4)
    assert _ciede2000(np.array([50, 2.5, 0]), np.array([73, 25, -18])) == pytest.approx(27.1492, abs=1e-4)
    # and the simulation turns red and green into one colour for a deuteranope
    assert _ciede2000(_seen("#ff0000", "deuteranopia"), _seen("#00ff00", "deuteranopia")) < \
        _ciede2000(_seen("#ff0000", None), _seen("#00ff00", None)) / 2


def test_emotion_colours_stay_apart_with_colour_vision_deficiencies():
    """Box plots, shape functions and a video's lines tell emotions apart by colour alone: fear and
    sad were one blue to a protanope (ΔE 1.9), angry and surprise one olive to a deuteranope (4.6)."""
    shown = {e: plots.emotion_color(e) for e in (*SEVEN_EMOTIONS, "unlabelled")}
    assert _pairs_too_close(shown) == []


def test_model_colours_stay_apart_with_colour_vision_deficiencies():
    """Compare's and Masks' charts tell models apart by colour: the second and third were one (ΔE 1.3)."""
    shown = {f"model {i + 1}": compare.model_color(i) for i in range(len(compare.MODEL_COLORS))}
    assert _pairs_too_close(shown) == []


def test_au_colours_on_a_face_stay_apart_with_colour_vision_deficiencies():
    """The dots of the strongest AUs on a face are matched to the legend by colour alone."""
    shown = {f"AU #{i + 1}": c for i, c in enumerate(plots.AU_DRAW_COLORS)}
    assert _pairs_too_close(shown) == []


def test_an_aus_pull_for_and_against_is_not_red_against_green():
    """Green 'for' and red 'against' bars were one colour to a deuteranope (ΔE 4.6)."""
    from fer_core.predictors.base import AUContribution, Explanation

    ranked = (AUContribution("AU12", "AU12 lip corner puller", 3.0, 1.5),
              AUContribution("AU04", "AU04 brow lowerer", 2.0, -0.8))
    fig = compare.au_contribution_bars(Explanation("happy", {"happy": 0.9, "sad": 0.1}, ranked))
    bars = dict(zip(fig.data[0].y, fig.data[0].marker.color))
    assert _pairs_too_close({"for": bars["AU12"], "against": bars["AU04"]}) == []


def _plotly_inside_label_color(bar_color: str) -> str:
    """What Plotly draws a label inside a bar in when given no colour (plotly.js Color.contrast:
    white on a bar tinycolor calls dark, its default line grey otherwise)."""
    r, g, b = (int(bar_color.lstrip("#")[k:k + 2], 16) for k in (0, 2, 4))
    return "#ffffff" if (299 * r + 587 * g + 114 * b) / 1000 < 128 else "#444444"


def _contrast(first: str, second: str) -> float:
    """WCAG 2 contrast ratio, written out here apart from the code under test."""
    def luminance(color: str) -> float:
        r, g, b = _linear(color)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_percentages_inside_probability_bars_have_wcag_contrast():
    """White on the grey, green and purple bars read at 3 to 4:1 (WCAG asks 4.5:1)."""
    keys = [*SEVEN_EMOTIONS, "a Teachable Machine class"]
    fig = plots.probability_bars({k: 0.5 for k in keys})
    bar = fig.data[0]
    given = bar.insidetextfont.color
    low = []
    for i, (position, color) in enumerate(zip(bar.textposition, bar.marker.color)):
        if position != "inside":
            continue
        text = given[i] if isinstance(given, (list, tuple)) else given or _plotly_inside_label_color(color)
        if _contrast(text, color) < WCAG_TEXT_CONTRAST:
            low.append(f"{bar.y[i]}: {text} on {color} = {_contrast(text, color):.1f}")
    assert bar.textposition.count("inside") == len(keys)
    assert low == []


def _mask_report():
    """A hand-made mask report of two models on four images, with two example faces."""
    from fer_core.evaluation.compare import Comparison
    from fer_core.evaluation.mask_report import MaskExample, MaskReport

    def comparison(answers):
        table = pd.DataFrame({"file": list("abcd"), "label": ["happy", "happy", "sad", "sad"],
                              "m1": answers, "m2": answers[::-1]})
        return Comparison.from_table(table, ["m1", "m2"], ("happy", "sad"))

    face = np.full((48, 48, 3), 128, dtype=np.uint8)
    masked = face.copy()
    masked[28:, 8:40] = 230
    examples = [MaskExample("happy", "a.jpg", face, masked), MaskExample("sad", "c.jpg", face, masked)]
    return MaskReport(comparison(["happy", "happy", "sad", "sad"]), comparison(["happy", "sad", "sad", "happy"]),
                      "surgical", 0, examples=examples)


def test_masked_bars_are_hatched_not_only_darker():
    """Masked and unmasked bars differed only in shade (a pale and a solid yellow or grey look alike);
    now masked bars, and their legend key, are hatched."""
    report = _mask_report()
    report.reasons = {"m1": {"original": {"AU12": 0.5}, "masked": {"AU12": 0.1}}}
    for fig in (masks.masked_vs_original_bars(report), masks.reasons_bars(report, "m1")):
        bars = [d for d in fig.data if d.type == "bar"]
        hatch = {d.name: d.marker.pattern.shape or "" for d in bars}
        assert {d.name for d in bars} == {"no mask", "masked"}
        assert all((d.marker.pattern.shape or "") == hatch[d.name] for d in bars)  # one look per condition
        assert hatch["masked"] and not hatch["no mask"]
        legend = [d for d in fig.data if d.showlegend is not False]
        assert {d.name: d.marker.pattern.shape or "" for d in legend} == hatch  # the key shows the hatch
    # an AU the mask hides is said so where its 0 % under the mask is read (it read as a measured 0)
    labels = list(masks.reasons_bars(report, "m1").data[0].y)
    assert "AU12 lip corner puller (hidden by the mask)" in labels and "AU06 cheek raiser" in labels


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_masks_page_names_every_example_picture(lang):
    """The example faces had empty captions and no alternative text: a screen reader met two
    unnamed pictures per emotion."""
    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "7_Masks.py"))
    at.query_params["lang"] = lang
    at.session_state["mask_result"] = {"report": _mask_report(), "description": "four images", "signature": "-"}
    run_app(at, 60)
    pictures = [img for element in at.image for img in element.proto.imgs]
    assert len(pictures) == 4
    assert all(p.caption.strip() and p.alt.strip() for p in pictures), pictures
    happy = {"en": "happy", "ko": "행복"}[lang]
    assert all(happy in p.alt for p in pictures[:2]) and pictures[0].alt != pictures[1].alt


def _image_calls(path: Path) -> list[ast.Call]:
    """The ``st.image`` / ``column.image`` calls in a page's source."""
    return [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "image"]


def test_every_picture_on_every_page_has_a_caption_and_alternative_text():
    """Streamlit gives an image no accessible name unless ``alt`` is passed (a caption is only text
    below it): every face thumbnail, overlay and numbered photo was an unnamed image to a screen
    reader (axe: image-alt, 56 on the Dataset explorer alone)."""
    scripts = [config.REPO_ROOT / "app.py", *sorted((config.REPO_ROOT / "pages").glob("*.py"))]
    calls = {f"{path.name}:{call.lineno}": {k.arg for k in call.keywords} for path in scripts
             for call in _image_calls(path)}
    assert len(calls) >= 8  # the pages' pictures are all found
    assert [where for where, given in calls.items() if not {"caption", "alt"} <= given] == []


def test_each_line_over_a_video_has_its_own_marker_shape():
    """A video's emotion and AU lines differed by colour alone (seven emotions, or up to 17 AUs
    in Plotly's default colours); now each line's points have a shape of their own too."""
    frame = pd.DataFrame({"time_s": [0.0, 0.5, 1.0], **{e: [0.1, 0.2, 0.3] for e in SEVEN_EMOTIONS}})
    fig = plots.lines_over_time(frame, list(SEVEN_EMOTIONS), list(SEVEN_EMOTIONS), "emotions", "s", "p",
                                [plots.emotion_color(e) for e in SEVEN_EMOTIONS])
    symbols = [d.marker.symbol or "circle" for d in fig.data]
    assert len(symbols) == len(set(symbols)) == len(SEVEN_EMOTIONS)


def test_captions_are_dark_enough_to_read():
    """Streamlit fades captions from the theme's body colour (to 60 %); with its default grey they
    were 3.9:1 on white, under the 4.5:1 WCAG 2 asks of small text (an axe-core audit of every page)."""
    import tomllib

    from fer_core.config import REPO_ROOT
    from fer_core.figures.plots import contrast_ratio

    theme = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))["theme"]
    text = theme["textColor"].lstrip("#")
    def faded(color: str) -> str:
        color = color.lstrip("#")
        return "#" + "".join(f"{round(0.6 * int(color[k:k + 2], 16) + 0.4 * 255):02x}" for k in (0, 2, 4))

    assert contrast_ratio(faded(text), "#ffffff") >= 4.5
    # code in a caption (a command, a file name) on Streamlit's code background, faded alike: its
    # default green was 3.1:1
    assert contrast_ratio(faded(theme["codeTextColor"]), faded("#f0f2f6")) >= 4.5


def test_the_skip_check_sees_a_skip():
    assert skipped_heading_levels([(1, "a"), (2, "b"), (3, "c"), (2, "d"), (3, "e")]) == []
    assert skipped_heading_levels([(1, "a"), (3, "b")]) == ["h1 -> h3 'b'"]
    assert skipped_heading_levels([(2, "a")]) == ["h0 -> h2 'a'"]


@pytest.mark.parametrize("script", ["app.py", *sorted(p.name for p in (config.REPO_ROOT / "pages").glob("*.py"))])
def test_every_page_s_headings_go_down_one_level_at_a_time(script, models_dir):
    """Screen-reader users move through a page by its headings: every page went from its h1 title
    straight to h3 (st.subheader), and Try it's results to h4 and h5."""
    path = config.REPO_ROOT / ("app.py" if script == "app.py" else f"pages/{script}")
    at = run_app(AppTest.from_file(str(path)), 120)
    headings = heading_levels(at.main)
    assert headings and headings[0][0] == 1, headings
    assert skipped_heading_levels(headings) == []


def test_try_it_results_headings_go_down_one_level_at_a_time(models_dir, astronaut):
    """A photo's name, each face and its prediction: h2, h3, h4 under the page's h1 (were h4, h5, h3)."""
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format="PNG")
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "3_Try_it.py")), 120)
    at.file_uploader(key="try_upload").set_value(("astronaut.png", buffer.getvalue(), "image/png"))
    headings = heading_levels(run_app(at, 120).main)
    assert [level for level, text in headings if text.startswith(("## ", "### ", "#### "))] == [2, 3, 4]
    assert skipped_heading_levels(headings) == []


def test_compare_results_headings_go_down_one_level_at_a_time(models_dir, fer_val):
    """The results' sections (overall, per emotion, confusion, McNemar, wrong answers, downloads)
    were h3 straight under the page's h1."""
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "6_Compare.py")), 120)
    at.number_input(key="cmp_draw_per").set_value(2)
    at.button(key="cmp_run").click()
    headings = heading_levels(run_app(at, 120).main)
    assert len(headings) >= 5, headings
    assert skipped_heading_levels(headings) == []


def test_masks_results_headings_go_down_one_level_at_a_time(models_dir, fer_sample):
    """The report's sections (costs, beside people, what turns into what, which AUs, examples,
    downloads) were h3 straight under the page's h1."""
    from test_masks import _masks_page_run_on

    headings = heading_levels(_masks_page_run_on(fer_sample).main)
    assert [level for level, _ in headings].count(2) >= 5, headings
    assert skipped_heading_levels(headings) == []


def test_teachable_headings_after_an_upload_go_down_one_level_at_a_time(models_dir, tmp_path):
    """Once an export is uploaded its sections (classes, try a photo, save) were h3 under the h1."""
    from fer_core.predictors.teachable_example import write_teachable_export

    zipped = write_teachable_export(tmp_path / "export", ("Anger", "Happiness", "sadness")).zip()
    at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "5_Teachable_Machine.py")), 240)
    at.file_uploader(key="tm_upload").set_value([(zipped.name, zipped.read_bytes(), "application/zip")])
    headings = heading_levels(run_app(at, 240).main)
    assert [level for level, _ in headings].count(2) >= 3, headings
    assert skipped_heading_levels(headings) == []


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_compare_s_wrong_face_thumbnails_say_what_they_show(models_dir, fer_val, lang):
    """A picture in a table cell takes no alt text in Streamlit (its grid draws on a canvas): the
    thumbnail column of wrong answers had only the word "face"; its help now says what the pictures
    are and which columns of the row name the image, in the page's language."""
    import json

    at = AppTest.from_file(str(config.REPO_ROOT / "pages" / "6_Compare.py"))
    at.query_params["lang"] = lang
    run_app(at, 120)
    at.number_input(key="cmp_draw_per").set_value(2)
    at.button(key="cmp_run").click()
    run_app(at, 120)
    tables = [columns for frame in at.dataframe if "face" in (columns := json.loads(frame.proto.columns or "{}"))]
    assert tables, "no table of wrong answers was shown"
    for columns in tables:
        face, named_by = columns["face"], [columns[c]["label"] for c in ("true", "answer", "file")]
        assert face["type_config"]["type"] == "image"
        assert all(label and label in face.get("help", "") for label in named_by), face


def test_many_models_bars_and_lines_differ_by_more_than_colour():
    """Compare's per-emotion chart told nine models apart by colour alone (their labels are left out
    past four), and the pale yellow and grey bars barely showed on white (1.3:1 and 1.9:1)."""
    rows = [{"model": f"model {i}", "emotion": e, "accuracy": 0.5, "n": 10} for i in range(9) for e in ("happy", "sad")]
    fig = compare.per_emotion_grouped_bars(pd.DataFrame(rows), overall={f"model {i}": 0.5 for i in range(9)})
    bars = [d for d in fig.data if d.type == "bar"]
    lines = [d for d in fig.data if d.type == "scatter"]
    patterns = [b.marker.pattern.shape for b in bars]
    assert len(set(patterns)) >= len(compare.MODEL_PATTERNS) and not any(b.text for b in bars)
    assert all(b.marker.line.width > 0 and plots.contrast_ratio(b.marker.line.color, "#ffffff") >= 3 for b in bars)
    assert len({line.line.dash for line in lines}) >= len(compare.MODEL_DASHES)
