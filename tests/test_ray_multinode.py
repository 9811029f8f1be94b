"""The Ray engine on a real two-node Ray cluster started on this machine (a head and a worker node,
each its own raylet with one CPU, as ``ray start --head`` and ``ray start --address`` would start
them): joined by its address, the same rows as the local engine with measuring actors on both
nodes, and a worker node lost mid-run costs no row and doubles none."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")

from ray.cluster_utils import Cluster  # noqa: E402
from test_ray_engine import _same_rows, folder, local_table  # noqa: E402, F401 (folder, local_table: the fixtures)

from fer_core import au_table  # noqa: E402
from fer_core.config import REPO_ROOT  # noqa: E402
from fer_core.images import scan_images  # noqa: E402
from fer_core.measure import ray_engine  # noqa: E402
from fer_core.measure.ray_engine import MeasuringActor, extract_on_ray  # noqa: E402


@pytest.fixture
def two_nodes():
    """A head node and a worker node on this machine, one CPU each, so two measuring actors need
    both nodes; started from the root folder, as ``ray start`` on a node runs from none of the
    driver's folders. Every Ray process it started is stopped after the test, failed or not."""
    with contextlib.chdir("/"):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        with contextlib.chdir("/"):
            worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _measuring_actor_nodes(address: str) -> dict[str, int]:
    """Per node id, how many measuring actors the cluster placed and started there (Ray's actor
    table, kept in its GCS after the job ended)."""
    from ray._private import state

    ray.init(address=address, log_to_driver=False)
    try:
        actors = state.actors().values()
    finally:
        ray.shutdown()
    nodes: dict[str, int] = {}
    for actor in actors:
        if MeasuringActor.__name__ in actor["ActorClassName"] and actor["Pid"]:
            node = actor["Address"]["NodeID"]
            nodes[node] = nodes.get(node, 0) + 1
    return nodes


def test_cli_on_two_nodes_gives_the_local_engines_rows_with_an_actor_on_each_node(
        two_nodes, folder, local_table, tmp_path):  # noqa: F811
    """The folder is named relative to where the command runs (``extract photos``), as people do:
    the actors, whose nodes run from another folder, read every file as "file not found" when they
    were sent the paths as given."""
    cluster, worker = two_nodes
    out = tmp_path / "au.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fer_core", "extract", folder.name, "--engine", "ray",
                           "--ray-address", cluster.address, "--out", str(out)],
                          cwd=folder.parent, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "measured by 2 actors" in proc.stderr  # one per CPU of the cluster: both nodes' CPUs
    _same_rows(au_table.read(out), local_table)
    assert _measuring_actor_nodes(cluster.address) == {cluster.head_node.node_id: 1, worker.node_id: 1}


def _stalling_on(node_id: str, marks: Path) -> type:
    """A measuring actor that writes, per batch, the node it runs on and where its ``fer_core``
    came from; on ``node_id`` it stalls in its first batch (the node is removed meanwhile), and
    elsewhere it waits for that, so the node's actor surely has a batch in hand when it goes."""

    class Stalling(MeasuringActor):
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            from fer_core.measure import extract

            here = ray.get_runtime_context().get_node_id()
            (marks / f"{here}-{os.getpid()}-{time.monotonic_ns()}").write_text(
                "\n".join([extract.__file__, *batch["file"]]))
            if here == node_id:
                (marks / "stalled").touch()
                time.sleep(300)
            deadline = time.monotonic() + 180  # a fresh node's actor can take long to start on a loaded machine
            while not (marks / "stalled").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            return super().__call__(batch)

    return Stalling


def test_a_worker_node_lost_mid_run_loses_no_row_and_doubles_none(
        two_nodes, folder, local_table, tmp_path, monkeypatch):  # noqa: F811
    """Its actor dies with the node and the cluster has no CPU left to restart it on: the batches
    it held are measured by the actor on the head node, each file once."""
    cluster, worker = two_nodes
    # Ray puts the driver's working directory first on every worker's path: run from elsewhere, so
    # the actors can only find fer_core where a node without this checkout would, in the job.
    monkeypatch.chdir(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()

    def remove_worker_when_it_measures() -> None:
        deadline = time.monotonic() + 200
        while not (marks / "stalled").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.remove_node(worker, allow_graceful=False)  # as a node that is switched off

    remover = threading.Thread(target=remove_worker_when_it_measures, daemon=True)
    remover.start()
    listing = scan_images(folder)
    out = tmp_path / "au.csv"
    run = extract_on_ray(listing.items, out, root=folder, skipped=listing.skipped, address=cluster.address,
                         batch_size=2, actor=_stalling_on(worker.node_id, marks))
    remover.join(timeout=10)
    assert (marks / "stalled").exists() and not worker.any_processes_alive()  # the node did go, mid-batch
    assert run.workers == 2 and not run.cancelled
    assert run.table["file"].is_unique and ray_engine.CRASH_REASON not in set(run.table["reason"])
    _same_rows(run.table, local_table)
    _same_rows(au_table.read(out), local_table)
    batches = [p for p in marks.iterdir() if p.name != "stalled"]
    assert {p.name.split("-")[0] for p in batches} == {cluster.head_node.node_id, worker.node_id}
    # fer_core reached the actors with the job (runtime_env py_modules), not from this checkout
    shipped = {Path(p.read_text().splitlines()[0]) for p in batches}
    assert all("py_modules_files" in f.parts and not f.is_relative_to(REPO_ROOT) for f in shipped), shipped


# A head with token authentication, in a process of its own (a token mode set in this process would
# stay with Ray's core here for the later tests); it stops its cluster when its stdin closes.
TOKEN_HEAD = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""


def test_joining_a_cluster_that_asks_for_a_token_says_so_in_one_line(folder, tmp_path):  # noqa: F811
    """``ray start --head`` turns Ray's token authentication on when the head has a token, and a
    driver joining by address sends none unless told to: the run stopped with "could not start or
    join ... (ConnectionError: Failed to connect to Ray cluster at ...)", nothing said of a token."""
    plain = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    head_env = {**plain, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([sys.executable, "-c", TOKEN_HEAD], cwd="/", env=head_env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        address = head.stdout.readline().strip()
        assert address, "the head did not start"
        out = tmp_path / "au.csv"
        env = {**plain, "PYTHONPATH": str(REPO_ROOT), "RAY_gcs_server_port_wait_time_s": "2"}  # Ray's retries: 2 s
        proc = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(folder), "--engine", "ray",
                               "--ray-address", address, "--out", str(out)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        head.stdin.close()
        head.wait(timeout=60)
    said = proc.stderr.strip().splitlines()[-1]  # after Ray's own warnings of each try
    assert proc.returncode == 2
    assert said == (f"error: the Ray cluster at {address} asks for its token (Ray's token authentication): run "
                    "with RAY_AUTH_MODE=token and the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
    assert not out.exists()
