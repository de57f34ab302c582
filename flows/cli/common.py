"""``cortex-perf``: the command line. It parses, calls ``tasks``/``flows``, and formats — nothing else.

Why Prefect is imported lazily (inside the commands that run flows): Prefect reads its settings
when it is first imported, and the CLI must set them first — a per-checkout ``PREFECT_HOME``, a
longer start-up timeout for the temporary server Prefect starts when no ``PREFECT_API_URL`` is set
(15–25 s here; the default 20 s fails on a busy machine), and no telemetry. Commands that only
read the lake or the config never import Prefect at all, so they answer in well under a second.

Errors are one line on stderr and exit code 2 (``config check``: exit 1); set
``CORTEX_PERF_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from flows.cli_output import DataTable, escape, styled

if TYPE_CHECKING:
    import polars as pl

    from tasks.config import Settings
    from tasks.lake import Lake

REPO_ROOT = Path(__file__).resolve().parents[1]
EPHEMERAL_STARTUP_TIMEOUT_S = "120"

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


# ---- environment -------------------------------------------------------------------------------
def default_prefect_home() -> Path:
    """``<checkout>/.prefect``: each checkout gets its own Prefect database and settings."""
    root = REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / ".prefect"


def prepare_prefect_env(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Set Prefect's environment before Prefect is imported; values already set are kept."""
    env = os.environ if environ is None else environ
    env.setdefault("PREFECT_HOME", str(default_prefect_home()))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The project's own root on the path of flow-run subprocesses (`serve`, workers).
    env.setdefault("PROJECT_DIR", str(REPO_ROOT))


def _announce_prefect() -> None:
    if not os.environ.get("PREFECT_API_URL"):
        err_console.print(
            "[dim]No PREFECT_API_URL set:[/dim] Starting a temporary Prefect server (15–25 s)…",
            highlight=False,
        )


# ---- errors ------------------------------------------------------------------------------------
class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures (bad config, selector, file, duration...) into one line + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except CliError as exc:
            _fail(str(exc), exc.code)
        except Exception as exc:
            if os.environ.get("CORTEX_PERF_DEBUG"):
                raise
            from tasks.config import ConfigError

            if isinstance(exc, ConfigError):
                # config messages are multi-line on purpose (one line per bad field)
                err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            known = isinstance(exc, ValueError | OSError | LookupError)
            prefix = "" if known else f"{type(exc).__name__}: "
            _fail(prefix + _one_line(exc) + ("" if known else " (CORTEX_PERF_DEBUG=1 shows the traceback)"))
        except BaseException as exc:
            # A Rust library's panic (polars, via pyo3) is a BaseException: one line, not a traceback.
            if type(exc).__name__ != "PanicException" or os.environ.get("CORTEX_PERF_DEBUG"):
                raise
            _fail(f"internal error in a library: {_one_line(exc)} (CORTEX_PERF_DEBUG=1 shows the traceback)")

    return wrapper


# ---- global options ----------------------------------------------------------------------------
@dataclass
class CliState:
    config: Path | None = None
    overrides: list[str] = field(default_factory=list)

    @property
    def config_arg(self) -> str | None:
        return str(self.config) if self.config else None

    def settings(self) -> Settings:
        from tasks.config_checks import load_checked_settings

        return load_checked_settings(self.config, self.overrides or None)

    def flow_overrides(self) -> AbstractContextManager[list[str] | None]:
        """``with st.flow_overrides() as overrides:`` the ``--set`` values to hand a flow as parameters;
        those carrying a secret reach it through the environment instead (Prefect stores parameters)."""
        from tasks.config import secret_overrides_stashed

        return secret_overrides_stashed(self.overrides)

    def lake(self) -> Lake:
        from tasks.lake import Lake

        return Lake.from_settings(self.settings())


app = typer.Typer(
    name="cortex-perf",
    help=(
        "cortex-perf: performance optimisation for AI-agent and data platforms — Prefect flows "
        "around a Parquet/DuckDB metric lake.\n\n"
        "Start with `cortex-perf run --demo`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
config_app = typer.Typer(help="Show or check the configuration (cortex-perf.yaml < env < --set).", no_args_is_help=True)
lake_app = typer.Typer(help="Inspect and manage the metric lake.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(lake_app, name="lake")


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $CORTEX_PERF_CONFIG, else ./cortex-perf.yaml if present).",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Override one setting, e.g. `--set lake.root=/tmp/lake` (repeatable; beats file and env).",
            show_default=False,
        ),
    ] = None,
) -> None:
    prepare_prefect_env()
    from tasks.redact import install_log_redaction

    install_log_redaction()  # URL credentials never reach a log line, ours or Prefect's
    ctx.obj = CliState(config=config, overrides=list(set_ or []))


def _state(ctx: typer.Context) -> CliState:
    return ctx.obj if isinstance(ctx.obj, CliState) else CliState()


# ---- formatting helpers ------------------------------------------------------------------------
def _human_bytes(n: int | float | None) -> str:
    v = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e7 or abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


def _tables_table(tables: dict[str, dict[str, Any]], title: str = "Lake") -> Table:
    t = DataTable(title=title, title_justify="left")
    t.add_column("table")
    for col in ("rows", "files", "size", "series"):
        t.add_column(col, justify="right")
    t.add_column("oldest")
    t.add_column("newest")
    for name, e in tables.items():
        t.add_row(
            name,
            f"{e.get('rows', 0):,}",
            f"{e.get('files', 0):,}",
            _human_bytes(e.get("bytes")),
            f"{e.get('series', 0):,}",
            (e.get("oldest") or "")[:19].replace("T", " "),
            (e.get("newest") or "")[:19].replace("T", " "),
        )
    return t


def _frame_table(df: pl.DataFrame, columns: list[str], limit: int, title: str | None = None) -> Table:
    t = DataTable(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c == "value" else "left", overflow="fold")
    for row in df.head(limit).select(columns).iter_rows():
        t.add_row(*(_fmt_value(v) for v in row))
    return t


def _print_json(obj: Any) -> None:
    # print() rather than rich: machine-readable output must not be wrapped or coloured
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        task_id = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        yield update


# ---- run ---------------------------------------------------------------------------------------
def render_pipeline_summary(summary: dict[str, Any]) -> None:
    """The end-of-run summary: stages, the lake, and (demo) the planted incidents."""
    t = DataTable(title=f"Pipeline{' (demo)' if summary.get('demo') else ''} — lake {summary.get('lake')}")
    t.add_column("stage")
    t.add_column("status")
    t.add_column("seconds", justify="right")
    t.add_column("what happened", overflow="fold")
    colours = {"ok": "green", "skipped": "yellow", "failed": "bold red"}
    for s in summary.get("stages", []):
        status = s.get("status", "?")
        t.add_row(s["stage"], styled(status, colours.get(status, "white")), f"{s['seconds']:.2f}", s["detail"])
    console.print(t)
    if summary.get("tables"):
        console.print(_tables_table(summary["tables"], title="Lake tables"))
    for s in summary.get("stages", []):
        if s.get("stage") == "report" and s.get("status") == "ok":
            for r in s.get("result", {}).get("reports") or []:
                console.print(
                    f"[bold]Report:[/bold] {escape(str(r.get('html')))}  "
                    "(open it in a browser; `cortex-perf report --open`)"
                )
    if summary.get("incidents"):
        it = DataTable(title='Planted demo incidents (series labelled source="demo")', title_justify="left")
        it.add_column("incident")
        it.add_column("series")
        it.add_column("when")
        it.add_column("what", overflow="fold")
        for i in summary["incidents"]:
            it.add_row(i["name"], i["series"], i["when"], i.get("what", ""))
        console.print(it)
        console.print(
            "Try: [bold]uv run cortex-perf lake query "
            "'host_cpu_utilization_ratio{source=\"demo\"}' --since 2d --step 1h --agg max[/bold]"
        )


@app.command()
@handle_errors
def run(
    ctx: typer.Context,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help='First seed a generated multi-day history (labelled source="demo"), once per lake.'
        ),
    ] = False,
    days: Annotated[float, typer.Option(help="Days of demo history to generate.", min=0.1, max=60)] = 3.0,
) -> None:
    """Run the main job once: every stage in order (collect → maintain → …), then a summary.

    Without `PREFECT_API_URL` Prefect starts a temporary local server for the run.
    """
    st = _state(ctx)
    config_file: Path | None = None
    if demo:  # leave a working config behind (never replacing one), so later commands find the demo's setup
        from tasks.demo_config import ensure_demo_config

        config_file, written = ensure_demo_config(st.config)
        note = "Wrote" if written else "Using your"
        why = " (demo rules, a dry-run demo scaling target, a receiver example)" if written else " (not changed)"
        err_console.print(f"{note} {config_file}{why}.", markup=False, highlight=False, soft_wrap=True)
    settings = st.settings()  # fail fast on bad config, before any server starts
    seeded_here: dict[str, Any] | None = None
    if demo:
        from tasks.demo import demo_seeded, seed_demo
        from tasks.lake import Lake

        lake = Lake.from_settings(settings)
        if demo_seeded(lake):
            err_console.print(f"Demo history already in {lake.root}; not seeding again.", markup=False)
        else:
            with _progress(f'Seeding {days:g} days of demo history (source="demo")') as update:
                res = seed_demo(lake, days=days, on_progress=update)
            err_console.print(f"Seeded {res.rows:,} samples in {res.series} series into {lake.root}.", markup=False)
            seeded_here = res.to_dict()
    _announce_prefect()
    from flows.pipeline import PipelineFailed, pipeline

    with st.flow_overrides() as overrides:
        state = pipeline(demo=demo, config_path=st.config_arg, overrides=overrides, demo_days=days, return_state=True)
    result = state.result(raise_on_failure=False)
    failed = isinstance(result, PipelineFailed)
    if isinstance(result, BaseException) and not failed:
        raise result
    summary: dict[str, Any] = dict(result.summary if isinstance(result, PipelineFailed) else result)  # type: ignore[arg-type]
    if seeded_here:  # the pipeline found the history this command just wrote: say who wrote it
        for stage in summary.get("stages", []):
            if stage["stage"] == "seed-demo" and stage["status"] == "skipped":
                stage["status"] = "ok"
                stage["detail"] = (
                    f"{seeded_here['rows']:,} samples, {seeded_here['series']} series "
                    f"({seeded_here['start'][:16]} → {seeded_here['end'][:16]} UTC; seeded before the run)"
                )
    render_pipeline_summary(summary)
    if config_file is not None and not settings.alerting.notify_config:
        from tasks.demo_config import receiver_hint

        for line in receiver_hint(config_file):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed:
        _fail(str(result), code=1)


# ---- collect -----------------------------------------------------------------------------------
@app.command()
@handle_errors
def collect(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Collect once and print the samples; write nothing.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to print with --dry-run.", min=1)] = 40,
) -> None:
    """Collect every configured source once and write the batch to the lake (the `collect` flow)."""
    st = _state(ctx)
    settings = st.settings()
    if dry_run:
        from tasks.lake.schema import canonical_labels, series_key
        from tasks.sources.runner import build_sources, collect_all

        sources = build_sources(settings)
        result = collect_all(sources, timeout_s=settings.collect.source_timeout_s)
        ran = len(sources) - len(result.skipped)
        t = DataTable(title=f"{len(result.samples)} samples from {ran} source(s) (dry run: nothing written)")
        t.add_column("series", overflow="fold")
        t.add_column("value", justify="right")
        for s in sorted(result.samples, key=lambda s: (s.metric, sorted(s.labels.items())))[:limit]:
            t.add_row(series_key(s.metric, canonical_labels(s.labels)), _fmt_value(float(s.value)))
        console.print(t)
        if len(result.samples) > limit:
            console.print(f"… {len(result.samples) - limit} more (--limit N)")
        for f in result.failures:
            err_console.print(
                f"[yellow]source {escape(f.source)} {'timed out' if f.timed_out else 'failed'}:[/] {escape(f.error)}"
            )
        for name, why in result.skipped.items():
            err_console.print(f"source {name} skipped: {why}", markup=False, highlight=False, soft_wrap=True)
        return
    _announce_prefect()
    from flows.collect import collect as collect_flow

    with st.flow_overrides() as overrides:
        summary = collect_flow(config_path=st.config_arg, overrides=overrides)
    t = DataTable(title="collect")
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for k, v in summary.items():
        t.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    console.print(t)


# ---- serve -------------------------------------------------------------------------------------
@app.command()
@handle_errors
def serve(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="The deployments file.")] = REPO_ROOT / "prefect.yaml",
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once (default: no limit).")] = None,
) -> None:
    """Serve every deployment of prefect.yaml (same schedules and parameters) from this process.

    Needs a Prefect server (`PREFECT_API_URL`), e.g. `prefect server start` in another terminal.
    Ctrl-C stops serving (Prefect pauses the served deployments' schedules when it stops). Refuses
    when `prefect deploy` already registered these deployments for workers: use one or the other.
    """
    st = _state(ctx)
    if not os.environ.get("PREFECT_API_URL"):
        err_console.print(
            "[yellow]warning:[/] PREFECT_API_URL is not set: serving against a temporary local server "
            "that disappears with this process. Start `prefect server start` and export PREFECT_API_URL "
            "to keep runs and schedules."
        )
    from flows.serve import serve_from_yaml

    with st.flow_overrides() as overrides:
        serve_from_yaml(file, overrides=overrides, config_path=st.config_arg, limit=limit)


# ---- config ------------------------------------------------------------------------------------
@config_app.command("show")
@handle_errors
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the effective configuration, secrets redacted (`**********`)."""
    from tasks.config import redacted
    from tasks.config.settings import config_path

    st = _state(ctx)
    data = redacted(st.settings())
    if as_json:
        _print_json(data)
        return
    import yaml

    src = config_path(st.config)
    sys.stdout.write(f"# effective configuration (file: {src or 'none, defaults'}; env and --set applied)\n")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration; exit 1 with every bad field named (and its allowed values)."""
    from tasks.config import ConfigError
    from tasks.config.settings import config_path

    st = _state(ctx)
    try:
        st.settings()
    except ConfigError as exc:
        err_console.print(f"[bold red]config invalid:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    src = config_path(st.config)
    extra = f" + {len(st.overrides)} override(s)" if st.overrides else ""
    console.print(f"[green]config OK[/green] ({escape(str(src or 'defaults'))} + environment{extra})", highlight=False)


# ---- lake --------------------------------------------------------------------------------------
@lake_app.command("stats")
@handle_errors
def lake_stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"tables": {...}} as JSON.')] = False,
) -> None:
    """Rows, files, bytes, series and time range of every lake table."""
    lake = _state(ctx).lake()
    tables = lake.stats()["tables"]
    if as_json:
        _print_json({"tables": tables})
        return
    console.print(_tables_table(tables, title=f"Lake {lake.root}"))


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
    from tasks.timeparse import parse_duration, parse_time

    now = datetime.now(UTC)
    start, end = parse_time(since, now=now), parse_time(until, now=now)
    step_td = parse_duration(step) if step else None
    if agg in ("rate", "increase") and step_td is None:
        raise CliError(f"--agg {agg} needs --step (e.g. --step 5m)")
    lake = _state(ctx).lake()
    cap = limit if limit is not None or as_json or as_csv else TABLE_ROWS
    # One row past the cap tells whether the cap cut anything, without counting every row.
    batches = lake.stream(selector, start, end, step=step_td, agg=agg, limit=None if cap is None else cap + 1)
    capped = _Capped(batches, cap)
    if as_csv:
        _write_csv(capped)
    elif as_json:
        _write_json(capped)
    else:
        import polars as pl

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
        console.print(_frame_table(df, ["series", "ts", "value"], df.height, title=title))
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
    st = _state(ctx)
    settings = st.settings()
    from tasks.lake import Lake

    report = Lake.from_settings(settings).compact(min_files=settings.lake.compact_min_files, dry_run=dry_run).to_dict()
    if as_json:
        _print_json(report)
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
            t.add_row(*(_fmt_value(d.get(k)) for k in keys))
        console.print(t)


def _parse_label_maps(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise CliError(f"--label {item!r}: expected LABEL=COLUMN, e.g. --label host=hostname")
        name, col = item.split("=", 1)
        if not name or not col:
            raise CliError(f"--label {item!r}: expected LABEL=COLUMN, e.g. --label host=hostname")
        out[name.strip()] = col.strip()
    return out


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
    lake = _state(ctx).lake()
    res = lake.import_file(
        str(file),
        time_col=time_col,
        value_col=value_col,
        metric=metric,
        metric_col=metric_col,
        label_cols=_parse_label_maps(label),
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
        _fail(f"{file}: every row was rejected ({res.rejected:,}); nothing imported")


# Mounted last: flows.cli_models imports the helpers above.
from flows.cli_models import anomaly_app, forecast_app  # noqa: E402

app.add_typer(forecast_app, name="forecast")
app.add_typer(anomaly_app, name="anomaly")

from flows.cli_rules import rules_app  # noqa: E402

app.add_typer(rules_app, name="rules")

from flows.cli_alerts import alerts_app  # noqa: E402

app.add_typer(alerts_app, name="alerts")

from flows.cli_scale import scale_app  # noqa: E402

app.add_typer(scale_app, name="scale")

from flows.cli_status import status  # noqa: E402

app.command("status")(status)

from flows.cli_analytics import export_cmd, insights_cmd, root_cause_cmd  # noqa: E402

app.command("insights")(insights_cmd)
app.command("root-cause")(root_cause_cmd)
app.command("export")(export_cmd)

from flows.cli_report import report_command  # noqa: E402

app.command("report")(report_command)


def main() -> None:
    """Console-script entry point (``cortex-perf``)."""
    prepare_prefect_env()
    app()


if __name__ == "__main__":
    main()
