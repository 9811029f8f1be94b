"""Ensembles of registered pixel models: real (tiny) Keras CNNs, averaged on their shared emotions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import BUNDLED_AU_MODEL, seven_cnn_entry

from fer_core.cli import main
from fer_core.config import REPO_ROOT
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError, ModelFileError
from fer_core.manifest import register
from fer_core.predictors.ensemble import EnsemblePredictor
from fer_core.predictors.registry import find_entry, kind_for_path, load_predictor, needs_tensorflow

pytest.importorskip("keras", reason="keras is not installed")


@pytest.fixture
def members(models_dir, tiny_seven_cnn, tmp_path):
    """Two registered CNNs: a six-emotion one and a seven-emotion one (tiny, untrained, real Keras)."""
    from fer_core.predictors.cnn import build_cnn

    six = tmp_path / "tiny_six.keras"
    build_cnn("tiny", 6, seed=3).save(six)
    six.with_suffix(".meta.json").write_text(json.dumps({"kind": "cnn", "preset": "tiny",
                                                         "classes": list(SIX_EMOTIONS)}))
    register(replace(seven_cnn_entry(six, "tiny-six"), classes=SIX_EMOTIONS), models_dir)
    register(seven_cnn_entry(tiny_seven_cnn, "tiny-seven"), models_dir)
    return "tiny-six", "tiny-seven"


def test_the_ensemble_is_the_mean_of_its_members_on_their_shared_emotions(members, models_dir, astronaut, capsys):
    faces = [astronaut, astronaut[::-1], np.full((48, 48, 3), 128, np.uint8)]
    six, seven = (load_predictor(name) for name in members)
    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair"]) == 0
    assert "registered 'tiny-pair'" in capsys.readouterr().out
    entry = find_entry("tiny-pair")
    assert entry.kind == "ensemble" and entry.classes == SIX_EMOTIONS  # fear: only one member predicts it
    assert kind_for_path(entry.file) == "ensemble" and entry.file.name == "tiny-pair.ensemble.json"
    assert needs_tensorflow(entry)  # the tiny members have no TensorFlow Lite twin
    ensemble = load_predictor("tiny-pair")
    assert isinstance(ensemble, EnsemblePredictor) and ensemble.classes == SIX_EMOTIONS
    p7 = seven.predict_proba(faces)[:, [SEVEN_EMOTIONS.index(c) for c in SIX_EMOTIONS]]
    expected = (six.predict_proba(faces) + p7 / p7.sum(1, keepdims=True)) / 2
    proba = ensemble.predict_proba(faces)
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)

    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-two", "--classes", "happy,sad"]) == 0
    two = load_predictor("tiny-two")
    assert two.classes == ("happy", "sad") and two.predict_proba(faces).shape == (3, 2)


def test_an_ensemble_is_scored_on_a_labelled_folder(members, models_dir, fer_sample, capsys):
    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair", "--val", str(fer_sample)]) == 0
    metrics = find_entry("tiny-pair").metrics
    assert metrics.n == 24 and 0 <= metrics.accuracy <= 1 and "nothing fitted on it" in metrics.evaluated_on
    assert main(["evaluate", "--model", "tiny-pair", "--images", str(fer_sample), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] == pytest.approx(metrics.accuracy)


def test_an_ensemble_in_another_models_folder_takes_its_members_from_there(members, models_dir, tmp_path,
                                                                            monkeypatch, astronaut, capsys):
    """A copied (or second) models folder: its ensemble, loaded by path, looked its members up in the
    default folder's manifest, which does not have them ("model 'tiny-six' not found")."""
    import shutil

    for name in members:  # the members' files in the folder, as a models folder's own models are
        entry = find_entry(name)
        inside = models_dir / entry.file.name
        for suffix in (".keras", ".meta.json"):
            shutil.copy(entry.file.with_suffix(suffix), inside.with_suffix(suffix))
        register(replace(entry, path=f"models/{inside.name}", base=models_dir), models_dir)
    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair"]) == 0
    expected = load_predictor("tiny-pair").predict_proba([astronaut])
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(models_dir, elsewhere)
    monkeypatch.setenv("FER_MODELS_DIR", str(tmp_path / "empty"))
    copied = elsewhere / "tiny-pair.ensemble.json"
    assert needs_tensorflow(find_entry(str(copied)))
    ensemble = load_predictor(str(copied))
    np.testing.assert_allclose(ensemble.predict_proba([astronaut]), expected, atol=1e-6)
    # beside the first folder's model of a member's name (another file), that model's answer is not taken
    namesake = load_predictor(find_entry("tiny-six", models_dir))
    known = {"tiny-six": (namesake, np.eye(1, len(namesake.classes)))}
    np.testing.assert_allclose(ensemble.predict_proba([astronaut], known=known), expected, atol=1e-6)
    # predict answers with a model that gives no reasons too (it refused them: a CNN's answer for one
    # photo had no command)
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "photo.png"), "--model", str(copied), "--json"]) == 0
    (face,) = json.loads(capsys.readouterr().out)["faces"]
    assert "sentence" not in face and face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    # to 4 decimals, as an explaining model's (0.9934005439281464 beside the AU model's 0.9753)
    assert all(p == round(p, 4) for p in face["probabilities"].values())


def test_bad_ensembles_are_refused_with_one_line(members, models_dir, capsys):
    cases = [
        (["--models", "tiny-six,nowhere"], "nowhere: not in models/manifest.json"),
        (["--models", f"tiny-six,{BUNDLED_AU_MODEL}"], "an au-logreg model reads AU tables"),
        (["--models", "tiny-six,tiny-seven", "--classes", "fear,happy"], "tiny-six lacks fear"),
        (["--models", "tiny-six"], "at least two models"),
    ]
    for args, message in cases:
        assert main(["ensemble", *args, "--name", "bad"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["ensemble", "--models", ",".join(members), "--name", "pair"]) == 0
    assert main(["ensemble", "--models", "pair,tiny-six", "--name", "nested"]) == 2
    assert "cannot hold another ensemble" in capsys.readouterr().err

    spec = models_dir / "pair.ensemble.json"
    made = json.loads(spec.read_text())
    assert len(made["member_sha256"]) == 2 and made["member_sha256"][0] == find_entry("tiny-six").sha256
    spec.write_text(json.dumps({**made, "member_sha256": ["0" * 64, made["member_sha256"][1]]}))
    with pytest.raises(ModelFileError, match="member tiny-six has been retrained or replaced"):  # since made
        load_predictor(replace(find_entry("pair"), sha256=None))
    for text, message in [("{", "not valid JSON"), (json.dumps({"format": "other"}), "not an ensemble file"),
                          (json.dumps({"format": "fer_core.ensemble/1", "members": ["tiny-six"], "classes": ["happy", "sad"]}),
                           "'members' must list 2"),
                          (json.dumps({"format": "fer_core.ensemble/1", "members": ["tiny-six", "tiny-seven"],
                                       "classes": ["happy", "joy!"]}), "'classes' must list")]:
        spec.write_text(text)
        with pytest.raises((ModelFileError, FerError), match=message):
            load_predictor(replace(find_entry("pair"), sha256=None))  # the checksum would catch it first


@pytest.fixture
def cnn_runs(monkeypatch) -> list[str]:
    """The name of each CNN every time it predicts, in order."""
    from fer_core.predictors.cnn import CNNPredictor

    calls: list[str] = []
    original = CNNPredictor.predict_proba

    def counted(self, faces, progress=None):
        calls.append(self.name)
        return original(self, faces, progress)

    monkeypatch.setattr(CNNPredictor, "predict_proba", counted)
    return calls


def test_a_comparison_runs_each_member_once_beside_its_ensemble(members, models_dir, fer_sample, cnn_runs):
    """Compared beside its members, the ensemble takes their probabilities instead of running them
    again: each network sees the images once, the ensemble's column equals what it predicts on its
    own, and the columns keep the order given (answers kept from an earlier run are not used here:
    tests/test_answers_cache.py)."""
    from fer_core.emotions import SIX_EMOTIONS as SIX
    from fer_core.evaluation.compare import run_comparison
    from fer_core.images import list_images

    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair"]) == 0
    items = list_images(fer_sample, SIX)
    alone = run_comparison(["tiny-pair"], items, use_cache=False)
    cnn_runs.clear()
    both = run_comparison(["tiny-pair", *members], items, use_cache=False)
    assert sorted(cnn_runs) == sorted(members), "each member ran once, not again inside the ensemble"
    assert both.names == ["tiny-pair", *members]
    np.testing.assert_allclose(both.probabilities["tiny-pair"], alone.probabilities["tiny-pair"], atol=1e-6)
    cnn_runs.clear()
    run_comparison(["tiny-pair", members[0]], items, use_cache=False)  # the member not compared runs inside it
    assert sorted(cnn_runs) == sorted(members)


def test_try_it_runs_each_member_once_beside_its_ensemble(members, models_dir, astronaut_jpeg, cnn_runs):
    """Try it shows the ensemble beside its members without running them again for it: each
    network sees the face once, the ensemble's answer is the mean of the members' answers on its
    emotions (each renormalised), and the models' lines come in the order they were picked."""
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair"]) == 0
    at = run_app(AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "3_Try_it.py")), 120)
    assert at.multiselect(key="try_others").value == [*members, "tiny-pair"]
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, 240)
    disagreeing = [":material/call_split:"]  # random tiny networks need not agree with the AU model
    assert not at.error and not at.exception and [w.icon for w in at.warning] in ([], disagreeing)
    assert sorted(cnn_runs) == sorted(members), "each member ran once, not again inside the ensemble"
    lines = [m.value.split(" (", 1)[0] for m in at.markdown if m.value.startswith(("tiny-six (", "tiny-seven (",
                                                                                     "tiny-pair ("))]
    assert lines == [*members, "tiny-pair"]
    outputs = {out.name: out.per_face[0] for _, out in at.session_state["try_other_probs"].values()}
    expected = np.mean([[outputs[m][e] / sum(outputs[m][c] for c in SIX_EMOTIONS) for e in SIX_EMOTIONS]
                        for m in members], axis=0)
    np.testing.assert_allclose([outputs["tiny-pair"][e] for e in SIX_EMOTIONS], expected, atol=1e-6)


def test_a_member_sure_of_an_emotion_the_ensemble_leaves_out_counts_as_undecided(members, models_dir, astronaut):
    """A seven-emotion member that puts everything on fear, in a six-emotion ensemble, says nothing
    about the six: its share is an even row, not 0 / 0 that would turn the ensemble's answer to NaN."""
    assert main(["ensemble", "--models", ",".join(members), "--name", "tiny-pair"]) == 0
    ensemble = load_predictor("tiny-pair")
    six, seven = ensemble.members
    only_fear = np.eye(len(SEVEN_EMOTIONS))[[SEVEN_EMOTIONS.index("fear")]]
    proba = ensemble.predict_proba([astronaut], known={seven.name: (seven, only_fear)})
    expected = (six.predict_proba([astronaut]) + 1 / len(SIX_EMOTIONS)) / 2
    np.testing.assert_allclose(proba, expected, atol=1e-6)


def test_try_it_reuses_the_explaining_networks_answer_inside_an_ensemble(members, models_dir, astronaut_jpeg,
                                                                       monkeypatch):
    """An ensemble holding the AU-bottleneck network that explains the face takes that network's
    explained answer instead of running it again: the network reads the face once, and the
    ensemble's answer is the mean of the explanation's probabilities and the other member's."""
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    from fer_core.predictors.au_bottleneck import AUBottleneckPredictor

    reads: list[int] = []
    original = AUBottleneckPredictor.network_aus

    def counted(self, faces, progress=None):
        reads.append(len(faces))
        return original(self, faces, progress)

    monkeypatch.setattr(AUBottleneckPredictor, "network_aus", counted)
    register(find_entry("au-bottleneck-fer2013", REPO_ROOT / "models"), models_dir)
    assert main(["ensemble", "--models", f"au-bottleneck-fer2013,{members[0]}", "--name", "explained-pair"]) == 0
    at = run_app(AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "3_Try_it.py")), 120)
    at.selectbox(key="try_model").set_value("au-bottleneck-fer2013")
    at.multiselect(key="try_others").set_value(["explained-pair", members[0]])
    at.file_uploader(key="try_upload").set_value(("astronaut.jpg", astronaut_jpeg.read_bytes(), "image/jpeg"))
    run_app(at, 240)
    assert not at.error and not at.exception
    assert reads == [1], "the network read the face to explain it and not again for the ensemble"
    result = next(r for r, _ in at.session_state["try_results"].values())
    explained = result.faces[0].explanation.probabilities
    outputs = {out.name: out.per_face[0] for _, out in at.session_state["try_other_probs"].values()}
    expected = [(explained[e] + outputs[members[0]][e]) / 2 for e in SIX_EMOTIONS]
    np.testing.assert_allclose([outputs["explained-pair"][e] for e in SIX_EMOTIONS], expected, atol=1e-6)
