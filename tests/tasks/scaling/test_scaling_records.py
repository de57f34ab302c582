"""Decision records and policy state in a real state DB (``tasks.scaling.records``).

What could break: ids that change between re-runs of a tick (double applies) or collide across
targets, a policy state that does not survive the round trip, a re-run that starts from the state
its own first run wrote, a second write replacing the decision already on record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.scaling.guardrails import RailState
from tasks.scaling.policies import PolicyState
from tasks.scaling.records import ScalingRecords, decision_id, state_from_json, state_to_json

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
STATE = PolicyState(
    rails=RailState(recommendations=((1.0, 3), (16.0, 5)), changes=((16.0, 2),)),
    checks=((76.0, 240.5),),
    outcomes=(False, True),
)


def _rec(target: str, frm: int, to: int, **extra: object) -> dict[str, object]:
    return {"target": target, "from": frm, "to": to, "policy": "reactive", "emergency": False, "mode": "apply", **extra}


def test_decision_id_is_deterministic_per_target_and_whole_second() -> None:
    a = decision_id("api", T0)
    assert a == decision_id("api", T0 + timedelta(microseconds=999_999))  # a retry in the same second
    assert a == decision_id("api", T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris")))
    assert a.startswith("api@20250301T120000Z-")
    assert a != decision_id("api", T0 + timedelta(seconds=1)) and a != decision_id("api2", T0)
    assert decision_id("a/b", T0) != decision_id("a-b", T0)
    dry = decision_id("api", T0, "dry-run")
    assert dry != a and dry.endswith("-dry")  # a dry run never collides with the real tick


def test_state_round_trip_and_malformed_state() -> None:
    assert state_from_json(state_to_json(STATE)) == STATE
    assert state_from_json({}) == PolicyState()
    with pytest.raises(ValueError, match="policy state is malformed"):
        state_from_json({"checks": [[1.0]]})


def test_commit_then_read_back(tmp_path: Path) -> None:
    r = ScalingRecords(str(tmp_path / "state.duckdb"))
    assert r.load_state("api", T0) is None and r.get_decision("x") is None
    r.commit("d1", _rec("api", 2, 4, reason="HPA"), T0, STATE)
    row = r.get_decision("d1")
    assert row is not None and (row.target, row.from_units, row.to_units, row.mode) == ("api", 2, 4, "apply")
    assert row.record["reason"] == "HPA" and row.to_dict()["id"] == "d1"
    assert r.load_state("api", T0 + timedelta(seconds=15)) == STATE


def test_first_write_wins_and_a_rerun_starts_from_the_earlier_state(tmp_path: Path) -> None:
    r = ScalingRecords(str(tmp_path / "state.duckdb"))
    r.commit("d1", _rec("api", 2, 4), T0, STATE)
    later = PolicyState(outcomes=(True, True, True))
    r.commit("d2", _rec("api", 4, 6), T0 + timedelta(seconds=15), later)
    r.commit("d2", _rec("api", 4, 99), T0 + timedelta(seconds=15), PolicyState())  # a re-run's second write
    row = r.get_decision("d2")
    assert row is not None and row.to_units == 6
    assert r.load_state("api", T0 + timedelta(seconds=30)) == later  # the next tick
    assert r.load_state("api", T0 + timedelta(seconds=15)) == STATE  # a re-run of the latest tick
    assert [d.decision_id for d in r.decisions()] == ["d2", "d1"]
    r.commit("o1", _rec("other", 1, 1), T0, PolicyState())
    assert [d.decision_id for d in r.decisions("other")] == ["o1"]
    assert len(r.decisions(limit=1)) == 1
