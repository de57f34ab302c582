"""The report flow (daily): run the report notebooks over the lake into self-contained HTML files.

One task per notebook (a notebook is one retryable step: a kernel that died is worth one more try);
the work is ``tasks.reports.render_reports``. The flow adds what people read in the Prefect UI: a
markdown artifact per report (its key numbers, the window, where the HTML is) and one table
artifact of the key numbers of every report.

Why no link to the HTML: Prefect artifacts cannot serve a file, and a ``file://`` link names the
*worker's* disk, which a browser on another machine cannot open (and browsers refuse ``file://``
links from an ``http://`` page anyway). So the artifact carries what a person needs in the UI (the
key numbers) and says plainly where the file is — host and path, as text to copy — and how to get
it: ``cortex-perf report --open`` on that machine, or ``reports.email_to`` for a mailed copy.
"""

from __future__ import annotations

import socket
import time
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import Runtime, load, stale_run
from tasks.analytics import report_window
from tasks.config import Settings
from tasks.markdown import md_cell
from tasks.reports import (
    NOTEBOOKS,
    ReportResult,
    format_cell,
    mail_reports,
    notebook_path,
    render_reports,
)

__all__ = ["ReportSummary", "report", "report_stage"]

TABLE_KEY = "report-key-numbers"


class ReportSummary(TypedDict, total=False):
    flow: str
    skipped: bool
    reason: str
    reports: list[dict[str, Any]]
    since: str
    until: str
    seconds: float
    emailed: int


def artifact_key(name: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "report-" + name.replace("_", "-")


@task(name="render-report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def render(settings: Settings, name: str, since: str, until: str) -> ReportResult:
    return render_reports(settings, [name], since=since, until=until)[0]


@task(name="mail-reports", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def mail(url: str, results: list[ReportResult]) -> int:
    return mail_reports(url, results)


def _md_cell(v: object) -> str:
    """A markdown table cell: ``—`` for nothing, and user text (a series name) cannot break the table."""
    text = format_cell(v) or "—"
    return md_cell(text)


def _markdown(res: ReportResult, emailed_to: bool) -> str:
    """The report's artifact: key numbers first, then where the file is (see the module docstring)."""
    name = res.name.replace("_", " ").capitalize()
    mailed = "This run also e-mailed it." if emailed_to else "Set `reports.email_to` to have it mailed."
    lines = [
        f"# {name}",
        "",
        f"Window {res.since} → {res.until}; {res.images} plot(s), {res.bytes / 1024:.0f} KiB, "
        f"rendered in {res.seconds:.1f} s.",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in res.key_numbers.items()),
        "",
        f"The full report (plots and tables) is a self-contained HTML file on the worker `{socket.gethostname()}`:",
        "",
        f"`{res.html}`",
        "",
        f"Open it there with `cortex-perf report --notebook {res.name} --open` (renders it afresh), or copy it. "
        + mailed,
    ]
    return "\n".join(lines)


@flow(name="report", description="Run the report notebooks (papermill) into HTML under <data_dir>/reports.")
def report(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    notebooks: list[str] | None = None,
    since: str | None = None,
    until: str = "now",
    max_lateness_s: float | None = None,
    email_to: str | None = None,
) -> ReportSummary:
    """Render ``notebooks`` over [since, until] and mail them to ``email_to`` (an Apprise
    ``mailto://`` URL). Each left ``None`` comes from the ``reports`` settings (default: every
    report, the last ``reports.since``, mailed only when ``reports.email_to`` is set)."""
    if (skipped := stale_run("report", max_lateness_s)) is not None:
        return ReportSummary(**skipped)  # type: ignore[typeddict-item]
    return report_stage(load(config_path, overrides), notebooks=notebooks, since=since, until=until, email_to=email_to)


def report_stage(
    rt: Runtime,
    *,
    notebooks: list[str] | None = None,
    since: str | None = None,
    until: str = "now",
    email_to: str | None = None,
) -> ReportSummary:
    """The report flow's work on a built runtime (inside a flow run: the pipeline calls it with its own).

    The notebooks open the lake in their own kernels, from ``rt.settings``; only the settings are used here."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    settings = rt.settings
    if not settings.reports.enabled:
        return ReportSummary(flow="report", skipped=True, reason="reports.enabled is false")
    names = list(notebooks or settings.reports.notebooks or NOTEBOOKS)
    for name in names:  # a typo fails the run before any kernel starts
        notebook_path(name)
    start, end = report_window(since or settings.reports.since, until)
    if email_to is None and settings.reports.email_to is not None:
        email_to = settings.reports.email_to.get_secret_value()
    results = []
    for name in names:
        res = render(settings, name, start.isoformat(), end.isoformat())
        create_markdown_artifact(
            markdown=_markdown(res, emailed_to=bool(email_to)), key=artifact_key(name), description=f"Report {name}"
        )
        logger.info("report %s: %s (%.1f s, %d plot(s))", name, res.html, res.seconds, res.images)
        results.append(res)
    create_table_artifact(
        table=[{"report": r.name, "figure": k, "value": format_cell(v) or "—"}
               for r in results for k, v in r.key_numbers.items()],
        key=TABLE_KEY,
        description="Key numbers of the latest reports",
    )  # fmt: skip
    emailed = mail(email_to, results) if email_to else 0
    return ReportSummary(
        flow="report",
        emailed=emailed,
        reports=[r.to_dict() for r in results],
        since=start.isoformat(),
        until=end.isoformat(),
        seconds=round(time.perf_counter() - t0, 2),
    )
