"""OpenFace 2 as an AU source: import the CSVs it writes into the project's AU table.

Every function returns ``au_table`` rows with ``source = "openface"``, so a model trained on
OpenFace AUs can be scored on embedded AUs and vice versa.

What OpenFace 2 writes (``lib/local/Utilities/src/RecorderCSV.cpp``):

- ``FaceLandmarkImg`` (one CSV per image, named ``<image stem>.csv``): ``face, confidence``, then
  optional gaze / pose / landmark / shape columns, then ``AU01_r … AU45_r`` and ``AU01_c … AU45_c``.
  One row per detected face; an image without a face gets a header-only CSV or none at all.
  It has no ``success`` column (a row means a face was found); one is honoured if present.
- ``FeatureExtraction`` (sequences): ``frame, [face_id,] timestamp, confidence, success, …``; frames
  where tracking failed have ``success 0`` and AU values of 0, which are not measurements.
- OpenFace 2.0 separates fields with ``", "``; 2.2 with ``","``. Both are read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import au_table
from ..emotions import emotion_from_filename, normalize_emotion
from ..errors import DatasetError, FerError, one_line, printable
from ..images import LabeledImage, list_images, relative_file

SOURCE = "openface"
NO_FACE = "OpenFace found no face"
BAD_SUCCESS = "OpenFace's success value is not 0 or 1"


def read_openface_csv(path_or_buffer: au_table.PathOrBuffer, name: str | None = None,
                      label: str | None = None) -> pd.DataFrame:
    """AU table of one OpenFace per-image CSV (``FaceLandmarkImg`` or ``FeatureExtraction``).

    ``file`` is ``name`` when given (the image the CSV belongs to), else the CSV's stem, which is
    the image's stem because OpenFace names its CSV after the image. Several faces give several
    rows; failed detections (``success 0``) and header-only CSVs give rows with NaN AUs and the
    reason "OpenFace found no face".
    """
    display = au_table.display_name(path_or_buffer)
    frame, text_rows = au_table.read_frame(path_or_buffer, display)
    file = name if name is not None else _stem(display)
    return au_table.mark_text_rows(_from_openface(frame, display, file, _clean_label(label)), text_rows)


def table_from_openface_frame(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """A frame read from an OpenFace CSV: per-image / sequence output (``face`` or ``frame`` with
    ``confidence``), or a merged labelled table like the study's ``emotion.csv`` (17 AU_r columns
    and optionally a ``label``/``emotion`` column of names or the study's codes 0..5), whose rows
    get ``file = "<csv name>#<data row number, from 1>"`` unless it has a ``file`` column."""
    cols = set(frame.columns)
    if ("face" in cols or "frame" in cols or "face_id" in cols) and "confidence" in cols:
        return _from_openface(frame, display, _stem(display), None)
    return _from_merged(frame, display)


def import_openface_dir(folder: str | os.PathLike[str],
                        labels_from: str | os.PathLike[str] | Sequence[LabeledImage] | None = None,
                        skip: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """AU table of an OpenFace ``-out_dir``: one CSV per image, possibly in emotion subfolders.

    ``labels_from`` (the image folder OpenFace read, or its ``LabeledImage`` list) maps each CSV to
    its image by stem, giving ``file`` the image path (relative to that folder, as ``extract``
    names it, so the two tables join) and its label; images without a CSV become failure rows. Without it, labels come from the CSV's emotion subfolder or an emotion-prefixed
    stem (``angry001``). Non-CSV files are skipped; a bad CSV becomes a failure row, never an
    exception, so the batch is kept. ``skip``: a file not to read (the output of an earlier import
    written into the same folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; pick the folder OpenFace wrote with -out_dir")
    skipped = Path(skip).resolve() if skip is not None else None
    csvs = sorted(p for p in folder.rglob("*")  # HAPPY004.CSV too: endings are not case-sensitive here
                  if p.suffix.lower() == ".csv" and p.is_file() and p.resolve() != skipped
                  and not any(part.endswith("_aligned") or part.startswith(".")
                              for part in p.relative_to(folder).parts))
    images: list[LabeledImage] = []
    root = labels_from if isinstance(labels_from, (str, os.PathLike)) else None
    if labels_from is not None:
        images = list_images(labels_from) if root is not None else list(labels_from)

    def named(image: LabeledImage) -> str:  # as extract names it, relative to the images' folder
        return relative_file(image.path, root)

    by_dir_stem = {(it.path.parent.name.lower(), it.path.stem): it for it in images}
    stems: dict[str, list[LabeledImage]] = {}
    for it in images:
        stems.setdefault(it.path.stem, []).append(it)

    parts: list[pd.DataFrame] = []
    matched: set[Path] = set()
    for csv in csvs:
        rel = csv.relative_to(folder)
        image = by_dir_stem.get((csv.parent.name.lower(), csv.stem))
        if image is None and len(stems.get(csv.stem, [])) == 1:
            image = stems[csv.stem][0]
        if image is not None:
            matched.add(image.path)
            file, label = named(image), image.label or label_from_path(rel)
        else:
            file, label = rel.with_suffix("").as_posix(), label_from_path(rel)
        try:
            parts.append(read_openface_csv(csv, name=file, label=label))
        except FerError as exc:
            parts.append(failure_rows([(file, label)], one_line(exc)))
    if not csvs and not images:
        raise DatasetError(f"{folder}: no OpenFace CSVs found; pick the folder OpenFace wrote with -out_dir")
    missing = [(named(it), it.label) for it in images if it.path not in matched]
    if missing:
        parts.append(failure_rows(missing, "OpenFace wrote no CSV for this image (no face found or not processed)"))
    return au_table.concat(parts)


def import_openface_uploads(files: Sequence[tuple[str, bytes]]) -> pd.DataFrame:
    """AU table of uploaded files (name, bytes): OpenFace per-image CSVs, read together as a
    folder of them, and zips of the folder OpenFace wrote (``-out_dir``), each read as
    ``import_openface_dir`` reads it (labels from emotion folders or emotion-prefixed names)."""
    import tempfile

    from ..images import unpack_zip

    with tempfile.TemporaryDirectory(prefix="fer_openface_") as tmp:
        loose, parts = Path(tmp, "files"), []
        loose.mkdir()
        for k, (name, data) in enumerate(files):
            if name.lower().endswith(".zip"):
                root = unpack_zip(data, Path(tmp, f"zip{k}"), {".csv"},
                                  f"{name}: the zip holds no CSV files; zip the folder OpenFace wrote (-out_dir)",
                                  f"{name}: the zip is too large to unpack; run python -m fer_core import-openface "
                                  "on the folder instead")
                parts.append(import_openface_dir(root))
            elif Path(name).name and not Path(name).name.startswith("."):  # the name only: no path to follow
                (loose / Path(name).name).write_bytes(data)
        if any(loose.iterdir()):
            parts.append(import_openface_dir(loose))
        return au_table.concat(parts)


def failure_rows(files: Iterable[tuple[str, str | None]], reason: str) -> pd.DataFrame:
    """One failed OpenFace row per (file, label)."""
    return au_table.failure_rows(files, reason, SOURCE)


# -- parsing helpers ---------------------------------------------------------------------------
def _stem(display: str) -> str:
    return Path(display).stem if display else "table"


def _clean_label(label) -> str | None:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return None
    return normalize_emotion(label) or str(label)


def _from_openface(frame: pd.DataFrame, display: str, file: str, label: str | None) -> pd.DataFrame:
    aus = au_table.au_values(frame, display)
    file = printable(file)
    if frame.empty:
        return failure_rows([(file, label)], NO_FACE)
    n = len(frame)
    success, bad = _success_flags(frame)
    face_col = "face" if "face" in frame.columns else "face_id" if "face_id" in frame.columns else None
    faces = au_table.whole_numbers(frame[face_col]) if face_col else np.zeros(n, dtype=np.int64)
    files = [file] * n
    times = np.full(n, np.nan)
    if "frame" in frame.columns and frame["frame"].nunique() > 1:
        files = [f"{file}#{_frame_id(v)}" for v in frame["frame"]]
        if "timestamp" in frame.columns:  # FeatureExtraction's seconds into the video, as our time_s
            times = pd.to_numeric(frame["timestamp"], errors="coerce").round(3).to_numpy(dtype=float)
    elif "file" not in frame.columns and "video" not in frame.columns and (faces == 0).sum() > 1:
        # face 0 again: not one image's faces but a merged table of many images, each starting at
        # its face 0 (read as one image, all but its first row were left out as later faces)
        images = np.maximum(np.cumsum(faces == 0), 1)
        files = [f"{file}#{k}" for k in images]
    named = next((c for c in ("file", "video") if c in frame.columns), None)
    if named:  # a table of many images or videos (not one OpenFace CSV): their own names
        untimed = "frame" in frame.columns and np.isnan(times).all()  # the frame tells a video's rows apart
        suffixes = [f"#{_frame_id(k)}" for k in frame["frame"]] if untimed else [""] * n
        files = [printable(str(v)) + suffix if isinstance(v, str) and v.strip() else f
                 for v, f, suffix in zip(frame[named], files, suffixes)]
    labels = [label] * n
    column = next((c for c in ("label", "emotion") if c in frame.columns), None)
    if column == "emotion" and au_table.holds_answers(frame):  # a model's answers (Try it, predict), not labels
        column = None
    if label is None and column is not None:  # names or aliases; numbers only in a table like the study's
        labels = list(au_table.parse_labels(frame[column], display, column, study_codes=False))
    conf = (pd.to_numeric(frame["confidence"], errors="coerce").to_numpy(dtype=float)
            if "confidence" in frame.columns else np.full(n, np.nan))
    aus.loc[success == 0, :] = np.nan  # OpenFace writes 0 for failed frames: not a measurement
    # OpenFace writes every AU of a face it found: a row lacking some was cut short (a file copied
    # while being written), not a face to score as one lacking AUs (a mask's)
    masked = (pd.to_numeric(frame["masked"], errors="coerce").fillna(0).to_numpy() == 1 if "masked" in frame.columns
              else np.zeros(n, dtype=bool))  # this workbench's masked faces: their hidden AUs are empty
    cut = (success == 1) & ~aus.notna().all(axis=1).to_numpy() & ~masked
    reason = np.where(cut, au_table.AU_ROW_CUT, np.where(success == 1, "", np.where(bad, BAD_SUCCESS, NO_FACE)))
    success = np.where(cut, 0, success)
    out = pd.DataFrame({"file": files, "face": faces, "label": labels, "success": success,
                        "confidence": conf, "source": SOURCE, "reason": reason, "time_s": times})
    for c in au_table.BOX_COLUMNS:  # from its landmarks (``au_table.OPENFACE_LANDMARKS``): a failed frame's are 0
        if c in frame.columns:
            out[c] = np.where(success == 1, pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float), np.nan)
    return au_table.normalise(pd.concat([out.reset_index(drop=True), aus.reset_index(drop=True)], axis=1))


def _success_flags(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(success 0/1, whether the written value was no flag) per row. OpenFace writes 0 or 1;
    anything else (2.7, 1e300, blank) says nothing and counts as no face. Without the column every
    row is a face: FaceLandmarkImg writes a row only for a detected face."""
    if "success" not in frame.columns:
        return np.ones(len(frame), dtype=np.int64), np.zeros(len(frame), dtype=bool)
    flags = au_table.whole_numbers(frame["success"], unknown=-1)
    bad = (flags != 0) & (flags != 1)
    return np.where(bad, 0, flags), bad


def _frame_id(v) -> str:
    """A frame number as written (1.0 -> "1"); one that is no whole number of ``au_table.WHOLE_RANGE``
    stays as read ("1e+300", not 301 digits)."""
    lo, hi = au_table.WHOLE_RANGE
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() and lo <= f <= hi else printable(str(v))
    except (TypeError, ValueError, OverflowError):
        return printable(str(v))


def _from_merged(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    aus = au_table.au_values(frame, display)
    n = len(frame)
    column = "label" if "label" in frame.columns else "emotion" if "emotion" in frame.columns else None
    if column == "emotion" and au_table.holds_answers(frame):  # a model's answers (Try it, predict), not labels
        column = None
    # The study's codes only in a table shaped like the study's: one naming files is another
    # program's, whose numbers (FER2013's 2 is fear) would be read as other emotions
    labels = (au_table.parse_labels(frame[column], display, column, study_codes="file" not in frame.columns)
              if column else [None] * n)
    complete = aus.notna().all(axis=1).to_numpy()
    # a success column is OpenFace's word on each row: its failed frames hold AU values of 0, not
    # measurements (they were scored and trained on as faces)
    flagged, bad = _success_flags(frame)
    aus.loc[flagged == 0, :] = np.nan
    success = complete & (flagged == 1)
    base = Path(display).name
    files = (frame["file"].astype("str").fillna("").reset_index(drop=True) if "file" in frame.columns
             else [f"{base}#{i}" for i in range(1, n + 1)])
    reason = np.where(success, "", np.where(bad, BAD_SUCCESS, np.where(flagged == 0, NO_FACE,
                                                                        "AU values missing in this row")))
    out = pd.DataFrame({"file": files, "face": 0, "label": pd.Series(labels, dtype=object),
                        "success": success.astype(int), "confidence": np.nan, "source": SOURCE,
                        "reason": reason})
    table = au_table.normalise(pd.concat([out, aus.reset_index(drop=True)], axis=1))
    table.attrs["study_codes"] = bool(column) and "file" not in frame.columns and au_table.holds_label_codes(frame[column])
    return table


def label_from_path(rel: Path) -> str | None:
    """The emotion of an OpenFace CSV by where it lies: its emotion folder, else an emotion-prefixed
    name (``angry001.csv``); as the images' own labels are read."""
    if len(rel.parts) > 1:
        label = normalize_emotion(rel.parent.name)
        if label:
            return label
    return emotion_from_filename(rel.stem)
