"""``cortex-perf scale …`` over a tmp lake and state DB (no Prefect needed: the CLI calls tasks directly)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake, Sample

runner = CliRunner()
SERIES = 'app_load_rps{job="api"}'


def _night(ts: datetime) -> bool:
    return ts.hour < 7


@pytest.fixture
def env(tmp_path: Path) -> list[str]:
    """A day of per-minute load: 20 req/s from 00:00 to 07:00 UTC, 200 req/s otherwise."""
    lake = Lake(str(tmp_path / "lake"))
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    lake.write_samples(
        [Sample("app_load_rps", 20.0 if _night(ts) else 200.0, ts + timedelta(seconds=5), {"job": "api"})
         for ts in (end - timedelta(minutes=m) for m in range(1, 1441))]
    )  # fmt: skip
    targets: list[dict[str, Any]] = [
        {"name": "api", "capacity_per_unit": 50, "policy": "reactive", "emergency_utilisation": None,
         "metric": {"selector": SERIES, "lookback": "1h"}, "actuator": {"kind": "log", "initial": 3},
         "rails": {"min_units": 3, "max_units": 5}},
        {"name": "batch", "capacity_per_unit": 50, "cost_per_unit_hour": 2.5,
         "metric": {"selector": SERIES, "lookback": "1h"}, "actuator": {"kind": "log", "initial": 10},
         "rails": {"min_units": 10, "max_units": 40}},
    ]  # fmt: skip
    return ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"state.path={tmp_path / 'state.duckdb'}",
            "--set", "scaling.targets=" + json.dumps(targets)]  # fmt: skip


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def _day_need() -> int:
    now = datetime.now(UTC)
    return 1 if _night(now - timedelta(minutes=1)) else 6  # ceil(20 / 35) or ceil(200 / 35)


def test_plan_shows_the_decision_and_records_nothing(env: list[str]) -> None:
    code, out = _run(*env, "scale", "plan", "api", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["recorded"] is False and [t["target"] for t in data["targets"]] == ["api"]
    d = data["targets"][0]["decision"]
    assert d["from"] == 3 and d["to"] == min(max(_day_need(), 3), 5) and "HPA" in d["reason"]
    code, out = _run(*env, "scale", "history", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = _run(*env, "scale", "plan")
    assert code == 0 and "nothing applied" in out and "batch" in out and "→" in out


def test_apply_then_history(env: list[str]) -> None:
    code, out = _run(*env, "scale", "apply", "api", "--dry-run", "--json")
    assert code == 0, out
    assert json.loads(out)["targets"][0]["status"] in ("dry-run", "hold")
    code, out = _run(*env, "scale", "apply", "--json")
    assert code == 0, out
    by = {t["target"]: t for t in json.loads(out)["targets"]}
    assert by["batch"]["decision"]["from"] == 10 and by["batch"]["decision"]["to"] == 10  # held at min_units
    if by["api"]["decision"]["to"] != 3:
        assert by["api"]["status"] == "applied" and by["api"]["action"]["observed"] == by["api"]["decision"]["to"]
    code, out = _run(*env, "scale", "history", "api", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["mode"] == "apply" and rows[-1]["mode"] == "dry-run"
    if rows[0]["to"] != rows[0]["from"]:
        assert [a["status"] for a in rows[0]["actions"]] == ["applied"]
    code, out = _run(*env, "scale", "history")
    assert code == 0 and "Scaling decisions" in out and "dry-run" in out
    # a dry-run change reads "recorded only", a dry-run hold "hold": which one depends on the hour
    # (the fixture's load is low from 00:00 to 07:00 UTC, when the api target holds at 3)
    changed_dry = any(r["mode"] == "dry-run" and r["from"] != r["to"] for r in rows)
    assert ("recorded" in out) == changed_dry


def test_recommend_with_numbers(env: list[str], tmp_path: Path) -> None:
    from tasks.forecasting.data import forecast_rows
    from tasks.lake import schema as S

    lake = Lake(str(tmp_path / "lake"))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    frame = pl.DataFrame({
        "series": [SERIES] * 6, "ts": [now + timedelta(minutes=30 * k) for k in range(1, 7)],
        "step": list(range(1, 7)), "p10": [300.0] * 6, "p50": [350.0] * 6, "p90": [400.0] * 6, "p99": [450.0] * 6,
    }).with_columns(pl.col("ts").dt.cast_time_unit("ms"))  # fmt: skip
    lake.write_rows(S.FORECASTS, forecast_rows(frame, lake, issued_at=now, model="xgboost", version="v1"))

    code, out = _run(*env, "scale", "recommend", "--json")
    assert code == 0, out
    recs = json.loads(out)
    api = {r["kind"]: r for r in recs if r["target"] == "api"}
    # 00–07 UTC needed 1 unit (20 / 35) against a floor of 3: 2 unit-hours × 7 hours a day
    assert api["night"]["hours"] == list(range(7)) and api["night"]["unit_hours_saved_per_day"] == 14
    assert "00–07 UTC" in api["night"]["message"]
    # the day needs ceil(200 / 35) = 6 > max_units 5 for 17 of 24 hours
    assert api["saturated"]["peak_needed"] == 6 and api["saturated"]["saturated_share"] == pytest.approx(
        17 / 24, abs=0.01
    )
    # the forecast's p90 of 400 needs ceil(400 / 35) = 12 units > 5
    assert api["slo_risk"]["needed"] == 12 and api["slo_risk"]["p90_load"] == 400.0
    batch = {r["kind"]: r for r in recs if r["target"] == "batch"}
    # a floor of 10 where at most 6 (p95) were ever needed: (10 − 1) × 7 h + (10 − 6) × 17 h = 131 unit-hours a day
    assert batch["idle"]["p95_needed"] == 6 and batch["idle"]["spare_unit_hours_per_day"] == pytest.approx(131, abs=1)
    assert batch["idle"]["cost_per_day"] == pytest.approx(131 * 2.5, abs=2.5)
    code, out = _run(*env, "scale", "recommend")
    assert code == 0 and "idle" in out and "night" in out and "slo_risk" in out


def test_errors_and_help(env: list[str], tmp_path: Path) -> None:
    code, out = _run(*env, "scale", "plan", "nope")
    assert code == 2 and "'nope' is not configured (known: api, batch)" in out
    code, out = _run(*env, "scale", "history", "nope")
    assert code == 2 and "known: api, batch" in out
    bare = ["--set", f"lake.root={tmp_path / 'l2'}", "--set", f"state.path={tmp_path / 's2.duckdb'}"]
    code, out = _run(*bare, "scale", "apply")
    assert code == 1 and "no scaling targets configured" in out
    bad = json.dumps([{"name": "x", "capacity_per_unit": 1, "metric": {"selector": "m"}, "actuator": {"kind": "k8"}}])
    code, out = _run(*bare, "--set", f"scaling.targets={bad}", "scale", "plan")
    assert code == 2 and "scaling.targets[0].actuator.kind: unknown actuator 'k8'" in " ".join(out.split())
    for cmd in ("plan", "apply", "history", "recommend"):
        code, out = _run("scale", cmd, "--help")
        assert code == 0 and "--json" in out
