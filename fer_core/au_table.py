"""The AU table: one row per face, the 17 OpenFace intensity AUs and what is known of the face.

Every AU source (embedded MediaPipe, OpenFace CSVs, OpenFace in Docker) produces this schema,
so a model trained on one source's AUs can be scored on another's. This module owns the schema,
the normalisation every source ends with, reading and writing table files, and the one rule for
which rows a model may learn from or be scored on (``select``).

Reading is bounded: only regular files up to ``MAX_TABLE_BYTES`` are opened, compression is
recognised by its magic bytes (gzip, bzip2, xz; Parquet by ``PAR1``), only the columns a table can use are parsed, in
chunks, into compact types (AUs as float32), no line may exceed ``MAX_LINE_BYTES`` and no table
``MAX_ROWS``. Text is UTF-8 (with or without BOM); UTF-16 is read when a BOM or its zero bytes say
so; bytes that are not valid UTF-8 are read as CP949 (Korean Excel's "CSV") when all of them decode
so and give Hangul, else as Latin-1. Fields are separated by commas, tabs or semicolons; with tabs
or semicolons, AU cells written "1,25" (Excel in a locale with decimal commas) are read as 1.25.
Spreadsheet workbooks (.xlsx, .xls, .ods), zip archives and AU scores without ``_r`` (py-feat's
0-1 ``AU01``) are refused, saying what to do. Every failure is one ``AUTableError`` line naming the file.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import math
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from . import fileio
from .au_codes import AU_CODES, AU_COLUMNS  # noqa: F401  (AU_CODES: re-exported, as before)
from .emotions import OPENFACE_STUDY_CODES, SEVEN_EMOTIONS, normalize_emotion, unmodelled_emotion
from .errors import AUTableError, one_line, printable
from .i18n import emotion_labels
from .safe_files import open_regular_file

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
# 1 for a face measured under a (drawn) mask, whose hidden AUs are then empty: unknown, not zero;
# `time_s` is the time of a video frame in seconds (``measure.video``), empty for images: a
# video's rows share its `file`, and a frame is told apart by its time. `box_x`, `box_y`, `box_w`,
# `box_h`: the face's box in the file's own pixels as shown (left, top, width, height; EXIF
# orientation applied; a video frame's with its pixel shape and rotation applied), which tells a
# group photo's faces apart; empty where no face was found or the source gives none (OpenFace).
BOX_COLUMNS: tuple[str, ...] = ("box_x", "box_y", "box_w", "box_h")
META_COLUMNS: tuple[str, ...] = ("file", "face", "label", "success", "confidence", "source", "reason", "masked",
                                 "time_s", *BOX_COLUMNS)
TABLE_COLUMNS: tuple[str, ...] = META_COLUMNS + AU_COLUMNS

TEXT_COLUMNS: tuple[str, ...] = ("file", "label", "source", "reason")

PathOrBuffer = str | os.PathLike | IO[str] | IO[bytes]

MAX_TABLE_BYTES = 2 << 30  # on disk (compressed or not), checked before reading
MAX_LINE_BYTES = 1 << 20  # an AU table row is well under a kilobyte; OpenFace's widest ~8 KB
MAX_ROWS = 5_000_000
READ_CHUNK_ROWS = 100_000

# A usable AU value is a finite number in this range: AUs are on OpenFace's 0-5 scale; the slack
# admits other scalings, anything far outside is an error in the data, not a measurement.
AU_VALID_RANGE: tuple[float, float] = (-1.0, 10.0)
MIN_FACES_PER_CLASS = 10  # to train: a quarter is held out, the rest is cross-validated 5 ways

_CODES_HINT = ", ".join(f"{k} {v}" for k, v in OPENFACE_STUDY_CODES.items())
# FER2013's label numbers (its CSV's "emotion" column): not read, only named when a table uses them
_FER2013_HINT = "0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral"
# Said whenever a table's numbers were read as labels: a FER2013 table without its 6 (neutral)
# cannot be told from the study's, and would be read with fear as happy, happy as neutral, ...
STUDY_CODES_NOTE = (f"labels written as numbers were read as the original study's codes ({_CODES_HINT}); "
                    f"FER2013 numbers its emotions otherwise ({_FER2013_HINT}): if the table is not the "
                    "study's, write emotion names in its label column")


def au_code(column: str) -> str:
    """'AU12_r' -> 'AU12'."""
    return column.strip().split("_")[0]


def au_label(column_or_code: str) -> str:
    """'AU12_r' -> 'AU12 lip corner puller', the form shown to people, with the muscle movement
    named in the current language (catalogue area ``aus``; the code stays as it is)."""
    from .i18n import catalogue, current_language

    code = au_code(column_or_code)
    name = catalogue(current_language()).get(f"aus.{code}", AU_NAMES.get(code, ""))
    return f"{code} {name}".strip()


def au_in_plain_words(column_or_code: str) -> str:
    """'AU12_r' -> 'the corners of the mouth are pulled up and back, as in a smile': the movement as
    a parent or a child would say it (catalogue area ``aus_plain``), for a page or a printed card
    read by people who do not know FACS; empty for an AU it does not hold."""
    from .i18n import catalogue, current_language

    return catalogue(current_language()).get(f"aus_plain.{au_code(column_or_code)}", "")


# -- building tables ---------------------------------------------------------------------------
def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The schema's columns in order with their types: how every source's table ends.

    AUs are float32 (three decimals on a 0-5 scale fit; half the memory of float64); labels,
    sources and reasons are Python strings shared between rows, so a million-row table holds a
    handful of distinct string objects, not millions.
    """
    frame = frame.reindex(columns=list(TABLE_COLUMNS))
    frame["face"] = whole_numbers(frame["face"])
    frame["success"] = whole_numbers(frame["success"])
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").astype(float)
    frame["label"] = _shared_text(frame["label"], None)
    frame["source"] = _shared_text(frame["source"], "")
    frame["reason"] = _shared_text(frame["reason"], "")
    frame["masked"] = whole_numbers(frame["masked"])
    for c in ("time_s", *BOX_COLUMNS):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    with np.errstate(over="ignore"):  # 1e308 becomes inf in float32: unusable either way (select)
        for c in AU_COLUMNS:
            if frame[c].dtype != np.float32:
                frame[c] = frame[c].astype(np.float32)
    return frame.reset_index(drop=True)


# A face number, success flag or mask flag is a whole number of this size; anything else is no count.
WHOLE_RANGE: tuple[int, int] = (-(2**31), 2**31 - 1)


def whole_numbers(values: pd.Series, unknown: int = 0) -> np.ndarray:
    """The bookkeeping numbers of a column (face, success, masked) as int64: the one cast every
    source uses, so a corrupt cell never becomes an integer made up by a cast (1e300 one platform's
    -2**63, 2.7 a face 2). What is missing, text, not finite (inf, 1e400), not whole (2.7) or
    outside ``WHOLE_RANGE`` (1e300) says nothing: it becomes ``unknown``, by default 0 as a blank
    does (a success of 0 leaves its row out as without a measured face)."""
    v = _floats(pd.Series(values, copy=False))
    lo, hi = WHOLE_RANGE
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & (v == np.trunc(v)) & (v >= lo) & (v <= hi)
    return np.where(ok, v, unknown).astype(np.int64)


def _shared_text(values: pd.Series, missing: str | None) -> pd.Series:
    """An object column whose equal strings are one object; missing values become ``missing``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    pool = np.empty(len(uniques) + 1, dtype=object)
    pool[:-1] = [printable(u) if isinstance(u, str) else u for u in uniques]
    pool[-1] = missing
    return pd.Series(pool[codes], index=values.index, dtype=object)


def from_rows(rows: Iterable[dict]) -> pd.DataFrame:
    """A table from row dicts (missing columns empty). Text that UTF-8 cannot hold (file names
    with bytes that are not UTF-8) is kept with those bytes escaped (``\\xff``)."""
    rows = [{k: printable(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows]
    return normalise(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))


def concat(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return from_rows([])
    return normalise(pd.concat(parts, ignore_index=True))


def failure_rows(files: Iterable[tuple[str, str | None]], reason: str, source: str) -> pd.DataFrame:
    """One failed row per (file, label): AUs empty, ``success 0`` and the one-line ``reason``."""
    return from_rows({"file": f, "face": 0, "label": lab, "success": 0, "confidence": np.nan,
                      "source": source, "reason": reason} for f, lab in files)


def table_name(table: pd.DataFrame, fallback: str = "AU table") -> str:
    """The file a table was read from (``read`` records it), for messages."""
    return str(getattr(table, "attrs", {}).get("name") or fallback)


# -- reading -----------------------------------------------------------------------------------
def display_name(src: PathOrBuffer) -> str:
    if isinstance(src, (str, os.PathLike)):
        return printable(os.fsdecode(src))
    return printable(str(getattr(src, "name", None) or "uploaded CSV"))


# Columns any table format can use; the rest (OpenFace's landmarks, gaze, pose, AU_c) are not parsed.
# OpenFace's own columns, and what researchers add to its output: a label, and when they join
# several videos' FeatureExtraction CSVs into one table, the video each row is from
# A model's probabilities, as predict --au-table and Try it write them: read only to tell that such a
# table's ``emotion`` column is the model's answer, not a label (``holds_answers``)
ANSWER_COLUMNS = frozenset(f"p_{e}" for e in SEVEN_EMOTIONS)
_USABLE_COLUMNS = frozenset(TABLE_COLUMNS) | {"frame", "face_id", "timestamp", "emotion", "video"} | ANSWER_COLUMNS
_TEXT_INPUT = frozenset(TEXT_COLUMNS) | {"emotion", "video"}
# OpenFace's 68 2D landmarks, in the pixels of the picture it read: a face's box where a table has
# none (from brows to chin, so a little shorter than this workbench's mesh box). Read in smaller
# chunks, reduced to the box as they are read: 136 columns of a million frames are 1 GB.
OPENFACE_LANDMARKS: tuple[tuple[str, ...], tuple[str, ...]] = (tuple(f"x_{i}" for i in range(68)),
                                                               tuple(f"y_{i}" for i in range(68)))
_LANDMARK_CHUNK_ROWS = 10_000
# The bookkeeping columns in any case ("Label", "EMOTION", "File"): tables from other programs and
# hand-edited ones capitalise them; AU columns keep OpenFace's exact names.
_BOOKKEEPING_BY_LOWER = {c.lower(): c for c in _USABLE_COLUMNS if c not in AU_COLUMNS}
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_AU_NOT_NUMBER = "an AU value is not a number"
# (a folder of OpenFace's per-image CSVs, as FaceLandmarkImg -out_dir writes them, is imported first)
_TABLE_HINT = ("pick an AU table CSV (this workbench's or OpenFace output; for a folder of OpenFace's per-image "
               "CSVs, run python -m fer_core import-openface FOLDER --out table.csv first)")
_ZIP_MAGIC, _OLE2_MAGIC = b"PK\x03\x04", bytes.fromhex("d0cf11e0a1b11ae1")  # .xlsx/.ods/.zip; .xls


class _LineGuard(io.RawIOBase):
    """The table's (decompressed) bytes, refusing a line longer than ``MAX_LINE_BYTES`` before a
    parser buffers it: a file that is not a table, or a compressed bomb of one endless line."""

    def __init__(self, raw: IO[bytes], display: str, closables: Sequence[IO[bytes]]) -> None:
        self.raw, self.display, self.closables, self.run = raw, display, closables, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if n:
            view = np.frombuffer(buffer, dtype=np.uint8, count=n)
            newlines = np.flatnonzero(view == 10)
            if newlines.size == 0:
                self.run += n
                longest = self.run
            else:
                longest = self.run + int(newlines[0])
                if newlines.size > 1:
                    longest = max(longest, int(np.diff(newlines).max()))
                self.run = n - 1 - int(newlines[-1])
            if longest > MAX_LINE_BYTES:
                raise AUTableError(f"{self.display}: a line is longer than {MAX_LINE_BYTES >> 20} MB; "
                                   "this is not an AU table (rows of one are short); pick a CSV of AU values")
        return n

    def close(self) -> None:
        if not self.closed:
            for f in self.closables:
                f.close()
        super().close()


class _TableBytes:
    """Opens (and reopens) the bytes of a table from a path or a buffer: checked, decompressed and
    guarded (``_LineGuard``)."""

    def __init__(self, src: PathOrBuffer, display: str) -> None:
        self.src, self.display = src, display
        self.path = src if isinstance(src, (str, os.PathLike)) else None
        if self.path is None:
            if hasattr(src, "seek"):
                src.seek(0)
            if isinstance(src, io.TextIOBase) or isinstance(src.read(0), str):
                self.src = io.BytesIO(src.read().encode("utf-8"))
            else:
                self.src.seek(0, os.SEEK_END)
                size = self.src.tell()
                if size > MAX_TABLE_BYTES:
                    raise AUTableError(f"{display}: {size >> 20} MB is larger than a table can be "
                                       f"({MAX_TABLE_BYTES >> 20} MB); split or subsample it")
        first, _ = self._raw()
        try:
            magic = first.read(8)
            if magic.startswith((_ZIP_MAGIC, _OLE2_MAGIC)):
                _refuse_archive(first, magic, display)
        finally:
            self._close(first)
        if not magic:
            raise AUTableError(f"{display}: file is empty; pick a CSV with AU columns (AU01_r … AU45_r)")
        self.compression = next((name for m, name in _MAGIC if magic.startswith(m)), None)
        self.parquet = magic.startswith(b"PAR1")

    def _raw(self) -> tuple[IO[bytes], int]:
        if self.path is not None:
            return open_regular_file(self.path, _TABLE_HINT, MAX_TABLE_BYTES, "table", AUTableError, self.display)
        self.src.seek(0)
        return self.src, 0

    def _close(self, fh: IO[bytes]) -> None:
        if self.path is not None:
            fh.close()

    def open(self) -> io.BufferedReader:
        fh, _ = self._raw()
        closables = [fh] if self.path is not None else []
        raw: IO[bytes] = fh
        try:
            if self.compression == "gzip":
                raw = gzip.GzipFile(fileobj=fh, mode="rb")
            elif self.compression == "bzip2":
                raw = bz2.BZ2File(fh, mode="rb")
            elif self.compression == "xz":
                raw = lzma.LZMAFile(fh, mode="rb")  # noqa: SIM115 (closed with the stream)
        except BaseException:
            self._close(fh)
            raise
        if raw is not fh:
            closables.insert(0, raw)
        return io.BufferedReader(_LineGuard(raw, self.display, closables), buffer_size=1 << 18)


def _refuse_archive(fh: IO[bytes], magic: bytes, display: str) -> None:
    """A spreadsheet workbook (.xlsx and .ods are zips of XML, .xls an OLE2 file) or another zip is
    no table this workbench parses: say how to get the CSV out of it."""
    workbook = magic.startswith(_OLE2_MAGIC)
    if not workbook:
        import zipfile

        try:
            fh.seek(0)
            names = zipfile.ZipFile(fh).namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            names = []
        workbook = any(n.startswith("xl/") or n in ("content.xml", "mimetype") for n in names)
    if workbook:
        raise AUTableError(f"{display}: a spreadsheet workbook (Excel .xlsx/.xls or .ods), not a CSV; save it as "
                           "CSV UTF-8 (Excel: File › Save As › CSV UTF-8) and pick that file")
    raise AUTableError(f"{display}: a zip archive, not a table; unzip it and pick the CSV inside")


def _encoding(head: bytes, display: str, complete: bool) -> str:
    """The text encoding the first bytes show (see the module docstring)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    if b"\x00" in sample:
        even, odd = sample[0::2], sample[1::2]
        if odd and odd.count(0) > 0.3 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even and even.count(0) > 0.3 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
        raise AUTableError(f"{display}: not a text CSV (it holds binary data); pick a CSV of AU values")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "latin-1"


def _eight_bit_encoding(source: "_TableBytes") -> str:
    """The encoding of text that is not UTF-8: CP949, as Excel on Korean Windows saves "CSV", when
    every byte decodes as CP949, the Hangul it gives is all in KS X 1001 (the syllables Korean
    text is written in; Latin-1 letters such as "Ä" before an ASCII letter decode only to rarer
    ones) and some of it comes as a word of two syllables or more (a pair of Latin-1 capitals such
    as the "ÇÃ" of INFORMAÇÃO decodes to one common syllable standing alone); else Latin-1. Only
    text (labels, file names) depends on it, never a number."""
    decoder = codecs.getincrementaldecoder("cp949")()
    hangul = re.compile("[\uac00-\ud7a3]+")
    syllables: set[str] = set()
    word = False
    try:
        with source.open() as stream:
            while block := stream.read(1 << 20):
                runs = hangul.findall(decoder.decode(block))
                word = word or any(len(run) > 1 for run in runs)
                syllables.update(ch for run in runs for ch in run)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "latin-1"
    korean = word and all(_ks_x_1001(ch.encode("cp949")) for ch in syllables)
    return "cp949" if korean else "latin-1"


def _ks_x_1001(code: bytes) -> bool:
    """A Hangul syllable's CP949 bytes are in KS X 1001's block (rows 0xB0-0xC8, cells from 0xA1)."""
    return len(code) == 2 and 0xB0 <= code[0] <= 0xC8 and code[1] >= 0xA1


_DECIMAL_COMMA = re.compile(r"\s*[+-]?\d*,\d+\s*")
_DECIMAL_SAMPLE_LINES = 200


def _decimal_mark(head: bytes, encoding: str, sep: str, names: list[str], spaced: bool) -> str:
    """"," when the AU cells of the first lines are written with a decimal comma ("1,25"), as Excel
    saves numbers in locales that write them so (separating fields by ";" or, as "Unicode text",
    by tabs); else ".". A comma cannot be a thousands mark here: AUs run from 0 to 5."""
    positions = [i for i, n in enumerate(names) if n in AU_COLUMNS]
    lines = head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()[1:_DECIMAL_SAMPLE_LINES + 1]
    try:
        for row in csv.reader(lines, delimiter=sep, skipinitialspace=spaced):
            if any(i < len(row) and _DECIMAL_COMMA.fullmatch(row[i]) for i in positions):
                return ","
    except csv.Error:
        pass  # the parser says what is wrong with the file
    return "."


def _holds_utf8_text(source: "_TableBytes") -> bool:
    """Whether the file holds any character UTF-8 encodes in more than one byte (read in 1 MB blocks)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    wide = re.compile("[^\x00-\x7f\ufffd]")
    with source.open() as stream:
        while block := stream.read(1 << 20):
            if wide.search(decoder.decode(block)):
                return True
    return False


def _header(head: bytes, encoding: str, display: str, complete: bool) -> tuple[list[str], str, bool]:
    """(column names, separator, whether a space follows it) from the first line. OpenFace 2.0
    separates fields with ", ": then spaces after a separator are not part of a value; in other
    tables (this workbench's own) they are, as in a file named " x.jpg"."""
    text = head.decode(encoding, errors="replace")
    end = text.find("\n")
    if end < 0 and not complete:
        raise AUTableError(f"{display}: the first line is longer than {MAX_LINE_BYTES >> 20} MB; "
                           "this is not an AU table; pick a CSV of AU values")
    line = text[: end if end >= 0 else len(text)].rstrip("\r").lstrip("\ufeff")
    if not line.strip():
        raise AUTableError(f"{display}: file is empty (no header line); pick a CSV with AU columns (AU01_r … AU45_r)")
    sep = max((",", "\t", ";"), key=line.count) if any(s in line for s in (",", "\t", ";")) else ","
    names = next(csv.reader([line], delimiter=sep, skipinitialspace=True), [])
    return [n.strip() for n in names], sep, (sep + " ") in line


def _column_name(name: object) -> str:
    """A header as this module names its column: stripped, a bookkeeping column in any case."""
    text = str(name).strip()
    return _BOOKKEEPING_BY_LOWER.get(text.lower(), text)


def read_frame(src: PathOrBuffer, display: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The usable columns of a CSV (header names stripped; OpenFace 2.0 writes ``", "``) and, per
    row, whether an AU cell held text instead of a number (that cell is NaN).

    AU columns are float32, text columns strings, other numbers float. A column without AU
    intensities, a column of text only, and unreadable or oversized files raise ``AUTableError``.
    """
    display = display or display_name(src)
    source = _TableBytes(src, display)
    if source.parquet:
        return _read_parquet(source, display)
    try:
        with source.open() as stream:
            head = stream.read(MAX_LINE_BYTES + 1)
        complete = len(head) <= MAX_LINE_BYTES
        if not head.strip(b"\r\n\t ,;\x00\xef\xbb\xbf\xff\xfe"):
            raise AUTableError(f"{display}: file is empty; pick a CSV with AU columns (AU01_r … AU45_r)")
        encoding = _encoding(head, display, complete)
        if encoding == "latin-1":
            encoding = _eight_bit_encoding(source)
        names, sep, spaced = _header(head, encoding, display, complete)
        missing_aus(names, display)
        decimal = _decimal_mark(head, encoding, sep, names, spaced)
        try:
            return _parse(source, encoding, sep, names, display, spaced=spaced, decimal=decimal)
        except UnicodeDecodeError:
            if encoding != "utf-8-sig":
                raise AUTableError(f"{display}: not a text CSV; pick a CSV of AU values") from None
        # Plain ASCII in its first MB, then a byte UTF-8 does not allow: a Latin-1 file (café
        # written as one byte) is read as Latin-1; a UTF-8 file with a stray byte stays UTF-8, the
        # stray bytes kept escaped (caf\xff.jpg), rather than every name read again as Latin-1.
        if _holds_utf8_text(source):
            return _parse(source, encoding, sep, names, display, "backslashreplace", spaced=spaced, decimal=decimal)
        return _parse(source, _eight_bit_encoding(source), sep, names, display, spaced=spaced, decimal=decimal)
    except AUTableError:
        raise
    except (zlib.error, EOFError, lzma.LZMAError, OSError) as exc:
        detail = f"zlib: {exc}" if isinstance(exc, zlib.error) else one_line(exc, 100)
        if source.compression:
            raise AUTableError(f"{display}: the {source.compression} data is corrupt or cut short "
                               f"({detail}); export or download the table again") from None
        raise AUTableError(f"{display}: could not be read ({one_line(exc, 100)})") from None
    except pd.errors.EmptyDataError:
        raise AUTableError(f"{display}: file is empty; pick a CSV with AU columns (AU01_r … AU45_r)") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        raise AUTableError(f"{display}: not a readable CSV ({one_line(exc, 120)}); "
                           "check the file is an AU table or OpenFace output") from None


def _read_parquet(source: _TableBytes, display: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``read_frame`` for a Parquet file (the Ray engine's output): the same usable columns, AUs
    as float32, text in an AU cell marked; pyarrow is imported only when one is met."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fh, _ = source._raw()
    try:
        pf = pq.ParquetFile(fh)
        names = {str(n): _column_name(n) for n in pf.schema_arrow.names}
        missing_aus(names.values(), display)
        if pf.metadata.num_rows > MAX_ROWS:
            raise AUTableError(f"{display}: more than {MAX_ROWS:,} rows; split or subsample the table")
        wanted = {}  # the first column of each usable name
        for original, name in names.items():
            if name in _USABLE_COLUMNS and name not in wanted.values():
                wanted[original] = name
        frame = pf.read(columns=list(wanted)).to_pandas().rename(columns=wanted)
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as exc:  # Key/TypeError: damaged pandas metadata
        raise AUTableError(f"{display}: not a readable Parquet file ({one_line(exc, 120)}); "
                           "write the table again") from None
    finally:
        source._close(fh)
    for c in frame.columns:
        if c not in AU_COLUMNS and c not in _TEXT_INPUT and pd.api.types.is_float_dtype(frame[c]):
            frame[c] = _bookkeeping_numbers(frame[c].to_numpy(dtype=np.float64, na_value=np.nan))
    text_rows = np.zeros(len(frame), dtype=bool)
    for c in (c for c in AU_COLUMNS if c in frame.columns):
        values, bad = _au_floats(frame[c])
        frame[c] = values
        if bad is not None:
            text_rows |= bad
    return frame, text_rows


def _count_lines(source: _TableBytes, display: str) -> int:
    """An upper bound of the table's rows (its newlines, plus one), so columns are allocated once
    at their final size; the same pass refuses over-long lines and tables over ``MAX_ROWS``."""
    lines = 1
    with source.open() as stream:
        while block := stream.read(1 << 20):
            lines += block.count(b"\n")
            if lines > MAX_ROWS + 2:
                raise AUTableError(f"{display}: more than {MAX_ROWS:,} rows, more than this workbench reads at "
                                   "once; split the table or subsample it")
    return lines


def _parse(source: _TableBytes, encoding: str, sep: str, names: list[str], display: str,
           encoding_errors: str = "strict", spaced: bool = True, decimal: str = ".",
           ) -> tuple[pd.DataFrame, np.ndarray]:
    wanted = list(dict.fromkeys(_column_name(n) for n in names if _column_name(n) in _USABLE_COLUMNS))
    landmarks = (not any(c in wanted for c in BOX_COLUMNS)
                 and {c for axis in OPENFACE_LANDMARKS for c in axis} <= {_column_name(n) for n in names})
    usable = (_USABLE_COLUMNS | set(OPENFACE_LANDMARKS[0]) | set(OPENFACE_LANDMARKS[1]) if landmarks
              else _USABLE_COLUMNS)
    capacity = _count_lines(source, display)
    au_cols = [c for c in AU_COLUMNS if c in wanted]
    block = np.full((capacity, len(au_cols)), np.nan, dtype=np.float32)  # all AUs, one allocation
    numbers = {c: np.full(capacity, np.nan) for c in wanted if c not in AU_COLUMNS and c not in _TEXT_INPUT}
    if landmarks:
        numbers.update({c: np.full(capacity, np.nan) for c in BOX_COLUMNS})
    texts: dict[str, list[pd.Series]] = {c: [] for c in wanted if c in _TEXT_INPUT}
    text_rows = np.zeros(capacity, dtype=bool)
    # A line repeating the header: per-image CSVs joined with `cat` carry one per file (each had
    # been read as a face whose AU values are not numbers, and scored); such lines are left out.
    header_rows = np.zeros(capacity, dtype=bool)
    found = dict.fromkeys(au_cols, 0)
    example: dict[str, str] = {}
    rows = 0
    with source.open() as stream:
        reader = pd.read_csv(stream, sep=sep, skipinitialspace=spaced, encoding=encoding,
                             decimal=decimal if sep != decimal else ".",
                             encoding_errors=encoding_errors, dtype={n: "str" for n in names if _column_name(n) in texts},
                             usecols=lambda c: _column_name(c) in usable,
                             chunksize=_LANDMARK_CHUNK_ROWS if landmarks else READ_CHUNK_ROWS)
        for chunk in reader:
            chunk.columns = [_column_name(c) for c in chunk.columns]
            chunk = chunk.loc[:, ~chunk.columns.duplicated()]
            if landmarks:
                chunk = _landmarks_to_box(chunk)
            if decimal == ",":  # a column the parser left as text (a text cell in it; quoted "1,25")
                for c in chunk.columns:
                    if c not in _TEXT_INPUT and not pd.api.types.is_numeric_dtype(chunk[c]):
                        chunk[c] = chunk[c].str.replace(",", ".", regex=False)
            end = rows + len(chunk)
            if end > capacity:  # cannot happen: a row ends at a newline or at the end
                raise AUTableError(f"{display}: more rows than lines; check the file is a plain CSV")
            repeated = np.ones(len(chunk), dtype=bool)
            for j, c in enumerate(au_cols):
                values, bad = _au_floats(chunk[c])
                block[rows:end, j] = values
                found[c] += int(np.count_nonzero(~np.isnan(values)))
                if bad is not None and bad.any():
                    text_rows[rows:end] |= bad
                    repeated &= bad & (chunk[c].astype("str").str.strip() == c).to_numpy(dtype=bool)
                    example.setdefault(c, str(chunk[c][bad & ~repeated].iloc[0]) if (bad & ~repeated).any()
                                       else c)
                else:
                    repeated[:] = False
            header_rows[rows:end] = repeated
            for c, column in numbers.items():
                column[rows:end] = _bookkeeping_numbers(_floats(chunk[c]))
            for c, parts in texts.items():
                parts.append(chunk[c].astype("str"))
            rows = end
    for c, sample in example.items():
        if found[c] == 0:
            raise AUTableError(f"{display}: column {c} has non-numeric values such as {sample[:30]!r} and no "
                               "numbers; check the columns are AU intensities")
    meta = pd.DataFrame({**{c: pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype="str")
                            for c, parts in texts.items()},
                         **{c: column[:rows] for c, column in numbers.items()}})
    aus = pd.DataFrame(block[:rows], columns=au_cols, copy=False)
    table, text_rows = pd.concat([meta, aus], axis=1), text_rows[:rows]
    if header_rows[:rows].any():
        kept = ~header_rows[:rows]
        table, text_rows = table[kept].reset_index(drop=True), text_rows[kept]
    return table, text_rows


def _landmarks_to_box(chunk: pd.DataFrame) -> pd.DataFrame:
    """``chunk`` with OpenFace's 2D landmark columns replaced by their box (``BOX_COLUMNS``, one
    decimal, as ``extract`` writes it); a row lacking any landmark has no box."""
    xs, ys = (chunk[list(axis)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
              for axis in OPENFACE_LANDMARKS)
    ok = np.isfinite(xs).all(axis=1) & np.isfinite(ys).all(axis=1)
    x0, y0 = xs.min(axis=1, initial=np.inf), ys.min(axis=1, initial=np.inf)
    box = (x0, y0, xs.max(axis=1, initial=-np.inf) - x0, ys.max(axis=1, initial=-np.inf) - y0)
    rest = chunk.drop(columns=[c for axis in OPENFACE_LANDMARKS for c in axis])
    for c, values in zip(BOX_COLUMNS, box, strict=True):
        rest[c] = np.where(ok, np.round(values, 1), np.nan)
    return rest


def _au_floats(col: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 values, rows whose cell was text, or None when it holds numbers only): text and
    blanks become NaN, 1e308 becomes inf."""
    if col.dtype == np.float32:
        return col.to_numpy(), None
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = None
    else:
        values = _floats(col)
        bad = np.isnan(values) & col.notna().to_numpy()
        if bad.any():
            idx = np.flatnonzero(bad)
            bad[idx] = (col.iloc[idx].astype(str).str.strip() != "").to_numpy()
    with np.errstate(over="ignore"):
        return values.astype(np.float32), bad


def _floats(col: pd.Series) -> np.ndarray:
    """float64 values of a parsed column, text and blanks NaN. The CSV parser keeps an integer too
    large for 64 bits as a Python int, which ``pd.to_numeric`` refuses when it is too large for a
    float too: it becomes ±inf, as the same digits written with a decimal point do."""
    try:
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    except OverflowError:
        return pd.to_numeric(col.map(_huge_int_as_inf), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _bookkeeping_numbers(values: np.ndarray) -> np.ndarray:
    """A face number, frame, success flag, confidence or time that is infinite (inf, 1e400) says
    nothing: it is unknown (NaN), as a blank is, and later whole-number casts need not meet it."""
    return np.where(np.isfinite(values), values, np.nan)


def _huge_int_as_inf(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            float(v)
        except OverflowError:
            return math.inf if v > 0 else -math.inf
    return v


# An OpenFace row lacking some AU values (OpenFace writes them all for a face it found): cut short
AU_ROW_CUT = "AU values missing in this row (the file cut short?)"


def mark_text_rows(table: pd.DataFrame, text_rows: np.ndarray) -> pd.DataFrame:
    """Say in ``reason`` which rows had text in an AU cell (read as missing, so never used)."""
    if len(text_rows) == len(table) and text_rows.any():
        reason = table["reason"].to_numpy(dtype=object).copy()
        hit = text_rows & np.isin(table["reason"].fillna("").to_numpy(dtype=object), ["", AU_ROW_CUT])
        reason[hit] = _AU_NOT_NUMBER
        table["reason"] = pd.Series(reason, index=table.index, dtype=object)
    return table


def is_project_table(frame: pd.DataFrame) -> bool:
    """This project's own table (``file`` plus ``success`` or ``source``; OpenFace's ``frame``
    numbers a video's rows, which this project's tables time in ``time_s``)."""
    return ("file" in frame.columns and ("success" in frame.columns or "source" in frame.columns)
            and "frame" not in frame.columns)


def read(path_or_buffer: PathOrBuffer) -> pd.DataFrame:
    """Any AU table this project meets: its own format, or OpenFace output (per-image CSVs,
    FeatureExtraction, or a merged labelled table such as the original study's), by content.
    AU columns are matched by name, in whatever order the file lists them. ``attrs["name"]``
    keeps the file's name for later messages."""
    display = display_name(path_or_buffer)
    frame, text_rows = read_frame(path_or_buffer, display)
    if is_project_table(frame):
        table = from_project_frame(frame, display)
    else:
        from .measure.openface_csv import table_from_openface_frame

        table = table_from_openface_frame(frame, display)
    table = mark_text_rows(table, text_rows)
    table.attrs["name"] = display
    if "emotion" in frame.columns and holds_answers(frame):
        table.attrs["answers_not_labels"] = True
    return table


def from_project_frame(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """Validate a frame in the project's format and return it normalised."""
    aus = au_values(frame, display)
    n = len(frame)
    frame = frame.reset_index(drop=True)
    # A download's ' before a name a spreadsheet would run as a formula (fileio.formula_safe)
    # is taken off, so a table downloaded from the dashboard reads back with its files' own names.
    files = frame["file"].astype("str").str.replace(r"^'(?=[=+\-@\t\r])", "", regex=True)
    out = pd.DataFrame({"file": files.fillna("") if files.hasnans else files})
    out["face"] = frame["face"] if "face" in frame.columns else 0
    column = next((c for c in ("label", "emotion") if c in frame.columns), None)  # as OpenFace tables are read
    if column == "emotion" and holds_answers(frame):  # a model's answers (predict --au-table, Try it), not labels
        column = None
    out["label"] = (pd.Series(parse_labels(frame[column], display, column, study_codes=False), dtype=object)
                    if column else pd.Series([None] * n, dtype=object))
    out["success"] = (frame["success"] if "success" in frame.columns
                      else aus.notna().all(axis=1).astype(int).to_numpy())
    out["confidence"] = (pd.to_numeric(frame["confidence"], errors="coerce")
                         if "confidence" in frame.columns else np.nan)
    out["source"] = frame["source"] if "source" in frame.columns else "csv"
    out["reason"] = frame["reason"] if "reason" in frame.columns else ""
    out["masked"] = frame["masked"] if "masked" in frame.columns else 0
    for c in ("time_s", *BOX_COLUMNS):  # text there is no number: read as missing by ``normalise``
        out[c] = frame[c] if c in frame.columns else np.nan
    return normalise(pd.concat([out, aus.reset_index(drop=True)], axis=1))


ANSWERS_NOT_LABELS = ("its emotion column is a model's answer (the table has p_<emotion> columns, as predict "
                      "--au-table and Try it write), not a label")


def holds_answers(frame: pd.DataFrame) -> bool:
    """Whether a table's ``emotion`` column is a model's answer: this project's prediction tables
    give it beside ``p_<emotion>`` columns (``ANSWER_COLUMNS``). Read as labels, a model was scored
    against itself (accuracy 1.000)."""
    return "label" not in frame.columns and not ANSWER_COLUMNS.isdisjoint(frame.columns)


def write(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write an AU table as CSV (``.gz``, ``.bz2``, ``.xz`` compress) or Parquet (``.parquet``),
    whole or not at all, creating the folder (``fileio.write_frame``). Raises ``OutputFileError``."""
    return fileio.write_frame(normalise(table), path)


def missing_aus(columns: Iterable[str], display: str) -> None:
    """Raise ``AUTableError`` naming the AU intensity columns ``columns`` lacks."""
    present = set(columns)
    missing = [c for c in AU_COLUMNS if c not in present]
    if len(missing) == len(AU_COLUMNS):
        _refuse_other_au_scales([str(c) for c in columns], display)
    if missing:
        if len(missing) == len(AU_COLUMNS):
            what = "all 17 AU intensity columns"
        else:
            what = "1 AU column" if len(missing) == 1 else f"{len(missing)} AU columns"
        raise AUTableError(f"{display}: missing {what} ({', '.join(missing)}); "
                           f"use OpenFace output with AU intensities (-aus) or a table with AU01_r … AU45_r")


def _refuse_other_au_scales(columns: list[str], display: str) -> None:
    """AU columns without OpenFace's ``_r``: py-feat's ``AU01`` (0-1 scores) or OpenFace's
    presence ``AU01_c`` (0 or 1) alone. Read as 0-5 intensities they would mean other faces, so
    they are refused, saying which columns are needed."""
    plain = [c for c in columns if re.fullmatch(r"AU\d+", c)]
    presence = [c for c in columns if re.fullmatch(r"AU\d+_c", c)]
    if plain:
        raise AUTableError(f"{display}: AU columns without _r ({_first_few(plain)}) are not read: such columns are "
                           "often scores from 0 to 1 (py-feat's), and this workbench reads intensities from 0 to 5 "
                           "named as OpenFace names them (AU01_r … AU45_r); measure the images with extract or "
                           "OpenFace -aus, or rename the columns if they are 0-5 intensities")
    if presence:
        raise AUTableError(f"{display}: only AU presence columns ({_first_few(presence)}, 0 or 1) and no "
                           "intensities; use OpenFace's AU01_r … AU45_r columns (OpenFace -aus writes both)")


def _first_few(names: list[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (" …" if len(names) > k else "")


def au_values(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """The 17 AU_r columns as float32, by name; missing columns, or a column of text only, raise
    AUTableError. Single text cells become NaN (``read_frame`` marks their rows)."""
    missing_aus(frame.columns, display)
    if all(frame[c].dtype == np.float32 for c in AU_COLUMNS):
        return frame[list(AU_COLUMNS)]  # as read_frame gives them: no copy
    out = {}
    for c in AU_COLUMNS:
        values, bad = _au_floats(frame[c])
        if bad is not None and bad.any() and np.isnan(values).all():
            raise AUTableError(f"{display}: column {c} has non-numeric values such as "
                               f"{str(frame[c][bad].iloc[0])[:30]!r} and no numbers; check the columns are AU intensities")
        out[c] = values
    return pd.DataFrame(out, index=frame.index)


SHOWN_LABEL_CHARS = 40  # an unknown label is shown cut: a 100,000-character cell is not repeated in the message


def parse_labels(values: pd.Series, display: str, column: str, study_codes: bool = True) -> np.ndarray:
    """Emotion names from names/aliases or (``study_codes``: a table like the study's) its codes
    0..5 (an object array, None where unlabelled); unknown values raise, each shown cut to
    ``SHOWN_LABEL_CHARS``. Numbers are no labels elsewhere, as an image folder named "2" is no
    emotion: FER2013 numbers emotions otherwise, and a table without its 6 could not tell. Each
    distinct value is looked at once."""
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    pool = np.empty(len(uniques) + 1, dtype=object)
    unknown: list[str] = []
    unknown_codes: set[int | None] = set()
    for i, v in enumerate(uniques):
        pool[i] = _label_value(v) if study_codes or _label_code(v) is None else "?"
        if pool[i] == "?":
            unknown_codes.add(_label_code(v))
            unknown.append(repr(one_line(v, SHOWN_LABEL_CHARS)) if isinstance(v, str)
                           else one_line(repr(v.item() if hasattr(v, "item") else v), SHOWN_LABEL_CHARS))
    pool[-1] = None
    if unknown and not study_codes and None not in unknown_codes:
        raise AUTableError(f"{display}: numbers as labels (such as {min(unknown_codes)}) in column {column!r} are read "
                           "only in a table like the study's (17 AU columns and a label); the study "
                           f"({_CODES_HINT}) and FER2013 ({_FER2013_HINT}) number emotions differently; "
                           "write emotion names in the column")
    if unknown_codes == {6}:  # 0-6: FER2013's numbering, which gives 2..5 other emotions than the study's
        raise AUTableError(f"{display}: label code 6 in column {column!r} is not one of the study's codes "
                           f"({_CODES_HINT}); FER2013 numbers its emotions differently ({_FER2013_HINT}), so the "
                           "codes are not read; write emotion names in the column")
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise AUTableError(f"{display}: unknown labels {shown} in column {column!r}; "
                           f"use emotion names ({', '.join(SEVEN_EMOTIONS)})"
                           + (f" or the study's codes ({_CODES_HINT})" if study_codes else ""))
    return pool[codes]


def holds_label_codes(values: pd.Series) -> bool:
    """Whether some label is written as a whole number (read as a study code, ``STUDY_CODES_NOTE``)."""
    return any(_label_code(v) is not None for v in pd.unique(pd.Series(values, copy=False).dropna()))


def read_with_study_codes(table: pd.DataFrame) -> bool:
    """Whether ``read`` took this table's numeric labels for the study's codes (say ``STUDY_CODES_NOTE``)."""
    return bool(table.attrs.get("study_codes"))


def _label_code(v) -> int | None:
    """A label written as a whole number (6, 6.0, "6"), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    text = str(v).strip()
    if re.fullmatch(r"[+-]?\d{1,9}(\.0*)?", text):
        return int(float(text))
    return None


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
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):  # 400 digits read as a float are inf: no code
        number = float(text)
        return OPENFACE_STUDY_CODES.get(int(number), "?") if math.isfinite(number) else "?"
    return normalize_emotion(text) or unmodelled_emotion(text) or "?"


# -- which rows count ------------------------------------------------------------------------
NOT_FIRST_FACE = "later faces of an image"
PASSED_OVER = "passed over by the extraction (a folder or a video, no picture)"
OTHER_LABEL = "unlabelled or of other emotions"
UNLABELLED = "without a label"  # evaluation: OTHER_LABEL's unlabelled part (other emotions are counted by name)
NO_FACE = "without a measured face"
UNREADABLE = "unreadable (not an image or a video, damaged, empty, too large, or of a format not read)"
AU_HIDDEN = "measured under a mask that hides AUs the model needs"
AU_MISSING = "with AU values missing or not numbers"
AU_INVALID = f"with AU values that are infinite or outside {AU_VALID_RANGE[0]:g} to {AU_VALID_RANGE[1]:g}"


@dataclass(frozen=True)
class Selection:
    """Which rows of a table count (``index``: their positions) and how many were left out, by
    reason, in the order the rule checks them."""

    index: np.ndarray
    total: int
    left_out: dict[str, int] = field(default_factory=dict)
    measured: np.ndarray | None = None  # scoring: per kept row, whether its face was measured

    @property
    def n(self) -> int:
        return len(self.index)

    def summary(self) -> str:
        return left_out_summary(self.left_out, self.total)


def left_out_summary(left_out: dict[str, int], total: int) -> str:
    """'left out 3 of 120 rows: 2 with AU values that are infinite …, 1 without a measured face',
    in the current language (``fer_core.i18n``; English in the CLI)."""
    from .i18n import t

    if not left_out:
        return t("table_rows.all_used", total=f"{total:,}")
    parts = ", ".join(t("table_rows.reason", n=f"{n:,}", why=reason_text(why)) for why, n in left_out.items())
    return t("table_rows.left_out", n=f"{sum(left_out.values()):,}", total=f"{total:,}", parts=parts)


def reason_text(reason: str) -> str:
    """A reason of ``select`` (its English constant) in the current language."""
    from .i18n import t

    return {NOT_FIRST_FACE: t("table_rows.not_first_face"), PASSED_OVER: t("table_rows.passed_over"),
            OTHER_LABEL: t("table_rows.other_label"),
            UNLABELLED: t("table_rows.unlabelled"),
            NO_FACE: t("table_rows.no_face"), UNREADABLE: t("table_rows.unreadable"), AU_HIDDEN: t("table_rows.au_hidden"),
            AU_MISSING: t("table_rows.au_missing"),
            AU_INVALID: t("table_rows.au_invalid", lo=f"{AU_VALID_RANGE[0]:g}", hi=f"{AU_VALID_RANGE[1]:g}"),
            }.get(reason, reason)


def require_columns(table: pd.DataFrame, columns: Sequence[str] = AU_COLUMNS, what: str = "AU table") -> None:
    if not isinstance(table, pd.DataFrame):
        raise AUTableError(f"{what} is not a table; pass an AU table with AU01_r … AU45_r")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        kind = "AU columns" if all(c in AU_COLUMNS for c in missing) else "columns"
        raise AUTableError(f"{what} lacks {kind} {', '.join(missing)}; extract or import AUs first")


def first_face_mask(table: pd.DataFrame) -> np.ndarray:
    """Per row: the first face of its picture, its lowest ``face`` number (of its ``file``; for a
    video, of its ``file`` and ``time_s``: each frame is a picture of its own), the first row among
    equals. Face 0 where there is one: this extractor numbers an image's faces largest first, but
    OpenFace's ``face_id`` is a tracker's slot, and a frame whose face 0 has left the video has
    face 1 first (its frames had been dropped, said as "later faces"). Rows without a file name
    are each a picture of their own (face 0 only)."""
    face = (pd.to_numeric(table["face"], errors="coerce").fillna(0).to_numpy(dtype=float)
            if "face" in table.columns else np.zeros(len(table)))
    if "file" not in table.columns:
        return np.abs(face) < 1
    # A row without a file name names no image: it is a face of its own, not a later face
    # of one nameless image (which would keep one row of a table without names).
    named = (table["file"].notna() & table["file"].astype(str).str.strip().ne("")).to_numpy(dtype=bool)
    keep = ~named & (np.abs(face) < 1)
    idx = np.flatnonzero(named & (face > -1))  # a negative number is no face of any program's
    idx = idx[np.argsort(face[idx], kind="stable")]  # each picture's lowest face number first
    keep[idx[~_duplicated(_frame_key(table), idx)]] = True
    return keep


def _frame_key(table: pd.DataFrame) -> pd.Series:
    """What names one picture: the ``file``, or for a video's rows the file and the frame's ``time_s``."""
    if "time_s" not in table.columns:
        return table["file"]
    times = pd.to_numeric(table["time_s"], errors="coerce")
    if not times.notna().any():
        return table["file"]
    stamp = times.map(lambda v: "" if v != v else f"\x00{v:.3f}")
    return table["file"].astype(str) + stamp


def _duplicated(values: pd.Series, positions: np.ndarray) -> np.ndarray:
    """Per position: an earlier one (in the order given) holds the same value. Arrow strings are sorted (a stable
    sort keeps the first) rather than hashed: a hash table of millions of file names costs
    hundreds of megabytes."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow" and len(positions) > 1:
        import pyarrow as pa
        import pyarrow.compute as pc

        data = values.array.__arrow_array__()
        if not np.array_equal(positions, np.arange(len(values))):  # a part, or another order
            data = pc.take(data, pa.array(positions))
        order = pc.sort_indices(data).to_numpy()
        dup = np.zeros(len(positions), dtype=bool)
        step = 1 << 18
        for start in range(0, len(order) - 1, step):  # neighbours in sorted order, a slice at a time
            ordered = pc.take(data, pa.array(order[start:start + step + 1]))
            same = pc.fill_null(pc.equal(ordered[1:], ordered[:-1]), False).to_numpy(zero_copy_only=False)
            dup[order[start + 1:start + step + 1][same]] = True
        return dup
    return values.iloc[positions].duplicated(keep="first").to_numpy()


def _value_masks(table: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: some AU is missing (NaN); every AU is missing; some AU is infinite or outside
    ``AU_VALID_RANGE``."""
    lo, hi = AU_VALID_RANGE
    missing = np.zeros(len(table), dtype=bool)
    present = np.zeros(len(table), dtype=bool)
    invalid = np.zeros(len(table), dtype=bool)
    for c in columns:
        v = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
        nan = np.isnan(v)
        missing |= nan
        present |= ~nan
        with np.errstate(invalid="ignore"):
            invalid |= ~nan & ~((v >= lo) & (v <= hi))
    return missing, ~present, invalid


def _success(table: pd.DataFrame) -> np.ndarray:
    if "success" not in table.columns:
        return np.ones(len(table), dtype=bool)
    return (pd.to_numeric(table["success"], errors="coerce").fillna(0) > 0).to_numpy()


def select(table: pd.DataFrame, classes: Sequence[str] | None = None, columns: Sequence[str] = AU_COLUMNS,
           scoring: bool = False) -> Selection:
    """The one rule for which rows count. A row is used when it is the first face of its image,
    (with ``classes``) labelled with one of them, its face was measured (``success``) and every AU
    in ``columns`` is a finite number from -1 to 10 (``AU_VALID_RANGE``); a face measured under a
    mask lacks the AUs the mask hides, so it counts only for models of the visible ones. A file
    the extraction could not read (``unreadable_files``) never counts.

    ``scoring``: rows without a measured face are kept (a model that cannot judge a face is wrong;
    ``Selection.measured`` says which), and so are single unknown AUs (the models treat them as
    uninformative); invalid values are still left out.
    """
    require_columns(table, columns)
    keep = np.ones(len(table), dtype=bool)
    left_out: dict[str, int] = {}

    def leave_out(reason: str, bad: np.ndarray) -> None:
        hit = keep & bad
        count = int(np.count_nonzero(hit))
        if count:
            left_out[reason] = count
            keep[hit] = False

    leave_out(NOT_FIRST_FACE, ~first_face_mask(table))
    # a passed-over folder or video keeps its emotion folder's label, but is no face to fit or score
    leave_out(PASSED_OVER, passed_over(table).to_numpy())
    if classes is not None:
        leave_out(OTHER_LABEL, ~labels_of(table).isin(list(classes)).to_numpy())
    success = _success(table)
    # as evaluate --images leaves out a file it cannot read, for every model alike: one accuracy
    leave_out(UNREADABLE, ~success & unreadable_files(table).to_numpy())
    missing, none, invalid = _value_masks(table, columns)
    leave_out(AU_INVALID, invalid)
    if not scoring:
        leave_out(NO_FACE, ~success)
        if "masked" in table.columns:
            leave_out(AU_HIDDEN, missing & (pd.to_numeric(table["masked"], errors="coerce").fillna(0) > 0).to_numpy())
        leave_out(AU_MISSING, missing)
    measured = success & ~none
    index = np.flatnonzero(keep)
    return Selection(index, len(table), left_out, measured[index] if scoring else None)


def other_emotions(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, int]:
    """Per emotion not among ``classes``, the rows ``select`` leaves out as ``OTHER_LABEL`` for it
    (first faces only), most first: what "unlabelled or of other emotions" was."""
    labels = labels_of(table)
    rows = first_face_mask(table) & ~passed_over(table).to_numpy() & labels.notna().to_numpy() & \
        ~labels.isin(list(classes)).to_numpy()
    return {str(k): int(v) for k, v in labels[rows].value_counts().items()}


def other_emotions_note(counts: dict[str, int], chosen: str | None) -> str | None:
    """One line on the rows of emotions not trained, with how to keep them (``chosen``: the way the
    reader picks the emotions, e.g. "--classes seven"; None where no model here predicts them), in
    the current language; None without any."""
    from .i18n import emotion_label, t

    if not counts:
        return None
    shown = ", ".join(f"{n:,} {emotion_label(e)}" for e, n in counts.items())
    return t("table_rows.other_emotions", rows=shown, chosen=chosen) if chosen else \
        t("table_rows.other_emotions_plain", rows=shown)


def values(table: pd.DataFrame, positions: np.ndarray, columns: Sequence[str] = AU_COLUMNS) -> np.ndarray:
    """The AUs of the rows at ``positions`` as a float64 (n, len(columns)) array, by column name."""
    out = np.empty((len(positions), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        col = table[c]
        if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu":
            out[:, j] = col.to_numpy()[positions]  # a view of the column, then only these rows
        else:
            out[:, j] = pd.to_numeric(col.iloc[positions], errors="coerce").to_numpy(dtype=np.float64,
                                                                                    na_value=np.nan)
    return out


def measured(table: pd.DataFrame, columns: Sequence[str] = AU_COLUMNS) -> pd.Series:
    """Per row: a face was measured (``success``) and every AU in ``columns`` has a value."""
    ok = table[list(columns)].notna().all(axis=1)
    if "success" in table.columns:
        ok &= pd.to_numeric(table["success"], errors="coerce").fillna(0) > 0
    return ok


def face_found(table: pd.DataFrame) -> pd.Series:
    """Per row: a face was found (``success``; without that column, any AU has a value). Unlike
    ``measured``, a masked face, whose hidden AUs are empty, counts."""
    if "success" in table.columns:
        return pd.to_numeric(table["success"], errors="coerce").fillna(0) > 0
    present = [c for c in AU_COLUMNS if c in table.columns]
    return table[present].notna().any(axis=1) if present else pd.Series(False, index=table.index)


def invalid_values(table: pd.DataFrame, columns: Sequence[str] = AU_COLUMNS) -> np.ndarray:
    """Per row: some AU is infinite or outside ``AU_VALID_RANGE`` (``AU_INVALID``): no measurement,
    so no model judges the row (``select`` leaves it out; ``predict --au-table`` gives its reason)."""
    return _value_masks(table, columns)[2]


def columns_with_values(table: pd.DataFrame) -> list[str]:
    """The AU columns holding at least one value (a masked table's upper-face AUs)."""
    return [c for c in AU_COLUMNS if c in table.columns and table[c].notna().any()]


def passed_over_folders(table: pd.DataFrame) -> pd.Series:
    """Per row: a folder the extraction passed over ("Sad Faces/", with its reason), which has a
    row so that nothing is lost unsaid, but is no image: counted apart from images and faces."""
    if "file" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["file"].astype(str).str.endswith("/")


def passed_over_videos(table: pd.DataFrame) -> pd.Series:
    """Per row: a video in a folder of images, passed over with its reason (it is extracted on its
    own, a row per frame, or is of a format not read): no image, so not counted as one without a face."""
    from .images import OTHER_VIDEO, VIDEO_IN_FOLDER, VIDEO_IN_FOLDER_BEFORE

    if "reason" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["reason"].astype(str).isin((VIDEO_IN_FOLDER, VIDEO_IN_FOLDER_BEFORE, OTHER_VIDEO))


_FRAME_SUFFIX = re.compile(r"#\d+$")
VIDEO_SOURCE = "mediapipe-video"  # the ``source`` of a video's rows (``measure.video``)


def video_names(table: pd.DataFrame) -> pd.Series:
    """Per row, the video it is a frame of, NaN for a picture: the ``file`` of a row with a
    ``time_s`` (an OpenFace FeatureExtraction frame's ``clip#12`` read as ``clip``), or of a video
    ``extract`` could not read (its one row has no time). One home for what makes rows one video:
    train-au's split, the per-video score and the AU page's chart."""
    if "file" not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=object)
    timed = table["time_s"].notna() if "time_s" in table.columns else pd.Series(False, index=table.index)
    unread = table["source"].astype(str).eq(VIDEO_SOURCE) if "source" in table.columns else False
    files = table["file"].astype(str).str.replace(_FRAME_SUFFIX, "", regex=True)
    return files.where((timed | unread) & table["file"].notna(), np.nan).astype(object)


def unreadable_files(table: pd.DataFrame) -> pd.Series:
    """Per row: its reason says the extraction could not read the file (``images.UNREAD_REASON``:
    not an image, damaged, empty, too large, gone), or it is the one row of a video it could not
    read: no face looked for and not found, so left out of scoring as ``evaluate --images``
    leaves such a file out (it scored 0.441 on a table and 0.454 on the same folder)."""
    from .images import UNREAD_REASON

    if "reason" not in table.columns:
        return pd.Series(False, index=table.index)
    unread = table["reason"].fillna("").astype(str).str.match(UNREAD_REASON)
    if "source" in table.columns:  # a video's one row without a time: it could not be read
        timed = table["time_s"].notna() if "time_s" in table.columns else False
        unread |= table["source"].astype(str).eq(VIDEO_SOURCE) & ~timed
    return unread


def passed_over(table: pd.DataFrame) -> pd.Series:
    """Per row: what an extraction passed over, a folder or a video among the images: a row with
    its reason, so nothing is lost unsaid, but no image, counted apart from images and faces."""
    return passed_over_folders(table) | passed_over_videos(table)


def found_first_faces(table: pd.DataFrame) -> np.ndarray:
    """Per row: the first face of its picture, and a face was found there (``face_found``)."""
    return first_face_mask(table) & face_found(table).to_numpy()


def first_faces(table: pd.DataFrame) -> pd.DataFrame:
    """One row per image: its first (largest) face, or its failure row."""
    return table[first_face_mask(table)]


def labels_of(table: pd.DataFrame) -> pd.Series:
    """Labels as this project names emotions (aliases mapped), None where unlabelled."""
    if "label" not in table.columns:
        return pd.Series([None] * len(table), index=table.index, dtype=object)
    codes, uniques = pd.factorize(table["label"], use_na_sentinel=True)
    pool = np.empty(len(uniques) + 1, dtype=object)
    pool[:-1] = [(normalize_emotion(v) or unmodelled_emotion(v)) if isinstance(v, str) else None for v in uniques]
    pool[-1] = None
    return pd.Series(pool[codes], index=table.index, dtype=object)


def usable(table: pd.DataFrame, classes: Sequence[str] | None = None,
           columns: Sequence[str] = AU_COLUMNS) -> pd.DataFrame:
    """The rows a model learns from and a chart shows (``select``), with ``classes`` their labels
    normalised."""
    index = select(table, classes, columns).index
    rows = table.iloc[index]
    if classes is not None:
        rows = rows.assign(label=labels_of(rows))
    return rows


def require_usable(table: pd.DataFrame, classes: Sequence[str] | None = None, columns: Sequence[str] = AU_COLUMNS,
                   name: str | None = None) -> Selection:
    """``select``, raising one line that says why when no row is left."""
    selection = select(table, classes, columns)
    if selection.n == 0:
        name = name or table_name(table)
        labelled = f" labelled {', '.join(classes)}" if classes is not None else ""
        what = selection.summary() if selection.total else "it has no rows"
        if AU_HIDDEN in selection.left_out:  # a masked table: the way out is a model of fewer AUs
            from .masks import HIDDEN_AUS

            hidden = [c.split("_")[0] for c in columns if c.split("_")[0] in HIDDEN_AUS] or ["AUs"]
            hidden = ", ".join(hidden) if len(hidden) <= 3 else f"{hidden[0]}, {hidden[1]}, … {hidden[-1]}"
            raise AUTableError(f"{name}: no usable rows{labelled} ({what}); the mask hides {hidden}, which the "
                               "model needs: train on the AUs above the mask (train-au --aus upper)")
        unlabelled = all(c not in table.columns or table[c].isna().all() for c in ("label", "emotion"))
        if OTHER_LABEL in selection.left_out and table.attrs.get("answers_not_labels"):
            raise AUTableError(f"{name}: no usable rows{labelled} ({what}); training needs labels: "
                               f"{ANSWERS_NOT_LABELS}; add a label column")
        if OTHER_LABEL in selection.left_out and unlabelled:
            raise AUTableError(f"{name}: no usable rows{labelled} ({what}); training needs labels: add a label "
                               "(or emotion) column naming each row's emotion")
        raise AUTableError(f"{name}: no usable rows{labelled} ({what}); use a table of measured faces "
                           "with AU values from 0 to 5")
    return selection


def scoring_selection(table: pd.DataFrame, classes: Sequence[str], columns: Sequence[str] = AU_COLUMNS,
                      name: str | None = None) -> Selection:
    """``select(scoring=True)``, raising one line when the table has no label or no such rows."""
    require_columns(table, columns)
    name = name or table_name(table)
    if "label" not in table.columns:
        raise AUTableError(f"{name} has no 'label' column; evaluation needs a labelled table")
    selection = select(table, classes, columns, scoring=True)
    if selection.n == 0 and table.attrs.get("answers_not_labels"):
        raise AUTableError(f"{name}: no labels to score against: {ANSWERS_NOT_LABELS}; add a label column")
    if selection.n == 0:
        raise AUTableError(f"{name}: no rows labelled {', '.join(classes)} to score "
                           f"({selection.summary()}); use a table with those emotions")
    return selection


@dataclass(frozen=True)
class TrainingSet:
    """The usable labelled rows of a table, without copying them: ``index`` (positions in
    ``table``), ``y`` (indices into ``classes``) and the selection that says what was left out."""

    table: pd.DataFrame
    classes: tuple[str, ...]
    columns: tuple[str, ...]
    index: np.ndarray
    y: np.ndarray
    selection: Selection
    name: str

    def X(self, positions: np.ndarray | None = None) -> np.ndarray:
        """float64 AUs of the training rows at ``positions`` (into ``index``; default all)."""
        rows = self.index if positions is None else self.index[positions]
        return values(self.table, rows, self.columns)

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.classes))
        return {c: int(counts[i]) for i, c in enumerate(self.classes)}

    @property
    def sources(self) -> list[str]:
        if "source" not in self.table.columns:
            return []
        return sorted({str(s) for s in self.table["source"].iloc[self.index].dropna().unique()})


def training_set(table: pd.DataFrame, classes: Sequence[str], columns: Sequence[str] = AU_COLUMNS,
                 name: str | None = None, min_per_class: int = 1) -> TrainingSet:
    """The rows a model may learn from, or one ``AUTableError`` line saying what is missing: AU
    columns, labels, usable rows (and why none), or ``min_per_class`` faces of each emotion."""
    classes = tuple(classes)
    name = name or table_name(table)
    require_columns(table, columns, what=name)
    if "label" not in table.columns:
        raise AUTableError(f"{name} has no 'label' column; training needs a labelled table")
    if len(classes) < 2:
        raise AUTableError(f"{name}: training needs at least two emotions; got {', '.join(classes) or 'none'}")
    selection = require_usable(table, classes, columns, name)
    labels = labels_of(table).to_numpy()[selection.index]
    y = pd.Categorical(labels, categories=list(classes)).codes.astype(np.int64)
    counts = np.bincount(y, minlength=len(classes))
    # Emotions are named in the current language (English in the CLI): the dashboard translates the
    # rest of these lines (``i18n.message``), but a list of names is not a template's words.
    absent = [c for i, c in enumerate(classes) if counts[i] == 0]
    if absent:
        present = sorted({str(label) for label in labels_of(usable(table, None, columns)).dropna()})
        raise AUTableError(f"{name}: no usable rows of {', '.join(emotion_labels(absent))}; choose emotions present "
                           f"in the table (it has {', '.join(emotion_labels(present))})")
    few = [f"{label} {counts[i]}" for i, label in enumerate(emotion_labels(classes)) if counts[i] < min_per_class]
    if few:
        raise AUTableError(f"{name}: training needs at least {min_per_class} usable faces of each emotion; "
                           f"{', '.join(few)}; add faces or choose other emotions")
    return TrainingSet(table, classes, tuple(columns), selection.index, y, selection, name)


def to_xy(table: pd.DataFrame, classes: Sequence[str], columns: Sequence[str] = AU_COLUMNS,
          ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Training data: ``X`` (n, len(columns)) of usable rows, ``y`` indices into ``classes``, and
    the rows themselves. Raises AUTableError naming what is missing."""
    ts = training_set(table, classes, columns)
    rows = table.iloc[ts.index]
    return ts.X(), ts.y, rows.assign(label=labels_of(rows))
