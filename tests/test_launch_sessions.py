"""A closed browser tab's session is let go once its time to reconnect is over (``ui.launch``),
also when no other visitor comes: its uploads (and Try it's temporary video file) are not kept."""

from __future__ import annotations

import asyncio
import weakref

import pytest
from streamlit.runtime import memory_session_storage as storage_module
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.script_data import ScriptData
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.runtime.session_manager import SessionInfo
from streamlit.runtime.uploaded_file_manager import UploadedFileRec
from streamlit.web.server import server as server_module

from fer_core.config import REPO_ROOT
from ui import launch

TTL_S = 0.2


class StoreClock:
    """The session store's clock, moved by the test only: building the tabs is no time to reconnect.
    On the real clock a pause of the test's own (a garbage collection of a large test process, a
    loaded machine) of over ``TTL_S`` between storing the tabs and taking one back expired them early."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def storage_class(monkeypatch):
    """The session store ``ui.launch`` installs; Streamlit's own is put back after the test."""
    monkeypatch.setattr(storage_module, "MemorySessionStorage", storage_module.MemorySessionStorage)
    monkeypatch.setattr(server_module, "MemorySessionStorage", server_module.MemorySessionStorage)
    assert launch.end_dropped_sessions()
    assert server_module.MemorySessionStorage is storage_module.MemorySessionStorage
    assert launch.end_dropped_sessions()  # a second call changes nothing
    return storage_module.MemorySessionStorage


class Kept:
    """Something a page keeps in session state (Try it's video file removes itself when let go)."""


def _tab(files: MemoryUploadedFileManager, name: str, kept: dict) -> SessionInfo:
    """A real dashboard session holding a 1 MB upload and a ``Kept`` in its state, as its tab left
    it (called in the loop); ``kept[name]`` is a weak reference to that ``Kept``."""
    session = AppSession(ScriptData(str(REPO_ROOT / "app.py")), files, ScriptCache(), lambda: None, {},
                         session_id_override=name)
    files.add_file(session.id, UploadedFileRec(f"{name}-photo", "photo.jpg", "image/jpeg", bytes(2**20)))
    state = Kept()
    session.session_state["try_video_tables"] = {"video": state}
    kept[name] = weakref.ref(state)
    return SessionInfo(client=None, session=session)


def _held(files: MemoryUploadedFileManager) -> set[str]:
    return {sid for sid, kept in files.file_storage.items() if kept}


def test_closed_tabs_let_their_uploads_go_when_nobody_else_comes(storage_class):
    """Two tabs closed, then nothing happens on the server: once their time to reconnect is over
    their uploads are gone; a third tab that reconnected in time keeps its own."""
    files = MemoryUploadedFileManager("/_stcore/upload_file")
    storage = storage_class(maxsize=8, ttl_seconds=TTL_S)
    clock = storage._cache._timer = StoreClock()
    kept: dict = {}

    async def visit() -> SessionInfo:
        for name in ("tab-0", "tab-1", "tab-2"):
            storage.save(_tab(files, name, kept))  # as the server does when a tab's connection closes
        assert _held(files) == {"tab-0", "tab-1", "tab-2"}
        back = storage.get("tab-1")
        storage.delete("tab-1")  # tab-1 reconnected: its session lives on, with its upload
        clock.now += TTL_S + 1  # the time to reconnect runs out for the others
        await asyncio.sleep(TTL_S + 1.5)  # an idle server: no other session comes or goes; its timer reaps
        return back

    back = asyncio.run(visit())
    assert _held(files) == {"tab-1"}
    assert files._total_bytes == 2**20 and back.session.id == "tab-1"
    assert storage.list() == []
    # what the pages kept is let go too, although Streamlit may still hold the sessions themselves
    assert kept["tab-0"]() is None and kept["tab-2"]() is None and kept["tab-1"]() is not None


def test_a_full_session_store_shuts_down_the_session_it_pushes_out(storage_class):
    files = MemoryUploadedFileManager("/_stcore/upload_file")
    storage = storage_class(maxsize=2, ttl_seconds=600)

    async def visit() -> list[SessionInfo]:
        tabs = [_tab(files, f"tab-{i}", {}) for i in range(3)]
        for info in tabs:
            storage.save(info)
        return tabs

    tabs = asyncio.run(visit())  # still referenced here: shut down by the store, not by the collector
    assert _held(files) == {"tab-1", "tab-2"}
    assert [info.session.id for info in storage.list()] == ["tab-1", "tab-2"] and len(tabs) == 3


def test_a_closed_tabs_websocket_error_is_not_logged_as_a_crash_and_a_real_one_is(caplog):
    """A tab closed mid-message logged ~40 lines of "Exception in ASGI application" per tab."""
    import logging

    from starlette.websockets import WebSocketDisconnected

    from ui.launch import ClosedTabNoise

    log = logging.getLogger("test.uvicorn.error")
    log.addFilter(ClosedTabNoise())

    def logged(make):
        caplog.clear()
        try:
            make()
        except Exception as exc:
            log.error("Exception in ASGI application", exc_info=exc)
        return [r.getMessage() for r in caplog.records]

    def gone_in_context():
        try:
            raise WebSocketDisconnected('WebSocket is not connected. Need to call "accept" first.')
        except WebSocketDisconnected:
            raise RuntimeError('Cannot call "send" once a close message has been sent.')  # noqa: B904 (as logged)

    def a_bug():
        raise ValueError("a real error")

    with caplog.at_level(logging.ERROR, logger="test.uvicorn.error"):
        assert logged(gone_in_context) == []
        assert logged(a_bug) == ["Exception in ASGI application"]
