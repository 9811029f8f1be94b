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
