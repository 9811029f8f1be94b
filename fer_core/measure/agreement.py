"""How well two AU sources agree on the same faces: this workbench's extractor against OpenFace
(``extract`` and ``import-openface --images`` of one image folder), or two settings of one. The
tables are joined by file (a name without its image ending matches one with it; a group photo's
faces paired by box where both tables have boxes, else its first faces), then each AU gets Pearson's and Spearman's r, the two means and the mean absolute
difference. ``bench/cross_backend.py`` compares distributions on different images; this compares
the same faces.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import linear_sum_assignment

from .. import au_table
from ..au_table import AU_COLUMNS, BOX_COLUMNS
from ..errors import AUTableError
from ..images import IMAGE_SUFFIXES

MIN_SHARED_FACES = 3  # fewer give no correlation worth a number
# Two tables' boxes of one face overlap at least this much (intersection over union): OpenFace's box
# of its 68 landmarks stops at the brows, this workbench's mesh box at the hairline
MIN_BOX_OVERLAP = 0.3


def _face_key(file: str) -> str:
    """A file name without an image ending: OpenFace's CSVs are named after the image's stem."""
    path = PurePosixPath(str(file).replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_SUFFIXES else str(path)


def _found_faces(table: pd.DataFrame) -> pd.DataFrame:
    """Every face found in each file's first picture (a video's first frame with a face), keyed by
    ``_face_key``, lowest face number first (the picture's first face), with its box where known."""
    au_table.require_columns(table, ("file", *AU_COLUMNS), what=au_table.table_name(table))
    found = table.loc[au_table.face_found(table)]
    missing = pd.Series(np.nan, index=found.index)
    faces = pd.DataFrame({"key": found["file"].astype(str).map(_face_key), "file": found["file"].astype(str),
                          "time": found.get("time_s", missing).fillna(-1.0),
                          "face": pd.to_numeric(found.get("face", missing), errors="coerce").fillna(0),
                          **{c: pd.to_numeric(found.get(c, missing), errors="coerce") for c in BOX_COLUMNS},
                          **{c: found[c] for c in AU_COLUMNS}})
    # a.jpg and a.png share the key OpenFace's a.csv is matched by: the first file keeps it (they
    # were paired by box as two faces of one picture); ``attrs["same_name"]`` counts such keys
    first = faces.groupby("key", sort=False)
    same_name = int((first["file"].nunique() > 1).sum())
    # the first by name, not by row: two tables listing a.png and a.jpg in other orders keep the same one
    faces = faces[faces["file"].eq(first["file"].transform("min"))]
    faces = faces[faces["time"].eq(faces.groupby("key", sort=False)["time"].transform("first"))]
    faces = faces.sort_values(["key", "face"], kind="stable").reset_index(drop=True)
    faces.attrs["same_name"] = same_name
    return faces


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (n x 4: x, y, w, h) with every box of ``b``."""
    ax0, ay0, aw, ah = (a[:, [i]] for i in range(4))
    bx0, by0, bw, bh = b.T
    w = np.clip(np.minimum(ax0 + aw, bx0 + bw) - np.maximum(ax0, bx0), 0, None)
    h = np.clip(np.minimum(ay0 + ah, by0 + bh) - np.maximum(ay0, by0), 0, None)
    inter = w * h
    union = aw * ah + bw * bh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _paired_faces(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The faces of ``a`` and ``b`` taken for the same (columns ``<AU>_a``, ``<AU>_b``), and counts
    of how pictures with several faces were paired. A picture's faces are paired by their boxes'
    overlap (the most overlap in all, at least ``MIN_BOX_OVERLAP``) where both tables box every
    face of it; else, and in pictures of one face in both, the first faces are compared (extract's
    largest, OpenFace's first listed: in a group photo not always the same person)."""
    fa, fb = _found_faces(a), _found_faces(b)
    same_name = max(fa.attrs["same_name"], fb.attrs["same_name"])  # one pair of names, in either table or both
    fa, fb = fa[fa["key"].isin(set(fb["key"]))], fb[fb["key"].isin(set(fa["key"]))]
    several = set(fa.loc[fa["key"].duplicated(), "key"]) | set(fb.loc[fb["key"].duplicated(), "key"])
    unboxed = (set(fa.loc[fa[list(BOX_COLUMNS)].isna().any(axis=1), "key"])
               | set(fb.loc[fb[list(BOX_COLUMNS)].isna().any(axis=1), "key"]))
    by_box = several - unboxed
    pairs = [fa[~fa["key"].isin(by_box)].drop_duplicates("key").merge(
        fb[~fb["key"].isin(by_box)].drop_duplicates("key"), on="key", suffixes=("_a", "_b"))]
    paired = 0
    groups_b = dict(tuple(fb[fb["key"].isin(by_box)].groupby("key", sort=False)))
    for key, ga in fa[fa["key"].isin(by_box)].groupby("key", sort=False):
        gb = groups_b[key]
        overlap = _overlaps(ga[list(BOX_COLUMNS)].to_numpy(float), gb[list(BOX_COLUMNS)].to_numpy(float))
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        kept = overlap[rows, cols] >= MIN_BOX_OVERLAP
        rows, cols = rows[kept], cols[kept]
        paired += len(rows)
        pairs.append(ga.iloc[rows].reset_index(drop=True).merge(
            gb.iloc[cols].reset_index(drop=True), left_index=True, right_index=True, suffixes=("_a", "_b")))
    counts = {"several_faces": len(several & unboxed), "paired_by_box": len(by_box), "faces_paired_by_box": paired,
              "faces_unpaired": int(fa["key"].isin(by_box).sum() + fb["key"].isin(by_box).sum() - 2 * paired),
              "same_name": same_name}
    return pd.concat(pairs, ignore_index=True), counts


def au_agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per AU: ``n`` faces measured in both, ``pearson_r``, ``spearman_r``, ``mean_a``, ``mean_b``
    and ``mean_abs_diff`` (NaN where an AU is constant or lacking in either). A one-line error when
    the tables share fewer than ``MIN_SHARED_FACES`` faces. Pictures of several faces are paired
    by box where both tables have boxes (``_paired_faces``); ``attrs``: ``several_faces``, how
    many of them compare only their first faces (a table without boxes, as OpenFace's without
    its landmarks); ``paired_by_box``, how many were paired by box, ``faces_paired_by_box`` and
    ``faces_unpaired`` (a face whose box overlaps none of the other table's)."""
    joined, counts = _paired_faces(a, b)
    if len(joined) < MIN_SHARED_FACES:
        raise AUTableError(f"{au_table.table_name(a)} and {au_table.table_name(b)} share {len(joined)} measured "
                           "faces by file name; give tables of the same images (extract DIR and "
                           "import-openface OUT_DIR --images DIR)")
    rows = []
    for c in AU_COLUMNS:
        x = pd.to_numeric(joined[f"{c}_a"], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(joined[f"{c}_b"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        varied = len(x) >= MIN_SHARED_FACES and np.ptp(x) > 0 and np.ptp(y) > 0
        rows.append({"au": au_table.au_code(c), "n": int(ok.sum()),
                     "pearson_r": float(stats.pearsonr(x, y)[0]) if varied else np.nan,
                     "spearman_r": float(stats.spearmanr(x, y)[0]) if varied else np.nan,
                     "mean_a": float(x.mean()) if len(x) else np.nan, "mean_b": float(y.mean()) if len(y) else np.nan,
                     "mean_abs_diff": float(np.abs(x - y).mean()) if len(x) else np.nan})
    out = pd.DataFrame(rows)
    out.attrs.update(counts)
    return out
