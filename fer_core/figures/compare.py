"""Figures and tables for comparing models and following a CNN's training (no Streamlit here).

Companion of ``plots.py`` (whose confusion heatmap and per-emotion bars the dashboard reuses as
they are): these take a ``Comparison`` and a Keras history and return plotly figures or pandas
tables, so the pages stay thin and every figure can be checked without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..emotions import SEVEN_EMOTIONS, emotion_from_filename, normalize_emotion
from ..evaluation.compare import Comparison
from ..evaluation.metrics import p_text, share_text, wilson_counts
from ..i18n import emotion_label, emotion_labels, kind_label, t
from ..images import relative_file
from ..predictors.base import Explanation
from .plots import _layout, emotion_color

# One colour per compared model (in the order given); emotions keep their own colours elsewhere.
# Okabe-Ito's eight, then Paul Tol's wine and a grey: every pair stays apart (CIEDE2000 over 10) with
# protanopia, deuteranopia and tritanopia too; the old second and third model (orange and green)
# were one colour to a protanope.
MODEL_COLORS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                                 "#882255", "#000000", "#F0E442", "#BBBBBB")
# An AU's pull for (blue) and against (vermillion) the predicted emotion; green and red were one
# colour to a deuteranope, and the bar's side of zero says it too.
FOR_COLOR, AGAINST_COLOR = "#0072B2", "#D55E00"
NO_FACE = "no face"
# Up to this many models, the comparison bars carry their numbers; past it they would pile up.
MAX_LABELLED_MODELS = 4


def model_color(i: int) -> str:
    return MODEL_COLORS[i % len(MODEL_COLORS)]


# A model's bars also carry a hatching and its overall line a dash of its own, and every bar a dark
# outline: with many models, bars and lines were told apart by colour alone, and the pale yellow and
# grey ones barely showed on white (1.3:1 and 1.9:1).
MODEL_PATTERNS: tuple[str, ...] = ("", "/", "\\", "x", ".", "|", "-", "+")
MODEL_DASHES: tuple[str, ...] = ("dash", "dot", "dashdot", "longdash", "longdashdot", "5px,2px,1px,2px")
BAR_OUTLINE = dict(color="#333333", width=0.6)


def model_pattern(i: int) -> str:
    return MODEL_PATTERNS[i % len(MODEL_PATTERNS)]


# -- CNN training --------------------------------------------------------------------------------
def training_curves(history: Mapping[str, Sequence[float]], epochs: int | None = None,
                    title: str | None = None) -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, training and validation, from a Keras history
    (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``). ``epochs`` fixes the x range while a
    run is still going, so the curves grow to the right instead of rescaling each epoch."""
    metric_names = {"loss": t("figures.curve_loss"), "accuracy": t("figures.curve_accuracy")}
    fig = make_subplots(rows=1, cols=2, subplot_titles=[n[:1].upper() + n[1:] for n in metric_names.values()],
                        horizontal_spacing=0.1)
    styles = {"": (t("figures.curve_training"), "#1f77b4", "solid"),
              "val_": (t("figures.curve_validation"), "#ff7f0e", "dash")}
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for prefix, (name, color, dash) in styles.items():
            values = [float(v) for v in history.get(prefix + metric, [])]
            if not values:
                continue
            fig.add_trace(go.Scatter(
                x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=name,
                legendgroup=name, showlegend=col == 1, line=dict(color=color, dash=dash),
                hovertemplate=t("figures.curve_hover", series=name, metric=metric_names[metric])
                + ": %{y:.3f}<extra></extra>",
            ), row=1, col=col)
    last = max(epochs or 0, len(history.get("loss", [])), 1)
    fig.update_xaxes(title=t("figures.curve_epoch"), range=[0.5, last + 0.5], dtick=max(1, round(last / 10)))
    fig.update_yaxes(title=metric_names["loss"], row=1, col=1)
    fig.update_yaxes(title=metric_names["accuracy"], tickformat=".0%", range=[0, 1], row=1, col=2)
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return _layout(fig, title or t("figures.curves_title"), height=360, top=60)


# -- comparison tables ---------------------------------------------------------------------------
def accuracy_summary(comparison: Comparison) -> pd.DataFrame:
    """One row per model: accuracy with its 95% Wilson interval, macro-F1, images without a
    face (counted wrong) and the number of test images."""
    rows = []
    for name, r in comparison.reports.items():
        lo, hi = r.accuracy_ci95
        rows.append({"model": name, "kind": comparison.kinds.get(name, ""), "accuracy": r.accuracy,
                     "ci95_low": lo, "ci95_high": hi, "macro_f1": r.macro_f1,
                     "macro_f1_ci95_low": r.macro_f1_ci95[0] if r.macro_f1_ci95 else None,
                     "macro_f1_ci95_high": r.macro_f1_ci95[1] if r.macro_f1_ci95 else None, "kappa": r.kappa,
                     "kappa_ci95_low": r.kappa_ci95[0] if r.kappa_ci95 else None,
                     "kappa_ci95_high": r.kappa_ci95[1] if r.kappa_ci95 else None, "no_face": r.no_face, "n": r.n})
    return pd.DataFrame(rows, columns=["model", "kind", "accuracy", "ci95_low", "ci95_high", "macro_f1",
                                       "macro_f1_ci95_low", "macro_f1_ci95_high", "kappa",
                                       "kappa_ci95_low", "kappa_ci95_high", "no_face", "n"])


MCNEMAR_COLUMNS = ["model A", "model B", "A - B", "A - B ci95_low", "A - B ci95_high", "only A right",
                   "only B right", "p-value", "p (Holm)", "Holm pairs", "verdict"]
DIFFERENCE_COLUMNS = ("A - B", "A - B ci95_low", "A - B ci95_high")  # accuracy A minus B, shares


def mcnemar_frame(comparison: Comparison, alpha: float = 0.05) -> pd.DataFrame:
    """The pairwise McNemar tests as a table, with a plain-words verdict per pair.

    The verdict reads the Holm-adjusted p-value (``p (Holm)``): with k models there are k(k-1)/2
    tests, and unadjusted some pair would be "better" by chance. The better model is the one right
    on more of the images only one of the two got right (what the test counts), not the one with
    the higher rounded accuracy: a difference under the fourth decimal ties, and a tie named B.
    ``Holm pairs``: how many pairs ``p (Holm)`` is adjusted over, so a table read alone says it.
    ``A - B`` is accuracy A minus accuracy B with its 95 % interval (``paired_difference_ci``): how
    large the difference may be, where the p-value says only whether there is one."""
    rows = []
    for pair in comparison.mcnemar:
        p_holm = pair.p_holm if pair.p_holm is not None else pair.p_value  # a lone pair needs no adjusting
        if p_holm >= alpha or pair.only_a_correct == pair.only_b_correct:
            verdict = t("compare.verdict_none")
        else:
            better = pair.a if pair.only_a_correct > pair.only_b_correct else pair.b
            verdict = t("compare.verdict_better", model=better)
        lo, hi = pair.difference_ci95 or (None, None)
        rows.append({"model A": pair.a, "model B": pair.b, "A - B": pair.difference, "A - B ci95_low": lo,
                     "A - B ci95_high": hi, "only A right": pair.only_a_correct,
                     "only B right": pair.only_b_correct, "p-value": pair.p_value, "p (Holm)": p_holm,
                     "Holm pairs": len(comparison.mcnemar), "verdict": verdict})
    return pd.DataFrame(rows, columns=MCNEMAR_COLUMNS)


def left_out_frame(comparison: Comparison, passed_over: Sequence[str] = ()) -> pd.DataFrame:
    """What the comparison left out, for download: every unreadable image with its one-line reason,
    per emotion not scored how many test images it had, how many had no label, and (``passed_over``:
    the listing's lines) each folder or file the test set's listing did not read."""
    rows = [{"left_out": "passed over", "emotion": None, "images": None, "problem": line} for line in passed_over]
    rows += [{"left_out": "unreadable", "emotion": _emotion_of_line(line), "images": 1, "problem": line}
             for line in comparison.unreadable]
    rows += [{"left_out": "emotion not scored", "emotion": emotion, "images": n, "problem": None}
             for emotion, n in comparison.skipped.items()]
    if comparison.unlabelled:
        rows.append({"left_out": "unlabelled", "emotion": None, "images": comparison.unlabelled,
                     "problem": "the file name names no emotion"})
    return pd.DataFrame(rows, columns=["left_out", "emotion", "images", "problem"])


def _emotion_of_line(line: str) -> str | None:
    """The emotion of an unreadable image's line ("happy/x.jpg: not a readable image"), from its
    folder or its file name as the listing labels it: the download's emotion column had it blank."""
    file = Path(line.split(": ", 1)[0])
    return normalize_emotion(file.parent.name) or emotion_from_filename(file.stem)


def summary_frame(comparison: Comparison) -> pd.DataFrame:
    """The per-emotion summary for download: per model, one row per emotion and an ``overall`` row,
    each with its Wilson interval (an emotion's is of its recall, the diagonal count of its row of
    all its images: 56 disgust images leave a wide one; none without images)."""
    from ..evaluation.metrics import DECIMALS, wilson_counts

    rows = []
    for name, r in comparison.reports.items():
        for i, (emotion, v) in enumerate(r.per_class.items()):
            lo, hi = wilson_counts(int(r.confusion[i][i]), v.n) if v.n else (None, None)
            no_face = r.no_face_per_class[i] if i < len(r.no_face_per_class) else None
            rows.append({"model": name, "emotion": emotion, "n": v.n, "accuracy": v.accuracy,
                         "ci95_low": None if lo is None else round(lo, DECIMALS),
                         "ci95_high": None if hi is None else round(hi, DECIMALS), "macro_f1": None,
                         "no_face": no_face, "kappa": None})
        lo, hi = r.accuracy_ci95
        rows.append({"model": name, "emotion": "overall", "n": r.n, "accuracy": r.accuracy,
                     "ci95_low": lo, "ci95_high": hi, "macro_f1": r.macro_f1,
                     "macro_f1_ci95_low": r.macro_f1_ci95[0] if r.macro_f1_ci95 else None,
                     "macro_f1_ci95_high": r.macro_f1_ci95[1] if r.macro_f1_ci95 else None,
                     "no_face": r.no_face, "kappa": r.kappa,
                     "kappa_ci95_low": r.kappa_ci95[0] if r.kappa_ci95 else None,
                     "kappa_ci95_high": r.kappa_ci95[1] if r.kappa_ci95 else None,
                     **_calibration_columns(r.calibration), "log_loss": r.log_loss, "brier": r.brier})
    return pd.DataFrame(rows, columns=["model", "emotion", "n", "accuracy", "ci95_low", "ci95_high", "macro_f1",
                                       "macro_f1_ci95_low", "macro_f1_ci95_high", "no_face", "kappa",
                                       "kappa_ci95_low", "kappa_ci95_high", *CALIBRATION_SUMMARY_COLUMNS]
                        ).astype({"no_face": "Int64"})


CALIBRATION_SUMMARY_COLUMNS = ("mean_confidence", "confidence_gap", "confidence_gap_ci95_low",
                               "confidence_gap_ci95_high", "calibration_reading", "ece", "chance_ece", "log_loss",
                               "brier")


def _calibration_columns(c) -> dict:
    """A model's ``Calibration`` as the summary CSV's overall row gives it (blank without one)."""
    if c is None:
        return {}
    low, high = c.gap_ci95 or (None, None)
    return {"mean_confidence": c.mean_confidence, "confidence_gap": c.gap, "confidence_gap_ci95_low": low,
            "confidence_gap_ci95_high": high, "calibration_reading": c.direction, "ece": c.ece,
            "chance_ece": c.chance_ece}


def predictions_frame(table: pd.DataFrame, model_names: Sequence[str], root: str | Path | None = None,
                      groups: Mapping[str, Sequence[str | None]] | None = None,
                      copies: Mapping[str, tuple[Sequence[str], str]] | None = None) -> pd.DataFrame:
    """The per-image predictions for download: file names relative to the test set's folder,
    ``no face`` where a model could not judge an image, and a right/wrong column per model;
    ``groups``: the sheet's grouping columns (``Comparison.groups``), after the label, so the file
    goes into a mixed model as it is; ``copies`` (``Comparison.copies_of_training``): per network,
    whether each image is a copy of one it was trained on, to score it without them."""
    out = pd.DataFrame({"file": [relative_file(f, root) for f in table["file"]], "label": table["label"]})
    for column, values in (groups or {}).items():
        out[column if column not in out.columns else f"group {column}"] = list(values)
    for name in model_names:
        predicted = table[name]
        out[name] = [NO_FACE if pd.isna(v) else v for v in predicted]
        out[f"{name} correct"] = (predicted == table["label"]).to_numpy()
        if f"{name} p(true)" in table.columns:
            out[f"{name} p(true)"] = table[f"{name} p(true)"]  # whole: a log-loss of a rounded 0 is infinite
        if name in (copies or {}):
            out[f"{name} copy of training"] = table["file"].isin(copies[name][0]).to_numpy()
    return out


def probabilities_frame(comparison: Comparison, root: str | Path | None = None) -> pd.DataFrame:
    """Every model's full probability vector for every image, long format for download: file (relative
    to the test set), true label, model, predicted (``no face`` where it could not judge) and one
    column per emotion (empty where a model does not predict that emotion or saw no face)."""
    emotions = [e for e in SEVEN_EMOTIONS if any(e in c for c in comparison.model_classes.values())]
    emotions += [e for c in comparison.model_classes.values() for e in c if e not in emotions]
    files = [relative_file(f, root) for f in comparison.table["file"]]
    parts = []
    for name in comparison.names:
        proba = comparison.probabilities.get(name)
        classes = comparison.model_classes.get(name, ())
        if proba is None:
            continue
        part = pd.DataFrame({"file": files, "label": comparison.table["label"].to_numpy(), "model": name,
                             "predicted": [NO_FACE if pd.isna(v) else v for v in comparison.table[name]]})
        for e in emotions:
            part[e] = proba[:, classes.index(e)] if e in classes else np.nan  # whole, as p(true): equal in both
        parts.append(part)
    columns = ["file", "label", "model", "predicted", *emotions]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def confusion_frame(comparison: Comparison) -> pd.DataFrame:
    """Every model's confusion counts as a table (the matrices' numbers, for a paper's tables): per
    model, true emotion and answer, the number of images; the answer is the emotion given, an
    emotion not scored included (a seven-emotion model's fear among six), or ``no face``."""
    classes, parts = list(comparison.classes), []
    for name in comparison.names:
        answers = comparison.table[name].astype(object).where(comparison.table[name].notna(), NO_FACE)
        counts = pd.crosstab(comparison.table["label"].astype(str), answers.astype(str))
        others = sorted(set(counts.columns) - {*classes, NO_FACE})
        counts = counts.reindex(index=classes, columns=[*classes, *others, NO_FACE], fill_value=0)
        long = counts.stack().rename("count").rename_axis(["emotion", "answer"]).reset_index()
        # every scored cell and no face (0 too: a pivot of several models gives 0, not missing), and the
        # other answers where they occur
        parts.append(long[long["answer"].isin([*classes, NO_FACE]) | (long["count"] > 0)].assign(model=name))
    columns = ["model", "emotion", "answer", "count"]
    return pd.concat(parts, ignore_index=True)[columns].astype({"count": int}) if parts else pd.DataFrame(columns=columns)


def report_frames(report) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One evaluation's numbers as tables (an AU model scored on a labelled table): per emotion its
    precision, recall, F1 and support, and the confusion counts (true emotion, answer, count; the
    answers an emotion not scored and ``no face`` included), as Compare's downloads give them."""
    per = pd.DataFrame([{"emotion": e, "precision": s.precision, "recall": s.accuracy, "f1": s.f1, "support": s.n}
                        for e, s in report.per_class.items()], columns=["emotion", "precision", "recall", "f1", "support"])
    rows = []
    for i, emotion in enumerate(report.labels):
        rows += [{"emotion": emotion, "answer": answer, "count": int(report.confusion[i][j])}
                 for j, answer in enumerate(report.labels)]
        for answer, counts in (("other emotion", report.other_per_class), (NO_FACE, report.no_face_per_class)):
            if answer == NO_FACE or (counts and counts[i]):  # no face always, as compare's table gives it
                rows.append({"emotion": emotion, "answer": answer, "count": int(counts[i]) if counts else 0})
    return per, pd.DataFrame(rows, columns=["emotion", "answer", "count"])


def precision_recall_frame(comparison: Comparison) -> pd.DataFrame:
    """Precision, recall and F1 per model and emotion (each model's report: scikit-learn's, no
    face counted wrong as in every other score here), with the number of test images of the
    emotion (``support``); an emotion without test images has no recall or F1, and an emotion
    never answered no precision (NaN, not 0: a 0 would read "every such answer was wrong")."""
    rows = [{"model": name, "emotion": e, "precision": score.precision, "recall": score.accuracy, "f1": score.f1,
             "support": score.n}
            for name, report in comparison.reports.items() for e, score in report.per_class.items()]
    return pd.DataFrame(rows, columns=["model", "emotion", "precision", "recall", "f1", "support"]).astype(
        {"precision": float, "recall": float, "f1": float})


def column_titles() -> dict[str, str]:
    """The tables' column names (kept in English in the CSVs, for scripts) as people read them,
    in the current language: the page's column headers and the report's."""
    return {"model": t("compare.col_model"), "kind": t("compare.col_kind"), "emotion": t("compare.col_emotion"),
            "accuracy": t("compare.col_accuracy"), "ci95": t("compare.col_ci95"),
            "ci95_low": t("compare.col_ci95_low"), "ci95_high": t("compare.col_ci95_high"),
            "macro_f1": t("compare.col_macro_f1"), "kappa": t("compare.col_kappa"),
            "kappa_ci95_low": t("compare.col_kappa_ci95_low"), "kappa_ci95_high": t("compare.col_kappa_ci95_high"),
            "macro_f1_ci95_low": t("compare.col_macro_f1_ci95_low"),
            "macro_f1_ci95_high": t("compare.col_macro_f1_ci95_high"),
            "no_face": t("compare.col_no_face"),
            "n": t("compare.col_n"),
            "precision": t("compare.col_precision"), "recall": t("compare.col_recall"), "f1": "F1",
            "support": t("compare.col_support"), "model A": t("compare.col_model_a"),
            "model B": t("compare.col_model_b"), "A - B": t("compare.col_difference"),
            "only A right": t("compare.col_only_a"),
            "only B right": t("compare.col_only_b"), "p-value": t("compare.col_p"),
            "p (Holm)": t("compare.col_p_holm"), "Holm pairs": t("compare.col_holm_pairs"), "verdict": t("compare.col_verdict"),
            "answers": t("compare.col_answers"), "emotion_answered": t("compare.col_emotion_answered"), "mean_confidence": t("compare.col_mean_confidence"),
            "accuracy_answered": t("compare.col_accuracy_answered"), "reading": t("compare.col_reading"),
            "gap": t("compare.col_gap"), "gap_ci95_low": t("compare.col_gap_ci95_low"),
            "gap_ci95_high": t("compare.col_gap_ci95_high"), "ece": t("compare.col_ece"),
            "log_loss": t("compare.col_log_loss"), "brier": t("compare.col_brier"), "chance_ece": t("compare.col_chance_ece"),
            "bin_low": t("compare.col_bin_low"),
            "bin_high": t("compare.col_bin_high")}


def calibration_reading(calibration) -> str:
    """Which way a model's confidence errs, in words: over- or underconfident by how many points,
    or within chance of as sure as right."""
    points = share_text(abs(calibration.gap), 1, points=True)
    return t(f"compare.calibration_{calibration.direction}", points=points)


def calibration_words(name: str, calibration) -> str:
    """A model's ``Calibration`` in a sentence, in the current language: how sure, how often right."""
    way = calibration_reading(calibration)
    chance = "–" if calibration.chance_ece is None else share_text(calibration.chance_ece)
    return t("compare.calibration_line", model=name, confidence=percent(calibration.mean_confidence),
             accuracy=percent(calibration.accuracy), n=f"{calibration.n:,}", way=way,
             ece=share_text(calibration.ece), chance=chance)


def difference_text(difference: float | None, low: float | None, high: float | None) -> str:
    """An accuracy difference as people read it: ``+18.3 (+3.1 to +30.4) points``."""
    if difference is None or pd.isna(difference):
        return "–"
    d, low, high = (share_text(v, 1, points=True, signed=True) for v in (difference, low, high))
    return t("compare.difference", d=d, low=low, high=high)


def with_difference_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``mcnemar_frame`` with its three difference columns read as one (``difference_text``)."""
    if not set(DIFFERENCE_COLUMNS) <= set(frame.columns):
        return frame
    text = [difference_text(*row) for row in frame[list(DIFFERENCE_COLUMNS)].itertuples(index=False)]
    out = frame.drop(columns=list(DIFFERENCE_COLUMNS[1:]))
    out["A - B"] = text
    return out


def shown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A table as people read it (report): shares as ``51.7%``, emotions and headers translated."""
    out = with_difference_text(frame)
    for column in ("accuracy", "ci95_low", "ci95_high", "mean_confidence", "accuracy_answered"):
        if column in out.columns:
            out[column] = [percent(v) for v in out[column]]
    if "emotion" in out.columns:
        out["emotion"] = [t("compare.overall") if e == "overall" else emotion_label(e) for e in out["emotion"]]
    for column in ("p-value", "p (Holm)"):
        if column in out.columns:
            out[column] = [p_text(v) for v in out[column]]
    for column in ("precision", "recall", "f1", "macro_f1", "macro_f1_ci95_low", "macro_f1_ci95_high", "kappa",
                   "kappa_ci95_low", "kappa_ci95_high", "gap", "gap_ci95_low", "gap_ci95_high", "ece", "chance_ece",
                   "log_loss", "brier"):  # one way: 0.600 beside 0.429, not 0.6 beside 0.4286
        if column in out.columns:
            out[column] = ["–" if pd.isna(v) else f"{float(v):.3f}" for v in out[column]]
    if "kind" in out.columns:  # as the Compare page and the report's models say it, not au-logreg
        out["kind"] = [kind_label(k) for k in out["kind"]]
    return out.rename(columns=column_titles())


# -- comparison figures --------------------------------------------------------------------------
def percent(value: float | None) -> str:
    """The one way Compare and its report write a share: one decimal, ``51.7%`` (``–`` if unknown),
    rounded as the command line rounds its scores (``share_text``)."""
    return "–" if value is None or pd.isna(value) else share_text(value, 1, percent=True)


def accuracy_ci_bars(summary: pd.DataFrame, title: str | None = None) -> go.Figure:
    """One bar per model with its Wilson interval as an error bar (``accuracy_summary`` rows)."""
    acc = summary["accuracy"].astype(float)
    lo = summary["ci95_low"].astype(float)
    hi = summary["ci95_high"].astype(float)
    crowded = len(summary) > MAX_LABELLED_MODELS
    # The numbers go under each bar (an error bar would cross a label printed on the bar); past four
    # models three-line labels pile on each other, so only the names, slanted (the table beside has
    # the numbers, the hover too).
    labels = (list(summary["model"].astype(str)) if crowded else
              [f"{m}<br><b>{percent(a)}</b> ({percent(lo_)}–{percent(hi_)})"
               for m, a, lo_, hi_ in zip(summary["model"], acc, lo, hi)])
    fig = go.Figure(go.Bar(
        x=labels, y=acc, marker_color=[model_color(i) for i in range(len(summary))],
        error_y=dict(type="data", symmetric=False, array=(hi - acc).clip(lower=0), arrayminus=(acc - lo).clip(lower=0),
                     thickness=1.5, width=8),
        customdata=list(zip(lo, hi, summary["n"], summary["model"].astype(str))),
        hovertemplate="%{customdata[3]}: " + t("compare.hover_overall") + "<extra></extra>",
    ))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title=t("compare.axis_accuracy"),
                     tickvals=[0, .2, .4, .6, .8, 1])
    # a few labels wrap at <br> and stand level (slanted, they ran into each other); many names slant
    fig.update_xaxes(tickangle=-35 if crowded else 0, automargin=True)
    return _layout(fig, title or t("compare.fig_overall"), height=360)


CALIBRATION_COLUMNS = ["model", "bin_low", "bin_high", "n", "mean_confidence", "accuracy"]
MODEL_SYMBOLS: tuple[str, ...] = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon")


def calibration_frame(comparison: Comparison) -> pd.DataFrame:
    """Per model, each bin of confidence it answered in: how many faces, how sure on average and
    how often right (``EvaluationReport.calibration``), long format for the reliability diagram and
    the download."""
    rows = [{"model": name, "bin_low": b.low, "bin_high": b.high, "n": b.n, "mean_confidence": b.mean_confidence,
             "accuracy": b.accuracy}
            for name, r in comparison.reports.items() if r.calibration is not None for b in r.calibration.bins]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def calibration_summary(comparison: Comparison) -> pd.DataFrame:
    """One row per model with probabilities: answers judged, mean confidence, their accuracy, the
    gap (above 0: overconfident) and the expected calibration error."""
    rows = [{"model": name, "answers": c.n, "mean_confidence": c.mean_confidence, "accuracy_answered": c.accuracy,
             "gap": c.gap, "gap_ci95_low": (c.gap_ci95 or (None, None))[0], "gap_ci95_high": (c.gap_ci95 or (None, None))[1],
             "ece": c.ece, "chance_ece": c.chance_ece, "log_loss": r.log_loss, "brier": r.brier}
            for name, r in comparison.reports.items() if (c := r.calibration) is not None]
    return pd.DataFrame(rows, columns=["model", "answers", "mean_confidence", "accuracy_answered", "gap",
                                       "gap_ci95_low", "gap_ci95_high", "ece", "chance_ece", "log_loss", "brier"])


def reliability_diagram(frame: pd.DataFrame, title: str | None = None, order: Sequence[str] = ()) -> go.Figure:
    """Accuracy against confidence per bin (``calibration_frame``), one line per model, and the
    diagonal where a model is as often right as it says it is sure: a line under it overstates its
    confidence. Each model has its own marker and dash, not only its colour (by its place in
    ``order``, the comparison's models, as in the other charts, though a model without an answer has
    no line here); a point's size grows with the faces in its bin (a bin of three faces is a guess)."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=t("compare.calibration_diagonal"),
                               line=dict(color="#888888", dash="dot", width=1), hoverinfo="skip"))
    largest = max(1, int(frame["n"].max())) if len(frame) else 1
    order = list(order)
    for position, (name, sub) in enumerate(frame.groupby("model", sort=False)):
        i = order.index(name) if name in order else position
        fig.add_trace(go.Scatter(
            x=sub["mean_confidence"], y=sub["accuracy"], mode="lines+markers", name=str(name),
            line=dict(color=model_color(i), dash=MODEL_DASHES[i % len(MODEL_DASHES)] if i else "solid", width=2),
            marker=dict(symbol=MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)], color=model_color(i),
                        line=dict(color="#333333", width=0.6),
                        size=[6 + 12 * float(np.sqrt(n / largest)) for n in sub["n"]]),
            customdata=list(zip(sub["n"], sub["bin_low"], sub["bin_high"])),
            hovertemplate=f"{name}: " + t("compare.hover_calibration") + "<extra></extra>"))
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title=t("compare.axis_confidence"), tickvals=[0, .2, .4, .6, .8, 1])
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title=t("compare.axis_right"), tickvals=[0, .2, .4, .6, .8, 1])
    fig.update_layout(legend=dict(orientation="h", y=-0.2))
    return _layout(fig, title or t("compare.fig_calibration"), height=440)


ANSWER_CALIBRATION_COLUMNS = ["model", "emotion_answered", "answers", "mean_confidence", "accuracy_answered", "gap",
                              "gap_ci95_low", "gap_ci95_high", "reading"]


def answer_calibration_frame(comparison: Comparison) -> pd.DataFrame:
    """Per model and emotion answered (``EvaluationReport.calibration_by_answer``): how many answers,
    how sure, how often right (the emotion's precision), the gap with its interval (simultaneous
    over the model's emotions, Bonferroni) and its reading (over, under, mixed, even)."""
    rows = []
    for name, r in comparison.reports.items():
        for emotion in comparison.classes:
            c = r.calibration_by_answer.get(emotion)
            if c is not None:
                low, high = c.gap_ci95 or (None, None)
                rows.append({"model": name, "emotion_answered": emotion, "answers": c.n,
                             "mean_confidence": c.mean_confidence, "accuracy_answered": c.accuracy, "gap": c.gap,
                             "gap_ci95_low": low, "gap_ci95_high": high, "reading": c.direction})
    return pd.DataFrame(rows, columns=ANSWER_CALIBRATION_COLUMNS)


def answer_calibration_words(frame: pd.DataFrame) -> list[str]:
    """A sentence per model whose confidence, read per emotion it answered, strays beyond chance:
    which emotions it says too surely, which too timidly, and which are off in no one direction
    (``answer_calibration_frame``)."""
    lines = []
    for name, sub in frame.groupby("model", sort=False):
        parts = []
        for direction in ("over", "under", "mixed"):
            flagged = sub[sub["reading"] == direction]
            if len(flagged):
                emotions = ", ".join(t("compare.answer_gap", emotion=emotion_label(row.emotion_answered),
                                       points=share_text(row.gap, 1, points=True, signed=True))
                                     for row in flagged.itertuples())
                parts.append(t(f"compare.answer_{direction}", emotions=emotions))
        if parts:
            lines.append(t("compare.answer_line", model=name, readings="; ".join(parts)))
    return lines


def answer_calibration_figure(frame: pd.DataFrame, order: Sequence[str] = (),
                              classes: Sequence[str] = ()) -> go.Figure:
    """Each model's gap (mean confidence minus share right) per emotion it answered, with its
    interval: right of 0 it says that emotion more surely than it is right. Filled markers where the
    interval leaves out 0; models keep the colours and markers of the other charts."""
    fig = go.Figure()
    order = list(order)
    emotions = [e for e in classes if e in set(frame["emotion_answered"])] or list(dict.fromkeys(frame["emotion_answered"]))
    for position, (name, sub) in enumerate(frame.groupby("model", sort=False)):
        i = order.index(name) if name in order else position
        sure = sub["reading"].isin(["over", "under"])
        fig.add_trace(go.Scatter(
            x=sub["gap"], y=[emotion_label(e) for e in sub["emotion_answered"]], mode="markers", name=str(name),
            orientation="h",  # side by side within an emotion's row (scattermode "group")
            error_x=dict(type="data", symmetric=False, array=sub["gap_ci95_high"] - sub["gap"],
                         arrayminus=sub["gap"] - sub["gap_ci95_low"], color=model_color(i), thickness=1.2, width=3),
            marker=dict(symbol=[MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)] + ("" if s else "-open") for s in sure],
                        color=model_color(i), size=9, line=dict(color=model_color(i), width=1.5)),
            customdata=list(zip(sub["answers"], sub["mean_confidence"], sub["accuracy_answered"])),
            hovertemplate=f"{name}, %{{y}}: " + t("compare.hover_answer_calibration") + "<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#888888", dash="dot", width=1))
    fig.update_xaxes(tickformat="+.0%", title=t("compare.axis_gap"), zeroline=False)
    fig.update_yaxes(categoryorder="array", categoryarray=[emotion_label(e) for e in reversed(emotions)],
                     title=t("compare.axis_answered"))
    fig.update_layout(scattermode="group", scattergap=0.3, legend=dict(orientation="h", y=-0.2))
    return _layout(fig, t("compare.fig_answer_calibration"), height=160 + 60 * max(1, len(emotions)))


ERROR_BAR_COLOR = "rgba(40, 40, 40, 0.75)"  # the intervals over the bars, dark on every model colour


def per_emotion_grouped_bars(frame: pd.DataFrame, title: str | None = None,
                             order: Sequence[str] | None = None,
                             overall: Mapping[str, float] | None = None) -> go.Figure:
    """Grouped bars from ``Comparison.per_emotion_frame()``: emotions on the x axis, one bar per model.

    ``overall`` (model → accuracy) adds each model's overall accuracy as a dashed line named in
    the legend, not printed on the plot, so it never covers the bars' own labels.
    """
    emotions = list(order) if order else list(dict.fromkeys(frame["emotion"]))
    shown = emotion_labels(emotions)
    models = frame["model"].nunique()
    upright = models > 3  # side by side, more than three labels per group would overlap
    # past four models even upright labels are too small to read: the values stay in the hover
    labelled = models <= MAX_LABELLED_MODELS
    fig = go.Figure()
    for i, (name, sub) in enumerate(frame.groupby("model", sort=False)):
        by = sub.set_index("emotion").reindex(emotions)
        acc = by["accuracy"].astype(float)
        n = by["n"].fillna(0).astype(int)
        # each bar's 95 % Wilson interval: ten images an emotion give a bar about ±25 points wide,
        # which bars alone made look like differences between models
        low, high = np.array([wilson_counts(round(a * k), k) if k and np.isfinite(a) else (np.nan, np.nan)
                              for a, k in zip(acc, n)]).reshape(-1, 2).T
        fig.add_trace(go.Bar(
            name=str(name), x=shown, y=acc.fillna(0), legendgroup=str(name),
            marker=dict(color=model_color(i), pattern=dict(shape=model_pattern(i)), line=BAR_OUTLINE),
            error_y=dict(type="data", symmetric=False, array=np.nan_to_num(high - acc).tolist(),
                         arrayminus=np.nan_to_num(acc - low).tolist(),
                         color=ERROR_BAR_COLOR, thickness=1.2, width=3),
            # inside the bar, at its foot: a label above it would sit on the interval's whisker
            text=[percent(a) for a in acc] if labelled else None,
            textposition="auto" if labelled else "none", insidetextanchor="start", textangle=-90 if upright else 0,
            cliponaxis=False, customdata=np.stack([n, low, high], axis=-1).tolist(),
            hovertemplate=f"{name}<br>" + t("compare.hover_emotion_ci") + "<extra></extra>",
        ))
        if overall and name in overall:
            fig.add_trace(go.Scatter(
                x=[shown[0], shown[-1]], y=[overall[name]] * 2, mode="lines", legendgroup=str(name),
                name=t("compare.overall_line", model=name, accuracy=percent(overall[name])),
                line=dict(color=model_color(i), dash=MODEL_DASHES[i % len(MODEL_DASHES)], width=1.5),
                hovertemplate=t("compare.overall_line", model=name, accuracy=percent(overall[name]))
                + "<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(tickfont=dict(size=13))
    fig.update_yaxes(range=[0, 1.2 if upright and labelled else 1.1], tickformat=".0%", title=t("compare.axis_accuracy"),
                     tickvals=[0, .2, .4, .6, .8, 1])
    for j, emotion in enumerate(emotions):  # a thin emotion-coloured strip under each group
        fig.add_shape(type="rect", xref="x", yref="paper", x0=j - 0.45, x1=j + 0.45, y0=-0.012, y1=0.0,
                      fillcolor=emotion_color(emotion), line_width=0)
    return _layout(fig, title or t("compare.fig_per_emotion"), height=440)


def au_contribution_bars(explanation: Explanation, title: str | None = None) -> go.Figure:
    """Each AU's contribution to the predicted emotion (positive: for it, negative: against), the
    AU model's own reading of one face; AUs that contribute nothing are left out."""
    ranked = [c for c in explanation.ranked if abs(c.contribution) > 1e-6]
    ranked.sort(key=lambda c: c.contribution)
    fig = go.Figure(go.Bar(
        y=[c.au for c in ranked], x=[c.contribution for c in ranked], orientation="h",
        marker_color=[FOR_COLOR if c.contribution > 0 else AGAINST_COLOR for c in ranked],
        customdata=[[c.intensity] for c in ranked],
        hovertemplate=t("compare.hover_contribution") + "<extra></extra>",
    ))
    fig.update_xaxes(title=t("compare.axis_contribution_logit", emotion=emotion_label(explanation.emotion)),
                     zeroline=True)
    return _layout(fig, title or t("compare.fig_contributions"), height=80 + 24 * max(len(ranked), 3))


def comparison_tables(comparison: Comparison, root: str | Path | None = None,
                      passed_over: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
    """Every table of a comparison by its file name, as Compare's buttons and ``compare --tables``
    write them: per image, probabilities, the summary (95 % Wilson intervals), precision/recall/F1,
    the confusion counts, McNemar with Holm's correction, and what was left out (when anything
    was). In English on a Korean page too, headers and cells alike (for scripts; the McNemar
    verdicts were Korean under English headers)."""
    from ..i18n import using_language

    with using_language("en"):
        mcnemar = mcnemar_frame(comparison)
    return {
        "compare_predictions.csv": predictions_frame(comparison.table, comparison.names, root, comparison.groups,
                                                     comparison.copies_of_training),
        "compare_probabilities.csv": probabilities_frame(comparison, root),
        "compare_summary.csv": summary_frame(comparison),
        "compare_precision_recall_f1.csv": precision_recall_frame(comparison),
        "compare_confusion.csv": confusion_frame(comparison),
        "compare_mcnemar.csv": mcnemar,
        "compare_calibration.csv": calibration_frame(comparison),
        "compare_calibration_by_answer.csv": answer_calibration_frame(comparison),
        **group_tables(comparison),
        **({"compare_left_out.csv": left_out_frame(comparison, passed_over)}
           if passed_over or comparison.unreadable or comparison.skipped or comparison.unlabelled else {}),
    }


GROUP_COLUMNS = ["column", "group", "model", "n", "accuracy", "ci95_low", "ci95_high", "balanced_accuracy",
                 "balanced_ci95_low", "balanced_ci95_high"]
GAP_COLUMNS = ["column", "comparison", "a", "b", "model", "model_b", "emotions", "difference", "ci95_low", "ci95_high",
               "p_value", "p_holm", "accuracy_gap"]


def group_frames(comparison: Comparison, analyses: Mapping | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every grouping column's scores (a row per column, group and model: plain and emotion-balanced
    accuracy with their intervals, then each emotion's images and recall) and its gaps (``gap``:
    group a minus b for a model, then each emotion's part; ``gap difference``: model minus
    model_b's gap, same images), for download; ``analyses``: ``group_analyses()`` where the caller
    already has them."""
    scores, gaps = [], []
    for column, analysis in (comparison.group_analyses() if analyses is None else analyses).items():
        for sc in analysis.scores:
            scores.append({"column": column, "group": sc.group, "model": sc.model, "n": sc.n, "accuracy": sc.accuracy,
                           "ci95_low": sc.accuracy_ci95[0], "ci95_high": sc.accuracy_ci95[1],
                           "balanced_accuracy": sc.balanced_accuracy, "balanced_ci95_low": sc.balanced_ci95[0],
                           "balanced_ci95_high": sc.balanced_ci95[1],
                           **{f"n {e}": sc.counts.get(e, 0) for e in comparison.classes},
                           **{f"recall {e}": sc.recall.get(e) for e in comparison.classes}})
        for g in analysis.gaps:
            gaps.append({"column": column, "comparison": "gap", "a": g.a, "b": g.b, "model": g.model, "model_b": None,
                         "emotions": " ".join(g.emotions), "difference": g.gap, "ci95_low": g.ci95[0],
                         "ci95_high": g.ci95[1], "p_value": g.p_value, "p_holm": g.p_holm,
                         "accuracy_gap": g.accuracy_gap,
                         **{f"gap {e}": g.by_emotion.get(e) for e in comparison.classes}})
        for d in analysis.differences:
            gaps.append({"column": column, "comparison": "gap difference", "a": d.a, "b": d.b, "model": d.model_a,
                         "model_b": d.model_b, "emotions": None, "difference": d.difference, "ci95_low": d.ci95[0],
                         "ci95_high": d.ci95[1], "p_value": d.p_value, "p_holm": d.p_holm, "accuracy_gap": None})
    per_emotion = [f"{kind} {e}" for kind in ("n", "recall") for e in comparison.classes]
    return (pd.DataFrame(scores, columns=GROUP_COLUMNS + per_emotion),
            pd.DataFrame(gaps, columns=GAP_COLUMNS + [f"gap {e}" for e in comparison.classes]))


def group_tables(comparison: Comparison) -> dict[str, pd.DataFrame]:
    """The group CSVs where the comparison was asked to group its images by a column it can
    group by (none otherwise: ``group_problems`` says why)."""
    analyses = comparison.group_analyses()
    if not analyses:
        return {}
    scores, gaps = group_frames(comparison, analyses)
    return {"compare_groups.csv": scores, "compare_group_gaps.csv": gaps}


def group_figure(analysis, order: Sequence[str] = ()) -> go.Figure:
    """Each model's emotion-balanced accuracy per group with its interval, models side by side in
    a group's row and in the other charts' colours and markers."""
    fig = go.Figure()
    order = list(order)
    models = list(dict.fromkeys(s.model for s in analysis.scores))
    for position, name in enumerate(models):
        i = order.index(name) if name in order else position
        mine = [s for s in analysis.scores if s.model == name]
        fig.add_trace(go.Scatter(
            x=[s.balanced_accuracy for s in mine], y=[f"{s.group} (n {s.n:,})" for s in mine], mode="markers",
            name=str(name), orientation="h",
            error_x=dict(type="data", symmetric=False, array=[s.balanced_ci95[1] - s.balanced_accuracy for s in mine],
                         arrayminus=[s.balanced_accuracy - s.balanced_ci95[0] for s in mine], color=model_color(i),
                         thickness=1.2, width=3),
            marker=dict(symbol=MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)], color=model_color(i), size=10),
            customdata=[[s.accuracy, s.n] for s in mine],
            hovertemplate=f"{name}, %{{y}}: " + t("compare.hover_group") + "<extra></extra>"))
    labels = [f"{g} (n {n:,})" for g, n in analysis.levels.items()]
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", title=t("compare.axis_balanced"))
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(labels)), title=analysis.column)
    fig.update_layout(scattermode="group", scattergap=0.3, legend=dict(orientation="h", y=-0.25))
    return _layout(fig, t("compare.fig_groups", column=analysis.column), height=180 + 70 * len(labels))


def gap_drivers(analysis, gap, count: int = 2) -> list[tuple[str, float, int, int]]:
    """The emotions that make ``gap`` most, in its direction (an emotion pulling against it is not
    where it comes from): (emotion, its part, group a's images of it, group b's)."""
    counts = {s.group: s.counts for s in analysis.scores if s.model == gap.model}
    sign = 1 if gap.gap >= 0 else -1
    along = sorted((e for e, v in gap.by_emotion.items() if v * sign > 0), key=lambda e: -gap.by_emotion[e] * sign)
    return [(e, gap.by_emotion[e], counts[gap.a].get(e, 0), counts[gap.b].get(e, 0)) for e in along[:count]]


def group_gap_words(analysis) -> list[str]:
    """A sentence per gap whose Holm-adjusted p is below 0.05, said from the group the model is
    better for ("more accurate for M than for F", never "-74 points more"), with the emotion that
    makes most of it and its images; then whether any two models' gaps differ, said from the model
    whose gap is larger; one sentence saying none is, where none is."""
    def points(value: float) -> str:
        return share_text(value, 1, points=True, signed=True)

    lines = []
    for g in analysis.gaps:
        if g.p_holm < 0.05:
            sign = 1 if g.gap >= 0 else -1
            better, worse = (g.a, g.b) if sign > 0 else (g.b, g.a)
            low, high = sorted((g.ci95[0] * sign, g.ci95[1] * sign))
            drivers = gap_drivers(analysis, g, 1)
            line = t("compare.group_gap_line", model=g.model, a=better, b=worse, gap=points(g.gap * sign),
                     low=points(low), high=points(high), p=p_text(g.p_holm))
            if drivers:
                emotion, part, n_a, n_b = drivers[0]
                line += " " + t("compare.group_gap_driver", emotion=emotion_label(emotion), emotion_gap=points(part * sign),
                                n_better=n_a if sign > 0 else n_b, n_worse=n_b if sign > 0 else n_a, a=better, b=worse)
            lines.append(line)
    if not lines:
        lines.append(t("compare.group_no_gap" if analysis.gaps else "compare.group_nothing_compared",
                       column=analysis.column))
    for d in analysis.differences:
        if d.p_holm < 0.05:
            sign = 1 if d.difference >= 0 else -1
            first, second = (d.model_a, d.model_b) if sign > 0 else (d.model_b, d.model_a)
            low, high = sorted((d.ci95[0] * sign, d.ci95[1] * sign))
            lines.append(t("compare.group_difference_line", first=first, second=second, a=d.a, b=d.b,
                           d=points(d.difference * sign), low=points(low), high=points(high), p=p_text(d.p_holm)))
    return lines


def group_notes(analysis) -> list[str]:
    """What to keep in mind reading a column's groups: merged spellings, images without a group,
    small groups, emotions a group lacks, and a mix of emotions that plain accuracy mixes in."""
    notes = []
    merged = {g: s for g, s in analysis.spellings.items() if len(s) > 1}
    if merged:
        notes.append(t("compare.group_spellings", merged="; ".join(f"{g}: {', '.join(s)}" for g, s in merged.items())))
    if analysis.missing:
        notes.append(t("compare.group_missing", n=f"{analysis.missing:,}", column=analysis.column))
    if analysis.small:
        notes.append(t("compare.group_small", groups=", ".join(analysis.small)))
    for g, emotions in analysis.missing_emotions.items():
        notes.append(t("compare.group_lacks", group=g, emotions=", ".join(map(emotion_label, emotions))))
    for a, b in analysis.unshared:
        notes.append(t("compare.group_unshared", a=a, b=b))
    if analysis.clustered_by:
        notes.append(t("compare.group_clustered", column=analysis.clustered_by, people=f"{analysis.people:,}"))
    else:
        notes.append(t("compare.group_independent"))
    mix = analysis.mix_difference()
    if mix is not None:
        emotion, shares = mix
        notes.append(t("compare.group_mix", emotion=emotion_label(emotion),
                       shares=", ".join(f"{g} {percent(v)}" for g, v in shares.items())))
    return notes
