"""Images -> AU table (one row per face): the local engine, with a cache, worker processes,
progress and cancel. ``measure_faces`` is the one route from a face to its AUs: the CLI, the
dashboard, evaluation and every predictor go through it, so the same face gives the same AUs.

Failures never lose the batch: an unreadable file or a face-less image becomes a row with
``success = 0`` and a ``reason``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np
import pandas as pd

from .. import au_table, config
from ..au_table import AU_COLUMNS
from ..errors import FerError, ImageError, one_line, printable
from ..images import LabeledImage, SkippedFile, file_pixel_scale, relative_file
from ..safe_files import read_regular_file
from .tasks import (  # noqa: F401  (the worker side lives there, without pandas; re-exported)
    NO_FACE_REASON,
    FaceMeasurement,
    _init_worker,
    _measure_path,
    _measure_task,
    _pool,
    content_digest,
    measure_faces,
    measure_image,
    measure_masked_image,
    measurement_of,
    start_photo_worker,
)
from .workers import WorkerFailure

log = logging.getLogger(__name__)

# Bump when detection or the cached measurements change, so old cache entries are not reused.
# mp-7: small images in face-crop mode (landmarker.FaceAnalyzer.detect, crop_models).
# mp-8: face-crop mode's fallback runs the upscaled, padded retries directly, without the graph.
# mp-9: a large image measured as a crop (--crops) is gated and re-measured as the full search does
#       (small crops measure as in mp-8); 16-bit files scaled by their bit depth, transparent
#       colours of gray and RGB PNGs on white, images with a damaged EXIF block turned.
# mp-10: the pages after an animation's or a multi-page TIFF's first are no longer read (a damaged
#        later page failed the whole file before).
# mp-11: a face whose box lies mostly within a larger face's (an eye and brow, a mouth) is no face of
#        its own; in a large crop (--crops) a face spanning under a third of it is a part of the face.
# mp-12: crop mode keeps the full search's faces; a part of a face is dropped after the quality gate only.
# mp-13: photos of 768 px or more on their shorter side are also searched in quarter-side tiles, and a
#        face's detection score is the best its tiles give (small faces in large photos were missed).
# mp-14: a face the detector is unsure of in a photo is looked for in the photo turned over too, and
#        measured there when found surely (an upside-down face had its mesh fitted as if upright).
# mp-15: a square picture of 160 px or more whose only faces are small and unsure is also searched as
#        --crops searches a crop, and a face filling it is measured instead (a nose taken for a face).
# mp-16: a face lying on its side in a photo (a quarter turn lost with its EXIF) is measured in the photo
#        turned a quarter, and a photo with no face found is searched so too.
MEASURE_VERSION = "mp-16"
# New measurements go into the cache every 500 images, and at least this often: a run killed with
# SIGKILL (the OOM killer) loses at most this much work, not up to 499 images'.
CACHE_FLUSH_S = 30.0
# --crops keys: a --crops image of 160 px or more in which nothing found a face is now measured once
# more shrunk to 144 px (the small-crop path). Only those keys change ("crops2"): every other cached
# measurement, and a Ray run's resume record, stay as they were.
CROPS_KEY = "crops2"
SOURCE = "mediapipe"

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


def rows_for_image(file: str, label: str | None, measured: list[FaceMeasurement] | str,
                   masked: bool = False, bare: Sequence[int] = (), pixel_scale: float = 1.0) -> list[dict]:
    """Table rows of one image: one per face, or one failure row carrying the reason. ``masked``:
    the faces were measured under a mask, so the AUs it hides are left empty (unknown); faces in
    ``bare`` got no mask (it could not be placed on them) and are failure rows, not masked faces.
    ``masked`` is 1 on the rows of faces a mask was drawn on, and only there. Each face's box is
    given in the file's pixels: ``pixel_scale`` of them to a measured pixel
    (``images.file_pixel_scale``), so a group photo's rows can be told apart and drawn."""
    base = {"file": file, "label": label, "source": SOURCE, "masked": 0}
    if isinstance(measured, str) or not measured:
        reason = measured if isinstance(measured, str) else NO_FACE_REASON
        return [{**base, "face": 0, "success": 0, "confidence": np.nan, "reason": reason,
                 **{c: np.nan for c in AU_COLUMNS}}]

    def box(m: FaceMeasurement) -> dict[str, float]:
        return {c: round(float(v) * pixel_scale, 1) for c, v in zip(au_table.BOX_COLUMNS, m.box, strict=True)}

    if masked:
        from ..masks import HIDDEN_AUS, MASK_NOT_PLACED_REASON

        hidden = {f"{code}_r" for code in HIDDEN_AUS}
        return [{**base, "face": i, "success": 0, "confidence": m.confidence, "reason": MASK_NOT_PLACED_REASON, **box(m),
                 **{c: np.nan for c in AU_COLUMNS}} if i in bare else
                {**base, "masked": 1, "face": i, "success": 1, "confidence": m.confidence, "reason": "", **box(m),
                 **{c: (np.nan if c in hidden else v) for c, v in m.aus().items()}} for i, m in enumerate(measured)]
    return [{**base, "face": i, "success": 1, "confidence": m.confidence, "reason": "", **box(m),
             **m.aus()} for i, m in enumerate(measured)]


def crop_like_no_face(table: pd.DataFrame, root: str | os.PathLike[str]) -> list[str]:
    """The images of an AU table (files relative to ``root``, a folder or the one image) with no
    face found that look like face crops (``images.looks_like_face_crop``): extracted without
    ``--crops``, they could be measured as crops."""
    from ..images import looks_like_face_crop

    rows = table[(table["success"] == 0) & (table["reason"] == NO_FACE_REASON) & table["time_s"].isna()]
    base = Path(root)
    folder = base.is_dir()
    return [f for f in dict.fromkeys(rows["file"]) if looks_like_face_crop(base / f if folder else base)]


CACHE_DIR_HINT = "set FER_CACHE_DIR to a folder this user may write"  # a read-only install's own .cache is not


def cache_writable(path: Path | None = None) -> bool:
    """Whether this run can keep what it measures in the cache (``MeasureCache``'s file, or the
    nearest folder above it that exists): an interrupted command goes on from there only then."""
    path = Path(path or config.cache_dir() / "measurements.sqlite")
    if str(path) in MeasureCache.gave_up:
        return False
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or (existing != path and not existing.is_dir()):  # a file where a folder must go
        return False
    return os.access(existing, os.W_OK)


class MeasureCache:
    """SQLite cache of face measurements keyed by the file's content hash. A cache that cannot be
    opened, read or written (a read-only or full disk, a damaged or locked file) is a speed-up lost,
    not a batch: one warning, and measuring goes on without it.

    What it holds is derived data about the people photographed (face boxes, blendshapes, AUs, and
    the models' answers on them: ``evaluation.answers``; no pixels, no file names), so no user
    outside its file's owner and group can read it (a lab sharing one gives the folder a group of
    its own), and ``forget`` and ``clear`` remove a study's measurements and answers for good
    (``python -m fer_core cache``)."""

    gave_up: ClassVar[set[str]] = set()  # the caches this process could not use (a command's summary says so)

    def __init__(self, path: Path | None = None):
        self.path = Path(path or config.cache_dir() / "measurements.sqlite")
        self.db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self.db = sqlite3.connect(str(self.path))
            self.db.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, value TEXT)")
            _private_to_group(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._give_up(exc)

    def count(self) -> int:
        """How many measurements it holds (not ``__len__``: an empty cache is still a cache)."""
        return int(self._read(f"SELECT COUNT(*) FROM m WHERE key NOT LIKE '{ANSWER_KEY}:%'")[0][0])

    def count_answers(self) -> int:
        """How many models' answers on faces it holds (``evaluation.answers``)."""
        return int(self._read(f"SELECT COUNT(*) FROM m WHERE key LIKE '{ANSWER_KEY}:%'")[0][0])

    def forget(self, digests: Iterable[str]) -> tuple[int, int]:
        """Remove every measurement of the files whose contents ``content_digest`` names (an image's,
        as a face crop too, and each part of a video's) and every model's answer on them, their
        bytes overwritten in the file; how many. One pass over the keys, whatever the number of files."""
        wanted = set(digests)
        doomed = [key for (key,) in self._read("SELECT key FROM m")
                  if any(part in wanted for part in _DIGEST_IN_KEY.findall(key))]
        self._delete(doomed)
        return _measurements_and_answers(doomed)

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            self._write(f"DELETE FROM m WHERE key IN ({','.join('?' * len(chunk))})", chunk)
        self._compact()

    def stale(self) -> list[str]:
        """The keys of measurements an older measuring code made (an earlier ``MEASURE_VERSION``: never
        served again, an upgrade leaves them behind) and of the models' answers on them. A newer
        version's (another checkout sharing the cache) is kept. Answers of an older workbench on
        measurements still current are not told apart (their key hashes the code): ``clear`` removes them."""
        current = _version_number(MEASURE_VERSION)
        return [key for (key,) in self._read("SELECT key FROM m")
                if (made := _version_number(_measured_by(key))) is not None and made < current]

    def count_stale(self) -> tuple[int, int]:
        """How many ``stale`` measurements and answers it holds."""
        return _measurements_and_answers(self.stale())

    def prune(self) -> tuple[int, int]:
        """Remove ``stale`` measurements and answers, their bytes overwritten in the file; how many of each."""
        doomed = self.stale()
        self._delete(doomed)
        return _measurements_and_answers(doomed)

    def clear(self) -> tuple[int, int]:
        """Remove every measurement and answer, their bytes overwritten in the file; how many of each."""
        counts = self.count(), self.count_answers()
        self._write("DELETE FROM m")
        self._compact()
        return counts

    def _read(self, sql: str) -> list[tuple]:
        return self._said(lambda db: db.execute(sql).fetchall())

    def _write(self, sql: str, args: Sequence = ()) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("PRAGMA secure_delete = ON")  # a deleted row's bytes are zeroed, not left in free pages
            db.execute(sql, args)
            db.commit()

        self._said(run)

    def _compact(self) -> None:
        """Shrink the file (VACUUM); the deleted rows are already overwritten if another run holds it."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("VACUUM")

    def _said(self, work):
        """``work(db)``, or a one-line FerError: a cache another run is writing is busy, not a bug."""
        if self.db is None:
            raise FerError(f"{printable(str(self.path))}: the measurement cache could not be opened; delete the "
                           "file to start an empty one")
        try:
            return work(self.db)
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):  # not busy: this user may read it but not change it
                raise FerError(f"{printable(str(self.path))}: this user may not change the measurement cache (its "
                               "owner, or a member of its group with write access, can)") from None
            raise FerError(f"{printable(str(self.path))}: {one_line(exc)}; another run may be using the cache: "
                           "try again when it has finished") from None

    def _give_up(self, exc: Exception) -> None:
        MeasureCache.gave_up.add(str(self.path))
        unwritable = any(w in str(exc).lower() for w in ("readonly", "read-only", "unable to open", "permission",
                                                          "not a directory"))
        log.warning("measurement cache %s not used: %s%s", printable(str(self.path)), one_line(exc),
                    f"; {CACHE_DIR_HINT}" if unwritable else "")
        self.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        if self.db is None:
            return found
        try:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                q = f"SELECT key, value FROM m WHERE key IN ({','.join('?' * len(chunk))})"
                found.update({k: json.loads(v) for k, v in self.db.execute(q, chunk)})
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged JSON value
            self._give_up(exc)
            return {}
        return found

    def put_many(self, items: dict[str, object]) -> None:
        if self.db is None or not items:
            return
        try:
            self.db.executemany("INSERT OR REPLACE INTO m VALUES (?, ?)",
                                [(k, json.dumps(v)) for k, v in items.items()])
            self.db.commit()
        except sqlite3.Error as exc:
            self._give_up(exc)

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None


def measure_settings() -> str:
    """What decides a file's measurement besides its bytes and the measuring code's version:
    a face landmarker of the user's own (``FER_LANDMARKER_MODEL``, by its checksum) and image
    limits moved from their defaults ("" when neither is set). Part of every cache key, so a
    measurement made under other settings is not served for these."""
    from ..images import decode_settings
    from .landmarker import MODEL_ENV

    parts = [decode_settings()]
    model = os.environ.get(MODEL_ENV)
    if model:
        try:
            parts.append(hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16])
        except OSError:
            parts.append("unreadable model")  # never a key of a real measurement: the workers fail
    return "+".join(p for p in parts if p)


def cache_version(settings: str | None = None) -> str:
    """The start of every cache key, an image's or a video's: the measuring code's version and
    ``measure_settings()``."""
    settings = measure_settings() if settings is None else settings
    return MEASURE_VERSION + (f"+{settings}" if settings else "")


# The start of a model's answer's key ("answer:<model>:<the face's measurement key>"): beside the
# measurements, so that forgetting a file's measurements forgets what models said of it too.
ANSWER_KEY = "answer"
# The content digests in a cache key ("mp-13:crops2:<sha1>", "mp-13:video:10:<sha1>:0.000:60.000").
_DIGEST_IN_KEY = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


def _version_number(version: str) -> int | None:
    """12 of "mp-12"; None for what is no measuring code's version (kept by ``prune``: a newer
    checkout sharing the cache writes versions above this one's, which it must not remove)."""
    match = re.fullmatch(r"mp-(\d+)", version)
    return int(match.group(1)) if match else None


def _measured_by(key: str) -> str:
    """The ``MEASURE_VERSION`` that made a cache key's measurement ("mp-13" of "mp-13+limits:crops2:<sha1>"
    and of an answer on it, "answer:<model>:mp-13:<sha1>")."""
    if key.startswith(f"{ANSWER_KEY}:"):
        key = key.split(":", 2)[-1]
    return key.split(":", 1)[0].split("+", 1)[0]


def _measurements_and_answers(keys: Sequence[str]) -> tuple[int, int]:
    answers = sum(1 for key in keys if key.startswith(f"{ANSWER_KEY}:"))
    return len(keys) - answers, answers


def _private_to_group(path: Path) -> None:
    """Take the other users' access away from a file this process owns (a cache made before this
    rule, or under the usual umask, was readable by every user of the machine). In a folder its
    group may write (a lab's shared cache: ``chmod 2770``), the group may write the file too, else
    its other members could read every measurement and forget none."""
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid != os.getuid():
            return
        shared = path.parent.stat().st_mode & 0o020
        wanted = (info.st_mode & 0o770) | (0o060 if shared else 0)
        if wanted != info.st_mode & 0o777:
            path.chmod(wanted)


def content_key(path: Path, crop: bool = False, settings: str | None = None) -> str:
    """The cache key of a file: its bytes (a regular file within the image size limit only),
    whether it was measured as a face crop whatever its size, and ``measure_settings()``."""
    from ..images import MAX_FILE_BYTES

    data = read_regular_file(path, MAX_FILE_BYTES, "give an image file", what="image file", error=ImageError)
    return cache_version(settings) + (f":{CROPS_KEY}:" if crop else ":") + content_digest(data)


def run_tasks(args: Sequence, workers: int = 1, progress: Progress | None = None) -> dict[int, object]:
    """Results of worker tasks (see ``_measure_task``) by index; a crashed task gives its reason."""
    return {i: str(r) if isinstance(r, WorkerFailure) else r for i, r in iter_tasks(args, workers, progress)}


def iter_tasks(args: Sequence, workers: int = 1, progress: Progress | None = None) -> Iterator[tuple[int, object]]:
    """(index, result) of worker tasks as they finish, so a caller can write and drop each large
    result (a masked photo) instead of holding them all. A task whose worker crashed, timed out or
    failed gives its reason as a ``WorkerFailure`` (a str), so that a caller can tell it from a
    file the task could not read (the mask report files them apart)."""
    if not args:
        return
    pool = _pool("measure", workers)
    with pool.held():
        for done, (i, result) in enumerate(pool.imap_unordered(list(args)), 1):
            if progress:
                progress(done, len(args))
            yield i, result


def measurements_of(cached: list[dict] | str) -> list[FaceMeasurement] | str:
    return cached if isinstance(cached, str) else [FaceMeasurement.from_cache(d) for d in cached]


def extract_table(items: Iterable[LabeledImage], workers: int = 1, use_cache: bool = True,
                  progress: Progress | None = None, should_stop: ShouldStop | None = None,
                  root: str | os.PathLike[str] | None = None, skipped: Sequence[SkippedFile] = (),
                  mask: str | None = None, mask_seed: int = 0, crops: bool = False) -> pd.DataFrame:
    """AU table of labelled images with the embedded MediaPipe extractor.

    ``file`` holds each path relative to ``root`` when given (so the table travels), with bytes
    that are not UTF-8 escaped (``caf\\xff.jpg``). Files the folder listing ``skipped`` get a
    failure row each, so the table accounts for every file. ``mask`` (a style): each face gets a
    drawn mask first and is measured under it (``masked`` = 1, hidden AUs empty; not cached).
    ``crops``: every image is a face crop, measured in face-crop mode whatever its size (images
    under ``landmarker.SMALL_IMAGE_SIDE`` always are). Cancelling (``should_stop`` returning
    True) returns the rows finished so far. Rows are in ``file_order_key`` order, each image's
    faces largest first: the same table whatever the order of ``items`` or the number of workers.
    """
    items = list(items)
    if mask:
        from ..masks import MaskedMeasure, style_of

        style_of(mask)
        done = run_tasks([("mask", str(it.path), mask, mask_seed) for it in items], workers, progress)
        results = {i: r.masked if isinstance(r, MaskedMeasure) else r for i, r in done.items()}
        bare = {i: r.bare for i, r in done.items() if isinstance(r, MaskedMeasure)}
    else:
        results = measure_items(items, workers, use_cache, progress, should_stop, crops=crops)
    from ..masks import drawn_mask_of

    listed: list[tuple[str, list[dict]]] = []
    for i, it in enumerate(items):
        if i in results:
            file = printable(relative_file(it.path, root))
            # an image mask wrote: measured as it is, what the mask hides left unknown
            masked = bool(mask) or drawn_mask_of(it.path) is not None
            listed.append((file, rows_for_image(file, it.label, results[i], masked, bare.get(i, ()) if mask else (),
                                                pixel_scale=box_scale(it.path, results[i]))))
    listed += [(s.file, rows_for_image(s.file, s.label, s.reason)) for s in skipped]
    listed.sort(key=lambda entry: file_order_key(entry[0]))
    return au_table.from_rows([row for _, image_rows in listed for row in image_rows])


def box_scale(path, measured: list[FaceMeasurement] | str) -> float:
    """``images.file_pixel_scale`` where a face was found (a header read; no face, no box)."""
    return file_pixel_scale(path) if measured and not isinstance(measured, str) else 1.0


def file_order_key(file: str) -> tuple[str, ...]:
    """Where a table's ``file`` goes: sorted by its folders, then its name, as a listing sorts
    them, so the rows of a folder (skipped files' rows among them) come in the same order
    whatever order the caller or the file system gave the files in."""
    return PurePosixPath(file).parts


def measure_items(items: Sequence[LabeledImage], workers: int = 1, use_cache: bool = True,
                  progress: Progress | None = None, should_stop: ShouldStop | None = None,
                  crops: bool = False) -> dict[int, list[FaceMeasurement] | str]:
    """Measurements of each item (by index): its faces, largest first, or the one-line reason it
    failed. Cached by file content; ``workers`` > 1 measures in spawned processes. Items not
    reached before ``should_stop`` are missing. ``crops``: see ``extract_table``."""
    total = len(items)
    cache = MeasureCache() if use_cache else None
    keys: list[str | None] = []
    failed: dict[int, str] = {}
    settings = measure_settings()
    for i, it in enumerate(items):
        try:
            keys.append(content_key(it.path, crops, settings))
        except ImageError as exc:
            keys.append(None)
            failed[i] = str(exc).removeprefix(f"{it.path}: ")
    cached = cache.get_many([k for k in keys if k]) if cache else {}
    results: dict[int, list[dict] | str] = {}
    todo = []
    for i, key in enumerate(keys):
        if key is None:
            results[i] = failed.get(i, "cannot read file")
        elif key in cached:
            results[i] = cached[key]
        else:
            todo.append(i)
    done = total - len(todo)
    if progress:
        progress(done, total)
    fresh: dict[str, object] = {}
    flushed = time.monotonic()
    try:
        tasks = [("keyed", str(items[i].path), crops, keys[i].rsplit(":", 1)[1]) for i in todo]
        for i, measured in _run_measurements(tasks, todo, workers):
            if isinstance(measured, WorkerFailure):  # a crash or a timeout may not repeat: not cached
                results[i] = str(measured)
            else:
                cacheable, results[i] = measured
                if cacheable:  # keyed by content: the same bytes give the same answer
                    fresh[keys[i]] = results[i]
            done += 1
            if progress:
                progress(done, total)
            if cache and (len(fresh) >= 500 or (fresh and time.monotonic() - flushed > CACHE_FLUSH_S)):
                cache.put_many(fresh)
                fresh, flushed = {}, time.monotonic()
            if should_stop and should_stop():
                break
    finally:
        if cache:
            cache.put_many(fresh)
            cache.close()
    return {i: measurements_of(r) for i, r in results.items()}


def _run_measurements(paths: list, indices: list[int], workers: int):
    """Measure in crash-isolated worker processes, so a native abort on one image (MediaPipe and
    OpenCV have them) costs that image, not the batch or the dashboard's server."""
    if not paths:
        return
    pool = _pool("measure", workers)
    with pool.held():
        for j, measured in pool.imap_unordered(paths):
            yield indices[j], measured


def default_workers() -> int:
    """One measuring worker per usable CPU, up to 2 (the dashboard shares the machine; --workers
    sets more)."""
    return min(2, config.usable_cpus())
