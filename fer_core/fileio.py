"""Writing files without surprises: outputs appear whole or not at all (reading is
``safe_files``'s).

Every writer (AU tables, model JSON, the manifest, sidecars) goes through ``atomic_output``: the
bytes go to a temporary file in the target's folder, which replaces the target only once it is
complete (``os.replace``), so a full disk or an interrupted run never leaves a half-written file.
Failures become one line naming the path (``OutputFileError`` or the reader's error class).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import OutputFileError, printable

if TYPE_CHECKING:
    import pandas as pd


def _umask() -> int:
    """The process's umask, read where Linux shows it: os.umask can only read it by setting it,
    which would briefly change it for every thread (the dashboard runs several)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


# -- writing ---------------------------------------------------------------------------------
def output_path(path: str | os.PathLike[str]) -> Path:
    """Where ``path`` will be written, checked before any work is done: not a folder, not a
    device, not under a regular file. Missing folders are created; a symlink is written through.
    Raises ``OutputFileError``."""
    target = Path(os.fsdecode(path))
    name = printable(str(target))
    if target.name in ("", ".", "..") or str(path).endswith(os.sep):
        raise OutputFileError(f"{name}: is a folder; give a file path to write to")
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        raise OutputFileError(f"{name}: {printable(str(_file_ancestor(target)))} is a file, not a folder; "
                              "choose another path") from None
    except OSError as exc:
        raise OutputFileError(f"{name}: cannot be written ({exc.strerror or exc}); choose another path") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputFileError(f"{name}: is a folder; give a file path inside it")
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise OutputFileError(f"{name}: not a regular file (a device, pipe or socket); write to a file instead")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputFileError(f"{name}: {printable(str(_file_ancestor(target)))} is a file, not a folder; "
                              "choose another path") from None
    except OSError as exc:
        raise OutputFileError(f"{name}: cannot create the folder {printable(str(target.parent))} "
                              f"({exc.strerror or exc}); choose another path") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):  # said now, not after the measuring or fitting
        raise write_error(target, OSError(errno.EROFS if _read_only_mount(target.parent) else errno.EACCES,
                                          "not writable"))
    return target


def _read_only_mount(folder: Path) -> bool:
    """Whether ``folder`` is on a file system mounted read-only (``write_error`` says so, not "permission")."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _file_ancestor(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a folder."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return path.parent


def write_error(path: str | os.PathLike[str], exc: OSError) -> OutputFileError:
    """One line for a failed write; nothing of it was left behind by the caller ("it was not written":
    a command writing several outputs has written the others)."""
    name = printable(os.fsdecode(path))
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputFileError(f"{name}: no space left on the disk; free some space or write elsewhere "
                               "(it was not written)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OutputFileError(f"{name}: permission denied; write to a folder you can write to")
    if exc.errno == errno.EROFS:
        return OutputFileError(f"{name}: the file system is read-only; write elsewhere")
    return OutputFileError(f"{name}: could not be written ({exc.strerror or exc}); it was not written")


def _open_written(fd: int) -> BinaryIO:
    """The temporary file as a binary file object (one seam, where tests make the disk full)."""
    return os.fdopen(fd, "wb")


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file in the same folder that replaces
    ``path`` only when the block ends without an error. On any error the temporary file is removed
    and the old ``path`` (if any) is untouched; OS errors become ``OutputFileError``."""
    target = output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=PART_SUFFIX)
    except OSError as exc:
        raise write_error(target, exc) from None
    try:
        hold_while_written(fd)
        with _open_written(fd) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(target, exc) from None
        raise


PART_SUFFIX = ".part"  # atomic_output's temporary files: .<name>.<8 random characters>.part
STALE_PART_SECONDS = 3600  # a temporary file unchanged this long, and held by no writer, was left by a killed one


def hold_while_written(fd: int) -> None:
    """Lock the temporary file (or folder) while it is written (released when it is closed, or its writer dies),
    so that ``remove_stale_parts`` can tell a live writer's file from one a killed writer left."""
    with suppress(ImportError, OSError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_parts(path: str | os.PathLike[str], older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove the temporary files that writes of ``path`` left when they were killed half way
    (``atomic_output`` removes its own on any error it lives to see, but not after kill -9 or a
    power loss): those beside ``path`` named as its writes name them, unchanged for ``older_than``
    seconds and locked by no writer (a live one holds its lock). Returns the files removed; a file
    it cannot check is left (tidying never fails a save; without ``fcntl`` nothing is removed)."""
    try:
        import fcntl
    except ImportError:
        return []
    target = Path(os.fsdecode(path))
    own = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}" + re.escape(PART_SUFFIX))
    removed: list[Path] = []
    try:
        candidates = [entry.name for entry in os.scandir(target.parent) if own.fullmatch(entry.name)]
    except OSError:
        return removed
    for name in candidates:
        part = target.parent / name
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            folder = stat.S_ISDIR(info.st_mode)  # a folder written whole, then renamed (a Teachable import)
            if (folder or stat.S_ISREG(info.st_mode)) and time.time() - _last_change(part, info) >= older_than:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a writer holds it
                if folder:
                    shutil.rmtree(part)
                else:
                    os.unlink(part)
                removed.append(part)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _last_change(part: Path, info: os.stat_result) -> float:
    """When ``part`` last changed: a folder's own time moves only when its entries come and go,
    so a file in it still being written counts too."""
    if not stat.S_ISDIR(info.st_mode):
        return info.st_mtime
    with os.scandir(part) as entries:
        return max([info.st_mtime, *(entry.stat(follow_symlinks=False).st_mtime for entry in entries)])


def _mode_for(target: Path) -> int:
    """The replaced file's permissions, or what open() would give a new one (mkstemp makes it private)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see ``atomic_output``); returns the path written."""
    target = output_path(path)
    with atomic_output(target) as fh:
        fh.write(data)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``source`` copied to ``path`` whole or not at all (see ``atomic_output``): a model saved by
    copying (a trained CNN, its TensorFlow Lite twin) is never left cut off under its name."""
    import shutil

    target = output_path(path)
    with open(source, "rb") as src, atomic_output(target) as fh:
        shutil.copyfileobj(src, fh, 1 << 20)
    return target


# The tables ``write_frame`` writes, by the name's ending (which chooses the format): CSV, CSV
# compressed with gzip, bzip2 or xz, or Parquet.
TABLE_FORMATS: dict[str, str] = {".csv": "csv", ".csv.gz": "gzip", ".csv.bz2": "bz2", ".csv.xz": "xz",
                                 ".parquet": "parquet"}
TABLE_ENDINGS: tuple[str, ...] = tuple(TABLE_FORMATS)


def table_output_path(path: str | os.PathLike[str], what: str = "a table's name") -> Path:
    """``output_path`` for a table, whose ending must name its format (``TABLE_ENDINGS``): au.xlsx
    or au.pq written as CSV would be a file the program the name promises cannot open. ``what``
    names the path in the message (the CLI's option). Raises ``OutputFileError``."""
    target = output_path(path)
    if _table_format(target) is None:
        raise OutputFileError(f"{printable(os.fsdecode(path))}: {what} must end with {', '.join(TABLE_ENDINGS)} "
                              "(the ending chooses the format: CSV, compressed CSV or Parquet)")
    return target


def _table_format(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for ending, fmt in TABLE_FORMATS.items() if name.endswith(ending)), None)


# A spreadsheet (Excel, LibreOffice, Google Sheets) runs a cell that begins with one of these as a
# formula (OWASP "CSV injection"): a file or class name such as =HYPERLINK(...) must stay text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, with a leading ``'`` (shown as text, the
    OWASP remedy); numbers, and text that is a plain number (``-0.5``), are left as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``formula_safe`` text cells and column names (a copy; numeric columns untouched)."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
            out[column] = out[column].map(formula_safe)
    out.columns = [formula_safe(c) for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame, index: bool = False) -> bytes:
    """A table as the UTF-8 CSV every download of the dashboard gives, safe to open in a
    spreadsheet (``spreadsheet_safe``): user-chosen names are data there, never formulas. It
    starts with a byte-order mark: without one, Excel reads a CSV in the system's code page (CP949
    on a Korean Windows), and Korean file names and emotion words came out garbled. pandas, R's
    readr and this workbench read it as plain UTF-8."""
    return spreadsheet_safe(frame).to_csv(index=index).encode("utf-8-sig")


def write_frame(frame, path: str | os.PathLike[str]) -> Path:
    """A pandas table as CSV (``.csv.gz``, ``.csv.bz2``, ``.csv.xz`` compress; text a spreadsheet
    would run as a formula made safe, ``spreadsheet_safe``) or Parquet (``.parquet``), by the
    ending (``table_output_path``), whole or not at all (``atomic_output``), creating the folder.
    Raises ``OutputFileError``."""
    target = table_output_path(path)
    fmt = _table_format(target)
    remove_stale_parts(target)  # a table write killed with SIGKILL left its hidden part file (gigabytes, for a large one)
    with atomic_output(target) as fh:
        if fmt == "parquet":
            frame.to_parquet(fh, index=False)
        else:
            method = None if fmt == "csv" else fmt
            spreadsheet_safe(frame).to_csv(fh, index=False, encoding="utf-8",
                         compression={"method": method, "mtime": 0} if method == "gzip" else method)
    return target
