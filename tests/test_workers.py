"""Worker processes start without re-running the parent's main script when they do not need it
(the dashboard's is app.py, which Streamlit runs as __main__): Try it's first photo waits less."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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



OPENCV_SCRIPT = """
import sys

if sys.argv[1] == "early":
    import cv2  # imported again in the child as spawn re-runs this script, before the worker's own code


def opencv_threads(_):
    import cv2

    return cv2.getNumThreads()


if __name__ == "__main__":
    from fer_core.measure.workers import IsolatedPool

    pool = IsolatedPool(1, opencv_threads, timeout_s=60)
    with pool.lock:
        print([r for _, r in pool.imap_unordered([0])])
    pool.close()
"""


@pytest.mark.parametrize("imported", ["early", "in the task"])
def test_a_worker_runs_opencv_on_one_thread(tmp_path, imported):
    """OpenCV's thread pool ignores OMP_NUM_THREADS; with a thread per core, every warp of
    face-crop mode ran on both cores of a two-worker pool: more CPU per image, the same result."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: OpenCV uses one thread anyway")
    script = tmp_path / "opencv_script.py"
    script.write_text(OPENCV_SCRIPT)
    done = subprocess.run([sys.executable, str(script), "early" if imported == "early" else "late"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[1]"


def test_the_measuring_worker_side_imports_no_pandas():
    """A spawned worker imports its task's module before its first task, and Try it starts its
    worker before the page's own imports: that module (and what its tasks import: the landmarker,
    the masks) stays free of pandas, about a second of a busy machine's time."""
    code = ("import sys\n"
            "import fer_core.masks, fer_core.measure.landmarker, fer_core.measure.tasks\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_workers_run_the_tasks_of_the_light_module():
    """What a worker unpickles names ``fer_core.measure.tasks``; ``extract`` hands out the same
    functions, so its pools (and Ray's actors) run them too."""
    from fer_core.measure import extract, tasks

    for name in ("_measure_task", "_init_worker", "_measure_path", "start_photo_worker", "measure_image",
                 "measure_faces", "FaceMeasurement"):
        assert getattr(extract, name) is getattr(tasks, name)
    assert extract._measure_task.__module__ == extract._init_worker.__module__ == "fer_core.measure.tasks"


def test_a_worker_that_died_idle_hands_its_task_to_another_and_the_batch_goes_on():
    """A worker killed between tasks (the OOM killer, a late native abort): sending it the next
    task fails, so that task waits for the replacement; no result is lost and none fails."""
    from fer_core.measure.workers import IsolatedPool, WorkerFailure

    pool = IsolatedPool(2, abs, timeout_s=60)
    with pool.lock:
        assert sorted(r for _, r in pool.imap_unordered([-1, -2])) == [1, 2]  # both workers ready
        fill = pool._fill

        def fill_then_kill_one(needed=None) -> None:  # dies after the pool last looked, before it sends
            fill(needed)
            pool._fill = fill  # once
            victim = pool._workers[0]
            victim.process.kill()
            victim.process.join()

        pool._fill = fill_then_kill_one
        results = dict(pool.imap_unordered([-3, -4, -5, -6]))
    pool.close()
    assert results == {0: 3, 1: 4, 2: 5, 3: 6}
    assert not any(isinstance(r, WorkerFailure) for r in results.values())


def test_an_answer_that_came_while_the_parent_stalled_is_not_a_timeout(monkeypatch):
    """The parent (a busy server) stalls past the time limit between its wait and its look at the
    clock while the worker's answer already sits in the pipe: the task was failed as "took over
    N s", though it had finished in time."""
    import time

    from fer_core.measure import workers

    pool = workers.IsolatedPool(1, abs, timeout_s=60)
    with pool.lock:
        assert [r for _, r in pool.imap_unordered([-1])] == [1]  # the worker is ready
        real_wait, stalls = workers.wait, []

        def stalled_wait(objects, timeout=None):
            if not stalls:  # once: the answer arrives, the parent sees nothing until after the limit
                stalls.append(1)
                assert pool._workers[0].conn.poll(30)  # the answer is in the pipe (unread), however slow the machine
                time.sleep(0.3)
                pool.timeout_s = 0.2
                return []
            return real_wait(objects, timeout)

        monkeypatch.setattr(workers, "wait", stalled_wait)
        results = dict(pool.imap_unordered([-7]))
    pool.close()
    assert results == {0: 7}


def test_asking_a_shared_pool_for_another_size_reuses_its_processes_not_a_second_pool():
    """A batch with 3 workers, then with 1, then with 2 (the CLI's --workers, a notebook, a long
    lived server): one pool of the last size, not a pool per size whose MediaPipe processes
    (hundreds of MB each) stay alive for the process's life."""
    from fer_core.measure import workers

    key = "test-sizes"
    alive: list[set[int]] = []
    try:
        for n in (3, 1, 2):
            pool = workers.shared_pool(key, n, abs, timeout_s=60)
            with pool.lock:
                assert sorted(r for _, r in pool.imap_unordered([-1, -2, -3])) == [1, 2, 3]
            alive.append({w.process.pid for w in pool._workers if w.process.is_alive()})
        pools = [p for k, p in workers._pools.items() if k[0] == key]
        assert pools == [pool] and [len(s) for s in alive] == [3, 1, 2]
        assert alive[1] < alive[0] and alive[1] < alive[2]  # the same process kept, not started again
        assert {w.process.pid for w in pool._workers} == alive[2]
        for pid in alive[0] - alive[2]:  # the workers let go were stopped and reaped
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        with workers._pools_lock:
            for k in [k for k in workers._pools if k[0] == key]:
                workers._pools.pop(k).close()


def test_a_batch_keeps_its_size_when_another_caller_asks_for_another():
    """A session's batch on 3 workers, another session asking for 1 meanwhile: when one of the
    batch's workers dies and is replaced, the batch goes on with 3 (it had been cut to 1); the
    size asked for is taken by the next batch. Each argument takes 50 ms, so the death is seen
    while most of the batch still waits (with instant tasks, a slow CI machine saw it only when
    one argument was left, and rightly started no third worker for it)."""
    from fer_core.measure import workers

    key = "test-batch-size"
    try:
        pool = workers.shared_pool(key, 3, time.sleep, timeout_s=60)
        with pool.lock:
            assert len(list(pool.imap_unordered([0.01] * 3))) == 3  # all three ready
            batch = pool.imap_unordered([0.05] * 30)
            answers = [next(batch)]
            assert workers.shared_pool(key, 1, time.sleep, timeout_s=60) is pool  # another session's wish
            pool._workers[0].process.kill()
            answers += list(batch)
            during = len(pool._workers)
        assert len(answers) == 30 and during == 3
        with pool.lock:
            assert len(list(pool.imap_unordered([0.01]))) == 1
            assert len(pool._workers) == 1
    finally:
        with workers._pools_lock:
            for k in [k for k in workers._pools if k[0] == key]:
                workers._pools.pop(k).close()


def test_a_batch_smaller_than_the_pool_starts_only_the_workers_it_needs():
    """--workers 6 on one image started six MediaPipe processes on two cores: 4.1 s against 1.7 s
    with one. A batch starts no more workers than it has arguments; running ones stay for later."""
    from fer_core.measure.workers import IsolatedPool

    pool = IsolatedPool(4, abs, timeout_s=60)
    try:
        with pool.lock:
            assert [r for _, r in pool.imap_unordered([-5])] == [5]
            assert len(pool._workers) == 1
            assert sorted(r for _, r in pool.imap_unordered([-1, -2, -3])) == [1, 2, 3]
            assert len(pool._workers) == 3
            assert [r for _, r in pool.imap_unordered([-6])] == [6]
            assert len(pool._workers) == 3  # kept, not stopped and started again
    finally:
        pool.close()


@pytest.mark.parametrize("let_go", ["settings moved", "close_workers"])
def test_a_batch_on_a_pool_let_go_of_meanwhile_leaves_no_workers_behind(let_go):
    """A dashboard session got the shared pool; before it held it, a script moved the image limits
    (a new pool replaced this one) or called ``close_workers``. Its batch still runs on the pool it
    got, but the workers that batch started stayed alive until the program exited: no one held that
    pool any more to stop them."""
    from fer_core.measure import workers

    key = "test-let-go"
    try:
        pool = workers.shared_pool(key, 1, abs, settings="old limits", timeout_s=60)
        if let_go == "close_workers":
            workers.close_workers()
        else:
            assert workers.shared_pool(key, 1, abs, settings="new limits", timeout_s=60) is not pool
        with pool.held():
            assert [r for _, r in pool.imap_unordered([-4])] == [4]
            started = [w.process for w in pool._workers]
        assert len(started) == 1
        assert pool._workers == [] and not any(p.is_alive() for p in started)
        pool.start()  # a page opening on the old pool starts nothing either
        assert pool._workers == []
    finally:
        with workers._pools_lock:
            for k in [k for k in workers._pools if k[0] == key]:
                workers._pools.pop(k).close()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_a_job_given_one_core_measures_with_one_worker_and_one_thread(monkeypatch):
    """Under ``taskset -c 0`` (a cluster job's one core) two measuring workers of 11 threads each
    shared the core: os.cpu_count() counts the machine, not what the job may use."""
    from fer_core.measure.extract import default_workers
    from fer_core.predictors.lite import lite_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_workers() == 1 and lite_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers() == 2 and lite_threads() == 2
