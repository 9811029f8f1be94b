"""The AU table: one row per face, the 17 OpenFace intensity AUs and what is known of the face.

Every AU source (embedded MediaPipe, OpenFace CSVs, OpenFace in Docker) produces this schema,
so a model trained on one source's AUs can be scored on another's. This module owns the schema,
the normalisation every source ends with, reading and writing the project's own table files, and
the one rule for which rows a model may learn from or be scored on.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .emotions import OPENFACE_STUDY_CODES, SIX_EMOTIONS, normalize_emotion
from .errors import AUTableError, one_line

AU_CODES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
AU_COLUMNS: tuple[str, ...] = tuple(f"{code}_r" for code in AU_CODES)

AU_NAMES: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU45": "blink",
}

# Columns of an AU table besides the AUs; `reason` is empty when extraction succeeded; `masked` is
# 1 for a face measured under a (drawn) mask, whose hidden AUs are then empty: unknown, not zero.
META_COLUMNS: tuple[str, ...] = ("file", "face", "label", "success", "confidence", "source", "reason", "masked")
TABLE_COLUMNS: tuple[str, ...] = META_COLUMNS + AU_COLUMNS

PathOrBuffer = str | os.PathLike | IO[str] | IO[bytes]
_CODES_HINT = ", ".join(f"{k} {v}" for k, v in OPENFACE_STUDY_CODES.items())


def au_code(column: str) -> str:
    """'AU12_r' -> 'AU12'."""
    return column.strip().split("_")[0]


def au_label(column_or_code: str) -> str:
    """'AU12_r' -> 'AU12 lip corner puller', the form shown to people."""
    code = au_code(column_or_code)
    return f"{code} {AU_NAMES.get(code, '')}".strip()


# -- building tables ---------------------------------------------------------------------------
def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns in order with their types: how every source's table ends."""
    frame = frame.reindex(columns=list(TABLE_COLUMNS))
    frame["face"] = pd.to_numeric(frame["face"], errors="coerce").fillna(0).astype(int)
    frame["success"] = pd.to_numeric(frame["success"], errors="coerce").fillna(0).astype(int)
    frame["confidence"] = frame["confidence"].astype(float)
    frame["label"] = frame["label"].astype(object).where(frame["label"].notna(), None)
    frame["source"] = frame["source"].astype(object).where(frame["source"].notna(), "")
    frame["reason"] = frame["reason"].astype(object).where(frame["reason"].notna(), "")
    frame["masked"] = pd.to_numeric(frame["masked"], errors="coerce").fillna(0).astype(int)
    for c in AU_COLUMNS:
        frame[c] = frame[c].astype(float)
    return frame.reset_index(drop=True)


def from_rows(rows: Iterable[dict]) -> pd.DataFrame:
    """A table from row dicts (missing columns empty)."""
    return normalise(pd.DataFrame(list(rows), columns=list(TABLE_COLUMNS)))


def concat(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return from_rows([])
    return normalise(pd.concat(parts, ignore_index=True))


def failure_rows(files: Iterable[tuple[str, str | None]], reason: str, source: str) -> pd.DataFrame:
    """One failed row per (file, label): AUs empty, ``success 0`` and the one-line ``reason``."""
    return from_rows({"file": f, "face": 0, "label": lab, "success": 0, "confidence": np.nan,
                      "source": source, "reason": reason} for f, lab in files)


# -- reading and writing -----------------------------------------------------------------------
def display_name(src: PathOrBuffer) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return str(getattr(src, "name", None) or "uploaded CSV")


def read_csv_frame(src: PathOrBuffer, display: str | None = None) -> pd.DataFrame:
    """A CSV as a frame with stripped header names (OpenFace 2.0 writes ``", "`` separators)."""
    display = display or display_name(src)
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise AUTableError(f"{display}: file not found; pick an existing CSV")
    if hasattr(src, "seek"):
        try:
            src.seek(0)
        except (OSError, ValueError):
            pass
    try:
        frame = pd.read_csv(src, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise AUTableError(f"{display}: file is empty; pick a CSV written by OpenFace") from None
    except UnicodeDecodeError:
        raise AUTableError(f"{display}: not a text CSV; pick a CSV written by OpenFace") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise AUTableError(f"{display}: not a readable CSV ({one_line(exc, 120)}); "
                           f"check the file is OpenFace output") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def is_project_table(frame: pd.DataFrame) -> bool:
    """This project's own table (``file`` plus ``success`` or ``source``)."""
    return "file" in frame.columns and ("success" in frame.columns or "source" in frame.columns)


def read(path_or_buffer: PathOrBuffer) -> pd.DataFrame:
    """Any AU table this project meets: its own format, or OpenFace output (per-image CSVs,
    FeatureExtraction, or a merged labelled table such as the original study's), by content."""
    display = display_name(path_or_buffer)
    frame = read_csv_frame(path_or_buffer, display)
    if is_project_table(frame):
        return from_project_frame(frame, display)
    from .measure.openface_csv import table_from_openface_frame

    return table_from_openface_frame(frame, display)


def from_project_frame(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """Validate a frame in the project's format and return it normalised."""
    aus = au_values(frame, display)
    n = len(frame)
    out = pd.DataFrame({"file": frame["file"].astype(str).to_numpy()})
    out["face"] = frame["face"].to_numpy() if "face" in frame.columns else 0
    out["label"] = parse_labels(frame["label"], display, "label") if "label" in frame.columns else [None] * n
    out["success"] = (frame["success"].to_numpy() if "success" in frame.columns
                      else aus.notna().all(axis=1).astype(int).to_numpy())
    out["confidence"] = (pd.to_numeric(frame["confidence"], errors="coerce").to_numpy(dtype=float)
                         if "confidence" in frame.columns else np.nan)
    out["source"] = frame["source"].fillna("").astype(str).to_numpy() if "source" in frame.columns else "csv"
    out["reason"] = frame["reason"].fillna("").astype(str).to_numpy() if "reason" in frame.columns else ""
    out["masked"] = frame["masked"].to_numpy() if "masked" in frame.columns else 0
    return normalise(pd.concat([out, aus.reset_index(drop=True)], axis=1))


def write(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a table as CSV (``.csv.gz`` compresses), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    normalise(table).to_csv(path, index=False)
    return path


def au_values(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """The 17 AU_r columns as floats; missing or non-numeric columns raise AUTableError."""
    missing = [c for c in AU_COLUMNS if c not in frame.columns]
    if missing:
        what = "all 17 AU intensity columns" if len(missing) == len(AU_COLUMNS) else f"{len(missing)} AU columns"
        raise AUTableError(f"{display}: missing {what} ({', '.join(missing)}); "
                           f"use OpenFace output with AU intensities (-aus) or a table with AU01_r … AU45_r")
    out = pd.DataFrame(index=frame.index)
    for c in AU_COLUMNS:
        col = frame[c]
        values = pd.to_numeric(col, errors="coerce")
        bad = values.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            raise AUTableError(f"{display}: column {c} has non-numeric values such as "
                               f"{str(col[bad].iloc[0])[:30]!r}; fix or remove those rows")
        out[c] = values.astype(float)
    return out


def parse_labels(values: pd.Series, display: str, column: str) -> list[str | None]:
    """Emotion names from names/aliases or the study's codes 0..5; unknown values raise."""
    out: list[str | None] = []
    unknown: list[str] = []
    cache: dict[object, str | None] = {}
    for v in values:
        key = (type(v), v) if not (isinstance(v, float) and math.isnan(v)) else "nan"
        if key not in cache:
            cache[key] = _label_value(v)
            if cache[key] == "?":
                unknown.append(repr(v.item() if hasattr(v, "item") else v))
        out.append(cache[key])
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise AUTableError(f"{display}: unknown labels {shown} in column {column!r}; "
                           f"use emotion names ({', '.join(SIX_EMOTIONS)}) or the study's codes ({_CODES_HINT})")
    return out


def _label_value(v) -> str | None:
    """'?' marks an unknown value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return "?"
    if isinstance(v, (int, np.integer, float, np.floating)):
        return OPENFACE_STUDY_CODES.get(int(v), "?") if float(v).is_integer() else "?"
    text = str(v).strip()
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return OPENFACE_STUDY_CODES.get(int(float(text)), "?")
    return normalize_emotion(text) or "?"


# -- which rows count ------------------------------------------------------------------------
def require_columns(table: pd.DataFrame, columns: Sequence[str] = AU_COLUMNS, what: str = "AU table") -> None:
    if not isinstance(table, pd.DataFrame):
        raise AUTableError(f"{what} is not a table; pass an AU table with AU01_r … AU45_r")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        kind = "AU columns" if all(c in AU_COLUMNS for c in missing) else "columns"
        raise AUTableError(f"{what} lacks {kind} {', '.join(missing)}; extract or import AUs first")


def measured(table: pd.DataFrame, columns: Sequence[str] = AU_COLUMNS) -> pd.Series:
    """Per row: a face was measured (``success``) and every AU in ``columns`` has a value."""
    ok = table[list(columns)].notna().all(axis=1)
    if "success" in table.columns:
        ok &= pd.to_numeric(table["success"], errors="coerce").fillna(0) > 0
    return ok


def first_faces(table: pd.DataFrame) -> pd.DataFrame:
    """One row per image: its first (largest) face, or its failure row."""
    rows = table
    if "face" in rows.columns:
        rows = rows[pd.to_numeric(rows["face"], errors="coerce").fillna(0).astype(int) == 0]
    if "file" in rows.columns:
        rows = rows.drop_duplicates("file")
    return rows


def labels_of(table: pd.DataFrame) -> pd.Series:
    """Labels as this project names emotions (aliases mapped), None where unlabelled."""
    if "label" not in table.columns:
        return pd.Series([None] * len(table), index=table.index, dtype=object)
    return table["label"].map(lambda v: normalize_emotion(v) if isinstance(v, str) else None)


def usable(table: pd.DataFrame, classes: Sequence[str] | None = None,
           columns: Sequence[str] = AU_COLUMNS) -> pd.DataFrame:
    """The rows a model learns from and a chart shows: first faces that were measured, and with
    ``classes`` those labelled with one of them (labels normalised)."""
    require_columns(table, columns)
    rows = first_faces(table)
    rows = rows[measured(rows, columns)]
    if classes is not None:
        labels = labels_of(rows)
        keep = labels.isin(list(classes))
        rows = rows[keep].assign(label=labels[keep])
    return rows


def scored_rows(table: pd.DataFrame, classes: Sequence[str], columns: Sequence[str] = AU_COLUMNS,
                ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The rows a model is scored on: the first face of every image labelled with one of
    ``classes``, measured or not; ``X`` has NaN rows where no face was measured (counted wrong),
    and single NaN values where an AU is unknown (hidden by a mask; the model copes).
    Returns (rows, X, labels)."""
    require_columns(table, columns)
    if "label" not in table.columns:
        raise AUTableError("AU table has no 'label' column; evaluation needs a labelled table")
    rows = first_faces(table)
    labels = labels_of(rows)
    keep = labels.isin(list(classes))
    rows, labels = rows[keep], labels[keep]
    if rows.empty:
        raise AUTableError(f"AU table has no rows labelled {', '.join(classes)}")
    X = rows[list(columns)].to_numpy(dtype=float)
    face = rows[list(columns)].notna().any(axis=1)  # a masked face keeps its visible AUs
    if "success" in rows.columns:
        face &= pd.to_numeric(rows["success"], errors="coerce").fillna(0) > 0
    X[~face.to_numpy()] = np.nan
    return rows, X, labels.tolist()


def to_xy(table: pd.DataFrame, classes: Sequence[str], columns: Sequence[str] = AU_COLUMNS,
          ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Training data: ``X`` (n, len(columns)) of usable rows, ``y`` indices into ``classes``, and
    the rows themselves. Raises AUTableError naming what is missing."""
    require_columns(table, columns)
    if "label" not in table.columns:
        raise AUTableError("AU table has no 'label' column; training needs a labelled table")
    rows = usable(table, classes, columns)
    if rows.empty:
        raise AUTableError(f"AU table has no usable rows labelled {', '.join(classes)}")
    y = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    absent = [c for i, c in enumerate(classes) if not (y == i).any()]
    if absent:
        raise AUTableError(f"AU table has no usable rows of {', '.join(absent)}; choose emotions present in the table")
    return rows[list(columns)].to_numpy(dtype=np.float64), y, rows
