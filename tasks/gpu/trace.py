"""The Alibaba GPU cluster trace (cluster-trace-gpu-v2023, "openb") as a placement model and a task mix.

Why it lives in ``tasks`` (not only in the benchmark): with no GPU on a machine, the queue and
placement are exercised against a device model filled from this trace. Files (see the dataset's
README): ``openb_node_list_*.csv`` (``sn,cpu_milli,memory_mib,gpu,model``) and
``openb_pod_list_default.csv`` (``…,cpu_milli,memory_mib,num_gpu,gpu_milli,…``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from tasks.gpu.cluster import Cluster, NodeSpec, TaskShape

__all__ = ["load_nodes", "load_pods"]

NODE_LIST = "openb_node_list_all_node.csv"
POD_LIST = "openb_pod_list_default.csv"


def load_nodes(directory: str | Path, filename: str = NODE_LIST) -> Cluster:
    """Every node of the trace, empty: its GPUs (whole, free), CPU and host memory."""
    nodes = []
    with open(Path(directory) / filename, newline="") as f:
        for row in csv.DictReader(f):
            gpus = int(row["gpu"])
            nodes.append(
                NodeSpec(
                    row["sn"],
                    [1000] * gpus,
                    cpu_free_milli=int(row["cpu_milli"]),
                    host_free_mib=int(row["memory_mib"]),
                )
            )
    return Cluster.from_nodes(nodes)


def load_pods(directory: str | Path, filename: str = POD_LIST) -> list[TaskShape]:
    """Every pod's request as a task shape (in file order)."""
    out = []
    with open(Path(directory) / filename, newline="") as f:
        for row in csv.DictReader(f):
            gpus = int(row["num_gpu"])
            milli = int(row["gpu_milli"]) if gpus else 1000
            out.append(TaskShape(gpus, milli, 0, int(row["cpu_milli"]), int(row["memory_mib"])))
    return out
