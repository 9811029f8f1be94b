"""The 17 OpenFace intensity Action Units and the AU-table schema every backend produces."""

from __future__ import annotations

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

# Columns of an AU table besides the AUs; `reason` is empty when extraction succeeded.
META_COLUMNS: tuple[str, ...] = ("file", "face", "label", "success", "confidence", "source", "reason")
TABLE_COLUMNS: tuple[str, ...] = META_COLUMNS + AU_COLUMNS


def au_code(column: str) -> str:
    """'AU12_r' -> 'AU12'."""
    return column.strip().split("_")[0]


def au_label(column_or_code: str) -> str:
    """'AU12_r' -> 'AU12 lip corner puller', the form shown to people."""
    code = au_code(column_or_code)
    return f"{code} {AU_NAMES.get(code, '')}".strip()
