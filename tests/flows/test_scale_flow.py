"""The scale flow under Prefect's test harness, over a tmp lake with a synthetic load series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.lake import Lake, Sample

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _lake(overrides: list[str]) -> Lake:
    return Lake(next(o.split("=", 1)[1] for o in overrides if o.startswith("lake.root=")))


def _targets(*extra: dict[str, Any]) -> str:
    web = {
        "name": "web",
        "capacity_per_unit": 50,
        "policy": "reactive",
        "emergency_utilisation": None,
        "metric": {"selector": "app_load_rps", "lookback": "1h"},
        "actuator": {"kind": "log", "initial": 2},
    }
    return "scaling.targets=" + json.dumps([web, *extra])


@pytest.fixture
def loaded(lake_overrides: list[str]) -> list[str]:
    """30 minutes of 210 req/s: on 2 units of 50 at a 70 % target the HPA wants ceil(210 / 35) = 6."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    _lake(lake_overrides).write_samples(
        [Sample("app_load_rps", 210.0, end - timedelta(minutes=m, seconds=-5)) for m in range(1, 31)]
    )
    return lake_overrides


def test_scale_flow_applies_records_and_leaves_an_artifact(loaded: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.scale import ARTIFACT_KEY, scale

    dead = {
        "name": "down",
        "capacity_per_unit": 10,
        "metric": {"selector": "app_load_rps"},
        "actuator": {"kind": "webhook", "url": "http://127.0.0.1:9/s", "current_url": "http://127.0.0.1:9/c",
                     "secret": "x" * 20, "timeout_s": 1},
    }  # fmt: skip
    state = scale(overrides=[*loaded, _targets(dead)], mode="apply", retry_failed_after_s=0, return_state=True)
    summary = state.result()
    assert (summary["mode"], summary["targets"], summary["changed"], summary["failed"]) == ("apply", 2, 1, 1)
    web = next(d for d in summary["decisions"] if d["target"] == "web")
    assert web["status"] == "applied" and (web["decision"]["from"], web["decision"]["to"]) == (2, 6)

    lake = _lake(loaded)
    triggered = [json.loads(p) for p in lake.events(name="scaling.triggered")["payload"]]
    assert [(t["target"], t["to"], t["mode"]) for t in triggered] == [("web", 6, "apply")]
    assert json.loads(lake.events(name="action.applied")["payload"][0])["to"] == 6
    failed = [json.loads(p) for p in lake.events(name="action.failed")["payload"]]
    assert [f["target"] for f in failed] == ["down", "down"]  # the first try and the in-tick retry

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    mine = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    assert len(mine) == 1
    text = str(mine[0].data)
    assert "| web | applied | 2 → 6 | reactive | 6.00 |" in text and "| down | failed |" in text


def test_scale_flow_dry_run_by_default_and_skips_without_targets(loaded: list[str]) -> None:
    from flows.scale import scale

    summary = scale(overrides=[*loaded, _targets()])
    assert summary["mode"] == "dry-run" and summary["decisions"][0]["status"] == "dry-run"
    assert _lake(loaded).events(name="action.applied").height == 0
    assert scale(overrides=loaded)["reason"] == "scaling.targets is empty"
    assert scale(overrides=[*loaded, _targets(), "scaling.enabled=false"])["skipped"] is True


def test_scale_flow_with_nothing_to_do_says_why(lake_overrides: list[str]) -> None:
    """Without targets the scale deployment completed every 2 minutes doing nothing, silently."""
    from prefectrun import run_artifact, run_logs

    from flows.scale import ARTIFACT_KEY, scale

    for extra, why in ([], "scaling.targets is empty"), (["scaling.enabled=false"], "scaling.enabled is false"):
        state = scale(overrides=[*lake_overrides, *extra], return_state=True)
        assert state.result()["reason"] == why
        run_id = state.state_details.flow_run_id
        assert any(f"nothing to do because {why}" in m for m in run_logs(run_id)), run_logs(run_id)
        assert why in run_artifact(ARTIFACT_KEY, run_id)
