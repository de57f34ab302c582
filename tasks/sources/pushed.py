"""Parse and validate samples pushed to cortex-perf (JSON or Prometheus text exposition).

Two shapes are accepted::

    {"samples": [{"metric": "queue_depth", "labels": {"queue": "a"}, "value": 3,
                  "ts": "2026-11-27T10:00:00Z"}]}       # ts: ISO 8601 UTC or epoch milliseconds
    queue_depth{queue="a"} 3 1795773600000               # text format, timestamp in ms optional

Why errors are collected rather than raised: a pusher sends batches, and "samples[3].value:
expected a number" tells its author exactly what to fix while the other rows are still kept; the
REST layer decides whether partial acceptance is allowed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tasks.lake.schema import (
    Sample,
    SchemaError,
    canonical_labels,
    now_utc,
    to_utc_ms,
    validate_metric_name,
    validate_value,
)

__all__ = ["DEFAULT_MAX_SAMPLES", "parse_push_payload"]

DEFAULT_MAX_SAMPLES = 100_000
_KNOWN_FIELDS = frozenset({"metric", "labels", "value", "ts"})


def _parse_ts(raw: object, where: str, now: datetime) -> datetime:
    if raw is None:
        return now
    if isinstance(raw, bool):
        raise SchemaError(f"{where}: expected an ISO 8601 string or epoch milliseconds, got bool")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise SchemaError(f"{where}: non-finite timestamp")
        try:
            return to_utc_ms(datetime.fromtimestamp(raw / 1000.0, UTC), field_name=where)
        except (OverflowError, OSError, ValueError) as exc:
            raise SchemaError(f"{where}: epoch milliseconds {raw!r} out of range ({exc})") from None
    if isinstance(raw, str):
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            raise SchemaError(f"{where}: {raw!r} is not an ISO 8601 timestamp") from None
        return to_utc_ms(ts, field_name=where)
    raise SchemaError(f"{where}: expected an ISO 8601 string or epoch milliseconds, got {type(raw).__name__}")


def _one(item: object, i: int, now: datetime) -> Sample:
    where = f"samples[{i}]"
    if not isinstance(item, Mapping):
        raise SchemaError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = sorted(set(item) - _KNOWN_FIELDS)
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {unknown} (allowed: metric, labels, value, ts)")
    if "metric" not in item:
        raise SchemaError(f"{where}.metric: missing")
    try:
        metric = validate_metric_name(item["metric"])
    except SchemaError as exc:
        raise SchemaError(f"{where}.{exc}") from None
    labels_raw = item.get("labels") or {}
    try:
        canonical = canonical_labels(labels_raw)
    except SchemaError as exc:
        raise SchemaError(f"{where}.{exc}") from None
    labels: dict[str, str] = json.loads(canonical)
    if "value" not in item:
        raise SchemaError(f"{where}.value: missing")
    value = validate_value(item["value"], field_name=f"{where}.value")
    ts = _parse_ts(item.get("ts"), f"{where}.ts", now)
    return Sample(metric, value, ts, labels)


def _parse_json(obj: Any, now: datetime, max_samples: int) -> tuple[list[Sample], list[str]]:
    if not isinstance(obj, Mapping):
        return [], [f'payload: expected an object {{"samples": [...]}}, got {type(obj).__name__}']
    extra = sorted(set(obj) - {"samples"})
    if extra:
        return [], [f"payload: unknown field(s) {extra} (expected only 'samples')"]
    items = obj.get("samples")
    if not isinstance(items, list):
        return [], [f"samples: expected a list, got {type(items).__name__}"]
    if len(items) > max_samples:
        return [], [f"samples: {len(items)} samples, over the limit of {max_samples} per push"]
    out: list[Sample] = []
    errors: list[str] = []
    for i, item in enumerate(items):
        try:
            out.append(_one(item, i, now))
        except SchemaError as exc:
            errors.append(str(exc))
    return out, errors


def _bad_line(text: str) -> str:
    """The first line the exposition parser rejects, as ``line N: ...`` (the parser says no line)."""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except ValueError as exc:
            return f"line {n}: {exc}"
    return "unparseable"


def _parse_text(text: str, now: datetime, max_samples: int) -> tuple[list[Sample], list[str]]:
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        return [], [f"text: {_bad_line(text)}"]
    out: list[Sample] = []
    errors: list[str] = []
    i = 0
    for family in families:
        for s in family.samples:
            where = f"samples[{i}]"
            i += 1
            if i > max_samples:
                return [], [f"samples: over the limit of {max_samples} per push"]
            try:
                value = validate_value(float(s.value), field_name=f"{where}.value")
                labels: dict[str, str] = json.loads(canonical_labels(s.labels))
                if s.timestamp is None:
                    ts = now
                else:
                    ts = to_utc_ms(datetime.fromtimestamp(float(s.timestamp), UTC), field_name=f"{where}.ts")
                out.append(Sample(validate_metric_name(s.name), value, ts, labels))
            except SchemaError as exc:
                msg = str(exc)
                errors.append(msg if msg.startswith(where) else f"{where}.{msg}")
    return out, errors


def parse_push_payload(
    obj: Any,
    *,
    now: datetime | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[list[Sample], list[str]]:
    """Validate a pushed payload; return (good samples, one error per bad sample or payload).

    ``obj`` is a decoded JSON object, or ``str``/``bytes`` holding JSON (starts with ``{``) or
    Prometheus text exposition. Samples without a timestamp get ``now``.
    """
    now = now or now_utc()
    if isinstance(obj, bytes | bytearray):
        try:
            obj = bytes(obj).decode("utf-8")
        except UnicodeDecodeError as exc:
            return [], [f"payload: not UTF-8 ({exc})"]
    if isinstance(obj, str):
        if obj.lstrip().startswith("{"):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                return [], [f"payload: invalid JSON ({exc})"]
        else:
            return _parse_text(obj, now, max_samples)
    return _parse_json(obj, now, max_samples)
