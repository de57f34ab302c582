"""``cortex-perf run | collect | serve``: the commands that run the flows (the pipeline once, one
collection, every deployment). Parsing and printing only; the work is in ``flows.pipeline``,
``flows.collect``, ``flows.serve`` and ``tasks``. Mounted on the app by ``flows.cli``.

Prefect is imported only inside a command that runs a flow, after the app set Prefect's environment
(see ``flows.cli``); ``collect --dry-run`` never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cli.common import (
    REPO_ROOT,
    announce_prefect,
    cli_state,
    console,
    err_console,
    fail,
    fmt_value,
    handle_errors,
    tables_table,
)
from flows.cli.output import DataTable, escape, styled


@contextmanager
def _progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
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
        console.print(tables_table(summary["tables"], title="Lake tables"))
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
    st = cli_state(ctx)
    config_file: Path | None = None
    if demo:  # leave a working config behind (never replacing one), so later commands find the demo's setup
        from tasks.demo_config import ensure_demo_config  # lazy (start-up): pydantic, yaml

        config_file, written = ensure_demo_config(st.config)
        note = "Wrote" if written else "Using your"
        why = " (demo rules, a dry-run demo scaling target, a receiver example)" if written else " (not changed)"
        err_console.print(f"{note} {config_file}{why}.", markup=False, highlight=False, soft_wrap=True)
    settings = st.settings()  # fail fast on bad config, before any server starts
    seeded_here: dict[str, Any] | None = None
    if demo:
        from tasks.demo import demo_seeded, seed_demo  # lazy (start-up): polars

        lake = st.lake()
        if demo_seeded(lake):
            err_console.print(f"Demo history already in {lake.root}; not seeding again.", markup=False)
        else:
            with _progress_bar(f'Seeding {days:g} days of demo history (source="demo")') as update:
                res = seed_demo(lake, days=days, on_progress=update)
            err_console.print(f"Seeded {res.rows:,} samples in {res.series} series into {lake.root}.", markup=False)
            seeded_here = res.to_dict()
    announce_prefect()
    from flows.pipeline import PipelineFailed, pipeline  # lazy (start-up): Prefect, after the app set its environment

    with st.flow_inputs() as overrides:
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
        from tasks.demo_config import receiver_hint  # lazy (start-up): pydantic, yaml

        for line in receiver_hint(config_file):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if failed:
        fail(str(result), code=1)


# ---- collect -----------------------------------------------------------------------------------
@handle_errors
def collect(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Collect once and print the samples; write nothing.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to print with --dry-run.", min=1)] = 40,
) -> None:
    """Collect every configured source once and write the batch to the lake (the `collect` flow)."""
    st = cli_state(ctx)
    settings = st.settings()
    if dry_run:
        from tasks.lake.schema import canonical_labels, series_key  # lazy (start-up): polars
        from tasks.sources.runner import build_sources, collect_all  # lazy (start-up): the source clients

        sources = build_sources(settings)
        result = collect_all(sources, timeout_s=settings.collect.source_timeout_s)
        ran = len(sources) - len(result.skipped)
        t = DataTable(title=f"{len(result.samples)} samples from {ran} source(s) (dry run: nothing written)")
        t.add_column("series", overflow="fold")
        t.add_column("value", justify="right")
        for s in sorted(result.samples, key=lambda s: (s.metric, sorted(s.labels.items())))[:limit]:
            t.add_row(series_key(s.metric, canonical_labels(s.labels)), fmt_value(float(s.value)))
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
    announce_prefect()
    from flows.collect import collect as collect_flow  # lazy (start-up): Prefect, after the app set its environment

    with st.flow_inputs() as overrides:
        summary = collect_flow(config_path=st.config_arg, overrides=overrides)
    t = DataTable(title="collect")
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for k, v in summary.items():
        t.add_row(k, ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    console.print(t)


# ---- serve -------------------------------------------------------------------------------------
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
    st = cli_state(ctx)
    if not os.environ.get("PREFECT_API_URL"):
        err_console.print(
            "[yellow]warning:[/] PREFECT_API_URL is not set: serving against a temporary local server "
            "that disappears with this process. Start `prefect server start` and export PREFECT_API_URL "
            "to keep runs and schedules."
        )
    from flows.serve import serve_from_yaml  # lazy (start-up): Prefect, after the app set its environment

    with st.flow_overrides() as overrides:
        serve_from_yaml(file, overrides=overrides, config_path=st.config_arg, limit=limit)
