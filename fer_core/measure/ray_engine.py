"""Images -> AU table on a Ray cluster: the same table as the local engine (``extract.py``), for
folders too large for one machine.

A Ray Data pipeline runs over the file list; one measuring actor per CPU loads MediaPipe once and
turns each file into rows through the local engine's own route (``extract._measure_path`` and
``extract.rows_for_image``), so the same image gives the same row on either engine. Nothing is
lost: a file that fails is a failure row with its reason; a batch whose actor died is retried on a
restarted actor, and a file that kills its actor on every try is measured again on its own and,
if it still does, becomes a failure row. Finished rows are written to part files beside the output
(``<out>.parts/``) as they arrive, so an interrupted run keeps them and a rerun skips every file
whose rows are already in the output or its parts. A record beside the output
(``<out>.ray.json``: the folder, the class filter and the measuring code's version) makes sure
those rows are this folder's: a run into an output another folder or version wrote is refused.
One run at a time writes an output: a lock file beside it (``<out>.lock``) refuses a second.

Ray is optional (``requirements-ray.txt``): only this module imports it, and only when called.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import au_table, fileio
from ..errors import FerError, one_line, printable
from ..images import CONVERT_ADVICE, UNDECODED_REASON, UNOPENED_REASONS, LabeledImage, SkippedFile, relative_file
from ..masks import drawn_mask_of
from . import extract
from .tasks import CRASH_REASON
from .workers import THREAD_VARS as WORKER_THREAD_VARS

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]

# One thread each: an actor per CPU, so libraries that size their pools to the machine would
# otherwise run CPUs x CPUs threads (the variables the local engine's workers set).
THREAD_VARS: dict[str, str] = dict.fromkeys(WORKER_THREAD_VARS, "1")
INSTALL_HINT = "the Ray engine needs Ray: pip install -r requirements-ray.txt"
BATCH_SIZE = 16  # files per actor call: enough to hide Ray's per-task cost, small enough to retry
FLUSH_ROWS = 256  # rows kept in memory before they are written to a part file
TASK_RETRIES = 2  # tries of a batch after its actor died, before its files are tried one by one


class OutputInUse(FerError):
    """Another run holds the output's lock (``one_run``): the dashboard says it in its own words."""


@dataclass
class RayRun:
    """What a Ray extraction did: the whole table (resumed rows included) and its counts."""

    table: pd.DataFrame
    measured: int  # files measured by this run
    resumed: int  # files whose rows were already in the output or its parts
    workers: int  # measuring actors
    seconds: float  # wall time of the measuring, actors' start included (starting or joining Ray excluded)
    cancelled: bool = False  # stopped early: the output is not written, its rows wait in the parts
    dropped: int = 0  # files no longer in the folder whose rows the output held, left out of it
    changed: int = 0  # files with rows in the output, changed since they were written: measured again


class MeasuringActor:
    """One per CPU: MediaPipe loaded once, batches of files (``path``, ``file``, ``label``) in,
    AU-table rows out."""

    def __init__(self) -> None:
        for name, value in THREAD_VARS.items():
            os.environ.setdefault(name, value)
        extract._init_worker()  # MediaPipe kept offline there, as in a local worker

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows: list[dict] = []
        for path, file, label in zip(batch["path"], batch["file"], batch["label"], strict=True):
            measured = extract.measurements_of(extract._measure_path(path))
            rows.extend(extract.rows_for_image(file, label or None, measured, drawn_mask_of(path) is not None,
                                               pixel_scale=extract.box_scale(path, measured)))
        return au_table.from_rows(rows)


def available() -> bool:
    """Whether Ray can be imported here (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def runtime_env() -> dict:
    """What every Ray worker gets: this checkout's ``fer_core`` (so a cluster runs the driver's
    code) and one thread per library."""
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)], "env_vars": dict(THREAD_VARS), "excludes": ["__pycache__", "*.pyc"]}


# HTTP/2's connection preface and an empty SETTINGS frame: a gRPC server, as Ray's GCS is, answers
# with a SETTINGS frame of its own (frame type 4, the fourth byte of its 9-byte header).
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def reachable(address: str, timeout_s: float = 1.0) -> bool:
    """Whether a Ray cluster answers at ``address`` (``host:port`` of its GCS; ``ray://`` clients
    and ``auto`` are assumed to), checked with a socket so nothing imports Ray. The port must
    speak gRPC: ``ray.init`` on a port where something else listens (a web server) retried for
    ever, printing Ray's own logs."""
    import socket

    address = address.strip()
    if not address or address == "auto" or address.startswith("ray://"):
        return bool(address)
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(_HTTP2_HELLO)
            header = b""
            while len(header) < 9:
                chunk = conn.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
            return len(header) == 9 and header[3] == 4
    except (OSError, ValueError):
        return False


def cluster_address() -> str | None:
    """The Ray cluster the dashboard may offer (``RAY_ADDRESS``), when Ray is installed and the
    cluster answers; None otherwise, so the choice is not shown."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    return address if address and available() and reachable(address, timeout_s=0.5) else None


def resume_path(items: Sequence[LabeledImage]) -> Path:
    """Where the dashboard's Ray run over ``items`` writes, named by the files: a cancelled run
    is resumed by the next click on the same images."""
    import hashlib

    from .. import config

    digest = hashlib.sha1("\n".join(sorted(os.fsdecode(it.path) for it in items)).encode("utf-8", "backslashreplace"))
    return config.cache_dir() / "ray" / f"{digest.hexdigest()[:16]}.parquet"


def parts_dir(out: str | os.PathLike[str]) -> Path:
    """The folder beside the output where an unfinished run keeps its rows."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def record_path(out: str | os.PathLike[str]) -> Path:
    """The record beside the output of which run its rows belong to (``run_record``)."""
    out = Path(out)
    return out.with_name(out.name + ".ray.json")


def run_record(root: str | os.PathLike[str] | None, classes: str | None = None) -> dict[str, str]:
    """What rows must share to be resumed into one output: the folder they were listed from, the
    emotions the listing kept and the version of the measuring code."""
    from ..emotions import parse_classes

    folder = os.fsdecode(Path(root).resolve()) if root is not None else ""
    kept = ",".join(parse_classes(classes)) if classes else ""  # "Sad, happy" and "happy,sad" are one filter
    return {"folder": folder, "classes": kept, "measurement": extract.MEASURE_VERSION}


def foreign_rows(out: Path, record: dict[str, str]) -> str | None:
    """Why rows already at ``out`` (output or parts) cannot be resumed by a run with ``record``,
    or None when there are none or they come from such a run."""
    if not (out.exists() or parts_dir(out).exists()):
        return None
    try:
        previous = json.loads(record_path(out).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "rows without a Ray run's record (the local engine or an older version wrote them)"
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict) or not previous:
        return f"rows whose record {printable(record_path(out).name)} cannot be read"
    written = previous.pop("written", None)
    if written is not None and out.exists() and written != _stamp(out):
        # another table copied over it, or it was edited: resuming would replace it unsaid
        return "a table changed since the Ray run wrote it (another table written over it, or edited)"
    if previous == record:
        return None
    differs = {"folder": "of another folder", "classes": "listed with other --classes",
               "measurement": "measured by another version"}
    why = "rows " + " and ".join(text for key, text in differs.items() if previous.get(key) != record.get(key))
    if previous.get("folder") != record["folder"]:
        why += f" ({printable(str(previous.get('folder')))})"
    return why


def _claim(out: Path, record: dict[str, str]) -> None:
    """Write ``record`` beside ``out`` once rows already there are known to be this run's."""
    if why := foreign_rows(out, record):
        names = ", ".join(printable(p.name) for p in (out, parts_dir(out), record_path(out)) if p.exists())
        raise FerError(f"{printable(str(out))} already holds {why}; give this run its own --out, "
                       f"or remove {names} to measure afresh")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_record(out, record, keep_stamp=True)


def _stamp(out: Path) -> dict[str, int | str]:
    """The output as the run that wrote it left it (size and content digest), for ``foreign_rows``:
    a copy, a restore or ``touch`` keeps it; another table over it, or an edit, does not."""
    from ..manifest import sha256_file

    return {"size": out.stat().st_size, "sha256": sha256_file(out)}


def _write_record(out: Path, record: dict, keep_stamp: bool = False) -> None:
    """The run's record beside ``out``, stamped with the output when it is written (or, with
    ``keep_stamp``, with the stamp of the output a finished run left, while this one measures)."""
    record = dict(record)
    if out.exists():
        if keep_stamp:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                previous = json.loads(record_path(out).read_text(encoding="utf-8")).get("written")
                if previous is not None:
                    record["written"] = previous
        else:
            record["written"] = _stamp(out)
    record_path(out).write_text(json.dumps(record, indent=1), encoding="utf-8")


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file beside the output that the run writing it holds (``one_run``)."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


@contextlib.contextmanager
def one_run(out: Path) -> Iterator[None]:
    """Hold the output's lock for the whole run, or refuse at once: two runs into one output both
    measured every file, and the first to finish removed the parts the other was still writing.
    The lock file is removed by its holder; a run that opened it just before that takes the new one."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: one run per output is the user's to ensure
        yield
        return
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a folder that cannot be written: said before any measuring
            raise fileio.write_error(out, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputInUse(f"another run is writing {printable(str(out))}; wait for it or choose another "
                              "--out") from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it between our open and our lock: take the file there now
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held, so no one locks a removed file unseen
        os.close(fd)


def forget(out: str | os.PathLike[str]) -> None:
    """Remove an output with its parts and its record."""
    out = Path(out)
    out.unlink(missing_ok=True)
    record_path(out).unlink(missing_ok=True)
    shutil.rmtree(parts_dir(out), ignore_errors=True)


# Reasons that do not settle a file: its measuring process crashed (a crash may not repeat), or it
# could not be read or listed (it may be back, or readable, by the next run). The local engine
# measures such files again too (its cache keeps no answer that was not read from the file's bytes).
_UNSETTLED = (CRASH_REASON, *UNOPENED_REASONS)
# A file read but not decoded as an image (``UNDECODED_REASON``) is settled while it stays so, and
# measured again once it decodes (re-exported, as its error asks; ``_mended_files``).

def _unsettled(reasons: pd.Series) -> pd.Series:
    """Per row, whether its reason leaves the file to be measured again (``_UNSETTLED``; a format
    the listing skipped, "...; convert it to PNG or JPEG", too: the file may have been converted)."""
    text = reasons.fillna("").astype(str)
    return text.str.startswith(_UNSETTLED) | text.str.endswith(CONVERT_ADVICE)


def _finished(out: Path, written: dict[str, int] | None = None) -> list[pd.DataFrame]:
    """Rows already written: the parts of an unfinished run and the output (when there is one),
    each file's rows from one source only, the newest (a run stopped between writing the output and
    removing its parts left both; a file changed since it was measured has rows in an older and a
    newer source). A file whose measuring process crashed is measured again by the next run, as the
    local engine does (a crash may not repeat), so a source that measured it wins over one that
    holds only its crash row. ``written``, when given, gets each file's source's time (ns)."""
    parts = parts_dir(out)
    paths = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    paths += [out] if out.is_file() else []
    times = [path.stat().st_mtime_ns for path in paths]
    order = sorted(range(len(paths)), key=lambda k: -times[k])  # newest first; ties: parts, then the output
    sources = [au_table.read(paths[k]) for k in order]
    crash_only = []  # per source, the files it holds only an unsettled row for (a crash, unreadable)
    for table in sources:
        crashed = _unsettled(table["reason"])
        crash_only.append(set(table.loc[crashed, "file"]) - set(table.loc[~crashed, "file"]))
    chosen: dict[str, int] = {}
    for k, table in enumerate(sources):
        for file in set(table["file"]):
            if file not in chosen or (file in crash_only[chosen[file]] and file not in crash_only[k]):
                chosen[file] = k
    if written is not None:
        written.update((file, times[order[k]]) for file, k in chosen.items())
    return [table[table["file"].map(chosen).eq(k)] for k, table in enumerate(sources)]


def _changed_files(written: dict[str, int], paths: dict[str, str]) -> set[str]:
    """Files modified or replaced after the rows a rerun would keep were written (``paths``: file ->
    its path): measured again. Rows are matched by name, so a photo copied over another under the same name
    kept the old photo's AUs, where the local engine (its cache is by content) measures it anew."""
    changed, now = set(), time.time_ns()
    for file in sorted(set(written) & set(paths)):
        try:
            st = os.stat(paths[file])
        except OSError:  # gone since it was listed: nothing to tell
            continue
        # the change time too: cp -p, mv, rsync -a and unzip keep the old modification time
        modified = max(st.st_mtime_ns, st.st_ctime_ns)
        if written[file] < modified <= now:  # a time ahead of the clock (a camera's) says nothing
            changed.add(file)
    return changed


def _cut_short(table: pd.DataFrame) -> pd.Series:
    """Per row: a measured face without its box, or measured without a mask and its AUs not all
    there. This engine writes all 17 and the box for such a face, so the row was cut (a CSV
    output cut off mid-row, a copy stopped early) or written by a version before boxes: its file
    is measured again rather than kept with AUs or box missing (its faces could not be matched)."""
    full = table.reindex(columns=["success", "masked", *au_table.BOX_COLUMNS, *au_table.AU_COLUMNS])  # lost: missing
    measured = pd.to_numeric(full["success"], errors="coerce").fillna(0) > 0
    masked = pd.to_numeric(full["masked"], errors="coerce").fillna(0) > 0
    no_box = full[list(au_table.BOX_COLUMNS)].isna().any(axis=1)
    return measured & (no_box | (~masked & full[list(au_table.AU_COLUMNS)].isna().any(axis=1)))


def _mended_files(tables: list[pd.DataFrame], paths: dict[str, str]) -> set[str]:
    """Files whose rows say they could not be decoded and that decode now (``paths``: file ->
    its path): measured again. Checked here, where the folder was listed, so that a file still
    broken costs no Ray start; a corrupt photo replaced by a good one kept its failure row."""
    from ..images import load_image

    undecoded = {f for t in tables
                 for f in t.loc[t["reason"].fillna("").astype(str).str.match(UNDECODED_REASON), "file"]}
    mended = set()
    for file in sorted(undecoded & set(paths)):
        try:
            load_image(paths[file])
        except FerError:
            continue
        mended.add(file)
    return mended


def _done_files(tables: list[pd.DataFrame]) -> set[str]:
    """Files a rerun skips: those with rows, except the ones whose rows leave them unsettled
    (``_unsettled``: they crashed, or could not be read or listed; ``_cut_short``: a row lost AUs
    or its box)."""
    done = {f for t in tables for f in t["file"]}
    unsettled = {f for t in tables for f in t.loc[_unsettled(t["reason"]) | _cut_short(t), "file"]}
    return done - unsettled


def _connect(ray, address: str | None, workers: int | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray; True when this call started it
    (then it is shut down after the run). A Ray already started in this process is used as is."""
    if ray.is_initialized():
        return False
    import logging

    # Ray's warnings (token authentication on by default, ...) are no news to the user: errors only.
    quiet = {"runtime_env": runtime_env(), "logging_level": logging.ERROR, "log_to_driver": False}
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:  # MediaPipe's start-up lines stay in the workers' logs: a failure is a row with its reason
        with _utf8_entrypoint():
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        if address and _asks_for_token(exc):  # Ray says only "Failed to connect to Ray cluster"
            raise FerError(f"{where} asks for its token (Ray's token authentication): run with RAY_AUTH_MODE=token "
                           "and the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None
        raise FerError(f"could not start or join {where} ({one_line(exc, 160)})") from None
    finally:  # ray.init puts its own SIGTERM handler (sys.exit) in place of the command line's
        if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
    return True


def _asks_for_token(exc: BaseException | None) -> bool:
    """Whether joining failed because the cluster wants a token this machine did not send: a head
    started with token authentication (``ray start --head`` turns it on when a token exists there),
    joined by its address, which never turns it on here."""
    while exc is not None:
        if type(exc).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _utf8_entrypoint() -> Iterator[None]:
    """While Ray starts: the command line it records for its job list, escaped. Ray reads it back
    from the system and hands it to its core as UTF-8, so a folder name that is not UTF-8 on the
    command line (``extract $'photos\\xff'``) stopped ``ray.init`` with a UnicodeEncodeError."""
    try:
        from ray._private import utils
    except ImportError:
        utils = None
    original = getattr(utils, "get_entrypoint_name", None)
    if original is None:  # another Ray version: nothing to escape here
        yield
        return
    utils.get_entrypoint_name = lambda: printable(original())
    try:
        yield
    finally:
        utils.get_entrypoint_name = original


class _Parts:
    """Rows as they arrive, written to part files every ``FLUSH_ROWS`` rows (and when closed)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.run, self.seq, self.pending = folder, uuid.uuid4().hex[:8], 0, []
        self.files: set[str] = set()

    def add(self, rows: pd.DataFrame) -> int:
        """Keep ``rows``; the number of files they finish."""
        new = set(rows["file"]) - self.files
        self.files |= new
        self.pending.append(rows)
        if sum(len(p) for p in self.pending) >= FLUSH_ROWS:
            self.flush()
        return len(new)

    def flush(self) -> None:
        if self.pending:
            au_table.write(au_table.concat(self.pending), self.folder / f"part-{self.run}-{self.seq:05d}.parquet")
            self.seq += 1
            self.pending = []


def _measure_pass(ray, todo: list[dict], workers: int, batch_size: int, actor: type, parts: _Parts,
                  on_files: Callable[[int], None], should_stop: ShouldStop | None = None) -> bool:
    """One Ray Data pipeline over ``todo``; False when ``should_stop`` ended it early. Batches that
    still fail after ``TASK_RETRIES`` are dropped (``max_errored_blocks``), not the run: their
    files are missing from ``parts``."""
    import logging
    import warnings

    from ray.data import ActorPoolStrategy, DataContext

    # Our progress bar says how it goes; Ray Data's warnings ("Progress bars disabled") are about
    # its own settings, which this pass chose: errors only.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    saved = ctx.max_errored_blocks, ctx.enable_progress_bars
    ctx.max_errored_blocks, ctx.enable_progress_bars = -1, False
    batch_size = max(1, min(batch_size, math.ceil(len(todo) / workers)))  # every actor gets work
    # One file at a time: a batch queued behind a crashing file would share its actor's deaths.
    in_flight = 1 if batch_size == 1 else None
    try:
        ds = ray.data.from_items(todo, override_num_blocks=math.ceil(len(todo) / batch_size))
        with warnings.catch_warnings():  # restarts have no named parameter yet (Ray 2.60)
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map_batches(actor, batch_size=batch_size, batch_format="pandas", num_cpus=1,
                                compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=in_flight),
                                max_restarts=-1,
                                max_task_retries=TASK_RETRIES)
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            if len(batch):
                on_files(parts.add(au_table.normalise(batch)))
            if should_stop and should_stop():
                return False
    finally:
        ctx.max_errored_blocks, ctx.enable_progress_bars = saved
    return True


def extract_on_ray(items: Sequence[LabeledImage], out: str | os.PathLike[str], *,
                   root: str | os.PathLike[str] | None = None, skipped: Sequence[SkippedFile] = (),
                   address: str | None = None, workers: int | None = None, batch_size: int = BATCH_SIZE,
                   classes: str | None = None, progress: Progress | None = None,
                   should_stop: ShouldStop | None = None, actor: type = MeasuringActor) -> RayRun:
    """AU table of ``items`` measured on Ray, written to ``out`` (CSV, CSV.gz or Parquet by
    extension) and returned. Files whose rows ``out`` (or its ``.parts`` folder) already holds are
    skipped; ``file`` is relative to ``root`` as in ``extract.extract_table``. ``workers``: actors
    (default: one per CPU of the cluster). ``should_stop`` returning True ends the run after the
    batch in hand: the rows so far are returned and kept for a rerun, ``out`` is not written.
    ``classes``: the listing's emotion filter, as given, for the record (``run_record``): rows
    another folder, filter or measuring version wrote into ``out`` raise ``FerError`` instead of
    being resumed, and so does another run writing ``out`` at the same time (``one_run``).
    ``actor``: the measuring class (``MeasuringActor``)."""
    try:
        import ray
    except ImportError:
        raise FerError(INSTALL_HINT) from None
    if address and not reachable(address, 3.0):  # ray.init would retry for ever, printing Ray's own logs
        raise FerError(f"no Ray cluster answers at {address}; start one there (ray start --head) or check "
                       "--ray-address")
    target = fileio.output_path(out)
    with one_run(target):
        _claim(target, run_record(root, classes))
        written: dict[str, int] = {}
        previous = _finished(target, written)
        names = [printable(relative_file(it.path, root)) for it in items]
        paths = {f: it.path for it, f in zip(items, names)}
        changed = _changed_files(written, paths) & _done_files(previous)
        done_files = _done_files(previous) - _mended_files(previous, paths) - changed
        listed = set(names) | {s.file for s in skipped}
        dropped = len({f for t in previous for f in t["file"]} - listed)  # said: the table is the folder's
        # Absolute: an actor reads from its node's working directory, not the driver's (a folder
        # given as ``photos`` was "file not found" for every file on a cluster started elsewhere).
        todo = [{"path": os.path.abspath(it.path), "file": f, "label": it.label or ""}
                for it, f in zip(items, names, strict=True) if f not in done_files]
        total, count = len(items), len(items) - len(todo)
        if progress:
            progress(count, total)

        def on_files(n: int) -> None:
            nonlocal count
            count += n
            if progress:
                progress(count, total)

        parts = _Parts(parts_dir(target))
        started = _connect(ray, address, workers) if todo else False
        start = time.perf_counter()
        n_workers, finished = 0, True
        try:
            if todo:
                n_workers = min(workers or max(1, int(ray.cluster_resources().get("CPU", 1))), len(todo))
                finished = _measure_pass(ray, todo, n_workers, batch_size, actor, parts, on_files, should_stop)
            lost = [t for t in todo if t["file"] not in parts.files] if finished else []
            if lost:  # batches whose actor died on every try: each file on its own, to find the culprit
                if started:
                    # A fresh job: an actor of the first pass's pool that Ray restarted after its node
                    # was lost (max_restarts) outlived the pool and held the last CPU, and the second
                    # pass waited for it for ever (a lost node, on a loaded machine). The first job's
                    # actors end with it.
                    ray.shutdown()
                    started = _connect(ray, address, workers)
                cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))  # a lost node's are gone
                _measure_pass(ray, lost, min(n_workers, cpus, len(lost)), 1, actor, parts, on_files)
            crashed = [t for t in lost if t["file"] not in parts.files]
            if crashed:
                on_files(parts.add(au_table.from_rows(
                    r for t in crashed for r in extract.rows_for_image(t["file"], t["label"] or None, CRASH_REASON))))
        except ray.exceptions.RayError as exc:  # the cluster, not an image: the rows so far are kept
            raise FerError(f"the Ray run stopped ({one_line(exc, 160)}); run it again to measure the rest") from None
        finally:
            parts.flush()
            if started:
                ray.shutdown()
        seconds = time.perf_counter() - start
        table = _assemble(_finished(target), names, skipped, skipped_rows=finished)
        if finished:
            au_table.write(table, target)
            _write_record(target, run_record(root, classes))  # stamped: a table copied over it is not resumed
            shutil.rmtree(parts_dir(target), ignore_errors=True)
        return RayRun(table, len(parts.files), total - len(todo), n_workers, seconds, cancelled=not finished,
                      dropped=dropped, changed=len(changed))


def _assemble(tables: list[pd.DataFrame], names: list[str], skipped: Sequence[SkippedFile],
              skipped_rows: bool = True) -> pd.DataFrame:
    """One table in the local engine's order (``extract.file_order_key``: skipped files' rows among
    the others, not after them), with (``skipped_rows``) a failure row for each skipped file not
    already there; rows of files no longer in the folder are dropped, as the local engine would not
    write them (the table is the folder's)."""
    table = au_table.concat(tables)
    listed = set(names) | {s.file for s in skipped}
    table = table[table["file"].isin(listed)]
    present = set(table["file"])
    extra = [r for s in skipped if skipped_rows and s.file not in present
             for r in extract.rows_for_image(s.file, s.label, s.reason)]
    table = au_table.concat([table, au_table.from_rows(extra)])
    keys = [extract.file_order_key(f) for f in table["file"]]
    return au_table.normalise(table.iloc[sorted(range(len(keys)), key=keys.__getitem__)])
