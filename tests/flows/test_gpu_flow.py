"""The gpu flow under Prefect's test harness: GPUs the lake knows on this host, a queued command
placed and launched; the artifact a person reads; the disabled case saying why."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from tasks.gpu.queue import GpuQueue
from tasks.gpu.request import GpuRequest
from tasks.gpu.scheduler import this_host
from tasks.lake import Lake, Sample
from tasks.state import State

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _root(overrides: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}="))


def test_gpu_flow_places_queued_work_and_reports(lake_overrides: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.gpu import ARTIFACT_KEY, gpu

    now = datetime.now(UTC) - timedelta(minutes=1)
    labels = {"gpu": "0", "uuid": "GPU-flow", "name": "NVIDIA A100", "host": this_host()}
    Lake(_root(lake_overrides, "lake.root")).write_samples(
        [Sample("gpu_memory_total_bytes", 40.0 * 2**30, now, labels), Sample("gpu_utilization_ratio", 0.1, now, labels)]
    )
    task = GpuQueue(State(_root(lake_overrides, "state.path"))).submit(
        GpuRequest(kind="command", gpus=1, command=(sys.executable, "-c", "pass"))
    )
    state = gpu(overrides=[*lake_overrides, "gpu.enabled=true", "gpu.inventory.source=lake"], return_state=True)
    summary = state.result()
    assert summary["devices"] == 1
    (decision,) = summary["placement"]["decisions"]
    assert decision["task"] == task.id and decision["placed"] is True
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    (mine,) = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    assert task.id in str(mine.data) and "GPU-flow" in str(mine.data)


def test_disabled_gpu_flow_says_why(lake_overrides: list[str]) -> None:
    from flows.gpu import gpu

    summary = gpu(overrides=lake_overrides)
    assert summary["skipped"] is True and summary["reason"] == "gpu.enabled is false"
