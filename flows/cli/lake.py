"""``cortex-perf lake stats | query | compact | import``: inspect and manage the metric lake.
Parsing and printing only; the work is in ``tasks.lake``. Mounted on the app by ``flows.cli``.

These commands only read or write the lake: they never import Prefect, and polars is imported inside
them (``--help`` stays fast)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flows.cli.common import (
    CliError,
    cli_state,
    console,
    err_console,
    fail,
    fmt_value,
    handle_errors,
    print_json,
    tables_table,
)
from flows.cli.output import DataTable, escape
from tasks.timeparse import parse_duration, parse_time

if TYPE_CHECKING:
    import polars as pl  # lazy (start-up): see lake_query

lake_app = typer.Typer(help="Inspect and manage the metric lake.", no_args_is_help=True)


@lake_app.command("stats")
@handle_errors
def lake_stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"tables": {...}} as JSON.')] = False,
) -> None:
    """Rows, files, bytes, series and time range of every lake table."""
    lake = cli_state(ctx).lake()
    tables = lake.stats()["tables"]
    if as_json:
        print_json({"tables": tables})
        return
    console.print(tables_table(tables, title=f"Lake {lake.root}"))


#: Rows ``lake query`` shows in its table view unless --limit says otherwise.
TABLE_ROWS = 50


@lake_app.command("query")
@handle_errors
def lake_query(
    ctx: typer.Context,
    selector: Annotated[
        str, typer.Argument(help="""Series selector, e.g. 'cpu_utilization{host="a"}' or '{job=~"api.*"}'.""")
    ],
    since: Annotated[str, typer.Option(help="Start: a duration ago (30m, 1h, 7d) or ISO 8601 time.")] = "1h",
    until: Annotated[str, typer.Option(help="End: 'now', a duration ago, or ISO 8601 (UTC if no offset).")] = "now",
    step: Annotated[
        str | None, typer.Option(help="Bucket size (e.g. 5m); without it, raw samples.", show_default=False)
    ] = None,
    agg: Annotated[
        str,
        typer.Option(help="Per bucket: avg min max sum count last first p50 p90 p95 p99 quantile:Q, rate, increase."),
    ] = "avg",
    as_json: Annotated[bool, typer.Option("--json", help="All rows as JSON (streamed).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="All rows as CSV (streamed).")] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            help=f"At most this many rows (default: {TABLE_ROWS} in the table view, all with --json/--csv).",
            min=1,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Query the lake: raw samples, or aggregates over time buckets with --step."""
    if as_json and as_csv:
        raise CliError("choose one of --json and --csv")

    now = datetime.now(UTC)
    start, end = parse_time(since, now=now), parse_time(until, now=now)
    step_td = parse_duration(step) if step else None
    if agg in ("rate", "increase") and step_td is None:
        raise CliError(f"--agg {agg} needs --step (e.g. --step 5m)")
    lake = cli_state(ctx).lake()
    cap = limit if limit is not None or as_json or as_csv else TABLE_ROWS
    # One row past the cap tells whether the cap cut anything, without counting every row.
    batches = lake.stream(selector, start, end, step=step_td, agg=agg, limit=None if cap is None else cap + 1)
    capped = _Capped(batches, cap)
    if as_csv:
        _write_csv(capped)
    elif as_json:
        _write_json(capped)
    else:
        import polars as pl  # lazy (start-up): +0.50 s on every --help (see flows.cli.common)

        frames = list(capped)
        df = pl.concat(frames) if frames else lake.empty_result()
        what = f"{agg} per {step}" if step else "raw samples"
        span = f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"
        title = f"{selector} — {what}, {span}"
        if not df.height:
            console.print(
                f"{escape(title)}\n[yellow]no data[/yellow] (check the selector with `lake stats`, widen --since)"
            )
            return
        console.print(frame_table(df, ["series", "ts", "value"], df.height, title=title))
    if capped.more:
        err_console.print(
            f"… stopped at --limit {cap:,} rows; more match (raise --limit, or use --json/--csv for all)",
            highlight=False,
        )


class _Capped:
    """Frames of a stream up to ``cap`` rows; ``more`` says whether the stream had more."""

    def __init__(self, frames: Iterator[pl.DataFrame], cap: int | None) -> None:
        self.frames, self.cap, self.more = frames, cap, False

    def __iter__(self) -> Iterator[pl.DataFrame]:
        left = self.cap
        for df in self.frames:
            if left is not None and df.height > left:
                self.more = True
                df = df.head(left)
            if df.height:
                yield df
            if left is not None:
                left -= df.height
                if self.more:
                    return


def _write_csv(frames: Iterable[pl.DataFrame]) -> None:
    import polars as pl

    header = True
    for df in frames:
        sys.stdout.write(
            df.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")).write_csv(include_header=header)
        )
        header = False
    if header:  # no rows: still a valid CSV with its header
        sys.stdout.write("series,metric,labels,ts,value\n")


def _write_json(frames: Iterable[pl.DataFrame]) -> None:
    """A JSON array written row by row as the batches come (never the whole result in memory)."""
    prefixes: dict[str, str] = {}
    sys.stdout.write("[")
    sep = "\n  "
    for df in frames:
        ts = df.get_column("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_list()
        lines = []
        for series, metric, labels, t, value in zip(
            df.get_column("series").to_list(),
            df.get_column("metric").to_list(),
            df.get_column("labels").to_list(),
            ts,
            df.get_column("value").to_list(),
            strict=True,
        ):
            prefix = prefixes.get(series)
            if prefix is None:
                prefix = prefixes[series] = (
                    f'{{"series": {json.dumps(series)}, "metric": {json.dumps(metric)}, '
                    f'"labels": {json.dumps(json.loads(labels))}, '
                )
            lines.append(f'{prefix}"ts": "{t}", "value": {json.dumps(value)}}}')
        sys.stdout.write(sep + ",\n  ".join(lines))
        sep = ",\n  "
    sys.stdout.write("\n]\n" if sep != "\n  " else "]\n")


@lake_app.command("compact")
@handle_errors
def lake_compact(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be merged; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
) -> None:
    """Merge each day partition's small files into one, dropping duplicate samples."""
    st = cli_state(ctx)
    settings = st.settings()
    report = st.lake().compact(min_files=settings.lake.compact_min_files, dry_run=dry_run).to_dict()
    if as_json:
        print_json(report)
        return
    verb = "would merge" if dry_run else "merged"
    console.print(
        f"{verb} {report.get('partitions', 0)} partition(s): {report.get('files_before', 0)} → "
        f"{report.get('files_after', 0)} files, {report.get('rows_before', 0):,} → {report.get('rows_after', 0):,} "
        f"rows ({report.get('duplicates_dropped', 0):,} duplicates dropped, "
        f"{report.get('temp_files_removed', 0)} stale temp files removed)"
    )
    details = report.get("details") or []
    if details:
        t = DataTable()
        keys = list(details[0].keys())
        for k in keys:
            t.add_column(k)
        for d in details[:50]:
            t.add_row(*(fmt_value(d.get(k)) for k in keys))
        console.print(t)


@lake_app.command("import")
@handle_errors
def lake_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file with one sample per row.")],
    time_col: Annotated[str, typer.Option("--time-col", help="Column with the timestamp (ISO 8601 or epoch).")],
    value_col: Annotated[str, typer.Option("--value-col", help="Column with the numeric value.")],
    metric: Annotated[
        str | None, typer.Option(help="Metric name for every row (or use --metric-col).", show_default=False)
    ] = None,
    metric_col: Annotated[
        str | None, typer.Option("--metric-col", help="Column holding each row's metric name.", show_default=False)
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", "-l", help="LABEL=COLUMN: a label taken from a column (repeatable).", show_default=False
        ),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or parquet (default: from the extension).", show_default=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")] = False,
) -> None:
    """Import samples from a CSV or Parquet file; errors name the line and column."""
    if (metric is None) == (metric_col is None):
        raise CliError("give exactly one of --metric NAME and --metric-col COLUMN")
    if not file.exists():
        raise CliError(f"{file}: no such file")
    from tasks.lake.importer import parse_label_maps  # lazy (start-up): pyarrow, polars (see module note)

    lake = cli_state(ctx).lake()
    label_cols = parse_label_maps(label)
    res = lake.import_file(
        str(file),
        time_col=time_col,
        value_col=value_col,
        metric=metric,
        metric_col=metric_col,
        label_cols=label_cols,
        fmt=fmt,
        dry_run=dry_run,
    )
    verb = "would import" if dry_run else "imported"
    console.print(
        f"{verb} {res.accepted:,} samples from {escape(str(file))} into {escape(lake.root)}; {res.rejected:,} rejected",
        highlight=False,
    )
    for reason in res.reasons[:10]:
        err_console.print(f"  [yellow]rejected:[/] {escape(reason)}", highlight=False)
    if res.rejected and not res.accepted:
        fail(f"{file}: every row was rejected ({res.rejected:,}); nothing imported")


def frame_table(df: pl.DataFrame, columns: list[str], limit: int, title: str | None = None) -> Table:
    t = DataTable(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c == "value" else "left", overflow="fold")
    for row in df.head(limit).select(columns).iter_rows():
        t.add_row(*(fmt_value(v) for v in row))
    return t
