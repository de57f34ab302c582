"""The write path: validate, canonicalise and append a batch to the lake.

Why validation is vectorised over *unique* values: a batch of a million samples usually holds a
few thousand series, so names and label sets are checked once per distinct value and joined back;
timestamps and values are checked column-wise. This keeps ingestion at millions of samples per
second while every bad row still gets a reason that names its field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa

from tasks.lake import schema as S
from tasks.lake.storage import LakeStorage

MAX_REASONS = 10


class LakeWriteError(ValueError):
    """A strict-mode batch with bad rows, or a frame that cannot be a samples batch at all."""

    def __init__(self, message: str, result: WriteResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(slots=True)
class Limits:
    """Ingestion limits (from ``LakeSettings``)."""

    strict: bool = False
    max_labels: int = 32
    max_value_length: int = 2048
    max_series_per_metric: int = 10_000
    max_future_skew_s: float = 3600.0


@dataclass(slots=True)
class WriteResult:
    """What a write did: rows kept, rows refused (with the first reasons) and files committed."""

    table: str
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    new_series: int = 0
    duplicate_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reasons": list(self.reasons),
            "files": list(self.files),
            "new_series": self.new_series,
            "duplicate_files": self.duplicate_files,
        }


class _Rejects:
    """Collects bad rows: a count and the first few reasons (grouped by message)."""

    def __init__(self) -> None:
        self.count = 0
        self.by_reason: dict[str, list[int]] = {}

    def add(self, row: int, reason: str) -> None:
        self.count += 1
        rows = self.by_reason.setdefault(reason, [])
        if len(rows) < 3:
            rows.append(row)

    def add_many(self, rows: list[int], n: int, reason: str) -> None:
        if n <= 0:
            return
        self.count += n
        lst = self.by_reason.setdefault(reason, [])
        lst.extend(rows[: 3 - len(lst)])

    def reasons(self) -> list[str]:
        out = []
        for reason, rows in list(self.by_reason.items())[:MAX_REASONS]:
            where = ", ".join(str(r) for r in rows)
            out.append(f"row {where}: {reason}")
        return out


def content_hash(table: pa.Table, columns: Iterable[str]) -> str:
    """16 hex chars identifying a batch's content (same rows in the same order → same hash)."""
    h = hashlib.blake2b(digest_size=8)
    for name in columns:
        col = table.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            for v in col.to_pylist():
                h.update(v.encode())
                h.update(b"\x00")
            continue
        for buf in col.buffers():
            if buf is not None:
                h.update(memoryview(buf))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Normalisation: list[Sample] or a bulk frame → canonical frame + rejects
# ---------------------------------------------------------------------------------------------
def _from_samples(samples: Iterable[S.Sample], limits: Limits, rej: _Rejects) -> pl.DataFrame:
    metrics: list[str] = []
    labels: list[str] = []
    tss: list[datetime] = []
    values: list[float] = []
    metric_ok: dict[str, str | None] = {}
    label_cache: dict[tuple[tuple[str, Any], ...], str | Exception] = {}
    for i, s in enumerate(samples):
        if not isinstance(s, S.Sample):
            rej.add(i, f"expected a Sample, got {type(s).__name__}")
            continue
        m = s.metric
        err = metric_ok.get(m) if isinstance(m, str) else "metric: metric name must be a string"
        if isinstance(m, str) and m not in metric_ok:
            try:
                S.validate_metric_name(m)
                err = None
            except S.SchemaError as e:
                err = str(e)
            metric_ok[m] = err
        if err:
            rej.add(i, err)
            continue
        raw = s.labels or {}
        try:
            key = tuple(sorted(raw.items())) if isinstance(raw, Mapping) else None
        except TypeError:
            key = None
        if key is None:
            rej.add(i, f"labels: expected a mapping, got {type(raw).__name__}")
            continue
        canon = label_cache.get(key)
        if canon is None:
            try:
                canon = S.canonical_labels(raw, max_labels=limits.max_labels, max_value_length=limits.max_value_length)
            except S.SchemaError as e:
                canon = e
            label_cache[key] = canon
        if isinstance(canon, Exception):
            rej.add(i, str(canon))
            continue
        try:
            ts = S.to_utc_ms(s.ts)
            v = S.validate_value(s.value)
        except S.SchemaError as e:
            rej.add(i, str(e))
            continue
        metrics.append(m)
        labels.append(canon)
        tss.append(ts)
        values.append(v)
    return pl.DataFrame(
        {"metric": metrics, "labels": labels, "ts": tss, "value": values},
        schema={"metric": pl.String, "labels": pl.String, "ts": S.POLARS_TS, "value": pl.Float64},
    ).with_row_index("_row")


def _check_frame_columns(df: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("metric", "ts", "value") if c not in df.columns]
    if missing:
        raise LakeWriteError(f"samples frame is missing column(s) {missing}; expected metric, labels, ts, value")
    ts_type = df.schema["ts"]
    if not isinstance(ts_type, pl.Datetime):
        raise LakeWriteError(f"ts: expected a Datetime column in UTC, got {ts_type}")
    if ts_type.time_zone is None:
        raise LakeWriteError("ts: naive timestamps (the column has no time zone; it must be UTC)")
    if ts_type.time_zone not in ("UTC", "Etc/UTC"):
        raise LakeWriteError(f"ts: timestamps are in {ts_type.time_zone}, not UTC")
    if "labels" not in df.columns:
        df = df.with_columns(pl.lit("{}").alias("labels"))
    elif df.schema["labels"] != pl.String:
        raise LakeWriteError(f"labels: expected a JSON-object string column, got {df.schema['labels']}")
    if df.schema["metric"] != pl.String:
        raise LakeWriteError(f"metric: expected a string column, got {df.schema['metric']}")
    if not df.schema["value"].is_numeric():
        raise LakeWriteError(f"value: expected a numeric column, got {df.schema['value']}")
    return df.select(
        pl.col("metric"),
        pl.col("labels").fill_null("{}"),
        pl.col("ts").dt.cast_time_unit("ms").dt.convert_time_zone("UTC"),
        pl.col("value").cast(pl.Float64),
    ).with_row_index("_row")


def _reject_where(df: pl.DataFrame, mask: pl.Expr, reason: str, rej: _Rejects) -> pl.DataFrame:
    bad = df.filter(mask)
    if bad.height:
        rej.add_many(bad.get_column("_row").head(3).to_list(), bad.height, reason)
        df = df.filter(~mask)
    return df


def _canonicalise(df: pl.DataFrame, limits: Limits, rej: _Rejects, now: datetime) -> pl.DataFrame:
    """Row checks on a frame of (metric, labels, ts, value); returns good rows with series_id."""
    df = _reject_where(df, pl.col("metric").is_null(), "metric: missing", rej)
    df = _reject_where(df, pl.col("ts").is_null(), "ts: missing", rej)
    df = _reject_where(df, pl.col("value").is_null(), "value: missing", rej)
    df = _reject_where(df, ~pl.col("value").is_finite(), "value: non-finite value (NaN and ±Inf are not stored)", rej)
    limit = now + timedelta(seconds=limits.max_future_skew_s)
    df = _reject_where(
        df,
        pl.col("ts") > pl.lit(limit, dtype=S.POLARS_TS),
        f"ts: more than {limits.max_future_skew_s:g}s in the future",
        rej,
    )
    # metric names: once per distinct value
    bad_metrics = [m for m in df.get_column("metric").unique().to_list() if not S.METRIC_NAME_RE.match(m)]
    for m in bad_metrics:
        df = _reject_where(df, pl.col("metric") == m, S.validate_metric_error(m), rej)
    # label sets: canonicalise once per distinct text
    uniq = df.select("labels").unique()
    texts = uniq.get_column("labels").to_list()
    canon: list[str | None] = []
    errors: dict[str, str] = {}
    for t in texts:
        try:
            parsed = json.loads(t)
            if not isinstance(parsed, dict):
                raise S.SchemaError(f"labels: expected a JSON object, got {type(parsed).__name__}")
            canon.append(
                S.canonical_labels(parsed, max_labels=limits.max_labels, max_value_length=limits.max_value_length)
            )
        except json.JSONDecodeError as e:
            errors[t] = f"labels: not valid JSON ({e.msg})"
            canon.append(None)
        except S.SchemaError as e:
            errors[t] = str(e)
            canon.append(None)
    for t, msg in errors.items():
        df = _reject_where(df, pl.col("labels") == t, msg, rej)
    mapping = pl.DataFrame({"labels": texts, "_canon": canon}, schema={"labels": pl.String, "_canon": pl.String})
    df = df.join(mapping, on="labels", how="left").drop("labels").rename({"_canon": "labels"})
    # series ids: once per distinct (metric, labels)
    pairs = df.select("metric", "labels").unique()
    ids = [S.series_id(m, lab) for m, lab in pairs.iter_rows()]
    pairs = pairs.with_columns(pl.Series("series_id", ids, dtype=pl.Int64))
    return df.join(pairs, on=["metric", "labels"], how="left")


def _enforce_cardinality(
    df: pl.DataFrame, known: Mapping[str, set[int]], limits: Limits, rej: _Rejects
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Refuse rows of *new* series past ``max_series_per_metric``; returns (rows, new series)."""
    firsts = (
        df.group_by("series_id", "metric", "labels")
        .agg(pl.col("ts").min().alias("first_seen"), pl.col("_row").min().alias("_first_row"))
        .sort("_first_row")
    )
    new_rows = []
    refused: list[int] = []
    added: dict[str, int] = {}
    for sid, metric, labels, first_seen, _first_row in firsts.iter_rows():
        have = known.get(metric, set())
        if sid in have:
            continue
        n = len(have) + added.get(metric, 0)
        if n >= limits.max_series_per_metric:
            refused.append(sid)
            continue
        added[metric] = added.get(metric, 0) + 1
        new_rows.append((sid, metric, labels, first_seen))
    if refused:
        mask = pl.col("series_id").is_in(refused)
        df = _reject_where(
            df,
            mask,
            f"labels: series limit reached ({limits.max_series_per_metric} series per metric); new series refused",
            rej,
        )
    new = pl.DataFrame(
        new_rows,
        schema={"series_id": pl.Int64, "metric": pl.String, "labels": pl.String, "first_seen": S.POLARS_TS},
        orient="row",
    )
    return df, new


def prepare_samples(
    data: Iterable[S.Sample] | pl.DataFrame,
    *,
    limits: Limits,
    known_series: Mapping[str, set[int]],
    now: datetime | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, _Rejects]:
    """Validate a batch; returns (good rows sorted by series and time, new series, rejects)."""
    rej = _Rejects()
    now = now or datetime.now(UTC)
    df = _check_frame_columns(data) if isinstance(data, pl.DataFrame) else _from_samples(data, limits, rej)
    df = _canonicalise(df, limits, rej, now)
    df, new_series = _enforce_cardinality(df, known_series, limits, rej)
    df = df.sort("series_id", "ts", "_row").unique(["series_id", "ts"], keep="last", maintain_order=True)
    return df.select("series_id", "metric", "labels", "ts", "value"), new_series, rej


def write_partitioned(
    storage: LakeStorage, table: str, df: pl.DataFrame, schema: pa.Schema, hash_cols: tuple[str, ...]
) -> tuple[list[str], int]:
    """Write ``df`` as one file per day partition; returns (files written, duplicate batches skipped)."""
    if df.height == 0:
        return [], 0
    ts_col = "first_seen" if table == S.SERIES else "ts"
    df = df.with_columns(pl.col(ts_col).dt.date().alias("_day"))
    files: list[str] = []
    dups = 0
    for (day,), part in df.group_by("_day", maintain_order=True):
        assert isinstance(day, date)
        arrow = part.drop("_day").to_arrow().cast(schema)
        h = content_hash(arrow, hash_cols)
        if storage.exists_with_hash(table, day, h):
            dups += 1
            continue
        files.append(storage.write_table(table, day, arrow, h))
    return files, dups


def prepare_events(events: Iterable[S.Event]) -> pl.DataFrame:
    import uuid

    rows = []
    for i, e in enumerate(events):
        if e.name not in S.EVENT_NAMES:
            raise S.SchemaError(f"events[{i}].name: unknown event {e.name!r} (known: {sorted(S.EVENT_NAMES)})")
        if not isinstance(e.resource, str) or not e.resource:
            raise S.SchemaError(f"events[{i}].resource: must be a non-empty string")
        try:
            payload = json.dumps(dict(e.payload), default=_json_default, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise S.SchemaError(f"events[{i}].payload: not JSON-serialisable ({exc})") from None
        ts = S.to_utc_ms(e.ts, field_name=f"events[{i}].ts") if e.ts else S.now_utc()
        rows.append((e.event_id or uuid.uuid4().hex, ts, e.name, e.resource, payload))
    return pl.DataFrame(
        rows,
        schema={
            "event_id": pl.String,
            "ts": S.POLARS_TS,
            "name": pl.String,
            "resource": pl.String,
            "payload": pl.String,
        },
        orient="row",
    )


def _json_default(o: object) -> object:
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, date):
        return o.isoformat()
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)
