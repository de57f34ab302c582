"""``cortex-perf cache …``: the cache manager — Redis or a Redis Cluster kept sized, balanced and warm.

Parsing and printing only; the work is in ``tasks.caching``. Mounted on the app by ``flows.cli``.
Every command reads ``cache`` from the config (``cache.url``, else ``sources.redis.url``); the URL's
password is never printed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.cache_cluster import cluster_app
from flows.cli.common import cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable
from tasks.caching.client import CacheClient

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
