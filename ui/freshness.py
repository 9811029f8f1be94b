"""Whether the workbench's code changed since this server loaded it (a ``git pull`` while it runs).

The server does not watch files (``.streamlit/config.toml``), so modules it imported stay as they
were while ``app.py`` and the pages are read again on each run: new code calling old code failed on
every page, for everyone, with Streamlit's redacted error. Each run compares the code's file stamps
with those taken when this module was first imported (``ui.launch`` imports it before the server
listens) and, where they differ, says to restart instead.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = ("app.py", "fer_core", "ui", "pages")


def code_stamp() -> tuple[tuple[str, int, int], ...]:
    """(file, modification time, size) of every Python file and text the workbench runs (~150 stats)."""
    files: list[Path] = []
    for part in CODE:
        path = REPO / part
        files += [path] if path.is_file() else [*path.rglob("*.py"), *path.rglob("*.json")]
    out = []
    for file in sorted(files):
        try:
            stat = file.stat()
        except OSError:  # removed since the listing
            continue
        out.append((str(file.relative_to(REPO)), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


LOADED = code_stamp()
# In both languages: the translations are among what changed, and old code reads them.
RESTART = ("The workbench's code has changed since this dashboard started (an update?): restart it (`make run`) "
           "to use the new version. / 대시보드가 시작된 뒤 코드가 바뀌었습니다(업데이트?): 새 버전을 쓰려면 "
           "다시 시작하세요(`make run`).")


def code_changed() -> bool:
    return code_stamp() != LOADED


def stop_if_code_changed() -> None:
    """One line saying to restart the dashboard, and nothing else drawn, when its code changed."""
    if not code_changed():
        return
    import streamlit as st

    st.error(RESTART)
    st.stop()
