"""Ranked, plain-language findings over a time range, each with the numbers behind it.

Why hourly rollups: a person asks "what changed this week", not "what happened this minute";
hourly averages come from the lake's ``rollup_1h`` (cheap at any lake size) and smooth away the
minute-level noise that would make every series look like it "changed". Minute-level incidents
are the anomaly detector's and the alert engine's job; here they show up only when they last.

A short latency or error spike (an hour far above the series' typical hour) is reported as a
regression too, dated to its hour; a sustained one is the trend finder's.

Scores are in [0, 1] for every kind, so one ranking mixes kinds: a strong latency regression
outranks a mild idle GPU. Each detector maps its own statistic (a t-statistic, a fraction of
time saturated, a count of firings) to [0, 1] with a saturating curve documented beside it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from tasks.analytics.alerts import alert_episodes
from tasks.analytics.common import (
    ALL_SERIES,
    RATIO_SELECTOR,
    bucketed,
    check_range,
    finite,
    is_error,
    is_latency,
    ratio_expr,
)
from tasks.lake import Lake

__all__ = ["Finding", "change_point", "insights"]

HOUR = timedelta(hours=1)
#: A ratio series at or above this is "near its limit".
SATURATION_LEVEL = 0.9
#: A ratio series whose hourly max reaches this touched its limit.
HIT_LEVEL = 0.98
#: A ratio series at or below this is "idle".
IDLE_LEVEL = 0.05
#: Fewest hourly points a series needs before its trend is judged.
MIN_POINTS = 6
#: A latency/error hour counts as a spike at this many robust deviations above the series' typical
#: hour, and at least ``SPIKE_MIN_RISE`` (relative) above it: both, so a flat series' tiny wobble is not one.
SPIKE_Z = 10.0
SPIKE_MIN_RISE = 0.5
#: A spike lasts at most this many hours in a row; a longer rise is a level change (``_trend_findings``).
SPIKE_MAX_HOURS = 3


@dataclass(slots=True)
class Finding:
    """One insight: what kind, about which series, how strong, in a sentence, and the numbers."""

    #: latency_regression, error_regression, trend_change, saturation, idle, noisy_alert,
    #: flapping_alert or forecast_drift
    kind: str
    series: str
    score: float
    headline: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "series": self.series,
            "score": round(self.score, 4),
            "headline": self.headline,
            "numbers": self.numbers,
        }


def _squash(x: float, half: float) -> float:
    """Map a non-negative statistic to [0, 1): ``half`` maps to 0.5."""
    return 0.0 if x <= 0 or not math.isfinite(x) else x / (x + half)


def change_point(values: np.ndarray) -> tuple[int, float] | None:
    """The single mean shift that best splits ``values``: (index of the first point after it, t).

    Why a single split by Welch's t rather than a full segmentation: over a report's range the
    question is "did the level move, and since when"; a best split with its t-statistic answers
    it in O(n) with cumulative sums, and a short spike scores low because one side is tiny.
    """
    n = len(values)
    if n < MIN_POINTS:
        return None
    c1 = np.cumsum(values)
    c2 = np.cumsum(values**2)
    best: tuple[int, float] | None = None
    for k in range(3, n - 2):  # at least 3 points on each side
        n1, n2 = k, n - k
        m1, m2 = c1[k - 1] / n1, (c1[-1] - c1[k - 1]) / n2
        v1 = max(c2[k - 1] / n1 - m1 * m1, 0.0)
        v2 = max((c2[-1] - c2[k - 1]) / n2 - m2 * m2, 0.0)
        se = math.sqrt(v1 / n1 + v2 / n2)
        floor = 1e-3 * (abs(m1) + abs(m2)) / 2 + 1e-12  # flat series: a relative floor on the noise
        t = (m2 - m1) / max(se, floor)
        if best is None or abs(t) > abs(best[1]):
            best = (k, t)
    return best


def _deseasonalised(part: pl.DataFrame) -> np.ndarray:
    """Hourly values minus their hour-of-day median (plus the overall median), when 3+ days exist.

    Why: without it the daily cycle is the biggest "change point" of every traffic series. A
    median over the days (not a mean) keeps a shift that happened on one of them out of the
    profile, so a regression in the last day still stands out against it.
    """
    v = part.get_column("value").to_numpy().astype(np.float64)
    ts = part.get_column("ts")
    if (ts.max() - ts.min()) < timedelta(days=2, hours=23):  # type: ignore[operator]
        return v
    hod = ts.dt.hour().to_numpy()
    level = float(np.median(v))
    profile = {h: float(np.median(v[hod == h])) for h in np.unique(hod)}
    return np.array([x - profile[h] + level for x, h in zip(v, hod, strict=True)])


def _trend_findings(hourly: pl.DataFrame, end: datetime) -> list[Finding]:
    out: list[Finding] = []
    for (series, metric), part in hourly.group_by("series", "metric", maintain_order=True):
        ts = part.get_column("ts").to_list()
        v = _deseasonalised(part)
        cp = change_point(v)
        if cp is None:
            continue
        k, t = cp
        before, after = float(v[:k].mean()), float(v[k:].mean())  # deseasonalised levels
        rel = (after - before) / abs(before) if before else math.inf
        if abs(rel) < 0.2 or abs(t) < 4:
            continue  # a shift under 20 % or within the noise is not worth a sentence
        numbers: dict[str, Any] = {
            "changed_at": ts[k].isoformat(),
            "before_mean": finite(before),
            "after_mean": finite(after),
            "change_pct": finite(rel * 100, 1),
            "t_stat": finite(t, 2),
            "hours_after": len(v) - k,
        }
        # Day over day and week over week on the last 24 hours, where the history reaches.
        last = part.filter(pl.col("ts") >= end - timedelta(hours=24))
        for label, lag in (("day_over_day_pct", timedelta(days=1)), ("week_over_week_pct", timedelta(days=7))):
            prev = part.filter((pl.col("ts") >= end - timedelta(hours=24) - lag) & (pl.col("ts") < end - lag))
            if last.height and prev.height:
                pm, lm = prev.get_column("value").mean(), last.get_column("value").mean()
                if isinstance(pm, float) and isinstance(lm, float) and pm:
                    numbers[label] = finite((lm - pm) / abs(pm) * 100, 1)
        score = _squash(abs(t), 10.0) * min(1.0, abs(rel)) ** 0.25
        direction = "up" if after > before else "down"
        if is_latency(str(metric)) and after > before:
            kind, what = "latency_regression", "latency regressed"
        elif is_error(str(metric)) and after > before:
            kind, what = "error_regression", "errors rose"
        else:
            kind, what = "trend_change", f"level moved {direction}"
        headline = (
            f"{series}: {what} {abs(rel) * 100:.0f}% since {ts[k]:%a %H:%M} UTC ({before:.4g} → {after:.4g}, t={t:.1f})"
        )
        out.append(Finding(kind, str(series), score, headline, numbers))
    return out


def _spike_findings(hourly: pl.DataFrame, hourly_max: pl.DataFrame) -> list[Finding]:
    """Short latency/error spikes: an hour far above the series' typical hour, for a few hours at most.

    Why beside ``_trend_findings``: a single mean shift over the range calls a 20-minute incident
    "noise" (one side of the split is tiny), yet a p95 that jumped eightfold is exactly what a person
    asks insights for. Typical level and spread are the median and MAD of the (deseasonalised)
    hourly averages, robust to the spike itself; the peak reported is the hour's max.
    """
    out: list[Finding] = []
    peaks = {(s, t): v for s, t, v in hourly_max.select("series", "ts", "value").iter_rows()}
    for (series, metric), part in hourly.group_by("series", "metric", maintain_order=True):
        name = str(metric)
        latency = is_latency(name)
        if not (latency or is_error(name)) or part.height < MIN_POINTS:
            continue
        part = part.sort("ts")
        v = _deseasonalised(part)
        typical = float(np.median(v))
        spread = 1.4826 * float(np.median(np.abs(v - typical)))
        if typical <= 0:
            continue
        z = (v - typical) / max(spread, 1e-3 * typical)
        high = (z >= SPIKE_Z) & (v >= typical * (1 + SPIKE_MIN_RISE))
        if not high.any():
            continue
        i = int(np.argmax(np.where(high, z, -np.inf)))
        lo, hi = i, i
        while lo > 0 and high[lo - 1]:
            lo -= 1
        while hi + 1 < len(v) and high[hi + 1]:
            hi += 1
        hours = hi - lo + 1
        if hours > SPIKE_MAX_HOURS:
            continue  # a sustained rise: the trend finder's
        ts = part.get_column("ts").to_list()
        peak = float(peaks.get((series, ts[i]), part.get_column("value")[i]))
        times = peak / typical
        numbers: dict[str, Any] = {
            "spike_at": ts[lo].isoformat(),
            "hours": hours,
            "typical": finite(typical),
            "hourly_avg": finite(float(part.get_column("value")[i])),
            "peak": finite(peak),
            "times_typical": finite(times, 1),
            "robust_z": finite(float(z[i]), 1),
        }
        kind, what = ("latency_regression", "latency spiked") if latency else ("error_regression", "errors spiked")
        span = "in the hour" if hours == 1 else f"for {hours} h"
        headline = (
            f"{series}: {what} to {times:.1f}× its typical level ({typical:.4g} → {peak:.4g}) "
            f"{span} from {ts[lo]:%a %H:%M} UTC"
        )
        # ranked below a sustained regression of the same strength: a spike that is over matters less
        score = 0.6 * _squash(float(z[i]), SPIKE_Z) * min(1.0, times - 1) ** 0.25
        out.append(Finding(kind, str(series), score, headline, numbers))
    return out


def _saturation_findings(
    lake: Lake, hourly: pl.DataFrame, hourly_max: pl.DataFrame, start: datetime, end: datetime
) -> list[Finding]:
    out: list[Finding] = []
    ratios = hourly_max.filter(ratio_expr())
    fc_hit = _forecast_crossings(lake, start, end)
    avg = hourly.filter(ratio_expr()).select("series", "ts", pl.col("value").alias("avg"))
    ratios = ratios.join(avg, on=["series", "ts"], how="left")
    for (series,), part in ratios.group_by("series", maintain_order=True):
        mx = part.get_column("value").to_numpy()
        av = part.get_column("avg").fill_null(0.0).to_numpy()
        sustained = int((av >= SATURATION_LEVEL).sum())  # hours whose *average* was near the limit
        touched = int((mx >= HIT_LEVEL).sum())  # hours that touched the limit at least once
        hit = fc_hit.get(str(series))
        if not sustained and not touched and hit is None:
            continue
        numbers: dict[str, Any] = {
            "hours_sustained": sustained,
            "hours_touched_limit": touched,
            "hours": len(mx),
            "max": finite(mx.max()),
            "max_hourly_avg": finite(av.max()),
            "limit": 1.0,
        }
        parts = []
        if sustained:
            parts.append(f"averaged ≥ {SATURATION_LEVEL:.0%} of its limit for {sustained} h")
        if touched:
            parts.append(f"touched ≥ {HIT_LEVEL:.0%} in {touched} h")
        score = 0.0
        if sustained:
            score = 0.4 + 0.6 * min(1.0, sustained / len(mx) * 4)
        elif touched:
            score = 0.2 + 0.3 * min(1.0, touched / len(mx) * 4)
        if hit is not None:
            numbers["forecast_hits_limit_at"] = hit[0].isoformat()
            numbers["forecast_p50_at_hit"] = finite(hit[1])
            parts.append(f"the forecast reaches {SATURATION_LEVEL:.0%} at {hit[0]:%a %H:%M} UTC")
            score = max(score, 0.6)
        headline = f"{series}: " + "; ".join(parts)
        out.append(Finding("saturation", str(series), score, headline, numbers))
    # Idle: a utilisation series near zero for a run of hours (a job died, a box was forgotten).
    means = hourly.filter(ratio_expr())
    for (series,), part in means.group_by("series", maintain_order=True):
        v = part.get_column("value").to_numpy()
        idle = v <= IDLE_LEVEL
        run = best = 0
        for x in idle:
            run = run + 1 if x else 0
            best = max(best, run)
        if best < 2:
            continue
        overall = float(v.mean())
        busy = float(v[~idle].mean()) if (~idle).any() else 0.0
        numbers = {
            "longest_idle_hours": best,
            "idle_hours": int(idle.sum()),
            "mean": finite(overall),
            "busy_mean": finite(busy),
        }
        headline = (
            f"{series}: idle (≤ {IDLE_LEVEL:.0%}) for {best} h in a row, {int(idle.sum())} h in total "
            f"(mean {overall:.0%} overall, {busy:.0%} when busy)"
        )
        out.append(
            Finding("idle", str(series), _squash(best, 3.0) * (0.5 + 0.5 * idle.mean() ** 0.5), headline, numbers)
        )
    return out


def _forecast_crossings(lake: Lake, start: datetime, end: datetime) -> dict[str, tuple[datetime, float]]:
    """First target time after ``end`` where a ratio series' newest p50 forecast crosses the level."""
    # newest issue per target chosen in DuckDB, ratio series and future targets only, no label text
    rows = lake.newest_forecasts(
        RATIO_SELECTOR, since=start, until=end + timedelta(minutes=1), targets=(end + timedelta(milliseconds=1), None)
    )
    if not rows.height:
        return {}
    cat = lake.catalogue().select("series_id", "series")
    rows = (
        rows.filter(pl.col("p50") >= SATURATION_LEVEL)
        .sort("ts")
        .unique("series_id", keep="first")
        .join(cat, on="series_id")
    )
    return {s: (t, p) for s, t, p in rows.select("series", "ts", "p50").iter_rows()}


def _alert_findings(lake: Lake, start: datetime, end: datetime) -> list[Finding]:
    eps = alert_episodes(lake, start, end)
    if not eps:
        return []
    out: list[Finding] = []
    by_rule = Counter(e.alertname for e in eps)
    total = sum(by_rule.values())
    for name, n in by_rule.most_common(5):
        mine = [e for e in eps if e.alertname == name]
        mean_s = sum(e.duration_s(end) for e in mine) / len(mine)
        numbers: dict[str, Any] = {
            "firings": n,
            "share_pct": finite(n / total * 100, 1),
            "instances": len({e.resource for e in mine}),
            "mean_duration_s": finite(mean_s, 1),
        }
        headline = f"alert {name} fired {n} times ({n / total:.0%} of all firings), mean {mean_s / 60:.1f} min each"
        out.append(Finding("noisy_alert", name, _squash(n, 10.0), headline, numbers))
    # Flapping: one instance that fired and resolved again and again, each time briefly.
    per_instance: dict[str, list[Any]] = {}
    for e in eps:
        per_instance.setdefault(e.resource, []).append(e)
    for mine in per_instance.values():
        short = [e for e in mine if e.ended is not None and e.duration_s(end) < 900]
        if len(mine) < 3 or len(short) < 2:
            continue
        numbers = {"firings": len(mine), "short_firings": len(short), "labels": mine[0].labels}
        headline = (
            f"alert {mine[0].alertname} {mine[0].labels} flapped: {len(mine)} firings, {len(short)} shorter than 15 min"
        )
        out.append(Finding("flapping_alert", mine[0].alertname, _squash(len(short), 4.0), headline, numbers))
    return out


def _forecast_drift(lake: Lake, hourly: pl.DataFrame, start: datetime, end: datetime) -> list[Finding]:
    """Forecast error (p50 vs the hourly actual) in the second half of the range vs the first."""
    # targets before ``start - 1h`` cannot fall into an hourly bucket of the window: not read
    rows = lake.newest_forecasts(ALL_SERIES, since=start - timedelta(days=1), until=end, targets=(start - HOUR, end))
    if not rows.height or not hourly.height:
        return []
    cat = lake.catalogue().select("series_id", "series")
    fc = (
        rows.join(cat, on="series_id")
        .with_columns(pl.col("ts").dt.truncate("1h"))
        .group_by("series", "ts")
        .agg(pl.col("p50").mean())
    )
    joined = fc.join(hourly.select("series", "ts", "value"), on=["series", "ts"])
    mid = start + (end - start) / 2
    out: list[Finding] = []
    for (series,), part in joined.group_by("series"):
        scale = float(part.get_column("value").abs().mean() or 0.0) or 1.0
        err = (part.get_column("p50") - part.get_column("value")).abs() / scale
        first = err.filter(part.get_column("ts") < mid)
        second = err.filter(part.get_column("ts") >= mid)
        if first.len() < 3 or second.len() < 3:
            continue
        e1, e2 = float(first.mean() or 0.0), float(second.mean() or 0.0)
        if e2 <= max(1.5 * e1, 0.05):
            continue
        numbers = {"error_first_half": finite(e1, 4), "error_second_half": finite(e2, 4), "points": part.height}
        headline = f"{series}: forecast error grew from {e1:.1%} to {e2:.1%} of the mean level"
        out.append(Finding("forecast_drift", str(series), _squash(e2 / max(e1, 1e-3), 3.0), headline, numbers))
    return out


def insights(
    lake: Lake,
    start: datetime,
    end: datetime,
    *,
    selectors: Sequence[str] | None = None,
    limit: int = 20,
) -> list[Finding]:
    """Findings over [start, end), highest score first (at most ``limit``).

    ``selectors`` narrows the series looked at (default: every series); alert findings always
    cover every alert. An empty lake gives an empty list.
    """
    start, end = check_range(start, end)
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: must be a positive integer, got {limit!r}")
    hourly = bucketed(lake, selectors, start, end, HOUR, "avg")
    hourly_max = bucketed(lake, selectors, start, end, HOUR, "max") if hourly.height else hourly
    found: list[Finding] = []
    if hourly.height:
        found += _trend_findings(hourly, end)
        found += _spike_findings(hourly, hourly_max)
        found += _saturation_findings(lake, hourly, hourly_max, start, end)
        found += _forecast_drift(lake, hourly, start, end)
    found += _alert_findings(lake, start, end)
    found.sort(key=lambda f: (-f.score, f.kind, f.series))
    return found[:limit]
