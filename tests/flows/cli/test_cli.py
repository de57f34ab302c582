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


def test_help_loads_no_domain_package() -> None:
    """Every ``--help`` loads every command group: a group that imports tasks' heavy modules at its
    top costs every command seconds (the cache group once took ``--help`` from 0.6 s to 3.9 s)."""
    import subprocess
    import sys

    heavy = ["polars", "duckdb", "redis", "xgboost", "tasks.caching", "tasks.lake", "tasks.actuators"]
    code = f"import sys, flows.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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


@pytest.mark.timeout(30)
def test_lake_query_catastrophic_regex_finishes(tmp_path: Path) -> None:
    """``{host=~"(a*)*c"}`` against a 40-character label value hung ``lake query`` (backtracking re)."""
    from tasks.lake import Sample

    long = "a" * 40
    Lake(str(tmp_path / "lake")).write_samples([Sample("up", 1.0, datetime.now(UTC), {"host": long})])
    base = ["--set", f"lake.root={tmp_path / 'lake'}", "lake", "query", "--since", "1h", "--json"]
    code, out, err = _run(*base, 'up{host=~"(a*)*c"}')
    assert code == 0, err
    assert json.loads(out) == []
    code, out, err = _run(*base, 'up{host!~"(a*)*c"}')
    assert code == 0, err
    assert [r["labels"] for r in json.loads(out)] == [{"host": long}]


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
    flat = " ".join(out.split())  # the message wraps at 80 columns around the tmp paths
    assert "would import 2" in flat and "1 rejected" in flat
    assert "line 4" in err and "load" in err
    assert Lake(str(lake_root)).stats()["tables"]["samples"]["rows"] == 0
    code, out, err = _run(*base)
    assert code == 0, err
    latest = Lake(str(lake_root)).latest("imported_load")
    assert sorted(latest["value"].to_list()) == [0.5, 0.7]
    code, _, err = _run(*base[:-2], "--label", "host")
    assert code == 2 and "LABEL=COLUMN" in err
    code, _, err = _run(*base[:-2], "--label", "bad-name=machine")  # one parser: tasks.lake.importer
    assert code == 2 and "'bad-name=machine'" in err and "invalid label name" in err


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


@pytest.mark.timeout(120)
def test_collect_dry_run_without_a_prefect_api_skips_prefect_and_says_so(tmp_path: Path) -> None:
    """No ``PREFECT_API_URL`` (nor a profile or file that sets one): the Prefect source is skipped
    with a line saying so, and Prefect is never imported (importing it alone cost seconds)."""
    import subprocess
    import sys

    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('PREFECT_IMPORTED', 'prefect' in sys.modules, file=sys.stderr))\n"
        "sys.argv = ['cortex-perf', *sys.argv[1:]]\n"
        "from flows.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CORTEX_PERF_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    proc = subprocess.run(
        [sys.executable, "-c", script, "--set", f"lake.root={tmp_path / 'lake'}", "--set", "sources.gpu.enabled=false",
         "--set", "sources.redis.enabled=false", "collect", "--dry-run", "--limit", "5"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "source prefect skipped: no Prefect API configured" in " ".join(proc.stderr.split())
    assert "PREFECT_IMPORTED False" in proc.stderr
    assert "1 source(s)" in proc.stdout  # only the host source ran


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


def test_series_first_seen_before_its_retention_is_still_queried(tmp_path: Path, monkeypatch) -> None:
    """Issue 11 #1: import a 2010 sample and one at now, apply the default retention, query the
    last hour: the recent sample is there (the catalogue entry outlives its first-seen day)."""
    from tasks.config import load_settings
    from tasks.lake import maintain

    monkeypatch.setattr(maintain, "SERIES_WRITE_GRACE_S", 0.0, raising=False)  # judge the entry just written
    now = datetime.now(UTC).replace(microsecond=0)
    csv = tmp_path / "in.csv"
    csv.write_text(f"t,v\n2010-01-01T00:00:00Z,1\n{now.isoformat()},2\n")
    root = tmp_path / "lake"
    code, out, err = _run("--set", f"lake.root={root}", "lake", "import", str(csv), "--time-col", "t",
                          "--value-col", "v", "--metric", "m")  # fmt: skip
    assert code == 0, err
    settings = load_settings(None, [f"lake.root={root}"])
    rep = Lake.from_settings(settings).apply_retention(settings.lake.retention_days)
    assert rep.partitions_dropped.get("samples") == ["2010-01-01"]
    code, out, err = _run("--set", f"lake.root={root}", "lake", "query", "m", "--since", "1h", "--json")
    assert code == 0, err
    assert [r["value"] for r in json.loads(out)] == [2.0]


@pytest.mark.parametrize("when", ["1e16", "4611686018427387904", "not-a-time"])
def test_import_where_every_row_is_rejected_fails_naming_line_and_column(tmp_path: Path, when: str) -> None:
    """Issue 11 #8/#10: an out-of-range time is a rejected row (line and column), never a
    traceback or a 1970 sample; an import that rejects every row exits non-zero."""
    csv = tmp_path / "in.csv"
    csv.write_text(f"t,v\n{when},1\n{when},[bold]2\n")
    root = tmp_path / "lake"
    code, out, err = _run("--set", f"lake.root={root}", "lake", "import", str(csv), "--time-col", "t",
                          "--value-col", "v", "--metric", "m")  # fmt: skip
    assert code == 2, out + err
    assert "Traceback" not in out + err and "PanicException" not in out + err
    flat = " ".join(out.split())  # the message wraps at 80 columns around the tmp paths
    assert "imported 0 samples" in flat and "2 rejected" in flat
    assert "line 2, column 't'" in err and "line 3, column 't'" in err
    assert "every row was rejected (2); nothing imported" in err
    assert Lake(str(root)).stats()["tables"]["samples"]["rows"] == 0


def test_a_library_panic_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    """A Rust library's panic (polars through pyo3) is a BaseException, not an Exception: the CLI
    still answers with one line and exit 2 instead of a traceback."""
    import typer

    from flows.cli.common import handle_errors

    @handle_errors
    def command() -> None:
        raise pl.exceptions.PanicException("`DateTime + TimeDelta` overflowed")

    with pytest.raises(typer.Exit) as exc:
        command()
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err
    assert "DateTime + TimeDelta" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_lake_query_streams_every_row_as_valid_json_and_csv(demo_lake: Path, monkeypatch) -> None:
    """Issue 11 #7: --json/--csv stream all rows (here over many batches) and the output is whole."""
    from tasks.lake import lake as lake_mod

    monkeypatch.setattr(lake_mod, "STREAM_BATCH_ROWS", 1000)
    sel = '{__name__=~".+"}'
    lake = Lake(str(demo_lake))
    now = datetime.now(UTC)
    want = lake.raw(sel, datetime(2000, 1, 1, tzinfo=UTC), now)
    assert want.height > 10_000
    base = ["--set", f"lake.root={demo_lake}", "lake", "query", sel, "--since", "2000-01-01"]
    code, out, err = _run(*base, "--until", now.isoformat(), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == want.height
    assert [r["series"] for r in rows] == want.get_column("series").to_list()
    assert [r["value"] for r in rows] == want.get_column("value").to_list()
    assert rows[0]["labels"] == json.loads(want.get_column("labels")[0])
    code, out, err = _run(*base, "--until", now.isoformat(), "--csv")
    assert code == 0, err
    df = pl.read_csv(out.encode())
    assert df.height == want.height and df.columns == ["series", "metric", "labels", "ts", "value"]
    assert df.get_column("value").to_list() == want.get_column("value").to_list()


@pytest.mark.parametrize("fmt", ["table", "--json", "--csv"])
def test_lake_query_limit_caps_rows_with_a_clear_message(demo_lake: Path, fmt: str) -> None:
    """Issue 11 #7: --limit caps every output and says so on stderr (stdout stays valid)."""
    base = ["--set", f"lake.root={demo_lake}", "lake", "query", '{__name__=~".+"}', "--since", "1d", "--limit", "7"]
    code, out, err = _run(*base, *([] if fmt == "table" else [fmt]))
    assert code == 0, err
    assert "stopped at --limit 7 rows; more match" in err
    if fmt == "--json":
        assert len(json.loads(out)) == 7
    elif fmt == "--csv":
        assert pl.read_csv(out.encode()).height == 7
    else:
        assert out.count("demo") == 7
    code, out, err = _run(*base[:-2], "--limit", "100000", "--json", "--since", "10m")
    assert code == 0 and "stopped" not in err and len(json.loads(out)) > 0


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


def test_collect_loads_the_config_once_for_the_command_and_its_flow(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command checks the config before Prefect starts; the collect flow it calls then runs on
    the settings, lake and state the command built (``CliState.flow_inputs``) instead of reading the
    config again."""
    import flows._common as common
    import tasks.config_checks as config_checks

    loads: list[object] = []
    real = config_checks.load_checked_settings

    def counting(*args: object, **kwargs: object) -> object:
        loads.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(config_checks, "load_checked_settings", counting)
    monkeypatch.setattr(common, "load_checked_settings", counting)
    lake = tmp_path / "lake"
    code, out, err = _run(
        "--set", f"lake.root={lake}", "--set", f"state.path={tmp_path / 'state.duckdb'}",
        "--set", f"data_dir={tmp_path / 'data'}", "--set", "sources.gpu.enabled=false",
        "--set", "sources.prefect.enabled=false", "--set", "sources.redis.enabled=false", "collect",
    )  # fmt: skip
    assert code == 0, out + err
    assert len(loads) == 1
    assert Lake(str(lake)).stats()["tables"]["samples"]["rows"] > 0
