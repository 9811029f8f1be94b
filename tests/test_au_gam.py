"""The glass-box AU GAM: predicted from its own JSON exactly as the fitted EBM predicts, with
per-AU contributions that sum to the logits, and wired like the other AU models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_core.au_table import AU_COLUMNS
from fer_core.cli import main
from fer_core.errors import ModelFileError
from fer_core.predictors.au_gam import AUGam, fit_au_gam
from fer_core.predictors.registry import kind_for_path, load_predictor

pytest.importorskip("interpret", reason="interpret-core is not installed")

from test_au_model import synthetic_table


@pytest.fixture(scope="module")
def gam() -> AUGam:
    return fit_au_gam(synthetic_table(40), interactions=3, outer_bags=2)


def test_json_model_predicts_like_the_fitted_ebm():
    from interpret.glassbox import ExplainableBoostingClassifier

    rng = np.random.default_rng(1)
    X = rng.random((400, len(AU_COLUMNS))) * 5
    X[:40, 3] = 0.0
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 8).astype(int) + (X[:, 4] > 4)
    ebm = ExplainableBoostingClassifier(interactions=3, outer_bags=2, random_state=0, n_jobs=1).fit(X, y)
    model = AUGam.from_ebm(ebm, ("happy", "sad", "surprise"))
    X_test = np.vstack([rng.random((300, len(AU_COLUMNS))) * 5, np.tile(ebm.bins_[0][0][:20, None], (1, 17))])
    np.testing.assert_allclose(model.logits(X_test), ebm.decision_function(X_test), atol=1e-9)
    np.testing.assert_allclose(model.predict_proba(X_test), ebm.predict_proba(X_test), atol=1e-9)


def test_contributions_and_intercept_sum_to_the_logits(gam):
    X = synthetic_table(3, seed=5)[list(AU_COLUMNS)].to_numpy(float)
    for x in X:
        np.testing.assert_allclose(gam.contributions(x).sum(axis=1) + gam.intercept, gam.logits(x)[0], atol=1e-9)
    assert gam.pairs and all(len(p) == 2 for p in gam.pairs)
    edges, scores = gam.shape_function(0)
    assert scores.shape == (len(edges) + 1, len(gam.classes))


def test_explanation_and_holdout(gam):
    x = np.zeros(len(AU_COLUMNS))
    x[8], x[9] = 4.5, 3.5  # the AUs planted for 'sad'
    ex = gam.explain(x)
    assert ex.emotion == "sad" and ex.reasons[0].au in ("AU12", "AU14")
    assert gam.holdout.accuracy > 0.8


def test_a_weak_au_the_gam_rewards_is_a_reason_by_being_there_not_absent():
    """A reviewer's GAM: 'surprise, because ... AU05 upper lid raiser ... is absent' of an AU05 of
    0.48 that its shape function scored above AU05 at 0 (p(surprise) 0.31 at 0, 0.48 as it was).
    A value scored above the AU's absence is said as there; one scored as at 0 stays absent."""
    from fer_core.predictors.au_models import explanation_from

    classes, columns = ("happy", "surprise"), ("AU05_r", "AU23_r", "AU12_r")
    x = np.array([0.48, 0.0, 0.1])
    contrib = np.array([[-0.4, -0.2, 0.0], [0.4, 0.2, 0.0]])  # AU05 and AU23 favour surprise
    absent = np.array([[-0.1, -0.2, 0.0], [0.1, 0.2, 0.0]])  # AU05 at 0 would favour it less; AU23 is at 0
    ex = explanation_from(classes, columns, x, np.array([0.3, 0.7]), contrib, contrib_absent=absent)
    assert [c.au for c in ex.active_reasons] == ["AU05"] and [c.au for c in ex.lacking] == ["AU23"]
    assert ex.sentence == "surprise, mostly because of AU05 upper lid raiser (0.5); AU23 lip tightener is absent."


def test_a_gam_with_pairs_gives_no_au_at_zero_as_a_reason_it_shows(gam):
    """Weighed against every AU at 0 at once, a GAM's pairwise terms made AUs of 0.0 reasons 'because
    of' them (a code review: 653 of 1,500 faces' reasons). Each AU is weighed against itself alone
    absent; one reading 0.0 is never a reason by its value, and the JSON says which ones are."""
    X = synthetic_table(4, seed=9)[list(AU_COLUMNS)].to_numpy(float).copy()
    X[:, ::3] = 0.0  # a third of the AUs absent, beside partners that are not
    assert gam.pairs
    for x in X:
        ex = gam.explain(x)
        assert all(c.intensity >= 0.05 for c in ex.active_reasons), ex.sentence
        assert "weaker than usual" not in ex.sentence  # a GAM has no usual value
        assert all("by_value" in c for c in ex.to_dict()["top_aus"])


def test_saved_loaded_and_registered(tmp_path, gam):
    path = tmp_path / "gam.json"
    gam.save(path)
    assert kind_for_path(path) == "au-gam"
    again = load_predictor(str(path))
    X = synthetic_table(2, seed=3)[list(AU_COLUMNS)].to_numpy(float)
    np.testing.assert_allclose(again.proba_from_aus(X), gam.predict_proba(X))
    broken = json.loads(path.read_text())
    broken["terms"][0]["scores"] = [[0.0]]
    path.write_text(json.dumps(broken))
    with pytest.raises(ModelFileError, match=r"field 'terms\[0\]\.scores' is 1×1, expected \d+×\d+"):
        AUGam.load(path)


def test_train_au_gam_from_the_cli(capsys, tmp_path):
    table = tmp_path / "t.csv"
    synthetic_table(30).to_csv(table, index=False)
    out = tmp_path / "g.json"
    assert main(["train-au", str(table), "--kind", "gam", "--interactions", "2", "--out", str(out),
                 "--workers", "1", "--outer-bags", "2"]) == 0
    out_text, err = capsys.readouterr()
    assert "au-gam on" in out_text and AUGam.load(out).classes
    assert AUGam.load(out).info["settings"]["outer_bags"] == 2  # 14 took two minutes on these 180 rows
    # each fit is logged, where a real table ran minutes in silence into a log file (8.5 min on FER2013 val's
    # seven emotions, which is also said first); these 180 rows fit in seconds, and are not said to take minutes
    assert "GAM fit 1 of 2 done (" in err and "GAM fit 2 of 2 done (" in err and "takes minutes" not in err


def test_shape_functions_figure(gam):
    from fer_core.figures import plots

    fig = plots.gam_shape_functions(gam)
    assert len(fig.data) == len(gam.classes) * len(AU_COLUMNS)
    assert fig.layout.annotations[0].text == "AU01 inner brow raiser"


def test_a_gam_fit_reports_each_bag_as_it_starts():
    """A GAM fit can take minutes with only 'step 1 of 2' to show; each bagged fit now reports."""
    seen: list[tuple[int, int]] = []
    fit_au_gam(synthetic_table(15), interactions=0, outer_bags=3, bag_progress=lambda b, n: seen.append((b, n)))
    assert seen and {n for _, n in seen} == {3} and {b for b, _ in seen} == {1, 2, 3}


@pytest.mark.parametrize("interactions", [-1, float("nan"), 2.5, float("inf"), True])
def test_impossible_interactions_are_named_before_any_fit(interactions):
    """-1 and NaN reached interpret, whose refusal came out as "could not fit … on these faces; add
    faces" (the table blamed); 2.5 would be cut to 2 pairs by the command line."""
    from fer_core.errors import AUTableError, FerError

    with pytest.raises(FerError, match="interactions .*: give a whole number of AU pairs") as caught:
        fit_au_gam(synthetic_table(12), interactions=interactions, outer_bags=1)
    assert not isinstance(caught.value, AUTableError)


def test_a_whole_number_of_interactions_written_as_a_float_is_a_count():
    from fer_core.predictors.au_gam import check_interactions

    assert check_interactions(2.0) == 2 and isinstance(check_interactions(2.0), int)
    assert check_interactions(0.25) == 0.25 and check_interactions(None) is None


def test_the_pair_surface_drawn_is_what_the_pair_adds_to_a_face(gam):
    """The AU model page draws each of a GAM's pairwise terms (it only named them): the cell a
    face's two AUs fall in holds what that term adds to its score, centred over emotions as the
    shape functions are, whichever order the pair is asked in."""
    from fer_core.figures.plots import gam_pair_surface

    first, second = gam.pairs[0]
    i, j = AU_COLUMNS.index(first), AU_COLUMNS.index(second)
    term = next(t for t in gam.terms if set(t.features) == {i, j})
    rng = np.random.default_rng(4)
    for emotion in gam.classes[:3]:
        for a, b in rng.random((5, 2)) * 5:
            for shown_first, shown_second, y_value, x_value in ((first, second, a, b), (second, first, b, a)):
                heat = gam_pair_surface(gam, shown_first, shown_second, emotion).data[0]
                row = np.searchsorted(heat.y, y_value, side="right") - 1
                col = np.searchsorted(heat.x, x_value, side="right") - 1
                x = np.full((1, len(AU_COLUMNS)), np.nan)
                x[0, i], x[0, j] = a, b
                added = term.lookup(x)[0]
                k = gam.classes.index(emotion)
                assert heat.z[row][col] == pytest.approx(added[k] - added.mean(), abs=1e-9)


def _children() -> set[int]:
    """This process's child processes (Linux's /proc)."""
    import os
    from pathlib import Path

    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                kids.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def test_a_gam_fit_on_two_cores_starts_no_process_a_kill_would_orphan():
    """The bags ran in loky's worker processes, which outlive the fit for reuse: train-au --kind gam
    killed with SIGKILL left them running, 200 MB each, holding its stdout, so the script that
    read its output hung (a reliability review). They run in threads now."""
    before = _children()
    model = fit_au_gam(synthetic_table(30), interactions=2, outer_bags=4, n_jobs=2)
    assert model.classes
    assert _children() - before == set()
