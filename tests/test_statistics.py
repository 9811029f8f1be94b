"""The pairwise McNemar table of Compare (page, CSV, report): which model the verdict names, the
Holm correction across pairs, and p-values too small for four decimals."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from fer_core.evaluation.compare import Comparison
from fer_core.figures.compare import csv_bytes, mcnemar_frame, shown_table
from fer_core.i18n import using_language


def _comparison(answers: dict[str, list[str]], labels: list[str]) -> Comparison:
    table = pd.DataFrame({"file": [f"f{i}.png" for i in range(len(labels))], "label": labels, **answers})
    return Comparison.from_table(table, list(answers), ["happy", "sad"])


def test_the_verdict_names_the_model_right_on_more_of_the_disputed_images():
    """Over 100,001 images A is right on 8 images B gets wrong and B on none: both accuracies round
    to 0.5, and the verdict used to name B, the worse model."""
    n = 100_001
    a = np.array(["sad"] * n, dtype=object)
    b = a.copy()
    a[:50_004] = "happy"
    b[:49_996] = "happy"
    comparison = _comparison({"A": a, "B": b}, ["happy"] * n)
    assert comparison.reports["A"].accuracy == comparison.reports["B"].accuracy == 0.5
    row = mcnemar_frame(comparison).iloc[0]
    assert (row["only A right"], row["only B right"]) == (8, 0) and row["p-value"] < 0.05
    assert row["verdict"] == "A is better"


def test_the_verdict_reads_holm_adjusted_p_values_when_several_pairs_are_tested():
    """Three models, three tests: A beats B and C beats B at p = 0.021 each, significant alone but
    not once the three tests are accounted for (Holm: 3 x 0.021 = 0.064); two models, one test:
    nothing to adjust, and the same difference is called."""
    labels = ["happy"] * 20
    a = ["happy"] * 10 + ["sad"] * 10  # right on images 0-9
    b = ["sad"] * 9 + ["happy"] * 2 + ["sad"] * 9  # right on 9 and 10: only-A 9, only-B 1
    three = mcnemar_frame(_comparison({"A": a, "B": b, "C": list(a)}, labels))
    assert list(three.columns) == ["model A", "model B", "only A right", "only B right", "p-value", "p (Holm)",
                                   "verdict"]
    assert list(three["p-value"]) == pytest.approx([2 * 11 / 1024, 1.0, 2 * 11 / 1024])  # A-B, A-C, B-C
    assert list(three["p (Holm)"]) == pytest.approx([3 * 2 * 11 / 1024, 1.0, 3 * 2 * 11 / 1024])
    assert set(three["verdict"]) == {"no significant difference"}
    two = mcnemar_frame(_comparison({"A": a, "B": b}, labels))
    assert two.loc[0, "p (Holm)"] == pytest.approx(2 * 11 / 1024) and two.loc[0, "verdict"] == "A is better"
    with using_language("ko"):  # the report's Korean table
        shown = shown_table(mcnemar_frame(_comparison({"A": a, "B": b}, labels)))
    assert "Holm 보정 p" in shown.columns and shown.iloc[0]["α = 0.05에서 (Holm 보정)"] == "A이(가) 더 나음"


def test_a_p_value_below_four_decimals_is_shown_as_such_and_kept_in_the_csv():
    """40 images only A gets right: p = 1.8e-12, which read 0.0000 in the report and 0.0 in the CSV."""
    comparison = _comparison({"A": ["happy"] * 40, "B": ["sad"] * 40}, ["happy"] * 40)
    frame = mcnemar_frame(comparison)
    shown = shown_table(frame)
    assert shown.loc[0, "p-value"] == "< 0.0001" and shown.loc[0, "p (Holm)"] == "< 0.0001"
    assert shown_table(mcnemar_frame(_comparison({"A": ["happy"] * 3, "B": ["sad"] * 3}, ["happy"] * 3))
                       ).loc[0, "p-value"] == "0.2500"
    parsed = pd.read_csv(io.BytesIO(csv_bytes(frame)))
    assert parsed.loc[0, "p-value"] > 0 and parsed.loc[0, "p-value"] == pytest.approx(2 * 0.5**40, rel=1e-6)
