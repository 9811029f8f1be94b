"""Reading files a user points at without surprises: only regular files, sizes checked before
reading, JSON strictly UTF-8 and shallow.

A model path may be a symlink to ``/dev/zero`` (endless), a FIFO (blocks for ever), a folder, a
file far larger than any model, text in another encoding, or JSON nested so deeply that parsing
it overflows Python's stack. Each of these ends here as one ``ModelFileError`` line naming the
file, before anything is read into memory.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import FerError, ModelFileError, article

MAX_ZIP_MEMBERS = 1000  # a Teachable Machine export or a .keras file holds 2-3 files
MAX_JSON_DEPTH = 64  # model files nest about 15 levels (a Keras config); 100,000 overflows the parser

_SPECIAL_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{max(1, round(n / 2**10))} KB"


def describe_special(mode: int) -> str | None:
    """What a file that is not regular is ("a folder", "a named pipe (FIFO)"), or None if regular."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((what for test, what in _SPECIAL_KINDS if test(mode)), "not a regular file")


def check_regular_file(path: str | os.PathLike[str], hint: str, max_bytes: int | None = None,
                       what: str = "file", error: type[FerError] = ModelFileError, label: str | None = None) -> int:
    """The size of ``path`` if it is a regular file (symlinks followed) of at most ``max_bytes``;
    otherwise ``error`` saying what it is instead, and ``hint``. Messages start with ``label``
    (default: the path)."""
    name = label or path
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{name}: file not found; {hint}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise error(f"{name}: cannot be read ({getattr(exc, 'strerror', None) or exc}); {hint}") from None
    _check_mode(name, info, hint, max_bytes, what, error)
    return info.st_size


def _check_mode(path, info: os.stat_result, hint: str, max_bytes: int | None, what: str,
                error: type[FerError]) -> None:
    special = describe_special(info.st_mode)
    if special:
        raise error(f"{path}: is {special}, not a regular file, so it is not read; {hint}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise error(f"{path}: {_mb(info.st_size)} is larger than {article(what)} {what} can be ({_mb(max_bytes)}); {hint}")


def open_regular_file(path: str | os.PathLike[str], hint: str, max_bytes: int | None = None, what: str = "file",
                      error: type[FerError] = ModelFileError, label: str | None = None) -> tuple[BinaryIO, int]:
    """``read_regular_file`` for files read as a stream (AU tables of millions of rows): the open
    binary file and its size, after the same checks on the path and on the open descriptor."""
    name = label or path
    check_regular_file(path, hint, max_bytes, what, error, label)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{name}: cannot be read ({exc.strerror or exc}); {hint}") from None
    try:
        info = os.fstat(fd)
        _check_mode(name, info, hint, max_bytes, what, error)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), int(info.st_size)
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, hint: str, what: str = "file",
                      error: type[FerError] = ModelFileError, label: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, checked before and while reading.

    Opened by ``open_regular_file`` (without blocking, checked again on the open descriptor);
    reading stops one byte past the limit.
    """
    name = label or path
    fh, _ = open_regular_file(path, hint, max_bytes, what, error, label)
    with fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{name}: cannot be read ({exc.strerror or exc}); {hint}") from None
    if len(data) > max_bytes:
        raise error(f"{name}: larger than {article(what)} {what} can be ({_mb(max_bytes)}); {hint}")
    return data


def decode_utf8(data: bytes, source: str, hint: str, error: type[FerError] = ModelFileError) -> str:
    """UTF-8 text (a leading byte-order mark allowed); other encodings are refused, not guessed."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        guess = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:64]:
            guess = ", it looks like UTF-16"
        raise error(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}{guess}); "
                    f"save it as UTF-8 or {hint}") from None


def parse_json(data: bytes | str, source: str, hint: str, max_depth: int = MAX_JSON_DEPTH,
               error: type[FerError] = ModelFileError, what: str = "") -> Any:
    """JSON from UTF-8 bytes (or text), refusing other encodings, bad syntax and deep nesting;
    ``what`` names the content in the syntax message ("manifest is not valid JSON")."""
    text = decode_utf8(data, source, hint, error) if isinstance(data, (bytes, bytearray)) else data
    if "\x00" in text[:64]:
        raise error(f"{source}: not UTF-8 text (it looks like UTF-16); save it as UTF-8 or {hint}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise error(f"{source}: JSON nested too deeply (more than {max_depth} levels); {hint}") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise error(f"{source}: {what + ' is ' if what else ''}not valid JSON ({_first_line(exc)}); {hint}") from None
    if json_depth(value, max_depth) > max_depth:
        raise error(f"{source}: JSON nested too deeply (more than {max_depth} levels); {hint}")
    return value


def read_json_file(path: str | os.PathLike[str], max_bytes: int, hint: str, what: str = "file",
                   max_depth: int = MAX_JSON_DEPTH, error: type[FerError] = ModelFileError) -> Any:
    """``read_regular_file`` then ``parse_json``."""
    return parse_json(read_regular_file(path, max_bytes, hint, what, error), str(path), hint, max_depth, error,
                      what)


def json_depth(value: Any, stop_after: int | None = None) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion;
    counting stops once ``stop_after`` is exceeded."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if stop_after is not None and deepest > stop_after:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def check_zip_members(data: bytes, source: str, hint: str, max_members: int = MAX_ZIP_MEMBERS,
                      error: type[FerError] = ModelFileError) -> None:
    """Refuse a zip whose directory lists more than ``max_members`` files, reading only its
    end record: ``zipfile`` would otherwise build an object per member first (a 64 MB zip
    can list 800,000 empty files, 400 MB of them). ``data``: the zip, or at least its last 64 KB."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - (22 + 0xFFFF)))
    if end < 0 or len(data) < end + 22:
        return  # no end record: zipfile will say the archive is damaged
    entries = struct.unpack_from("<H", data, end + 10)[0]
    if entries == 0xFFFF or entries > max_members:  # 0xFFFF: a ZIP64 archive, for more than 65,534
        raise error(f"{source}: the zip lists more than {max_members:,} files, which an export does not; {hint}")


def json_format_claims(fmt: str, max_bytes: int, **fields: str) -> Callable[[Path], bool]:
    """A model kind's ``claims`` for JSON files: a readable ``.json`` object whose ``format`` is
    ``fmt`` (and whose other ``fields`` have the given values, e.g. ``kind="au-mlp"``)."""
    def claims(path: Path) -> bool:
        if path.suffix.lower() != ".json" or not path.is_file():
            return False
        try:
            d = read_json_file(path, max_bytes, "")
        except FerError:
            return False
        return isinstance(d, dict) and d.get("format") == fmt and all(d.get(k) == v for k, v in fields.items())
    return claims
