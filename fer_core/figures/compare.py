"""Figures and tables for comparing models and following a CNN's training (no Streamlit here).

Companion of ``plots.py`` (whose confusion heatmap and per-emotion bars the dashboard reuses as
they are): these take a ``Comparison`` and a Keras history and return plotly figures or pandas
tables, so the pages stay thin and every figure can be checked without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..evaluation.compare import Comparison
from ..images import relative_file
from .plots import _layout, emotion_color

# One colour per compared model (in the order given); emotions keep their own colours elsewhere.
MODEL_COLORS: tuple[str, ...] = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                                 "#17becf", "#bcbd22", "#7f7f7f", "#d62728")
NO_FACE = "no face"


def model_color(i: int) -> str:
    return MODEL_COLORS[i % len(MODEL_COLORS)]


# -- CNN training --------------------------------------------------------------------------------
def training_curves(history: Mapping[str, Sequence[float]], epochs: int | None = None,
                    title: str = "Training curves") -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, training and validation, from a Keras history
    (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``). ``epochs`` fixes the x range while a
    run is still going, so the curves grow to the right instead of rescaling each epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.1)
    styles = {"": ("training", "#1f77b4", "solid"), "val_": ("validation", "#ff7f0e", "dash")}
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, (name, color, dash) in styles.items():
            values = [float(v) for v in history.get(prefix + metric, [])]
            if not values:
                continue
            fig.add_trace(go.Scatter(
                x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                legendgroup=name, showlegend=col == 1, line=dict(color=color, dash=dash),
                hovertemplate=f"{name} {metric}, epoch %{{x}}: %{{y:.3f}}<extra></extra>",
            ), row=1, col=col)
    last = max(epochs or 0, len(history.get("loss", [])), 1)
    fig.update_xaxes(title="epoch", range=[0.5, last + 0.5], dtick=max(1, round(last / 10)))
    fig.update_yaxes(title="loss", row=1, col=1)
    fig.update_yaxes(title="accuracy", tickformat=".0%", range=[0, 1], row=1, col=2)
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return _layout(fig, title, height=360, top=60)


# -- comparison tables ---------------------------------------------------------------------------
def accuracy_summary(comparison: Comparison) -> pd.DataFrame:
    """One row per model: accuracy with its 95% bootstrap interval, macro-F1, images without a
    face (counted wrong) and the number of test images."""
    rows = []
    for name, r in comparison.reports.items():
        lo, hi = r.accuracy_ci95
        rows.append({"model": name, "kind": comparison.kinds.get(name, ""), "accuracy": r.accuracy,
                     "ci95_low": lo, "ci95_high": hi, "macro_f1": r.macro_f1, "no_face": r.no_face, "n": r.n})
    return pd.DataFrame(rows, columns=["model", "kind", "accuracy", "ci95_low", "ci95_high", "macro_f1",
                                       "no_face", "n"])


def mcnemar_frame(comparison: Comparison, alpha: float = 0.05) -> pd.DataFrame:
    """The pairwise McNemar tests as a table, with a plain-words verdict per pair."""
    rows = []
    for pair in comparison.mcnemar:
        acc_a, acc_b = comparison.reports[pair.a].accuracy, comparison.reports[pair.b].accuracy
        verdict = ("no significant difference" if pair.p_value >= alpha
                   else f"{pair.a if acc_a > acc_b else pair.b} is better")
        rows.append({"model A": pair.a, "model B": pair.b, "only A right": pair.only_a_correct,
                     "only B right": pair.only_b_correct, "p-value": pair.p_value,
                     f"at α = {alpha:g}": verdict})
    return pd.DataFrame(rows, columns=["model A", "model B", "only A right", "only B right", "p-value",
                                       f"at α = {alpha:g}"])


def summary_frame(comparison: Comparison) -> pd.DataFrame:
    """The per-emotion summary for download: per model, one row per emotion and an ``overall`` row
    (with the bootstrap interval)."""
    rows = []
    for name, r in comparison.reports.items():
        for emotion, v in r.per_class.items():
            rows.append({"model": name, "emotion": emotion, "n": v.n, "accuracy": v.accuracy,
                         "ci95_low": None, "ci95_high": None, "macro_f1": None})
        lo, hi = r.accuracy_ci95
        rows.append({"model": name, "emotion": "overall", "n": r.n, "accuracy": r.accuracy,
                     "ci95_low": lo, "ci95_high": hi, "macro_f1": r.macro_f1})
    return pd.DataFrame(rows, columns=["model", "emotion", "n", "accuracy", "ci95_low", "ci95_high", "macro_f1"])


def predictions_frame(table: pd.DataFrame, model_names: Sequence[str], root: str | Path | None = None) -> pd.DataFrame:
    """The per-image predictions for download: file names relative to the test set's folder,
    ``no face`` where a model could not judge an image, and a right/wrong column per model."""
    out = pd.DataFrame({"file": [relative_file(f, root) for f in table["file"]], "label": table["label"]})
    for name in model_names:
        predicted = table[name]
        out[name] = [NO_FACE if pd.isna(v) else v for v in predicted]
        out[f"{name} correct"] = (predicted == table["label"]).to_numpy()
        if f"{name} p(true)" in table.columns:
            out[f"{name} p(true)"] = table[f"{name} p(true)"].round(4)
    return out


# -- comparison figures --------------------------------------------------------------------------
def accuracy_ci_bars(summary: pd.DataFrame, title: str = "Overall accuracy with 95% bootstrap interval") -> go.Figure:
    """One bar per model with its bootstrap interval as an error bar (``accuracy_summary`` rows)."""
    acc = summary["accuracy"].astype(float)
    lo = summary["ci95_low"].astype(float)
    hi = summary["ci95_high"].astype(float)
    # The numbers go under each bar (an error bar would cross a label printed on the bar).
    labels = [f"{m}<br><b>{a:.0%}</b> ({lo_:.0%}–{hi_:.0%})" for m, a, lo_, hi_ in zip(summary["model"], acc, lo, hi)]
    fig = go.Figure(go.Bar(
        x=labels, y=acc, marker_color=[model_color(i) for i in range(len(summary))],
        error_y=dict(type="data", symmetric=False, array=(hi - acc).clip(lower=0), arrayminus=(acc - lo).clip(lower=0),
                     thickness=1.5, width=8),
        customdata=list(zip(lo, hi, summary["n"])),
        hovertemplate="%{y:.1%} (95% CI %{customdata[0]:.1%}–%{customdata[1]:.1%}, "
                      "n=%{customdata[2]})<extra></extra>",
    ))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="accuracy", tickvals=[0, .2, .4, .6, .8, 1])
    return _layout(fig, title, height=340)


def per_emotion_grouped_bars(frame: pd.DataFrame, title: str = "Accuracy per emotion (recall), one bar per model",
                             order: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars from ``Comparison.per_emotion_frame()``: emotions on the x axis, one bar per model."""
    emotions = list(order) if order else list(dict.fromkeys(frame["emotion"]))
    fig = go.Figure()
    for i, (name, sub) in enumerate(frame.groupby("model", sort=False)):
        by = sub.set_index("emotion").reindex(emotions)
        acc = by["accuracy"].astype(float)
        fig.add_trace(go.Bar(
            name=str(name), x=emotions, y=acc.fillna(0), marker_color=model_color(i),
            text=["–" if pd.isna(a) else f"{a:.0%}" for a in acc], textposition="outside", textangle=0,
            cliponaxis=False, customdata=by["n"].fillna(0).astype(int),
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}} of %{{customdata}} images<extra></extra>",
        ))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(tickfont=dict(size=13))
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%", title="accuracy", tickvals=[0, .2, .4, .6, .8, 1])
    for j, emotion in enumerate(emotions):  # a thin emotion-coloured strip under each group
        fig.add_shape(type="rect", xref="x", yref="paper", x0=j - 0.45, x1=j + 0.45, y0=-0.012, y1=0.0,
                      fillcolor=emotion_color(emotion), line_width=0)
    return _layout(fig, title, height=420)
