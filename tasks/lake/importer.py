"""Import a CSV or Parquet file into the samples table with a column mapping.

People bring exports from other tools, so every problem is reported where they can fix it: the
file's line (CSV, header = line 1) or row (Parquet) and the column name. Good rows are imported
and bad ones listed, unless the lake (or the call) is strict.

Why chunks: a file is read ``lake.import_chunk_rows`` rows at a time, so memory stays bounded
whatever its size; every chunk is validated and staged in one ``Lake.batch()``, so the import
still becomes visible all at once (or not at all, if it fails or strict mode refuses a row).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasks.lake import schema as S
from tasks.lake.write import LakeWriteError, Limits, WriteResult

TZ_SUFFIX = re.compile(r"(Z|z|[+-]\d{2}:?\d{2})$")
MAX_REPORTED = 10
#: Bytes of CSV text parsed at a time (chunks are then cut to ``lake.import_chunk_rows`` rows).
CSV_BLOCK_BYTES = 8 << 20
#: Epoch numbers above this are milliseconds, below it seconds (ms values are > 1e11 since 1973).
MS_THRESHOLD = 1e11
_RANGE = f"between {S.TS_MIN:%Y-%m-%d} and {S.TS_MAX:%Y-%m-%d} UTC"


class StagingBatch(Protocol):
    """One ``Lake.batch()`` as the importer uses it: stage validated parts, count the files at the end."""

    files: list[str]
    duplicate_files: int

    def write_samples(
        self, data: pl.DataFrame, *, now: datetime | None = None, strict: bool | None = None, row_word: str = "row"
    ) -> WriteResult: ...


class ImportTarget(Protocol):
    """What an import needs of a lake; :class:`tasks.lake.lake.Lake` is one.

    Why a Protocol and not ``Lake``: ``Lake.import_file`` delegates here, so ``lake`` imports this
    module; naming ``Lake`` back would make the two import each other (issue 12 item 7).
    """

    @property
    def limits(self) -> Limits: ...

    def batch(self, *, dry_run: bool = False) -> AbstractContextManager[StagingBatch]: ...


class LakeImportError(ValueError):
    """The file cannot be imported as asked; the message names the line/row and column."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    time_col: str
    value_col: str
    metric: str | None = None
    metric_col: str | None = None
    label_cols: tuple[tuple[str, str], ...] = ()  # (label name, column)


def _kind(path: Path, fmt: str | None) -> str:
    kind = (fmt or path.suffix.lstrip(".")).lower()
    if not path.exists():
        raise LakeImportError(f"{path}: no such file")
    if kind in ("csv", "txt", "tsv"):
        return "tsv" if kind == "tsv" else "csv"
    if kind in ("parquet", "pq"):
        return "parquet"
    raise LakeImportError(f"{path}: unknown format {kind!r} (use csv or parquet, or pass fmt)")


class _Reader:
    """A file's columns and its rows ``chunk_rows`` at a time, read on demand.

    Why pyarrow's readers and not polars' ``collect_batches``: polars' streaming engine reads
    ahead of a slow consumer, so its memory grew with the file; these read the next block only
    when asked. CSV columns are read as text (the checks parse them); only an empty field is null.
    """

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        try:
            if kind == "parquet":
                self._pq = pq.ParquetFile(path)
                self.columns: list[str] = self._pq.schema_arrow.names
                return
            sep = "\t" if kind == "tsv" else ","
            with open(path, newline="", encoding="utf-8") as fh:
                self.columns = next(csv.reader(fh, delimiter=sep), [])
            self._csv_opts = (
                pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                pacsv.ParseOptions(delimiter=sep),
                pacsv.ConvertOptions(
                    column_types=dict.fromkeys(self.columns, pa.string()),
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
        except (pa.ArrowException, OSError, UnicodeDecodeError, csv.Error) as e:
            raise LakeImportError(f"{path}: cannot read as {kind}: {_one_line(e)}") from None

    def chunks(self, columns: list[str], chunk_rows: int) -> Iterator[tuple[int, pl.DataFrame]]:
        """(offset of the chunk's first row, chunk) in file order."""
        offset = 0
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            if self.kind == "parquet":
                batches: Iterator[pa.RecordBatch] = self._pq.iter_batches(batch_size=chunk_rows, columns=columns)
            else:
                read, parse, convert = self._csv_opts
                convert.include_columns = columns
                batches = iter(
                    pacsv.open_csv(self.path, read_options=read, parse_options=parse, convert_options=convert)
                )
            for rb in batches:
                pending.append(rb)
                held += rb.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    chunk, rest = table.slice(0, chunk_rows), table.slice(chunk_rows)
                    pending, held = rest.to_batches(), rest.num_rows
                    yield offset, _frame(chunk)
                    offset += chunk_rows
            if held:
                yield offset, _frame(pa.Table.from_batches(pending))
        except (pa.ArrowException, OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as e:
            # A panic inside polars (a BaseException) becomes a one-line error naming the file.
            raise LakeImportError(
                f"{self.path}: cannot read as {self.kind} after row {offset}: {_one_line(e)}"
            ) from None


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _to_datetime(text: pl.Series, tz: str | None) -> pl.Series:
    """ISO 8601 strings as ms datetimes (null where not one); ``tz`` None parses them as naive.

    Polars infers one format for the whole column, which fails on a column whose first date is
    malformed: then the values are parsed one distinct value at a time.
    """
    dtype = pl.Datetime("ms", tz)
    if text.null_count() == text.len():
        return pl.Series(text.name, [None] * text.len(), dtype=dtype)
    try:
        return text.str.to_datetime(strict=False, time_zone=tz, time_unit="ms")
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        pass

    def one(v: str) -> int | None:
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            return None
        if (d.tzinfo is None) != (tz is None):
            return None
        return int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() * 1000)

    ms = text.map_elements(one, return_dtype=pl.Int64, skip_nulls=True)
    return pl.select(pl.from_epoch(ms, time_unit="ms").dt.replace_time_zone(tz)).to_series()


def _epoch(num: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(UTC ms datetimes, out-of-range mask) of epoch seconds or milliseconds.

    The range is checked on the number before it becomes a datetime: converting 2^62 ms wraps
    round to 1970 and 1e16 ms makes polars panic.
    """
    ms = pl.select(pl.when(num.abs() > MS_THRESHOLD).then(num).otherwise(num * 1000)).to_series()
    bad = pl.select(num.is_not_null() & ~ms.is_between(S.TS_MIN_MS, S.TS_MAX_MS)).to_series()
    ok = pl.select(pl.when(bad).then(None).otherwise(ms).cast(pl.Int64)).to_series()
    ts = pl.select(pl.from_epoch(ok, time_unit="ms").dt.replace_time_zone("UTC")).to_series()
    return ts, bad


def _out_of_range(raw: pl.Series) -> pl.Series:
    return pl.lit("timestamp ") + raw + pl.lit(f" is out of range (must be {_RANGE})")  # type: ignore[return-value]


def _parse_time(col: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(UTC timestamps, per-row error text or null)."""
    none = pl.lit(None, dtype=pl.String)
    if col.dtype == pl.String:
        s = col.str.strip_chars()
        numeric = s.cast(pl.Float64, strict=False)
        text = pl.select(pl.when(numeric.is_null()).then(s)).to_series()  # numbers are never dates
        has_tz = text.str.contains(TZ_SUFFIX.pattern)
        # Normalise "Z" to an offset so one inferred format fits the whole column.
        parsed = _to_datetime(text.str.replace(r"[Zz]$", "+00:00"), "UTC")
        naive = _to_datetime(text.str.replace(TZ_SUFFIX.pattern, ""), None)
        from_num, num_bad = _epoch(numeric)
        ts = pl.select(pl.when(numeric.is_not_null()).then(from_num).otherwise(parsed)).to_series()
        err = pl.select(
            pl.when(s.is_null() | (s == ""))
            .then(pl.lit("missing timestamp"))
            .when(num_bad)
            .then(_out_of_range(s))
            .when(numeric.is_null() & ~has_tz & naive.is_not_null())
            .then(pl.lit("naive timestamp ") + s + pl.lit(" (add Z or a UTC offset)"))
            .when(numeric.is_null() & parsed.is_null())
            .then(pl.lit("cannot parse timestamp ") + s.fill_null(""))
            .otherwise(none)
        ).to_series()
        return ts, err
    if isinstance(col.dtype, pl.Datetime):
        if col.dtype.time_zone is None:
            err = pl.select(
                pl.when(col.is_null())
                .then(pl.lit("missing timestamp"))
                .otherwise(pl.lit("naive timestamp ") + col.dt.strftime("%Y-%m-%dT%H:%M:%S%.f"))
            ).to_series()
            return col.dt.replace_time_zone("UTC").dt.cast_time_unit("ms"), err
        ts = col.dt.convert_time_zone("UTC").dt.cast_time_unit("ms")
        epoch_ms = ts.dt.epoch("ms")
        bad = epoch_ms.is_not_null() & ~epoch_ms.is_between(S.TS_MIN_MS, S.TS_MAX_MS)
        err = pl.select(
            pl.when(col.is_null())
            .then(pl.lit("missing timestamp"))
            .when(bad)
            .then(_out_of_range(ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").str.replace(r"\.000Z$", "Z")))
            .otherwise(none)
        ).to_series()
        return pl.select(pl.when(bad).then(None).otherwise(ts)).to_series(), err
    if col.dtype.is_numeric():
        ts, bad = _epoch(col.cast(pl.Float64))
        err = pl.select(
            pl.when(col.is_null())
            .then(pl.lit("missing timestamp"))
            .when(bad)
            .then(_out_of_range(col.cast(pl.String)))
            .otherwise(none)
        ).to_series()
        return ts, err
    raise LakeImportError(f"column {col.name!r}: cannot read timestamps from a {col.dtype} column")


@dataclass(slots=True)
class _Checked:
    """One chunk after the importer's own checks: good rows (with their file numbers) and problems."""

    good: pl.DataFrame
    n_bad: int
    errors: list[tuple[int, str]]  # (row index in the file, message), the first few


def _check_chunk(
    df: pl.DataFrame,
    offset: int,
    mapping: ColumnMapping,
    lake: ImportTarget,
    where: Callable[[int], str],
    future_limit: datetime,
) -> _Checked:
    """The importer's checks, column-wise: only bad rows are visited one by one."""
    n = df.height
    problems: list[pl.Series] = []  # per check, the message per row (null: fine)

    def add(column: str, msg: pl.Series) -> None:
        problems.append(pl.select(pl.when(msg.is_not_null()).then(pl.lit(f", column {column!r}: ") + msg)).to_series())

    ts, ts_err = _parse_time(df.get_column(mapping.time_col))
    skew = lake.limits.max_future_skew_s
    future = pl.select(
        pl.when(ts > pl.lit(future_limit, dtype=S.POLARS_TS)).then(
            pl.lit(f"more than {skew:g}s in the future (") + ts.dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ") + pl.lit(")")
        )
    ).to_series()
    add(mapping.time_col, pl.select(pl.coalesce(ts_err, future)).to_series())

    vcol = df.get_column(mapping.value_col)
    value = vcol.cast(pl.Float64, strict=False) if vcol.dtype != pl.Float64 else vcol
    raw = vcol.cast(pl.String)
    quoted = pl.lit("'") + raw + pl.lit("'")
    add(
        mapping.value_col,
        pl.select(
            pl.when(value.is_null() & (raw.is_null() | (raw == "")))
            .then(pl.lit("missing value"))
            .when(value.is_null())
            .then(pl.lit("not a number: ") + quoted)
            .when(~value.is_finite())
            .then(pl.lit("non-finite value ") + quoted)
        ).to_series(),
    )

    if mapping.metric:
        metric = pl.Series("metric", [mapping.metric] * n, dtype=pl.String)
    else:
        metric = df.get_column(mapping.metric_col or "").cast(pl.String)
        ok = {m: bool(S.METRIC_NAME_RE.match(m)) for m in metric.drop_nulls().unique().to_list()}
        bad_names = [m for m, good in ok.items() if not good]
        add(
            mapping.metric_col or "",
            pl.select(
                pl.when(metric.is_null() | metric.is_in(bad_names)).then(
                    pl.lit("invalid metric name ") + pl.lit("'") + metric.fill_null("None") + pl.lit("'")
                )
            ).to_series(),
        )

    labels, label_problems = _labels(df, mapping, lake)
    problems += label_problems

    msgs = pl.DataFrame({f"p{i}": p for i, p in enumerate(problems)})
    bad_mask = msgs.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
    bad_idx = bad_mask.arg_true()
    errors: list[tuple[int, str]] = []
    for i in bad_idx.head(MAX_REPORTED).to_list():
        for p in problems:  # every problem of a reported row, in column order
            if p[i] is not None and len(errors) < MAX_REPORTED:
                errors.append((offset + i, where(offset + i) + p[i]))
    good = pl.DataFrame(
        {
            "metric": metric,
            "labels": labels,
            "ts": ts,
            "value": value,
            "_row": pl.int_range(offset, offset + n, dtype=pl.Int64, eager=True),
        }
    ).filter(~bad_mask)
    return _Checked(good, int(bad_mask.sum()), errors)


def _labels(df: pl.DataFrame, mapping: ColumnMapping, lake: ImportTarget) -> tuple[pl.Series, list[pl.Series]]:
    """Canonical label text per row and the problems, checked once per distinct label set."""
    n = df.height
    if not mapping.label_cols:
        return pl.Series("labels", ["{}"] * n, dtype=pl.String), []
    names = [label for label, _ in mapping.label_cols]
    by_col = dict(mapping.label_cols)
    frame = pl.DataFrame({f"l{i}": df.get_column(c).cast(pl.String) for i, (_, c) in enumerate(mapping.label_cols)})
    keys = list(frame.columns)
    uniq = frame.unique(maintain_order=True)
    texts: list[str] = []
    errs: list[str | None] = []
    err_cols: list[str | None] = []
    for vals in uniq.iter_rows():
        try:
            texts.append(
                S.canonical_labels(
                    dict(zip(names, vals, strict=True)),
                    max_labels=lake.limits.max_labels,
                    max_value_length=lake.limits.max_value_length,
                )
            )
            errs.append(None)
            err_cols.append(None)
        except S.SchemaError as e:
            texts.append("{}")
            errs.append(str(e))
            err_cols.append(by_col.get(str(e).split(":")[0].removeprefix("labels."), "labels"))
    table = uniq.with_columns(
        pl.Series("_text", texts, dtype=pl.String),
        pl.Series("_err", errs, dtype=pl.String),
        pl.Series("_col", err_cols, dtype=pl.String),
    )
    joined = frame.join(table, on=keys, how="left", nulls_equal=True, maintain_order="left")
    msg = joined.select(
        pl.when(pl.col("_err").is_not_null()).then(
            pl.lit(", column '") + pl.col("_col") + pl.lit("': ") + pl.col("_err")
        )
    ).to_series()
    return joined.get_column("_text"), [msg]


def import_file(
    lake: ImportTarget,
    path: str | Path,
    mapping: ColumnMapping,
    *,
    fmt: str | None = None,
    strict: bool | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> WriteResult:
    path = Path(path)
    kind = _kind(path, fmt)
    text = kind != "parquet"
    where: Callable[[int], str] = (lambda i: f"line {i + 2}") if text else (lambda i: f"row {i + 1}")
    if (mapping.metric is None) == (mapping.metric_col is None):
        raise LakeImportError("mapping: give exactly one of a metric name (--metric) or a metric column (--metric-col)")
    needed = [mapping.time_col, mapping.value_col, *(c for _, c in mapping.label_cols)]
    if mapping.metric_col:
        needed.append(mapping.metric_col)
    reader = _Reader(path, kind)
    columns = reader.columns
    missing = [c for c in needed if c not in columns]
    if missing:
        raise LakeImportError(f"{path}: no column(s) {missing}; the file has {columns}")
    if mapping.metric:
        try:
            S.validate_metric_name(mapping.metric)
        except S.SchemaError as e:
            raise LakeImportError(f"--metric: {e}") from None
    for label, _ in mapping.label_cols:
        try:
            S.validate_label_name(label)
        except S.SchemaError as e:
            raise LakeImportError(f"--label {label}: {e}") from None

    strict = lake.limits.strict if strict is None else strict
    now = now or datetime.now(UTC)
    future_limit = now + timedelta(seconds=lake.limits.max_future_skew_s)
    total = WriteResult(S.SAMPLES)
    with lake.batch(dry_run=dry_run) as batch:
        for offset, chunk in reader.chunks(sorted(set(needed)), lake.limits.import_chunk_rows):
            checked = _check_chunk(chunk, offset, mapping, lake, where, future_limit)
            reasons = [msg for _, msg in checked.errors]
            if checked.n_bad and strict:
                raise LakeImportError(f"{path}: {checked.n_bad} bad row(s), nothing imported: " + "; ".join(reasons))
            total.rejected += checked.n_bad
            total.reasons += reasons
            _write_chunk(batch, checked.good, text, now, strict, path, total)
    total.reasons = total.reasons[:MAX_REPORTED]
    total.files, total.duplicate_files = batch.files, batch.duplicate_files
    return total


def _write_chunk(
    batch: StagingBatch, good: pl.DataFrame, text: bool, now: datetime, strict: bool, path: Path, total: WriteResult
) -> None:
    """Stage a chunk's good rows; rows the writer still refuses are named by their file line/row."""
    numbered = good.with_columns(pl.col("_row") + (2 if text else 1))
    try:
        res = batch.write_samples(numbered, now=now, strict=strict, row_word="line" if text else "row")
    except LakeWriteError as e:
        raise LakeImportError(f"{path}: nothing imported: {e}") from None
    total.accepted += res.accepted
    total.rejected += res.rejected
    total.reasons += res.reasons
    total.new_series += res.new_series


#: What a ``--label`` value must look like; every parse error repeats it.
LABEL_MAP_FORM = "expected LABEL=COLUMN, e.g. --label host=hostname"


def parse_label_maps(items: Iterable[str] | None) -> dict[str, str]:
    """``--label LABEL=COLUMN`` values (repeatable) → ``{label: column}``, the one rule for every caller.

    Why strict: a bare ``--label host`` meant "the column of the same name" in one path and was
    refused in the other, and a repeated label silently kept the last column. Now both sides of
    ``=`` are required (spaces around them ignored), a label may be mapped once, and the label
    name follows Prometheus's rule; every error names the ``--label`` value at fault.
    """
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, col = (part.strip() for part in item.partition("="))
        if not sep or not name or not col:
            raise LakeImportError(f"--label {item!r}: {LABEL_MAP_FORM}")
        try:
            S.validate_label_name(name)
        except S.SchemaError as e:
            raise LakeImportError(f"--label {item!r}: {e}") from None
        if name in out:
            raise LakeImportError(f"--label {item!r}: label {name!r} is already taken from column {out[name]!r}")
        out[name] = col
    return out


__all__ = ["LABEL_MAP_FORM", "ColumnMapping", "LakeImportError", "import_file", "parse_label_maps"]
