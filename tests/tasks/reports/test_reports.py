"""tasks.reports: the notebooks run end to end with a real kernel (papermill) into offline HTML, on
the planted report history (``report_lake``, shared with the numbers' tests in tests/tasks/analytics)
and on an empty lake; the display helper, the kernel hand-off and mailing the reports."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from localsmtp import Mailbox
from report_history import NOW

from tasks import reports as R
from tasks.demo import seed_demo
from tasks.lake import Lake


def test_an_unknown_notebook_is_named() -> None:
    with pytest.raises(R.ReportError, match="notebook: unknown report 'nope'"):
        R.notebook_path("nope")


def test_the_kernel_runs_this_interpreter() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    name = R.ensure_kernel()
    argv0 = KernelSpecManager().get_kernel_spec(name).argv[0]
    assert argv0.startswith("python") or Path(argv0).resolve() == Path(__import__("sys").executable).resolve()


def _sections(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>([^<]+)", html)


def _offline(html: str) -> bool:
    return not re.search(r"<(?:script|link)[^>]+(?:src|href)=\"https?://", html)


def _readable_tables(html: str) -> None:
    """The report's tables are HTML tables of values, not polars' text repr: no ``shape:`` line, no
    dtype row, no quoted strings, no ``null``."""
    assert "shape: (" not in html
    assert not re.search(
        r"<t[dh][^>]*>\s*(?:str|f64|i64|u32|i32|bool|datetime\[[^<]*|duration\[[^<]*)\s*</t[dh]>", html
    )
    assert not re.search(r"<td[^>]*>\s*&quot;[^<]*&quot;\s*</td>", html)  # polars quotes whole strings
    assert not re.search(r"<td[^>]*>\s*null\s*</td>", html)
    for cell in re.findall(r"<td[^>]*>\s*-?(\d+\.\d+)\s*</td>", html):  # 4 significant digits at most
        assert len(cell.replace(".", "").lstrip("0")) <= 4, cell


def test_performance_report_notebook_end_to_end(report_lake: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = report_lake
    res = R.run_report(
        "performance_report", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path, now=NOW
    )
    html = Path(res.html).read_text()
    assert Path(res.html).name == f"performance_report-{NOW:%Y-%m-%d}.html"
    assert _sections(html) == [
        "Summary",
        "Findings",
        "Latency p50 / p95 / p99 per host",
        "CPU and memory headroom",
        "Top consumers",
        "Anomalies",
        "Alerts fired",
        "Scaling decisions",
    ]
    assert res.images >= 4 and html.count("<img") == res.images  # latency, headroom, CPU+band, scaling
    assert "data:image/png;base64," in html and _offline(html)
    assert "def show" not in html and "A.latency_percentiles" not in html  # inputs hidden
    assert "Flappy" in html and "web-1" in html and "no data" not in html.lower()
    _readable_tables(html)


def test_alert_review_notebook_end_to_end(report_lake: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = report_lake
    res = R.run_report("alert_review", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path)
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "Alert volume per rule",
        "Durations (firing → resolved)",
        "MTTA / MTTR",
        "Noisiest and flapping rules",
    ]
    assert res.images >= 2 and _offline(html)
    assert "HighLatency" in html and re.search(r"<td[^>]*>120</td>", html)  # its MTTA in seconds
    _readable_tables(html)
    nb = json.loads(Path(res.html).with_suffix(".ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


@pytest.mark.parametrize("name", sorted(R.NOTEBOOKS))
def test_notebooks_on_an_empty_lake_say_so(name: str, tmp_path: Path) -> None:
    res = R.run_report(name, lake_root=str(tmp_path / "lake"), out_dir=tmp_path / "out", since="1d")
    html = Path(res.html).read_text()
    assert "Summary" in _sections(html) and res.images == 0
    assert re.search(r"There (is no data|are no alert events|are no forecasts.*) in the lake for this window", html)


def test_notebooks_in_git_have_no_outputs() -> None:
    for name in R.NOTEBOOKS:
        nb = json.loads(R.notebook_path(name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), name
        assert "parameters" in code[0]["metadata"]["tags"], name


def test_mail_reports_attaches_the_html_through_local_smtp(smtp: tuple[Mailbox, int], tmp_path: Path) -> None:
    box, port = smtp
    html = tmp_path / "alert_review-2026-01-02.html"
    html.write_text("<html><body><h2>Summary</h2><img src='data:image/png;base64,AAAA'></body></html>")
    res = R.ReportResult("alert_review", str(html), "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00",
                         1.0, html.stat().st_size, 1, {"alert firings": 7, "MTTR (min)": None})  # fmt: skip
    url = f"mailto://127.0.0.1:{port}?from=reports@example.com&to=team@example.com"
    t0 = time.monotonic()
    assert R.mail_reports(url, [res]) == 1
    assert time.monotonic() - t0 < 5  # no 5.5 s Apprise throttle
    ((_, _, msg),) = box.messages
    assert "alert_review" in msg["Subject"] and "team@example.com" in msg["To"]
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert list(parts) == [html.name]
    assert parts[html.name].get_payload(decode=True) == html.read_bytes()
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "alert firings: 7" in body and "MTTR (min): —" in body
    box.refuse = True
    with pytest.raises(R.ReportError, match="email_to: sending to .* failed"):
        R.mail_reports(url, [res])
    with pytest.raises(R.ReportError, match="email_to: cannot load"):
        R.mail_reports("nosuchscheme://x", [res])
    with pytest.raises(R.ReportError, match="email_to: no reports"):
        R.mail_reports(url, [])


def test_capacity_planning_notebook_end_to_end(report_lake: tuple[Lake, str], tmp_path: Path) -> None:
    lake, _ = report_lake
    res = R.run_report("capacity_planning", lake_root=lake.root, out_dir=tmp_path, since="2d",
                       parameters={"capacity": 0.5})  # fmt: skip
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "When each series runs out",
        "Forecasts against capacity",
        "When the load comes (hour of day, UTC)",
        "What scaling did",
    ]
    assert res.images == 3 and _offline(html)  # forecast band, heatmap, scaling steps
    assert "against capacity <strong>0.5</strong>" in html  # the injected parameter, not the default 0.9
    _readable_tables(html)


def test_forecast_accuracy_notebook_end_to_end(report_lake: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = report_lake
    res = R.run_report(
        "forecast_accuracy", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path, now=NOW
    )
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "Errors per model and series",
        "Interval coverage (p10–p90, ideal 0.8)",
        "Champion history",
    ]
    assert res.images == 2 and _offline(html) and "seasonal_naive" in html and "champion" in html
    _readable_tables(html)


def test_show_table_renders_rounded_escaped_html() -> None:
    """The one display helper the notebooks use: a real HTML table, numbers rounded to 4 significant
    digits, empty cells for null, user text escaped, and a row limit that says what it left out."""
    df = pl.DataFrame(
        {
            "series": ['cpu{host="<b>web-1</b>"}', None, "x"],
            "p95": [0.123456789, 12345.678, None],
            "count": [3, None, 1_000_000],
            "flapping": [True, False, None],
            "at": [datetime(2026, 1, 2, 3, 4, tzinfo=UTC), None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)],
        }
    )
    html = R.table_html(df)
    assert html.startswith("<table") and "<b>web-1</b>" not in html and "&lt;b&gt;web-1&lt;/b&gt;" in html
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells[:5] == ["cpu{host=&quot;&lt;b&gt;web-1&lt;/b&gt;&quot;}", "0.1235", "3", "yes", "2026-01-02 03:04"]
    assert cells[5:10] == ["", "12,346", "", "no", ""]
    assert cells[10:] == ["x", "", "1,000,000", "", "2026-01-02 03:04:05"]
    assert "shape" not in html and "str" not in re.sub(r"<td.*", "", html)  # no dtype row in the header
    _readable_tables(html)
    big = pl.DataFrame({"i": list(range(100))})
    cut = R.table_html(big, max_rows=10)
    assert cut.count("<tr>") == 1 + 10 and "90 more rows not shown" in cut


def test_the_kernel_warns_nothing_about_unencrypted_tcp(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The report kernel talks over local IPC sockets, so ipykernel's "running over TCP without
    encryption" warning never reaches the report's stderr (it did on every report)."""
    res = R.run_report("alert_review", lake_root=str(tmp_path / "lake"), out_dir=tmp_path / "out", since="1d")
    out, err = capfd.readouterr()
    assert "without encryption" not in err + out
    assert "without encryption" not in Path(res.html).read_text()
    assert not list(Path.cwd().glob("kernel-*ipc*"))  # no socket files left in the working directory


def _outputs_text(nb: object) -> str:
    """Everything the executed notebook displayed (text, markdown, HTML tables), as one string."""
    parts: list[str] = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["cortex-perf.yaml", "pyproject.toml"])
def test_notebook_opened_in_jupyter_reads_the_projects_lake(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jupyter starts the kernel in the notebook's folder (notebooks/) and hands it no lake settings:
    the default `data/lake` must still mean <project>/data/lake, the project being the config file's
    folder or, without one, the repository root — not notebooks/data/lake (an empty report)."""
    import nbformat
    from nbclient import NotebookClient

    for key in list(__import__("os").environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / marker).write_text("lake:\n  root: data/lake\n" if marker == "cortex-perf.yaml" else "[project]\n")
    seed_demo(Lake(str(project / "data" / "lake")), now=NOW, days=1)

    nb = nbformat.read(R.notebook_path("performance_report"), as_version=4)
    client = NotebookClient(
        nb, kernel_name=R.ensure_kernel(), timeout=300, resources={"metadata": {"path": str(project / "notebooks")}}
    )
    client.execute()
    shown = _outputs_text(nb)
    assert "There is no data in the lake" not in shown
    assert str(project / "data" / "lake") in shown and "web-1" in shown
    assert not (project / "notebooks" / "data").exists()


@pytest.mark.slow
def test_relative_lake_root_means_the_callers_directory_not_the_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel runs in the checkout (so `import tasks` works); a relative lake root handed to it
    is the caller's (`cortex-perf run --demo` in a fresh project directory), not the checkout's."""
    monkeypatch.chdir(tmp_path)
    seed_demo(Lake(str(tmp_path / "data" / "lake")), now=NOW, days=1)
    res = R.run_report("performance_report", lake_root="data/lake", out_dir=tmp_path / "out", since="2d", now=NOW)
    html = Path(res.html).read_text()
    assert "no data in the lake" not in html and str(tmp_path / "data" / "lake") in html
