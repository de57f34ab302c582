"""``cortex-perf insights | root-cause | export``: the analytics engine's faces on the command line.
Parsing and printing only; the work is in ``tasks.analytics``. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable
from tasks.timeparse import parse_time

#: How the evidence's keys read in the table (``--json`` keeps the keys themselves).
_EVIDENCE_WORDS = {
    "parts": "score parts",
    "deviation_z": "deviation z",
    "anomaly_score": "stored anomaly score",
    "shared_labels": "shared labels",
    "peak_in_window": "peak",
}


def evidence_text(evidence: Mapping[str, Any]) -> str:
    """Root-cause evidence as one line of words and rounded numbers, e.g. ``score parts: anomaly 0.83,
    correlation 0.77; deviation z 14.3; shared labels host=web-2; saturated yes``.

    Why: printed as-is, the nested mappings came out as Python dict reprs; a missing value is left out
    rather than shown as ``None``.
    """
    from tasks.reports import format_cell  # lazy (start-up): papermill, polars, duckdb

    out = []
    for key, value in evidence.items():
        word = _EVIDENCE_WORDS.get(key, key.replace("_", " "))
        if value is None:
            continue
        if isinstance(value, Mapping):
            if key == "shared_labels":
                text = ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
            else:
                text = ", ".join(f"{k} {format_cell(v)}" for k, v in value.items() if v is not None) or "none"
        elif key == "lag_s":
            word, text = "lag", f"{format_cell(value)} s"
        else:
            text = format_cell(value)
        out.append(f"{word}: {text}" if isinstance(value, Mapping) else f"{word} {text}")
    return "; ".join(out)


def _range(since: str, until: str) -> tuple[datetime, datetime]:

    return parse_time(since), parse_time(until)


@handle_errors
def insights_cmd(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="Start: a duration ago (7d) or ISO time.")] = "7d",
    until: Annotated[str, typer.Option("--until", help="End: now, a duration ago or ISO time.")] = "now",
    selector: Annotated[
        list[str] | None, typer.Option("--selector", "-m", help="Only these series (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many findings.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Ranked findings with the numbers behind them: regressions, trend changes, saturation, idle
    resources, noisy and flapping alerts, forecast drift."""
    from tasks.analytics import insights  # lazy (start-up): polars

    start, end = _range(since, until)
    found = insights(cli_state(ctx).lake(), start, end, selectors=selector or None, limit=limit)
    if as_json:
        print_json([f.to_dict() for f in found])
        return
    if not found:
        console.print("No findings in this range.")
        return
    t = DataTable(title=f"{len(found)} finding(s), {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC")
    for col in ("score", "kind", "series", "finding"):
        t.add_column(col, overflow="fold")
    for f in found:
        t.add_row(f"{f.score:.2f}", f.kind, f.series, f.headline)
    console.print(t)


@handle_errors
def root_cause_cmd(
    ctx: typer.Context,
    series: Annotated[str, typer.Argument(help="One series, e.g. 'latency_p95{host=\"web-2\"}'.", show_default=False)],
    at: Annotated[str, typer.Option("--at", help="When it happened: ISO time or a duration ago.")] = "now",
    window: Annotated[str, typer.Option("--window", help="Half-width of the incident window.")] = "1h",
    limit: Annotated[int, typer.Option("--limit", help="At most this many candidates.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rank the other series by how well they explain what SERIES did around --at (co-occurring
    anomalies, lagged correlation, shared labels, new saturation), with the evidence."""
    from tasks.analytics import root_cause  # lazy (start-up): polars

    res = root_cause(cli_state(ctx).lake(), series, parse_time(at), window=window, limit=limit)
    if as_json:
        print_json(res.to_dict())
        return
    if not res.causes:
        console.print(f"No candidate causes for {series}: {res.note}", highlight=False, markup=False)
        return
    t = DataTable(title=f"Likely causes of {series} around {res.at:%Y-%m-%d %H:%M} UTC")
    for col in ("score", "series", "evidence"):
        t.add_column(col, overflow="fold")
    for c in res.causes:
        t.add_row(f"{c.score:.2f}", c.series, evidence_text(c.evidence))
    console.print(t)


@handle_errors
def export_cmd(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(help="A lake table (samples, events, forecasts, …) or a series selector.", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, parquet or jsonl.")] = "csv",
    since: Annotated[str, typer.Option("--since", help="Start: a duration ago (7d) or ISO time.")] = "1d",
    until: Annotated[str, typer.Option("--until", help="End: now, a duration ago or ISO time.")] = "now",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the arguments; write nothing.")] = False,
) -> None:
    """Export a table or the samples of a selector, streamed by DuckDB (never all in memory)."""
    from tasks.analytics import export  # lazy (start-up): polars

    start, end = _range(since, until)
    if dry_run:
        console.print(
            f"would export {what} ({start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}) as {fmt} to {out}", markup=False
        )
        return
    res = export(cli_state(ctx).lake(), what, fmt, out, start=start, end=end)
    console.print(
        f"exported {res.rows:,} row(s) of {res.source} to {res.path} ({res.bytes:,} bytes, {res.fmt})", markup=False
    )
