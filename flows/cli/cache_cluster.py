"""``cortex-perf cache cluster …``: Redis Cluster operations with ``redis-cli --cluster`` semantics.

Parsing and printing only; the work is in ``tasks.caching.cluster_ops`` and every change goes
through the ``redis_cluster`` actuator (ledger, ``action.*`` event in the lake).

Commands that change the cluster are **dry runs unless given ``--apply``** (the design's rule: dry
run is the default everywhere): they print the plan — which slots move where, how many keys — and
change nothing. ``--dry-run`` says so explicitly. Bad input (an unknown node, a node that is not
empty or not in cluster mode, weights that do not parse, a standalone Redis) is one ``error:``
line, exit 2, nothing changed; an operation that fails midway exits 1 with the error recorded
(``check`` then shows what is open and ``fix`` closes it). ``check`` exits 1 when it finds problems.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cli.common import CliError, cli_state, console, err_console, fail, handle_errors, print_json
from flows.cli.output import DataTable

if TYPE_CHECKING:
    from tasks.caching.cluster_ops import ClusterManager, ClusterOp

__all__ = ["cluster_app"]

cluster_app = typer.Typer(
    help="Redis Cluster operations (check, add-node, remove-node, rebalance, reshard, fix, failover).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run/--apply",
        help="--dry-run (the default): print the plan, change nothing. --apply: do it (recorded as an action).",
    ),
]


@contextmanager
def _manager(ctx: typer.Context) -> Iterator[ClusterManager]:
    settings = cli_state(ctx).settings()
    # lazy (start-up): see flows/cli/common.py — every --help loads this group
    from tasks.caching.client import CacheClient
    from tasks.caching.cluster_ops import ClusterManager

    with CacheClient.from_settings(settings) as client:
        yield ClusterManager(client, settings.cache.cluster_ops)


def _plan_table(op: ClusterOp) -> DataTable:
    t = DataTable(title=op.summary, title_justify="left")
    for col, justify in (("from", "left"), ("to", "left"), ("slots", "right"), ("keys", "right"), ("ranges", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in op.move_rows():
        t.add_row(row["from"], row["to"], f"{row['slots']:,}", f"{row['keys']:,}", row["ranges"])
    return t


def _print_plan(op: ClusterOp) -> None:
    if op.moves:
        console.print(_plan_table(op))
    for step in op.steps:
        console.print(f"  • {step}", highlight=False, markup=False)
    if op.fix_steps:
        t = DataTable(title="slots to fix", title_justify="left")
        for col in ("slot", "action", "owner", "keys elsewhere"):
            t.add_column(col)
        for s in op.fix_steps:
            t.add_row(str(s.slot), s.action, s.owner, ", ".join(f"{a}: {k}" for a, k in s.keys_elsewhere.items()))
        console.print(t)
    if op.empty:
        console.print("nothing to do", highlight=False)


def _run(ctx: typer.Context, manager: ClusterManager, op: ClusterOp, dry_run: bool, json_out: bool) -> None:
    """Print the plan (dry run) or apply it through the actuator with a progress bar, then report."""
    if dry_run or op.empty:
        if json_out:
            print_json({**op.to_dict(), "status": "dry-run" if dry_run else "nothing to do"})
        else:
            _print_plan(op)
            if dry_run and not op.empty:
                console.print("[dim]dry run: nothing changed (add --apply to do it)[/dim]")
        return
    from tasks.actuators import ActionLedger  # lazy (start-up): duckdb, pydantic (~1.1 s, measured)
    from tasks.caching.cluster_actuator import run_cluster_op  # lazy (start-up): pulls tasks.actuators

    st = cli_state(ctx)
    settings = st.settings()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[keys]} keys"),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out or not op.moves,
    ) as bar:
        task = bar.add_task(op.name, total=len(op.moves) or 1, keys=0)
        manager.progress = lambda slots, keys: bar.update(task, advance=slots, keys=bar.tasks[0].fields["keys"] + keys)
        result = run_cluster_op(manager, op, ledger=ActionLedger.from_settings(settings), lake=st.lake(), dry_run=False)
    out: dict[str, Any] = {**op.to_dict(), **result.to_dict()}
    if json_out:
        print_json(out)
    else:
        _print_plan(op)
        detail = ", ".join(f"{k}={v}" for k, v in result.detail.items())
        console.print(f"{result.status}: {op.summary} ({detail})", highlight=False, markup=False)
    if not result.ok:
        fail(f"{op.name} failed: {result.error}", 1)


@cluster_app.command("check")
@handle_errors
def check_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Slot coverage, open slots, whether every node agrees on the slot map, failing nodes. Exit 1 on a problem."""
    with _manager(ctx) as m:
        from tasks.caching.cluster_check import check_cluster  # lazy (start-up): see flows/cli/common.py

        report = check_cluster(m.client)
    if json_out:
        print_json(report.to_dict())
    else:
        t = DataTable(title=f"Redis Cluster ({report.topology.seen_from})", title_justify="left")
        for col in ("node", "id", "role", "slots", "keys", "ranges"):
            t.add_column(col)
        for n in report.nodes():
            role = n["role"] + (f" of {n['master'][:8]}" if n["master"] else "")
            keys = "" if n["keys"] is None else f"{n['keys']:,}"
            t.add_row(n["address"], n["id"][:8], role, f"{n['slots']:,}", keys, ",".join(n["ranges"][:4]))
        console.print(t)
        for p in report.problems:
            console.print(f"[red]problem[/red] [{p.kind}] {p.message}", highlight=False)
        if report.ok:
            console.print("[green]OK[/green]: all 16384 slots covered, none open, every node agrees")
    if not report.ok:
        raise typer.Exit(1)


@cluster_app.command("add-node")
@handle_errors
def add_node_cmd(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The new node, host:port: empty, in cluster mode, in no cluster.")],
    replica: Annotated[
        bool, typer.Option("--replica", help="Join as a replica (of --master, else the master with fewest replicas).")
    ] = False,
    master: Annotated[
        str | None, typer.Option("--master", help="Replicate this master (host:port or id); implies --replica.")
    ] = None,
    dry_run: DryRunOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Add a node: CLUSTER MEET, then wait for its own cluster_state:ok (a master) or replicate a master."""
    with _manager(ctx) as m:
        _run(ctx, m, m.plan_add_node(node, replica=replica, master=master), dry_run, json_out)


@cluster_app.command("remove-node")
@handle_errors
def remove_node_cmd(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to remove, host:port or id.")],
    dry_run: DryRunOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Drain its slots evenly to the other masters, re-point its replicas, FORGET it everywhere, RESET SOFT it."""
    with _manager(ctx) as m:
        _run(ctx, m, m.plan_remove_node(node), dry_run, json_out)


@cluster_app.command("rebalance")
@handle_errors
def rebalance_cmd(
    ctx: typer.Context,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="NODE=WEIGHT (host:port or id; 0 drains it). Repeatable.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0,
            max=100,
            help="Percent off its share before a master is rebalanced (default cache.cluster_ops.threshold_pct).",
        ),
    ] = None,
    use_empty_masters: Annotated[
        bool, typer.Option("--use-empty-masters", help="Give slots to masters that have none.")
    ] = False,
    dry_run: DryRunOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Move slots so every master holds its weighted share (redis-cli --cluster rebalance's rules)."""
    try:
        from tasks.caching.cluster_plan import parse_weights  # lazy (start-up): see flows/cli/common.py

        weights = parse_weights(weight or [])
    except ValueError as exc:
        raise CliError(str(exc)) from None
    with _manager(ctx) as m:
        op = m.plan_rebalance(weights, threshold_pct=threshold, use_empty_masters=use_empty_masters)
        _run(ctx, m, op, dry_run, json_out)


@cluster_app.command("reshard")
@handle_errors
def reshard_cmd(
    ctx: typer.Context,
    slots: Annotated[int, typer.Option("--slots", min=1, max=16384, help="How many slots to move.")],
    to: Annotated[str, typer.Option("--to", help="The master receiving them (host:port or id).")],
    source: Annotated[
        list[str] | None, typer.Option("--from", help="A master giving slots (repeatable; default: all others).")
    ] = None,
    dry_run: DryRunOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Move N slots to one master, taken from the sources in proportion to what they own."""
    with _manager(ctx) as m:
        _run(ctx, m, m.plan_reshard(slots, to, source or []), dry_run, json_out)


@cluster_app.command("fix")
@handle_errors
def fix_cmd(ctx: typer.Context, dry_run: DryRunOpt = True, json_out: JsonOpt = False) -> None:
    """Close slots an interrupted move left open (finish the move or close it) and assign uncovered slots."""
    with _manager(ctx) as m:
        _run(ctx, m, m.plan_fix(), dry_run, json_out)


@cluster_app.command("failover")
@handle_errors
def failover_cmd(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The replica to promote (host:port or id).")],
    force: Annotated[bool, typer.Option("--force", help="CLUSTER FAILOVER FORCE: do not wait for the master.")] = False,
    dry_run: DryRunOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """Promote a replica to master (CLUSTER FAILOVER on it); waits until it reports itself master."""
    with _manager(ctx) as m:
        _run(ctx, m, m.plan_failover(node, force=force), dry_run, json_out)
