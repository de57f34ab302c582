"""The planted history the report numbers and the report notebooks are tested on.

Why a module of its own: the numbers are computed in ``tasks/analytics`` and rendered by
``tasks/reports``, so their tests live in two folders (tests mirror the tree) but must read the
same lake; the ``report_lake`` fixture in ``tests/tasks/conftest.py`` builds it from here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from tasks.alerting.notify.acks import AckStore
from tasks.demo import seed_demo
from tasks.forecasting.baselines import SeasonalNaive
from tasks.forecasting.registry import ModelRegistry
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.lake.schema import Event
from tasks.state import State

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def _alert(lake: Lake, state: str, name: str, fp: str, ts: datetime) -> None:
    payload = {"rule": f"rules.yaml:{name}", "labels": {"alertname": name, "severity": "page"}}
    lake.write_events([Event(f"alert.{state}", f"cortex.alert.{fp}", payload, ts=ts)])


def forecast_times() -> list[datetime]:
    """Target times of the planted forecast: every 15 minutes for 4 h from 2 h ago."""
    return [NOW - timedelta(hours=2) + timedelta(minutes=15 * k) for k in range(1, 17)]


def window() -> tuple[datetime, datetime]:
    """A window that holds the whole planted history (two days back, one minute ahead)."""
    return NOW - timedelta(days=2), NOW + timedelta(minutes=1)


def plant_report_history(root: Path) -> tuple[Lake, str]:
    """One day of demo history plus planted alerts (one flapping rule, one acked), scaling, forecasts.

    Returns the lake and the state DB's path (acks, the model registry).
    """
    lake = Lake(str(root / "lake"))
    seed_demo(lake, now=NOW, days=1)
    t0 = NOW - timedelta(hours=6)
    for i in range(3):  # Flappy fires and resolves three times on the same alert: flapping
        _alert(lake, "firing", "Flappy", "aaa", t0 + timedelta(minutes=20 * i))
        _alert(lake, "resolved", "Flappy", "aaa", t0 + timedelta(minutes=20 * i + 5))
    _alert(lake, "firing", "HighLatency", "bbb", t0)
    _alert(lake, "resolved", "HighLatency", "bbb", t0 + timedelta(minutes=10))
    _alert(lake, "firing", "StillFiring", "ccc", NOW - timedelta(minutes=30))
    state_path = str(root / "state.duckdb")
    AckStore(State(state_path)).ack("bbb", "oncall", at=t0 + timedelta(minutes=2))
    registry = ModelRegistry(State(state_path), root / "models")
    v1 = registry.register("cpu", SeasonalNaive(), train_start=None, train_end=None, score=0.12)
    registry.promote_if_better("cpu", v1.version, challenger_score=0.12, champion_score=None)
    for k, (frm, to) in enumerate([(3, 5), (5, 4)]):
        payload = {"target": "api", "from": frm, "to": to, "mode": "dry-run", "emergency": False, "reason": "load"}
        lake.write_events([Event("scaling.triggered", "cortex.scaling.api", payload, ts=t0 + timedelta(hours=k))])
    cpu = lake.series('host_cpu_utilization_ratio{host="web-1"}')
    sid, labels = cpu.get_column("series_id")[0], cpu.get_column("labels")[0]
    issued = NOW - timedelta(hours=2)
    steps = forecast_times()
    fc = pl.DataFrame(
        {
            "series_id": [sid] * len(steps),
            "metric": ["host_cpu_utilization_ratio"] * len(steps),
            "labels": [labels] * len(steps),
            "issued_at": [issued] * len(steps),
            "ts": steps,
            "step": list(range(1, len(steps) + 1)),
            "p10": [0.2] * len(steps),
            "p50": [0.4] * len(steps),
            "p90": [0.6] * len(steps),
            "p99": [0.7] * len(steps),
            "model": ["seasonal_naive"] * len(steps),
            "version": ["1"] * len(steps),
        }
    ).with_columns(pl.col("issued_at", "ts").dt.cast_time_unit("ms"))
    lake.write_rows(S.FORECASTS, fc)
    return lake, state_path
