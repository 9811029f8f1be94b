"""The dashboard's figures: right shapes, plain-word AU labels, and an overlay drawn where the AUs are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from fer_core.au_table import AU_COLUMNS
from fer_core.emotions import SIX_EMOTIONS
from fer_core.figures import plots
from fer_core.measure.au_mapping import AU_LANDMARKS


def _table(n_per: int = 30, seed: int = 0) -> pd.DataFrame:
    """A small AU table where happy faces have high AU12 and sad faces high AU15."""
    rng = np.random.default_rng(seed)
    rows = []
    for emotion in ("happy", "sad", "neutral"):
        for i in range(n_per):
            aus = {c: float(rng.uniform(0, 1)) for c in AU_COLUMNS}
            if emotion == "happy":
                aus["AU12_r"] = float(rng.uniform(3, 5))
            if emotion == "sad":
                aus["AU15_r"] = float(rng.uniform(2, 4))
            rows.append({"file": f"{emotion}{i}.jpg", "face": 0, "label": emotion, "success": 1, **aus})
    rows.append({"file": "miss.jpg", "face": 0, "label": "happy", "success": 0, **{c: np.nan for c in AU_COLUMNS}})
    return pd.DataFrame(rows)


def test_balance_table_and_imbalance_ratio():
    counts = {"happy": 300, "disgust": 30, "sad": 150}
    table = plots.balance_table(counts, order=SIX_EMOTIONS)
    assert list(table["emotion"]) == ["disgust", "happy", "sad"]
    assert table["percent"].sum() == pytest.approx(100.0, abs=0.2)
    assert plots.imbalance_ratio(counts) == pytest.approx(10.0)
    assert plots.imbalance_ratio({"happy": 3, "sad": 0}) == float("inf")
    fig = plots.class_balance_bar(counts, SIX_EMOTIONS)
    assert isinstance(fig, go.Figure) and list(fig.data[0].y) == [30, 300, 150]
    assert "%" in fig.data[0].text[0]
    assert fig.layout.yaxis.tickformat == ","  # "8,000" on the axis as on the bars, not "8000"


def test_confusion_heatmap_normalises_rows_and_prints_counts():
    from fer_core.evaluation.metrics import evaluation_report

    report = evaluation_report(["happy"] * 10, ["happy"] * 8 + ["sad"] * 2, ["happy", "sad"])
    fig = plots.confusion_heatmap(report)
    z = np.array(fig.data[0].z)
    assert z[0].tolist() == [0.8, 0.2] and z[1].tolist() == [0.0, 0.0]  # empty row: no division by zero
    assert fig.data[0].text[0][0] == "80.0%<br>8"
    assert plots.confusion_heatmap(report, compact=True).data[0].text[0][0] == "80%<br>8"  # half a page wide


def test_confusion_heatmap_shares_are_of_every_image_of_the_emotion():
    """Two happy faces not found and a fear answer among six emotions are in no cell of the report's
    matrix: the shares used to be of the rest (happy 8 of 8 = 100 % beside an accuracy of 80 %).
    With the report's no-face and other-emotion counts they get columns and the diagonal is the
    per-emotion accuracy shown beside the matrix."""
    from fer_core.evaluation.metrics import evaluation_report
    from fer_core.i18n import using_language

    truth = ["happy"] * 10 + ["sad"] * 10
    answers = ["happy"] * 8 + [None] * 2 + ["sad"] * 5 + ["happy"] * 4 + ["fear"]
    report = evaluation_report(truth, answers, ["happy", "sad"])
    fig = plots.confusion_heatmap(report, compact=True)
    z = np.array(fig.data[0].z)
    assert list(fig.data[0].x) == ["happy", "sad", "other emotion", "no face"]
    assert [z[i, i] for i in range(2)] == [report.per_class[e].accuracy for e in report.labels] == [0.8, 0.5]
    assert z.sum(axis=1).tolist() == [1.0, 1.0] and fig.data[0].text[0][3] == "20%<br>2"
    # a seven-emotion model among six: its extra column says what it answered, not "other emotion"
    assert list(plots.confusion_heatmap(report, unscored=["fear"]).data[0].x) == ["happy", "sad", "fear (not scored)",
                                                                                   "no face"]
    nothing_other = evaluation_report(["happy", "sad"], [None, "sad"], ["happy", "sad"])
    with using_language("ko"):
        korean = plots.confusion_heatmap(nothing_other)
    assert list(korean.data[0].x) == ["행복", "슬픔", "얼굴 없음"]  # nothing other: no empty column


def test_coefficient_heatmap_uses_plain_au_names_and_is_centred():
    coef = np.zeros((len(SIX_EMOTIONS), len(AU_COLUMNS)))
    coef[2, AU_COLUMNS.index("AU12_r")] = 2.5
    coef[4, AU_COLUMNS.index("AU15_r")] = -1.0
    fig = plots.coefficient_heatmap(coef, SIX_EMOTIONS)
    heat = fig.data[0]
    assert "AU12 lip corner puller" in heat.y and "AU04 brow lowerer" in heat.y
    assert list(heat.x) == list(SIX_EMOTIONS)
    assert heat.zmid == 0 and heat.zmin == -2.5 and heat.zmax == 2.5
    assert np.array(heat.z).shape == (len(AU_COLUMNS), len(SIX_EMOTIONS))
    with pytest.raises(ValueError, match="shape"):
        plots.coefficient_heatmap(coef[:, :5], SIX_EMOTIONS)


def test_per_class_accuracy_bars():
    from fer_core.evaluation.metrics import ClassScore

    fig = plots.per_class_accuracy_bars({"happy": ClassScore(10, 0.9), "sad": ClassScore(0, None)}, overall=0.8)
    # no sad images: no accuracy, drawn as no bar with a dash, not as 0 %
    assert list(fig.data[0].y) == [0.9, 0.0] and list(fig.data[0].text) == ["90%", "–"]
    # each bar's 95 % Wilson interval (9 of 10: 60-98 %): a small table's bars rest on a few faces
    from fer_core.evaluation.metrics import wilson_counts

    low, high = wilson_counts(9, 10)
    assert fig.data[0].error_y.array[0] == pytest.approx(high - 0.9)
    assert fig.data[0].error_y.arrayminus[0] == pytest.approx(0.9 - low) and fig.data[0].error_y.array[1] == 0
    never = plots.per_class_accuracy_bars({"happy": ClassScore(10, 0.0)})
    assert list(never.data[0].text) == ["0%"]  # tested and never right: 0 %
    assert fig.layout.shapes  # the overall line
    # named in the legend, not written over the bars' own labels
    assert not fig.layout.annotations
    assert [d.name for d in fig.data if d.showlegend] == ["overall 80.0%"]


def test_figures_speak_korean():
    from fer_core.evaluation.metrics import ClassScore, evaluation_report
    from fer_core.i18n import using_language

    with using_language("ko"):
        fig = plots.per_class_accuracy_bars({"happy": ClassScore(10, 0.9), "sad": ClassScore(4, 0.5)}, overall=0.8)
        heat = plots.confusion_heatmap(evaluation_report(["happy", "sad"], ["happy", "sad"], ["happy", "sad"]))
        aus = plots.au_intensity_bars({"AU12_r": 2.0, "AU04_r": 0.1})
    assert list(fig.data[0].x) == ["행복", "슬픔"] and fig.layout.title.text == "감정별 정확도 (재현율)"
    assert [d.name for d in fig.data if d.showlegend] == ["전체 80.0%"]
    assert list(heat.data[0].x) == ["행복", "슬픔"] and heat.layout.xaxis.title.text == "예측"
    assert list(aus.data[0].y) == ["AU12 입꼬리 당김", "AU04 눈썹 내림"]
    assert "NanumGothic" in fig.layout.font.family


def test_au_box_plots_send_statistics_not_rows():
    table = _table()
    fig = plots.au_box_plots(table, ["happy", "sad", "neutral"])
    assert len(fig.data) == 3
    happy = fig.data[0]
    assert happy.name.startswith("happy (n=30")  # the failed row is left out
    assert len(happy.median) == len(AU_COLUMNS) and happy.y is None
    i12 = list(happy.x).index("AU12 lip corner puller")
    assert happy.median[i12] > 2.9 and happy.lowerfence[i12] <= happy.q1[i12] <= happy.q3[i12] <= happy.upperfence[i12]


def test_mean_au_heatmap_matches_the_data():
    table = _table()
    profile = plots.mean_au_profile(table, ["happy", "sad", "neutral", "angry"])
    assert list(profile.index) == ["happy", "sad", "neutral"]  # absent emotions dropped
    assert profile.loc["happy", "AU12 lip corner puller"] > profile.loc["sad", "AU12 lip corner puller"]
    fig = plots.mean_au_heatmap(table, ["happy", "sad", "neutral"])
    assert "AU15 lip corner depressor" in fig.data[0].y
    # AUs measured as float32 (the AU model page's extraction) print as two decimals, not float noise
    measured = table.astype({c: np.float32 for c in AU_COLUMNS})
    # (a browser reads float32 0.11 as 0.10999999940395355; the cells are sent as float64)
    cells = np.asarray(plots.mean_au_heatmap(measured, ["happy", "sad", "neutral"]).data[0].text)
    assert cells.dtype == np.float64 and np.array_equal(cells, np.round(cells, 2))


def test_the_unlabelled_bar_is_named_in_the_pages_language():
    from fer_core.i18n import using_language

    with using_language("ko"):
        fig = plots.class_balance_bar({"happy": 3, "unlabelled": 2}, SIX_EMOTIONS)
    assert list(fig.data[0].x) == ["행복", "레이블 없음"]


def test_one_face_charts():
    fig = plots.probability_bars({"happy": 0.7, "sad": 0.2, "neutral": 0.1})
    assert list(fig.data[0].y)[-1] == "happy"  # most likely on top
    aus = {c: 0.0 for c in AU_COLUMNS} | {"AU12_r": 4.0, "AU06_r": 2.0, "AU25_r": 0.4}
    fig = plots.au_intensity_bars(aus, highlight=["AU12"])
    colors = list(fig.data[0].marker.color)
    assert colors[list(aus).index("AU12_r")] != colors[list(aus).index("AU06_r")]
    assert "AU06 cheek raiser" in fig.data[0].y
    assert tuple(fig.layout.xaxis.range) == (0, 5.6)
    # the AU-bottleneck network's AU15 of -0.1 got no bar and no number on a 0-5.6 axis
    fig = plots.au_intensity_bars(aus | {"AU15_r": -0.1})
    assert fig.layout.xaxis.range[0] < -0.1


def test_probability_bars_label_tiny_bars_outside():
    """Plotly drops the text of a sub-pixel bar placed "auto": a 6e-7 class showed no "0%" label."""
    fig = plots.probability_bars({"happy": 0.9979994, "sad": 6e-7, "neutral": 0.002})
    bar = fig.data[0]
    placed = dict(zip(bar.y, zip(bar.text, bar.textposition)))
    assert placed == {"sad": ("0%", "outside"), "neutral": ("0%", "outside"), "happy": ("100%", "inside")}
    assert bar.cliponaxis is False  # the outside label may reach past the plot area


def test_overlay_marks_the_landmarks_of_the_chosen_aus():
    rgb = np.full((400, 400, 3), 90, dtype=np.uint8)
    landmarks = np.zeros((478, 3))
    rng = np.random.default_rng(1)
    landmarks[:, :2] = rng.uniform(120, 280, size=(478, 2))
    out = plots.draw_face_overlay(rgb, (100, 100, 200, 200), landmarks, ["AU12", "AU04"], label="happy 90%")
    arr = np.asarray(out)
    assert arr.shape[1] == 400 and arr.shape[0] > 400  # legend strip below, face untouched by text
    px, py = landmarks[AU_LANDMARKS["AU12"][0], :2].round().astype(int)
    assert tuple(arr[py, px]) != (90, 90, 90)
    assert tuple(arr[100, 150]) == (255, 255, 255)  # box edge
    assert (arr[400:] != 90).any()


def test_overlay_crops_and_enlarges_small_faces():
    rgb = np.full((48, 48, 3), 60, dtype=np.uint8)
    landmarks = np.full((478, 3), 24.0)
    out = plots.draw_face_overlay(rgb, (10, 10, 28, 28), landmarks, [], crop_margin=0.2)
    assert max(out.size) >= 360
    out = plots.draw_face_overlay(rgb, (10, 10, 28, 28), None, ["AU45"])  # no landmarks: box and legend only
    assert out.height > out.width


def test_confusion_rows_count_every_image_of_the_emotion():
    """A seven-emotion model's fear among six scored emotions, and a face not found, get columns of
    their own: each row adds up to all images of its emotion, so the diagonal is the model's
    per-emotion accuracy, not the share of the answers that happened to be scored emotions."""
    from fer_core.evaluation.metrics import EvaluationReport, evaluation_report

    report = evaluation_report(["happy", "happy", "happy", "happy", "sad", "sad"],
                               ["fear", "happy", "happy", None, "sad", "happy"], ["happy", "sad"], model="m")
    assert report.other_per_class == [1, 0] and report.no_face_per_class == [1, 0]
    heat = plots.confusion_heatmap(report).data[0]
    assert list(heat.x) == ["happy", "sad", "other emotion", "no face"]
    z = np.array(heat.z)
    assert z[0].tolist() == [0.5, 0.0, 0.25, 0.25] and z[0, 0] == report.per_class["happy"].accuracy
    assert z[1].tolist() == [0.5, 0.5, 0.0, 0.0]
    assert EvaluationReport.from_dict(report.to_dict()).other_per_class == [1, 0]
    plain = evaluation_report(["happy", "sad"], ["happy", "happy"], ["happy", "sad"], model="m")
    assert list(plots.confusion_heatmap(plain).data[0].x) == ["happy", "sad"]  # nothing outside: no extra columns


def test_mask_shift_shows_answers_outside_the_scored_emotions():
    """A model that answers fear (not scored) more often under the mask shows that column."""
    from fer_core.evaluation.compare import Comparison
    from fer_core.evaluation.mask_report import MaskReport
    from fer_core.figures.masks import shift_heatmap

    def comparison(answers):
        table = pd.DataFrame({"file": ["a", "b", "c", "d"], "label": ["happy", "happy", "sad", "sad"],
                              "m": answers})
        return Comparison(table, {"m": None}, [], ("happy", "sad"))

    report = MaskReport(comparison(["happy", "happy", "sad", "sad"]), comparison(["fear", "happy", None, "sad"]),
                        "surgical", 0)
    heat = shift_heatmap(report, "m").data[0]
    assert list(heat.x) == ["happy", "sad", "fear", "not judged (its AUs hidden)"]  # masked faces are all found
    assert np.array(heat.z)[0].tolist() == [-50.0, 0.0, 50.0, 0.0]


def test_contribution_bars_say_their_unit():
    """The bars are logit contributions centred over the emotions; the axis read only
    "contribution towards happy", which a reader takes for a share of probability."""
    from fer_core.figures.compare import au_contribution_bars
    from fer_core.i18n import using_language
    from fer_core.predictors.base import AUContribution, Explanation

    ranked = (AUContribution("AU12", "AU12 lip corner puller", 3.8, 1.2),
              AUContribution("AU04", "AU04 brow lowerer", 0.0, -0.4))
    ex = Explanation("happy", {"happy": 0.8, "sad": 0.2}, ranked)
    fig = au_contribution_bars(ex)
    assert list(fig.data[0].x) == [-0.4, 1.2] and "log-odds" in fig.layout.xaxis.title.text
    with using_language("ko"):
        assert "로그 오즈" in au_contribution_bars(ex).layout.xaxis.title.text


def _summary(models: int) -> pd.DataFrame:
    """Rows as ``accuracy_summary`` gives them, for ``models`` made-up models."""
    acc = np.linspace(0.3, 0.7, models)
    return pd.DataFrame({"model": [f"model-{i}" for i in range(models)], "kind": "cnn", "accuracy": acc,
                         "ci95_low": acc - 0.03, "ci95_high": acc + 0.03, "macro_f1": acc, "no_face": 0, "n": 3093})


def test_many_models_overall_bars_are_labelled_by_name_slanted():
    """Nine models' three-line labels (name, accuracy, interval) piled on each other under the
    bars; past four the label is the name alone, slanted, the numbers in the table and the hover."""
    from fer_core.figures.compare import accuracy_ci_bars

    many = accuracy_ci_bars(_summary(9))
    assert list(many.data[0].x) == [f"model-{i}" for i in range(9)]
    assert many.layout.xaxis.tickangle not in (None, 0)
    assert "model-" in many.data[0].customdata[0][3] and "%{y:.1%}" in many.data[0].hovertemplate
    few = accuracy_ci_bars(_summary(4))
    assert all("<br>" in label and "%" in label for label in few.data[0].x) and few.layout.xaxis.tickangle == 0


def test_many_models_per_emotion_bars_keep_their_values_in_the_hover_only():
    """With many models the bars' values were rotated text too small to read."""
    from fer_core.figures.compare import per_emotion_grouped_bars

    def frame(models: int) -> pd.DataFrame:
        return pd.DataFrame([{"model": f"m{i}", "emotion": e, "accuracy": 0.5, "n": 3}
                             for i in range(models) for e in ("happy", "sad")])

    bars = [d for d in per_emotion_grouped_bars(frame(5)).data if d.type == "bar"]
    assert len(bars) == 5 and all(b.text is None and b.textposition == "none" for b in bars)
    assert all("%{y:.1%}" in b.hovertemplate for b in bars)
    four = [d for d in per_emotion_grouped_bars(frame(4)).data if d.type == "bar"]
    assert all(list(b.text) == ["50.0%", "50.0%"] for b in four)


def _alpha(color: str) -> float:
    """The opacity of a ``#rrggbb`` or ``rgba(…)`` colour."""
    return float(color.rsplit(",", 1)[1].rstrip(")")) if color.startswith("rgba") else 1.0


def test_mask_bars_legend_is_pale_and_solid_like_the_bars():
    """The legend showed "no mask" and "masked" as the same blue square while the bars are pale
    and solid: a bar's swatch ignores its marker opacity."""
    from fer_core.evaluation.compare import Comparison
    from fer_core.evaluation.mask_report import MaskReport
    from fer_core.figures.masks import masked_vs_original_bars

    def comparison(answers):
        table = pd.DataFrame({"file": list("abcd"), "label": ["happy", "happy", "sad", "sad"],
                              "m1": answers, "m2": answers[::-1]})
        return Comparison.from_table(table, ["m1", "m2"], ("happy", "sad"))

    report = MaskReport(comparison(["happy", "happy", "sad", "sad"]), comparison(["happy", "sad", "sad", "happy"]),
                        "surgical", 0)
    fig = masked_vs_original_bars(report)
    legend = {d.name: d for d in fig.data if d.showlegend is not False}
    assert set(legend) == {"no mask", "masked"}
    swatch = {name: d.marker.color for name, d in legend.items()}  # what the legend draws, opacity aside
    assert swatch["no mask"] != swatch["masked"] and _alpha(swatch["no mask"]) < _alpha(swatch["masked"])
    assert fig.layout.xaxis.type == fig.layout.xaxis2.type == "category"  # the keys' empty points aside
    for bar in (d for d in fig.data if d.type == "bar"):  # every panel's bars shade as their legend key
        assert bar.marker.opacity in (None, 1) and _alpha(bar.marker.color) == _alpha(swatch[bar.name])
