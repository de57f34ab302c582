"""The report flow (daily): run the report notebooks over the lake into self-contained HTML files.

One task per notebook (a notebook is one retryable step: a kernel that died is worth one more try);
the work is ``tasks.reports.render_reports``. The flow adds what people read in the Prefect UI: a
markdown artifact per report (where the HTML is, the window, its key numbers) and one table
artifact of the key numbers of every report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypedDict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows._common import load, stale_run
from tasks.config import Settings
from tasks.reports import NOTEBOOKS, ReportResult, mail_reports, notebook_path, render_reports, report_window

__all__ = ["ReportSummary", "report"]

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


def _markdown(res: ReportResult) -> str:
    uri = Path(res.html).resolve().as_uri()
    lines = [
        f"# {res.name.replace('_', ' ').capitalize()}",
        "",
        f"[{Path(res.html).name}]({uri}) — `{res.html}`",
        "",
        f"Window {res.since} → {res.until}; {res.images} plot(s), {res.bytes / 1024:.0f} KiB, "
        f"rendered in {res.seconds:.1f} s.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {'—' if v is None else v} |" for k, v in res.key_numbers.items()),
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
    logger = get_run_logger()
    if (skipped := stale_run("report", max_lateness_s)) is not None:
        return ReportSummary(**skipped)  # type: ignore[typeddict-item]
    t0 = time.perf_counter()
    settings, _ = load(config_path, overrides)
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
        create_markdown_artifact(markdown=_markdown(res), key=artifact_key(name), description=f"Report {name}")
        create_link_artifact(  # the UI lists links apart: one click from the run to the HTML
            link=Path(res.html).resolve().as_uri(),
            link_text=Path(res.html).name,
            key=artifact_key(name) + "-html",
            description=f"Report {name} ({res.since} → {res.until})",
        )
        logger.info("report %s: %s (%.1f s, %d plot(s))", name, res.html, res.seconds, res.images)
        results.append(res)
    create_table_artifact(
        table=[{"report": r.name, "figure": k, "value": "—" if v is None else str(v)}
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
