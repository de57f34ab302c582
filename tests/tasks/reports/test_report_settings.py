"""Reports driven by the ``reports`` settings: which notebooks, parameters, code shown, pruning, the
lake a notebook opens (S3 credentials handed to the kernel, never written into the notebook), and the
performance report's findings and root-cause sections on demo data with anomaly scores."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks import analytics as A
from tasks import reports as R
from tasks.anomaly.stream import detect_incremental
from tasks.config import ConfigError, load_settings
from tasks.config_checks import load_checked_settings
from tasks.demo import seed_demo
from tasks.lake import Lake
from tasks.reports.kernel import lake_env
from tasks.state import State

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _settings(tmp_path: Path, **extra: object):
    return load_settings(
        overrides={
            "lake.root": str(tmp_path / "lake"),
            "data_dir": str(tmp_path / "data"),
            "state.path": str(tmp_path / "state.duckdb"),
            **extra,
        }
    )


# ---- settings validation -------------------------------------------------------------------------
def test_reports_settings_reject_unknown_reports_and_bad_windows() -> None:
    # which reports exist is the reports' to say: the check every loader runs asks them
    with pytest.raises(ConfigError, match=r"reports\.notebooks: .*unknown report\(s\) 'weekly'"):
        load_checked_settings(overrides={"reports.notebooks": ["weekly"]})
    with pytest.raises(ConfigError, match=r"reports\.since: .*'soon' is not a positive duration"):
        load_settings(overrides={"reports.since": "soon"})
    with pytest.raises(ConfigError, match=r"reports\.parameters: .*unknown report\(s\) 'nope'"):
        load_checked_settings(overrides={"reports.parameters": {"nope": {"x": 1}}})
    with pytest.raises(ConfigError, match=r"reports\.parameters: .*capacity_planning\.since is set by the report run"):
        load_checked_settings(overrides={"reports.parameters": {"capacity_planning": {"since": "30d"}}})
    # every problem at once, each naming its field
    with pytest.raises(ConfigError) as err:
        load_checked_settings(overrides={"reports.notebooks": ["weekly"], "reports.parameters": {"nope": {}}})
    assert "reports.notebooks: unknown report(s) 'weekly'" in str(err.value)
    assert "reports.parameters: unknown report(s) 'nope'" in str(err.value)
    with pytest.raises(R.ReportError, match=r"parameters\.alert_review\.lake_root: set by the report run itself"):
        R.check_parameters("alert_review", {"lake_root": "/elsewhere"})
    with pytest.raises(ConfigError, match=r"reports\.timeout_s"):
        load_settings(overrides={"reports.timeout_s": 0})


def test_unknown_notebook_parameter_is_named_before_any_kernel_starts(tmp_path: Path) -> None:
    settings = _settings(tmp_path, **{"reports.parameters": {"capacity_planning": {"capacty": 0.8}}})
    t0 = datetime.now(UTC)
    with pytest.raises(R.ReportError, match=r"reports\.parameters\.capacity_planning\.capacty: .*no such parameter"):
        R.render_reports(settings, ["performance_report"])
    assert (datetime.now(UTC) - t0).total_seconds() < 5  # no kernel was started
    assert not list((tmp_path / "data").rglob("*.html"))


def test_notebook_parameters_lists_each_parameter_cell() -> None:
    params = R.notebook_parameters("capacity_planning")
    assert {"lake_root", "since", "until", "selector", "capacity"} <= set(params)
    assert params["lake_root"] == '""'  # the configured lake by default


# ---- rendering from settings ---------------------------------------------------------------------
def test_render_reports_uses_the_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        **{
            "reports.notebooks": ["capacity_planning"],
            "reports.since": "12h",
            "reports.show_code": True,
            "reports.parameters": {"capacity_planning": {"capacity": 0.42}},
        },
    )
    seed_demo(Lake.from_settings(settings), now=NOW, days=1)
    old = Path(settings.data_dir) / "reports"
    old.mkdir(parents=True)
    (old / "capacity_planning-2026-01-01.html").write_text("old")
    (old / "capacity_planning-2026-01-01.ipynb").write_text("{}")
    (old / "notes-2026-01-01.html").write_text("a person's file")  # not a report: kept
    long_ago = (NOW - timedelta(days=200)).timestamp()
    for f in old.iterdir():
        os.utime(f, (long_ago, long_ago))
    (res,) = R.render_reports(settings, now=NOW)
    assert res.name == "capacity_planning"
    assert datetime.fromisoformat(res.until) - datetime.fromisoformat(res.since) == timedelta(hours=12)
    html = Path(res.html).read_text()
    assert "capacity <b>0.42</b>" in html.replace("**", "") or "capacity <strong>0.42</strong>" in html
    assert "capacity_outlook" in _text(html)  # show_code keeps the inputs (highlighted in spans)
    assert sorted(p.name for p in old.iterdir()) == sorted(
        [Path(res.html).name, Path(res.html).with_suffix(".ipynb").name, "notes-2026-01-01.html"]
    )


def test_prune_reports_by_age_keeps_recent_kept_and_foreign_files(tmp_path: Path) -> None:
    old = (NOW - timedelta(days=30)).timestamp()
    for name in (
        "alert_review-2026-11-01.html",
        "alert_review-2026-11-01.ipynb",
        "alert_review-2025-01-08.html",
        "alert_review-2026-11-19.html",
        "mine-2026-01-01.html",
        "capacity_planning-2024-02-02.html",
    ):
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (old, old))
    fresh = tmp_path / "performance_report-2025-01-08.html"  # rendered today for an old window
    fresh.write_text("x")
    os.utime(fresh, (NOW.timestamp(), NOW.timestamp()))
    gone = R.prune_reports(tmp_path, keep_days=7, now=NOW, keep=[tmp_path / "capacity_planning-2024-02-02.html"])
    assert sorted(p.name for p in gone) == [
        "alert_review-2025-01-08.html",
        "alert_review-2026-11-01.html",
        "alert_review-2026-11-01.ipynb",
        "alert_review-2026-11-19.html",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "capacity_planning-2024-02-02.html",
        "mine-2026-01-01.html",
        "performance_report-2025-01-08.html",
    ]


def test_a_report_for_an_old_window_survives_its_own_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path, **{"reports.keep_days": 1})
    (res,) = R.render_reports(settings, ["alert_review"], since="2025-01-01T00:00:00Z", until="2025-01-08T00:00:00Z")
    assert Path(res.html).name == "alert_review-2025-01-08.html" and Path(res.html).exists()
    assert Path(res.html).with_suffix(".ipynb").exists()


# ---- the lake a notebook opens -------------------------------------------------------------------
def test_open_lake_prefers_the_handoff_then_the_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(R.LAKE_ENV, raising=False)
    monkeypatch.setenv("CORTEX_PERF_LAKE__ROOT", str(tmp_path / "configured"))
    monkeypatch.setenv("CORTEX_PERF_LAKE__MEMORY_LIMIT", "300MB")
    assert R.open_lake("").root == str(tmp_path / "configured")
    assert R.open_lake(str(tmp_path / "given")).root == str(tmp_path / "given")
    handed = _settings(tmp_path, **{"lake.memory_limit": "200MB"}).lake
    monkeypatch.setenv(R.LAKE_ENV, lake_env(handed))
    lake = R.open_lake("")
    assert lake.root == str(tmp_path / "lake")
    assert lake.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0].startswith("190")


def test_reports_on_an_s3_lake_never_write_the_secret(s3_endpoint: str, tmp_path: Path) -> None:
    secret = "s3cr3t-REPORT-key-9f2"
    settings = load_settings(
        overrides={
            "lake.root": "s3://metrics/reports-test",
            "lake.s3_endpoint": s3_endpoint,
            "lake.s3_region": "us-east-1",
            "lake.s3_access_key_id": "AKIAREPORTS",
            "lake.s3_secret_access_key": secret,
            "data_dir": str(tmp_path / "data"),
            "state.path": str(tmp_path / "state.duckdb"),
        }
    )
    seed_demo(Lake.from_settings(settings), now=NOW, days=0.25)
    (res,) = R.render_reports(settings, ["performance_report"], since="6h", now=NOW)
    html = Path(res.html).read_text()
    assert res.key_numbers["hosts"] == 4 and res.images >= 2
    assert "s3://metrics/reports-test" in html and "There is no data" not in html
    executed = Path(res.html).with_suffix(".ipynb").read_text()
    for text in (html, executed):
        assert secret not in text and "AKIAREPORTS" not in text
    assert R.LAKE_ENV not in __import__("os").environ  # restored after the run


# ---- findings and root cause in the performance report -------------------------------------------
def test_performance_report_shows_findings_and_the_likely_cause(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    seed_demo(lake, now=NOW, days=2)
    selectors = ["http_request_duration_seconds_p95", "host_cpu_utilization_ratio"]
    detect_incremental(lake, State(str(tmp_path / "s.duckdb")), selectors, timedelta(minutes=1), now=NOW,
                       backfill=timedelta(days=2))  # fmt: skip
    res = R.run_report("performance_report", lake_root=lake.root, out_dir=tmp_path / "out", since="2d", now=NOW,
                       parameters={"host_filter": "web-2"})  # fmt: skip
    text = _text(Path(res.html).read_text())
    findings = text[text.index("Findings") : text.index("Latency p50")]
    assert re.search(r"# finding kind score 1 \S+", findings)  # a ranked table, not the "nothing" line
    causes = text[text.index("Likely causes") : text.index("Alerts fired")]
    # The demo's planted incident: web-2's CPU pinned, its latency rising with it.
    assert 'http_request_duration_seconds_p95{host="web-2"' in causes.split("the other series")[0]
    first = re.search(r"# candidate cause score 1 (\S+)", causes)
    assert first and first.group(1).startswith('host_cpu_utilization_ratio{host="web-2"'), causes
    assert res.images >= 4 and " False " not in text and " True " not in text  # no stray cell values


def test_cli_mail_needs_a_configured_receiver(tmp_path: Path) -> None:
    from flows.cli import app

    args = ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"data_dir={tmp_path / 'data'}"]
    res = CliRunner().invoke(app, [*args, "report", "--notebook", "alert_review", "--mail"])
    assert res.exit_code == 2 and "reports.email_to is not configured" in res.stderr
    assert not (tmp_path / "data" / "reports").exists()


def test_key_numbers_come_back_from_the_notebook(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    seed_demo(lake, now=NOW, days=0.5)

    res = R.run_report("performance_report", lake_root=lake.root, out_dir=tmp_path / "out", since="12h", now=NOW)
    start, end = A.report_window("12h", "now", now=NOW)
    assert res.key_numbers == json.loads(json.dumps(A.key_numbers("performance_report", lake, start, end)))
    assert res.key_numbers["hosts"] == 4
    summary = _text(Path(res.html).read_text())
    assert "figure value hosts 4" in summary  # the same numbers as a table in the report
