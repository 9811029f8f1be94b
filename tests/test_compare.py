"""Model comparison: same images for every model, numbers checked by hand, and the CLI."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import charts, english_left, page_texts, run_app, texts
from conftest import BUNDLED_AU_MODEL, SEVEN_CNN, copy_fer_sample, seven_cnn_entry
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.cli import main
from fer_core.config import REPO_ROOT
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.evaluation.compare import Comparison, run_comparison
from fer_core.images import list_images
from fer_core.manifest import read_manifest, write_manifest
from fer_core.predictors.base import Predictor
from fer_core.predictors.registry import load_predictor
from ui.common import FOLDER

T = 240  # seconds per script run (measuring faces the first time)


class LookupPredictor(Predictor):
    """A pixel model that answers from a table keyed by the image's gray value (a real
    Predictor, so the comparison runs unchanged)."""

    kind = "test"

    def __init__(self, name, classes, answers):
        self.name, self.classes, self.answers = name, tuple(classes), answers
        self.model = answers  # what it wraps (a network, a fitted model): the same in a copy

    def predict_proba(self, faces, progress=None):
        out = []
        for img in self.pixels_of(faces):
            answer = self.answers[int(img[0, 0, 0])]
            row = np.full(len(self.classes), np.nan) if answer is None else np.eye(len(self.classes))[self.classes.index(answer)]
            out.append(row)
        return np.array(out)


def test_compare_against_hand_computed_numbers(six_images):
    classes = ["angry", "happy", "sad"]
    a = LookupPredictor("A", classes, ["happy", "happy", "sad", "sad", None, "sad"])
    b = LookupPredictor("B", classes, ["happy", "sad", "sad", "sad", "sad", "angry"])
    comparison = run_comparison([a, b], list_images(six_images), classes)
    assert comparison.n == 6 and len(comparison.unreadable) == 1 and "sad999.png" in comparison.unreadable[0]
    report = comparison.to_dict()
    ra, rb = report["models"]["A"], report["models"]["B"]
    assert ra["accuracy"] == pytest.approx(3 / 6, abs=1e-4) and ra["no_face"] == 1
    assert rb["accuracy"] == pytest.approx(4 / 6, abs=1e-4) and rb["no_face"] == 0
    assert ra["per_class"]["happy"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert rb["per_class"]["angry"]["accuracy"] == 1.0
    # B is right where A is wrong on images 4 (no face for A) and 5; A right where B wrong on 1.
    pair = report["mcnemar"][0]
    assert (pair["only_a_correct"], pair["only_b_correct"]) == (1, 2)
    assert pair["p_value"] == pytest.approx(1.0)
    assert len(report["no_face"]["A"]) == 1 and report["no_face"]["A"][0].endswith("sad004.png")
    assert sorted(f.rsplit("/", 1)[-1] for f in report["wrong"]["A"]) == ["angry005.png", "happy002.png", "sad004.png"]
    frame = comparison.per_emotion_frame()
    assert set(frame["model"]) == {"A", "B"} and len(frame) == 6


def test_an_emotion_without_test_images_has_no_recall_or_f1(six_images):
    """Scored on disgust too (``compare --classes``), of which there are no images: its recall and
    F1 are unknown, not 0, and macro-F1 is the mean over the emotions tested."""
    from fer_core.figures.compare import precision_recall_frame

    classes = ["angry", "disgust", "happy", "sad"]
    a = LookupPredictor("A", classes, ["happy", "happy", "happy", "sad", "sad", "angry"])
    comparison = run_comparison([a], list_images(six_images), classes)
    frame = precision_recall_frame(comparison).set_index("emotion")
    assert frame.loc["disgust", "support"] == 0 and frame.loc["disgust", ["recall", "f1"]].isna().all()
    assert (frame.loc[["angry", "happy", "sad"], "f1"] == 1.0).all()
    assert comparison.reports["A"].macro_f1 == 1.0
    # answered once but never tested: a precision of 0, no F1 (it was 0, so the column's mean was not
    # the macro-F1 beside it), and macro-F1 the mean of the column
    b = LookupPredictor("B", classes, ["happy", "happy", "disgust", "sad", "sad", "angry"])
    both = run_comparison([b], list_images(six_images), classes)
    frame = precision_recall_frame(both).set_index("emotion")
    assert frame.loc["disgust", "precision"] == 0.0 and frame.loc["disgust", ["recall", "f1"]].isna().all()
    assert both.reports["B"].macro_f1 == pytest.approx(frame["f1"].mean(), abs=1e-3)


def test_compare_problems_read_in_korean(six_images, tmp_path):
    """What Compare shows when a model breaks, or no test image can be read, in the page's language."""
    from fer_core.errors import FerError, one_line
    from fer_core.i18n import message, using_language

    class Broken(LookupPredictor):
        def predict_proba(self, faces, progress=None):
            raise ValueError("shapes (3,) and (4,) not aligned")

    classes = ["angry", "happy", "sad"]
    comparison = run_comparison([LookupPredictor("A", classes, ["happy"] * 6), Broken("boom", classes, {})],
                                list_images(six_images), classes)
    (failed,) = comparison.failed_models
    assert failed == "boom: could not run (ValueError: shapes (3,) and (4,) not aligned)"
    (tmp_path / "broken").mkdir()
    for i in range(2):
        (tmp_path / "broken" / f"happy{i}.png").write_bytes(b"not a png")
    with pytest.raises(FerError) as caught:
        run_comparison([LookupPredictor("A", classes, ["happy"] * 6)], list_images(tmp_path / "broken"), classes)
    unreadable = one_line(caught.value)
    assert unreadable == "none of the 2 test images could be read"
    with using_language("ko"):
        assert message(failed) == "boom: 실행할 수 없습니다 (ValueError: shapes (3,) and (4,) not aligned)"
        assert message(unreadable) == "테스트 이미지 2장 중 읽을 수 있는 것이 없습니다"
        assert message("models share a name (A, A); give distinct models").startswith("모델 이름이 겹칩니다 (A, A)")
        assert message("cnn-x: could not judge this face") == "cnn-x: 이 얼굴을 판단할 수 없습니다"  # Try it


def test_a_model_named_like_a_column_of_the_table_is_refused(six_images):
    """A model named 'label' overwrote the true labels: every answer scored as right."""
    from fer_core.errors import FerError

    classes = ["angry", "happy", "sad"]
    for name in ("label", "file", "A correct"):
        with pytest.raises(FerError, match="uses for its own column"):
            run_comparison([LookupPredictor(name, classes, ["happy"] * 6)], list_images(six_images), classes)


def test_classes_default_to_those_every_model_predicts(six_images):
    a = LookupPredictor("A", ["angry", "happy", "sad"], ["happy"] * 6)
    b = LookupPredictor("B", ["happy", "sad"], ["happy"] * 6)
    comparison = run_comparison([a, b], list_images(six_images))
    assert comparison.classes == ("happy", "sad") and comparison.n == 5
    assert comparison.skipped == {"angry": 1}


def test_compare_cli_on_fer_sample(capsys, tmp_path, fer_sample):
    code = main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013",
                 "--csv", str(tmp_path / "p.csv"), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["n"] == 24 and list(report["models"]) == ["au-logreg-fer2013"]
    scored = report["models"]["au-logreg-fer2013"]
    assert scored["calibration"]["n"] == 24 - scored["no_face"]
    assert (tmp_path / "p.csv").read_text().startswith("file,label,au-logreg-fer2013")
    plain = pd.read_csv(tmp_path / "p.csv")
    # the predictions table the page downloads: files relative to --images, a right/wrong column
    assert list(plain.columns) == ["file", "label", "au-logreg-fer2013", "au-logreg-fer2013 correct",
                                   "au-logreg-fer2013 p(true)"]
    assert plain["file"].str.match(r"^(angry|disgust|happy|neutral|sad|surprise)/").all()
    p_true = plain["au-logreg-fer2013 p(true)"].dropna()
    assert (p_true.round(4) != p_true).any()  # whole, not rounded: scripts take logs of it
    for name in ("p.csv.gz", "p.parquet"):  # the extension says the format, as for extract --out
        assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013",
                     "--csv", str(tmp_path / name), "--json"]) == 0
        again = pd.read_parquet(tmp_path / name) if name.endswith(".parquet") else pd.read_csv(tmp_path / name)
        pd.testing.assert_frame_equal(again.fillna("-").astype(str), plain.fillna("-").astype(str))
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013"]) == 0
    from fer_core.evaluation.metrics import share_text

    c = scored["calibration"]
    from fer_core.cli import CALIBRATION_READINGS

    band = share_text((c["gap_ci95"][1] - c["gap_ci95"][0]) / 2)  # a calibrated model's spread, not a CI of the gap
    assert (f"  confidence {share_text(c['mean_confidence'])} on average over {c['n']} answers, right on "
            f"{share_text(c['accuracy'])} of them, gap {share_text(c['gap'], signed=True)} (a calibrated model's stays "
            f"within ±{band} 95 times in 100 here): "
            f"{CALIBRATION_READINGS[c['direction']]}; calibration error (ECE, 10 bins) {share_text(c['ece'])} "
            f"(a calibrated model stays under {share_text(c['chance_ece'])} 95 times in 100 here)\n") in capsys.readouterr().out


def test_compare_cli_refuses_a_bad_csv_path_before_running_any_model(capsys, tmp_path, six_images, monkeypatch):
    """--csv naming a folder failed only after every model had run (minutes on a large test set)."""
    import fer_core.evaluation.compare as compare

    ran = []
    monkeypatch.setattr(compare, "run_comparison", lambda *a, **k: ran.append(a))
    code = main(["compare", "--images", str(six_images), "--models", BUNDLED_AU_MODEL, "--csv", str(tmp_path)])
    assert code == 2 and ran == []
    assert "is a folder" in capsys.readouterr().err


def test_train_cnn_then_evaluate_and_compare_all_kinds(capsys, tmp_path, fer_sample):
    """train-cnn -> evaluate --model x.keras -> compare AU model vs CNN on the same images."""
    cnn = tmp_path / "tiny.keras"
    assert main(["train-cnn", "--data", str(fer_sample), "--val", str(fer_sample), "--out", str(cnn),
                 "--preset", "tiny", "--epochs", "1"]) == 0
    trained = capsys.readouterr()
    assert "it also picked the best epoch" in trained.out  # --val both picked and scored
    # written to a log (not a terminal): a line an epoch, where a long run said nothing for hours
    assert re.search(r"^epoch 1/1: loss [\d.]+, accuracy [\d.]+, val_accuracy [\d.]+ \([\d.]+ min\)$", trained.err, re.M)
    assert "tiny CNN, epochs 1 in " in trained.out
    assert main(["evaluate", "--model", str(cnn), "--images", str(fer_sample), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 24 and report["no_face"] == 0
    assert main(["compare", "--images", str(fer_sample), "--models", "au-logreg-fer2013", str(cnn), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert list(both["models"]) == ["au-logreg-fer2013", "tiny"]
    assert both["mcnemar"][0]["a"] == "au-logreg-fer2013" and both["models"]["tiny"]["n"] == 24


def test_a_seven_emotion_models_fear_answers_on_six_emotions_are_counted_and_said(capsys):
    """Scored on six emotions, a seven-emotion model's fear answers count as wrong; compare's text
    said nothing of them (a seven-emotion researcher's review), where Home and Compare do."""
    from fer_core.cli import _print_left_out

    table = pd.DataFrame({"file": ["a", "b", "c", "d"], "label": ["angry", "angry", "happy", "sad"],
                          "m7": ["fear", "angry", "fear", None], "m6": ["angry", "sad", "happy", "sad"]})
    comparison = Comparison.from_table(table, ["m7", "m6"], SIX_EMOTIONS,
                                       model_classes={"m7": SEVEN_EMOTIONS, "m6": SIX_EMOTIONS})
    assert comparison.unscored_answer_counts == {"m7": {"fear": 2}}
    assert comparison.to_dict()["unscored_answers"] == {"m7": {"fear": 2}}
    _print_left_out(comparison)
    assert ("note: m7 answered fear on 2 images, an emotion not scored here (no image scored is labelled so): "
            "counted as wrong") in capsys.readouterr().err


def test_compare_cli_scores_seven_emotions_when_asked(capsys, tmp_path, fer_val, tiny_seven_cnn):
    """compare --models a,b: the classes both predict by default (six, fear left out and counted);
    --classes seven scores fear too (the six-emotion AU model is then wrong on every fear image)."""
    sample = copy_fer_sample(fer_val, tmp_path / "val7", per_class=2, classes=SEVEN_EMOTIONS)
    # a loose photo whose name names no emotion: nothing to score it on, and said so
    (sample / "holiday.jpg").write_bytes(next((sample / "happy").iterdir()).read_bytes())
    models = f"{BUNDLED_AU_MODEL},{tiny_seven_cnn}"
    assert main(["compare", "--images", str(sample), "--models", models, "--json"]) == 0
    out = capsys.readouterr()
    mixed = json.loads(out.out)
    assert mixed["classes"] == list(SIX_EMOTIONS) and mixed["n"] == 12 and mixed["skipped_classes"] == {"fear": 2}
    assert "left out (not predicted by every model): 2 fear" in out.err
    assert mixed["unlabelled"] == 1 and "left out 1 image(s) whose file names name no emotion" in out.err
    # the seven-emotion CNN's fear answers on the six emotions count as wrong: said, as Home and Compare say it
    # (a seven-emotion researcher's review: three of its angry images answered fear, scored wrong without a word)
    assert set(mixed["unscored_answers"]) <= {"tiny_cnn_7"} and set(mixed["unscored_answers"].get("tiny_cnn_7", {})) <= {"fear"}
    for name, answers in mixed["unscored_answers"].items():
        assert f"note: {name} answered fear on {answers['fear']} image" in out.err
    assert main(["compare", "--images", str(sample), "--models", models, "--classes", "seven", "--json"]) == 0
    out = capsys.readouterr()
    seven = json.loads(out.out)
    assert seven["classes"] == list(SEVEN_EMOTIONS) and seven["n"] == 14 and seven["skipped_classes"] == {}
    # a fear accuracy of 0 for a model that cannot answer fear is said, not left to be misread
    assert seven["cannot_predict"] == {BUNDLED_AU_MODEL: ["fear"]}
    assert (f"note: {BUNDLED_AU_MODEL} never predicts fear: its images of that emotion all count as wrong"
            in out.err)
    assert list(seven["models"]) == [BUNDLED_AU_MODEL, "tiny_cnn_7"]
    assert seven["models"]["tiny_cnn_7"]["per_class"]["fear"]["n"] == 2
    assert seven["models"][BUNDLED_AU_MODEL]["per_class"]["fear"]["accuracy"] == 0.0
    # --classes leaves the other emotions out, and says so as the default choice does
    assert main(["compare", "--images", str(sample), "--models", models, "--classes", "happy,sad", "--json"]) == 0
    out = capsys.readouterr()
    two = json.loads(out.out)
    assert two["n"] == 4 and two["skipped_classes"] == {e: 2 for e in SEVEN_EMOTIONS if e not in ("happy", "sad")}
    assert "left out (not in --classes): 2 angry, 2 disgust" in out.err
    # a model file that cannot be loaded is left out; the other's results are kept, the failure said (exit 2)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a keras file")
    assert main(["compare", "--images", str(sample), "--models", f"{BUNDLED_AU_MODEL},{broken}", "--json"]) == 2
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert list(report["models"]) == [BUNDLED_AU_MODEL] and "broken.keras" in report["failed_models"][0]
    assert "model left out: " in out.err and "broken.keras" in out.err
    # a name that is neither registered nor a file is a typo: refused before anything is measured
    assert main(["compare", "--images", str(sample), "--models", f"{BUNDLED_AU_MODEL},no-such-model", "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: model 'no-such-model' not found")


# -- the Compare page (Streamlit AppTest) ---------------------------------------------------------
COMPARE_PAGE = str(REPO_ROOT / "pages" / "6_Compare.py")
UNSAVED = "au-unsaved"


def _page(lang: str = "en") -> AppTest:
    at = AppTest.from_file(COMPARE_PAGE)
    at.query_params["lang"] = lang
    return run_app(at, T)


def _unsaved_au_model():
    """The bundled AU model under another name, as a page leaves a model trained and not saved."""
    predictor = copy.copy(load_predictor(BUNDLED_AU_MODEL))
    predictor.name = UNSAVED
    return predictor


def test_compare_page_speaks_korean_before_a_run(models_dir, fer_val):
    ko = _page("ko")
    assert ko.title[0].value == "모델 비교"
    assert english_left(page_texts(ko), (BUNDLED_AU_MODEL,)) == []
    assert ko.radio(key="cmp_source").options[0] == "분할에서 뽑은 테스트 세트 (기본값: 감정별 10장)"
    assert ko.multiselect(key="cmp_models").proto.placeholder == "항목을 고르세요"  # Streamlit's own: English
    en = _page("en")
    assert en.title[0].value == "Compare" and en.radio(key="cmp_source").label == "Test set"
    assert en.button(key="cmp_run").label == "Compare"


def test_compare_page_chooses_a_model_added_since_its_last_visit(models_dir, fer_val):
    """A model trained or imported on another page joins the models chosen, as on a first visit;
    a model the person unticked stays unticked."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"))
    at.session_state["_unsaved_models"] = {UNSAVED: _unsaved_au_model()}
    run_app(at, T)
    at.switch_page("pages/6_Compare.py")
    run_app(at, T)
    assert at.multiselect(key="cmp_models").value == [BUNDLED_AU_MODEL, UNSAVED]
    at.multiselect(key="cmp_models").set_value([BUNDLED_AU_MODEL])  # the person unticks one
    run_app(at, T)
    at.switch_page("app.py")
    run_app(at, T)
    second = _unsaved_au_model()
    second.name = "au-unsaved-2"  # trained on the AU model page meanwhile
    at.session_state["_unsaved_models"] = {UNSAVED: _unsaved_au_model(), second.name: second}
    at.switch_page("pages/6_Compare.py")
    run_app(at, T)
    assert at.multiselect(key="cmp_models").value == [BUNDLED_AU_MODEL, "au-unsaved-2"]


def test_scored_emotions_of_models_sharing_none_are_those_some_model_predicts():
    """Two models of disjoint emotions on images of both: their emotions are offered and scored
    (each model wrong on the other's), not refused as sharing no emotion; only when no model
    predicts an emotion of the images is there nothing to choose."""
    def page():
        from pathlib import Path
        from types import SimpleNamespace

        import streamlit as st

        from fer_core.images import LabeledImage
        from ui.common import choose_scored_emotions

        items = [LabeledImage(Path(f"{e}.jpg"), e) for e in ("angry", "happy", "sad", "surprise", "fear")]
        models = [SimpleNamespace(classes=("happy", "sad")), SimpleNamespace(classes=("angry", "surprise"))]
        st.session_state["both"] = choose_scored_emotions("both", items, models)
        st.session_state["none"] = choose_scored_emotions("none", items[-1:], models)

    at = AppTest.from_function(page).run(timeout=T)
    assert not at.exception
    assert at.session_state["both"] == ["angry", "happy", "sad", "surprise"]
    assert at.session_state["none"] is None and len(at.multiselect) == 1


def test_cannot_predict_names_only_emotions_the_images_hold():
    """compare --classes happy,sad,fear on images without fear: no note about fear."""
    from fer_core.evaluation.compare import Comparison

    table = pd.DataFrame({"file": ["a.jpg", "b.jpg"], "label": ["happy", "sad"], "m": ["happy", "happy"]})
    untested = Comparison.from_table(table, ["m"], ("happy", "sad", "fear"), model_classes={"m": ("happy", "sad")})
    assert untested.cannot_predict == {}
    tested = Comparison.from_table(table, ["m"], ("happy", "sad"), model_classes={"m": ("happy",)})
    assert tested.cannot_predict == {"m": ["sad"]}


def test_compare_page_unsaved_model_downloads_report_and_explanation(models_dir, fer_val, downloads):
    at = AppTest.from_file(COMPARE_PAGE)
    at.query_params["lang"] = "ko"
    at.session_state["_unsaved_models"] = {UNSAVED: _unsaved_au_model()}
    run_app(at, T)
    models = at.multiselect(key="cmp_models")
    assert models.value == [BUNDLED_AU_MODEL, UNSAVED]
    assert models.options[1] == f"{UNSAVED} (au-logreg, 저장 안 됨)"
    at.number_input(key="cmp_draw_per").set_value(2)
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    saved = at.session_state["cmp_result"]
    res = saved["comparison"]
    assert res.names == [BUNDLED_AU_MODEL, UNSAVED] and res.n == 12  # the unsaved model ran beside the saved one
    assert english_left(page_texts(at), (BUNDLED_AU_MODEL, UNSAVED)) == []
    # the same model twice: identical predictions, so McNemar finds nothing
    assert (res.table[BUNDLED_AU_MODEL].fillna("-") == res.table[UNSAVED].fillna("-")).all()
    figs = {c["layout"]["title"]["text"]: c for c in charts(at)}
    assert "전체 정확도와 95% Wilson 구간" in figs
    bars = figs["감정별 정확도(재현율)와 95% Wilson 구간, 모델마다 막대 하나"]["data"]
    assert [d["type"] for d in bars] == ["bar", "scatter", "bar", "scatter"]  # overall as legend lines
    assert bars[1]["name"].startswith(f"{BUNDLED_AU_MODEL} 전체: ") and "annotations" not in \
        figs["감정별 정확도(재현율)와 95% Wilson 구간, 모델마다 막대 하나"]["layout"]
    labels = [t for d in bars if d["type"] == "bar" for t in d["text"]]
    assert all(re.fullmatch(r"\d+\.\d%|–", t) for t in labels), labels  # one format: 51.7%
    matrices = [figs[name] for name in res.names]  # one per tab, same fixed scale, readable text
    assert len(at.tabs) >= 2 and at.tabs[0].label == BUNDLED_AU_MODEL
    for m in matrices:
        trace = m["data"][0]
        assert (trace["zmin"], trace["zmax"]) == (0, 1) and trace["textfont"]["size"] >= 13
    # downloads: every CSV parses back
    files = {name: data for name, data in downloads.items() if name.startswith("compare_")}
    assert set(files) == {"compare_predictions.csv", "compare_probabilities.csv", "compare_summary.csv",
                          "compare_precision_recall_f1.csv", "compare_confusion.csv", "compare_mcnemar.csv",
                          "compare_calibration.csv", "compare_calibration_by_answer.csv", "compare_report.html",
                          "compare_report_no_faces.html"}
    # the confusion matrices' numbers as a table: each model's counts are its report's matrix
    confusion = pd.read_csv(io.BytesIO(files["compare_confusion.csv"]))
    for name in res.names:
        report, mine = res.reports[name], confusion[confusion["model"] == name]
        scored = mine[mine["answer"].isin(report.labels)].pivot(index="emotion", columns="answer", values="count")
        assert scored.loc[report.labels, report.labels].to_numpy().tolist() == report.confusion
        assert mine["count"].sum() == report.n  # no face and other answers included: every image once
    probs = pd.read_csv(io.BytesIO(files["compare_probabilities.csv"]))
    assert len(probs) == 24 and set(probs["model"]) == {BUNDLED_AU_MODEL, UNSAVED}
    assert {"file", "label", "predicted", *SIX_EMOTIONS} <= set(probs.columns)
    judged = probs.dropna(subset=list(SIX_EMOTIONS))
    assert np.allclose(judged[list(SIX_EMOTIONS)].sum(axis=1), 1.0, atol=1e-4)
    # the same number in both tables (rounded to 6 decimals here, whole there, equality failed)
    predictions = pd.read_csv(io.BytesIO(files["compare_predictions.csv"]))
    mine = judged[judged["model"] == BUNDLED_AU_MODEL].set_index("file")
    p_true = predictions.set_index("file")[f"{BUNDLED_AU_MODEL} p(true)"].dropna()
    assert len(p_true) > 0 and all(mine.loc[f, mine.loc[f, "label"]] == p for f, p in p_true.items())
    prf = pd.read_csv(io.BytesIO(files["compare_precision_recall_f1.csv"]))
    assert list(prf.columns) == ["model", "emotion", "precision", "recall", "f1", "support"] and len(prf) == 12
    mcnemar = pd.read_csv(io.BytesIO(files["compare_mcnemar.csv"]))
    assert mcnemar.loc[0, "only A right"] == 0 and mcnemar.loc[0, "p-value"] == 1.0
    assert mcnemar.loc[0, "verdict"] == "no significant difference"  # English cells under English headers
    assert len(pd.read_csv(io.BytesIO(files["compare_predictions.csv"]))) == 12
    report = files["compare_report.html"]()  # built on click
    text = report.decode("utf-8") if isinstance(report, bytes) else report
    # confidence against correctness: every answer given (no face is none) in one bin, on the page,
    # in its download and in the report (the fifth figure)
    bins = pd.read_csv(io.BytesIO(files["compare_calibration.csv"]))
    for name in res.names:
        calibration = res.reports[name].calibration
        assert calibration.n == res.n - res.reports[name].no_face == bins.loc[bins["model"] == name, "n"].sum()
        mine = bins[bins["model"] == name]
        assert ((mine["mean_confidence"] >= mine["bin_low"]) & (mine["mean_confidence"] <= mine["bin_high"])).all()
    diagram = figs["확신도와 정답률 (신뢰도 그림)"]["data"]
    assert [d["name"] for d in diagram] == ["확신한 만큼 맞힘", BUNDLED_AU_MODEL, UNSAVED]
    assert "확신도와 정답률" in texts(at.header)
    # the same per emotion answered: one row per model and emotion it answered, its answers there all told
    answered = pd.read_csv(io.BytesIO(files["compare_calibration_by_answer.csv"]))
    for name in res.names:
        mine = answered[answered["model"] == name]
        assert mine["answers"].sum() == res.reports[name].calibration.n
        assert set(mine["emotion_answered"]) <= set(res.classes) and mine["reading"].isin(
            ["over", "under", "mixed", "even"]).all()
    assert "답한 감정별" in texts(at.subheader)
    assert "모델 비교 보고서" in text and text.count('class="plotly-graph-div"') == 6  # and per emotion answered
    assert "확신도와 정답률" in text
    assert "매크로 F1" in text and "macro F1" not in text
    assert "fer_testset_" not in text  # a drawn set's temporary folder is no part of the result
    assert text.count('<img src="data:image/png;base64,') == 2 * len(res.wrong_files(BUNDLED_AU_MODEL))
    labels = {b.label for b in at.get("download_button")}
    assert "보고서 (HTML)" in labels and "McNemar 검정 (CSV)" in labels and "확신도 구간 (CSV)" in labels
    # a wrong image, explained by the AU model
    wrong = res.wrong_files(BUNDLED_AU_MODEL)
    judged_wrong = [f for f in wrong if f not in res.no_face_files(BUNDLED_AU_MODEL)]
    assert judged_wrong, "the bundled model gets every one of 12 FER images right: pick another seed"
    pick = at.selectbox(key=f"cmp_explain_{BUNDLED_AU_MODEL}")
    assert pick.value is None
    pick.set_value(judged_wrong[0])
    run_app(at, T)
    figs = {c["layout"]["title"]["text"]: c for c in charts(at)}
    contributions = figs["AU 모델이 따진 근거"]["data"][0]
    assert contributions["orientation"] == "h" and all(y.startswith("AU") for y in contributions["y"])
    assert len(figs["AU 강도 (주황색: 근거)"]["data"][0]["x"]) == 17
    predicted = res.table.set_index("file").loc[judged_wrong[0], BUNDLED_AU_MODEL]
    from fer_core.i18n import catalogue

    assert any(catalogue("ko")[f"emotions.{predicted}"] in m for m in texts(at.markdown))
    # the sentence Try it gives for the same face (Compare wrote its own, with AU codes alone,
    # leaving out the absent AUs that were among the strongest reasons)
    from fer_core.evaluation.compare import explain_image
    from fer_core.i18n import using_language

    label = res.table.set_index("file").loc[judged_wrong[0], "label"]
    explained = explain_image(res.path_of(judged_wrong[0]), label, load_predictor(BUNDLED_AU_MODEL)).explanation
    with using_language("ko"):
        assert explained.sentence in texts(at.markdown)
    assert english_left(page_texts(at), (BUNDLED_AU_MODEL, UNSAVED)) == []

    # the wrong images are a table of thumbnails: clicking a row picks that face for the explanation
    table = next(d for d in at.dataframe if "얼굴" in str(d.proto.columns) or len(d.value.columns) == 4)
    assert list(table.value.columns) == ["face", "true", "answer", "file"]
    assert all(str(u).startswith("data:image/png;base64,") for u in table.value["face"])
    other = next(f for f in judged_wrong[1:] + judged_wrong[:1] if f != judged_wrong[0])
    root = Path(saved["root"])  # a drawn set's temporary folder: files are named inside it, as in the downloads
    assert all(not Path(f).is_absolute() and (root / f).is_file() for f in table.value["file"]), table.value["file"]
    row = list(table.value["file"]).index(Path(other).relative_to(root).as_posix())
    at.session_state[f"cmp_wrong_table_{BUNDLED_AU_MODEL}"] = {"selection": {"rows": [row], "columns": []}}
    run_app(at, T)
    assert at.selectbox(key=f"cmp_explain_{BUNDLED_AU_MODEL}").value == other


def test_compare_page_scores_seven_emotions_when_every_chosen_model_predicts_fear(models_dir, fer_val,
                                                                                 tiny_seven_cnn):
    """A six-emotion and a seven-emotion model: six emotions (the drawn set holds no fear); only the
    seven-emotion model chosen: the drawn set holds fear and all seven emotions are scored."""
    write_manifest(read_manifest(models_dir) + [seven_cnn_entry(tiny_seven_cnn)], models_dir)
    at = _page()
    assert at.multiselect(key="cmp_models").value == [BUNDLED_AU_MODEL, SEVEN_CNN]
    assert at.multiselect(key="cmp_classes").value == list(SIX_EMOTIONS)
    # fear left out of the drawn set is said, with why and what to do (it went without a word: a seven-emotion review)
    without = [c for c in texts(at.caption) if c.startswith("Drawn without fear: ")]
    assert without == [f"Drawn without fear: {BUNDLED_AU_MODEL} cannot answer it. To score fear for {SEVEN_CNN}, choose "
                       "only seven-emotion models, or give a folder with fear images and add fear under the emotions "
                       "scored (the others then count as wrong there). The six emotions' images also differ from a "
                       "seven-emotion draw with the same seed."]
    at.number_input(key="cmp_draw_per").set_value(2)
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value([SEVEN_CNN])
    run_app(at, T)
    assert at.multiselect(key="cmp_classes").value == list(SEVEN_EMOTIONS)
    assert not any(c.startswith("Drawn without fear") for c in texts(at.caption))
    at.button(key="cmp_run").click()
    run_app(at, T)
    res = at.session_state["cmp_result"]["comparison"]
    assert res.names == [SEVEN_CNN] and res.classes == SEVEN_EMOTIONS and res.n == 14 and res.skipped == {}
    assert res.reports[SEVEN_CNN].per_class["fear"].n == 2
    assert any("14 images (2 per emotion) drawn from FER2013 val" in c for c in texts(at.caption))
    bars = charts(at)
    per_emotion = next(c for c in bars if c["layout"]["title"]["text"].startswith("Accuracy per emotion"))
    assert next(d for d in per_emotion["data"] if d["type"] == "bar")["x"] == list(SEVEN_EMOTIONS)
    assert not at.error


def test_compare_page_reports_and_downloads_every_image_it_left_out(models_dir, fer_val, tmp_path, downloads):
    """A folder with two broken files and fear images the AU model cannot predict: the page says
    what it left out and why, and the left-out CSV lists each unreadable file and the fear count."""
    folder = copy_fer_sample(fer_val, tmp_path / "test", per_class=2, classes=("happy", "sad", "fear"))
    (folder / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "sad" / "empty.jpg").write_bytes(b"")
    (folder / "IMG_0001.jpg").write_bytes(next((folder / "happy").iterdir()).read_bytes())  # no label
    (folder / "notes").mkdir()  # a folder not named after an emotion: passed over, said in the CSV too
    (folder / "notes" / "x.jpg").write_bytes(next((folder / "sad").glob("*.jpg")).read_bytes())
    at = _page()
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(folder))
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    res = at.session_state["cmp_result"]["comparison"]
    assert res.n == 4 and res.skipped == {"fear": 2} and len(res.unreadable) == 2
    assert any("2 image(s) could not be read" in w for w in texts(at.warning))
    # named within the test set, as its tables name them: a zip's are not in the server's temporary folder
    assert any("happy/broken.jpg" in w for w in texts(at.warning))
    assert not any(str(folder) in w for w in texts(at.warning))
    assert any("2 image(s) of emotions not scored were left out: fear 2." in c for c in texts(at.caption))
    left_out = pd.read_csv(io.BytesIO(downloads["compare_left_out.csv"]))
    unreadable = left_out[left_out["left_out"] == "unreadable"]["problem"].tolist()
    assert sorted(any(name in line for line in unreadable) for name in ("broken.jpg", "empty.jpg")) == [True, True]
    assert left_out[left_out["left_out"] == "emotion not scored"][["emotion", "images"]].values.tolist() == [["fear", 2]]
    assert left_out[left_out["left_out"] == "unlabelled"]["images"].tolist() == [1]
    assert [p.split(":")[0] for p in left_out.loc[left_out["left_out"] == "passed over", "problem"]] == ["notes/"]
    assert any("1 image(s) whose file names name no emotion were left out" in c for c in texts(at.caption))
    assert not at.exception and not at.error
    # the report names the folder as text: the page's Markdown backticks were written into it
    report = downloads["compare_report.html"]()
    text = report.decode("utf-8") if isinstance(report, bytes) else report
    assert f"folder {folder}" in text and "`" not in text.split("<body", 1)[1].split("<script", 1)[0]
    assert text.count(f"<td>folder {folder}</td>") == 1 and f"<td>{folder}</td>" not in text  # named once
    # fear scored by choice: the AU model's 0 on it is said to be a question it cannot answer
    assert not any("never predicts" in w for w in texts(at.warning))
    at.multiselect(key="cmp_classes").set_value(["happy", "sad", "fear"])
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert at.session_state["cmp_result"]["comparison"].n == 6
    assert any(f"{BUNDLED_AU_MODEL}** never predicts fear: its answers on those images all count as wrong" in w
               for w in texts(at.warning))


def test_compare_page_marks_its_results_stale_after_a_retrain_or_a_cleared_choice(models_dir, six_images):
    """A retrained unsaved model keeps its default name: the results of the old one are marked
    as the previous choice's, as they are when the test folder is cleared."""
    classes = ["angry", "happy", "sad"]
    right = LookupPredictor("mine", classes, ["happy", "happy", "happy", "sad", "sad", "angry"])
    wrong = LookupPredictor("mine", classes, ["sad", "sad", "sad", "happy", "happy", "happy"])
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {"mine": right}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value(["mine"])
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert at.session_state["cmp_result"]["comparison"].reports["mine"].accuracy == 1.0
    assert not any("previous choice" in s for s in texts(at.info))
    at.session_state["_unsaved_models"] = {"mine": wrong}  # retrained on its page, same name
    run_app(at, T)
    assert any("previous choice" in s for s in texts(at.info))
    at.session_state["_unsaved_models"] = {"mine": right}
    run_app(at, T)
    assert not any("previous choice" in s for s in texts(at.info))
    at.session_state["_unsaved_models"] = {"mine": copy.copy(right)}  # wrapped anew, the same model inside
    run_app(at, T)
    assert not any("previous choice" in s for s in texts(at.info))
    at.text_input(key="cmp_folder").set_value("")
    run_app(at, T)
    assert any("previous choice" in s for s in texts(at.info))


def test_compare_page_says_which_model_narrows_the_emotions_scored(models_dir, six_images):
    """A model of three emotions beside the bundled six narrowed the default to those three, and
    only the (?) tooltip said why: every accuracy then read as if on all six."""
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {"mine": LookupPredictor("mine", ["happy", "sad"], ["happy"] * 6)}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    assert at.multiselect(key="cmp_models").value == [BUNDLED_AU_MODEL, "mine"]
    assert at.multiselect(key="cmp_classes").value == ["happy", "sad"]
    said = [c for c in texts(at.caption) if "Scored by default" in c]
    assert said == ["Scored by default: happy, sad, those every chosen model predicts. Not scored: angry, which mine "
                    "cannot answer. Leave such a model out, or add the emotion here (a model is then wrong on the "
                    "images it cannot answer)."]
    at.multiselect(key="cmp_classes").set_value(["angry", "happy", "sad"])  # the person's own choice: nothing to say
    run_app(at, T)
    assert not any("Scored by default" in c for c in texts(at.caption))



def test_compare_page_names_per_emotion_the_models_that_cannot_answer_it(models_dir, six_images):
    """"Not scored: disgust, fear, neutral, surprise, which cnn-fer2013, ... cannot answer" named
    every model lacking any of them: cnn-fer2013 answers all but fear (a reviewer's). Each emotion
    left out names the models that cannot answer it."""
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {"mine": LookupPredictor("mine", ["happy", "sad"], ["happy"] * 6),
                                           "other": LookupPredictor("other", ["angry", "happy"], ["happy"] * 6)}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    assert at.multiselect(key="cmp_classes").value == ["happy"]
    said = [c for c in texts(at.caption) if "Scored by default" in c]
    assert said == ["Scored by default: happy, those every chosen model predicts. Not scored: angry, which mine cannot "
                    "answer; sad, which other cannot answer. Leave such a model out, or add the emotion here (a model "
                    "is then wrong on the images it cannot answer)."]


class AnswersInTwoPasses(Predictor):
    """An AU model that counts its answers as an ensemble of two members does (2 x faces)."""

    kind, inputs = "test", "aus"

    def __init__(self, classes):
        self.name, self.classes = "two-pass", tuple(classes)

    def predict_proba(self, faces, progress=None):
        for done in range(2 * len(faces) + 1):
            if progress:
                progress(done, 2 * len(faces))
        return np.full((len(faces), len(self.classes)), 1 / len(self.classes))


def test_compare_progress_counts_images_and_faces_not_passes(six_images, monkeypatch):
    """The bar read "Measuring faces: 5,052 / 6,186" for 3,093 images: the face pipeline counts a
    pass reading every image and one measuring each, and an ensemble counts each member's answers."""
    from fer_core.measure import extract

    def no_faces(items, workers=1, use_cache=True, progress=None, should_stop=None, crops=False):
        for done in range(len(items) + 1):
            if progress:
                progress(done, len(items))
        return {i: "no face found" for i in range(len(items))}

    monkeypatch.setattr(extract, "measure_items", no_faces)
    labels: list[str] = []
    comparison = run_comparison([AnswersInTwoPasses(["angry", "happy", "sad"])], list_images(six_images),
                                progress=lambda fraction, text: labels.append(text))
    assert comparison.n == 6  # 7 images chosen, one of them unreadable
    counted = [re.search(r"([\d,]+) of ([\d,]+) (images|faces)", text) for text in labels]
    # which model of how many: a bar that read "cnn-fer2013-7: 1,152 of 3,000 faces" never said that 9 ran
    assert "Measuring faces: 7 of 7 images" in labels and "model 1 of 1, two-pass: 6 of 6 faces" in labels
    assert "model 1 of 1, two-pass: running…" in labels
    assert all(int(m[1]) <= int(m[2]) and int(m[2]) == (7 if m[3] == "images" else 6) for m in counted if m), labels
    assert any(text.startswith("Reading images: ") for text in labels)


def test_a_comparison_waiting_for_another_runs_measuring_says_so(six_images, monkeypatch, tmp_path):
    """A second session's Compare waited on the shared measuring workers with its bar frozen, unexplained."""
    import threading

    from fer_core.i18n import t
    from fer_core.measure import extract
    from fer_core.measure.workers import IsolatedPool

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    pool = IsolatedPool(1, int)  # int of a task fails: every image a failure row, no MediaPipe
    monkeypatch.setattr(extract, "_pool", lambda key, workers: pool)
    pool.lock.acquire()  # another session's batch holds the workers
    released = threading.Lock()

    def other_run_done() -> None:
        if released.acquire(blocking=False):
            pool.lock.release()

    # The old code waits without a word: fail, do not hang. Long enough that a loaded machine reaches
    # the pool first (5 s raced the reading of the images before it; 0.3 s on a busy 2-core machine).
    timer = threading.Timer(60.0, other_run_done)
    timer.start()
    labels: list[str] = []

    def progress(fraction: float, text: str) -> None:
        labels.append(text)
        if text == t("loading.waiting_for_pool"):
            other_run_done()

    try:
        comparison = run_comparison([AnswersInTwoPasses(["angry", "happy", "sad"])], list_images(six_images),
                                    progress=progress)
    finally:
        timer.cancel()
        pool.close()
    assert t("loading.waiting_for_pool") in labels, labels
    waited = labels.index(t("loading.waiting_for_pool"))
    assert labels[waited + 1].startswith("Measuring faces: ") and comparison.n == 6  # then measured, as usual


def test_a_folder_without_labels_is_said_as_such_not_as_models_sharing_no_emotion(tmp_path, capsys):
    """compare and mask-report on unlabelled photos said "the models share no emotion with the test
    set's labels", sending people to pick other models; evaluate said what was wrong."""
    for name in ("IMG_0001.jpg", "IMG_0002.jpg"):
        Image.new("RGB", (48, 48), (120, 120, 120)).save(tmp_path / name)
    assert main(["compare", "--images", str(tmp_path), "--models", BUNDLED_AU_MODEL, "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "no labelled images" in err and "share no emotion" not in err and len(err.strip().splitlines()) == 1


def test_a_fitted_au_model_handed_to_a_comparison_is_one_line_and_the_library_exports_resolve(six_images, caplog):
    """The object fit_au_model returns, given to run_comparison, logged 60 lines of its arrays and
    a TypeError traceback; AUPredictor, which it needs, and the types the exported functions take
    and return (LabeledImage, FaceResult, ...) were not exported from fer_core."""
    from test_au_model import synthetic_table

    import fer_core
    from fer_core.predictors.au_models import fit_au_model

    classes = ["angry", "happy", "sad"]
    fitted = fit_au_model(synthetic_table(20, classes=classes), classes=classes)
    comparison = run_comparison([LookupPredictor("A", classes, ["happy"] * 6), fitted], list_images(six_images), classes)
    assert comparison.failed_models == ["AUModel: not a model name, model file or Predictor; wrap a fitted AU model "
                                        "as AUPredictor(model, name='my-model')"]
    assert "Traceback" not in caplog.text and "array(" not in caplog.text
    assert all(getattr(fer_core, name) is not None for name in fer_core.__all__)
    fer_core.close_workers()  # the measuring processes stop (a notebook's kernel kept them), and start again below
    wrapped = fer_core.AUPredictor(fitted, name="my-model")
    assert run_comparison([wrapped], list_images(six_images), classes).reports["my-model"].n == 6


def test_compare_page_measures_a_folder_of_large_face_crops_as_crops(models_dir, fer_val, tmp_path):
    """Face crops of 320 px the photo search misses: every model scored them wrong ("no face");
    with Face crops on they are measured as crops, as compare --crops does, and an AU model's
    explanation of one measures it the same way."""
    folder = tmp_path / "crops" / "surprise"
    folder.mkdir(parents=True)
    for name in ("PublicTest_13980595.jpg", "PublicTest_1597600.jpg"):
        Image.open(fer_val / "surprise" / name).convert("RGB").resize((320, 320), Image.BICUBIC).save(folder / name)
    at = _page()
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(tmp_path / "crops"))
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value([BUNDLED_AU_MODEL])
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    assert at.session_state["cmp_result"]["comparison"].reports[BUNDLED_AU_MODEL].no_face == 2
    hint = ("2 of the images without a face found are square or nearly square pictures of 160 px or more. If they "
            "are face crops, the face filling each, turn on **Face crops** above and run it again.")
    assert hint in texts(at.info)
    at.toggle(key="cmp_crops").set_value(True)
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    res = at.session_state["cmp_result"]["comparison"]
    assert res.crops and res.reports[BUNDLED_AU_MODEL].no_face == 0 and res.reports[BUNDLED_AU_MODEL].n == 2
    assert any(c.endswith("so only the AU models can have found no face in one.") for c in texts(at.caption))
    assert hint not in texts(at.info)
    from fer_core.evaluation.compare import explain_image
    from fer_core.predictors.registry import load_predictor

    shown = explain_image(folder / "PublicTest_13980595.jpg", "surprise", load_predictor(BUNDLED_AU_MODEL), crops=True)
    assert shown.explanation is not None


def test_a_model_answering_every_face_alike_is_said_to_tie(six_images):
    """An untrained Teachable Machine model gives each class exactly 1/k: every answer went to the
    first emotion (angry) and Compare showed it 100 % on angry without a word (a reviewer's)."""
    classes = ["angry", "happy", "sad"]

    class Uniform(LookupPredictor):
        def predict_proba(self, faces, progress=None):
            return np.full((len(self.pixels_of(faces)), len(self.classes)), 1 / len(self.classes))

    uniform = Uniform("untrained", classes, [])
    half = LookupPredictor("fine", classes, ["happy", "happy", "sad", "sad", None, "sad"])
    comparison = run_comparison([uniform, half], list_images(six_images), classes)
    assert comparison.tied == {"untrained": 6}  # one-hot answers and a face not found are no ties
    assert comparison.reports["untrained"].per_class["angry"].accuracy == 1.0  # what the note explains
    [note] = comparison.tie_notes()
    assert note.startswith("untrained gave 6 of 6 images the same highest probability for two or more emotions")
    assert comparison.to_dict()["tied"] == {"untrained": 6}


def test_wrong_rows_are_a_models_wrong_answers_no_face_included():
    import numpy as np
    import pandas as pd

    from fer_core.evaluation.compare import Comparison

    table = pd.DataFrame({"file": ["a", "b", "c", "d"], "label": ["happy", "happy", "sad", "sad"],
                          "m": ["happy", np.nan, "happy", "sad"]})
    comparison = Comparison(table, {"m": None}, [], ("happy", "sad"))
    assert comparison.wrong_rows("m")["file"].tolist() == ["b", "c"]  # no face counts wrong
    assert comparison.wrong_rows("m", "sad")["file"].tolist() == ["c"]
    assert comparison.wrong_rows("m", "happy")["file"].tolist() == ["b"]


def test_compare_page_scores_a_folder_against_an_uploaded_labels_csv(models_dir, six_images):
    """A study's raters' labels, uploaded as the CLI's --labels takes them, replace the file names'
    emotions: images without a row and labels naming no emotion are left out and counted, a row
    naming no image is said, the run's description names the file, and another column of the same
    file marks the results as the previous choice's."""
    classes = ["angry", "happy", "sad"]
    by_gray = LookupPredictor("mine", classes, ["happy", "happy", "happy", "sad", "sad", "angry"])
    ratings = ("file,label,R2\nhappy000.png,sad,happy\nhappy001.png,Happy,happy\nhappy002.png,,happy\n"
               "sad003.png,sad,sad\nsad004.png,sad,sad\nelsewhere.png,angry,angry\n")
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {"mine": by_gray}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    # a sheet heading its images otherwise: the page asks which column names them
    at.file_uploader(key="cmp_labels").set_value(("ratings.csv", ratings.replace("file,", "Stim_ID,", 1).encode(),
                                                  "text/csv"))
    run_app(at, T)
    assert any("Choose the column that names the images" in i for i in texts(at.info)) and not at.error
    assert at.selectbox(key="cmp_file_column").options == ["Stim_ID", "label", "R2"]
    at.selectbox(key="cmp_file_column").set_value("Stim_ID")
    run_app(at, T)
    assert at.selectbox(key="cmp_label_column").options == ["label (else emotion)", "label", "R2"]
    assert any("4 images" in c for c in texts(at.caption)), texts(at.caption)
    # a trial number headed img beside the Stimulus: the column found first is offered, and can be changed
    lines = ratings.replace("file,", "Stimulus,", 1).splitlines()
    trials = "\n".join([f"img,{lines[0]}"] + [f"{k},{line}" for k, line in enumerate(lines[1:], start=1)]) + "\n"
    at.file_uploader(key="cmp_labels").set_value(("ratings.csv", trials.encode(), "text/csv"))
    run_app(at, T)
    assert at.selectbox(key="cmp_file_column").value == "img" and at.error  # no image is named 1, 2, ...
    at.selectbox(key="cmp_file_column").set_value("Stimulus")
    run_app(at, T)
    assert not at.error and any("4 images" in c for c in texts(at.caption)), texts(at.caption)
    at.file_uploader(key="cmp_labels").set_value(("ratings.csv", ratings.encode(), "text/csv"))
    run_app(at, T)
    assert not at.error and not at.exception
    assert at.selectbox(key="cmp_label_column").options == ["label (else emotion)", "label", "R2"]
    assert any("4 images" in c and "2 without a row" in c and "1 whose label names no emotion" in c
               for c in texts(at.caption)), texts(at.caption)
    assert any("elsewhere.png" in w for w in texts(at.warning))
    assert any(c.startswith("Your sheet's own agreement") and "label – R2" in c and "(n 4)" in c
               for c in texts(at.caption)), texts(at.caption)
    at.multiselect(key="cmp_models").set_value(["mine"])
    at.button(key="cmp_run").click()
    run_app(at, T)
    saved = at.session_state["cmp_result"]
    report = saved["comparison"].reports["mine"]
    assert (report.n, report.accuracy) == (4, 0.75), "happy000 is sad by the raters: the gray model is wrong there"
    assert "ratings.csv" in str(saved["description"].plain()) and "`" not in str(saved["description"].plain())
    assert {"happy002.png: label (blank), which names no emotion", "angry005.png: no row in ratings.csv"} <= set(
        saved["passed_over"]), "the left-out CSV names each image the labels left out"
    assert not any("previous choice" in s for s in texts(at.info))
    at.selectbox(key="cmp_label_column").set_value("R2")
    run_app(at, T)
    assert any("previous choice" in s for s in texts(at.info)), "another rater's column is another test set"


def test_compare_says_when_the_images_come_from_the_folder_a_network_was_trained_on(capsys, tmp_path, tiny_seven_cnn):
    """Scoring a network on its own training folder, or on a set drawn from it, gives what it
    learned, not a test: the sidecar's train_dir (and the drawn set's testset.json source) say so,
    in the text and the JSON; another folder gets no such note."""
    import shutil

    train, other = tmp_path / "train", tmp_path / "other"
    for folder, shade in ((train, 40), (other, 200)):
        for emotion in SIX_EMOTIONS:
            (folder / emotion).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (48, 48), shade + i).save(folder / emotion / f"{emotion}{i}.png")
    network = tmp_path / "net.keras"
    shutil.copy(tiny_seven_cnn, network)
    sidecar = json.loads(tiny_seven_cnn.with_suffix(".meta.json").read_text())
    network.with_suffix(".meta.json").write_text(json.dumps({**sidecar, "train_dir": str(train)}))
    assert main(["draw-testset", str(train), str(tmp_path / "drawn"), "--per-class", "1"]) == 0
    capsys.readouterr()
    for images, expected in ((train, 12), (tmp_path / "drawn", 6), (other, None)):
        assert main(["compare", "--images", str(images), "--models", str(network), "--json"]) == 0
        out, err = capsys.readouterr()
        found = json.loads(out)["from_training_folder"]
        if expected is None:
            assert found == {} and "was trained on" not in err
        else:
            assert found == {"net": expected}
            assert f"{expected} of the {expected} images scored come from {train}, the folder net was trained on" in err


def test_copies_of_a_networks_training_images_are_found_said_and_drawn_around(capsys, tmp_path, tiny_seven_cnn):
    """FER2013 val holds 280 byte-for-byte copies of train images: a network trained on train was
    scored on them with no word said. A comparison names the copies (whatever their file names),
    gives the network's accuracy without them, and draw-testset --unlike draws a set without them."""
    import shutil

    train, val = tmp_path / "train", tmp_path / "val"
    for folder, shade in ((train, 40), (val, 200)):
        for emotion in SIX_EMOTIONS:
            (folder / emotion).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (48, 48), shade + i).save(folder / emotion / f"{emotion}{i}.png")
    copies = [val / "happy" / "renamed.png", val / "sad" / "sad_copy.png"]
    shutil.copy(train / "happy" / "happy0.png", copies[0])
    shutil.copy(train / "angry" / "angry1.png", copies[1])  # a copy under another emotion is still a copy
    Image.new("L", (48, 48), 77).save(val / "angry" / "same_size_other_bytes.png")  # size alone is no copy
    network = tmp_path / "net.keras"
    shutil.copy(tiny_seven_cnn, network)
    sidecar = json.loads(tiny_seven_cnn.with_suffix(".meta.json").read_text())
    network.with_suffix(".meta.json").write_text(json.dumps({**sidecar, "train_dir": str(train)}))

    assert main(["compare", "--images", str(val), "--models", str(network), "--json",
                 "--csv", str(tmp_path / "p.csv")]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    found = result["copies_of_training"]["net"]
    marked = pd.read_csv(tmp_path / "p.csv")
    assert sorted(marked.loc[marked["net copy of training"], "file"]) == sorted(found["files"])
    assert sorted(found["files"]) == ["happy/renamed.png", "sad/sad_copy.png"] and found["folder"] == str(train)
    rest = [f for f in result["wrong"]["net"] if f not in found["files"]]
    assert found["n_without"] == result["n"] - 2 == 19
    assert found["accuracy_without"] == pytest.approx(1 - len(rest) / 19)
    assert "2 of the 21 images scored are byte-for-byte copies of images in" in err and "on the 19 others" in err
    assert result["from_training_folder"] == {}
    from fer_core.images import copies_in

    linked = tmp_path / "linked"  # emotion folders linked in, as a lab assembles a training folder
    linked.mkdir()
    (linked / "happy").symlink_to(train / "happy")
    (linked / "loop").symlink_to(linked)  # a link back up the tree ends the walk there
    assert copies_in(linked, [*copies, val / "angry" / "same_size_other_bytes.png"]) == [True, True, False]

    drawn = tmp_path / "drawn"
    four = ["--classes", "happy,sad", "--per-class", "4"]  # four happy images, one of them a copy
    assert main(["draw-testset", str(val), str(tmp_path / "four"), *four]) == 0
    assert main(["draw-testset", str(val), str(drawn), *four, "--unlike", str(train)]) != 0
    assert "only 3 happy images not copies of files in" in capsys.readouterr().err
    assert main(["draw-testset", str(val), str(drawn), "--per-class", "3", "--unlike", str(train)]) == 0
    assert "none a copy of a file in" in capsys.readouterr().out
    assert not {p.name for p in drawn.rglob("*.png")} & {"renamed.png", "sad_copy.png"}
    assert json.loads((drawn / "testset.json").read_text())["unlike"] == [str(train.resolve())]
    assert main(["compare", "--images", str(drawn), "--models", str(network), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["copies_of_training"] == {}
    assert main(["draw-testset", str(val), str(tmp_path / "x"), "--unlike", str(tmp_path / "nowhere")]) != 0
    assert "--unlike" in capsys.readouterr().err


def test_compare_says_when_the_images_chose_a_networks_epoch(capsys, tmp_path, tiny_seven_cnn):
    """A lab trained with --val on its test folder, then compared on that folder: its score was
    the best epoch's on those very images, with no word said. A folder that chose the epoch (the
    sidecar's val_dir without a held-out share) is named, with the networks; a set drawn from it
    counts whole; a network that chose on a share of its training folder (--holdout) gets no note."""
    import shutil

    val = tmp_path / "val"
    for emotion in SIX_EMOTIONS:
        (val / emotion).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (48, 48), 100 + i).save(val / emotion / f"{emotion}{i}.png")
    sidecar = json.loads(tiny_seven_cnn.with_suffix(".meta.json").read_text())
    for name, holdout in (("chosen", None), ("held", 0.1)):
        shutil.copy(tiny_seven_cnn, tmp_path / f"{name}.keras")
        (tmp_path / f"{name}.meta.json").write_text(json.dumps({**sidecar, "train_dir": str(tmp_path / "train"),
                                                                 "val_dir": str(val), "holdout": holdout}))
    assert main(["draw-testset", str(val), str(tmp_path / "drawn"), "--per-class", "1"]) == 0
    capsys.readouterr()
    for images, k in ((val, 12), (tmp_path / "drawn", 6)):
        assert main(["compare", "--images", str(images), "--models", f"{tmp_path / 'chosen.keras'},"
                     f"{tmp_path / 'held.keras'}", "--json"]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["from_choosing_folder"] == {"chosen": k}
        assert f"{k} of the {k} images scored come from {val}, which chose the training epoch of chosen (or of the network" in err
    from ui.common import drawn_test_set  # the Compare page's own draw says where it came from too

    page_draw = drawn_test_set(str(val), 1, 0, SIX_EMOTIONS)
    assert main(["compare", "--images", str(page_draw.root), "--models", str(tmp_path / "chosen.keras"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["from_choosing_folder"] == {"chosen": 6}


def test_compare_page_reads_a_folder_per_participant_when_a_labels_csv_is_given(models_dir, tmp_path):
    """Folders named after participants, not emotions, hold no labelled image: the page stopped
    before the labels could be given. With a (semicolon) sheet uploaded, every image is read and
    its row labels it; the sheet's file column is no choice of labels."""
    classes = ["angry", "happy", "sad"]
    answers = ["happy", "sad", "angry", "happy"]
    for value in range(4):
        folder = tmp_path / "stim" / f"P0{value % 2 + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", (48, 48), value).save(folder / f"img{value}.png")
    sheet = "Filename;Majority\nP01/img0.png;happy\nP02/img1.png;sad\nP01/img2.png;angry\nP02/img3.png;sad\n"
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {"mine": LookupPredictor("mine", classes, answers)}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(tmp_path / "stim"))
    run_app(at, T)
    assert at.error and "Labels of your own" in at.error[0].value, "no emotion names these folders: the sheet is the way"
    at.file_uploader(key="cmp_labels").set_value(("sheet.csv", sheet.encode(), "text/csv"))
    run_app(at, T)
    assert not at.error and not at.exception and any("Choose the column of labels" in s for s in texts(at.info))
    assert at.selectbox(key="cmp_label_column").options == ["label (else emotion)", "Majority"]
    at.selectbox(key="cmp_label_column").set_value("Majority")
    run_app(at, T)
    at.multiselect(key="cmp_models").set_value(["mine"])
    at.button(key="cmp_run").click()
    run_app(at, T)
    report = at.session_state["cmp_result"]["comparison"].reports["mine"]
    assert (report.n, report.accuracy) == (4, 0.75)


def test_compare_page_gives_many_models_calibration_as_a_table_with_each_ones_reading(models_dir, six_images):
    """Four models' calibration in four sentences of one pattern read as a wall: past three, one
    table, each model's reading in words; a model that is sure of every answer and wrong on some is
    overconfident, one right on every answer is as sure as right."""
    classes = ["angry", "happy", "sad"]
    answers = {"right": ["happy", "happy", "happy", "sad", "sad", "angry"],
               "half": ["happy", "sad", "happy", "happy", "sad", "sad"],
               "wrong": ["sad", "sad", "sad", "happy", "happy", "happy"],
               "one": ["happy"] * 6}
    at = AppTest.from_file(COMPARE_PAGE)
    at.session_state["_unsaved_models"] = {n: LookupPredictor(n, classes, a) for n, a in answers.items()}
    run_app(at, T)
    at.radio(key="cmp_source").set_value(FOLDER)
    run_app(at, T)
    at.text_input(key="cmp_folder").set_value(str(six_images))
    run_app(at, T)
    at.button(key="cmp_run").click()
    run_app(at, T)
    table = next(d.value for d in at.dataframe if "reading" in d.value.columns)
    readings = dict(zip(table["model"], table["reading"]))
    assert readings["right"] == "calibrated as far as these answers can tell"
    assert readings["wrong"] == "overconfident by 100.0 points"
    assert not any(m.startswith("**right**:") for m in texts(at.markdown)), "no sentence per model past three"
    # per emotion answered: sure of every answer and wrong on all, overconfident on each emotion it said
    assert "**wrong**: overconfident when it answers happy (+100.0 points), sad (+100.0 points)." in texts(at.markdown)
    assert not any(m.startswith("**right**:") for m in texts(at.markdown))  # right as sure: nothing to say
    figure = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith(
        "Confidence against correctness, per emotion answered"))
    assert [d["name"] for d in figure["data"]] == list(answers)
