"""User text is data, not Rich markup: a label value ``[/x]`` must not crash a table (MarkupError)
and ``[red]x[/red]`` must show as typed, not as a red x. A real tmp lake and state DB; every command
through typer's CliRunner."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake, Sample
from tasks.lake import schema as S

runner = CliRunner()
CLOSING = "[/x]"
STYLED = "[red]x[/red]"
RULES = """\
groups:
  - name: q
    rules:
      - alert: Hot
        expr: cpu_ratio > 0.5
        labels: {team: "[red]x[/red]"}
        annotations: {summary: "[/x] on {{ $labels.gpu }}"}
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A lake (its root itself named like markup) with series labelled ``[/x]`` and ``[red]x[/red]``:
    6 h of a saturated ratio (an insight), a forecast, an alert rule over them."""
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: no cell folded into its neighbours' lines
    root = tmp_path / "[red]lake[/red]"
    lake = Lake(str(root))
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    lake.write_samples(
        [
            Sample("cpu_ratio", 0.99, now - timedelta(minutes=m), {"gpu": value})
            for value in (CLOSING, STYLED)
            for m in range(0, 6 * 60, 5)
        ]
    )
    fc = pl.DataFrame(
        [
            (f'cpu_ratio{{gpu="{v}"}}', now + timedelta(minutes=5 * k), k, 0.9, 0.95, 0.99, 1.0)
            for v in (CLOSING, STYLED)
            for k in (1, 2)
        ],
        schema=["series", "ts", "step", "p10", "p50", "p90", "p99"],
        orient="row",
    ).with_columns(pl.col("ts").dt.cast_time_unit("ms").dt.replace_time_zone("UTC"))
    from tasks.forecasting.data import forecast_rows

    lake.write_rows(S.FORECASTS, forecast_rows(fc, lake, issued_at=now, model="m", version="1"))
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    return [
        "--set",
        f"lake.root={root}",
        "--set",
        f"state.path={tmp_path / 'state.duckdb'}",
        "--set",
        f'alerting.rule_files=["{rules}"]',
    ]


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception  # a MarkupError must fail the test loudly, with its traceback
    return res.exit_code, res.stdout + res.stderr


def _flat(out: str) -> str:
    """The output without table borders and line breaks (Rich folds long cells)."""
    return "".join(ch for ch in out if ch not in "│┃┏┓┗┛┡┩└┘┌┐├┤┼━─ \n")


@pytest.mark.parametrize(
    "cmd",
    [
        ["lake", "query", "cpu_ratio", "--since", "1h"],
        ["lake", "query", "cpu_ratio", "--since", "7h", "--step", "1h", "--agg", "max"],
        ["forecast", "show", "cpu_ratio"],
        ["insights", "--since", "1d"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_label_values_print_literally(env: list[str], cmd: list[str]) -> None:
    code, out = _run(*env, *cmd)
    assert code == 0, out
    flat = _flat(out)
    assert CLOSING in flat and STYLED in flat


def test_lake_stats_title_shows_the_root_as_typed(env: list[str]) -> None:
    code, out = _run(*env, "lake", "stats")
    assert code == 0, out
    assert "[red]lake[/red]" in _flat(out)


def test_alerts_list_shows_labels_and_annotations_literally(env: list[str]) -> None:
    code, out = _run(*env, "alerts", "run")
    assert code == 0, out
    code, out = _run(*env, "alerts", "list")
    assert code == 0, out
    flat = _flat(out)
    assert STYLED in flat and CLOSING in flat  # the team label and the summary annotation


@pytest.mark.parametrize("name", ["[/x].csv", "[red]x[/red].csv"])
def test_error_lines_show_user_text_literally(tmp_path: Path, name: str) -> None:
    code, out = _run("lake", "import", str(tmp_path / name), "--time-col", "t", "--value-col", "v", "--metric", "m")
    assert code == 2
    assert out.startswith("error:") and f"{name}: no such file" in out


@pytest.mark.parametrize("value", [CLOSING, STYLED])
def test_config_errors_show_user_text_literally(tmp_path: Path, value: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"logging:\n  level: '{value}'\nforecast:\n  selectors: ['m{{a=\"{value}\"']\n")
    for cmd, want in ((["config", "check"], 1), (["lake", "stats"], 2)):
        code, out = _run("--config", str(cfg), *cmd)
        assert code == want, out
        assert "logging.level: must be one of" in out and f"(got '{value}')" in out
