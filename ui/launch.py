"""Start the dashboard: ``python -m ui.launch [streamlit options]`` (what ``make run`` does).

It is ``streamlit run app.py`` with the first visitor's waits moved to the server's start:
- a cold server's first page run spends most of a second importing pandas and the workbench before
  it draws anything, so they are imported before the server starts listening (before, not beside:
  two threads importing pandas and plotly at once can leave one holding a half-made module). Only
  modules without Streamlit (``fer_core`` has none by design): Streamlit's caches must be made
  inside the running server;
- Try it's MediaPipe worker (a process of its own, seconds to load) is started too, without
  waiting, so it is loading while the server starts and the browser opens; app.py would otherwise
  start it on the first page visit;
- a closed browser tab's session (its uploads, results, temporary video file) is let go once its
  time to reconnect is over, also on a server nobody else visits (``end_dropped_sessions``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import threading
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
# What Home and Try it import beyond Streamlit itself, slowest first; nothing that starts TensorFlow
# or MediaPipe (those stay lazy, in their own processes or on first use).
WARM_MODULES: tuple[str, ...] = (
    "ui.freshness",  # first: the code's stamps as the server starts (a later update is then seen)
    "pandas",
    "plotly.graph_objects",
    "fer_core.evaluation.scores",
    "fer_core.pipeline",
    "fer_core.figures.plots",
    "fer_core.masks",
)


def warm_imports(modules: tuple[str, ...] = WARM_MODULES) -> None:
    """Import ``modules``; one that fails is left for the page, which reports it the usual way."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # the page's own import will say what is wrong
            continue


def end_dropped_sessions() -> bool:
    """Let a closed browser tab's session go once its time to reconnect is over, on an idle server too.

    Streamlit (1.67) keeps a closed tab's session for ``server.disconnectedSessionTTL`` (2 min) so
    the tab can reconnect, but removes expired sessions only when another session is stored: on a
    server nobody else visits, the last visitors' sessions (their uploads, results and Try it's
    temporary video file in /tmp) stayed until the next visitor left, days later. Stored sessions
    are now reaped by a timer when they expire, and a session the store lets go is shut down and
    its state cleared at once (Streamlit shuts it down only when the garbage collector gets to it,
    which its event loop's reference to the last session it served can put off indefinitely). A
    session taken back by its tab (a reconnect) is not shut down. False, and nothing changed,
    where Streamlit's internals are not the expected ones.
    """
    try:
        from streamlit.runtime import memory_session_storage as storage_module
        from streamlit.runtime.caching.ttl_cache import TTLCache
        from streamlit.web.server import server as server_module
    except ImportError:
        return False
    base = storage_module.MemorySessionStorage
    if getattr(base, "ends_dropped_sessions", False):
        return True
    if not (callable(getattr(TTLCache, "expire", None)) and callable(getattr(TTLCache, "_evict_lru", None))):
        return False

    class _DroppingCache(TTLCache):
        """Notes the sessions it drops on its own (expired, or the least recent one when full)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.dropped: list = []

        def expire(self, at_time=None):
            removed = super().expire(at_time)
            self.dropped.extend(info for _, info in removed)
            return removed

        def _evict_lru(self, reason):
            info = super()._evict_lru(reason)
            self.dropped.append(info)
            return info

    class EndingSessionStorage(base):
        ends_dropped_sessions = True

        def __init__(self, maxsize: int = 128, ttl_seconds: float = 2 * 60) -> None:
            super().__init__(maxsize, ttl_seconds)
            self._ttl = float(ttl_seconds)
            self._lock = threading.RLock()  # the timer and the server's threads share the cache
            self._cache = _DroppingCache(maxsize=maxsize, ttl=ttl_seconds)

        def _end_dropped(self) -> None:
            with self._lock:
                dropped, self._cache.dropped = self._cache.dropped, []
            for info in dropped:
                try:
                    info.session.shutdown()
                    # Its state too (results, Try it's video file): Streamlit may still hold the
                    # session itself for a while (its loop keeps the last one it served).
                    info.session.session_state.clear()
                except Exception:  # one session's failure must not keep the others' files
                    logging.getLogger(__name__).exception("shutting down a dropped session failed")

        def get(self, session_id):
            with self._lock:
                return super().get(session_id)

        def save(self, session_info) -> None:
            with self._lock:
                super().save(session_info)
            self._end_dropped()
            try:
                asyncio.get_running_loop().call_later(self._ttl + 1, self.reap)
            except RuntimeError:  # not on the server's event loop: the next write reaps it
                pass

        def delete(self, session_id: str) -> None:
            with self._lock:
                super().delete(session_id)
            self._end_dropped()

        def list(self):
            with self._lock:
                return super().list()

        def reap(self) -> None:
            """Shut down the sessions whose time to reconnect has run out."""
            with self._lock:
                self._cache.expire()
            self._end_dropped()

    storage_module.MemorySessionStorage = EndingSessionStorage
    if getattr(server_module, "MemorySessionStorage", None) is base:
        server_module.MemorySessionStorage = EndingSessionStorage
    return True


class ClosedTabNoise(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" where the exception arose from the browser
    having gone (starlette's ``WebSocketDisconnected`` in its chain): Streamlit 1.67's websocket
    endpoint raises when a tab closes mid-message, and an admin read ~40 lines of traceback per
    closed tab as a crash. Nothing is lost; any other exception is logged as before."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != "Exception in ASGI application" or not record.exc_info:
            return True
        exc, seen = record.exc_info[1], set()
        while exc is not None and id(exc) not in seen:
            if type(exc).__name__ in ("WebSocketDisconnected", "WebSocketDisconnect"):
                return False
            seen.add(id(exc))
            exc = exc.__cause__ or exc.__context__
        return True


def main(argv: list[str] | None = None) -> None:
    from streamlit.web import cli

    logging.getLogger("uvicorn.error").addFilter(ClosedTabNoise())
    warm_imports()
    end_dropped_sessions()
    from fer_core.measure.tasks import start_photo_worker

    start_photo_worker()
    cli.main(prog_name="streamlit", args=["run", str(APP), *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
