"""Launch a placed task on its devices: a local process, or a Prefect deployment run.

The assignment travels as the environment CUDA and the NVIDIA container runtime read:
``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` = the task's device ids (UUIDs where the
inventory knows them: they name the same GPU whatever the enumeration order), and
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so indices, where used, mean what ``nvidia-smi`` shows. A Prefect
deployment run gets the same variables as its ``env`` job variable, which process, Docker and
Kubernetes work pools all pass to the flow's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import tasks

__all__ = ["RUN_ENDS", "deployment_run_state", "gpu_env", "launch_deployment", "launch_local", "log_path"]

#: A deployment run's final Prefect state type → the queue status its task ends with.
RUN_ENDS = {"COMPLETED": "done", "FAILED": "failed", "CRASHED": "failed", "CANCELLED": "cancelled"}

_ROOT = Path(tasks.__file__).resolve().parents[1]


def gpu_env(devices: Sequence[str], task_id: str | None = None) -> dict[str, str]:
    """The variables that hand a process its GPUs."""
    ids = ",".join(devices)
    env = {"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if task_id is not None:
        env["CORTEX_GPU_TASK"] = task_id
    return env


def log_path(state_path: str, task_id: str) -> Path:
    """Where a local task's output goes: next to the state DB (``gpu-tasks/ID.log``)."""
    return Path(state_path).resolve().parent / "gpu-tasks" / f"{task_id}.log"


def launch_local(
    state_path: str,
    task_id: str,
    command: Sequence[str],
    devices: Sequence[str],
    *,
    lock_timeout_s: float = 30.0,
    extra_env: Mapping[str, str] | None = None,
) -> int:
    """Start ``command`` under the launcher wrapper (``tasks.gpu.runner``) with its devices; returns
    the wrapper's pid (the process that answers for the reservation). Output goes to
    :func:`log_path`. The wrapper runs in a session of its own: it outlives the placer."""
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(gpu_env(devices, task_id))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    log = log_path(state_path, task_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tasks.gpu.runner", "--state", str(Path(state_path).resolve()), "--task", task_id]
    argv += ["--timeout-s", str(lock_timeout_s), "--", *command]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid


def launch_deployment(
    client: Any, deployment: str, parameters: Mapping[str, Any], devices: Sequence[str], task_id: str
) -> str:
    """Create a run of ``deployment`` (``flow/deployment``) with the devices in its ``env`` job
    variable; returns the flow run id. ``client`` is a synchronous Prefect client
    (``prefect.client.orchestration.get_client(sync_client=True)``)."""
    dep = client.read_deployment_by_name(deployment)
    run = client.create_flow_run_from_deployment(
        dep.id,
        parameters=dict(parameters),
        job_variables={"env": gpu_env(devices, task_id)},
        tags=["cortex-gpu", f"cortex-gpu-task:{task_id}"],
    )
    return str(run.id)


def deployment_run_state(client: Any, flow_run_id: str) -> str | None:
    """The Prefect state type of a deployment run (``COMPLETED``, ``RUNNING``, ...); ``None`` when the
    run no longer exists (deleted). Errors reaching the API propagate: the caller keeps the
    reservation rather than free GPUs a live run may hold."""
    from prefect.exceptions import ObjectNotFound  # lazy: see _prefect_client in scheduler.py

    try:
        run = client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return None
    return run.state.type.value if run.state is not None else "PENDING"
