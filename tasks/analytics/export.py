"""Export a lake table or the samples of a selector to CSV, Parquet or JSON lines, streamed by DuckDB.

Why ``COPY (SELECT …) TO``: DuckDB reads the Parquet files and writes the output in batches under
the lake's memory limit (spilling its sort to disk), so exporting a year of samples never holds
the result in Python memory. The query runs over ``Lake.views()`` — the lake's own views over the
files committed right now — so no path or schema is built here.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.analytics.common import AnalyticsError, check_range
from tasks.lake import Lake
from tasks.lake import schema as S

__all__ = ["FORMATS", "ExportResult", "export"]

#: ``.<name>.cortex-export-<pid>.tmp``: where an export writes before renaming onto its target.
TMP_RE = re.compile(r"^\..+\.cortex-export-(\d+)\.tmp$")

#: Output format → DuckDB COPY options. ``jsonl``: one JSON object per line.
FORMATS = {
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
    "jsonl": "FORMAT json",
}


@dataclass(slots=True)
class ExportResult:
    """What was written: where, in which format, how many rows and bytes, from what."""

    path: str
    fmt: str
    rows: int
    bytes: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def export(
    lake: Lake,
    table_or_selector: str,
    fmt: str,
    out: str | os.PathLike[str],
    *,
    start: datetime,
    end: datetime,
) -> ExportResult:
    """Write rows of [start, end) to ``out`` in ``fmt`` (``csv``, ``parquet``, ``jsonl``).

    ``table_or_selector`` is a lake table name (``samples``, ``events``, ``forecasts``,
    ``anomalies``, ``notifications``, ``rollup_1h`` …) or a series selector
    (``http_request_duration_seconds_p95{host="web-1"}``), which exports those series' samples.
    Rows are de-duplicated on the table's identity (a re-sent batch is exported once) and ordered
    by it, so two exports of the same data are identical files.
    """
    start, end = check_range(start, end)
    fmt_key = str(fmt).lower().lstrip(".")
    if fmt_key == "json":
        fmt_key = "jsonl"
    if fmt_key not in FORMATS:
        raise AnalyticsError(f"fmt: unknown format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if not isinstance(table_or_selector, str) or not table_or_selector.strip():
        raise AnalyticsError("table_or_selector: empty (give a table name or a series selector)")
    what = table_or_selector.strip()
    # Through a symlink to its target: the link stays, the file it points to is replaced.
    path = Path(os.path.realpath(out))
    if path.exists() and path.is_dir():
        raise AnalyticsError(f"out: {str(path)!r} is a directory (give a file path)")
    if not path.parent.exists():
        raise AnalyticsError(f"out: folder {str(path.parent)!r} does not exist")

    params: dict[str, Any] = {"start": start, "end": end}
    if what in S.TABLE_SCHEMAS:
        if what == S.SERIES:
            raise AnalyticsError("table_or_selector: 'series' is the catalogue, not time-ranged; use lake.catalogue()")
        table = what
        where = ""
    else:
        try:
            matched = lake.series(what)
        except ValueError as e:
            raise AnalyticsError(
                f"table_or_selector: {what!r} is neither a lake table ({', '.join(sorted(S.TABLE_SCHEMAS))}) "
                f"nor a series selector ({e})"
            ) from None
        table = S.SAMPLES
        params["ids"] = matched.get_column("series_id").to_list()
        where = " AND series_id IN (SELECT unnest($ids::BIGINT[]))"
    ident = ", ".join(S.IDENTITY[table])
    tcol = S.PARTITION_COLUMN.get(table, "ts")
    cols = ", ".join(f.name for f in S.TABLE_SCHEMAS[table])
    query = (
        f'SELECT DISTINCT ON ({ident}) {cols} FROM "{table}" '
        f"WHERE {tcol} >= $start AND {tcol} < $end{where} ORDER BY {ident}"
    )
    _sweep_dead_temps(path.parent)
    tmp = path.with_name(f".{path.name}.cortex-export-{os.getpid()}.tmp")
    con = lake.views()
    try:
        # COPY answers with the number of rows it wrote: no second pass to count them.
        rows = con.execute(f"COPY ({query}) TO {_quote(str(tmp))} ({FORMATS[fmt_key]})", params).fetchall()[0][0]
        os.replace(tmp, path)  # readers never see a half-written export
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        con.close()
    return ExportResult(str(out), fmt_key, int(rows), path.stat().st_size, what)


def _sweep_dead_temps(folder: Path) -> None:
    """Remove the temp files of exports into ``folder`` whose process is gone.

    A process killed outright (SIGKILL, power loss) cannot clean up after itself; the next export
    into the same folder does. A live export's temp file (its pid still runs) is left alone.
    """
    for entry in folder.iterdir():
        m = TMP_RE.match(entry.name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
