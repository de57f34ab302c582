"""``cortex-perf forecast …`` and ``cortex-perf anomaly …`` through typer's CliRunner."""

from __future__ import annotations

import csv
import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.chdir(tmp_path)


def _series_csv(path: Path, n: int = 1200, spike_at: int | None = None) -> Path:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "load"])
        for i in range(n):
            v = 50 + 20 * math.sin(2 * math.pi * i / 288) + (i % 7) * 0.3
            if spike_at is not None and spike_at <= i < spike_at + 3:
                v += 200
            w.writerow([(t0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), f"{v:.3f}"])
    return path


def test_forecast_backtest_json(tmp_path: Path) -> None:
    f = _series_csv(tmp_path / "load.csv")
    res = runner.invoke(
        app,
        [
            "forecast",
            "backtest",
            str(f),
            "--time-col",
            "time",
            "--value-col",
            "load",
            "--horizon",
            "6",
            "-m",
            "seasonal_naive",
            "-m",
            "linear_trend",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["models"]) == {"seasonal_naive", "linear_trend"}
    # pure daily seasonality (+ a 7-step ripple): seasonal naive is near-perfect, a line is not
    assert out["models"]["seasonal_naive"]["mase"] < out["models"]["linear_trend"]["mase"]
    assert out["horizon"] == 6


def test_forecast_backtest_bad_column_is_one_line(tmp_path: Path) -> None:
    f = _series_csv(tmp_path / "load.csv")
    res = runner.invoke(app, ["forecast", "backtest", str(f), "--time-col", "when", "--value-col", "load"])
    assert res.exit_code == 2
    assert "when" in res.stderr and "Traceback" not in res.output


def test_forecast_history_empty_registry_says_so(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["--set", f"data_dir={tmp_path}", "--set", f"state.path={tmp_path}/s.duckdb", "forecast", "history"]
    )
    assert res.exit_code == 2 and "no model versions yet" in res.stderr


def test_anomaly_detect_writes_nab_format(tmp_path: Path) -> None:
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    _series_csv(src / "a.csv", n=900, spike_at=800)
    res = runner.invoke(
        app,
        [
            "anomaly",
            "detect",
            str(tmp_path / "in"),
            "--time-col",
            "time",
            "--value-col",
            "load",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "out" / "sub" / "a.csv"
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score"] and len(rows) == 900
    scores = [float(r["anomaly_score"]) for r in rows]
    assert max(range(len(scores)), key=scores.__getitem__) in range(800, 810)  # the spike scores highest
    dry = runner.invoke(app, ["anomaly", "detect", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--dry-run"])
    assert dry.exit_code == 0 and "would score" in dry.stdout and not (tmp_path / "o2").exists()


def _stepping_back_csv(path: Path, n: int = 900, step_at: int = 600) -> Path:
    """Five-minute rows whose clock steps back 55 minutes at data row ``step_at`` (line ``step_at + 2``)."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            t = t0 + timedelta(minutes=5 * i - (55 if i >= step_at else 0))
            w.writerow([t.strftime("%Y-%m-%d %H:%M:%S"), f"{50 + (i % 7) * 0.3:.3f}"])
    return path


def test_anomaly_detect_scores_a_stepping_back_file_with_a_warning(tmp_path: Path) -> None:
    f = _stepping_back_csv(tmp_path / "machine.csv")
    res = runner.invoke(app, ["anomaly", "detect", str(f), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.stderr and "line 602" in res.stderr and "file order" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1  # one line per file, however many steps back
    assert len(list(csv.DictReader((tmp_path / "out" / "machine.csv").open()))) == 900
    # NAB's probationary period by default (15 % of 900 rows), a fixed count on request
    assert " 135 " in res.output
    res = runner.invoke(app, ["anomaly", "detect", str(f), "--out", str(tmp_path / "o2"), "--warmup", "40", "--sort"])
    assert res.exit_code == 0, res.output
    assert " 40 " in res.output and "sorted by time" in res.stderr
    stamps = [r["timestamp"] for r in csv.DictReader((tmp_path / "o2" / "machine.csv").open())]
    assert stamps == sorted(stamps)


def test_anomaly_detect_bad_warmup_is_one_line(tmp_path: Path) -> None:
    f = _series_csv(tmp_path / "a.csv", n=50)
    res = runner.invoke(app, ["anomaly", "detect", str(f), "--out", str(tmp_path / "o"), "--warmup", "lots"])
    assert res.exit_code == 2 and "--warmup" in res.stderr and "'nab'" in res.stderr
    assert not (tmp_path / "o").exists()
