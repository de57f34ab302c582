"""Where lake files live: the one module that builds paths and moves files.

Layout: ``<root>/<table>/date=YYYY-MM-DD/<write_ns>-<content_hash>.parquet``.

* ``write_ns`` (nanoseconds since the epoch at write time, zero-padded) orders files by write, so
  "keep the last write" needs no extra column: the newest file name wins.
* ``content_hash`` makes re-sending the same batch a no-op: the file already exists.
* A file is written under a temporary name that does not end in ``.parquet`` and renamed into place,
  so readers (which list ``*.parquet``) never see half a file, and a crash leaves only a
  ``.partial`` file that maintenance sweeps away.

Object storage (``s3://``) goes through pyarrow's filesystem layer. There a PUT is atomic by
itself, so the object is written straight to its final name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARTITION_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
FILE_RE = re.compile(r"^(\d{20})-([0-9a-f]{16})\.parquet$")
TMP_SUFFIX = ".partial"
#: ``_<writer pid>-<uuid>.partial``: the pid lets maintenance leave a live writer's staged files alone.
TMP_RE = re.compile(r"^_(\d+)-[0-9a-f]{32}\.partial$")
ROW_GROUP_SIZE = 122_880
COMPRESSION: Final = "zstd"


@dataclass(frozen=True, slots=True)
class LakeFile:
    """One Parquet file of a table partition."""

    table: str
    day: date
    path: str  # path as the filesystem sees it (local absolute path, or bucket/key for s3)
    name: str
    size: int

    @property
    def write_ns(self) -> int:
        m = FILE_RE.match(self.name)
        return int(m.group(1)) if m else 0


class LakeStorage:
    """Filesystem access for one lake root (a local directory or an ``s3://`` URL)."""

    def __init__(self, root: str, *, s3_options: dict[str, str] | None = None) -> None:
        self.url = root
        if "://" in root and not root.startswith("file://"):
            if root.startswith("s3://"):
                self.fs: pafs.FileSystem = pafs.S3FileSystem(**_s3_kwargs(s3_options or {}))
                base = root.removeprefix("s3://")
            else:
                self.fs, base = pafs.FileSystem.from_uri(root)
            self.base = base.rstrip("/")
            self.local = False
        else:
            p = Path(root.removeprefix("file://")).expanduser().resolve()
            self.fs = pafs.LocalFileSystem()
            self.base = str(p)
            self.local = True

    # ---- paths -------------------------------------------------------------------------------
    def table_dir(self, table: str) -> str:
        return f"{self.base}/{table}"

    def partition_dir(self, table: str, day: date) -> str:
        return f"{self.base}/{table}/date={day.isoformat()}"

    def meta_path(self, name: str) -> str:
        return f"{self.base}/_meta/{name}"

    # ---- listing -----------------------------------------------------------------------------
    def partitions(self, table: str) -> list[date]:
        sel = pafs.FileSelector(self.table_dir(table), allow_not_found=True)
        days = []
        for info in self.fs.get_file_info(sel):
            if info.type == pafs.FileType.Directory:
                m = PARTITION_RE.match(info.base_name)
                if m:
                    days.append(date.fromisoformat(m.group(1)))
        return sorted(days)

    def files(self, table: str, start: date | None = None, end: date | None = None) -> list[LakeFile]:
        """Committed files of ``table`` whose partition day is within [start, end] (inclusive)."""
        out: list[LakeFile] = []
        for day in self.partitions(table):
            if (start and day < start) or (end and day > end):
                continue
            sel = pafs.FileSelector(self.partition_dir(table, day), allow_not_found=True)
            for info in self.fs.get_file_info(sel):
                if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
                    out.append(LakeFile(table, day, info.path, info.base_name, info.size or 0))
        out.sort(key=lambda f: (f.day, f.name))
        return out

    def temp_files(self, table: str) -> list[str]:
        out: list[str] = []
        for day in self.partitions(table):
            sel = pafs.FileSelector(self.partition_dir(table, day), allow_not_found=True)
            out += [i.path for i in self.fs.get_file_info(sel) if i.base_name.endswith(TMP_SUFFIX)]
        return out

    def exists_with_hash(self, table: str, day: date, content_hash: str) -> bool:
        sel = pafs.FileSelector(self.partition_dir(table, day), allow_not_found=True)
        suffix = f"-{content_hash}.parquet"
        return any(i.base_name.endswith(suffix) for i in self.fs.get_file_info(sel))

    def sql_path(self, f: LakeFile | str) -> str:
        """A path DuckDB's ``read_parquet`` can open (local files only)."""
        return f.path if isinstance(f, LakeFile) else f

    # ---- writing -----------------------------------------------------------------------------
    def write_table(
        self,
        table_name: str,
        day: date,
        data: pa.Table | pl.DataFrame,
        content_hash: str,
        *,
        write_ns: int | None = None,
        schema: pa.Schema | None = None,
    ) -> str:
        """Write ``data`` as one committed file of the partition; returns its path.

        The file appears atomically (temp name + rename, fsync'd) or not at all. A polars frame
        is written by polars' own (multi-threaded) Parquet writer on local disks.
        """
        if not self.local:
            final = self._final_name(table_name, day, content_hash, write_ns)
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            pq.write_table(
                _as_arrow(data, schema),
                final,
                filesystem=self.fs,
                compression=COMPRESSION,
                row_group_size=ROW_GROUP_SIZE,
            )
            return final
        tmp = self.write_temp(table_name, day, data)
        return self.commit(tmp, table_name, day, content_hash, write_ns=write_ns)

    def _final_name(self, table_name: str, day: date, content_hash: str, write_ns: int | None) -> str:
        ns = write_ns if write_ns is not None else time.time_ns()
        return f"{self.partition_dir(table_name, day)}/{ns:020d}-{content_hash}.parquet"

    def write_temp(self, table_name: str, day: date, data: pa.Table | pl.DataFrame) -> str:
        """Write a partition file under a temporary name (invisible to readers), fsync'd (local only)."""
        d = self.partition_dir(table_name, day)
        os.makedirs(d, exist_ok=True)
        tmp = f"{d}/_{os.getpid()}-{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            if isinstance(data, pl.DataFrame):
                data.write_parquet(tmp, compression=COMPRESSION, row_group_size=ROW_GROUP_SIZE, statistics=True)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                with open(tmp, "wb") as fh:
                    pq.write_table(data, fh, compression=COMPRESSION, row_group_size=ROW_GROUP_SIZE)
                    fh.flush()
                    os.fsync(fh.fileno())
        except BaseException:
            self.discard(tmp)
            raise
        return tmp

    def commit(self, tmp: str, table_name: str, day: date, content_hash: str, *, write_ns: int | None = None) -> str:
        """Rename a temp file into place: from this instant readers see the whole file."""
        final = self._final_name(table_name, day, content_hash, write_ns)
        try:
            os.rename(tmp, final)
        except BaseException:
            self.discard(tmp)
            raise
        _fsync_dir(final.rsplit("/", 1)[0])
        return final

    def discard(self, tmp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    def delete(self, paths: list[str]) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(p)

    def delete_partition(self, table: str, day: date) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(self.partition_dir(table, day))

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except (FileNotFoundError, OSError):
            return None

    def write_bytes_atomic(self, path: str, payload: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            with self.fs.open_output_stream(path) as fh:
                fh.write(payload)
            return
        tmp = f"{path}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout_s: float = 600.0) -> Iterator[None]:
        """An exclusive advisory lock for maintenance on one table (local lakes only).

        Writers never take it: appends do not conflict. Only compaction, rollups and retention do,
        because two of them rewriting one partition at once could each delete the other's output.
        """
        if not self.local:
            yield
            return
        d = f"{self.base}/_meta/locks"
        os.makedirs(d, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        with open(f"{d}/{name}.lock", "w") as fh:
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"lake lock {name!r} held by another process for {timeout_s}s") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _as_arrow(data: pa.Table | pl.DataFrame, schema: pa.Schema | None) -> pa.Table:
    if isinstance(data, pl.DataFrame):
        arrow = data.to_arrow()
        return arrow.cast(schema) if schema is not None else arrow
    return data


def _s3_kwargs(opts: dict[str, str]) -> dict[str, str]:
    """pyarrow S3 options; an endpoint given as a URL (``http://host:port``) sets the scheme too."""
    out = dict(opts)
    ep = out.get("endpoint_override")
    if ep and "://" in ep:
        scheme, _, rest = ep.partition("://")
        out["endpoint_override"] = rest.rstrip("/")
        out.setdefault("scheme", scheme)
    return out


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_writer_alive(path: str) -> bool:
    """Whether the process that is writing temp file ``path`` still runs (this machine's pids).

    An import stages its files for as long as it reads its input, which may be longer than the
    age after which maintenance sweeps a crashed writer's leftovers.
    """
    m = TMP_RE.match(path.rsplit("/", 1)[-1])
    if not m:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
