"""Images/second of the Ray engine on a two-node Ray cluster against one node with as many CPUs,
both started on this machine (each node its own raylet, as ``ray start`` would start it), on a
FER2013 subset; and whether both give the same rows.

Run: PYTHONPATH=. python bench/ray_multinode.py [--limit N] [--repeats R] [--split val]
Each cluster is started afresh (its start timed apart) and joined by its address, as
``extract --engine ray --ray-address`` does; the rate is over the whole ``extract_on_ray`` call
(joining, shipping ``fer_core``, starting the actors, measuring). One machine's nodes share its
CPUs, disk and memory: this measures what the multi-node path costs (node-to-node transfers, a
second raylet), not what a second machine would add. With one CPU per node, the two actors
cannot share a node: one measures on each. ``--repeats`` alternates the layouts, as the machine's
load from other jobs drifts. Needs Ray (requirements-ray.txt).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ray_extract_speed import agreement, spread  # bench/ is this script's folder

from fer_core.config import fer_split_dir
from fer_core.images import list_images

# (name, CPUs of each node): the same two CPUs, on one node or spread over two.
LAYOUTS: dict[str, list[int]] = {"one node": [2], "two nodes": [1, 1]}


def run_on(cpus_per_node: list[int], items: list, root: Path, out: Path) -> dict:
    """Start a cluster with one node per entry of ``cpus_per_node``, measure ``items`` on it, stop it."""
    from ray.cluster_utils import Cluster

    from fer_core.measure import ray_engine

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node[0], "include_dashboard": False})
    try:
        for cpus in cpus_per_node[1:]:
            cluster.add_node(num_cpus=cpus)
        cluster.wait_for_nodes()
        started = time.perf_counter() - start
        start = time.perf_counter()
        run = ray_engine.extract_on_ray(items, out, root=root, address=cluster.address)
        seconds = time.perf_counter() - start
    finally:
        cluster.shutdown()
    return {"start": started, "seconds": seconds, "actors": run.workers, "table": run.table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=300, help="N images spread over the split (0: all)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each layout, alternated")
    args = parser.parse_args()
    root = fer_split_dir(args.split)
    items = spread(list_images(root), args.limit)
    print(f"FER2013 {args.split}: {len(items)} images; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs\n", flush=True)
    print("| cluster | nodes (CPUs each) | actors | cluster start s | seconds | images/s | same rows as one node |")
    print("|---|---|---|---|---|---|---|", flush=True)
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        runs = [layout for _ in range(args.repeats) for layout in LAYOUTS.items()]
        for k, (name, cpus) in enumerate(runs):  # each run its own output: none resumes another's rows
            result = run_on(cpus, items, root, Path(tmp) / f"au_{k}.parquet")
            if reference is None:
                reference, same = result["table"], "–"
            else:
                share, diff = agreement(result["table"], reference)
                same = f"{share:.0%} (largest AU difference {diff:.2g})"
            print(f"| {name} | {len(cpus)} ({', '.join(map(str, cpus))}) | {result['actors']} | {result['start']:.1f} "
                  f"| {result['seconds']:.1f} | {len(items) / result['seconds']:.1f} | {same} |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
