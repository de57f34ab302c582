"""Alert episodes: ``alert.firing``/``alert.resolved`` events paired into firings with durations,
and the alert-review numbers over them (volume per rule, MTTR, MTTA, flapping).

Why one pairing (``pair_firings``) under both readers: the insights' noisy/flapping findings
(``alert_episodes``) and the report notebooks' tables (``alert_events`` → ``alert_durations``)
must count the same alert the same way; they used to pair the events with two loops of their own.
A repeated ``firing`` without a ``resolved`` in between (a restart, a caught-up tick) continues the
open episode instead of starting a new one; an episode still open at the end has no end.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from tasks.alerting.notify.acks import AckStore
from tasks.lake import Lake
from tasks.state import State

__all__ = [
    "AlertEpisode",
    "acks_from_state",
    "alert_durations",
    "alert_episodes",
    "alert_events",
    "alert_review",
    "durations_mean",
    "pair_firings",
]

T = TypeVar("T")


def pair_firings(
    transitions: Iterable[tuple[bool, Hashable, datetime, T]],
) -> list[tuple[T, datetime, datetime | None]]:
    """``(firing?, alert key, ts, info)`` in time order → ``(info of the first firing, fired,
    resolved or None)`` per episode: resolved episodes in the order they ended, then the open ones
    in the order they started. A resolve with no open episode (it fired before the window) is dropped.
    """
    open_: dict[Hashable, tuple[T, datetime]] = {}
    done: list[tuple[T, datetime, datetime | None]] = []
    for firing, key, ts, info in transitions:
        if firing:
            if key not in open_:  # a repeated firing without a resolve is the same episode
                open_[key] = (info, ts)
        elif key in open_:
            first, fired = open_.pop(key)
            done.append((first, fired, ts))
    done.extend((info, fired, None) for info, fired in open_.values())
    return done


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    """One firing of one alert instance, from its ``alert.firing`` to its ``alert.resolved`` event."""

    resource: str
    alertname: str
    rule: str
    labels: dict[str, str]
    started: datetime
    ended: datetime | None  # None: still firing at the end of the range

    def duration_s(self, until: datetime) -> float:
        return ((self.ended or until) - self.started).total_seconds()

    def to_dict(self, until: datetime) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "rule": self.rule,
            "labels": self.labels,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "duration_s": round(self.duration_s(until), 3),
        }


def alert_episodes(lake: Lake, start: datetime, end: datetime) -> list[AlertEpisode]:
    """Episodes per alert instance (the event's resource) in [start, end), with labels and rule.

    Why from events: they are the durable record (alert state in the state DB only keeps the
    current instance).
    """
    ev = lake.events(since=start, until=end)
    ev = ev.filter(pl.col("name").is_in(["alert.firing", "alert.resolved"]) & (pl.col("ts") < end))

    def transitions() -> Iterable[tuple[bool, str, datetime, tuple[str, str, str, dict[str, str]]]]:
        for name, resource, ts, payload in ev.select("name", "resource", "ts", "payload").iter_rows():
            try:
                p = json.loads(payload)
            except ValueError:
                p = {}
            labels = {str(k): str(v) for k, v in (p.get("labels") or {}).items()}
            alertname = labels.get("alertname", str(p.get("rule", resource)))
            yield name == "alert.firing", resource, ts, (resource, alertname, str(p.get("rule", "")), labels)

    eps = [AlertEpisode(*info, fired, resolved) for info, fired, resolved in pair_firings(transitions())]
    return sorted(eps, key=lambda e: (e.started, e.resource))


def alert_events(lake: Lake, start: datetime, end: datetime) -> pl.DataFrame:
    """``alert.firing`` / ``alert.resolved`` events as rows: ts, state, alertname, severity, fingerprint, rule."""
    schema: dict[str, Any] = {
        "ts": pl.Datetime("ms", "UTC"),
        "state": pl.String,
        "alertname": pl.String,
        "severity": pl.String,
        "fingerprint": pl.String,
        "rule": pl.String,
    }
    rows = []
    for name, state in (("alert.firing", "firing"), ("alert.resolved", "resolved")):
        ev = lake.events(since=start, until=end, name=name)
        for ts, resource, payload in ev.select("ts", "resource", "payload").iter_rows():
            p = json.loads(payload or "{}")
            labels = p.get("labels") or {}
            rows.append(
                {
                    "ts": ts,
                    "state": state,
                    "alertname": str(labels.get("alertname", "?")),
                    "severity": str(labels.get("severity", "")),
                    "fingerprint": resource.removeprefix("cortex.alert."),
                    "rule": str(p.get("rule", "")),
                }
            )
    return pl.DataFrame(rows, schema=schema).sort("ts", "fingerprint")


def alert_durations(events: pl.DataFrame) -> pl.DataFrame:
    """Pair each firing with the next resolve of the same alert: alertname, fingerprint, fired, resolved,
    duration_s (null while still firing at the end of the window)."""
    transitions = (
        (r["state"] == "firing", r["fingerprint"], r["ts"], (r["alertname"], r["fingerprint"]))
        for r in events.sort("ts").iter_rows(named=True)
    )
    out = [
        {
            "alertname": name,
            "fingerprint": fp,
            "fired": fired,
            "resolved": resolved,
            "duration_s": None if resolved is None else (resolved - fired).total_seconds(),
        }
        for (name, fp), fired, resolved in pair_firings(transitions)
    ]
    schema: dict[str, Any] = {
        "alertname": pl.String,
        "fingerprint": pl.String,
        "fired": pl.Datetime("ms", "UTC"),
        "resolved": pl.Datetime("ms", "UTC"),
        "duration_s": pl.Float64,
    }
    return pl.DataFrame(out, schema=schema).sort("fired")


def durations_mean(durations: pl.DataFrame) -> float | None:
    """Mean firing→resolved seconds of the resolved episodes (None when none resolved)."""
    vals = durations.get_column("duration_s").drop_nulls()
    return float(vals.mean()) if vals.len() else None  # type: ignore[arg-type]


def alert_review(
    events: pl.DataFrame, acks: Mapping[str, datetime] | None = None, flapping_min: int = 3
) -> pl.DataFrame:
    """Per rule (alertname): firings, resolves, distinct alerts, mean/max duration, MTTR, MTTA, flapping.

    MTTR is the mean firing→resolved duration; MTTA the mean time from an episode's firing to the
    acknowledgement of that alert (``acks``: fingerprint → acked_at, from the state DB) when one
    came during the episode. ``flapping`` is true when one alert fired ``flapping_min`` times or more.
    Sorted noisiest first (most firings).
    """
    durations = alert_durations(events)
    schema: dict[str, Any] = {
        "alertname": pl.String,
        "firings": pl.UInt32,
        "resolves": pl.UInt32,
        "alerts": pl.UInt32,
        "mttr_s": pl.Float64,
        "max_duration_s": pl.Float64,
        "mtta_s": pl.Float64,
        "max_firings_per_alert": pl.UInt32,
        "flapping": pl.Boolean,
    }
    if not events.height:
        return pl.DataFrame(schema=schema)
    acks = acks or {}
    tta: dict[str, list[float]] = {}
    for r in durations.iter_rows(named=True):
        at = acks.get(r["fingerprint"])
        if at is not None and at >= r["fired"] and (r["resolved"] is None or at <= r["resolved"]):
            tta.setdefault(r["alertname"], []).append((at - r["fired"]).total_seconds())
    counts = events.group_by("alertname").agg(
        (pl.col("state") == "firing").sum().cast(pl.UInt32).alias("firings"),
        (pl.col("state") == "resolved").sum().cast(pl.UInt32).alias("resolves"),
        pl.col("fingerprint").n_unique().cast(pl.UInt32).alias("alerts"),
    )
    per_alert = (
        events.filter(pl.col("state") == "firing")
        .group_by("alertname", "fingerprint")
        .len()
        .group_by("alertname")
        .agg(pl.col("len").max().cast(pl.UInt32).alias("max_firings_per_alert"))
    )
    dur = durations.group_by("alertname").agg(
        pl.col("duration_s").mean().alias("mttr_s"), pl.col("duration_s").max().alias("max_duration_s")
    )
    mtta = pl.DataFrame(
        {"alertname": list(tta), "mtta_s": [sum(v) / len(v) for v in tta.values()]},
        schema={"alertname": pl.String, "mtta_s": pl.Float64},
    )
    out = (
        counts.join(dur, on="alertname", how="left")
        .join(mtta, on="alertname", how="left")
        .join(per_alert, on="alertname", how="left")
        .with_columns(pl.col("max_firings_per_alert").fill_null(0))
        .with_columns((pl.col("max_firings_per_alert") >= flapping_min).alias("flapping"))
    )
    return out.select(list(schema)).sort("firings", "alertname", descending=[True, False])


def acks_from_state(state_path: str | None) -> dict[str, datetime]:
    """fingerprint → acked_at of the acknowledgements in the state DB (empty when there is none)."""
    if not state_path or not Path(state_path).exists():
        return {}

    return {a.fingerprint: a.acked_at for a in AckStore(State(state_path)).acks()}
