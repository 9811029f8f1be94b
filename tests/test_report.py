"""The HTML report of a comparison: self-contained (no network), every figure, the tables, the wrong
images as thumbnails, in English or Korean; written by the CLI's ``compare --report``."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.evaluation.compare import Comparison
from fer_core.evaluation.report import ReportSettings, comparison_report_html, report_figures, write_report
from fer_core.figures.compare import precision_recall_frame, probabilities_frame
from fer_core.manifest import Metrics, ModelEntry


class Parts(HTMLParser):
    """What a browser would load: script sources, plotly divs, images and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.script_src: list[str] = []
        self.plotly_divs: list[str] = []
        self.images: list[tuple[str, str]] = []  # (src, title)
        self.links: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self._in_script = True
            if a.get("src"):
                self.script_src.append(a["src"])
        if tag == "div" and "plotly-graph-div" in (a.get("class") or ""):
            self.plotly_divs.append(a.get("id", ""))
        if tag == "img":
            self.images.append((a.get("src", ""), a.get("title", "")))
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if not self._in_script and data.strip():
            self.text.append(data.strip())


def parse(text: str) -> Parts:
    parts = Parts()
    parts.feed(text)
    return parts


@pytest.fixture
def hand_comparison(tmp_path) -> Comparison:
    return hand_made_comparison(tmp_path)


def hand_made_comparison(folder: Path) -> Comparison:
    """Six real image files in ``folder``; model A right on 4 (one no face), B right on 3."""
    files = []
    for i in range(6):
        path = folder / f"img{i}.png"
        Image.new("L", (48, 48), 30 * i).save(path)
        files.append(str(path))
    table = pd.DataFrame({"file": files, "label": ["happy"] * 3 + ["sad"] * 3,
                          "A": ["happy", "happy", "sad", "sad", "sad", None],
                          "B": ["happy", "sad", "sad", "sad", "happy", "sad"]})
    proba = {"A": np.array([[.9, .1], [.8, .2], [.3, .7], [.1, .9], [.2, .8], [np.nan, np.nan]]),
             "B": np.eye(2)[[0, 1, 1, 1, 0, 1]]}
    return Comparison.from_table(table, ["A", "B"], ["happy", "sad"], kinds={"A": "au-logreg", "B": "cnn"},
                                 probabilities=proba, model_classes={"A": ("happy", "sad"), "B": ("happy", "sad")})


ENTRY = ModelEntry(name="A", kind="au-logreg", path="models/a.json", classes=("happy", "sad"),
                   metrics=Metrics(accuracy=0.61, macro_f1=0.55, evaluated_on="FER2013 val", n=100),
                   sha256="ab" * 32, origin="cli")


def test_report_says_what_a_reader_of_its_accuracies_must_know(hand_comparison, tmp_path):
    """A shared report says, as the page does, how many images had no label and which emotions
    scored a model never predicts (its 0 % on them is no measurement)."""
    from dataclasses import replace

    told = replace(hand_comparison, unlabelled=3, model_classes={"A": ("happy",), "B": ("happy", "sad")})
    words = " ".join(parse(comparison_report_html(told, ReportSettings.now("hand-made", tmp_path), [ENTRY])).text)
    assert "Images without a label left out (their file names name no emotion) 3" in words
    assert "Emotions A never predicts (its answers on them all count as wrong) sad" in words
    plain = " ".join(parse(comparison_report_html(hand_comparison, ReportSettings.now("hand-made", tmp_path),
                                                  [ENTRY])).text)
    assert "never predicts" not in plain and "without a label" not in plain
    # what a prediction is, as Home says it (a thesis chapter's report said nothing of children), and how
    # few images its per-emotion figures rest on
    assert "No model here has been validated on children's faces." in plain and "**" not in plain
    smallest = min(c.n for r in hand_comparison.reports.values() for c in r.per_class.values() if c.n)
    assert f"Some emotions have as few as {smallest} test images" in plain


def test_report_is_self_contained_with_every_figure_table_and_wrong_image(hand_comparison, tmp_path):
    settings = ReportSettings.now("six hand-made images", tmp_path)
    text = comparison_report_html(hand_comparison, settings, [ENTRY])
    parts = parse(text)
    assert parts.script_src == [] and parts.links == []  # nothing fetched: plotly.js is inline
    assert "@font-face" not in text  # no Hangul, no font to embed
    assert text.count("Plotly.newPlot") == 6 and text.count("<script") == 1 + 6  # plotly.js once, 6 figures
    # overall, per emotion, 2 matrices, confidence against correctness, the same per emotion answered
    assert parts.plotly_divs == ["figure-0", "figure-1", "figure-2", "figure-3", "figure-4", "figure-5"]
    # each chart's camera saves an SVG (a manuscript's vector figure), and no button uploads a chart:
    # plotly.js's "Share chart..." (on by default) sent the report's results to its cloud in two clicks
    assert text.count('"showSendToCloud": false') == 6 and text.count('"toImageButtonOptions": {"format": "svg"}') == 6
    # outside Streamlit the axes make room for their labels themselves: the matrices' emotion names
    # fell outside the 10 px margins
    assert all(fig.layout.yaxis.automargin and fig.layout.xaxis.automargin for fig in report_figures(hand_comparison))
    # wrong images: A wrong on img2 and img5 (no face), B on img1, img2 and img4
    titles = [Path(title).name for _, title in parts.images]
    assert titles == ["img2.png", "img5.png", "img1.png", "img2.png", "img4.png"]
    for src, _ in parts.images:
        assert src.startswith("data:image/png;base64,")
        assert Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size == (64, 64)
    words = " ".join(parts.text)
    assert "happy → sad" in words and "sad → no face" in words
    # the manifest entry of A, and B listed as not saved
    assert "FER2013 val (n = 100)" in words and "ab" * 32 in words
    assert "61.0%" in words and "not saved" in words
    for heading in ("Settings", "Models", "Figures", "Overall accuracy", "Per emotion",
                    "Precision, recall and F1 per emotion", "Pairwise McNemar tests", "Confidence against correctness",
                    "Images each model got wrong"):
        assert heading in parts.text, heading
    # A said 0.9, 0.8, 0.7 (wrong), 0.9, 0.8 and found no face in img5; B's answers are all 100 % sure
    chance = hand_comparison.reports["A"].calibration.chance_ece  # five answers: anything could be chance
    assert ("A: 82.0% sure on average, right on 80.0% of 5 answers: calibrated as far as these answers can tell "
            f"(calibration error 0.260; a calibrated model stays under {chance:.3f} 95 times in 100 here).") in parts.text
    assert "B: 100.0% sure on average, right on 50.0% of 6 answers: overconfident by 50.0 points " \
           "(calibration error 0.500; a calibrated model stays under 0.000 95 times in 100 here)." in parts.text
    assert "66.7%" in words and "50.0%" in words  # one percent format everywhere
    assert re.search(r"\b\d+\.\d\d%", words) is None
    assert f"python {settings.versions['python']}" in words and "plotly" in settings.versions
    out = write_report(tmp_path / "out" / "report.html", text)
    assert out.read_text(encoding="utf-8") == text


def test_report_in_korean(hand_comparison, tmp_path):
    text = comparison_report_html(hand_comparison, ReportSettings.now("손으로 만든 이미지"), [ENTRY], lang="ko")
    parts = parse(text)
    assert '<html lang="ko">' in text and "모델 비교 보고서" in parts.text
    words = " ".join(parts.text)
    assert "행복 → 슬픔" in words and "슬픔 → 얼굴 없음" in words and "Settings" not in parts.text
    assert "행복, 슬픔" in words and "happy, sad" not in words  # the emotions a saved model predicts, too
    assert "@font-face {font-family: 'NanumGothic'" in text  # the Hangul it uses, inline (a cut of the font)
    assert len(text) < len(comparison_report_html(hand_comparison, ReportSettings.now("x"), [])) + 400_000
    assert json.dumps("전체 정확도와 95% Wilson 구간") in text  # the figures too (plotly escapes non-ASCII)
    from fer_core.i18n import current_language

    assert current_language() == "en"  # the report's language does not leak


def test_probability_and_precision_recall_tables(hand_comparison, tmp_path):
    probs = probabilities_frame(hand_comparison, tmp_path)
    assert list(probs.columns) == ["file", "label", "model", "predicted", "happy", "sad"] and len(probs) == 12
    a = probs[probs["model"] == "A"].reset_index(drop=True)
    assert a.loc[0, "file"] == "img0.png" and a.loc[2, "sad"] == pytest.approx(0.7)
    assert a.loc[5, "predicted"] == "no face" and np.isnan(a.loc[5, "happy"])
    parsed = pd.read_csv(io.StringIO(probs.to_csv(index=False)))
    assert parsed.shape == probs.shape
    prf = precision_recall_frame(hand_comparison).set_index(["model", "emotion"])
    # A: happy predicted for img0, img1 (both right) -> precision 1, recall 2/3; sad predicted 3x, 2 right
    assert prf.loc[("A", "happy"), "precision"] == 1.0 and prf.loc[("A", "happy"), "recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert prf.loc[("A", "sad"), "precision"] == pytest.approx(2 / 3, abs=1e-6) and prf.loc[("A", "sad"), "support"] == 3
    # recall is the per-emotion accuracy of the comparison
    for (model, emotion), row in prf.iterrows():
        assert row["recall"] == pytest.approx(hand_comparison.reports[model].per_class[emotion].accuracy, abs=1e-4)
    assert prf.loc[("B", "happy"), "f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3), abs=1e-4)


def test_compare_cli_writes_the_report(tmp_path, fer_sample, capsys):
    out = tmp_path / "report.html"
    code = main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", "--report", str(out),
                 "--lang", "ko"])
    assert code == 0 and "report:" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    parts = parse(text)
    assert parts.script_src == [] and "모델 비교 보고서" in parts.text
    # the last two: confidence against correctness, on the whole and per emotion answered
    assert parts.plotly_divs == ["figure-0", "figure-1", "figure-2", "figure-3", "figure-4"]
    assert "답한 감정별" in parts.text
    assert "au-logreg-fer2013" in parts.text  # its manifest entry
    assert len(parts.images) >= 1  # the bundled AU model gets some of 24 FER images wrong
    shared = tmp_path / "shared.html"  # --no-faces: none of them, nor the folder's name
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", "--report", str(shared),
                 "--no-faces"]) == 0
    text = shared.read_text(encoding="utf-8")
    assert parse(text).images == [] and str(fer_sample) not in text


def test_compare_cli_refuses_a_report_path_that_is_a_folder(tmp_path, fer_sample, capsys):
    code = main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", "--report", str(tmp_path)])
    assert code != 0 and "is a folder" in capsys.readouterr().err


def test_per_emotion_bar_labels_stand_upright_when_more_than_three_models_share_a_group():
    from fer_core.figures.compare import per_emotion_grouped_bars

    frame = pd.DataFrame([{"model": m, "emotion": e, "accuracy": 0.5, "n": 3}
                          for m in "ABCD" for e in ("happy", "sad")])
    four = per_emotion_grouped_bars(frame, overall={m: 0.5 for m in "ABCD"})
    three = per_emotion_grouped_bars(frame[frame["model"] != "D"])
    assert {b.textangle for b in four.data if b.type == "bar"} == {-90}
    assert {b.textangle for b in three.data if b.type == "bar"} == {0}
    assert [s.name for s in four.data if s.type == "scatter"] == [f"{m} overall: 50.0%" for m in "ABCD"]
    assert not four.layout.annotations  # the overall accuracies are in the legend, not over the bars


def _compare_report(monkeypatch, tmp_path, models: str, lang: str = "en") -> str:
    """``compare --report`` on six tiny labelled images, the faces' AUs made up (no MediaPipe: the
    report's manifest section is what is checked, not face measuring)."""
    import fer_core.evaluation.compare as compare
    from fer_core.pipeline import PreparedFaces
    from fer_core.predictors.base import FaceInput

    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for i, label in enumerate(["happy"] * 3 + ["sad"] * 3):
        Image.new("L", (48, 48), 40 * i).save(folder / f"{label}{i:03d}.png")
    rng = np.random.default_rng(0)

    def prepare(chosen, need_aus, need_pixels, workers=1, progress=None, root=None):
        return PreparedFaces([FaceInput(aus=rng.uniform(0, 3, 17)) for _ in chosen], list(chosen), [])

    run = compare.run_comparison
    monkeypatch.setattr(compare, "run_comparison", lambda *a, **k: run(*a, **{**k, "prepare": prepare}))
    out = tmp_path / f"report_{lang}.html"
    assert main(["compare", "--images", str(folder), "--models", models, "--report", str(out), "--lang", lang]) == 0
    return out.read_text(encoding="utf-8")


def test_report_attaches_a_manifest_entry_only_to_the_model_file_it_describes(monkeypatch, tmp_path, capsys):
    """A copy of the bundled AU model saved elsewhere under the bundled model's name is compared as
    'au-logreg-fer2013' too, but it is another file: the report used to give it the bundled entry's
    path, checksum, accuracy and command. Only the name or the registered file itself gets them."""
    import shutil

    from fer_core.config import REPO_ROOT
    from fer_core.manifest import read_manifest

    bundled = next(e for e in read_manifest() if e.name == "au-logreg-fer2013")
    other = tmp_path / "other" / "au-logreg-fer2013.json"
    other.parent.mkdir()
    data = json.loads(bundled.file.read_text(encoding="utf-8"))
    other.write_text(json.dumps(data, indent=1), encoding="utf-8")  # the same model, another file
    words = " ".join(parse(_compare_report(monkeypatch, tmp_path, str(other))).text)
    assert "au-logreg-fer2013" in words and "not saved" in words
    assert bundled.sha256 not in words and bundled.path not in words and bundled.command not in words
    by_name = " ".join(parse(_compare_report(monkeypatch, tmp_path, "au-logreg-fer2013")).text)
    assert bundled.sha256 in by_name and "not saved" not in by_name
    same_file = " ".join(parse(_compare_report(monkeypatch, tmp_path, str(REPO_ROOT / bundled.path))).text)
    assert bundled.sha256 in same_file  # the registered file given by its path is that entry
    shutil.copy(bundled.file, other)  # byte for byte, but still not the registered file
    copied = " ".join(parse(_compare_report(monkeypatch, tmp_path, str(other))).text)
    assert bundled.sha256 not in copied and "not saved" in copied


def test_korean_report_names_this_workbench_version_and_warns_nothing(tmp_path, caplog):
    """The generator tag said "fer_core 3.11.7" (Python's version); a Korean report's font cut
    printed one fontTools warning per editor table ("TSI0 NOT subset") on stderr."""
    import logging
    from importlib import metadata

    with caplog.at_level(logging.WARNING):
        text = comparison_report_html(hand_made_comparison(tmp_path), ReportSettings.now("x"), [], lang="ko")
    assert "@font-face" in text  # Hangul: the font was cut
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fontTools")] == []
    assert f'<meta name="generator" content="fer_core {metadata.version("fer-workbench")}">' in text
    # the versions row names the workbench's own too, with its commit in a git checkout
    from fer_core.provenance import source_commit

    own = ReportSettings.now("x").versions["fer_core"]
    assert own == metadata.version("fer-workbench") + (f" ({source_commit()})" if source_commit() else "")
    assert f"fer_core {own}" in comparison_report_html(hand_made_comparison(tmp_path), ReportSettings.now("x"), [])


def test_a_report_to_share_outside_the_study_shows_no_face_name_or_folder(hand_comparison, tmp_path):
    """The report embedded a thumbnail of every face a model got wrong, titled with its file name,
    and named the test set's folder ("participant_P017_Smith.jpg" under /data/study): no report of a
    study whose ethics approval keeps its photos in could leave it. Without faces it has the same
    figures and numbers and none of those."""
    study = tmp_path / "study_P017"
    study.mkdir()
    comparison = hand_made_comparison(study)
    settings = ReportSettings.now(f"{study} (python -m fer_core compare)", study)
    from dataclasses import replace

    # a model trained on the study names it in its record: where it was measured, its command, its file
    trained = replace(ENTRY, path="models/study_P017.json", command=f"python -m fer_core train-au {study}_au.csv",
                      metrics=replace(ENTRY.metrics, evaluated_on=f"25% of {study}_au.csv held out"))
    shared = comparison_report_html(comparison, settings, [trained], faces=False)
    parts = parse(shared)
    assert parts.images == [] and "<img" not in shared
    assert "study_P017" not in shared and "img2.png" not in shared
    words = " ".join(parts.text)
    assert "A: 2 of 6 wrong" in words and "B: 3 of 6 wrong" in words  # the counts stay
    assert "Left out: this report shows no face, file name or folder of the test set" in words
    assert parts.plotly_divs == parse(comparison_report_html(comparison, settings, [ENTRY])).plotly_divs
    with_faces = comparison_report_html(comparison, settings, [ENTRY])
    assert "study_P017" in with_faces and len(parse(with_faces).images) == 5


def test_the_reports_overall_table_pastes_into_a_paper_without_editing(tmp_path):
    """Kappa with three decimals as macro-F1 beside it (0.600000 read as six digits of precision the
    data do not have), and each model's kind in the words the Compare page uses."""
    from fer_core.figures.compare import accuracy_summary, column_titles, shown_table

    shown = shown_table(accuracy_summary(hand_made_comparison(tmp_path)))
    titles = column_titles()
    assert list(shown[titles["kind"]]) == ["AU logistic regression", "CNN"]
    assert all(re.fullmatch(r"-?\d\.\d{3}|–", v) for v in shown[titles["kappa"]]), list(shown[titles["kappa"]])
