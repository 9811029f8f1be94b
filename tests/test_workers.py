"""Worker processes start without re-running the parent's main script when they do not need it
(the dashboard's is app.py, which Streamlit runs as __main__): Try it's first photo waits less."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from pathlib import Path

with open(sys.argv[1], "a") as fh:  # runs again in a child only if spawn re-runs this script
    fh.write(__name__ + "\\n")


def task_here(x):
    return x + 1


if __name__ == "__main__":
    from fer_core.measure.workers import IsolatedPool

    task = task_here if sys.argv[2] == "here" else abs
    pool = IsolatedPool(1, task, timeout_s=60)
    with pool.lock:
        print([r for _, r in pool.imap_unordered([-3])])
    pool.close()
"""


def run_script(tmp_path: Path, where: str) -> tuple[str, list[str]]:
    script, marker = tmp_path / "main_script.py", tmp_path / f"marker_{where}.txt"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(marker), where], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip(), marker.read_text().split()


def test_worker_with_library_task_does_not_rerun_the_main_script(tmp_path):
    out, runs = run_script(tmp_path, "library")
    assert out == "[3]" and runs == ["__main__"]


def test_worker_with_a_task_of_the_main_script_still_gets_it(tmp_path):
    out, runs = run_script(tmp_path, "here")
    assert out == "[-2]" and runs == ["__main__", "__mp_main__"]
