"""``cortex-perf insights | root-cause | export`` over a seeded demo lake (no Prefect needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.demo import seed_demo
from tasks.lake import Lake

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("demo")
    seed_demo(Lake(str(root / "lake")), days=2)
    return ["--set", f"lake.root={root / 'lake'}", "--set", f"state.path={root / 'state.duckdb'}"]


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout + res.stderr


def test_insights_json_ranks_findings(demo: list[str]) -> None:
    code, out = _run(*demo, "insights", "--since", "3d", "--limit", "5", "--json")
    assert code == 0, out
    found = json.loads(out)
    assert 0 < len(found) <= 5
    assert [f["score"] for f in found] == sorted((f["score"] for f in found), reverse=True)
    assert all(f["headline"] and f["kind"] for f in found)


def test_root_cause_names_candidates_or_says_why_not(demo: list[str]) -> None:
    code, out = _run(*demo, "root-cause", 'http_request_duration_seconds_p95{host="web-2"}', "--at", "30h", "--json")
    assert code == 0, out
    res = json.loads(out)
    assert res["causes"] and all(c["series"] != res["target"] for c in res["causes"])
    code, out = _run(*demo, "root-cause", 'nope{host="x"}', "--at", "1h")
    assert code in (0, 2) and ("No candidate causes" in out or "nope" in out)


def test_export_csv_and_dry_run(demo: list[str], tmp_path: Path) -> None:
    out_file = tmp_path / "cpu.csv"
    code, out = _run(*demo, "export", 'host_cpu_utilization_ratio{host="web-1"}', "-o", str(out_file), "--dry-run")
    assert code == 0 and "would export" in out and not out_file.exists()
    code, out = _run(*demo, "export", 'host_cpu_utilization_ratio{host="web-1"}', "-o", str(out_file), "--since", "3d")
    assert code == 0, out
    rows = list(csv.DictReader(out_file.open()))
    assert len(rows) == 2 * 1440 and f"exported {len(rows):,} row(s)" in out
    code, out = _run(*demo, "export", "samples", "-o", str(tmp_path / "x.xlsx"), "-f", "xlsx")
    assert code == 2 and "xlsx" in out


def test_root_cause_table_reads_as_text_not_python_dicts(demo: list[str]) -> None:
    """The evidence column is words and numbers (it printed ``parts={'anomaly': 0.97, …}``)."""
    code, out = _run(*demo, "root-cause", 'http_request_duration_seconds_p95{host="web-2"}', "--at", "30h")
    assert code == 0, out
    assert "Likely causes" in out
    assert "{'" not in out and "':" not in out and "True" not in out and "False" not in out
    assert "anomaly" in out and "correlation" in out


def test_insights_lists_the_demo_latency_spike_as_a_regression(demo: list[str]) -> None:
    code, out = _run(*demo, "insights", "--json")
    assert code == 0, out
    found = json.loads(out)
    assert any(
        f["kind"] == "latency_regression" and f["series"].startswith('http_request_duration_seconds_p95{host="web-1"')
        for f in found
    ), [f["headline"] for f in found]
