"""The ``cortex-perf`` command line, through typer's CliRunner (no Prefect server needed here)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.demo import seed_demo
from tasks.lake import Lake

runner = CliRunner()

COMMANDS = [
    [],
    ["run"],
    ["collect"],
    ["serve"],
    ["config"],
    ["config", "show"],
    ["config", "check"],
    ["lake"],
    ["lake", "stats"],
    ["lake", "query"],
    ["lake", "compact"],
    ["lake", "import"],
    ["forecast"],
    ["forecast", "train"],
    ["forecast", "show"],
    ["forecast", "history"],
    ["forecast", "rollback"],
    ["forecast", "backtest"],
    ["anomaly"],
    ["anomaly", "detect"],
    ["rules"],
    ["rules", "check"],
]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No caller CORTEX_PERF_* settings; Prefect variables the CLI sets are restored afterwards."""
    for key in list(os.environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    for key, value in {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PROJECT_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo-lake")
    seed_demo(Lake(str(root)), days=1, now=datetime.now(UTC))
    return root


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_of_every_command(cmd: list[str]) -> None:
    code, out, _ = _run(*cmd, "--help")
    assert code == 0
    assert "Usage" in out
    assert len(out.splitlines()) > 5


def test_prefect_not_imported_by_the_cli_module() -> None:
    # The CLI must set Prefect's environment before Prefect loads its settings.
    import subprocess
    import sys

    code = "import sys, flows.cli; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_config_show_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_PERF_SOURCES__REDIS__URL", "redis://:s3cret-pass@cache:6379/0")
    monkeypatch.setenv("CORTEX_PERF_API_TOKEN", "tok-very-secret")
    for args in (["config", "show"], ["config", "show", "--json"]):
        code, out, err = _run("--set", "lake.root=/x", *args)
        assert code == 0, err
        assert "s3cret-pass" not in out + err
        assert "tok-very-secret" not in out + err
        assert "**********" in out
    code, out, _ = _run("--set", "lake.root=/x", "config", "show", "--json")
    data = json.loads(out)
    assert data["lake"]["root"] == "/x"
    assert data["sources"]["redis"]["url"] == "**********"


def test_config_check_ok_and_bad_file(tmp_path: Path) -> None:
    code, out, _ = _run("config", "check")
    assert code == 0 and "config OK" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("logging:\n  level: chatty\ncollect:\n  interval_s: 0\n")
    code, out, err = _run("--config", str(bad), "config", "check")
    assert code == 1
    assert "logging.level" in err and "collect.interval_s" in err
    for allowed in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert allowed in err
    # every other command refuses the same config with exit 2
    code, _, err = _run("--config", str(bad), "lake", "stats")
    assert code == 2 and "logging.level" in err


def test_config_file_from_option_and_set_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lake:\n  root: /from/file\ncollect:\n  interval_s: 30\n")
    code, out, _ = _run("--config", str(cfg), "--set", "lake.root=/from/cli", "config", "show", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["lake"]["root"] == "/from/cli"
    assert data["collect"]["interval_s"] == 30.0


def test_lake_stats_json_shape(demo_lake: Path) -> None:
    code, out, err = _run("--set", f"lake.root={demo_lake}", "lake", "stats", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == ["tables"]
    samples = data["tables"]["samples"]
    assert set(samples) >= {"rows", "files", "bytes", "series", "oldest", "newest"}
    assert samples["rows"] == 34 * 1440
    assert samples["series"] == 34
    code, out, _ = _run("--set", f"lake.root={demo_lake}", "lake", "stats")
    assert code == 0 and "samples" in out


def test_lake_query_table_json_csv(demo_lake: Path) -> None:
    base = ["--set", f"lake.root={demo_lake}", "lake", "query", 'host_cpu_utilization_ratio{host="web-1"}']
    code, out, err = _run(*base, "--since", "3h", "--step", "1h", "--agg", "max")
    assert code == 0, err
    assert "web-1" in out
    code, out, _ = _run(*base, "--since", "3h", "--step", "1h", "--json")
    rows = json.loads(out)
    assert 3 <= len(rows) <= 4
    assert rows[0]["labels"] == {"host": "web-1", "source": "demo"}
    assert rows[0]["ts"].endswith("Z")
    assert all(0 <= r["value"] <= 1 for r in rows)
    code, out, _ = _run(*base, "--since", "30m", "--csv")
    df = pl.read_csv(out.encode())
    assert df.columns == ["series", "metric", "labels", "ts", "value"]
    assert 29 <= df.height <= 31  # raw 1-minute samples


def test_lake_query_rate(demo_lake: Path) -> None:
    code, out, err = _run(
        "--set", f"lake.root={demo_lake}", "lake", "query", "http_requests_total", "--since", "2h",
        "--step", "30m", "--agg", "rate", "--json",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert rows and all(r["value"] >= 0 for r in rows)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["lake", "query", "cpu{host="], "selector"),
        (["lake", "query", "cpu", "--since", "yesterday-ish"], "invalid time"),
        (["lake", "query", "cpu", "--step", "5 minutes"], "invalid duration"),
        (["lake", "query", "cpu", "--agg", "median-ish", "--step", "5m"], "agg"),
        (["lake", "query", "cpu", "--agg", "rate"], "needs --step"),
        (["lake", "import", "/no.csv", "--time-col", "t", "--value-col", "v", "--metric", "m"], "no such file"),
        (["lake", "import", "x.csv", "--time-col", "t", "--value-col", "v"], "exactly one of --metric"),
        (["--set", "nonsense", "lake", "stats"], "KEY=VALUE"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    code, out, err = _run("--set", f"lake.root={tmp_path / 'lake'}", *args)
    assert code == 2, out + err
    assert needle in err
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) <= 2  # one message (rich may wrap a long line once)


def test_lake_import_and_dry_run(tmp_path: Path) -> None:
    csv = tmp_path / "in.csv"
    now = datetime.now(UTC).replace(microsecond=0)
    csv.write_text(
        f"when,machine,load\n{now.isoformat()},a,0.5\n{now.isoformat()},b,0.7\n{now.isoformat()},c,not-a-number\n"
    )
    lake_root = tmp_path / "lake"
    base = ["--set", f"lake.root={lake_root}", "lake", "import", str(csv), "--time-col", "when"]
    base += ["--value-col", "load", "--metric", "imported_load", "--label", "host=machine"]
    code, out, err = _run(*base, "--dry-run")
    assert code == 0, err
    assert "would import 2" in out and "1 rejected" in out
    assert "line 4" in err and "load" in err
    assert Lake(str(lake_root)).stats()["tables"]["samples"]["rows"] == 0
    code, out, err = _run(*base)
    assert code == 0, err
    latest = Lake(str(lake_root)).latest("imported_load")
    assert sorted(latest["value"].to_list()) == [0.5, 0.7]
    code, _, err = _run(*base[:-2], "--label", "host")
    assert code == 2 and "LABEL=COLUMN" in err


def test_lake_compact(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    lake = Lake(str(lake_root))
    from tasks.lake import Sample

    t = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(3):
        lake.write_samples([Sample("m", float(i), t.replace(minute=i), {"a": "b"})])
    code, out, err = _run("--set", f"lake.root={lake_root}", "lake", "compact", "--dry-run")
    assert code == 0, err
    assert "would merge" in out
    assert Lake(str(lake_root)).stats()["tables"]["samples"]["files"] == 3
    code, out, err = _run("--set", f"lake.root={lake_root}", "lake", "compact", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["files_before"] >= 3 and report["files_after"] < report["files_before"]
    assert Lake(str(lake_root)).stats()["tables"]["samples"]["rows"] == 3


def test_collect_dry_run_prints_samples_and_writes_nothing(tmp_path: Path) -> None:
    lake_root = tmp_path / "lake"
    code, out, err = _run(
        "--set", f"lake.root={lake_root}", "--set", "sources.gpu.enabled=false",
        "--set", "sources.prefect.enabled=false", "collect", "--dry-run", "--limit", "500",
    )  # fmt: skip
    assert code == 0, err
    assert "dry run" in out
    assert "host_cpu_utilization_ratio" in out
    assert not lake_root.exists() or Lake(str(lake_root)).stats()["tables"]["samples"]["rows"] == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_leaves_a_working_config_and_never_replaces_one(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `run --demo` in a fresh project, `scale plan`, `scale recommend` and `alerts run` used to
    fail ("no scaling targets configured", "alerting.rule_files is empty"): the demo now leaves a
    cortex-perf.yaml with its rules and target, and ends saying how to add a Slack or e-mail receiver."""
    quiet = ["--set", "sources.gpu.enabled=false", "--set", "sources.prefect.enabled=false"]
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    code, out, err = _run(*quiet, "run", "--demo", "--days", "1")
    assert code == 0, out + err
    config = project / "cortex-perf.yaml"
    assert config.is_file() and "wrote" in err.lower() and "cortex-perf.yaml" in err
    tail = " ".join(out.strip().splitlines()[-6:])
    assert "Slack" in tail and "e-mail" in tail and "alerts test-notify" in tail
    (report,) = (project / "data" / "reports").glob("performance_report-*.html")  # the project's, with its data
    assert "no data in the lake" not in report.read_text()
    for args in (
        ["scale", "plan", "--json"],
        ["scale", "recommend", "--json"],
        ["alerts", "run", "--dry-run", "--json"],
    ):
        code, out, err = _run(*quiet, *args)
        assert code == 0, f"{' '.join(args)}: {out}{err}"
        assert ("demo-web" if args[0] == "scale" else "Watchdog") in out, f"{args}: {out}"

    # A project with its own config: the demo uses it and leaves it exactly as it was.
    other = tmp_path / "mine"
    other.mkdir()
    monkeypatch.chdir(other)
    mine = "forecast:\n  enabled: false\nanomaly:\n  enabled: false\nreports:\n  enabled: false\n"
    (other / "cortex-perf.yaml").write_text(mine)
    code, out, err = _run(*quiet, "run", "--demo", "--days", "0.2")
    assert code == 0, out + err
    assert (other / "cortex-perf.yaml").read_text() == mine
    assert "not changed" in err
