"""Figures and tables of a mask report (no Streamlit here): what a mask costs each model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..au_table import AU_CODES, au_label
from ..evaluation.mask_report import NOT_JUDGED, MaskReport
from ..i18n import emotion_labels, t
from ..masks import HIDDEN_AUS
from .compare import left_out_frame, model_color
from .plots import _layout


def summary_frame(report: MaskReport) -> pd.DataFrame:
    """One row per model: accuracy and macro-F1 without and with the mask, the drop with its 95 %
    interval (paired: the same images), and McNemar's p (is the change, a drop or a rise, more than
    chance?)."""
    rows = []
    for name in report.names:
        a, b = report.original.reports[name], report.masked.reports[name]
        paired = report.paired_test(name)  # original against masked: its difference is the drop
        lo, hi = paired.difference_ci95 or (None, None)
        rows.append({"model": name, "kind": report.original.kinds.get(name, ""), "original": a.accuracy,
                     "masked": b.accuracy, "drop": a.accuracy - b.accuracy, "drop ci95_low": lo, "drop ci95_high": hi,
                     "original macro F1": a.macro_f1, "masked macro F1": b.macro_f1, "McNemar p": paired.p_value,
                     "n": a.n})
    return pd.DataFrame(rows)


CONFIDENCE_COLUMNS = ["model", "original answers", "original confidence", "original right", "original gap",
                      "original direction", "masked answers", "masked confidence", "masked right", "masked gap",
                      "masked direction", "paired faces", "gap change", "gap change ci95_low", "gap change ci95_high"]


def confidence_frame(report: MaskReport) -> pd.DataFrame:
    """Per model, how sure it was and how often right on the answers it gave, without and with the
    mask (``Calibration``), and how far the mask moved its gap (mean confidence minus the share
    right) on the faces it answered both times, with a 95 % interval (paired: the same faces). A
    gap that widens under the mask means the model claims more than it reads off a masked face; an
    AU model reads the AUs a mask hides as their training mean, which pulls its probabilities
    toward its training mix whatever it "knows"."""
    from ..evaluation.compare import top_probability

    rows = []
    for name in report.names:
        a, b = report.original.reports[name].calibration, report.masked.reports[name].calibration
        if a is None or b is None:
            continue
        before, after = (top_probability(c.probabilities.get(name)) for c in (report.original, report.masked))
        both = np.isfinite(before) & np.isfinite(after)
        change = ((after - report.masked.correct(name)) - (before - report.original.correct(name)))[both]
        mean = float(change.mean()) if change.size else float("nan")
        half = 1.959964 * float(change.std(ddof=1)) / np.sqrt(change.size) if change.size > 1 else float("nan")
        rows.append({"model": name, "original answers": a.n, "original confidence": a.mean_confidence,
                     "original right": a.accuracy, "original gap": a.gap, "original direction": a.direction,
                     "masked answers": b.n,
                     "masked confidence": b.mean_confidence, "masked right": b.accuracy, "masked gap": b.gap,
                     "masked direction": b.direction, "paired faces": int(change.size),
                     "gap change": round(mean, 6), "gap change ci95_low": round(mean - half, 6),
                     "gap change ci95_high": round(mean + half, 6)})
    return pd.DataFrame(rows, columns=CONFIDENCE_COLUMNS)


def confidence_shift_figure(frame: pd.DataFrame, order: Sequence[str] = (), title: str | None = None) -> go.Figure:
    """Each model as an arrow from where it stood without the mask to where it stands with it: how
    sure (across) against how often right (up), as Compare's reliability diagram draws it. On the
    dotted diagonal it is as sure as it is right; under it, overconfident. An arrow running down
    along the diagonal lost accuracy and confidence together."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=t("compare.calibration_diagonal"),
                               line=dict(color="#888888", dash="dot", width=1), hoverinfo="skip"))
    order = list(order)
    for position, row in frame.reset_index(drop=True).iterrows():
        name = row["model"]
        i = order.index(name) if name in order else position
        fig.add_trace(go.Scatter(
            x=[row["original confidence"], row["masked confidence"]], y=[row["original right"], row["masked right"]],
            mode="lines+markers", name=str(name), legendgroup=str(name), line=dict(color=model_color(i), width=2),
            marker=dict(symbol=["circle", "arrow"], angleref="previous", size=[9, 15], color=model_color(i),
                        line=dict(color="#333333", width=0.6)),
            customdata=[t("masks.without_mask"), t("masks.with_mask")],
            hovertemplate=f"{name}, " + "%{customdata}: " + t("masks.hover_confidence") + "<extra></extra>"))
        fig.add_trace(go.Scatter(  # the tail: a marker with an angle from "previous" has none at the first point
            x=[row["original confidence"]], y=[row["original right"]], mode="markers", showlegend=False,
            marker=dict(symbol="circle", size=9, color=model_color(i), line=dict(color="#333333", width=0.6)),
            customdata=[t("masks.without_mask")], legendgroup=str(name),
            hovertemplate=f"{name}, " + "%{customdata}: " + t("masks.hover_confidence") + "<extra></extra>"))
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title=t("masks.axis_sure"), tickvals=[0, .2, .4, .6, .8, 1])
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title=t("masks.axis_right"), tickvals=[0, .2, .4, .6, .8, 1])
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return _layout(fig, title or t("masks.fig_confidence"), height=440)


def confidence_words(row, name: str | None = None) -> str:
    """One model's row of ``confidence_frame`` in a sentence, in the current language (``name``:
    the model's name as the page shows it)."""
    from ..evaluation.metrics import share_text
    from .compare import percent

    def way(gap: float, direction: str) -> str:
        return t(f"compare.calibration_{direction}", points=share_text(abs(gap), 1, points=True))

    def points(value: float) -> str:
        return share_text(value, 1, points=True, signed=True)

    return t("masks.confidence_line", model=row["model"] if name is None else name,
             sure_before=percent(row["original confidence"]), right_before=percent(row["original right"]),
             n_before=f"{row['original answers']:,}", way_before=way(row["original gap"], row["original direction"]),
             sure_after=percent(row["masked confidence"]), right_after=percent(row["masked right"]),
             n_after=f"{row['masked answers']:,}", way_after=way(row["masked gap"], row["masked direction"]),
             change=points(row["gap change"]), low=points(row["gap change ci95_low"]),
             high=points(row["gap change ci95_high"]))


def per_emotion_frame(report: MaskReport) -> pd.DataFrame:
    """Long table: model, emotion, condition (original / masked), accuracy, n."""
    rows = []
    for name in report.names:
        for condition, comparison in (("original", report.original), ("masked", report.masked)):
            for emotion, score in comparison.reports[name].per_class.items():
                if emotion in report.original.classes and score.n:
                    rows.append({"model": name, "emotion": emotion, "condition": condition,
                                 "accuracy": score.accuracy, "n": score.n})
    return pd.DataFrame(rows, columns=["model", "emotion", "condition", "accuracy", "n"])


LEGEND_GREY = "#595959"
# Masked bars are hatched as well as solid, so "masked" never rests on colour alone: a pale and a
# solid yellow or grey bar look alike, all the more with a colour-vision deficiency.
MASKED_PATTERN = "/"


def _shade(color: str, opacity: float) -> str:
    """``#rrggbb`` at an opacity, as one ``rgba()`` colour (what a legend swatch shows too)."""
    r, g, b = (int(color[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{opacity})"


def masked_vs_original_bars(report: MaskReport, title: str | None = None,
                            per_row: int = 3) -> go.Figure:
    """One panel per model (``per_row`` to a row): per emotion, a pale bar without and a solid bar
    with the mask."""
    frame = per_emotion_frame(report)
    names = report.names
    cols = max(1, min(per_row, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, shared_yaxes=True, horizontal_spacing=0.05,
                        vertical_spacing=0.32 / rows)
    conditions = (("original", 0.35, ""), ("masked", 1.0, MASKED_PATTERN))
    for condition, opacity, pattern in conditions:
        # The legend's swatch of a bar ignores its opacity (both read as the first model's solid
        # colour), and each panel has its own colour: the key is an empty grey bar, pale or solid
        # and hatched; sharing its condition's offset group, it takes no place beside the bars.
        shown = t("figures.original") if condition == "original" else t("figures.masked")
        fig.add_trace(go.Bar(x=[None], y=[None], name=shown, legendgroup=condition, offsetgroup=condition,
                             marker=dict(color=_shade(LEGEND_GREY, opacity), pattern=dict(shape=pattern)),
                             hoverinfo="skip"), row=1, col=1)
    for i, name in enumerate(names):
        for condition, opacity, pattern in conditions:
            part = frame[(frame["model"] == name) & (frame["condition"] == condition)]
            shown = t("figures.original") if condition == "original" else t("figures.masked")
            fig.add_trace(go.Bar(x=emotion_labels(part["emotion"]), y=part["accuracy"], name=shown,
                                 legendgroup=condition, showlegend=False, offsetgroup=condition,
                                 marker=dict(color=_shade(model_color(i), opacity), pattern=dict(shape=pattern)),
                                 hovertemplate=t("figures.mask_bar_hover", model=name, condition=shown)
                                 + "<extra></extra>"),
                          row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    for r in range(1, rows + 1):
        fig.update_yaxes(title=t("figures.accuracy_recall"), row=r, col=1)
    fig.update_xaxes(tickangle=-40, type="category")  # the legend keys' empty points would make it numbers
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.12 if rows > 1 else -0.3))
    return _layout(fig, title or t("figures.mask_bars_title"), height=120 + 300 * rows, top=70)


def shift_heatmap(report: MaskReport, name: str) -> go.Figure:
    """Rows: true emotion; columns: the answer (an emotion not scored, such as a seven-emotion
    model's fear, and "no face" or "not judged" too, when given); colour: how much more (red) or less (blue) often
    that answer is given once the face is masked, in points of the row's share."""
    shift = report.shift(name)  # emotions left without images (all unmaskable) have no row
    classes = list(report.original.classes)
    given = {answer for row in shift.values() for answer in row}
    missing = ["no face", NOT_JUDGED]  # last, after the emotions
    answers = (classes + sorted(given - set(classes) - set(missing)) + [a for a in missing if a in given])
    rows = [true for true in classes if true in shift]
    z = [[100 * shift[true].get(a, 0.0) for a in answers] for true in rows]
    top = max(1.0, max((abs(v) for row in z for v in row), default=0.0))
    fig = go.Figure(go.Heatmap(z=z, x=emotion_labels(answers), y=emotion_labels(rows),
                               zmin=-top, zmax=top, colorscale="RdBu_r", colorbar=dict(title=t("figures.points")),
                               text=[[f"{v:+.0f}" for v in row] for row in z], texttemplate="%{text}",
                               hovertemplate=t("figures.shift_hover") + "<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=t("figures.true_emotion"))
    fig.update_xaxes(title=t("figures.answer"))
    return _layout(fig, t("figures.shift_title", model=name), height=380)


def left_out_images_frame(report: MaskReport, passed_over: Sequence[str] = ()) -> pd.DataFrame:
    """Every image the report left out, for download: Compare's left-out rows (what the listing
    passed over, unreadable files, emotions not scored, unlabelled images) and each image that
    could not be masked, with why."""
    emotions = report.unmaskable_emotions or [None] * len(report.unmaskable)
    unmaskable = pd.DataFrame([{"left_out": "not masked", "emotion": emotion, "images": 1, "problem": line}
                               for line, emotion in zip(report.unmaskable, emotions)],
                              columns=["left_out", "emotion", "images", "problem"])
    frames = [f for f in (left_out_frame(report.original, passed_over), unmaskable) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else unmaskable


def reasons_frame(report: MaskReport, name: str) -> pd.DataFrame:
    """Per AU: the share of faces whose explanation names it, without and with the mask."""
    shares = report.reasons.get(name, {})
    rows = [{"AU": au_label(code), "hidden by the mask": code in HIDDEN_AUS,
             "original": shares.get("original", {}).get(code, 0.0), "masked": shares.get("masked", {}).get(code, 0.0)}
            for code in AU_CODES]
    return pd.DataFrame(rows)


def reasons_bars(report: MaskReport, name: str) -> go.Figure:
    """The share of faces whose explanation names each AU, without and with the mask. An AU the
    mask hides is marked so on its axis label: its 0 under the mask is an AU the model could not
    see, not one that stopped mattering."""
    frame = reasons_frame(report, name)
    labels = [t("figures.reasons_hidden", au=au) if hidden else au
              for au, hidden in zip(frame["AU"], frame["hidden by the mask"])]
    fig = go.Figure()
    for condition, color, pattern in (("original", "#9ecae1", ""), ("masked", "#08519c", MASKED_PATTERN)):
        shown = t("figures.original") if condition == "original" else t("figures.masked")
        fig.add_trace(go.Bar(y=labels, x=frame[condition], name=shown, orientation="h",
                             marker=dict(color=color, pattern=dict(shape=pattern)),
                             hovertemplate=t("figures.reasons_hover") + "<extra>" + shown + "</extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickformat=".0%", title=t("figures.reasons_share"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.15))
    return _layout(fig, t("figures.reasons_title", model=name), height=520)
