"""What a bench script ends with: its result as indented JSON on stdout and, with ``--out``, in a
file (written whole or not at all), the form ``bench/results/*.json`` keep."""

from __future__ import annotations

import json

from fer_core.fileio import atomic_write_text


def report(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=1)
    if out:
        atomic_write_text(out, text + "\n")
    print(text)
