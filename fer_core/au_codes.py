"""The 17 OpenFace intensity AUs and their table columns, on their own: ``au_table`` (pandas)
re-exports them, and a measuring worker process needs them without pandas."""

from __future__ import annotations

AU_CODES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
AU_COLUMNS: tuple[str, ...] = tuple(f"{code}_r" for code in AU_CODES)
