"""Figures for the dashboard (and for anyone with a notebook): plotly charts and a PIL overlay.

UI-free on purpose: every function takes plain data (dicts, arrays, AU tables, ``AUModel``
metrics) and returns a ``plotly.graph_objects.Figure`` or a ``PIL.Image``, so the Streamlit
pages stay thin and the figures can be tested without a browser. AU axes always carry plain
words ("AU12 lip corner puller"), because the point of the AU model is that people can read it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from .. import au_table
from ..au_table import AU_COLUMNS, au_code, au_label
from ..evaluation.metrics import ClassScore, EvaluationReport, share_text
from ..i18n import FONT_FAMILY, emotion_label, emotion_labels, t
from ..measure.au_mapping import AU_LANDMARKS

# One colour per emotion, used by every chart so "sad" is always the same blue. Okabe-Ito colours
# (plus Paul Tol's indigo and the old brown) chosen so that every pair stays apart (CIEDE2000 over
# 10) with protanopia, deuteranopia and tritanopia too: the old set's fear and sad were one blue to
# a protanope, angry and surprise one olive to a deuteranope (tests/test_accessibility.py).
EMOTION_COLORS: dict[str, str] = {
    "angry": "#D55E00", "disgust": "#8C564B", "fear": "#332288", "happy": "#E69F00",
    "neutral": "#999999", "sad": "#0072B2", "surprise": "#56B4E9", "unlabelled": "#000000",
}
# Colours of the strongest AUs drawn on a face (first = strongest): bright on skin and grey, legible
# as text on the legend's dark strip, and apart from each other with colour-vision deficiencies.
AU_DRAW_COLORS: tuple[str, ...] = ("#00e5ff", "#ffe600", "#D55E00", "#CC79A7", "#009E73")


def relative_luminance(color: str) -> float:
    """WCAG 2 relative luminance of a ``#rrggbb`` colour (0 = black, 1 = white)."""
    channels = [int(color.lstrip("#")[k:k + 2], 16) / 255 for k in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours (1 to 21; text needs 4.5)."""
    light, dark = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_color_on(background: str) -> str:
    """Black or white, whichever reads better on ``background``: Plotly's own choice for a label
    inside a bar put white on grey, green and purple bars (contrast 3 to 4, under WCAG's 4.5)."""
    return max(("#000000", "#ffffff"), key=lambda text: contrast_ratio(text, background))


def emotion_color(emotion: str) -> str:
    return EMOTION_COLORS.get(emotion, "#17becf")


def _layout(fig: go.Figure, title: str, height: int | None = None, top: int = 50) -> go.Figure:
    """Title, margins and a font stack that draws Hangul (figures follow the page's language).
    The axes widen the margins for their labels (automargin): Streamlit does it on a page, but
    outside it (an HTML report) a confusion matrix's emotion names fell outside the 10 px."""
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=top, b=10), height=height,
                      font=dict(family=FONT_FAMILY))
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


# -- class balance -----------------------------------------------------------------------------
def balance_table(counts: Mapping[str, int], order: Sequence[str] | None = None,
                  found: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Counts and percentages per emotion, in ``order`` (unknown labels last); with ``found`` (each
    emotion's share of images with a face found, 0..1) a ``faces found percent`` column too, a number
    as ``percent`` is, so a downloaded table sorts and sums."""
    labels = [c for c in (order or []) if c in counts] + sorted(c for c in counts if c not in (order or []))
    total = sum(counts.values()) or 1
    table = pd.DataFrame({
        "emotion": labels,
        "images": [int(counts[c]) for c in labels],
        "percent": [round(100.0 * counts[c] / total, 1) for c in labels],
    })
    if found is not None:
        table["faces found percent"] = [round(100.0 * found[c], 1) if c in found else float("nan") for c in labels]
    return table


def imbalance_ratio(counts: Mapping[str, int]) -> float:
    """Largest class size over the smallest (1.0 = balanced); inf when a class is empty."""
    values = [v for k, v in counts.items() if k != "unlabelled"]
    if not values:
        return float("nan")
    return float("inf") if min(values) == 0 else max(values) / min(values)


def class_balance_bar(counts: Mapping[str, int], order: Sequence[str] | None = None,
                      title: str | None = None) -> go.Figure:
    """Bars of counts with the percentage printed on each bar."""
    table = balance_table(counts, order)
    fig = go.Figure(go.Bar(
        x=emotion_labels(table["emotion"]), y=table["images"],
        marker_color=[emotion_color(e) for e in table["emotion"]],
        text=[f"{n:,} ({p:.1f}%)" for n, p in zip(table["images"], table["percent"])],
        textposition="outside", textangle=0, cliponaxis=False,
        hovertemplate="%{x}: %{y:,} " + t("figures.images") + "<extra></extra>",
    ))
    fig.update_yaxes(title=t("figures.images"), range=[0, 1.15 * max(table["images"].max(), 1)],
                     tickformat=",")  # "8,000" as on the bars
    return _layout(fig, title or t("figures.images_per_emotion"), height=360)


# -- model quality -----------------------------------------------------------------------------
def with_unscored_columns(confusion: Sequence[Sequence[int]], other: Sequence[int] | None = None,
                          no_face: Sequence[int] | None = None, unscored: Sequence[str] = (),
                          ) -> tuple[np.ndarray, list[str]]:
    """The confusion counts plus a column of answers outside the scored emotions (a seven-emotion
    model's fear among six: named by ``unscored``, the emotions the model answers that are not
    scored, else "other emotion") and one of faces not found, each only when there are any.

    A report's confusion matrix leaves both out, so its rows fall short of the emotion's images and
    a row share computed from it overstates the accuracy; with the columns every row adds up to all
    images of its emotion and the diagonal share is the per-emotion accuracy shown beside it.
    Returns the counts and the titles of the columns added.
    """
    counts = np.asarray(confusion, dtype=float)
    titles: list[str] = []
    other_title = (t("figures.col_unscored", emotions=", ".join(emotion_labels(unscored))) if unscored
                   else t("figures.col_other_emotion"))
    for extra, title in ((other, other_title), (no_face, t("figures.col_no_face"))):
        if extra is not None and any(extra):
            counts = np.column_stack([counts, np.asarray(extra, dtype=float)])
            titles.append(title)
    return counts, titles


CONFUSION_TEXT_PX = 14  # cell text where a matrix has the page's width (a tab, a report section)


def confusion_heatmap(report: EvaluationReport, title: str | None = None, unscored: Sequence[str] = (), *,
                      compact: bool = False) -> go.Figure:
    """A model's confusion matrix: the colour is the share of the true emotion's images on one fixed
    0–100% scale (the same for every model, so matrices compare by colour) and each cell prints share
    and count. Images the model gave an emotion not scored here (a seven-emotion model's fear among
    six) or found no face in get columns of their own when there are any (``with_unscored_columns``),
    so every row adds up to all images of its emotion and the diagonal is the per-emotion accuracy.
    ``unscored``: the emotions the model answers that are not scored, which name that column ("fear
    (not scored)"). ``compact``: for half a page's width (whole percents, smaller text and rows)."""
    counts, extra = with_unscored_columns(report.confusion, report.other_per_class, report.no_face_per_class,
                                          unscored)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    share_format = ".0%" if compact else ".1%"
    text = [[f"{share[i, j]:{share_format}}<br>{int(counts[i, j])}" for j in range(counts.shape[1])]
            for i in range(counts.shape[0])]
    labels = emotion_labels(report.labels)
    fig = go.Figure(go.Heatmap(
        z=share, x=labels + extra, y=labels, text=text, texttemplate="%{text}",
        textfont=dict(size=12 if compact else CONFUSION_TEXT_PX), colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title=t("figures.colour_share"), tickformat=".0%"),
        hovertemplate=t("figures.hover_confusion") + "<extra></extra>",
    ))
    fig.update_xaxes(title=t("figures.predicted"), side="bottom", tickfont=dict(size=13))
    fig.update_yaxes(title=t("figures.true"), autorange="reversed", tickfont=dict(size=13))
    height = 80 + 55 * len(labels) if compact else 160 + 62 * len(labels)
    return _layout(fig, title or report.model or t("figures.confusion_title"), height=height)


def per_class_accuracy_bars(per_class: Mapping[str, ClassScore], title: str | None = None,
                            overall: float | None = None) -> go.Figure:
    """Per-emotion accuracy (an ``EvaluationReport``'s ``per_class``) with its 95 % Wilson interval
    and the overall as a line; an emotion without test images has no accuracy: no bar, labelled
    "–" (as Compare's bars). A small table's bars rest on a few faces each (3 of 4 right reads 75 %,
    30-95 %): the interval shows it, where the bars alone read as exact."""
    from ..evaluation.metrics import wilson_counts

    labels = list(per_class)
    known = [per_class[c].accuracy for c in labels]
    acc = np.array([a or 0.0 for a in known])
    ns = [per_class[c].n for c in labels]
    low, high = np.array([wilson_counts(round(a * n), n) if n and a is not None else (np.nan, np.nan)
                          for a, n in zip(known, ns)]).reshape(-1, 2).T
    fig = go.Figure(go.Bar(
        x=emotion_labels(labels), y=acc, marker_color=[emotion_color(c) for c in labels],
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(high - acc).tolist(),
                     arrayminus=np.nan_to_num(acc - low).tolist(), color="rgba(40, 40, 40, 0.75)",
                     thickness=1.2, width=4),
        # inside the bar, at its foot: above it, a label sat on the interval's whisker
        text=["–" if a is None else f"{a:.0%}" for a in known], textposition="auto", insidetextanchor="start",
        textangle=0, cliponaxis=False, customdata=np.stack([ns, low, high], axis=-1).tolist(),
        hovertemplate=t("compare.hover_emotion_ci") + "<extra></extra>",
    ))
    fig.update_traces(showlegend=False)
    if overall is not None:
        # the overall accuracy as a dashed line named in the legend: a label on the line itself
        # sat on top of the bars' own percentages
        fig.add_hline(y=overall, line_dash="dash", line_color="#444")
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color="#444"),
                                 name=t("figures.overall", value=share_text(overall, 1, percent=True)), showlegend=True))
        fig.update_layout(legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%", title=t("figures.accuracy"), tickvals=[0, .2, .4, .6, .8, 1])
    return _layout(fig, title or t("figures.recall_title"), height=380, top=70)


def coefficient_heatmap(coef: np.ndarray, classes: Sequence[str], au_columns: Sequence[str] = AU_COLUMNS,
                        title: str | None = None) -> go.Figure:
    """The logistic regression's explanation: one cell per (AU, emotion), red = the AU raises the
    emotion's score against the others', blue = lowers it. Coefficients are on standardised AUs, so cells are
    comparable across AUs."""
    coef = np.asarray(coef, dtype=float)
    if coef.shape != (len(classes), len(au_columns)):
        raise ValueError(f"coefficients have shape {coef.shape}, expected ({len(classes)}, {len(au_columns)})")
    names = [au_label(c) for c in au_columns]
    bound = float(np.abs(coef).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=coef.T, x=emotion_labels(classes), y=names, zmid=0, zmin=-bound, zmax=bound, colorscale="RdBu_r",
        text=np.round(coef.T, 2), texttemplate="%{text}",
        colorbar=dict(title=t("figures.weight")),
        hovertemplate="%{y} → %{x}: %{z:.2f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    return _layout(fig, title or t("figures.coefficients_title"), height=140 + 30 * len(names), top=85)


# -- AU distributions --------------------------------------------------------------------------
def au_box_plots(table: pd.DataFrame, classes: Sequence[str], au_columns: Sequence[str] = AU_COLUMNS,
                 title: str | None = None) -> go.Figure:
    """Grouped box plots, one group per AU and one box per emotion.

    Quartiles are computed here and sent as numbers, not the raw rows: a FER2013 table has
    ~30,000 faces × 17 AUs, which would be megabytes of JSON for the browser.
    """
    rows = au_table.usable(table, classes, au_columns)  # masked faces count for the AUs they show
    names = [au_label(c) for c in au_columns]
    fig = go.Figure()
    for emotion in classes:
        sub = rows[rows["label"] == emotion]
        if sub.empty:
            continue
        values = sub[list(au_columns)].to_numpy(dtype=float)
        q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
        iqr = q3 - q1
        lo = np.array([values[:, d][values[:, d] >= q1[d] - 1.5 * iqr[d]].min() for d in range(values.shape[1])])
        hi = np.array([values[:, d][values[:, d] <= q3[d] + 1.5 * iqr[d]].max() for d in range(values.shape[1])])
        fig.add_trace(go.Box(
            name=f"{emotion_label(emotion)} (n={len(sub):,})", x=names, q1=q1, median=med, q3=q3,
            lowerfence=lo, upperfence=hi, mean=values.mean(axis=0),
            marker_color=emotion_color(emotion), boxpoints=False,
        ))
    fig.update_layout(boxmode="group", legend=dict(orientation="h", y=-0.35))
    fig.update_yaxes(title=t("figures.intensity"), range=[-0.1, 5.1])
    fig.update_xaxes(tickangle=-40)
    return _layout(fig, title or t("figures.au_boxes_title"), height=520)


def mean_au_profile(table: pd.DataFrame, classes: Sequence[str],
                    au_columns: Sequence[str] = AU_COLUMNS) -> pd.DataFrame:
    """Mean intensity of each AU (columns, plain names) per emotion (rows)."""
    rows = au_table.usable(table, classes, au_columns)  # masked faces count for the AUs they show
    means = rows.groupby("label")[list(au_columns)].mean().reindex([c for c in classes])
    means.columns = [au_label(c) for c in au_columns]
    return means.dropna(how="all")


def mean_au_heatmap(table: pd.DataFrame, classes: Sequence[str], au_columns: Sequence[str] = AU_COLUMNS,
                    title: str | None = None) -> go.Figure:
    """Emotions × AUs heatmap of mean intensities: the 'typical face' of each emotion."""
    means = mean_au_profile(table, classes, au_columns)
    fig = go.Figure(go.Heatmap(
        z=means.to_numpy().T, x=emotion_labels(means.index), y=list(means.columns), colorscale="Viridis",
        # float64 before rounding: float32 AUs rounded print as 0.10999999940395355
        zmin=0, text=np.round(means.to_numpy(dtype=float).T, 2), texttemplate="%{text}",
        colorbar=dict(title=t("figures.mean_intensity")), hovertemplate="%{y}, %{x}: %{z:.2f}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    return _layout(fig, title or t("figures.mean_profile_title"), height=140 + 30 * len(au_columns), top=85)


# -- one face ----------------------------------------------------------------------------------
# Below this probability a bar's label goes outside it: Plotly drops the text of a bar under a
# pixel wide ("auto" placement), so a 6e-7 class showed no "0%" while a 0.2% one did.
INSIDE_LABEL_MIN = 0.15


def probability_bars(probabilities: Mapping[str, float], title: str | None = None) -> go.Figure:
    """Horizontal bars, most likely emotion on top; every bar labelled, tiny ones beside the bar.
    A key that is no emotion (a Teachable Machine class name, as its author wrote it) is shown as
    text: Plotly would draw ``<a href=...>`` or ``<span style=...>`` in it as a link or styling."""
    items = sorted(probabilities.items(), key=lambda kv: kv[1])
    values = [float(v) for _, v in items]
    fig = go.Figure(go.Bar(
        y=[html.escape(label, quote=False) for label in emotion_labels(k for k, _ in items)], x=values, orientation="h",
        marker_color=[emotion_color(k) for k, _ in items],
        text=[f"{v:.0%}" for v in values], textangle=0, cliponaxis=False,
        insidetextfont=dict(color=[text_color_on(emotion_color(k)) for k, _ in items]),
        textposition=["inside" if v >= INSIDE_LABEL_MIN else "outside" for v in values],
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, title or t("figures.probabilities_title"), height=60 + 32 * len(items))


def au_intensity_bars(aus: Mapping[str, float], highlight: Sequence[str] = (),
                      title: str | None = None) -> go.Figure:
    """The 17 AUs of one face (0–5) with plain names; AUs in ``highlight`` (codes or columns,
    e.g. the ones that explain the prediction) are coloured."""
    marked = {au_code(h) for h in highlight}
    columns = list(aus)
    values = [float(aus[c]) for c in columns]
    fig = go.Figure(go.Bar(
        y=[au_label(c) for c in columns], x=values, orientation="h",
        marker_color=["#ff7f0e" if au_code(c) in marked else "#9ecae1" for c in columns],
        text=[f"{v:.1f}" for v in values], textposition="outside", textangle=0, cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f}<extra></extra>",
    ))
    # the AU-bottleneck network's reading can dip below 0 (AU15 -0.1), as its JSON and the CLI say:
    # the axis shows it rather than drawing no bar and no number
    low = min([0.0, *[v for v in values if v == v]])
    fig.update_xaxes(range=[low - 0.6 if low < 0 else 0, 5.6], title=t("figures.intensity"),
                     tickvals=[0, 1, 2, 3, 4, 5])
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title or t("figures.au_intensities_title"), height=80 + 24 * len(columns))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _label_font(size: int) -> ImageFont.ImageFont:
    """A TrueType font for text drawn on faces: NanumGothic draws Hangul labels and large, crisp
    numbers; Pillow's default font is the fallback when it is not installed."""
    from ..i18n import hangul_font_path

    path = hangul_font_path()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            pass
    return _font(size)


def draw_numbered_faces(rgb: np.ndarray, boxes: Sequence[Sequence[float]],
                        labels: Sequence[str | None] = (), box_color: str = "#ffffff",
                        min_side: int = 720) -> Image.Image:
    """The whole image with each face box numbered 1, 2, … in the order given (the caller passes
    them left to right): a large number in a filled tag on the box's top-left corner, and an
    optional label (e.g. the predicted emotion) next to it. Small images are enlarged to
    ``min_side`` first so the numbers stay readable."""
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB")
    factor = 1.0
    if max(image.size) < min_side:
        factor = min_side / max(image.size)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    scaled = [[float(v) * factor for v in box] for box in boxes]
    for x, y, w, h in scaled:  # every box first: a later box's line no longer strikes through a tag
        draw.rectangle([x, y, x + w, y + h], outline=box_color, width=line)
    for number, (x, y, w, h) in enumerate(scaled, start=1):
        size = int(max(18, min(0.22 * max(w, h), max(image.size) / 16)))
        label = labels[number - 1] if number - 1 < len(labels) else None
        text = f"{number}" + (f"  {label}" if label else "")
        font = _label_font(size)
        bbox = draw.textbbox((0, 0), text, font=font)
        tw, th = bbox[2] - bbox[0], bbox[3] - bbox[1]
        pad = max(3, size // 6)
        left = min(max(0.0, x), max(0.0, image.width - tw - 2 * pad))
        top = y - th - 2 * pad if y - th - 2 * pad >= 0 else y  # above the box, or inside it at the top
        draw.rectangle([left, top, left + tw + 2 * pad, top + th + 2 * pad], fill=box_color)
        draw.text((left + pad - bbox[0], top + pad - bbox[1]), text, fill="#000000", font=font)
    return image


def draw_face_overlay(rgb: np.ndarray, box: Sequence[float], landmarks: np.ndarray | None,
                      au_codes: Sequence[str], label: str | None = None,
                      box_color: str = "#ffffff", crop_margin: float | None = None,
                      min_side: int = 360) -> Image.Image:
    """The image with the face box, the landmarks around each AU in ``au_codes`` (one colour per
    AU, strongest first) and a legend strip below the picture, so a reader sees *where* the
    explanation comes from without the legend hiding the face.

    ``crop_margin`` (e.g. 0.35 = a third of the face on each side) keeps only the region around
    the face, which is what matters in a group photo or a wide shot. Small results (48 px FER
    crops) are enlarged to ``min_side`` first, so dots and text stay legible.
    """
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB")
    x, y, w, h = (float(v) for v in box)
    pts = None if landmarks is None else np.asarray(landmarks, dtype=float)[:, :2].copy()
    if crop_margin is not None:
        pad = crop_margin * max(w, h)
        left, top = max(0, int(x - pad)), max(0, int(y - pad))
        right, bottom = min(image.width, int(x + w + pad)), min(image.height, int(y + h + pad))
        if right - left > 4 and bottom - top > 4:
            image = image.crop((left, top, right, bottom))
            x, y = x - left, y - top
            if pts is not None:
                pts -= (left, top)
    if max(image.size) < min_side:
        factor = min_side / max(image.size)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.BICUBIC)
        x, y, w, h = x * factor, y * factor, w * factor, h * factor
        if pts is not None:
            pts *= factor
    side = max(w, h, 1.0)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 250))
    draw.rectangle([x, y, x + w, y + h], outline=box_color, width=line)
    radius = max(2.5, side / 80)
    colors = {code: AU_DRAW_COLORS[i % len(AU_DRAW_COLORS)] for i, code in enumerate(au_codes)}
    if pts is not None:
        for code in reversed(list(au_codes)):  # strongest drawn last, on top
            for idx in AU_LANDMARKS.get(code, ()):
                if idx < len(pts):
                    px, py = pts[idx]
                    draw.ellipse([px - radius, py - radius, px + radius, py + radius],
                                 fill=colors[code], outline="#000000")
    font_size = max(12, round(max(image.size) / 26))
    font = _label_font(font_size)
    if label:
        origin = (x + line, max(0.0, y - font_size - 2 * line - 2))
        bbox = draw.textbbox(origin, label, font=font)
        draw.rectangle([bbox[0] - 3, bbox[1] - 2, bbox[2] + 3, bbox[3] + 2], fill=box_color)
        draw.text(origin, label, fill="#000000", font=font)
    if not au_codes:
        return image
    row = font_size + 8
    legend = Image.new("RGB", (image.width, row * len(au_codes) + 8), "#111111")
    ldraw = ImageDraw.Draw(legend)
    for i, code in enumerate(au_codes):
        cy = 4 + i * row + row / 2
        r = font_size / 3
        ldraw.ellipse([8, cy - r, 8 + 2 * r, cy + r], fill=colors[code], outline="#000000")
        ldraw.text((16 + 2 * r, cy - font_size / 2 - 1), au_label(code), fill=colors[code], font=font)
    out = Image.new("RGB", (image.width, image.height + legend.height))
    out.paste(image, (0, 0))
    out.paste(legend, (0, image.height))
    return out


def _wrapped(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` at ``font``: broken between words, and inside a word
    only where one word is wider than the line."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # a word wider than the line: broken where it must be
                if line and draw.textlength(line + char, font=font) > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def explanation_card(picture: Image.Image, title: str, paragraphs: Sequence[str], footer: str = "",
                     width: int = 960) -> Image.Image:
    """One picture to print or put on a slide: the face with its AUs marked (``picture``, as
    ``draw_face_overlay`` draws it), the answer (``title``) and its reasons in words, and what a
    prediction is not (``footer``), in the text given (the page's language). A teacher had only
    screenshots to piece together, a CSV, or a chart without the face."""
    margin = width // 24
    inner = width - 2 * margin
    picture = picture.convert("RGB")
    scale = min(inner / picture.width, 1.1 * width / picture.height)
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                             Image.BICUBIC)
    sizes = round(width / 24), round(width / 38), round(width / 50)  # title, reasons, footer
    fonts = [_label_font(size) for size in sizes]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    blocks = [(0, _wrapped(measure, title, fonts[0], inner), "#111111")]
    blocks += [(1, _wrapped(measure, text, fonts[1], inner), "#222222") for text in paragraphs if text]
    if footer:
        blocks.append((2, _wrapped(measure, footer, fonts[2], inner), "#555555"))
    gap = round(width / 60)
    heights = [len(lines) * round(sizes[k] * 1.35) for k, lines, _ in blocks]
    card = Image.new("RGB", (width, margin + picture.height + sum(heights) + gap * (len(blocks) + 1) + margin), "#ffffff")
    card.paste(picture, ((width - picture.width) // 2, margin))
    draw = ImageDraw.Draw(card)
    y = margin + picture.height + gap
    for (k, lines, colour), height in zip(blocks, heights):
        for row, line in enumerate(lines):
            draw.text((margin, y + row * round(sizes[k] * 1.35)), line, fill=colour, font=fonts[k])
        y += height + gap
    return card


def gam_shape_functions(gam, columns: int = 4, title: str | None = None) -> go.Figure:
    """The glass-box AU model's main effects: for each AU, how each emotion's score changes with the
    AU's intensity (scores centred over emotions, so above 0 = favours that emotion). Pairwise
    terms are listed in the caption by the page."""
    from plotly.subplots import make_subplots

    aus = list(gam.au_columns)
    rows = -(-len(aus) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[au_label(c) for c in aus],
                        horizontal_spacing=0.05, vertical_spacing=0.09)
    for j, column in enumerate(aus):
        edges, scores = gam.shape_function(j)
        if not len(edges):
            continue
        centred = scores - scores.mean(axis=1, keepdims=True)
        x = np.concatenate([[0.0], np.clip(edges, 0, 5), [5.0]])
        r, c = divmod(j, columns)
        for k, emotion in enumerate(gam.classes):
            fig.add_trace(go.Scatter(
                x=x, y=np.append(centred[:, k], centred[-1, k]), mode="lines", line=dict(shape="hv", width=1.5,
                                                                                          color=emotion_color(emotion)),
                name=emotion_label(emotion), legendgroup=emotion, showlegend=j == 0,
                hovertemplate=f"{au_label(column)} %{{x:.2f}}: {emotion_label(emotion)} %{{y:+.2f}}<extra></extra>",
            ), row=r + 1, col=c + 1)
    fig.update_xaxes(range=[0, 5])
    fig.update_layout(legend=dict(orientation="h", y=-0.05))
    return _layout(fig, title or t("figures.gam_title"), height=190 * rows + 80, top=70)


def gam_pair_surface(gam, first: str, second: str, emotion: str, title: str | None = None) -> go.Figure:
    """One of the GAM's pairwise terms for one emotion: what the two AUs' intensities together add
    to its score beyond their own curves (centred over emotions as the curves are; red favours it)."""
    cuts_1, cuts_2, scores = gam.pair_surface(first, second)
    centred = scores - scores.mean(axis=2, keepdims=True)
    z = centred[:, :, list(gam.classes).index(emotion)]
    bound = float(np.abs(centred).max()) or 1.0

    def edges(cuts: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.clip(cuts, 0, 5), [5.0]])

    fig = go.Figure(go.Heatmap(
        z=z, x=edges(cuts_2), y=edges(cuts_1), zmid=0, zmin=-bound, zmax=bound, colorscale="RdBu_r",
        colorbar=dict(title=t("figures.score")),
        hovertemplate=(f"{au_code(first)} %{{y:.2f}}, {au_code(second)} %{{x:.2f}}: {emotion_label(emotion)} "
                       "%{z:+.2f}<extra></extra>"),
    ))
    fig.update_xaxes(title=au_label(second), range=[0, 5])
    fig.update_yaxes(title=au_label(first), range=[0, 5])
    return _layout(fig, title or t("figures.gam_pair_title", first=au_code(first), second=au_code(second),
                                   emotion=emotion_label(emotion)), height=420)


# -- a video over time -------------------------------------------------------------------------
# Each line's points get a shape of their own, so a line is found in the legend without telling
# its colour from the others' (seven emotions or many AUs, with a colour-vision deficiency).
LINE_SYMBOLS: tuple[str, ...] = ("circle", "square", "diamond", "triangle-up", "x", "cross", "triangle-down",
                                 "star", "pentagon", "hourglass")


def lines_over_time(frame: pd.DataFrame, columns: Sequence[str], names: Sequence[str], title: str,
                    x_title: str, y_title: str, colors: Sequence[str] | None = None) -> go.Figure:
    """One line per column over ``frame["time_s"]`` (a video's AUs or emotion probabilities); a
    missing value (a frame without a face) leaves a gap."""
    fig = go.Figure()
    for i, (column, name) in enumerate(zip(columns, names)):
        fig.add_trace(go.Scatter(x=frame["time_s"], y=frame[column], mode="lines+markers", name=name,
                                 marker=dict(size=6, symbol=LINE_SYMBOLS[i % len(LINE_SYMBOLS)]),
                                 line=dict(color=colors[i]) if colors else None,
                                 hovertemplate=f"{name}: %{{y:.2f}} (%{{x:.2f}} s)<extra></extra>"))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return _layout(fig, title, height=340)
