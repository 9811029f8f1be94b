"""Errors a user can act on: every message is one line naming what was wrong and what to do."""

from __future__ import annotations


class FerError(Exception):
    """Base class: the message is shown to the user as is (no traceback)."""


class ImageError(FerError):
    """An input file is not a usable image (corrupt, empty, too large, wrong type)."""


class NoFaceError(FerError):
    """No face was found where one was required."""


class ModelFileError(FerError):
    """A model file is missing, corrupt, of the wrong kind or fails its checksum."""


class AUTableError(FerError):
    """A table lacks the AU columns or labels it needs."""


class DatasetError(FerError):
    """A dataset folder is missing, unreadable or has no labelled images."""


class DockerUnavailable(FerError):
    """The Docker engine or the OpenFace image cannot be used."""
