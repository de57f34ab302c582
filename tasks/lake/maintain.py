"""Lake maintenance: compaction, rollups, retention and crash clean-up.

Every operation here rewrites or deletes files, so each takes the table's maintenance lock
(writers never do: appends cannot conflict). New files always appear atomically and old files are
deleted only after their replacement is committed, so a crash at any point loses nothing: at worst
it leaves duplicates that reads already tolerate and the next run removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.lake import schema as S
from tasks.lake.storage import (
    COMPRESSION,
    ROW_GROUP_SIZE,
    TMP_SUFFIX,
    LakeFile,
    LakeStorage,
    temp_writer_alive,
)

BIG_FILE_BYTES = 256 * 1024 * 1024
ROLLUP_MANIFEST = "rollups.json"
ROLLUP_GRACE = timedelta(minutes=2)
ROLLUP_FILE = "rollup.parquet"
#: rollup table → (source table, resolution seconds)
ROLLUP_CHAIN = (("rollup_1m", S.SAMPLES, 60), ("rollup_5m", "rollup_1m", 300), ("rollup_1h", "rollup_5m", 3600))


class MaintainedLake(Protocol):
    """What maintenance needs of a lake; :class:`tasks.lake.lake.Lake` is one.

    Why a Protocol and not ``Lake``: the ``Lake`` facade delegates ``compact``/``build_rollups``/
    ``apply_retention`` here and its reads pick rollups by ``rollup_watermarks``, so ``lake`` imports
    this module; naming ``Lake`` back would make the two import each other (issue 12 item 7).
    """

    @property
    def storage(self) -> LakeStorage: ...

    @property
    def con(self) -> duckdb.DuckDBPyConnection: ...

    def catalogue(self) -> pl.DataFrame: ...

    def _paths(self, files: Sequence[LakeFile | str]) -> list[str]:
        """Paths as DuckDB opens them (object storage goes through the lake's registered filesystem)."""
        ...


@dataclass
class CompactionReport:
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    duplicates_dropped: int = 0
    temp_files_removed: int = 0
    dry_run: bool = False
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RollupReport:
    partitions_rebuilt: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    watermarks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetentionReport:
    partitions_dropped: dict[str, list[str]] = field(default_factory=dict)
    #: catalogue entries past the series retention kept because the series still has rows
    series_kept: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _identity_sql(table: str) -> str:
    return ", ".join(S.IDENTITY[table])


def _order_sql(table: str) -> str:
    return "series_id, ts" if "series_id" in S.IDENTITY[table] and "ts" in S.IDENTITY[table] else _identity_sql(table)


def _compaction_candidates(files: list[LakeFile], day: date, today: date, min_files: int) -> list[LakeFile]:
    small = [f for f in files if f.size < BIG_FILE_BYTES]
    if len(small) < 2:
        return []
    if len(small) >= min_files or day < today:
        return small
    return []


def compact(
    lake: MaintainedLake,
    *,
    tables: tuple[str, ...] = S.APPEND_TABLES,
    min_files: int = 4,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CompactionReport:
    """Merge each partition's small files into one, keeping the last write per identity.

    Past days are compacted whenever they have two or more small files; today only once it has
    ``min_files`` (it is still growing, and rewriting it every tick would be wasted work).
    """
    report = CompactionReport(dry_run=dry_run)
    today = (now or datetime.now(UTC)).date()
    st = lake.storage
    for table in tables:
        with st.lock(table):
            report.temp_files_removed += _sweep_temp(lake, table, dry_run=dry_run)
            for day in st.partitions(table):
                files = st.files(table, day, day)
                cand = _compaction_candidates(files, day, today, min_files)
                if not cand:
                    continue
                paths = lake._paths(cand)
                rows_before = _count(lake, paths)  # answered from Parquet footers
                query, params = _dedup_query(lake, table, paths)
                if dry_run:
                    rows_after = _count_query(lake, query, params)
                else:
                    ns = max(f.write_ns for f in cand)
                    h = hashlib.blake2b("\n".join(f.name for f in cand).encode(), digest_size=8).hexdigest()
                    out = _copy_query_to_partition(lake, table, day, query, params, ns, h)
                    rows_after = _count(lake, lake._paths([out]))
                    st.delete([f.path for f in cand])
                report.partitions += 1
                report.files_before += len(cand)
                report.files_after += 1
                report.rows_before += rows_before
                report.rows_after += rows_after
                report.duplicates_dropped += rows_before - rows_after
                report.details.append(
                    {
                        "table": table,
                        "date": day.isoformat(),
                        "files": len(cand),
                        "rows_before": rows_before,
                        "rows_after": rows_after,
                    }
                )
    return report


def _count(lake: MaintainedLake, paths: list[str]) -> int:
    return int(lake.con.sql("SELECT count(*) FROM read_parquet($f)", params={"f": paths}).fetchall()[0][0])


def _count_query(lake: MaintainedLake, query: str, params: dict[str, Any]) -> int:
    return int(lake.con.sql(f"SELECT count(*) FROM ({query})", params=params).fetchall()[0][0])


def _dedup_query(lake: MaintainedLake, table: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """SQL keeping the last write per identity of ``paths``, in the table's sort order.

    For samples, duplicates are found on the numeric columns only and the series' names are
    joined back from the catalogue afterwards: carrying the label text through the aggregation
    costs several times the memory and time on a day of millions of rows.
    """
    params: dict[str, Any] = {"f": paths}
    if table != S.SAMPLES:
        ident = _identity_sql(table)
        return (
            f"SELECT * EXCLUDE (filename) FROM read_parquet($f, filename=true) "
            f"QUALIFY row_number() OVER (PARTITION BY {ident} ORDER BY filename DESC) = 1 "
            f"ORDER BY {_order_sql(table)}",
            params,
        )
    names = lake.catalogue().select("series_id", "metric", "labels")
    in_files = lake.con.sql("SELECT DISTINCT series_id FROM read_parquet($f)", params=params).pl()
    missing = in_files.join(names, on="series_id", how="anti").get_column("series_id").to_list()
    if missing:  # samples whose catalogue entry is gone (e.g. retention): take names from the files
        extra = lake.con.sql(
            "SELECT series_id, any_value(metric) AS metric, any_value(labels) AS labels FROM read_parquet($f) "
            "WHERE series_id IN (SELECT unnest($ids)) GROUP BY series_id",
            params={"f": paths, "ids": missing},
        ).pl()
        names = pl.concat([names, extra], how="vertical_relaxed")
    view = f"_names_{uuid.uuid4().hex}"
    lake.con.register(view, names)
    return (
        "SELECT d.series_id, n.metric, n.labels, d.ts, d.value FROM ("
        "SELECT series_id, ts, arg_max(value, filename) AS value FROM read_parquet($f, filename=true) "
        f"GROUP BY series_id, ts) d JOIN {view} n USING (series_id) ORDER BY d.series_id, d.ts",
        params,
    )


def _copy_query_to_partition(
    lake: MaintainedLake,
    table: str,
    day: date,
    query: str,
    params: dict[str, Any],
    ns: int,
    content_hash: str,
    *,
    fixed_name: str | None = None,
) -> str:
    """Stream a DuckDB query into a committed partition file (temp + fsync + rename)."""
    st = lake.storage
    d = st.partition_dir(table, day)
    st.fs.create_dir(d, recursive=True)
    final = f"{d}/{fixed_name}" if fixed_name else f"{d}/{ns:020d}-{content_hash}.parquet"
    schema = S.TABLE_SCHEMAS[table]
    cast = ", ".join(f'CAST("{f.name}" AS {_duck_type(f.type)}) AS "{f.name}"' for f in schema)
    if st.local:
        tmp = f"{d}/_{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            lake.con.sql(
                f"COPY (SELECT {cast} FROM ({query})) TO '{_sql_str(tmp)}' "
                f"(FORMAT parquet, COMPRESSION {COMPRESSION}, ROW_GROUP_SIZE {ROW_GROUP_SIZE})",
                params=params,
            )
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final
    arrow = lake.con.sql(f"SELECT {cast} FROM ({query})", params=params).to_arrow_table().cast(schema)
    pq.write_table(arrow, final, filesystem=st.fs, compression=COMPRESSION, row_group_size=ROW_GROUP_SIZE)
    return final


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def _duck_type(t: Any) -> str:
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    return "VARCHAR"


def _sweep_temp(lake: MaintainedLake, table: str, *, dry_run: bool, older_than_s: float = 3600.0) -> int:
    """Remove ``.partial`` files a crashed writer left behind (old ones whose writer is gone)."""
    if not lake.storage.local:
        return 0
    n = 0
    cutoff = time.time() - older_than_s
    for p in lake.storage.temp_files(table):
        try:
            if os.path.getmtime(p) < cutoff and not temp_writer_alive(p):
                n += 1
                if not dry_run:
                    os.unlink(p)
        except FileNotFoundError:
            pass
    return n


# ---- rollups ----------------------------------------------------------------------------------
def _manifest(lake: MaintainedLake) -> dict[str, Any]:
    raw = lake.storage.read_bytes(lake.storage.meta_path(ROLLUP_MANIFEST))
    if not raw:
        return {"signatures": {}, "watermarks": {}}
    try:
        m = json.loads(raw)
    except json.JSONDecodeError:
        return {"signatures": {}, "watermarks": {}}
    m.setdefault("signatures", {})
    m.setdefault("watermarks", {})
    return m


def rollup_watermarks(lake: MaintainedLake) -> dict[str, datetime]:
    """Per rollup table, the time before which it holds every complete bucket."""
    m = _manifest(lake)
    return {t: datetime.fromisoformat(v) for t, v in m["watermarks"].items()}


def _floor_s(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def build_rollups(lake: MaintainedLake, *, now: datetime | None = None, force: bool = False) -> RollupReport:
    """Rebuild 1m → 5m → 1h rollups of every sample partition that changed since the last build.

    A partition's rollup is recomputed whole from its deduplicated samples and replaces the old
    one atomically (one fixed file name per partition), so readers see the old or the new rollup,
    never a mix. The watermark recorded afterwards tells queries which buckets are complete.
    """
    now = now or datetime.now(UTC)
    started = now - ROLLUP_GRACE
    report = RollupReport()
    st = lake.storage
    # Holding the samples lock keeps compaction from deleting files this build is reading.
    with st.lock("rollups"), st.lock(S.SAMPLES):
        man = _manifest(lake)
        sigs: dict[str, str] = man["signatures"]
        for day in st.partitions(S.SAMPLES):
            files = st.files(S.SAMPLES, day, day)
            sig = hashlib.blake2b("\n".join(f.name for f in files).encode(), digest_size=8).hexdigest()
            key = day.isoformat()
            if not force and sigs.get(key) == sig:
                continue
            for table, source, res in ROLLUP_CHAIN:
                src_files = st.files(source, day, day)
                if not src_files:
                    continue
                paths = lake._paths(src_files)
                if source == S.SAMPLES:
                    base = (
                        "SELECT series_id, ts, arg_max(value, filename) AS value, any_value(metric) AS metric, "
                        "any_value(labels) AS labels FROM read_parquet($f, filename=true) GROUP BY series_id, ts"
                        if len(src_files) > 1
                        else "SELECT series_id, ts, value, metric, labels FROM read_parquet($f)"
                    )
                    agg = (
                        "min(value) AS min, max(value) AS max, sum(value) AS sum, count(*) AS count, "
                        "arg_max(value, ts) AS last, max(ts) AS last_ts"
                    )
                else:
                    base = "SELECT * FROM read_parquet($f)"
                    agg = (
                        "min(min) AS min, max(max) AS max, sum(sum) AS sum, sum(count) AS count, "
                        "arg_max(last, last_ts) AS last, max(last_ts) AS last_ts"
                    )
                q = (
                    f"SELECT series_id, any_value(metric) AS metric, any_value(labels) AS labels, "
                    f"make_timestamptz((epoch_ms(ts) // {res * 1000}) * {res * 1000} * 1000) AS ts, {agg} "
                    f"FROM ({base}) GROUP BY series_id, 4 ORDER BY series_id, ts"
                )
                _copy_query_to_partition(lake, table, day, q, {"f": paths}, 0, "", fixed_name=ROLLUP_FILE)
                n = lake.con.sql(
                    "SELECT count(*) FROM read_parquet($f)", params={"f": lake._paths(st.files(table, day, day))}
                ).fetchall()[0][0]
                report.rows_written[table] = report.rows_written.get(table, 0) + int(n)
            sigs[key] = sig
            report.partitions_rebuilt += 1
        wm_1m = _floor_s(started, 60)
        man["watermarks"] = {
            "rollup_1m": wm_1m.isoformat(),
            "rollup_5m": _floor_s(wm_1m, 300).isoformat(),
            "rollup_1h": _floor_s(wm_1m, 3600).isoformat(),
        }
        live = {d.isoformat() for d in st.partitions(S.SAMPLES)}
        man["signatures"] = {k: v for k, v in sigs.items() if k in live}
        st.write_bytes_atomic(st.meta_path(ROLLUP_MANIFEST), json.dumps(man, indent=1).encode())
        report.watermarks = man["watermarks"]
    return report


# ---- retention --------------------------------------------------------------------------------
def retention_problems(retention_days: Mapping[str, object]) -> list[str]:
    """Why ``retention_days`` cannot be applied: one ``lake.retention_days.<table>: …`` line per bad entry.

    Why here: the lake knows its tables and what a day count does to them (0 days drops today's
    partition, a negative number every partition). ``config check`` asks this same function, so the
    check and the deletion can never disagree about what is safe."""
    out = []
    for table, days in retention_days.items():
        where = f"lake.retention_days.{table}"
        if table not in S.TABLE_SCHEMAS:
            out.append(f"{where}: unknown table {table!r} (tables: {', '.join(sorted(S.TABLE_SCHEMAS))})")
        elif isinstance(days, bool) or not isinstance(days, int) or days < 1:
            out.append(f"{where}: must be a whole number of days, at least 1 (got {days!r})")
    return out


#: Tables whose rows belong to a series: a catalogue entry lives while any of them holds one.
SERIES_DATA_TABLES = (S.SAMPLES, *S.ROLLUP_TABLES.values(), S.FORECASTS, S.ANOMALIES)
#: Catalogue files younger than this are never rewritten by retention: a writer commits a new
#: series' entry just before its samples, so a young entry may not have its rows yet.
SERIES_WRITE_GRACE_S = 3600.0


def apply_retention(
    lake: MaintainedLake, retention_days: dict[str, int], *, now: datetime | None = None, dry_run: bool = False
) -> RetentionReport:
    """Drop whole day partitions older than each table's retention (days).

    The ``series`` catalogue is partitioned by the day a series was first seen, so its retention
    is not a plain drop: an expired partition keeps the entries of series that still have rows in
    a data table (after those tables' own retention), and loses only the others. Otherwise a
    series first seen long ago would vanish from every query while its recent samples stay.

    Every entry is checked before anything is deleted: a bad number must never wipe a table, and a
    bad entry after a good one must not leave the run half done.
    """
    problems = retention_problems(retention_days)
    if problems:
        raise ValueError("; ".join(problems))
    today = (now or datetime.now(UTC)).date()
    report = RetentionReport(dry_run=dry_run)
    st = lake.storage
    cutoffs = {table: today - timedelta(days=days) for table, days in retention_days.items()}
    # The data tables first, so the catalogue sees what is left of them.
    for table in sorted(cutoffs, key=lambda t: t == S.SERIES):
        with st.lock(table):
            for day in st.partitions(table):
                if day >= cutoffs[table]:
                    continue
                if table == S.SERIES:
                    kept = _expire_series_partition(lake, day, cutoffs, dry_run=dry_run)
                    report.series_kept += kept
                    if kept:
                        continue
                report.partitions_dropped.setdefault(table, []).append(day.isoformat())
                if not dry_run:
                    st.delete_partition(table, day)
    return report


def _expire_series_partition(lake: MaintainedLake, day: date, cutoffs: dict[str, date], *, dry_run: bool) -> int:
    """Rewrite an expired catalogue partition down to the series that still have rows; returns how
    many it keeps (0: the caller drops the partition whole)."""
    st = lake.storage
    files = st.files(S.SERIES, day, day)
    young = [f for f in files if f.write_ns > (time.time() - SERIES_WRITE_GRACE_S) * 1e9]
    old = [f for f in files if f not in young]
    if not old:
        return len(young)  # nothing to judge yet; keep the partition
    ids = lake.con.sql("SELECT DISTINCT series_id FROM read_parquet($f)", params={"f": lake._paths(old)}).pl()
    live = _series_with_rows(lake, ids.get_column("series_id").to_list(), cutoffs)
    if not live and not young:
        return 0
    if not dry_run and len(live) < ids.height:
        params: dict[str, Any] = {"f": lake._paths(old), "ids": sorted(live)}
        query = (
            "SELECT series_id, any_value(metric) AS metric, any_value(labels) AS labels, "
            "min(first_seen) AS first_seen FROM read_parquet($f) WHERE series_id IN (SELECT unnest($ids::BIGINT[])) "
            "GROUP BY series_id ORDER BY series_id"
        )
        if live:
            h = hashlib.blake2b("\n".join(f.name for f in old).encode(), digest_size=8).hexdigest()
            _copy_query_to_partition(lake, S.SERIES, day, query, params, max(f.write_ns for f in old), h)
        st.delete([f.path for f in old])
    return len(live) + len(young)


def _series_with_rows(lake: MaintainedLake, ids: list[int], cutoffs: dict[str, date]) -> set[int]:
    """Those of ``ids`` with a row in a data table partition that its retention keeps."""
    st = lake.storage
    live: set[int] = set()
    for table in SERIES_DATA_TABLES:
        cutoff = cutoffs.get(table)
        files = [f for f in st.files(table) if cutoff is None or f.day >= cutoff]
        todo = [i for i in ids if i not in live]
        if not files or not todo:
            continue
        found = lake.con.sql(
            "SELECT DISTINCT series_id FROM read_parquet($f) WHERE series_id IN (SELECT unnest($ids::BIGINT[]))",
            params={"f": lake._paths(files), "ids": todo},
        ).fetchall()
        live.update(int(r[0]) for r in found)
    return live
