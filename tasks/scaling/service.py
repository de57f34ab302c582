"""One scaling tick for every configured target: read reality, decide, record, apply.

Composition only — the maths is in ``tasks.scaling.policies`` (``decide``), the forecasting in
``tasks.scaling.nowcast`` / the forecast flow, the side effects in the actuators. Per target:

1. the current count from its actuator (a failure is recorded as ``action.failed`` with
   ``stage: current`` and the target is skipped; the others go on);
2. the load history from the lake (``metric``: selector, per-bucket ``agg``, ``combine`` across
   series, ``step``), complete buckets only;
3. a forecast: the forecast flow's newest one from the lake's ``forecasts`` table when fresh
   (``metric.forecast``), else the nowcaster over the same history, else none (the policy falls
   back to reactive and says so);
4. the previous ``PolicyState`` from the state DB, then ``decide(...)``;
5. the record: a ``scaling.triggered`` event in the lake (payload = the decision record) and the
   state DB (``tasks.scaling.records``), in that order before anything is applied;
6. in ``apply`` mode the actuator sets the count (once per decision id: the id is a hash of the
   target and the tick, so a re-run of the tick replays the recorded decision and the ledger
   skips what was applied), and ``action.applied`` / ``action.failed`` go to the lake;
7. every recorded decision writes ``cortex_perf_scaling_units`` / ``cortex_perf_scaling_emergency``
   samples; the shipped rule ``ScalingEmergency`` (``data/examples/alerting/rules.yml`` and the
   demo rules) fires on the latter, so an emergency reaches people through the alerting pipeline
   like any alert: pending/firing/resolved, routing, silences, Apprise. Why not an event of our own:
   one written here would fire and never resolve, and bypass every silence and route.

``record=False`` (``cortex-perf scale plan``) decides and returns the decision without writing or
applying anything.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl

from tasks.actuators import ActionLedger, Actuator, ScaleAction, build_actuator, record_result
from tasks.config import Settings
from tasks.events import emit
from tasks.lake import Lake, Sample
from tasks.markdown import md_cell
from tasks.scaling.nowcast import DAY_MIN, Nowcaster
from tasks.scaling.policies import Forecast, MetricHistory, decide
from tasks.scaling.records import ScalingRecords, decision_id
from tasks.timeparse import parse_duration

__all__ = [
    "ScalingRun",
    "TargetOutcome",
    "load_forecast",
    "load_metric",
    "recommend",
    "run_scaling",
]

log = logging.getLogger("cortex_perf.scaling.service")

Mode = Literal["dry-run", "apply"]
OutcomeStatus = Literal["applied", "dry-run", "hold", "skipped", "failed", "planned"]

#: Lake forecast quantile columns → the quantile they hold.
LAKE_QUANTILES: dict[str, float] = {"p10": 0.1, "p50": 0.5, "p90": 0.9, "p99": 0.99}


@dataclass
class TargetOutcome:
    """What one target's tick did: its decision record, the action (if any) and why it stopped."""

    target: str
    status: OutcomeStatus
    decision: dict[str, Any] | None = None
    action: dict[str, Any] | None = None
    error: str | None = None
    replayed: bool = False  # the decision was already recorded for this tick (a re-run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "status": self.status,
            "decision": self.decision,
            "action": self.action,
            "error": self.error,
            "replayed": self.replayed,
        }


@dataclass
class ScalingRun:
    """The result of one tick over all targets."""

    now: datetime
    mode: Mode
    recorded: bool
    outcomes: list[TargetOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def emergencies(self) -> list[TargetOutcome]:
        return [o for o in self.outcomes if o.decision and o.decision.get("emergency")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "mode": self.mode,
            "recorded": self.recorded,
            "targets": [o.to_dict() for o in self.outcomes],
        }

    def markdown(self) -> str:
        """A table a person reads in the Prefect UI: target, from → to, policy, reason, cost."""
        head = f"# Scaling tick {self.now:%Y-%m-%d %H:%M:%S} UTC — mode `{self.mode}`\n\n"
        if not self.outcomes:
            return head + "No scaling targets configured (`scaling.targets`).\n"
        lines = [
            "| target | status | from → to | policy | cost/h | saved/h vs static peak | vs reactive | risk | reason |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for o in self.outcomes:
            d = o.decision or {}
            move = f"{d['from']} → {d['to']}" if d else "—"
            cost = f"{d['expected_cost_per_hour']:.2f}" if d.get("expected_cost_per_hour") is not None else "—"
            risk = f"{d['risk']:.1%}" if d.get("risk") is not None else "—"
            status = o.status + (" (re-run)" if o.replayed else "") + (" ⚠ EMERGENCY" if d.get("emergency") else "")
            reason = md_cell(o.error or d.get("reason", ""))
            vs_static = _money(d.get("saved_per_hour_vs_static"))
            vs_reactive = _money(d.get("saved_per_hour_vs_reactive"))
            lines.append(
                f"| {o.target} | {status} | {move} | {d.get('policy', '—')} | {cost} | {vs_static} | {vs_reactive} "
                f"| {risk} | {reason} |"
            )
        total_static = sum((o.decision or {}).get("saved_per_hour_vs_static") or 0.0 for o in self.outcomes)
        total_reactive = sum((o.decision or {}).get("saved_per_hour_vs_reactive") or 0.0 for o in self.outcomes)
        lines.append(
            f"\n**Saved per hour at these counts:** {total_static:.2f} vs static peak provisioning, "
            f"{total_reactive:.2f} vs the reactive policy (HPA) deciding from the same inputs "
            "(negative: this policy holds more capacity, e.g. ahead of a forecast rise)."
        )
        n_fail = len(self.failed)
        tail = f"\n\n{len(self.outcomes)} target(s), {n_fail} failed, {len(self.emergencies)} emergency decision(s).\n"
        return head + "\n".join(lines) + tail


# ---- money ----------------------------------------------------------------------------------------


def _savings(
    target: Any, d: Any, current: int, history: MetricHistory, forecast: Forecast | None, now: datetime, prev: Any
) -> dict[str, Any]:
    """What this decision costs per hour against static peak provisioning (``max_units`` always on)
    and against the reactive policy (the HPA) deciding at the same tick from the same state — the
    issue's "money saved vs static peak and vs reactive", per decision so the artifact can sum it."""
    unit = float(target.cost_per_unit_hour)
    static = target.rails.max_units * unit
    chosen = d.to_units * unit
    out: dict[str, Any] = {
        "cost_per_hour_static_peak": round(static, 4),
        "saved_per_hour_vs_static": round(static - chosen, 4),
    }
    if target.policy != "reactive":
        reactive = decide(
            target.model_copy(update={"policy": "reactive"}), current, history, forecast, now.timestamp(), prev
        )
        out["reactive_units"] = reactive.to_units
        out["saved_per_hour_vs_reactive"] = round((reactive.to_units - d.to_units) * unit, 4)
    return out


def _money(v: Any) -> str:
    return "—" if v is None else f"{float(v):+.2f}"


# ---- inputs ---------------------------------------------------------------------------------------


def _floor(ts: datetime, step: timedelta) -> datetime:
    s = step.total_seconds()
    return datetime.fromtimestamp(math.floor(ts.timestamp() / s) * s, UTC)


def load_metric(lake: Lake, metric: Any, now: datetime, *, lookback: timedelta | None = None) -> pl.DataFrame:
    """The target's load per complete ``metric.step`` bucket before ``now``: columns ``ts`` (bucket
    end: when the value became known) and ``value`` (``combine`` over the matching series).

    Gaps (a missed collection) are filled forward on the regular grid, since the nowcaster reads
    positions as steps."""
    step = parse_duration(metric.step)
    end = _floor(now, step)
    start = end - (lookback or parse_duration(metric.lookback))
    if metric.agg == "rate":
        df = lake.rate(metric.selector, start, end, step)
    elif metric.agg == "increase":
        df = lake.increase(metric.selector, start, end, step)
    else:
        df = lake.query(metric.selector, start, end, step=step, agg=metric.agg)
    empty = pl.DataFrame(schema={"ts": pl.Datetime("ms", "UTC"), "value": pl.Float64})
    if not df.height:
        return empty
    how = {"sum": pl.col("value").sum(), "avg": pl.col("value").mean(), "max": pl.col("value").max()}[metric.combine]
    agg = (
        df.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        .group_by("ts")
        .agg(how.alias("value"))
        .with_columns((pl.col("ts").dt.cast_time_unit("ms").dt.replace_time_zone("UTC") + step).alias("ts"))
        .sort("ts")
    )
    if not agg.height:
        return empty
    grid = pl.datetime_range(agg["ts"][0], agg["ts"][-1], interval=step, eager=True, time_zone="UTC").dt.cast_time_unit(
        "ms"
    )
    return pl.DataFrame({"ts": grid}).join(agg, on="ts", how="left").with_columns(pl.col("value").forward_fill())


def _lake_forecast(lake: Lake, metric: Any, now: datetime) -> tuple[Forecast | None, str]:
    max_age = parse_duration(metric.forecast_max_age)
    # Through the lake, not ``tasks.forecasting`` (DESIGN: domain packages meet at the lake): the
    # newest issue per series and target time, as ``forecasting.data.latest_forecasts`` answers it.
    rows = lake.newest_forecasts(metric.selector, since=now - max_age, until=now + timedelta(seconds=1))
    if not rows.height:
        return None, "no forecast in the lake"
    # ``step`` in the table is the horizon index; the grid's spacing is read off the target times.
    grid = rows["ts"].unique().sort().to_list()
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(grid)]
    fstep = int(min(gaps)) if gaps else int(parse_duration(metric.step).total_seconds())
    how = {"sum": "sum", "avg": "mean", "max": "max"}[metric.combine]
    per_ts = (
        rows.filter(pl.col("ts") > pl.lit(now) - pl.duration(seconds=fstep))
        .group_by("ts")
        .agg(
            *[getattr(pl.col(c), how)().alias(c) for c in LAKE_QUANTILES],
            pl.col("issued_at").max(),
            pl.col("model").first(),
            pl.col("version").first(),
        )
        .sort("ts")
    )
    if per_ts.height == 0 or fstep <= 0:
        return None, "the lake's forecasts do not reach past now"
    ts = per_ts["ts"].to_list()
    keep = 1
    while keep < len(ts) and (ts[keep] - ts[keep - 1]).total_seconds() == fstep:
        keep += 1  # contiguous steps only: Forecast indexes steps by position
    first = per_ts.row(0, named=True)
    fc = Forecast(
        issued_at=ts[0].timestamp(),
        step_s=float(fstep),
        quantiles={q: per_ts[c][:keep].to_list() for c, q in LAKE_QUANTILES.items()},
        model=f"{first['model']}@{first['version']}",
    )
    return fc, f"lake forecast issued {first['issued_at']:%Y-%m-%d %H:%M} UTC ({first['model']})"


def _nowcast(history: pl.DataFrame, metric: Any, target: Any) -> tuple[Forecast | None, str]:
    step_s = parse_duration(metric.step).total_seconds()
    y = history["value"].to_numpy().astype(float)
    if len(y) < 2 or np.isnan(y).all():
        return None, "too little history for the nowcaster"
    y = np.nan_to_num(y, nan=float(np.nanmean(y)))
    horizon = math.ceil((target.provisioning_delay_s + target.interval_s) / step_s) + 1
    model = Nowcaster()
    first_end = history["ts"][0]
    tod0 = int((first_end.timestamp() - step_s) // 60) % DAY_MIN
    # The daily profile needs whole days of per-minute data; fit it on all but the last day so the
    # error quantiles of that day are out of sample.
    if step_s == 60 and len(y) >= 2 * DAY_MIN:
        model.fit(y[:-DAY_MIN], tod0)
    fc = model.forecast(y, horizon, tod0 if step_s == 60 else 0)
    row = {q: a[-1] for q, a in fc.items()}
    if any(np.isnan(v).any() for v in row.values()):
        return None, f"nowcaster not warmed up ({len(y)} of ~{model.min_errors + horizon} steps of history)"
    issued = history["ts"][-1].timestamp()
    return Forecast(issued, step_s, {q: v.tolist() for q, v in row.items()}, model="nowcast"), "nowcast"


def load_forecast(
    lake: Lake, metric: Any, target: Any, history: pl.DataFrame, now: datetime
) -> tuple[Forecast | None, str]:
    """The forecast the policy gets, and where it came from (said in the record).

    ``auto``: the lake's forecast when the metric is a bucket average (what the forecast flow
    forecasts), it is fresh, and its step is no longer than the policy's ``forecast_max_age_s``
    (else every tick would see it as stale); otherwise the nowcaster."""
    choice = metric.forecast
    if choice == "none":
        return None, "forecasts off (metric.forecast: none)"
    why = ""
    if choice == "lake" or (choice == "auto" and metric.agg == "avg"):
        fc, why = _lake_forecast(lake, metric, now)
        if fc is not None and (choice == "lake" or fc.step_s <= target.forecast_max_age_s):
            return fc, why
        if choice == "lake":
            return None, why
        if fc is not None:
            why = f"lake forecast step {fc.step_s:g}s > forecast_max_age_s {target.forecast_max_age_s:g}s"
    fc, how = _nowcast(history, metric, target)
    return fc, (f"{how} ({why})" if why else how)


# ---- the tick -------------------------------------------------------------------------------------


def _event_payload(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in record.items()}


def _samples(lake: Lake, target: str, record: Mapping[str, Any], emergency: bool, now: datetime) -> None:
    """Decisions as series too, so alert rules route them like any other alert (e.g.
    ``max_over_time(cortex_perf_scaling_emergency[5m]) > 0`` → the pager through Apprise) and
    reports can plot the counts: ``cortex_perf_scaling_units`` (the decided count) and
    ``cortex_perf_scaling_emergency`` (1 for an emergency decision, else 0)."""
    labels = {"target": target}
    lake.write_samples(
        [
            Sample("cortex_perf_scaling_units", float(record["to"]), now, labels),
            Sample("cortex_perf_scaling_emergency", 1.0 if emergency else 0.0, now, labels),
        ]
    )


def _fail_current(lake: Lake, target: str, actuator: str, error: str, now: datetime, record: bool) -> TargetOutcome:
    if record:
        emit(
            lake,
            "action.failed",
            f"scaling.{target}",
            {"stage": "current", "actuator": actuator, "target": target, "error": error},
            ts=now,
        )
    return TargetOutcome(target, "failed", error=f"reading the current count failed: {error}")


def _one(
    lake: Lake,
    t: Any,
    actuator: Actuator[ScaleAction, int],
    records: ScalingRecords,
    now: datetime,
    mode: Mode,
    record: bool,
) -> TargetOutcome:
    did = decision_id(t.name, now, mode)
    stored = records.get_decision(did) if record else None
    if stored is not None:
        rec = stored.to_dict()
        replayed = True
    else:
        replayed = False
        try:
            current = actuator.current(t.name)
        except Exception as exc:  # every actuator failure is recorded, never fatal to the others
            return _fail_current(lake, t.name, actuator.name, f"{type(exc).__name__}: {exc}", now, record)
        hist = load_metric(lake, t.metric, now)
        step_s = parse_duration(t.metric.step).total_seconds()
        stale = bool(hist.height) and (now - hist["ts"][-1]).total_seconds() > 3 * step_s
        points = hist if not stale else hist.clear()
        history = MetricHistory(
            tuple(x.timestamp() for x in points["ts"].to_list()), tuple(float(v) for v in points["value"].to_list())
        )
        forecast, source = load_forecast(lake, t.metric, t, points, now)
        prev = records.load_state(t.name, now)  # read only: a plan starts where a real tick would
        target = t.policy_target()
        d = decide(target, current, history, forecast, now.timestamp(), prev)
        rec = {
            **d.as_record(),
            **_savings(target, d, current, history, forecast, now, prev),
            "id": did,
            "tick": now.isoformat(),
            "mode": mode,
            "kind": t.kind,
            "actuator": actuator.name,
            "load": history.values[-1] if history.values else None,
            "history_points": len(history.values),
            "history_stale": stale,
            "forecast_source": source,
        }
        if record:
            emit(lake, "scaling.triggered", f"scaling.{t.name}", _event_payload(rec), ts=now)
            records.commit(did, rec, now, d.state)
            _samples(lake, t.name, rec, d.emergency, now)
    if not record:
        return TargetOutcome(t.name, "planned", decision=rec)
    to, frm = int(rec["to"]), int(rec["from"])
    if to == frm:
        return TargetOutcome(t.name, "hold", decision=rec, replayed=replayed)
    dec = ScaleAction(
        id=did,
        target=t.name,
        to=to,
        **{"from": frm},
        kind=str(rec.get("kind", "replicas")),
        reason=str(rec.get("reason", ""))[:2000],
        policy=str(rec.get("policy", "")),
        mode=mode,
    )
    result = actuator.apply(dec, dry_run=mode != "apply")
    record_result(lake, result)
    return TargetOutcome(
        t.name, result.status, decision=rec, action=result.to_dict(), error=result.error, replayed=replayed
    )


def run_scaling(
    settings: Settings,
    lake: Lake,
    now: datetime | None = None,
    *,
    mode: Mode | None = None,
    targets: Iterable[str] | None = None,
    record: bool = True,
    actuator_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> ScalingRun:
    """One tick over ``settings.scaling.targets`` (or the named ``targets``) at ``now``.

    ``mode`` defaults to ``settings.scaling.mode`` (``dry-run`` unless configured). ``record=False``
    only decides (``scale plan``). ``actuator_kwargs`` maps a target name to extra constructor
    arguments of its actuator (injected clients, as in tests). Unknown target names are a
    ``LookupError`` naming the known ones."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    mode = mode or settings.scaling.mode
    if mode not in ("dry-run", "apply"):
        raise ValueError(f"mode: must be 'dry-run' or 'apply', got {mode!r}")
    chosen = [settings.scaling.target(n) for n in targets] if targets else list(settings.scaling.targets)
    ledger = ActionLedger.from_settings(settings)
    records = ScalingRecords.from_settings(settings)
    run = ScalingRun(now=now, mode=mode, recorded=record)
    for i, t in enumerate(chosen):
        extra = dict((actuator_kwargs or {}).get(t.name, {}))
        try:
            actuator = build_actuator(t.actuator, ledger=ledger, origin=f"scaling.targets[{i}].actuator", **extra)
        except Exception as exc:
            run.outcomes.append(TargetOutcome(t.name, "failed", error=f"building the actuator failed: {exc}"))
            continue
        try:
            with actuator:
                run.outcomes.append(_one(lake, t, actuator, records, now, mode, record))
        except Exception as exc:  # a broken target (lake, state DB) must not stop the others
            log.exception("scaling %s failed", t.name)
            run.outcomes.append(TargetOutcome(t.name, "failed", error=f"{type(exc).__name__}: {exc}"))
    return run


# ---- recommendations ------------------------------------------------------------------------------


def recommend(
    settings: Settings,
    lake: Lake,
    now: datetime | None = None,
    *,
    lookback: timedelta = timedelta(days=1),
    horizon: timedelta = timedelta(hours=6),
) -> list[dict[str, Any]]:
    """Right-sizing advice per target, with the numbers behind it (``cortex-perf scale recommend``).

    Deliberately simple and honest: from the load over ``lookback`` it computes the units needed
    per bucket, ``ceil(load / (capacity × target_utilisation))``, and reports

    * ``idle``: ``min_units`` is above what the load needed most of the time (unit-hours and money
      that the floor alone costs per day);
    * ``night``: hours of the day whose busiest bucket still needed fewer than ``min_units`` (a
      lower floor for those hours, and what it saves per day);
    * ``saturated``: buckets that needed more than ``max_units`` (the SLO was missed there);
    * ``slo_risk``: the forecast flow's p90 for the next ``horizon`` needs more than ``max_units``;
    * ``ok`` when none applies, ``no_data`` when the lake has no load for the target.

    It sees the load, not the counts the target actually ran at, so "idle" means "the floor
    was higher than needed", not "the units were unused"."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    out: list[dict[str, Any]] = []
    for t in settings.scaling.targets:
        per_unit = t.capacity_per_unit * t.target_utilisation
        lo, hi, cost = t.rails.min_units, t.rails.max_units, t.cost_per_unit_hour
        base = {"target": t.name, "min_units": lo, "max_units": hi}
        hist = load_metric(lake, t.metric, now, lookback=lookback)
        if not hist.height:
            out.append({**base, "kind": "no_data", "message": f"no load in the lake over the last {lookback}"})
            continue
        step_h = parse_duration(t.metric.step).total_seconds() / 3600
        load = hist["value"].to_numpy().astype(float)
        need = np.ceil(np.maximum(load, 0) / per_unit - 1e-9).astype(int)
        hours = np.array([(ts - timedelta(hours=step_h)).hour for ts in hist["ts"].to_list()])
        found: list[dict[str, Any]] = []
        idle_share = float((need < lo).mean())
        if idle_share >= 0.5:
            p95 = int(np.percentile(need, 95))
            spare = float(np.maximum(lo - need, 0).sum() * step_h)
            per_day = spare * (24 / (len(need) * step_h))
            found.append({**base, "kind": "idle", "idle_share": round(idle_share, 3), "p95_needed": p95,
                          "spare_unit_hours_per_day": round(per_day, 2), "cost_per_day": round(per_day * cost, 2),
                          "message": f"min_units {lo} is above the need {idle_share:.0%} of the time (p95 needs "
                                     f"{p95}): the floor costs {per_day:.1f} unit-hours ≈ {per_day * cost:.2f}/day; "
                                     f"min_units {max(p95, 0)} would do"})  # fmt: skip
        night = sorted({int(h) for h in set(hours.tolist()) if need[hours == h].max() < lo})
        if night and len(night) < 24:
            floor = {h: int(need[hours == h].max()) for h in night}
            saving = sum(lo - v for v in floor.values())
            found.append({**base, "kind": "night", "hours": night, "needed_max": floor,
                          "unit_hours_saved_per_day": saving, "saved_per_day": round(saving * cost, 2),
                          "message": f"in hours {_hour_ranges(night)} UTC the load never needed {lo} units "
                                     f"(at most {max(floor.values())}): a lower min there saves {saving} "
                                     f"unit-hours ≈ {saving * cost:.2f}/day"})  # fmt: skip
        over = need > hi
        if over.any():
            short = float(np.maximum(need - hi, 0).sum() * step_h)
            found.append({**base, "kind": "saturated", "saturated_share": round(float(over.mean()), 4),
                          "peak_needed": int(need.max()), "short_unit_hours": round(short, 2),
                          "message": f"{over.mean():.1%} of the time the load needed more than max_units {hi} "
                                     f"(peak {int(need.max())}): raise max_units or expect SLO misses"})  # fmt: skip
        risk = _forecast_risk(lake, t, now, horizon, per_unit)
        if risk is not None:
            found.append({**base, **risk})
        ok = f"needs {int(need.min())}–{int(need.max())} units within [{lo}, {hi}] over the last {lookback}"
        out.extend(found or [{**base, "kind": "ok", "message": ok}])
    return out


def _hour_ranges(hours: list[int]) -> str:
    """[0, 1, 2, 5] → '00–03, 05–06'."""
    spans: list[tuple[int, int]] = []
    for h in hours:
        if spans and spans[-1][1] == h:
            spans[-1] = (spans[-1][0], h + 1)
        else:
            spans.append((h, h + 1))
    return ", ".join(f"{a:02d}–{b:02d}" for a, b in spans)


def _forecast_risk(lake: Lake, t: Any, now: datetime, horizon: timedelta, per_unit: float) -> dict[str, Any] | None:
    rows = lake.newest_forecasts(t.metric.selector, since=now - parse_duration(t.metric.forecast_max_age),
                                 until=now + timedelta(seconds=1))  # fmt: skip
    rows = rows.filter((pl.col("ts") >= now) & (pl.col("ts") < now + horizon)) if rows.height else rows
    if not rows.height:
        return None
    how = {"sum": "sum", "avg": "mean", "max": "max"}[t.metric.combine]
    p90 = rows.group_by("ts").agg(getattr(pl.col("p90"), how)().alias("p90")).sort("ts")
    peak = p90.row(int(p90["p90"].arg_max() or 0), named=True)
    need = math.ceil(peak["p90"] / per_unit - 1e-9)
    if need <= t.rails.max_units:
        return None
    return {"kind": "slo_risk", "at": peak["ts"].isoformat(), "p90_load": round(float(peak["p90"]), 3),
            "needed": need, "message": f"forecast p90 load {peak['p90']:.4g} at {peak['ts']:%H:%M} UTC needs "
                                       f"{need} units > max_units {t.rails.max_units}: SLO at risk"}  # fmt: skip
