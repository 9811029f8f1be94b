"""Errors a user can act on: every message is one line naming what was wrong and what to do."""

from __future__ import annotations

import re


class FerError(Exception):
    """Base class: the message is shown to the user as is (no traceback). ``advice``: what to do
    about it as trusted Markdown (a layout with `code`), which the dashboard shows as written
    after the message; the message itself names files as typed, so it is shown literally."""

    advice: str | None = None


class ImageError(FerError):
    """An input file is not a usable image (corrupt, empty, too large, wrong type)."""


class ModelFileError(FerError):
    """A model file is missing, corrupt, of the wrong kind or fails its checksum."""


class ModelNotFoundError(ModelFileError):
    """No model of that name in the manifest and no file at that path: a typo, known before any
    image is measured (``compare`` refuses it up front; a broken file is said after the others ran)."""


class AUTableError(FerError):
    """A table lacks the AU columns or labels it needs."""


class DatasetError(FerError):
    """A dataset folder is missing, unreadable or has no labelled images."""


class OutputFileError(FerError):
    """A result cannot be written where asked (a folder, a path under a file, no permission, disk full)."""


class StoppedBeforeAnEpoch(FerError):
    """A training's Stop came before its first epoch finished: no trained network to keep."""


class DockerUnavailable(FerError):
    """The Docker engine or the OpenFace image cannot be used."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KERAS_WRAPPER = "Exception encountered when calling"


def article(noun: str) -> str:
    """ "a" or "an" before ``noun`` in a message ("an image file", "an au-logreg model", "a manifest"),
    by its first letter."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def printable(text: str) -> str:
    """``text`` safe to print, write and show: a file name that is not valid UTF-8 reaches Python
    with its bad bytes as lone surrogates, which no encoder accepts; they become ``\\xff``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
            if _only_escapes(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _only_escapes(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def one_line(exc: BaseException | str, limit: int = 400) -> str:
    """The message of ``exc`` on one line, cut to ``limit`` characters: how every layer shows a
    failure to a person.

    A ``FerError`` already says what to do and is kept whole. Other exceptions give their type
    and the telling line of their message: Keras wraps errors raised inside layers as "Exception
    encountered when calling …" (with terminal colours) above the real message, so that line is
    skipped.
    """
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, FerError):
        text = str(exc)
    else:
        lines = [_ANSI.sub("", line).strip() for line in str(exc).splitlines()]
        lines = [line for line in lines if line and not line.startswith(_KERAS_WRAPPER)]
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit - 1] + "…"
