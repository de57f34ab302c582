"""The lake's one data contract: series, samples, events and the tables that hold them.

A **series** is a metric name plus a sorted label set (Prometheus's data model); a **sample** is
(series, UTC timestamp with millisecond precision, float64 value). Nothing else in the project
builds Parquet schemas or validates names: everything goes through this module, so a rule changes
in one place.

Why a ``series_id``: a stable 64-bit hash of the canonical series key lets Parquet files sort and
prune by one integer column, and lets queries resolve label matchers against the small ``series``
catalogue instead of every sample row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: Append-only tables of the lake. Rollup tables hold per-bucket aggregates of ``samples``.
SAMPLES = "samples"
SERIES = "series"
EVENTS = "events"
FORECASTS = "forecasts"
ANOMALIES = "anomalies"
NOTIFICATIONS = "notifications"
ROUTER_OUTCOMES = "router_outcomes"
ROLLUP_TABLES = {"1m": "rollup_1m", "5m": "rollup_5m", "1h": "rollup_1h"}
ROLLUP_SECONDS = {"rollup_1m": 60, "rollup_5m": 300, "rollup_1h": 3600}
APPEND_TABLES = (SAMPLES, SERIES, EVENTS, FORECASTS, ANOMALIES, NOTIFICATIONS, ROUTER_OUTCOMES)

TS_TYPE = pa.timestamp("ms", tz="UTC")
POLARS_TS = pl.Datetime("ms", "UTC")
#: The range a stored timestamp must lie in: what Python's ``datetime`` holds, so every reader
#: (CLI, API, notebooks) can turn any stored time into one. Wider values are refused on the way in.
TS_MIN = datetime(1, 1, 1, tzinfo=UTC)
TS_MAX = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
TS_MIN_MS = -62_135_596_800_000  # TS_MIN as milliseconds since the epoch
TS_MAX_MS = 253_402_300_799_999  # TS_MAX as milliseconds since the epoch

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
SERIES_SCHEMA = pa.schema(
    [
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("first_seen", TS_TYPE, nullable=False),
    ]
)
ROLLUP_SCHEMA = pa.schema(
    [
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),  # bucket start
        pa.field("min", pa.float64(), nullable=False),
        pa.field("max", pa.float64(), nullable=False),
        pa.field("sum", pa.float64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("last", pa.float64(), nullable=False),
        pa.field("last_ts", TS_TYPE, nullable=False),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),  # JSON object
    ]
)
#: Forecasts written by the forecast flow, read by alerting (``forecast()``) and scaling.
FORECASTS_SCHEMA = pa.schema(
    [
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("issued_at", TS_TYPE, nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),  # target time
        pa.field("step", pa.int32(), nullable=False),
        pa.field("p10", pa.float64(), nullable=False),
        pa.field("p50", pa.float64(), nullable=False),
        pa.field("p90", pa.float64(), nullable=False),
        pa.field("p99", pa.float64(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
    ]
)
#: Anomaly scores in [0, 1] with the reason, written by the anomaly detector.
ANOMALIES_SCHEMA = pa.schema(
    [
        pa.field("series_id", pa.int64(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("expected", pa.float64(), nullable=True),
        pa.field("detector", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
#: One row per delivery step of an alert notification (pending → sending → sent | failed | dead),
#: written by ``tasks.alerting.notify.delivery``: the long-term history reports and retention work on.
#: ``notification_id`` is the outbox entry; (id, attempt, status) identifies a row, so re-writing a
#: batch is harmless.
NOTIFICATIONS_SCHEMA = pa.schema(
    [
        pa.field("notification_id", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("receiver", pa.string(), nullable=False),
        pa.field("group_key", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("possible_duplicate", pa.bool_(), nullable=False),
        pa.field("firing", pa.int32(), nullable=False),
        pa.field("resolved", pa.int32(), nullable=False),
        pa.field("fingerprints", pa.string(), nullable=False),  # JSON list of alert fingerprints
        pa.field("title", pa.string(), nullable=False),
        pa.field("error", pa.string(), nullable=True),
        pa.field("next_attempt_at", TS_TYPE, nullable=True),
    ]
)
#: One row per upstream attempt of the query router (``tasks.routing``), written in batches by the
#: proxy (never one write per request): what the router flow retrains the learned strategy from and
#: what ``router status`` and reports summarise. ``status`` 0 = no HTTP answer (``error`` says why).
#: ``features`` is the query's feature record (JSON) the learned model was, or would have been, fed.
ROUTER_OUTCOMES_SCHEMA = pa.schema(
    [
        pa.field("outcome_id", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),  # when the attempt started
        pa.field("pool", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=True),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("error", pa.string(), nullable=True),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("hedged", pa.bool_(), nullable=False),
        pa.field("features", pa.string(), nullable=False),
    ]
)
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    SAMPLES: SAMPLES_SCHEMA,
    SERIES: SERIES_SCHEMA,
    EVENTS: EVENTS_SCHEMA,
    FORECASTS: FORECASTS_SCHEMA,
    ANOMALIES: ANOMALIES_SCHEMA,
    NOTIFICATIONS: NOTIFICATIONS_SCHEMA,
    ROUTER_OUTCOMES: ROUTER_OUTCOMES_SCHEMA,
    **{t: ROLLUP_SCHEMA for t in ROLLUP_TABLES.values()},
}
#: Columns that identify a row: compaction keeps the last write per identity.
IDENTITY: dict[str, tuple[str, ...]] = {
    SAMPLES: ("series_id", "ts"),
    SERIES: ("series_id",),
    EVENTS: ("event_id",),
    FORECASTS: ("series_id", "issued_at", "ts", "model"),
    ANOMALIES: ("series_id", "ts"),
    NOTIFICATIONS: ("notification_id", "attempt", "status"),
    ROUTER_OUTCOMES: ("outcome_id",),
    **{t: ("series_id", "ts") for t in ROLLUP_TABLES.values()},
}
#: The timestamp column that picks a row's day partition.
PARTITION_COLUMN: dict[str, str] = {SERIES: "first_seen", FORECASTS: "issued_at"}

#: Event names of DESIGN.md; ``emit`` rejects others so typos do not create new streams.
EVENT_NAMES = frozenset(
    {
        "metrics.collected",
        "source.failed",
        "scaling.triggered",
        "cache.warmed",
        "cache.miss",
        "gpu.allocated",
        "gpu.rebalanced",
        "query.routed",
        "alert.firing",
        "alert.resolved",
        "model.promoted",
        "action.applied",
        "action.failed",
        "lake.compacted",
        "lake.imported",
    }
)


class SchemaError(ValueError):
    """A value that can never be stored (bad name, bad timestamp, ...). The message names the field."""


def validate_metric_error(name: object) -> str:
    return f"metric: invalid metric name {name!r} (must match [a-zA-Z_:][a-zA-Z0-9_:]*)"


def validate_metric_name(name: object) -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.match(name):
        raise SchemaError(validate_metric_error(name))
    return name


def validate_label_name(name: object) -> str:
    if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
        raise SchemaError(f"labels: invalid label name {name!r} (must match [a-zA-Z_][a-zA-Z0-9_]*)")
    if name.startswith("__"):
        raise SchemaError(f"labels: label name {name!r} is reserved (names starting with __)")
    return name


def canonical_labels(
    labels: Mapping[str, object] | None,
    *,
    max_labels: int = 32,
    max_value_length: int = 2048,
) -> str:
    """The canonical text of a label set: JSON object, keys sorted, empty values dropped.

    Prometheus treats an empty label value as an absent label, so ``{"a": ""}`` and ``{}`` are the
    same series here too.
    """
    if not labels:
        return "{}"
    if not isinstance(labels, Mapping):
        raise SchemaError(f"labels: expected a mapping of label name to value, got {type(labels).__name__}")
    clean: dict[str, str] = {}
    for k, v in labels.items():
        validate_label_name(k)
        if v is None:
            continue
        if not isinstance(v, str):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise SchemaError(f"labels.{k}: label values must be strings, got {type(v).__name__}")
            v = str(v)
        if v == "":
            continue
        if len(v) > max_value_length:
            raise SchemaError(f"labels.{k}: value is {len(v)} characters, over the limit of {max_value_length}")
        clean[k] = v
    if len(clean) > max_labels:
        raise SchemaError(f"labels: {len(clean)} labels, over the limit of {max_labels} per series")
    return json.dumps(dict(sorted(clean.items())), separators=(",", ":"), ensure_ascii=False)


def series_key(metric: str, labels_json: str) -> str:
    """Prometheus text form of a series: ``metric{a="x",b="y"}`` (labels sorted)."""
    labels = json.loads(labels_json)
    if not labels:
        return metric
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_id(metric: str, labels_json: str) -> int:
    """Stable signed 64-bit id of a series (blake2b of metric + canonical labels)."""
    h = hashlib.blake2b(f"{metric}\x00{labels_json}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def to_utc_ms(ts: object, *, field_name: str = "ts") -> datetime:
    """A timestamp as an aware UTC datetime truncated to milliseconds; naive or non-UTC is an error.

    Why reject non-UTC offsets instead of converting: a collector that sends local time with an
    offset is almost always misconfigured, and silently converting hides that its other,
    offset-less timestamps are wrong too.
    """
    if not isinstance(ts, datetime):
        raise SchemaError(f"{field_name}: expected a datetime, got {type(ts).__name__}")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise SchemaError(f"{field_name}: naive timestamp {ts.isoformat()} (must be timezone-aware UTC)")
    if ts.utcoffset() != timedelta(0):
        raise SchemaError(f"{field_name}: timestamp {ts.isoformat()} is not UTC (offset {ts.utcoffset()})")
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=(ts.microsecond // 1000) * 1000)


def validate_value(value: object, *, field_name: str = "value") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{field_name}: expected a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise SchemaError(f"{field_name}: non-finite value {f!r} (NaN and ±Inf are not stored)")
    return f


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation. Sources return these; the writer validates them in bulk."""

    metric: str
    value: float
    ts: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened (a decision, a notification, a failure), kept in the lake."""

    name: str
    resource: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    ts: datetime | None = None
    event_id: str | None = None


def now_utc() -> datetime:
    """Now, UTC, millisecond precision: the one clock helper (tests pass explicit times instead)."""
    return to_utc_ms(datetime.now(UTC))
