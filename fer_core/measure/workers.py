"""Crash-isolated worker processes for native code (MediaPipe, OpenCV).

A native abort (an OpenCV assertion, a segfault) cannot be caught in Python: it ends the process.
So faces are measured in spawned worker processes, one file at a time. When a worker dies, its
file becomes a failure ("the face detector crashed on this image") and a fresh worker takes its
place; when a file takes longer than ``timeout_s``, its worker is stopped the same way. The caller
(the CLI, the dashboard's server) never runs the native code of a batch itself.

Workers are started once and kept for the process's life (``shared_pool``), so the dashboard and
repeated calls do not pay MediaPipe's start-up each time. ``multiprocessing.Pool`` is not used:
it hangs forever when a worker dies mid-task (the task is never answered).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import multiprocessing as mp
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import FerError, one_line

DEFAULT_TIMEOUT_S = 300.0
# What a timed-out task's reason advises; a caller whose tasks are not images says its own.
TIMEOUT_ADVICE = "try a smaller image"
MAX_FAILED_STARTS = 3
# OpenCV's own thread pool (pthreads in its wheels) ignores OMP_NUM_THREADS: left at a thread per
# core, each warp of face-crop mode was split over both cores, for the same pixels and more CPU time
# (FER2013 val: 0.1 CPU ms a crop with both cores busy, 0.5-0.8 with one idle).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "OPENCV_FOR_THREADS_NUM")


# What a batch calls when it finds its pool busy with another run's batch, before it waits (see
# ``telling_waits``); a context variable, so each dashboard session's run has its own.
_on_wait: ContextVar[Callable[[], None] | None] = ContextVar("pool_wait_notice", default=None)


@contextlib.contextmanager
def telling_waits(notice: Callable[[], None]) -> Iterator[None]:
    """While inside, a batch that finds its shared pool busy (another dashboard session's run)
    calls ``notice()`` before it waits: its progress bar would otherwise stand still, unexplained."""
    token = _on_wait.set(notice)
    try:
        yield
    finally:
        _on_wait.reset(token)


class WorkerFailure(str):
    """A task's answer when its worker died or timed out: a one-line reason, not to be cached
    (the same bytes may well succeed on another try)."""


def _worker_main(conn: Connection, initializer: Callable[[], None] | None, task: Callable[[Any], Any]) -> None:
    for var in THREAD_VARS:  # one core per worker; the pool is the parallelism
        os.environ[var] = "1"
    if not os.environ.get("FER_NATIVE_LOGS"):  # native chatter and abort messages: the parent reports
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        if initializer is not None:
            initializer()
    except Exception as exc:  # e.g. the landmarker model is missing: tell the parent, then stop
        conn.send(("init-error", one_line(exc)))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, arg = message
        try:
            result = task(arg)
        except Exception as exc:  # a bug in a task must not take the worker down with it
            result = WorkerFailure(one_line(exc))
        conn.send(("done", (index, result)))


_main_lock = threading.Lock()


@contextlib.contextmanager
def _without_main_script(needed: bool):
    """Start a spawned child without running the parent's main script in it first.

    Under ``spawn`` a child runs the parent's ``__main__`` file again (as ``__mp_main__``) before
    its task, so that functions defined there can be unpickled. In the dashboard that file is
    app.py (Streamlit runs it as ``__main__``): a second of imports, more on a busy machine, that
    a worker whose task and initializer live in fer_core does not need. While such a worker
    starts, ``__main__`` is a stand-in whose spec is named ``__main__``, which multiprocessing
    takes for "nothing to re-run"; it keeps the real module's ``__file__`` for other threads.
    """
    main = sys.modules.get("__main__")
    if needed or main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    if hasattr(main, "__file__"):
        stand_in.__file__ = main.__file__
    with _main_lock:
        sys.modules["__main__"] = stand_in
        try:
            yield
        finally:
            if sys.modules.get("__main__") is stand_in:
                sys.modules["__main__"] = main


def _defined_in_main(*functions: Callable | None) -> bool:
    return any(f is not None and getattr(f, "__module__", "__main__") in ("__main__", "__mp_main__")
               for f in functions)


class _Worker:
    def __init__(self, ctx, initializer, task):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, task), daemon=True)
        with _without_main_script(_defined_in_main(initializer, task)):
            self.process.start()
        child.close()
        self.ready = False
        self.job: tuple[int, float] | None = None  # (index, started) of the task it is working on

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class IsolatedPool:
    """``workers`` spawned processes running ``task(arg)`` one argument at a time."""

    def __init__(self, workers: int, task: Callable[[Any], Any], initializer: Callable[[], None] | None = None,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, crash_message: str = "the worker crashed on this input"):
        self.size = max(1, int(workers))
        self.wanted = self.size  # the size asked for last (``shared_pool``); taken when a batch starts
        self._task, self._initializer = task, initializer
        self._ctx = mp.get_context("spawn")  # MediaPipe hangs or crashes under fork
        self._workers: list[_Worker] = []
        self.timeout_s = timeout_s
        self.crash_message = crash_message
        self.lock = threading.Lock()  # one batch at a time (dashboard sessions share the pool)
        self.settings = ""  # what its workers' environment decided of their results when spawned (shared_pool)
        self.retired = False  # let go of by shared_pool or close_workers: its workers stop when a batch ends

    # -- lifecycle ------------------------------------------------------------------------------
    def _fill(self, needed: int | None = None) -> None:
        """Workers up to the pool's size, or up to ``needed`` (a batch's arguments) when fewer:
        ``extract --workers 6`` on one image started six MediaPipe processes (3.3 s; 1.3-1.7 s now).
        Workers already running stay (a later, larger batch uses them)."""
        for w in [w for w in self._workers if not w.process.is_alive() and w.job is None]:
            w.stop()
            self._workers.remove(w)
        idle = [w for w in reversed(self._workers) if w.job is None]
        for w in idle[:max(0, len(self._workers) - self.size)]:  # the pool was made smaller (``shared_pool``)
            w.stop()
            self._workers.remove(w)
        wanted = self.size if needed is None else min(self.size, max(1, needed))
        while len(self._workers) < wanted:
            self._workers.append(_Worker(self._ctx, self._initializer, self._task))

    def start(self) -> None:
        """Start the workers now, without waiting for them (their initializer runs while the
        caller does other things); a no-op while a batch holds the pool."""
        if self.lock.acquire(blocking=False):
            try:
                if self.retired:
                    return
                self.size = self.wanted
                self._fill()
            finally:
                self.lock.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the pool for one batch. When another batch holds it, the caller's notice (see
        ``telling_waits``) is called first, then this waits for the pool. A caller that got the
        pool just before ``shared_pool`` or ``close_workers`` let go of it still runs its batch on
        it; the workers that batch starts are stopped as it ends (no one else would stop them)."""
        if not self.lock.acquire(blocking=False):
            notice = _on_wait.get()
            if notice is not None:
                notice()
            self.lock.acquire()
        try:
            yield
        finally:
            try:
                if self.retired:
                    self.close()
            finally:
                self.lock.release()

    def close(self) -> None:
        for w in self._workers:
            try:
                if w.process.is_alive() and w.job is None:
                    w.conn.send(None)
            except OSError:
                pass
            w.process.join(timeout=2)
            w.stop()
        self._workers = []

    # -- work -------------------------------------------------------------------------------------
    def imap_unordered(self, args: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(index, result) for every argument, in the order they finish. A worker that dies or
        runs over the timeout gives a ``WorkerFailure`` for its argument and is replaced.
        Closing the iterator early stops the workers still busy (their answers would be stale)."""
        pending = deque(enumerate(args))
        failed_starts = 0
        self.size = self.wanted  # a batch keeps its size: another caller's size waits for the next
        self._fill(needed=len(pending))
        try:
            while pending or any(w.job is not None for w in self._workers):
                for w in self._workers:
                    if w.ready and w.job is None and pending:
                        index, arg = pending.popleft()
                        try:
                            w.conn.send((index, arg))
                        except OSError:  # it died while idle: the argument waits for another worker,
                            pending.appendleft((index, arg))  # and its death is seen below (replaced)
                            w.ready = False
                            continue
                        w.job = (index, time.monotonic())
                waiting = [w for w in self._workers if w.job is not None or not w.ready]
                ready = wait([w.conn for w in waiting] + [w.process.sentinel for w in waiting], timeout=1.0)
                replaced = False
                for w in waiting:
                    if w.conn in ready:
                        try:
                            kind, payload = w.conn.recv()
                        except (EOFError, OSError):
                            kind, payload = "died", None
                    elif w.process.sentinel in ready:
                        kind, payload = "died", None
                    elif (w.job is not None and self.timeout_s and time.monotonic() - w.job[1] > self.timeout_s
                          and not w.conn.poll()):  # an answer that came while this process stalled is taken next
                        kind, payload = "timeout", None
                    else:
                        continue
                    if kind == "ready":
                        w.ready, failed_starts = True, 0
                    elif kind == "done":
                        w.job = None
                        yield payload
                    elif kind == "init-error":
                        raise FerError(payload)
                    else:  # died or timed out: its argument fails, a new worker takes its place
                        job = w.job
                        w.job = None
                        w.stop()
                        code = w.process.exitcode
                        self._workers.remove(w)
                        replaced = True
                        if job is None:
                            failed_starts += 1
                            if failed_starts >= MAX_FAILED_STARTS:
                                raise FerError(f"worker processes die while starting (exit code {code}); "
                                               "check the installation (pip install -r requirements.txt)")
                        elif kind == "timeout":
                            yield job[0], WorkerFailure(f"took over {self.timeout_s:g} s and was stopped; "
                                                        f"{TIMEOUT_ADVICE}")
                        else:
                            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                            yield job[0], WorkerFailure(f"{self.crash_message} ({how}); it was skipped")
                if replaced:
                    self._fill(needed=len(pending) + sum(w.job is not None for w in self._workers))
        finally:
            for w in [w for w in self._workers if w.job is not None]:
                w.job = None
                w.stop()
                self._workers.remove(w)


_pools: dict[tuple[str, int], IsolatedPool] = {}
_pools_lock = threading.Lock()


def shared_pool(key: str, workers: int, task: Callable[[Any], Any], initializer: Callable[[], None] | None = None,
                settings: str = "", **options) -> IsolatedPool:
    """The process's pool for ``key`` (made once, closed at exit), sized to ``workers`` processes.
    One pool per key, resized when asked for another size: a pool per size kept every size's
    MediaPipe processes (hundreds of MB each) alive for the process's life. ``settings``: what the
    environment decides of the workers' results (image limits a script moved after the first
    measurement): a worker keeps the environment it was started with, so a pool started under
    other settings is closed, once its batch ends, and a new one started. Its workers had measured
    under the old limits what was then cached under the new ones."""
    stale = None
    with _pools_lock:
        current = next((k for k in _pools if k[0] == key), None)
        pool = _pools.pop(current) if current else None
        if pool is not None and pool.settings != settings:
            stale, pool = pool, None
            stale.retired = True
        if pool is None:
            pool = IsolatedPool(workers, task, initializer, **options)
            pool.settings = settings
        pool.wanted = max(1, int(workers))  # workers are added or stopped as its next batch starts
        _pools[(key, workers)] = pool
    if stale is not None:
        with stale.held():
            pass  # closed as it is let go (``held``)
    return pool


def close_workers() -> None:
    """Stop every measuring worker process (MediaPipe loaded in each): a notebook or a long-lived
    program that has measured what it needed frees them here, not only at exit. A batch another
    thread is measuring ends first (its workers are not killed under it); the next measurement
    starts new ones."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
        for pool in pools:
            pool.retired = True
    for pool in pools:
        with pool.held():
            pass  # closed as it is let go (``held``)


@atexit.register
def _close_pools_at_exit() -> None:
    """At exit no batch is waited for (a daemon thread's may never end): every worker stops."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
