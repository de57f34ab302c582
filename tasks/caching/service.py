"""One cache tick, and the steps the CLI shares with it: history → hot keys → what to warm.

Why here and not in the flow or the CLI: ``cortex-perf cache hot|warm`` and the scheduled ``cache``
flow must pick the same keys the same way (the same history window, the same trained model, the
same patterns), so both call these functions; the flow only adds scheduling, artifacts and logs.

A tick: read every node's stats and the recommendations; look in the lake for what should trigger
warming (a node restarted or joined, a miss surge — the surge also becomes a ``cache.miss`` event,
on which a Prefect automation can run the warming deployment); retrain the hot-key model and keep
it (``<data_dir>/models/cache/<name>.json``, so the CLI predicts without training); then warm the
predicted hot set and the configured patterns when asked to (``warm="always"``) or when a trigger
fired (``"auto"``) — as an action in ``cache.warm.mode`` (dry-run by default: the plan is
recorded, nothing is written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from tasks.actuators import ActionLedger
from tasks.caching.access import ACCESS_METRIC, AccessHistory, AccessLogError
from tasks.caching.advice import Advice, advise
from tasks.caching.client import CacheClient
from tasks.caching.hotkeys import HotKey, Predictor, XGBRanker, build_predictor, top_keys
from tasks.caching.lfu import lfu_hot_keys, lfu_policy
from tasks.caching.stats import CacheStats, collect_stats
from tasks.caching.triggers import MissSurge, NodeChange, miss_surge, node_changes
from tasks.caching.warm import WarmPlan, glob_matcher, parse_loader, plan_warm
from tasks.caching.warm_action import WarmOutcome, run_warm
from tasks.config import Settings
from tasks.events import emit
from tasks.lake import Lake, Sample
from tasks.markdown import md_cell
from tasks.timeparse import parse_duration

__all__ = [
    "CacheTick",
    "WarmWhen",
    "access_history",
    "access_log_samples",
    "cache_tick",
    "hot_keys",
    "model_path",
    "select_keys",
    "train_hot_model",
]

WarmWhen = Literal["auto", "always", "never"]


def access_history(settings: Settings, lake: Lake, now: datetime) -> AccessHistory:
    """The ``cache_access`` history over ``cache.warm.history`` before ``now``."""
    return AccessHistory.from_lake(lake, now - parse_duration(settings.cache.warm.history), now, redis=None)


def model_path(settings: Settings) -> Path:
    """Where the cache flow keeps the trained hot-key model of this Redis (name made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.cache.name)
    return Path(settings.data_dir) / "models" / "cache" / f"{safe}.json"


def _windows(settings: Settings) -> tuple[float, float]:
    hot = settings.cache.hot
    return parse_duration(hot.window).total_seconds(), parse_duration(hot.half_life).total_seconds()


def _decay(settings: Settings) -> Predictor:
    window, half_life = _windows(settings)
    return build_predictor("decay", window=window, half_life=half_life)


def _predictor(settings: Settings) -> Predictor:
    """The configured model; for ``xgboost`` the one the flow trained when it fits this history's kind."""
    window, half_life = _windows(settings)
    if settings.cache.hot.model == "xgboost":
        path = model_path(settings)
        if path.exists():
            saved = XGBRanker.load(path)
            if saved.window == window:
                return saved
    return build_predictor(settings.cache.hot.model, window=window, half_life=half_life)


def hot_keys(
    settings: Settings, lake: Lake, top: int, now: datetime, *, client: CacheClient | None = None
) -> tuple[list[HotKey], str]:
    """The ``top`` keys predicted hot for the window after ``now``, and the model that said so.

    With too little history for the ranker (or a saved model trained on another kind of history)
    the decayed frequency answers, and the second value says ``decay``. With no history at all,
    Redis's own LFU counters answer when ``client`` is given and runs an LFU policy (``lfu``)."""
    history = access_history(settings, lake, now)
    if not len(history):
        if client is not None and lfu_policy(client) is not None:
            return lfu_hot_keys(client, top), "lfu"
        return [], settings.cache.hot.model
    # from the last sample, not the wall clock: samples arrive a minute or so late, and a gap the
    # training windows never had (no reads in the last 0.2 windows) made the ranker score every
    # steady key as cold (measured: 50 reads/min keys below 1 read/min ones)
    at = history.end
    try:
        return top_keys(_predictor(settings), history, at, top), settings.cache.hot.model
    except ValueError:
        return top_keys(_decay(settings), history, at, top), "decay"


def train_hot_model(settings: Settings, lake: Lake, now: datetime) -> dict[str, Any]:
    """Retrain the hot-key ranker on the history and keep it; says why when it cannot."""
    if settings.cache.hot.model != "xgboost":
        return {"trained": False, "reason": f"cache.hot.model is {settings.cache.hot.model}"}
    history = access_history(settings, lake, now)
    if not len(history):
        return {"trained": False, "reason": "no cache_access history in the lake"}
    window, _ = _windows(settings)
    try:
        ranker = XGBRanker(window).fit(history, history.end)  # from the last sample, as hot_keys predicts
    except ValueError as exc:
        return {"trained": False, "reason": str(exc)}
    path = model_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.json")  # XGBoost picks the format from the suffix
    ranker.save(tmp)
    tmp.replace(path)  # a reader never sees half a model
    return {"trained": True, "path": str(path), "keys": history.n_keys, "accesses": len(history)}


def select_keys(
    settings: Settings,
    lake: Lake,
    now: datetime,
    *,
    keys: list[str] | None = None,
    patterns: list[str] | None = None,
    hot: bool = False,
    top: int | None = None,
    client: CacheClient | None = None,
) -> tuple[list[str], list[str]]:
    """The keys to warm, each once, and where they came from (``keys``, ``patterns``, ``hot``).

    ``patterns`` (default ``cache.warm.patterns``) match keys of the access history: warming loads
    what people read, never a scan of a keyspace we do not know."""
    cfg = settings.cache.warm
    chosen: list[str] = list(keys or [])
    source: list[str] = ["keys"] if keys else []
    pats = cfg.patterns if patterns is None else patterns
    if pats:
        match = glob_matcher(pats)
        chosen += [k for k in access_history(settings, lake, now).keys if match(k)]
        source.append("patterns")
    if hot:
        # worst first, best last: the best key ends most recently used, so an LRU evicts it last
        # (as the benchmark loads it; written best first, Redis's LRU clock makes it the oldest)
        chosen += [k.key for k in reversed(hot_keys(settings, lake, top or cfg.top, now, client=client)[0])]
        source.append("hot")
    return list(dict.fromkeys(chosen)), source


def access_log_samples(path: str | Path, redis_name: str, *, step_s: float = 60.0) -> list[Sample]:
    """An access log (``TIMESTAMP KEY`` per line) as ``cache_access`` samples: one per key and minute,
    valued with that minute's reads, labelled ``key`` and ``redis`` — what an application would push.

    A log without timestamps cannot be placed in time (the flow predicts "the next window" from
    when reads happened), so it is refused, naming the file."""
    history = AccessHistory.from_log(path)
    if not len(history):
        return []
    if not history.timestamped:
        raise AccessLogError(f"{path}: lines have no timestamps ('TIMESTAMP KEY' per line; epoch seconds or ISO 8601)")
    buckets = (history.times // step_s).astype("int64")
    per: dict[tuple[int, int], float] = {}
    for key_id, bucket, count in zip(history.ids.tolist(), buckets.tolist(), history.counts.tolist(), strict=True):
        per[(key_id, bucket)] = per.get((key_id, bucket), 0.0) + float(count)
    return [
        Sample(ACCESS_METRIC, n, datetime.fromtimestamp(bucket * step_s, UTC),
               {"key": history.keys[key_id], "redis": redis_name})
        for (key_id, bucket), n in sorted(per.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]  # fmt: skip


@dataclass
class CacheTick:
    """What one cache tick saw and did."""

    now: datetime
    stats: CacheStats
    advice: list[Advice]
    changes: list[NodeChange]
    surge: MissSurge | None
    model: dict[str, Any]
    warm_reason: str | None = None
    keys: int = 0
    plan: WarmPlan | None = None
    outcome: WarmOutcome | None = None
    mode: str = "dry-run"
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "now": self.now.isoformat(),
            "nodes": len(self.stats.nodes),
            "down": sum(not n.up for n in self.stats.nodes),
            "advice": [a.to_json() for a in self.advice],
            "changes": [{"node": c.node, "kind": c.kind, "at": c.at.isoformat()} for c in self.changes],
            "miss_surge": None if self.surge is None else {"rate": self.surge.rate, "baseline": self.surge.baseline},
            "model": self.model,
            "warm_reason": self.warm_reason,
            "mode": self.mode,
            "keys": self.keys,
        }
        if self.plan is not None:
            out["warm_plan"] = {"to_load": len(self.plan.missing), "present": len(self.plan.present)}
        if self.outcome is not None:
            out["warm"] = {"status": self.outcome.result.status, "decision_id": self.outcome.result.decision_id,
                           **(self.outcome.report.counts() if self.outcome.report else {})}  # fmt: skip
        return out

    def markdown(self) -> str:
        """The tick as the Prefect UI shows it (an artifact): nodes, findings, triggers, warming."""
        lines = [f"## Cache {self.stats.name} at {self.now:%Y-%m-%d %H:%M} UTC", "",
                 "| node | role | keys | slots | hit ratio | memory | ops/s |",
                 "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for n in self.stats.nodes:
            hr = "—" if n.hit_ratio is None else f"{n.hit_ratio:.1%}"
            mem = "—" if n.used_memory is None else f"{n.used_memory / 2**20:.1f} MiB"
            role = n.role if n.up else f"DOWN ({md_cell(n.error or '')})"
            lines.append(f"| {n.node} | {role} | {n.keys if n.keys is not None else '—'} | {n.slots} | {hr} | {mem} "
                         f"| {n.ops_per_s if n.ops_per_s is not None else '—'} |")  # fmt: skip
        lines += ["", "### Recommendations", ""]
        lines += [f"- **{a.severity}** {md_cell(a.message)} — {md_cell(a.action)}" for a in self.advice] or ["- none"]
        lines += ["", "### Warming", ""]
        for c in self.changes:
            lines.append(f"- node {c.node} {c.kind} at {c.at:%H:%M:%S}")
        if self.surge is not None:
            lines.append(f"- miss surge: {self.surge.rate:.1f}/s vs {self.surge.baseline:.1f}/s before")
        if self.warm_reason is None:
            lines.append("- not warmed: no trigger (a restart, a join or a miss surge) and not asked to")
        elif self.outcome is not None and self.outcome.report is not None:
            got = self.outcome.report.counts()
            lines.append(f"- warmed ({self.warm_reason}): {got['warmed']} written, {got['skipped_present']} already "
                         f"present, {got['skipped_no_value']} without a value, {got['failed']} failed")  # fmt: skip
        elif self.plan is not None:
            lines.append(f"- dry run ({self.warm_reason}): {len(self.plan.missing)} of {self.keys} keys would be "
                         "loaded (`cache.warm.mode: apply` to write them)")  # fmt: skip
        lines += [f"- {md_cell(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"


def cache_tick(
    settings: Settings,
    lake: Lake,
    client: CacheClient,
    now: datetime,
    *,
    warm: WarmWhen = "auto",
    mode: Literal["dry-run", "apply"] | None = None,
    lookback: timedelta = timedelta(minutes=10),
) -> CacheTick:
    """One tick (see the module docstring). ``lookback``: how far back triggers count (the schedule's
    interval and some slack: a restart between two runs is seen by the next one)."""
    cfg = settings.cache
    stats = collect_stats(client)
    changes = node_changes(lake, cfg.name, now - lookback, now)
    surge = miss_surge(lake, cfg.name, now)
    if surge is not None:
        emit(lake, "cache.miss", f"cache.{cfg.name}",
             {"rate": surge.rate, "baseline": surge.baseline, "ratio": min(surge.ratio, 1e9)}, ts=now)  # fmt: skip
    model = train_hot_model(settings, lake, now)
    hot, _ = hot_keys(settings, lake, 50, now, client=client)
    tick = CacheTick(now, stats, [], changes, surge, model, mode=mode or cfg.warm.mode)
    tick.advice = advise(stats, hot_keys=[(k.key, k.score) for k in hot], threshold_pct=cfg.cluster_ops.threshold_pct)
    reasons = [f"node {c.node} {c.kind}" for c in changes] + (["miss surge"] if surge else [])
    if warm == "always":
        tick.warm_reason = "asked" + (f" ({', '.join(reasons)})" if reasons else "")
    elif warm == "auto" and reasons:
        tick.warm_reason = ", ".join(reasons)
    if tick.warm_reason is None:
        return tick
    keys, source = select_keys(settings, lake, now, hot=True, client=client)
    tick.keys = len(keys)
    if not keys:
        tick.notes.append("nothing to warm: no cache_access history and no cache.warm.patterns match")
        return tick
    if cfg.warm.loader is None:
        tick.notes.append("nothing warmed: cache.warm.loader is not set (where would the values come from?)")
        return tick
    loader = parse_loader(cfg.warm.loader, lake=lake)
    if tick.mode == "dry-run":
        tick.plan = plan_warm(client, keys, batch=cfg.warm.batch)
        return tick
    tick.outcome = run_warm(lake, ActionLedger.from_settings(settings), client, keys, loader, cfg.warm,
                            source="+".join(source), now=now)  # fmt: skip
    return tick
