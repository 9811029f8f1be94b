"""Images -> AU table (one row per face), with a cache, worker processes, progress and cancel.

Failures never lose the batch: an unreadable file or a face-less image becomes a row with
``success = 0`` and a ``reason``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from . import au_mapping
from .aus import AU_CODES, AU_COLUMNS, TABLE_COLUMNS
from .config import CACHE_DIR
from .errors import FerError
from .images import LabeledImage, load_image

# Bump when detection or the cached measurements change, so old cache entries are not reused.
MEASURE_VERSION = "mp-3"
SOURCE = "mediapipe"

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


def measure_faces(analyzer, rgb: np.ndarray) -> list[dict]:
    """What the AU mapping needs of each face: box, confidence, blendshapes, geometry features."""
    out = []
    for face in analyzer.detect(rgb):
        out.append({
            **face.to_dict(),
            "blendshapes": {k: round(v, 8) for k, v in face.blendshapes.items()},
            "geometry": {k: round(v, 6) for k, v in au_mapping.geometry_features(face.landmarks).items()},
        })
    return out


def aus_from_measurement(m: dict) -> dict[str, float]:
    """AU columns ('AU01_r'…) of one measured face."""
    aus = au_mapping.aus_from_measurements(m["blendshapes"], m["geometry"])
    return {f"{code}_r": aus[code] for code in AU_CODES}


def rows_for_image(file: str, label: str | None, measured: list[dict] | str) -> list[dict]:
    """Table rows of one image: one per face, or one failure row carrying the reason."""
    base = {"file": file, "label": label, "source": SOURCE}
    if isinstance(measured, str) or not measured:
        reason = measured if isinstance(measured, str) else "no face found"
        return [{**base, "face": 0, "success": 0, "confidence": 0.0, "reason": reason,
                 **{c: np.nan for c in AU_COLUMNS}}]
    return [{**base, "face": i, "success": 1, "confidence": m["confidence"], "reason": "",
             **aus_from_measurement(m)} for i, m in enumerate(measured)]


class MeasureCache:
    """SQLite cache of face measurements keyed by the file's content hash."""

    def __init__(self, path: Path | None = None):
        path = Path(path or CACHE_DIR / "measurements.sqlite")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, value TEXT)")

    def get_many(self, keys: Sequence[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            q = f"SELECT key, value FROM m WHERE key IN ({','.join('?' * len(chunk))})"
            found.update({k: json.loads(v) for k, v in self.db.execute(q, chunk)})
        return found

    def put_many(self, items: dict[str, object]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO m VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in items.items()])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def _content_key(path: Path) -> str:
    return MEASURE_VERSION + ":" + hashlib.sha1(path.read_bytes()).hexdigest()


_worker_analyzer = None


def _init_worker() -> None:
    """Each process measures with its one analyzer (started once, closed at exit)."""
    global _worker_analyzer
    from .faces import shared_analyzer

    _worker_analyzer = shared_analyzer()


def _measure_path(path: str) -> list[dict] | str:
    """Worker task: measurements, or the one-line reason the file failed (without the path: the
    row names the file, and the cache may serve the answer for a copy at another path)."""
    try:
        return measure_faces(_worker_analyzer, load_image(path, name="image"))
    except FerError as exc:
        return str(exc).removeprefix("image: ")


def extract_table(items: Iterable[LabeledImage], workers: int = 1, use_cache: bool = True,
                  progress: Progress | None = None, should_stop: ShouldStop | None = None) -> pd.DataFrame:
    """AU table of labelled images with the embedded MediaPipe extractor.

    Cancelling (``should_stop`` returning True) returns the rows finished so far.
    """
    items = list(items)
    total = len(items)
    cache = MeasureCache() if use_cache else None
    keys: list[str | None] = []
    for it in items:
        try:
            keys.append(_content_key(it.path))
        except OSError:
            keys.append(None)
    cached = cache.get_many([k for k in keys if k]) if cache else {}
    results: dict[int, list[dict] | str] = {}
    todo = []
    for i, (it, key) in enumerate(zip(items, keys)):
        if key is None:
            results[i] = f"{it.path}: cannot read file"
        elif key in cached:
            results[i] = cached[key]
        else:
            todo.append(i)
    done = total - len(todo)
    if progress:
        progress(done, total)
    fresh: dict[str, object] = {}
    try:
        for i, measured in _run_measurements([str(items[i].path) for i in todo], todo, workers):
            results[i] = measured
            fresh[keys[i]] = measured  # keyed by content: the same bytes give the same answer
            done += 1
            if progress:
                progress(done, total)
            if cache and len(fresh) >= 500:
                cache.put_many(fresh)
                fresh = {}
            if should_stop and should_stop():
                break
    finally:
        if cache:
            cache.put_many(fresh)
            cache.close()
    rows = []
    for i, it in enumerate(items):
        if i in results:
            rows.extend(rows_for_image(str(it.path), it.label, results[i]))
    return _as_table(rows)


def _run_measurements(paths: list[str], indices: list[int], workers: int):
    if not paths:
        return
    if workers <= 1:  # in this process: reuse its analyzer rather than start MediaPipe per call
        _init_worker()
        for i, p in zip(indices, paths):
            yield i, _measure_path(p)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for i, measured in zip(indices, pool.imap(_measure_path, paths, chunksize=16)):
            yield i, measured


def _as_table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table["success"] = table["success"].astype(int)
    table["face"] = table["face"].astype(int)
    return table


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
