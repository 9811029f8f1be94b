"""Per-AU quantile calibration between AU backends: recovers a known monotone transform, is
monotone despite a mass of exact zeros, round-trips through JSON, leaves failed faces and non-AU
columns alone, and refuses tables it cannot use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fer_core.au_table import AU_COLUMNS, META_COLUMNS
from fer_core.errors import AUTableError, ModelFileError
from fer_core.measure.calibration import AUCalibration, fit_quantile_map, scale_report


def table(values: dict[str, np.ndarray], source: str, labels=None) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    frame = pd.DataFrame({"file": [f"{source}{i:05d}.jpg" for i in range(n)], "face": 0,
                          "label": labels if labels is not None else "happy", "success": 1,
                          "confidence": 0.9, "source": source, "reason": ""})
    for c in AU_COLUMNS:
        frame[c] = values[c]
    return frame


def zero_inflated(rng, n: int, zero_share: float = 0.4) -> np.ndarray:
    """AU-like values: an exact-zero atom holding ``zero_share`` of faces (exactly, so that two
    draws differ only in their continuous part), the rest uniform on 0..5, rows shuffled."""
    zeros = int(round(n * zero_share))
    return rng.permutation(np.concatenate([np.zeros(zeros), rng.uniform(0, 5, n - zeros)]))


def transform(x):
    return x ** 2 / 5


@pytest.fixture(scope="module")
def synthetic():
    """Target = x**2/5 of an independent draw of the same zero-inflated source distribution."""
    rng = np.random.default_rng(0)
    n = 20000
    source = table({c: zero_inflated(rng, n) for c in AU_COLUMNS}, "mediapipe")
    target = table({c: transform(zero_inflated(rng, n)) for c in AU_COLUMNS}, "openface")
    return source, target, fit_quantile_map(source, target)


def test_recovers_known_monotone_transform(synthetic):
    _, _, cal = synthetic
    assert (cal.source, cal.target, cal.label) == ("mediapipe", "openface", "mediapipe→openface")
    x = np.linspace(0, 5, 201)
    for c in AU_COLUMNS:
        y = cal.map_values(c, x)
        err = np.abs(y - transform(x))  # sampling noise of two independent draws, x-error ~0.02
        assert err.max() < 0.2, c  # times the slope, up to 2 near x = 5
        assert err.mean() < 0.07, c
        assert err[x <= 1].max() < 0.06, c
        assert y[0] == 0.0  # the zero atom stays at zero: the target has as many zeros
        assert np.all(np.diff(y) >= 0), c  # monotone despite the ties
        knots_x, knots_y = cal.knots[c]
        assert np.all(np.diff(knots_x) > 0) and np.all(np.diff(knots_y) >= 0)


def test_zero_atom_goes_to_mid_rank_and_map_stays_monotone():
    """Source with 50 % zeros, target with 10 %: the atom goes to the target's 25th percentile."""
    rng = np.random.default_rng(1)
    n = 20000
    source = table({c: zero_inflated(rng, n, 0.5) for c in AU_COLUMNS}, "mediapipe")
    target = table({c: zero_inflated(rng, n, 0.1) for c in AU_COLUMNS}, "openface")
    cal = fit_quantile_map(source, target, n_quantiles=51)
    t = target["AU01_r"].to_numpy()
    zero_to = cal.map_values("AU01_r", [0.0])[0]
    assert zero_to == pytest.approx(np.quantile(t, 0.25), abs=0.1)
    y = cal.map_values("AU01_r", np.linspace(0, 5, 501))
    assert np.all(np.diff(y) >= 0)
    # above the atom, mapped source quantiles match the target's
    mapped = cal.apply(source)["AU01_r"].to_numpy()
    for q in (0.6, 0.75, 0.9):
        assert np.quantile(mapped, q) == pytest.approx(np.quantile(t, q), abs=0.1)


def test_class_balanced_fit_ignores_label_mix():
    """Same per-class distributions on both sides, different class mix: a balanced map is ~identity."""
    rng = np.random.default_rng(2)

    def draw(n_happy, n_sad, source):
        values = {c: np.concatenate([rng.uniform(2, 5, n_happy), rng.uniform(0, 2, n_sad)]) for c in AU_COLUMNS}
        return table(values, source, labels=["happy"] * n_happy + ["sad"] * n_sad)

    source, target = draw(8000, 2000, "mediapipe"), draw(2000, 8000, "openface")
    x = np.linspace(0.5, 4.5, 9)
    balanced = fit_quantile_map(source, target, classes=("happy", "sad"))
    marginal = fit_quantile_map(source, target)
    assert np.abs(balanced.map_values("AU12_r", x) - x).max() < 0.1
    assert np.abs(marginal.map_values("AU12_r", x) - x).max() > 0.5
    assert balanced.info["class_balanced"] == ["happy", "sad"]


def test_save_load_round_trip(tmp_path, synthetic):
    source, _, cal = synthetic
    cal.info["command"] = "python bench/cross_backend.py --save-map x.json"
    path = cal.save(tmp_path / "sub" / "cal.json")
    raw = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, no pickle
    assert raw["format"] == "fer-au-calibration/1" and set(raw["au"]) == set(AU_COLUMNS)
    back = AUCalibration.load(path)
    assert (back.source, back.target, back.n_quantiles) == (cal.source, cal.target, cal.n_quantiles)
    assert back.info["command"] == cal.info["command"]
    for c in AU_COLUMNS:
        np.testing.assert_allclose(back.knots[c][0], cal.knots[c][0], atol=1e-5)
        np.testing.assert_allclose(back.knots[c][1], cal.knots[c][1], atol=1e-5)
    a, b = cal.apply(source.head(500)), back.apply(source.head(500))
    np.testing.assert_allclose(a[list(AU_COLUMNS)].to_numpy(), b[list(AU_COLUMNS)].to_numpy(), atol=1e-4)


def test_load_rejects_bad_files(tmp_path, synthetic):
    with pytest.raises(ModelFileError, match="not found"):
        AUCalibration.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFileError, match="AU calibration is not valid JSON"):
        AUCalibration.load(bad)
    d = synthetic[2].to_dict()
    d["au"]["AU04_r"]["y"] = d["au"]["AU04_r"]["y"][::-1]  # decreasing: not a monotone map
    bad.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="not an AU calibration file"):
        AUCalibration.load(bad)
    bad.write_text(json.dumps({"format": "fer-au-model/1"}))
    with pytest.raises(ModelFileError, match="not an AU calibration file"):
        AUCalibration.load(bad)


def test_apply_keeps_failed_faces_and_other_columns(synthetic):
    source, _, cal = synthetic
    frame = source.head(6).copy()
    frame.loc[[1, 4], list(AU_COLUMNS)] = np.nan
    frame.loc[[1, 4], "success"] = 0
    frame.loc[[1, 4], "reason"] = "no face found"
    frame.loc[2, "face"] = 1
    frame["extra"] = list("abcdef")
    before = frame.copy()
    out = cal.apply(frame)
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert list(out.columns) == list(frame.columns)
    unchanged = [c for c in frame.columns if c not in AU_COLUMNS and c != "source"]
    pd.testing.assert_frame_equal(out[unchanged], frame[unchanged])
    assert out.loc[[1, 4], list(AU_COLUMNS)].isna().all().all()
    ok = [0, 2, 3, 5]
    assert out.loc[ok, list(AU_COLUMNS)].notna().all().all()
    for c in AU_COLUMNS:
        np.testing.assert_allclose(out.loc[ok, c], cal.map_values(c, frame.loc[ok, c]))
    assert out.loc[ok, "source"].tolist() == ["mediapipe→openface"] * 4
    assert out.loc[[1, 4], "source"].tolist() == ["mediapipe"] * 2


def test_apply_refuses_tables_already_on_the_target_scale(synthetic):
    source, target, cal = synthetic
    once = cal.apply(source.head(10))
    with pytest.raises(AUTableError, match="already on the openface scale"):
        cal.apply(once)
    with pytest.raises(AUTableError, match="already on the openface scale"):
        cal.apply(target.head(10))
    assert cal.apply(target.head(10), check_source=False)["source"].iloc[0] == "openface→openface"


def test_tables_without_au_columns_raise(synthetic):
    source, target, cal = synthetic
    no_aus = source[[c for c in META_COLUMNS if c in source.columns]]
    some_aus = source.drop(columns=["AU12_r", "AU45_r"])
    for bad in (no_aus, some_aus):
        with pytest.raises(AUTableError, match="lacks AU columns"):
            cal.apply(bad)
        with pytest.raises(AUTableError, match="lacks AU columns"):
            fit_quantile_map(bad, target)
        with pytest.raises(AUTableError, match="lacks AU columns"):
            fit_quantile_map(source, bad)
        with pytest.raises(AUTableError, match="lacks AU columns"):
            scale_report(bad, target)
    failed = source.head(5).assign(success=0)
    with pytest.raises(AUTableError, match="no successful values"):
        fit_quantile_map(failed, target)


def test_scale_report_measures_the_shift():
    rng = np.random.default_rng(3)
    n = 4000
    labels = ["happy"] * (n // 2) + ["sad"] * (n // 2)
    base = {c: np.concatenate([rng.uniform(1, 3, n // 2), rng.uniform(0, 2, n // 2)]) for c in AU_COLUMNS}
    a = table(base, "mediapipe", labels)
    b = table({c: v + 1.0 for c, v in base.items()}, "openface", labels)
    rep = scale_report(a, b, classes=("happy", "sad"))
    assert list(rep.index) == list(AU_COLUMNS)
    for col in ("mean_a", "mean_b", "sd_a", "sd_b", "zero_a", "zero_b", "median_a", "median_b",
                "p90_a", "p90_b", "w1", "ks", "profile_r"):
        assert col in rep.columns
    assert rep["w1"].to_numpy() == pytest.approx(1.0, abs=1e-9)
    assert (rep["mean_b"] - rep["mean_a"]).to_numpy() == pytest.approx(1.0, abs=1e-9)
    assert rep["profile_r"].to_numpy() == pytest.approx(1.0)
    assert (rep["ks"] > 0.3).all()
    assert rep.attrs == {"a": "mediapipe", "b": "openface"}


def test_a_map_whose_source_and_target_share_a_name_is_applied_once(synthetic):
    """Two tables both from "csv" give a csv→csv map; its output was accepted again and mapped a
    second time (the scale shifted twice). Rows mapped before are refused whatever the names."""
    source, target, _ = synthetic
    cal = fit_quantile_map(source.assign(source="csv"), target.assign(source="csv"))
    assert cal.label == "csv→csv"
    once = cal.apply(source.head(10).assign(source="csv"))
    assert (once["source"] == "csv→csv").all()
    with pytest.raises(AUTableError, match="already on the csv scale"):
        cal.apply(once)


@pytest.mark.parametrize("edit, raw", [
    (lambda d: d.update(n_quantiles=float("inf")), False),  # int(inf): OverflowError escaped
    (lambda d: d["au"]["AU01_r"].update(x=["0", "1"]), False),  # text read as numbers
    (None, "[" * 100000 + "]" * 100000),  # RecursionError escaped
    # knots off the AU scale loaded and mapped silently: every AU to the first target knot, or to 5
    (lambda d: d["au"]["AU04_r"].update(x=[v * 1e300 for v in d["au"]["AU04_r"]["x"]]), False),
    (lambda d: d["au"]["AU12_r"].update(y=[v * 1e6 for v in d["au"]["AU12_r"]["y"]]), False),
    (lambda d: d["au"]["AU45_r"].update(x=[-50.0] + d["au"]["AU45_r"]["x"][1:]), False),
])
def test_damaged_calibration_files_are_one_line(tmp_path, synthetic, edit, raw):
    path = tmp_path / "cal.json"
    if raw:
        path.write_text(raw)
    else:
        d = json.loads(json.dumps(synthetic[2].to_dict()))
        edit(d)
        path.write_text(json.dumps(d).replace("Infinity", "1e999"))
    with pytest.raises(ModelFileError) as caught:
        AUCalibration.load(path)
    assert "fer_core.calibration." not in str(caught.value)  # the hint names the module that exists


def test_a_calibration_path_that_is_not_a_regular_file_is_not_read(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder, not a regular file"):
        AUCalibration.load(tmp_path)


@pytest.mark.parametrize("info, problem", [(None, None), ("missing", None), ({}, None),
                                           ("fitted today", "field 'info' is not an object"),
                                           ([["a", "b"]], "field 'info' is not an object")])
def test_info_is_notes_a_null_one_loads_and_a_wrong_one_is_named(tmp_path, synthetic, info, problem):
    """``info`` (when and how a map was fitted) is never used to map: ``"info": null`` refused the
    whole file as "not an AU calibration file"; now it loads as no notes (as an AU model's info
    does). Another type is still refused, naming the field rather than calling the file no calibration."""
    source, _, cal = synthetic
    d = json.loads(json.dumps(cal.to_dict()))
    if info == "missing":
        del d["info"]
    else:
        d["info"] = info
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(d))
    if problem is None:
        back = AUCalibration.load(path)
        assert back.info == {} and back.label == cal.label
        np.testing.assert_allclose(back.apply(source.head(20))["AU12_r"], cal.apply(source.head(20))["AU12_r"],
                                   atol=1e-4)
        return
    with pytest.raises(ModelFileError) as caught:
        AUCalibration.load(path)
    assert str(caught.value).startswith(f"{path}: {problem}") and "not an AU calibration file" not in str(caught.value)


def test_the_aus_try_it_cautions_on_are_those_whose_profiles_disagree_with_openface(study_table):
    """``LOW_PROFILE_AGREEMENT`` (Try it's "read with care") is what bench/cross_backend.py measures:
    the AUs whose mean per emotion on the bundled FER2013 train table correlates below 0.7 with the
    original study's OpenFace table, with that r."""
    from fer_core import au_table
    from fer_core.config import REPO_ROOT
    from fer_core.emotions import SIX_EMOTIONS
    from fer_core.measure.au_mapping import LOW_PROFILE_AGREEMENT

    embedded = au_table.to_xy(au_table.read(REPO_ROOT / "data" / "fer2013_train_au.csv.gz"), SIX_EMOTIONS)[2]
    openface = au_table.to_xy(au_table.read(study_table), SIX_EMOTIONS)[2]
    r = scale_report(embedded, openface, classes=SIX_EMOTIONS)["profile_r"]
    low = {column.split("_")[0]: round(float(value), 2) for column, value in r.items() if value < 0.7}
    assert low == LOW_PROFILE_AGREEMENT
