"""Whether the workbench's code changed since this server loaded it (a ``git pull`` while it runs).

The server does not watch files (``.streamlit/config.toml``), so modules it imported stay as they
were while ``app.py`` and the pages are read again on each run: new code calling old code failed on
every page, for everyone, with Streamlit's redacted error. Each run compares the code's file stamps
with those taken when this module was first imported (``ui.launch`` imports it before the server
listens), and looks for a file changed after the server process started (an update that brought this
module along: the server had imported the old code before this module existed), and where either
holds, says to restart instead.
"""

from __future__ import annotations

import os
import time
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


def process_started() -> float:
    """When this process started (seconds since the epoch, Linux's /proc); now where that cannot be read."""
    try:
        ticks = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


LOADED = code_stamp()
STARTED = process_started()
# In both languages: the translations are among what changed, and old code reads them.
RESTART = ("The workbench's code has changed since this dashboard started (an update?): restart it (`make run`) "
           "to use the new version. / 대시보드가 시작된 뒤 코드가 바뀌었습니다(업데이트?): 새 버전을 쓰려면 "
           "다시 시작하세요(`make run`).")


def code_changed() -> bool:
    now, clock = code_stamp(), time.time()
    # a second of slack: /proc's start time is in whole seconds. A file dated in the future (copied
    # from a machine whose clock is ahead) is not taken for an update: a restart could not clear it;
    # a change to it after this module's import still differs from LOADED.
    return now != LOADED or any(STARTED + 1.0 < mtime / 1e9 <= clock + 1.0 for _, mtime, _ in now)


def stop_if_code_changed() -> None:
    """One line saying to restart the dashboard, and nothing else drawn, when its code changed."""
    if not code_changed():
        return
    import streamlit as st

    st.error(RESTART)
    st.stop()
