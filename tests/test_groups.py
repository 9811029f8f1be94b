"""Groups of faces (a column of the labels sheet: the poser's sex, age band): each model's
accuracy per group with every emotion weighted alike, the gaps between groups, whether two models'
gaps differ, and what a reader must know (merged spellings, small groups, different mixes of
emotions) — in the CLI, its JSON and tables, and on the Compare page."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import charts, run_app, texts
from streamlit.testing.v1 import AppTest
from test_compare import COMPARE_PAGE, LookupPredictor, T

from fer_core.cli import main
from fer_core.errors import FerError
from fer_core.evaluation.compare import Comparison
from fer_core.evaluation.groups import group_analysis, group_levels
from fer_core.figures.compare import group_gap_words, group_notes
from fer_core.i18n import using_language
from ui.common import FOLDER


def comparison_of(labels, answers: dict[str, list]) -> Comparison:
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(len(labels))], "label": labels, **answers})
    return Comparison.from_table(table, list(answers), sorted(set(labels)))


def test_spellings_differing_in_case_or_spaces_are_one_group_and_blanks_are_none():
    groups, spellings = group_levels(["F", "f ", "Female", "", "NA", None, "m", "M", "M", float("nan"), "unknown"])
    assert groups == ["F", "F", "Female", None, None, None, "M", "M", "M", None, None]
    assert spellings == {"F": ["F", "f"], "Female": ["Female"], "M": ["M", "m"]}


def test_groups_compare_on_emotion_balanced_accuracy_which_a_different_mix_of_emotions_does_not_move():
    """A model right on every happy face and on half the sad ones, for both groups alike: group A
    has 8 happy and 2 sad faces, group B 2 happy and 8 sad. Plain accuracy reads a 30-point gap;
    emotion-balanced accuracy (each emotion's recall, averaged) reads none, and the mix is said."""
    labels = ["happy"] * 8 + ["sad"] * 2 + ["happy"] * 2 + ["sad"] * 8
    answers = ["happy"] * 8 + ["sad", "happy"] + ["happy"] * 2 + ["sad", "happy"] * 4
    comparison = comparison_of(labels, {"m": answers})
    analysis = group_analysis(comparison, ["A"] * 10 + ["B"] * 10, "set")
    a, b = analysis.scores
    assert (a.group, a.n, a.accuracy, a.balanced_accuracy) == ("A", 10, 0.9, 0.75)
    assert (b.group, b.n, b.accuracy, b.balanced_accuracy) == ("B", 10, 0.6, 0.75)
    assert a.counts == {"happy": 8, "sad": 2} and a.recall == {"happy": 1.0, "sad": 0.5}
    gap, = analysis.gaps
    assert (gap.a, gap.b, gap.gap, gap.accuracy_gap) == ("A", "B", 0.0, pytest.approx(0.3))
    assert gap.ci95[0] < 0 < gap.ci95[1] and gap.p_value == pytest.approx(1.0) and gap.by_emotion == {"happy": 0.0, "sad": 0.0}
    with using_language("en"):
        notes = group_notes(analysis)
        assert any(n.startswith("The groups' mixes of emotions differ (happy: A 80.0%, B 20.0%") for n in notes)
        assert any("Fewer than 30 images in A, B" in n for n in notes)
        assert group_gap_words(analysis) == [
            "No model's accuracy differs between the groups of set beyond chance (Holm-adjusted p ≥ 0.05 for every "
            "gap); with few images per group that is not evidence of no difference: read the intervals."]


def test_a_real_gap_is_found_said_with_the_emotion_that_makes_it_and_told_apart_from_another_models():
    """120 faces a group: one model right on every face of group A and on a third of group B's,
    happy and sad alike; the other model as right in both. The first's gap is found (Holm over
    both models' gaps), the second's is not, and the first's gap is larger than the second's on the
    same images; the gaps' per-emotion parts and the intervals hold the numbers."""
    rng = random.Random(3)
    labels = (["happy"] * 60 + ["sad"] * 60) * 2
    unfair = labels[:120] + [e if rng.random() < 1 / 3 else ("sad" if e == "happy" else "happy") for e in labels[120:]]
    fair = [e if i % 3 else ("sad" if e == "happy" else "happy") for i, e in enumerate(labels)]
    comparison = comparison_of(labels, {"unfair": unfair, "fair": fair})
    analysis = group_analysis(comparison, ["A"] * 120 + ["B"] * 120, "sex")
    unfair_gap, fair_gap = analysis.gaps
    assert unfair_gap.model == "unfair" and unfair_gap.p_holm < 0.001 and unfair_gap.ci95[0] > 0.4
    assert set(unfair_gap.by_emotion) == {"happy", "sad"} and all(v > 0.4 for v in unfair_gap.by_emotion.values())
    assert fair_gap.p_holm > 0.05 and fair_gap.ci95[0] < 0 < fair_gap.ci95[1]
    assert unfair_gap.p_holm >= unfair_gap.p_value  # adjusted over the two
    difference, = analysis.differences
    assert (difference.model_a, difference.model_b) == ("unfair", "fair") and difference.ci95[0] > 0.3
    assert difference.difference == pytest.approx(unfair_gap.gap - fair_gap.gap, abs=1e-6)
    with using_language("en"):
        lines = group_gap_words(analysis)
    assert lines[0].startswith(f"**unfair** is +{unfair_gap.gap * 100:.1f} points more accurate for A than for B (95 % CI +")
    assert lines[-1].startswith("The gap between A and B is +") and "larger for **unfair** than for **fair**" in lines[-1]
    assert len(lines) == 2  # the fair model's gap is not said


def test_a_column_of_one_group_or_one_value_per_image_is_refused_in_a_line():
    comparison = comparison_of(["happy", "sad"] * 6, {"m": ["happy"] * 12})
    with pytest.raises(FerError, match=r"^sex: one group among the images scored \(12 with a value\)"):
        group_analysis(comparison, ["F"] * 12, "sex")
    with pytest.raises(FerError, match=r"^participant: 12 different values among the images scored: group by a column "
                                       r"of at most 10 groups"):
        group_analysis(comparison, [f"P{i}" for i in range(12)], "participant")


@pytest.fixture
def sheet(fer_sample, tmp_path):
    """fer_sample's 24 images with a messy sheet: sex as F, f, M (one blank), and a participant column."""
    files = sorted(p.relative_to(fer_sample).as_posix() for p in fer_sample.rglob("*.jpg"))
    rows = ["file,emotion,sex,participant"]
    for i, f in enumerate(files):
        sex = "" if i == 5 else ("F" if i % 2 else ("f" if i % 4 else "M"))
        rows.append(f"{f},{f.split('/')[0]},{sex},P{i}")
    path = tmp_path / "sheet.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_compare_group_by_gives_the_groups_in_text_json_tables_and_the_predictions_csv(capsys, fer_sample, sheet, tmp_path):
    args = ["compare", "--images", fer_sample, "--labels", sheet, "--models", "au-logreg-fer2013", "--workers", "1"]
    assert main([str(a) for a in [*args, "--group-by", "sex", "--tables", tmp_path / "t", "--csv", tmp_path / "p.csv",
                                  "--report", tmp_path / "r.html"]]) == 0
    out = capsys.readouterr()[0]
    report = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "By group: sex" in report and "Accuracy per group of sex" in report  # its words, tables and figure
    assert "by sex (F 17, M 6): emotion-balanced accuracy" in out
    assert "gap au-logreg-fer2013 F - M: " in out and "Holm-adjusted p" in out
    assert "note: Images without a sex (blank, NA, unknown), left out of the groups: 1." in out and "F: F, f" in out
    scores = pd.read_csv(tmp_path / "t" / "compare_groups.csv")
    assert list(scores["group"]) == ["F", "M"] and list(scores["n"]) == [17, 6]
    assert scores.loc[0, "balanced_accuracy"] == pytest.approx(np.nanmean(
        [scores.loc[0, f"recall {e}"] for e in ("angry", "disgust", "happy", "neutral", "sad", "surprise")]), abs=1e-6)
    gaps = pd.read_csv(tmp_path / "t" / "compare_group_gaps.csv")
    assert list(gaps["comparison"]) == ["gap"] and gaps.loc[0, "ci95_low"] <= gaps.loc[0, "difference"] <= gaps.loc[0, "ci95_high"]
    predictions = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(predictions.columns[:3]) == ["file", "label", "sex"] and sorted(set(predictions["sex"])) == ["", "F", "M", "f"]
    assert main([str(a) for a in [*args, "--group-by", "sex", "--json"]]) == 0
    found = json.loads(capsys.readouterr()[0])
    assert found["groups"]["sex"]["groups"] == {"F": 17, "M": 6} and found["labels"]["group_columns"] == ["sex"]
    assert found["groups"]["sex"]["method"]["correction"].startswith("Holm")


@pytest.mark.parametrize("extra, problem", [
    (["--group-by", "age"], "has no 'age' column to group by (its columns: file, emotion, sex, participant)"),
    (["--group-by", "participant"], "participant: 24 different values among the images scored"),
    (["--group-by", "emotion"], "emotion holds the labels; group by another column"),
])
def test_compare_group_by_refuses_a_column_it_cannot_group_by_before_any_model_runs(capsys, fer_sample, sheet, monkeypatch,
                                                                                    extra, problem):
    import fer_core.evaluation.compare as compare_module

    monkeypatch.setattr(compare_module, "run_comparison", lambda *a, **k: pytest.fail("a model ran"))
    code = main([str(a) for a in ["compare", "--images", fer_sample, "--labels", sheet, "--models", "au-logreg-fer2013",
                                  *extra]])
    err = capsys.readouterr()[1]
    assert code == 2 and problem in err and len(err.strip().splitlines()[-1]) < 300


def test_group_by_needs_the_labels_sheet(capsys, fer_sample):
    assert main(["compare", "--images", str(fer_sample), "--group-by", "sex"]) == 2
    assert "--group-by names a column of --labels CSV: give --labels too" in capsys.readouterr()[1]


def test_compare_page_groups_the_faces_by_a_column_of_the_sheet_chosen_before_or_after_the_run(models_dir, six_images,
                                                                                              downloads):
    """The sheet's other columns are offered to group by; the section shows each model's accuracy per
    group (a figure), the notes and the downloads; a column chosen after the run needs no new run."""
    classes = ["angry", "happy", "sad"]
    answers = {"mine": ["happy", "happy", "sad", "sad", "sad", "angry"]}
    sheet = ("file,label,sex,site\nhappy000.png,happy,F,x\nhappy001.png,happy,M,y\nhappy002.png,happy,F,x\n"
             "sad003.png,sad,M,y\nsad004.png,sad,f,x\nangry005.png,angry,M,y\n")
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {n: LookupPredictor(n, classes, a) for n, a in answers.items()}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    at.file_uploader(key="cmp_labels").set_value(("sheet.csv", sheet.encode(), "text/csv"))
    run_app(at, T)
    assert at.multiselect(key="cmp_group_by").options == ["sex", "site"]
    at.multiselect(key="cmp_group_by").set_value(["sex"])
    run_app(at, T)
    assert at.selectbox(key="cmp_cluster_by").options == ["site"] and at.selectbox(key="cmp_cluster_by").value is None
    at.multiselect(key="cmp_models").set_value(["mine"])
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert not at.exception and "By group: sex" in texts(at.header)
    assert any(c.startswith("Spellings that differ only in case or spaces were merged: F: F, f") for c in texts(at.caption))
    figure = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("Accuracy per group of sex"))
    assert figure["data"][0]["y"] == ["F (n 3)", "M (n 3)"]
    assert figure["data"][0]["x"] == [pytest.approx(0.75), pytest.approx(1.0)]  # F: happy 2/2, sad 1/2; M: all right
    groups = pd.read_csv(io.BytesIO(downloads["compare_groups.csv"]))
    assert list(groups["group"]) == ["F", "M"] and list(groups["balanced_accuracy"]) == [0.75, 1.0]
    predictions = pd.read_csv(io.BytesIO(downloads["compare_predictions.csv"]))
    assert dict(zip(predictions["file"], predictions["sex"])) == {
        "happy000.png": "F", "happy001.png": "M", "happy002.png": "F", "sad003.png": "M", "sad004.png": "f",
        "angry005.png": "M"}  # as the sheet writes it, for a mixed model in R
    assert "compare_group_gaps.csv" in downloads
    at.multiselect(key="cmp_group_by").set_value(["site"])  # after the run: no new run, another section
    run_app(at, T)
    assert "By group: site" in texts(at.header) and "By group: sex" not in texts(at.header)
    assert not any("previous choice" in s for s in texts(at.info))
    assert list(pd.read_csv(io.BytesIO(downloads["compare_groups.csv"]))["group"]) == ["x", "y"]


def test_a_gap_is_said_from_the_group_the_model_is_better_for_and_from_the_emotions_along_it():
    """The larger group comes first, so half the gaps are negative: "-74.4 points more accurate for
    M than for F" read backwards. A gap is said from the better group, its interval turned with it,
    and "most of it" names an emotion in its direction with the images behind it."""
    labels = (["happy"] * 60 + ["sad"] * 60) * 2
    right_on_b = [("sad" if e == "happy" else "happy") for e in labels[:120]] + labels[120:]
    right_on_b[0] = "happy"  # one happy face of A right: happy's part of the gap is the smaller
    comparison = comparison_of(labels, {"m": right_on_b})
    analysis = group_analysis(comparison, ["A"] * 120 + ["B"] * 120, "sex")
    gap, = analysis.gaps
    assert (gap.a, gap.b) == ("A", "B") and gap.gap < -0.9
    with using_language("en"):
        line, = group_gap_words(analysis)
    assert line.startswith(f"**m** is +{-gap.gap * 100:.1f} points more accurate for B than for A (95 % CI +")
    assert line.endswith("Most of it is on sad (+100.0 points, 60 images of B against 60 of A).")
    with using_language("ko"):
        assert "A보다 B에서 +" in group_gap_words(analysis)[0]


def test_groups_without_an_emotion_in_common_are_said_not_compared_and_blank_words_are_no_group():
    labels = ["angry"] * 4 + ["happy"] * 4
    comparison = comparison_of(labels, {"m": labels})
    analysis = group_analysis(comparison, ["F"] * 4 + ["M"] * 3 + ["미상"], "sex")
    assert analysis.gaps == [] and analysis.unshared == [("F", "M")] and analysis.missing == 1
    with using_language("en"):
        assert group_gap_words(analysis) == [
            "No two groups of sex have an emotion in common, so no gap between them was measured."]
        assert "F and M have no emotion in common: they were not compared." in group_notes(analysis)


def test_images_of_one_person_widen_the_intervals_when_the_poser_column_is_given():
    """Ten posers, each right on all or none of their faces: taken as independent images the gap
    between two groups of posers looks sure; clustered by poser it is as uncertain as ten people are."""
    labels = ["happy", "sad"] * 50
    posers = [f"P{i // 10}" for i in range(100)]
    good = {f"P{k}" for k in (0, 1, 2, 3, 5)}  # F: 4 of 5 posers right, M: 1 of 5
    answers = [e if p in good else ("sad" if e == "happy" else "happy") for e, p in zip(labels, posers)]
    comparison = comparison_of(labels, {"m": answers})
    sex = ["F" if int(p[1:]) < 5 else "M" for p in posers]
    alone = group_analysis(comparison, sex, "sex").gaps[0]
    clustered = group_analysis(comparison, sex, "sex", posers, "poser")
    gap = clustered.gaps[0]
    assert gap.gap == alone.gap and gap.ci95[1] - gap.ci95[0] > 2 * (alone.ci95[1] - alone.ci95[0])
    assert gap.p_value > alone.p_value and (clustered.clustered_by, clustered.people) == ("poser", 10)
    with using_language("en"):
        assert any(n.startswith("The images of one person (by poser: 10 people) are taken as alike")
                   for n in group_notes(clustered))
        assert any(n.startswith("Each image is taken as independent") for n in group_notes(group_analysis(
            comparison, sex, "sex")))


def test_a_column_left_one_group_after_the_run_is_said_and_the_rest_is_kept():
    """An unreadable image can leave a column one group among the images scored: the run's results,
    JSON and tables are kept, the column's problem said (it threw the whole CLI run away)."""
    comparison = comparison_of(["happy", "sad"] * 3, {"m": ["happy"] * 6})
    comparison.groups = {"site": ["X"] * 6, "sex": ["F", "M"] * 3}
    assert list(comparison.group_analyses()) == ["sex"]
    assert comparison.group_problems() == {"site": "site: one group among the images scored (6 with a value): "
                                                   "grouping needs two or more"}
    assert comparison.to_dict()["groups"]["site"]["error"].startswith("site: one group")
    from fer_core.figures.compare import comparison_tables

    assert set(comparison_tables(comparison)["compare_groups.csv"]["column"]) == {"sex"}


def test_compare_cluster_by_names_the_posers_and_needs_group_by(capsys, fer_sample, sheet):
    args = ["compare", "--images", fer_sample, "--labels", sheet, "--models", "au-logreg-fer2013", "--workers", "1"]
    assert main([str(a) for a in [*args, "--group-by", "sex", "--cluster-by", "Participant", "--json"]]) == 0
    found = json.loads(capsys.readouterr()[0])["groups"]
    assert list(found) == ["sex"] and found["sex"]["clustered_by"] == "participant" and found["sex"]["people"] == 23
    assert main([str(a) for a in [*args, "--cluster-by", "participant"]]) == 2
    assert "--cluster-by names who posed each image, for --group-by's gaps: give --group-by too" in capsys.readouterr()[1]
