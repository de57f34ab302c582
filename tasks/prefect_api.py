"""The one reader of Prefect's API: a client for an API URL, recent flow runs, each flow's last and
next run, and the auth headers of a plain HTTP probe.

Why one module: the collector's ``prefect`` source (runs as metrics) and ``cortex-perf status``
(flow health) both read flow runs. Each used to build its own client, and the health check's
ignored ``PREFECT_API_KEY``/``PREFECT_API_AUTH_STRING``, so against Prefect Cloud or a server with
basic auth every flow showed "not reachable" while the collector read the same API fine. Here the
key and auth string of Prefect's settings go with every request, whoever asks.

A leaf utility (it imports nothing of ``tasks``): sources and health may both use it under the
layer rules. Prefect itself is imported inside the functions: importing it costs 3-5 s here, and
the host source or a ``status`` without a Prefect API must not pay that.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = ["FINISHED_STATES", "FlowStatus", "auth_headers", "client", "flow_statuses", "recent_runs"]

#: State types of a run that is over (its last state is the flow's health).
FINISHED_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class FlowStatus(NamedTuple):
    """One flow as the health check sees it: its last finished run's state type and end, its next
    scheduled run (times aware UTC; ``None`` where there is none)."""

    flow: str
    state: str | None
    when: datetime | None
    next_at: datetime | None


def _credentials() -> tuple[str | None, str | None]:
    """``(PREFECT_API_KEY, PREFECT_API_AUTH_STRING)`` from Prefect's settings (environment or profile)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY  # Prefect: 3-5 s import

    return PREFECT_API_KEY.value(), PREFECT_API_AUTH_STRING.value()


def client(api_url: str | None = None) -> AbstractContextManager[Any]:
    """A sync Prefect client for ``api_url`` with the API key and auth string of Prefect's settings.

    ``None``: Prefect's own client for its configured API. Only call it so when an API URL is set
    (``PREFECT_API_URL``): without one, Prefect's client starts a temporary server (15-24 s here)
    that knows no runs. An explicit URL gets a client of its own, leaving Prefect's global settings
    alone.
    """
    if api_url is None:
        from prefect.client.orchestration import get_client  # Prefect: 3-5 s import

        return get_client(sync_client=True)
    from prefect.client.orchestration import SyncPrefectClient  # Prefect: 3-5 s import

    api_key, auth_string = _credentials()
    return SyncPrefectClient(api_url, auth_string=auth_string, api_key=api_key)


def auth_headers() -> dict[str, str]:
    """The ``Authorization`` header Prefect's own client sends (Bearer key, else Basic auth string),
    for a plain HTTP request such as the ``/health`` probe; ``{}`` when neither is set."""
    api_key, auth_string = _credentials()
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    if auth_string:
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}
    return {}


def recent_runs(c: Any, since: datetime, now: datetime, limit: int) -> tuple[list[Any], dict[Any, str]]:
    """Flow runs that started, ended or were due since ``since`` (or are running now), newest first,
    at most ``limit``; and ``{flow id: flow name}`` of the flows they belong to."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId, FlowRunFilter  # Prefect: 3-5 s
    from prefect.client.schemas.sorting import FlowRunSort

    # The API has no "updated since" filter; this OR of the run's own times is the closest match.
    # model_validate: the filter models type their times as pendulum DateTime but take datetimes.
    recent = FlowRunFilter.model_validate(
        {
            "operator": "or_",
            "start_time": {"after_": since},
            "end_time": {"after_": since},
            "expected_start_time": {"after_": since, "before_": now},  # not the scheduled future
            "state": {"type": {"any_": ["RUNNING", "PENDING"]}},
        }
    )
    runs = list(c.read_flow_runs(flow_run_filter=recent, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=limit))
    ids = list({r.flow_id for r in runs})
    if not ids:
        return runs, {}
    flows = c.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)), limit=len(ids))
    return runs, {f.id: f.name for f in flows}


def flow_statuses(c: Any, limit: int = 200, finished: Sequence[str] = FINISHED_STATES) -> list[FlowStatus]:
    """Every flow (at most ``limit``) with its last finished run and its next scheduled run."""
    from prefect.client.schemas.filters import (  # Prefect: 3-5 s import
        FlowFilter,
        FlowFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    def of_states(*types: str) -> FlowRunFilter:
        by_type = FlowRunFilterStateType(any_=[StateType(t) for t in types])
        return FlowRunFilter(state=FlowRunFilterState(type=by_type))

    out: list[FlowStatus] = []
    for f in c.read_flows(limit=limit):
        one_flow = FlowFilter(id=FlowFilterId(any_=[f.id]))
        last = c.read_flow_runs(
            flow_filter=one_flow, flow_run_filter=of_states(*finished), sort=FlowRunSort.END_TIME_DESC, limit=1
        )
        upcoming = c.read_flow_runs(
            flow_filter=one_flow, flow_run_filter=of_states("SCHEDULED"), sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )  # fmt: skip
        nxt = upcoming[0].expected_start_time if upcoming else None
        nxt = nxt.astimezone(UTC) if nxt else None
        if not last:
            out.append(FlowStatus(f.name, None, None, nxt))
            continue
        r = last[0]
        st = r.state_type.value if r.state_type else None
        when = r.end_time or r.start_time or r.expected_start_time
        out.append(FlowStatus(f.name, st, when.astimezone(UTC) if when else None, nxt))
    return out
