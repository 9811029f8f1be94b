"""How well two AU sources agree on the same faces: this workbench's extractor against OpenFace
(``extract`` and ``import-openface --images`` of one image folder), or two settings of one. The
tables are joined by file (first faces measured in both; a name without its image ending matches
one with it), then each AU gets Pearson's and Spearman's r, the two means and the mean absolute
difference. ``bench/cross_backend.py`` compares distributions on different images; this compares
the same faces.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from scipy import stats

from .. import au_table
from ..au_table import AU_COLUMNS
from ..errors import AUTableError
from ..images import IMAGE_SUFFIXES

MIN_SHARED_FACES = 3  # fewer give no correlation worth a number


def _face_key(file: str) -> str:
    """A file name without an image ending: OpenFace's CSVs are named after the image's stem."""
    path = PurePosixPath(str(file).replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_SUFFIXES else str(path)


def _first_faces(table: pd.DataFrame) -> pd.DataFrame:
    au_table.require_columns(table, ("file", *AU_COLUMNS), what=au_table.table_name(table))
    faces = table.loc[au_table.found_first_faces(table), ["file", *AU_COLUMNS]].copy()
    faces["key"] = faces["file"].astype(str).map(_face_key)
    return faces.drop_duplicates("key")


def _with_several_faces(table: pd.DataFrame) -> set[str]:
    """The files (by ``_face_key``) with a picture (an image, a video's frame) of more than one
    measured face."""
    found = table.loc[au_table.face_found(table)]
    times = found["time_s"] if "time_s" in found.columns else pd.Series(np.nan, index=found.index)
    pictures = pd.DataFrame({"key": found["file"].astype(str).map(_face_key), "time": times.fillna(-1.0)})
    counts = pictures.value_counts()
    return {key for key, _ in counts.index[counts.to_numpy() > 1]}


def au_agreement(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per AU: ``n`` faces measured in both, ``pearson_r``, ``spearman_r``, ``mean_a``, ``mean_b``
    and ``mean_abs_diff`` (NaN where an AU is constant or lacking in either). A one-line error when
    the tables share fewer than ``MIN_SHARED_FACES`` faces. ``attrs["several_faces"]``: how many
    of the joined pictures hold several faces in either table, of which only the first is
    compared (extract's largest, OpenFace's first listed: not always the same person)."""
    joined = _first_faces(a).merge(_first_faces(b), on="key", suffixes=("_a", "_b"))
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
    out.attrs["several_faces"] = len(set(joined["key"]) & (_with_several_faces(a) | _with_several_faces(b)))
    return out
