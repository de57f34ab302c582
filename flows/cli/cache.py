"""``cortex-perf cache …``: the cache manager — Redis or a Redis Cluster kept sized, balanced and warm.

Parsing and printing only; the work is in ``tasks.caching``. Mounted on the app by ``flows.cli``.
Every command reads ``cache`` from the config (``cache.url``, else ``sources.redis.url``); the URL's
password is never printed.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.cache_cluster import cluster_app
from flows.cli.cache_warm import hot_cmd, warm_cmd
from flows.cli.common import cli_state, console, err_console, handle_errors, human_bytes, print_json
from flows.cli.output import DataTable

cache_app = typer.Typer(
    help="Redis / Redis Cluster: stats, hot keys, warming, cluster operations (add, remove, rebalance, fix).",
    no_args_is_help=True,
)

cache_app.add_typer(cluster_app, name="cluster")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@cache_app.command("ping")
@handle_errors
def ping_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Check that every primary of the configured Redis answers (exit 2 naming the first that does not)."""
    from tasks.caching.client import CacheClient  # lazy (start-up): see flows/cli/common.py

    with CacheClient.from_settings(cli_state(ctx).settings()) as client:
        client.ping()
        primaries = [str(a) for a in client.primaries()]
        if json_out:
            print_json({"url": client.safe_url, "cluster": client.cluster, "primaries": primaries, "ok": True})
            return
        t = DataTable(title=f"Redis {client.name} ({client.safe_url})", title_justify="left")
        t.add_column("primary")
        t.add_column("answers")
        for p in primaries:
            t.add_row(p, "yes")
        console.print(t)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def _num(v: float | int | None) -> str:
    return "—" if v is None else f"{v:,.0f}" if isinstance(v, int) or float(v).is_integer() else f"{v:,.1f}"


@cache_app.command("stats")
@handle_errors
def stats_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every node now: role, keys, slots, hit ratio, evictions, memory, ops/s, replication lag."""
    from tasks.caching.client import CacheClient  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.stats import collect_stats  # lazy (start-up): see flows/cli/common.py

    with CacheClient.from_settings(cli_state(ctx).settings()) as client:
        stats = collect_stats(client)
        url = client.safe_url
    if json_out:
        print_json(stats.to_json())
        return
    kind = "Redis Cluster" if stats.cluster else "Redis"
    t = DataTable(title=f"{kind} {stats.name} ({url})", title_justify="left")
    for col in ("node", "role", "keys", "slots", "hit%", "evicted", "memory", "%max", "ops/s", "replication"):
        t.add_column(col, justify="left" if col in ("node", "role", "replication") else "right", overflow="fold")
    for n in stats.nodes:
        repl = "—"
        if n.role == "replica":
            repl = f"of {n.master or '?'}: " + (
                "link down" if n.link_up is False else f"{_num(n.replication_lag_bytes)} B behind"
            )
        t.add_row(
            n.node,
            n.role if n.up else f"DOWN ({n.error})",
            _num(n.keys),
            str(n.slots) if stats.cluster and n.role == "master" else "—",
            _pct(n.hit_ratio),
            _num(n.evicted_keys),
            human_bytes(n.used_memory) if n.used_memory is not None else "—",
            _pct(n.memory_ratio),
            _num(n.ops_per_s),
            repl,
        )
    console.print(t)


@cache_app.command("advise")
@handle_errors
def advise_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Recommendations: memory headroom, eviction pressure, slot/memory imbalance, idle nodes, replicas, hot slots."""
    from tasks.caching.advice import advise  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.client import CacheClient  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.stats import collect_stats  # lazy (start-up): see flows/cli/common.py

    settings = cli_state(ctx).settings()
    with CacheClient.from_settings(settings) as client:
        stats = collect_stats(client)
    found = advise(stats, threshold_pct=settings.cache.cluster_ops.threshold_pct)
    if json_out:
        print_json([a.to_json() for a in found])
        return
    if not found:
        console.print(f"No recommendations: {len(stats.nodes)} node(s) look healthy.")
        return
    t = DataTable(title=f"Recommendations for {stats.name}", title_justify="left")
    for col in ("severity", "node", "finding", "what to do"):
        t.add_column(col, overflow="fold")
    for a in found:
        t.add_row(a.severity, a.node, a.message, a.action)
    console.print(t)


cache_app.command("hot")(hot_cmd)
cache_app.command("warm")(warm_cmd)


@cache_app.command("import-log")
@handle_errors
def import_log_cmd(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Access log: one `TIMESTAMP KEY` per line (epoch seconds or ISO 8601).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be written; write nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Load an access log into the lake as `cache_access` samples (reads per key and minute), the
    history `cache hot`, `cache warm --hot` and the cache flow predict from."""
    from tasks.caching.service import access_log_samples  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    samples = access_log_samples(path, st.settings().cache.name)
    res = None if dry_run or not samples else st.lake().write_samples(samples)
    out = {"file": path, "samples": len(samples), "keys": len({s.labels["key"] for s in samples}),
           "written": res.accepted if res else 0, "rejected": res.rejected if res else 0,
           "reasons": res.reasons[:5] if res else [], "dry_run": dry_run}  # fmt: skip
    if json_out:
        print_json(out)
        return
    verb = "would write" if dry_run else "wrote"
    console.print(f"{verb} {len(samples):,} cache_access samples for {out['keys']:,} keys", highlight=False)
    if res is not None and res.rejected:
        # the lake's cardinality limit (lake.max_series_per_metric) counts one series per key
        err_console.print(f"{res.rejected:,} rejected, e.g. {escape(res.reasons[0]) if res.reasons else '?'}",
                          highlight=False)  # fmt: skip
