"""What one flow run left behind in the Prefect API: its log lines and its keyed artifact.

Why from the API rather than ``caplog``: a person reads a deployed run's logs and artifacts in the
UI, which shows what reached the API; asserting on that is asserting on what they see. Used with
the ``prefect_harness`` fixture (or any API the current Prefect settings point at).
"""

from __future__ import annotations

from uuid import UUID


def run_logs(flow_run_id: UUID) -> list[str]:
    """Every log message of the flow run, oldest first (queued log batches are sent first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), sort=LogSort.TIMESTAMP_ASC
        )
    return [log.message for log in logs]


def run_artifact(key: str, flow_run_id: UUID) -> str:
    """The data of the flow run's artifact ``key`` (AssertionError when it left none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    mine = [a for a in arts if a.flow_run_id == flow_run_id]
    assert mine, f"flow run {flow_run_id} left no artifact {key!r}"
    return str(mine[-1].data)
