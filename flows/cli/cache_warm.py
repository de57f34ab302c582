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

from flows.cli.common import CliState, cli_state, console, err_console, handle_errors, print_json
from flows.cli.output import DataTable
from tasks.actuators import ActionLedger
from tasks.caching.access import AccessHistory
from tasks.caching.client import CacheClient, CacheError
from tasks.caching.hotkeys import HotKey, build_predictor, top_keys
from tasks.caching.warm import glob_matcher, parse_loader, plan_warm
from tasks.caching.warm_action import run_warm
from tasks.lake.schema import now_utc
from tasks.timeparse import parse_duration

__all__ = ["hot_cmd", "warm_cmd"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TopOpt = Annotated[
    int | None, typer.Option("--top", min=1, max=10_000_000, help="How many keys (default: cache.warm.top).")
]


def _history(st: CliState) -> AccessHistory:
    s = st.settings()
    end = now_utc()
    return AccessHistory.from_lake(st.lake(), end - parse_duration(s.cache.warm.history), end, redis=None)


def _hot(st: CliState, top: int) -> list[HotKey]:
    s = st.settings()
    hist = _history(st)
    if not len(hist):
        return []
    window = parse_duration(s.cache.hot.window).total_seconds()
    half_life = parse_duration(s.cache.hot.half_life).total_seconds()
    predictor = build_predictor(s.cache.hot.model, window=window, half_life=half_life)
    # from the last sample, not the wall clock: samples arrive a minute or so late, and a gap the
    # training windows never had (no reads in the last 0.2 windows) made the ranker score every
    # steady key as cold (measured: 50 reads/min keys below 1 read/min ones)
    at = hist.end
    try:
        return top_keys(predictor, hist, at, top)
    except ValueError:
        # too little history to train the ranker: the decayed frequency needs none
        return top_keys(build_predictor("decay", window=window, half_life=half_life), hist, at, top)


@handle_errors
def hot_cmd(ctx: typer.Context, top: TopOpt = None, json_out: JsonOpt = False) -> None:
    """Keys predicted hot in the next window (``cache.hot.window``), with their scores, from the
    ``cache_access`` history in the lake."""
    st = cli_state(ctx)
    n = top or st.settings().cache.warm.top
    keys = _hot(st, n)
    if json_out:
        print_json({"model": st.settings().cache.hot.model, "keys": [{"key": k.key, "score": k.score} for k in keys]})
        return
    if not keys:
        console.print("no cache_access history in the lake (push cache_access samples with a `key` label)")
        return
    t = DataTable(title=f"Hot keys ({st.settings().cache.hot.model})", title_justify="left")
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
    st = cli_state(ctx)
    s = st.settings()
    cfg = s.cache.warm
    patterns = pattern if pattern is not None else cfg.patterns
    keys: list[str] = list(key or [])
    source = []
    if key:
        source.append("keys")
    if patterns:
        match = glob_matcher(patterns)
        keys += [k for k in _history(st).keys if match(k)]
        source.append("patterns")
    if hot:
        # worst first, best last: the best key ends most recently used, so an LRU evicts it last
        # (as the benchmark loads it; written best first, Redis's LRU clock makes it the oldest)
        keys += [k.key for k in reversed(_hot(st, top or cfg.top))]
        source.append("hot")
    if not source:
        raise typer.BadParameter("say what to warm: --key, --pattern (or cache.warm.patterns) or --hot")
    keys = list(dict.fromkeys(keys))
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
