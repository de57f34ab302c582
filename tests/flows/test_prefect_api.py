"""Our Prefect-facing parts against the harness's real (temporary) Prefect API."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from tasks.lake import Lake

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_prefect_source_reads_real_flow_runs(lake_overrides: list[str]) -> None:
    from prefect import flow

    from tasks.sources.prefect_runs import PrefectSource

    @flow(name="cortex-test-ok")
    def ok() -> int:
        return 1

    @flow(name="cortex-test-fails")
    def fails() -> None:
        raise RuntimeError("planned failure")

    ok()
    ok()
    with pytest.raises(RuntimeError):
        fails()
    samples = PrefectSource(lookback_minutes=10).collect()
    runs = {(s.labels["flow"], s.labels["state"]): s.value for s in samples if s.metric == "prefect_flow_runs"}
    assert runs[("cortex-test-ok", "completed")] >= 2
    assert runs[("cortex-test-fails", "failed")] >= 1
    durations = [
        s for s in samples if s.metric == "prefect_flow_run_duration_seconds" and s.labels["flow"] == "cortex-test-ok"
    ]
    assert len(durations) >= 2 and all(0 <= s.value < 60 for s in durations)
    # and they land in the lake like any other source's samples
    lake = Lake(next(o.split("=", 1)[1] for o in lake_overrides if o.startswith("lake.root=")))
    assert lake.write_samples(samples).rejected == 0


def test_events_reach_prefect_as_cortex_events(tmp_path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    from tasks.events import emit

    lake = Lake(str(tmp_path / "lake"))
    ev = emit(lake, "scaling.triggered", "target.api", {"from": 2, "to": 4}, to_prefect=True)
    assert lake.events(name="scaling.triggered").height == 1
    found = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not found:
        with get_client(sync_client=True) as client:
            resp = client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": EventFilter(
                        event=EventNameFilter(name=["cortex.scaling.triggered"]),
                        occurred={
                            "since": (ev.ts - timedelta(minutes=1)).isoformat(),
                            "until": (ev.ts + timedelta(minutes=1)).isoformat(),
                        },
                    ).model_dump(mode="json")
                },
            )
            found = [
                e for e in resp.json().get("events", []) if e["resource"]["prefect.resource.id"] == "cortex.target.api"
            ]
        if not found:
            time.sleep(0.5)
    assert found, "event did not reach the Prefect API"
    assert found[0]["payload"] == {"from": 2, "to": 4}
