"""Per-AU quantile mapping between AU backends (e.g. embedded MediaPipe AUs -> OpenFace 2 scale).

The two backends put the same Action Unit on different 0–5 scales: one leaves half its faces at an
exact 0 where the other gives small positive values, one saturates earlier, and so on. A model
trained on one backend's AUs then sees shifted inputs on the other's. Quantile mapping sends each
value to the target backend's value at the same rank: ``y = Q_target(F_source(x))``, AU by AU.

Ties and exact zeros: a value shared by many source faces (typically 0) is an atom of the source
distribution. It is sent to the target quantile at its *mid-rank* (the middle of the probability
mass it holds), so an atom at 0 holding 45 % of the faces goes to ``Q_target(0.225)`` — 0 when the
target has at least that many zeros, a small positive value when it has fewer. The knots are the
distinct source quantiles with strictly increasing mid-ranks, and the target quantile function is
non-decreasing, so the piecewise-linear map is monotone (non-decreasing) by construction. Values
outside the fitted source range are clamped to the map's end points.

Fitting may weight each emotion equally on both sides (``classes=...``): the two tables then
contribute the same class mix, so a difference in label mix (e.g. more surprise faces in one) is
not mistaken for a difference of scale. Only the fitting uses labels; ``apply`` needs none.

Saved as JSON (never pickle): ``fer-au-calibration/1``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import au_table
from ..au_table import AU_COLUMNS
from ..errors import AUTableError, ModelFileError

FORMAT = "fer-au-calibration/1"
ARROW = "→"
AU_MIN, AU_MAX = 0.0, 5.0
MAX_CALIBRATION_BYTES = 4 * 2**20  # a map is ~30 KB (17 AUs x ~100 knots); reading stays far below that
LOAD_HINT = "pick a .json file saved by this workbench"


# -- helpers -----------------------------------------------------------------------------------
def _usable(table: pd.DataFrame, classes: Sequence[str] | None, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The table's usable rows (``au_table.usable``) and a weight per row.

    With ``classes`` each class gets the same total weight, so class mix does not shape the map.
    """
    au_table.require_columns(table, AU_COLUMNS, what)
    if classes is None:
        rows = au_table.usable(table)
        return rows, np.ones(len(rows))
    if "label" not in table.columns:
        raise AUTableError(f"{what} has no 'label' column; fit without classes or use a labelled table")
    rows = au_table.usable(table, classes)
    labels = rows["label"]
    absent = [c for c in classes if not (labels == c).any()]
    if absent:
        raise AUTableError(f"{what} has no successful rows of {', '.join(absent)}; "
                           f"choose emotions present in both tables")
    counts = labels.value_counts()
    weights = (1.0 / labels.map(counts)).to_numpy(dtype=float)
    return rows, weights


def _sorted_weighted(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(values)
    v, w = values[ok], weights[ok]
    order = np.argsort(v, kind="mergesort")
    return v[order], w[order]


def _quantile(v: np.ndarray, w: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted quantile function with mid-point plotting positions (Hazen for equal weights).

    Ties need no special care: a run of equal values spans a range of positions and gives that
    value for every ``p`` in it.
    """
    cw = np.cumsum(w)
    pos = (cw - w / 2) / cw[-1]
    return np.interp(p, pos, v)


def _mid_rank(v: np.ndarray, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weighted mid-rank of each ``x`` in the sorted sample ``v``: ``(W(<u) + W(<=u)) / 2 / W`` at
    each distinct sample value ``u``, linear in between (the inverse of ``_quantile`` away from
    ties; an atom gets the middle of its mass)."""
    uniq = np.unique(v)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    below = cw[np.searchsorted(v, uniq, side="left")]
    upto = cw[np.searchsorted(v, uniq, side="right")]
    return np.interp(x, uniq, (below + upto) / 2 / cw[-1])


def _fit_one(xs: np.ndarray, ws: np.ndarray, xt: np.ndarray, wt: np.ndarray,
             n_quantiles: int) -> tuple[np.ndarray, np.ndarray]:
    levels = np.linspace(0.0, 1.0, n_quantiles)
    knots = np.unique(_quantile(xs, ws, levels))
    knots = np.unique(np.concatenate([knots, [xs[0], xs[-1]]]))  # always span the data
    ranks = _mid_rank(xs, ws, knots)
    y = _quantile(xt, wt, ranks)
    return knots, np.maximum.accumulate(y)  # guard against rounding: monotone by construction


def _source_name(table: pd.DataFrame) -> str:
    if "source" not in table.columns:
        return "unknown"
    names = sorted({str(s) for s in table["source"].dropna() if str(s).strip()})
    return "+".join(names) if names else "unknown"


# -- the map -----------------------------------------------------------------------------------
@dataclass
class AUCalibration:
    """A fitted per-AU monotone map ``source`` backend -> ``target`` backend scale."""

    source: str
    target: str
    knots: dict[str, tuple[np.ndarray, np.ndarray]]  # AU column -> (source x, target y), x increasing
    n_quantiles: int = 101
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.source}{ARROW}{self.target}"

    def map_values(self, column: str, values) -> np.ndarray:
        """Map one AU's values; NaN stays NaN."""
        x, y = self.knots[column]
        values = np.asarray(values, dtype=np.float64)
        out = np.full(values.shape, np.nan)
        ok = np.isfinite(values)
        out[ok] = np.clip(np.interp(values[ok], x, y), AU_MIN, AU_MAX)
        return out

    def apply(self, table: pd.DataFrame, check_source: bool = True) -> pd.DataFrame:
        """A copy of ``table`` with its AU columns on the target scale and ``source`` suffixed.

        Failed faces (``success 0`` or NaN AUs) and every non-AU column stay as they were.
        ``check_source`` refuses tables that are already mapped (a source with ``→``: mapping twice
        shifts the scale again, even with a map whose source and target share a name) or already
        on the target scale.
        """
        au_table.require_columns(table)
        out = table.copy()
        ok = np.ones(len(out), dtype=bool)
        if "success" in out.columns:
            ok = (pd.to_numeric(out["success"], errors="coerce").fillna(0) > 0).to_numpy()
        if "source" in out.columns:
            src = out["source"].astype(object)
            names = src.where(src.notna(), "").astype(str).to_numpy()
            if check_source:
                # A row mapped before is refused whatever the names; a row merely named like the
                # target is refused only when the target is not also the source's name.
                done = sorted({s for s, k in zip(names, ok)
                               if k and (ARROW in s or (s == self.target and self.target != self.source))})
                if done:
                    raise AUTableError(f"table rows are already on the {self.target} scale (source {done[0]!r}); "
                                       f"apply the {self.label} calibration to {self.source} AU tables only")
        for c in AU_COLUMNS:
            values = pd.to_numeric(out[c], errors="coerce").to_numpy(dtype=np.float64)
            mapped = values.copy()
            mapped[ok] = self.map_values(c, values[ok])
            out[c] = mapped
        suffix = f"{ARROW}{self.target}"
        if "source" in out.columns:
            new = np.array([(s or self.source) + suffix if k else s for s, k in zip(names, ok)], dtype=object)
            out["source"] = pd.Series(new, index=out.index, dtype=object)
        else:
            out["source"] = np.where(ok, self.label, "")
        return out

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "source": self.source, "target": self.target, "n_quantiles": self.n_quantiles,
            "au": {c: {"x": [round(float(v), 5) for v in x], "y": [round(float(v), 5) for v in y]}
                   for c, (x, y) in self.knots.items()},
            "info": self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON, whole or not at all (``fileio``)."""
        from .. import fileio

        return fileio.atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def from_dict(cls, d: dict, name: str = "calibration") -> "AUCalibration":
        bad = ModelFileError(f"{name}: not an AU calibration file of this workbench ({FORMAT}); "
                             f"make one with fer_core.measure.calibration.fit_quantile_map")
        try:
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                raise ValueError
            knots = {}
            for c in AU_COLUMNS:
                x = _knot_values(d["au"][c]["x"])
                y = _knot_values(d["au"][c]["y"])
                if x.ndim != 1 or len(x) < 1 or x.shape != y.shape or not _on_au_scale(x) \
                        or not _on_au_scale(y) or np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
                    raise ValueError
                knots[c] = (x, y)
            n_quantiles = d.get("n_quantiles", 101)
            if isinstance(n_quantiles, bool) or not isinstance(n_quantiles, (int, float)) \
                    or not math.isfinite(n_quantiles) or not float(n_quantiles).is_integer() or n_quantiles < 2:
                raise ValueError  # 1e999 is read as infinity, which int() cannot take
            if not isinstance(d["source"], str) or not isinstance(d["target"], str):
                raise TypeError
        except (ValueError, KeyError, TypeError, OverflowError):
            raise bad from None
        # ``info`` is notes (when and how it was fitted), never read to map: missing or null is no
        # notes, as an AU model's info is; any other non-object is named, not the whole file refused
        # as if it were no calibration.
        info = d.get("info")
        if info is not None and not isinstance(info, dict):
            raise ModelFileError(f"{name}: field 'info' is not an object (the calibration's notes); "
                                 "make it null or {}, or fit the calibration again")
        return cls(source=d["source"], target=d["target"], knots=knots,
                   n_quantiles=int(n_quantiles), info=dict(info or {}))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "AUCalibration":
        """Read through ``safe_files`` (a regular file of a calibration's size, shallow UTF-8 JSON):
        a device, a huge file or JSON nested 100,000 deep is one line, not a hang or a crash."""
        from ..safe_files import read_json_file

        path = Path(path)
        d = read_json_file(path, MAX_CALIBRATION_BYTES, LOAD_HINT, what="AU calibration")
        return cls.from_dict(d, name=str(path))


def _on_au_scale(values: np.ndarray) -> bool:
    """Knots are AU values of usable rows (``au_table.AU_VALID_RANGE``): x knots of 1e300 would
    send every AU to the first target knot, y knots of 1e6 to the scale's top, silently."""
    lo, hi = au_table.AU_VALID_RANGE
    return bool(np.all(np.isfinite(values)) and np.all((values >= lo) & (values <= hi)))


def _knot_values(values) -> np.ndarray:
    """A list of JSON numbers as floats; text ("0.5") or true/false is not a knot."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values):
        raise TypeError
    return np.array(values, dtype=np.float64)  # OverflowError for an integer of hundreds of digits


def fit_quantile_map(source_table: pd.DataFrame, target_table: pd.DataFrame, n_quantiles: int = 101,
                     classes: Sequence[str] | None = None, source: str | None = None,
                     target: str | None = None, description: str = "") -> AUCalibration:
    """Per-AU quantile map from ``source_table``'s AU scale to ``target_table``'s.

    Uses successful first-face rows only (NaN values skipped per AU). With ``classes``, only rows
    labelled in them, each class weighted equally on both sides. ``source``/``target`` name the backends
    (default: the tables' ``source`` column).
    """
    if n_quantiles < 2:
        raise ValueError("n_quantiles must be at least 2")
    src_rows, src_w = _usable(source_table, classes, "source AU table")
    tgt_rows, tgt_w = _usable(target_table, classes, "target AU table")
    knots = {}
    counts = {}
    for c in AU_COLUMNS:
        xs, ws = _sorted_weighted(pd.to_numeric(src_rows[c], errors="coerce").to_numpy(float), src_w)
        xt, wt = _sorted_weighted(pd.to_numeric(tgt_rows[c], errors="coerce").to_numpy(float), tgt_w)
        if len(xs) == 0 or len(xt) == 0:
            side = "source" if len(xs) == 0 else "target"
            raise AUTableError(f"{side} AU table has no successful values of {c}; "
                               f"fit the calibration on tables with extracted AUs")
        knots[c] = _fit_one(xs, ws, xt, wt, n_quantiles)
        counts[c] = [int(len(xs)), int(len(xt))]
    info = {
        "fitted": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "description": description,
        "source_rows": int(len(src_rows)), "target_rows": int(len(tgt_rows)),
        "class_balanced": list(classes) if classes is not None else None,
        "method": "per-AU quantile mapping y = Q_target(midrank_source(x)), piecewise linear, clamped",
    }
    return AUCalibration(source=source or _source_name(src_rows), target=target or _source_name(tgt_rows),
                         knots=knots, n_quantiles=int(n_quantiles), info=info)


# -- how far apart are two backends? -----------------------------------------------------------
def scale_report(table_a: pd.DataFrame, table_b: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-AU summary of two AU tables' scales (successful rows; with ``classes`` only those labels).

    Columns ``<stat>_a`` / ``<stat>_b`` for mean, sd, zero (share of exact zeros), median, p90;
    ``w1`` the Wasserstein-1 distance (mean absolute shift between the two distributions, in AU
    units), ``ks`` the Kolmogorov–Smirnov statistic. When both tables carry labels (and
    ``classes`` is given), ``profile_r``: correlation across the classes of each AU's class means
    of within-table percentile ranks — whether the AU separates the emotions the same way on both
    backends, which no rescaling can change.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    rows_a, _ = _usable(table_a, classes, "first AU table")
    rows_b, _ = _usable(table_b, classes, "second AU table")
    out = []
    for c in AU_COLUMNS:
        a = pd.to_numeric(rows_a[c], errors="coerce").dropna().to_numpy(float)
        b = pd.to_numeric(rows_b[c], errors="coerce").dropna().to_numpy(float)
        rec: dict = {"au": c}
        for tag, v in (("a", a), ("b", b)):
            rec[f"mean_{tag}"] = float(v.mean()) if len(v) else math.nan
            rec[f"sd_{tag}"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            rec[f"zero_{tag}"] = float((v == 0).mean()) if len(v) else math.nan
            rec[f"median_{tag}"] = float(np.median(v)) if len(v) else math.nan
            rec[f"p90_{tag}"] = float(np.quantile(v, 0.9)) if len(v) else math.nan
        ok = len(a) and len(b)
        rec["w1"] = float(wasserstein_distance(a, b)) if ok else math.nan
        rec["ks"] = float(ks_2samp(a, b).statistic) if ok else math.nan
        if classes is not None:
            rec["profile_r"] = _profile_r(rows_a, rows_b, c, classes)
        out.append(rec)
    frame = pd.DataFrame(out).set_index("au")
    frame.attrs["a"] = _source_name(rows_a)
    frame.attrs["b"] = _source_name(rows_b)
    return frame


def _profile_r(rows_a: pd.DataFrame, rows_b: pd.DataFrame, column: str, classes: Sequence[str]) -> float:
    profiles = []
    for rows in (rows_a, rows_b):
        v = pd.to_numeric(rows[column], errors="coerce")
        ranks = v.rank(pct=True)
        labels = au_table.labels_of(rows)
        profiles.append(np.array([ranks[labels == k].mean() for k in classes], dtype=float))
    pa, pb = profiles
    if np.nanstd(pa) == 0 or np.nanstd(pb) == 0 or np.isnan(pa).any() or np.isnan(pb).any():
        return math.nan
    return float(np.corrcoef(pa, pb)[0, 1])
