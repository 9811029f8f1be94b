"""Nothing of a study leaves the machine or outlives its deletion unsaid: no network traffic while
faces are measured, a dashboard that serves this machine only unless told otherwise, a measurement
cache its owner alone can read and can empty, reports that can leave the faces out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from fer_core.config import REPO_ROOT

MEASURE_AND_WAIT = """
import time
from pathlib import Path
from fer_core.images import LabeledImage
from fer_core.measure.extract import measure_items
found = measure_items([LabeledImage(Path({photo!r}), None)], workers=1, use_cache=False)
assert found[0] and not isinstance(found[0], str), found
time.sleep(6)  # MediaPipe's logging thread uploads a few seconds after the first measurement
"""


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_measuring_faces_makes_no_network_call(astronaut_jpeg, tmp_path):
    """MediaPipe's tasks library looked up play.googleapis.com to upload usage logs from the worker
    measuring a child's photo (two DNS queries a run). The measuring processes point its HTTP proxy
    at a closed local port: no name is looked up and nothing connects outside the machine."""
    trace = tmp_path / "trace.txt"
    run = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmmsg", "-o", str(trace),
                          sys.executable, "-c", MEASURE_AND_WAIT.format(photo=str(astronaut_jpeg))],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    calls = trace.read_text()
    assert "htons(53)" not in calls, "a DNS lookup"
    outside = [line for line in calls.splitlines() if re.search(r"sa_family=AF_INET6?\b", line)
               and not re.search(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"', line)]
    assert outside == [], outside[:3]


def _machine_address() -> str | None:
    """This machine's address on its network (not loopback), or None without one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_dashboard_serves_this_machine_only_unless_told(tmp_path):
    """`make run` listened on every interface (":::8501", a "Network URL"), so anyone on the network
    could open the dashboard and, through its folder boxes, any folder of faces the server can read;
    and it looked up the machine's public address at start. It now listens on localhost only
    (.streamlit/config.toml; `make run ADDRESS=0.0.0.0` opens it to the network)."""
    import socket
    import time
    import urllib.request

    elsewhere = _machine_address()
    if elsewhere is None:
        pytest.skip("this machine has no network address other than loopback")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "ui.launch", "--server.port", str(port),
                                   "--server.headless", "true"], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        with pytest.raises(OSError), socket.create_connection((elsewhere, port), timeout=5):
            pass  # refused: not listening there
        started = log.read_text()
        assert "Network URL" not in started and "External URL" not in started, started
    finally:
        server.terminate()
        server.wait(timeout=30)


def _fer_faces(fer_sample, folder, n: int = 2):
    """``n`` FER2013 faces copied into ``folder`` (48 px crops, measured quickly)."""
    folder.mkdir(parents=True)
    for i, src in enumerate(sorted((fer_sample / "happy").glob("*.jpg"))[:n]):
        (folder / f"child_{i}.jpg").write_bytes(src.read_bytes())
    return folder


def test_a_studys_measurements_can_be_forgotten_and_no_other_user_reads_them(fer_sample, tmp_path, monkeypatch,
                                                                               capsys):
    """The measurement cache (face boxes, blendshapes and AUs of every photo measured) was readable
    by every user of the machine and outlived the photos, with no way to remove a study's rows but
    deleting the whole file by hand. `cache forget FOLDER` removes those files' measurements, their
    bytes overwritten (deleted rows stay in SQLite's free pages otherwise), `cache clear` all of
    them; other users lose their access (a lab's group keeps its own)."""
    import os
    import sqlite3
    import stat
    import zipfile

    from fer_core.cli import main
    from fer_core.measure.tasks import file_digest

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["cache"]) == 0 and "no measurement cache yet" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()  # asking made none
    study, other = _fer_faces(fer_sample, tmp_path / "study"), _fer_faces(fer_sample, tmp_path / "other", 3)
    (other / "child_0.jpg").unlink()  # its child_1 is the study's child_1: one measurement of the same bytes
    for folder in (study, other):
        assert main(["extract", str(folder), "--out", str(tmp_path / f"{folder.name}.csv"), "--workers", "1"]) == 0
    database = tmp_path / "cache" / "measurements.sqlite"
    assert stat.S_IMODE(database.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE(database.parent.stat().st_mode) & 0o007 == 0
    capsys.readouterr()
    assert main(["cache"]) == 0 and "3 measurements" in capsys.readouterr().out

    forgotten = file_digest(study / "child_0.jpg")
    assert forgotten.encode() in database.read_bytes()
    linked = tmp_path / "linked"  # a study whose emotion folder is a link, as a folder's images are listed
    linked.mkdir()
    (linked / "happy").symlink_to(study, target_is_directory=True)
    assert main(["cache", "forget", str(linked)]) == 0
    assert "2 measurements of 2 files removed" in capsys.readouterr().err
    assert forgotten.encode() not in database.read_bytes()  # overwritten, not left in the file's free pages
    assert main(["cache"]) == 0 and "1 measurement " in capsys.readouterr().out  # the other study's
    assert main(["cache", "forget", str(tmp_path / "gone")]) == 2  # a typo is said, not "0 removed"
    (tmp_path / "empty").mkdir()
    assert main(["cache", "forget", str(tmp_path / "empty")]) == 2 and "no files in it" in capsys.readouterr().err
    with zipfile.ZipFile(tmp_path / "upload.zip", "w") as archive:  # a zip the dashboard measured
        archive.write(other / "child_2.jpg", "happy/child_2.jpg")
    busy = sqlite3.connect(database)
    busy.execute("BEGIN IMMEDIATE")  # another run writing it: one line, not "unexpected ... (a bug)"
    assert main(["cache", "forget", str(tmp_path / "upload.zip")]) == 2
    assert "another run may be using the cache" in capsys.readouterr().err
    busy.rollback()
    busy.close()
    assert main(["cache", "forget", str(tmp_path / "upload.zip")]) == 0
    assert "1 measurement of 1 file removed" in capsys.readouterr().err
    assert main(["cache", "clear"]) == 0 and main(["cache"]) == 0
    assert "0 measurements" in capsys.readouterr().out

    database.chmod(0o664)  # a cache made before: other users' access taken away when next opened
    assert main(["cache"]) == 0
    assert stat.S_IMODE(database.stat().st_mode) == 0o660 or os.getuid() != database.stat().st_uid


def test_a_photo_deleted_from_a_study_is_not_shown_to_the_next_session(models_dir, tmp_path):
    """The folder listing was cached for every session for two minutes (and each thumbnail until the
    server stopped): photos deleted from a study were still counted, and shown, to a new session
    opening the folder. A deletion changes the folder's stamp, which the listing is cached under."""
    from apptest_helpers import run_app
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    study = tmp_path / "study" / "happy"
    study.mkdir(parents=True)
    for i in range(3):
        Image.new("L", (48, 48), 60 * i).save(study / f"child_{i}.png")

    def images_shown() -> str:
        at = run_app(AppTest.from_file(str(REPO_ROOT / "pages" / "1_Dataset_explorer.py")), 120)
        at.radio(key="explorer_source").set_value("A folder on this machine")
        run_app(at, 120)
        at.text_input[0].set_value(str(tmp_path / "study"))
        run_app(at, 120)
        return next(m.value for m in at.metric if m.label == "Images")

    assert images_shown() == "3"
    (study / "child_2.png").unlink()
    assert images_shown() == "2"  # a new session, at once


def test_a_labs_group_shared_cache_lets_every_member_forget(fer_sample, tmp_path, monkeypatch):
    """A lab sharing one cache through a group (a folder with group write and setgid) got a file its
    other members could read but not change: only its maker could forget a child's measurements. In
    such a folder the file gets group write; other users still get nothing."""
    import stat

    from fer_core.cli import main

    shared = tmp_path / "lab-cache"
    shared.mkdir()
    shared.chmod(0o2770)
    monkeypatch.setenv("FER_CACHE_DIR", str(shared))
    study = _fer_faces(fer_sample, tmp_path / "study", 1)
    assert main(["extract", str(study), "--out", str(tmp_path / "au.csv"), "--workers", "1"]) == 0
    mode = stat.S_IMODE((shared / "measurements.sqlite").stat().st_mode)
    assert mode & 0o060 == 0o060 and mode & 0o007 == 0, oct(mode)
