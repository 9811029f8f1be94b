"""Edits of a model file's JSON for the damaged-model tests (shared by test_bad_models and test_au_model)."""

from __future__ import annotations

from collections.abc import Callable


def set_at(path: str, value) -> Callable[[dict], None]:
    """An edit setting one nested value: ``set_at("weights.0.2.3", nan)`` (dotted keys, list indices)."""
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
    return edit
