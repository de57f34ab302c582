"""``cortex-perf cache hot`` and ``cortex-perf cache warm``: predicted hot keys, and warming them.

Parsing and printing only: the history is ``tasks.caching.access`` (``cache_access`` samples in the
lake, over ``cache.warm.history``), the prediction ``tasks.caching.hotkeys`` (``cache.hot.model``),
the warm-up ``tasks.caching.warm`` recorded as an action by ``tasks.caching.warm_action``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from flows.cli.common import cli_state, console, err_console, handle_errors, print_json
from flows.cli.output import DataTable

__all__ = ["hot_cmd", "warm_cmd"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TopOpt = Annotated[
    int | None, typer.Option("--top", min=1, max=10_000_000, help="How many keys (default: cache.warm.top).")
]


@handle_errors
def hot_cmd(ctx: typer.Context, top: TopOpt = None, json_out: JsonOpt = False) -> None:
    """Keys predicted hot in the next window (``cache.hot.window``), with their scores, from the
    ``cache_access`` history in the lake — or, with no history, from Redis's own counters when it
    runs an LFU policy (``OBJECT FREQ``)."""
    from tasks.caching.client import CacheClient, CacheError  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.service import hot_keys  # lazy (start-up): see flows/cli/common.py
    from tasks.lake.schema import now_utc  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    n = top or st.settings().cache.warm.top
    with CacheClient.from_settings(st.settings()) as client:
        try:
            keys, model = hot_keys(st.settings(), st.lake(), n, now_utc(), client=client)
        except CacheError:  # no history and Redis unreachable: the history's (empty) answer stands
            keys, model = hot_keys(st.settings(), st.lake(), n, now_utc())
    if json_out:
        print_json({"model": model, "keys": [{"key": k.key, "score": k.score} for k in keys]})
        return
    if not keys:
        console.print("no cache_access history in the lake (push cache_access samples with a `key` label, or "
                      "`cortex-perf cache import-log FILE`), and Redis runs no LFU policy to ask")  # fmt: skip
        return
    t = DataTable(title=f"Hot keys ({model})", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("key")
    t.add_column("score", justify="right")
    for i, k in enumerate(keys, 1):
        t.add_row(str(i), k.key, f"{k.score:.4g}")
    console.print(t)


@contextmanager
def _progress(total_hint: str, quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    if quiet:
        yield None
        return
    # lazy (start-up): rich.progress costs ~0.1 s (flows/cli/run.py measured it); only `warm` draws a bar
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console
    ) as bar:
        task = bar.add_task(total_hint, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@handle_errors
def warm_cmd(
    ctx: typer.Context,
    key: Annotated[list[str] | None, typer.Option("--key", help="A key to warm (repeatable).")] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            "--pattern", help="Warm history keys matching this Redis glob (repeatable; default cache.warm.patterns)."
        ),
    ] = None,
    hot: Annotated[bool, typer.Option("--hot", help="Warm the predicted hot set (see `cache hot`).")] = False,
    top: TopOpt = None,
    loader: Annotated[
        str | None,
        typer.Option(
            "--loader", help="module:function, an http(s) URL with {key}, or sql: … (default cache.warm.loader)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show which keys would be loaded; write nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Load keys into Redis before traffic asks for them: rate limited (cache.warm.ops_per_s,
    bytes_per_s), keys already present left alone (SET NX), TTLs from the loader or
    cache.warm.default_ttl_s; recorded as an action and a cache.warmed event."""
    from tasks.actuators import ActionLedger  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.client import CacheClient, CacheError  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.service import select_keys  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.warm import parse_loader, plan_warm  # lazy (start-up): see flows/cli/common.py
    from tasks.caching.warm_action import run_warm  # lazy (start-up): see flows/cli/common.py
    from tasks.lake.schema import now_utc  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    s = st.settings()
    cfg = s.cache.warm
    if not (key or hot or (pattern if pattern is not None else cfg.patterns)):
        raise typer.BadParameter("say what to warm: --key, --pattern (or cache.warm.patterns) or --hot")
    keys, source = select_keys(s, st.lake(), now_utc(), keys=key, patterns=pattern, hot=hot, top=top)
    ldr = parse_loader(loader or cfg.loader, lake=st.lake())
    with CacheClient.from_settings(s) as client:
        if dry_run:
            plan = plan_warm(client, keys, batch=cfg.batch)
            out: dict[str, Any] = {
                "dry_run": True,
                "loader": ldr.spec,
                "to_load": len(plan.missing),
                "present": len(plan.present),
                "keys": plan.missing[:1000],
            }
            _print(out, json_out)
            return
        with _progress(f"warming {len(keys):,} keys", json_out) as progress:
            outcome = run_warm(
                st.lake(),
                ActionLedger.from_settings(s),
                client,
                keys,
                ldr,
                cfg,
                source="+".join(source),
                progress=progress,
            )
    res = outcome.result
    out = {
        "dry_run": False,
        "status": res.status,
        "decision_id": res.decision_id,
        **(outcome.report.counts() if outcome.report else {}),
    }
    _print(out, json_out)
    if res.status == "failed":
        raise CacheError(res.error or "warm failed")


def _print(out: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(out)
        return
    t = DataTable(title="Cache warm" + (" (dry run)" if out.get("dry_run") else ""), title_justify="left")
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in out.items():
        if k != "keys":
            t.add_row(k, "" if v is None else str(v))
    console.print(t)
