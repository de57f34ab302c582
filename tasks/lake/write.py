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
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
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
    #: rows an import reads, checks and stages at a time (bounds its memory)
    import_chunk_rows: int = 500_000


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
    """Collects bad rows: a count and the first few reasons (grouped by message).

    ``row_word`` names what the row numbers count: ``row`` (position in the batch) or, for an
    importer that passes its own ``_row`` numbers, ``line`` (the file's line).
    """

    def __init__(self, row_word: str = "row") -> None:
        self.count = 0
        self.by_reason: dict[str, list[int]] = {}
        self.row_word = row_word

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
            out.append(f"{self.row_word} {where}: {reason}")
        return out


def content_hash(df: pl.DataFrame, columns: Iterable[str]) -> str:
    """16 hex chars identifying a batch's content (same rows in the same order → same hash).

    SHA-256 over the columns' raw buffers: hardware-accelerated on current CPUs (faster than
    BLAKE2 here), and a cryptographic hash, so two different batches never share a file name,
    which would make the second look like a re-send and be skipped.
    """
    h = hashlib.sha256()
    for name in columns:
        col = df.get_column(name)
        if col.dtype == pl.String:
            if col.null_count():  # a nullable text column (router_outcomes' kind, error): null ≠ ""
                h.update(col.is_null().to_numpy().tobytes())
                col = col.fill_null("")
            h.update("\x00".join(col.to_list()).encode())
        else:
            h.update(col.to_physical().to_numpy().tobytes())
        h.update(b"\x01")
    return h.hexdigest()[:16]


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
    out = df.select(
        pl.col("metric"),
        pl.col("labels").fill_null("{}"),
        pl.col("ts").dt.cast_time_unit("ms").dt.convert_time_zone("UTC"),
        pl.col("value").cast(pl.Float64),
    )
    # A caller's own row numbers (an importer's file lines) name the rows in rejections.
    if "_row" in df.columns:
        return out.with_columns(df.get_column("_row").cast(pl.UInt32))
    return out.with_row_index("_row")


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
    df = _reject_where(
        df, pl.col("ts") < pl.lit(S.TS_MIN, dtype=S.POLARS_TS), f"ts: before {S.TS_MIN:%Y-%m-%d} (out of range)", rej
    )
    df = _reject_where(df, pl.col("value").is_null(), "value: missing", rej)
    df = _reject_where(df, ~pl.col("value").is_finite(), "value: non-finite value (NaN and ±Inf are not stored)", rej)
    limit = now + timedelta(seconds=limits.max_future_skew_s)
    df = _reject_where(
        df,
        pl.col("ts") > pl.lit(limit, dtype=S.POLARS_TS),
        f"ts: more than {limits.max_future_skew_s:g}s in the future",
        rej,
    )
    return df


def _series_mapping(
    df: pl.DataFrame, limits: Limits, known: Mapping[str, set[int]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per distinct (metric, labels text): its series id or the reason it is refused.

    Names, label sets and the cardinality limit are all checked here, once per distinct pair, so
    a batch of a million samples over a thousand series does a thousand checks, not a million.
    Returns (mapping, new series for the catalogue).
    """
    pairs = (
        df.group_by("_k")
        .agg(
            pl.col("metric").first(),
            pl.col("labels").first(),
            pl.col("_row").min().alias("_first_row"),
            pl.col("ts").min().alias("first_seen"),
        )
        .sort("_first_row")
    )
    metric_err: dict[str, str | None] = {}
    canon_cache = _canon_cache(limits)
    out_sid: list[int | None] = []
    out_canon: list[str | None] = []
    out_err: list[str | None] = []
    new_rows: dict[int, tuple[int, str, str, datetime]] = {}
    added: dict[str, int] = {}
    for metric, text, _first_row, first_seen in pairs.select(
        "metric", "labels", "_first_row", "first_seen"
    ).iter_rows():
        if metric not in metric_err:
            metric_err[metric] = None if S.METRIC_NAME_RE.match(metric) else S.validate_metric_error(metric)
        err = metric_err[metric]
        canon: str | Exception | None = None
        if err is None:
            canon = canon_cache.get(text)
            if canon is None:
                canon = _canonical_from_text(text, limits)
                canon_cache[text] = canon
            if isinstance(canon, Exception):
                err = str(canon)
        if err is not None or not isinstance(canon, str):
            out_sid.append(None)
            out_canon.append(None)
            out_err.append(err)
            continue
        sid = S.series_id(metric, canon)
        have = known.get(metric, set())
        if sid not in have and sid not in new_rows:
            if len(have) + added.get(metric, 0) >= limits.max_series_per_metric:
                out_sid.append(None)
                out_canon.append(None)
                out_err.append(
                    f"labels: series limit reached ({limits.max_series_per_metric} series per metric); "
                    "new series refused"
                )
                continue
            added[metric] = added.get(metric, 0) + 1
            new_rows[sid] = (sid, metric, canon, first_seen)
        elif sid in new_rows and first_seen < new_rows[sid][3]:
            new_rows[sid] = (sid, metric, canon, first_seen)
        out_sid.append(sid)
        out_canon.append(canon)
        out_err.append(None)
    mapping = pairs.select("_k", "metric").with_columns(
        pl.Series("series_id", out_sid, dtype=pl.Int64),
        pl.Series("_canon", out_canon, dtype=pl.String),
        pl.Series("_err", out_err, dtype=pl.String),
    )
    new = pl.DataFrame(
        list(new_rows.values()),
        schema={"series_id": pl.Int64, "metric": pl.String, "labels": pl.String, "first_seen": S.POLARS_TS},
        orient="row",
    )
    return mapping, new


_CANON_CACHES: dict[tuple[int, int], dict[str, str | Exception]] = {}
_CANON_CACHE_MAX = 100_000


def _canon_cache(limits: Limits) -> dict[str, str | Exception]:
    """Label text → canonical text (or its error), kept across batches: the same few thousand
    label sets arrive every tick, and parsing them again each time is pure overhead."""
    key = (limits.max_labels, limits.max_value_length)
    cache = _CANON_CACHES.setdefault(key, {})
    if len(cache) > _CANON_CACHE_MAX:
        cache.clear()
    return cache


def _canonical_from_text(text: str, limits: Limits) -> str | Exception:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        return S.SchemaError(f"labels: not valid JSON ({e.msg})")
    if not isinstance(parsed, dict):
        return S.SchemaError(f"labels: expected a JSON object, got {type(parsed).__name__}")
    try:
        return S.canonical_labels(parsed, max_labels=limits.max_labels, max_value_length=limits.max_value_length)
    except S.SchemaError as e:
        return e


def prepare_samples(
    data: Iterable[S.Sample] | pl.DataFrame,
    *,
    limits: Limits,
    known_series: Mapping[str, set[int]],
    now: datetime | None = None,
    row_word: str = "row",
) -> tuple[pl.DataFrame, pl.DataFrame, _Rejects]:
    """Validate a batch; returns (good rows sorted by series and time, new series, rejects).

    A frame may carry a ``_row`` column of the caller's own row numbers (``row_word`` says what
    they count, e.g. ``line``); rejections then name those instead of positions in the frame.
    """
    rej = _Rejects(row_word)
    now = now or datetime.now(UTC)
    df = _check_frame_columns(data) if isinstance(data, pl.DataFrame) else _from_samples(data, limits, rej)
    df = _canonicalise(df, limits, rej, now)
    # Rows are matched to their (metric, labels) pair by an exact integer key built from the two
    # columns' categorical codes: grouping and joining on one integer is several times faster
    # than on two strings, and unlike a hash it cannot collide. Batch-local categories, so a
    # long-running process does not grow polars' global string pool with every label value.
    cats = pl.Categorical(pl.Categories.random())
    label_code = pl.col("labels").cast(cats).to_physical().cast(pl.UInt64)
    one_metric = df.height > 0 and df.select((pl.col("metric") == pl.lit(df.item(0, "metric"))).all()).item()
    if one_metric:  # the usual bulk batch: comparing strings is far cheaper than coding them
        df = df.with_columns(label_code.alias("_k"))
    else:
        df = df.with_columns(
            (pl.col("metric").cast(cats).to_physical().cast(pl.UInt64) * (1 << 32) + label_code).alias("_k")
        )
    mapping, new_series = _series_mapping(df, limits, known_series)
    # Only integers and floats travel through the join and the sort; the names are attached
    # once at the end (moving string columns through a sort costs more than the sort itself).
    # When the keys are dense codes 0..n-1 (one metric, fresh categories: the usual bulk batch),
    # per-row lookups are array gathers instead of hash joins.
    dense = mapping.height > 0 and mapping.get_column("_k").max() == mapping.height - 1
    if dense:
        mapping = mapping.sort("_k")
        num = df.select(
            "_k", "_row", "ts", "value", pl.lit(mapping.get_column("series_id")).gather(pl.col("_k")).alias("series_id")
        )
    else:
        num = df.select("_k", "_row", "ts", "value").join(mapping.select("_k", "series_id"), on="_k", how="left")
    refused = num.filter(pl.col("series_id").is_null())
    if refused.height:
        refused = refused.join(mapping.select("_k", "_err"), on="_k", how="left")
        for (err,), grp in refused.group_by("_err", maintain_order=True):
            rej.add_many(grp.get_column("_row").sort().head(3).to_list(), grp.height, str(err))
        num = num.filter(pl.col("series_id").is_not_null())
    # Stable sorts keep arrival order within an identity, so "last write wins" inside a batch too.
    # Most batches arrive in time order per series: sorting by series alone then suffices, and
    # checking that is cheap; otherwise sort by both keys.
    num = num.sort("series_id", maintain_order=True)
    unordered = num.select(
        ((pl.col("series_id") == pl.col("series_id").shift(1)) & (pl.col("ts") < pl.col("ts").shift(1))).any()
    ).item()
    if unordered:
        num = num.sort("series_id", "ts", maintain_order=True)
    dup = num.select(
        ((pl.col("series_id") == pl.col("series_id").shift(-1)) & (pl.col("ts") == pl.col("ts").shift(-1))).any()
    ).item()
    if dup:
        num = num.unique(["series_id", "ts"], keep="last", maintain_order=True)
    if dense:
        out = num.select(
            "series_id",
            pl.lit(mapping.get_column("metric")).gather(pl.col("_k")).alias("metric"),
            pl.lit(mapping.get_column("_canon")).gather(pl.col("_k")).alias("labels"),
            "ts",
            "value",
        )
        return out, new_series, rej
    names = mapping.filter(pl.col("series_id").is_not_null()).select("_k", "metric", pl.col("_canon").alias("labels"))
    out = num.join(names, on="_k", how="left", maintain_order="left")
    return out.select("series_id", "metric", "labels", "ts", "value"), new_series, rej


@dataclass(frozen=True, slots=True)
class StagedFile:
    """A partition file written under a temporary name: invisible to readers until committed."""

    table: str
    day: date
    tmp: str
    content_hash: str


def _day_parts(table: str, df: pl.DataFrame) -> Iterable[tuple[date, pl.DataFrame]]:
    ts_col = S.PARTITION_COLUMN.get(table, "ts")
    first, last = df.select(pl.col(ts_col).min().dt.date().alias("a"), pl.col(ts_col).max().dt.date().alias("b")).row(0)
    if first == last:  # the usual case: skip splitting a batch that lies within one day
        return [(first, df)]
    return (
        (key[0], part.drop("_day"))
        for key, part in df.with_columns(pl.col(ts_col).dt.date().alias("_day")).group_by("_day", maintain_order=True)
    )


def stage_partitioned(
    storage: LakeStorage, table: str, df: pl.DataFrame, schema: pa.Schema, hash_cols: tuple[str, ...]
) -> list[StagedFile]:
    """Write ``df`` as one temporary file per day partition (local lakes); ``commit_staged`` publishes them.

    Locally the content hash (hashlib) and the Parquet encoding (polars) both release the GIL, so
    they run side by side.
    """
    staged: list[StagedFile] = []
    if df.height == 0:
        return staged
    try:
        for day, part in _day_parts(table, df):
            assert isinstance(day, date)
            part = part.select([f.name for f in schema])
            with ThreadPoolExecutor(max_workers=1) as pool:
                fut = pool.submit(content_hash, part, hash_cols)
                tmp = storage.write_temp(table, day, part)
                staged.append(StagedFile(table, day, tmp, fut.result()))
    except BaseException:
        discard_staged(storage, staged)
        raise
    return staged


def commit_staged(storage: LakeStorage, staged: Iterable[StagedFile]) -> tuple[list[str], int]:
    """Rename staged files into place, in order; a batch already there (same content) is skipped.

    Returns (files committed, duplicate batches skipped).
    """
    files: list[str] = []
    dups = 0
    for s in staged:
        if storage.exists_with_hash(s.table, s.day, s.content_hash):
            storage.discard(s.tmp)
            dups += 1
            continue
        files.append(storage.commit(s.tmp, s.table, s.day, s.content_hash))
    return files, dups


def discard_staged(storage: LakeStorage, staged: Iterable[StagedFile]) -> None:
    for s in staged:
        storage.discard(s.tmp)


def write_partitioned(
    storage: LakeStorage, table: str, df: pl.DataFrame, schema: pa.Schema, hash_cols: tuple[str, ...]
) -> tuple[list[str], int]:
    """Write ``df`` as one file per day partition; returns (files written, duplicate batches skipped).

    Locally every day's file is staged first and all are committed together, so a batch that
    spans days becomes visible at (nearly) one instant. Object storage has no rename: each day is
    one atomic PUT.
    """
    if df.height == 0:
        return [], 0
    if storage.local:
        return commit_staged(storage, stage_partitioned(storage, table, df, schema, hash_cols))
    files: list[str] = []
    dups = 0
    for day, part in _day_parts(table, df):
        assert isinstance(day, date)
        part = part.select([f.name for f in schema])
        h = content_hash(part, hash_cols)
        if storage.exists_with_hash(table, day, h):
            dups += 1
            continue
        files.append(storage.write_table(table, day, part, h, schema=schema))
    return files, dups


def prepare_events(events: Iterable[S.Event]) -> pl.DataFrame:
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
