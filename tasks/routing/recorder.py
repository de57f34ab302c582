"""Writes the router's outcomes to the lake in batches, off the request path.

Why batches: the proxy answers hundreds of requests a second; one Parquet file per request would
swamp the lake (and the event loop) — so the ``Router`` buffers each ``Outcome`` in memory
(bounded: past its limit it drops and counts) and this task drains it every ``service.flush_s``, or
as soon as ``service.outcome_batch`` are waiting, writing each batch as one file
(``router_outcomes``) from a worker thread so the event loop never waits on disk or S3. Each flush
also appends one ``query.routed`` event: counts per pool and target (requests, failures, mean
latency), never one event per request.

Each tick (``service.flush_s``) also writes the router's health (``tasks.routing.health``: healthy
targets, breaker states, ejections, pending, EWMA per target; a pool's healthy ratio and panic), so
a rule can alert on it (``data/examples/alerting/router-rules.yml``) — even when no request came.

Where the writes run: given the lake's settings (the proxy passes them), in one **writer process**
(``spawn``), so building frames, Parquet and the health samples never holds the proxy's GIL — in a
worker thread they cost the proxy ~200 µs of CPU per request and its tail at 1,000 req/s (measured,
BENCHMARKS.md "Proxy overhead"). The batch crosses as plain tuples. A writer that dies is replaced
at the next flush and its batch kept for it, so nothing is lost; without settings (tests, in-process
use) the writes run in a worker thread.

Stopping writes everything still buffered (no outcome is lost on a clean stop). A failed write is
logged and its rows kept for the next flush (bounded, oldest dropped first and counted), so a
lake that is briefly unreachable loses nothing; re-sent rows are harmless (``outcome_id`` is the
table's identity).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any

import polars as pl

from tasks.config.settings import LakeSettings
from tasks.events import emit
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.redact import redact_url
from tasks.routing.health import write_health
from tasks.routing.model import Outcome
from tasks.routing.router import Router

__all__ = ["OutcomeRecorder", "outcome_summary", "outcomes_frame"]

log = logging.getLogger("cortex_perf.router")

_POLARS_SCHEMA = dict(pl.from_arrow(S.ROUTER_OUTCOMES_SCHEMA.empty_table()).schema)  # type: ignore[union-attr]
# keep at most this many batches' worth of rows waiting for a lake that refuses writes
_RETRY_BATCHES = 10


def outcomes_frame(outcomes: Sequence[Outcome]) -> pl.DataFrame:
    """Outcomes as a ``router_outcomes`` frame (the lake's schema, one row each)."""
    # a column at a time by attribute, not ``asdict`` per row: asdict deep-copies every field
    # (measured 27 ms per 1,000 outcomes here, ~27 µs of the proxy's CPU per request; this ~2 ms)
    cols = {name: [getattr(o, name) for o in outcomes] for name in _POLARS_SCHEMA}
    return pl.DataFrame(cols, schema=_POLARS_SCHEMA)


def outcome_summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The ``query.routed`` payload of one flush: per pool and target, requests/failures/mean ms."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0.0]))
    for o in outcomes:
        a = acc[o.pool][o.target]
        a[0] += 1
        a[1] += 0 if o.ok else 1
        a[2] += o.latency_ms
    pools = {
        pool: {
            target: {"requests": int(n), "failures": int(f), "mean_ms": round(total / n, 3)}
            for target, (n, f, total) in sorted(targets.items())
        }
        for pool, targets in sorted(acc.items())
    }
    return {
        "outcomes": len(outcomes),
        "failures": sum(0 if o.ok else 1 for o in outcomes),
        "start": min(o.ts for o in outcomes).isoformat() if outcomes else None,
        "end": max(o.ts for o in outcomes).isoformat() if outcomes else None,
        "pools": pools,
    }


_FIELDS = tuple(Outcome.__dataclass_fields__)


def _row(o: Outcome) -> tuple[Any, ...]:
    return tuple(getattr(o, f) for f in _FIELDS)


#: the writer process's lake, built once by ``_writer_init``
_WRITER_LAKE: Lake | None = None


def _writer_init(lake_settings: LakeSettings) -> None:
    global _WRITER_LAKE
    _WRITER_LAKE = Lake.from_lake_settings(lake_settings)


def _writer_outcomes(rows: list[tuple[Any, ...]], events: bool) -> None:
    """In the writer process: one lake file for the batch and its summary event."""
    assert _WRITER_LAKE is not None
    write_outcomes(_WRITER_LAKE, [Outcome(*r) for r in rows], events=events)


def _writer_health(status: dict[str, Any], now: datetime, name: str) -> None:
    assert _WRITER_LAKE is not None
    write_health(_WRITER_LAKE, status, now, name)


def write_outcomes(lake: Lake, batch: Sequence[Outcome], *, events: bool = True) -> None:
    """One lake file for ``batch``, and its ``query.routed`` summary event (a lost summary is only logged)."""
    lake.write_rows(S.ROUTER_OUTCOMES, outcomes_frame(batch))
    if events:
        try:
            emit(lake, "query.routed", "router.proxy", outcome_summary(batch))
        except Exception as exc:  # the outcomes are written; a lost summary is only logged
            log.warning("router: query.routed event not written: %s", redact_url(str(exc)))


class OutcomeRecorder:
    """Drains ``router`` into ``lake``: a background task of the proxy (``start``/``stop``), or
    ``flush()`` called directly (the CLI's in-process use, tests)."""

    def __init__(
        self,
        router: Router,
        lake: Lake,
        *,
        events: bool = True,
        name: str = "default",
        lake_settings: LakeSettings | None = None,
    ) -> None:
        """``lake_settings``: write from a writer process that opens this lake (see the module
        docstring); ``None``: from a worker thread of this process, into ``lake``."""
        self.router = router
        self.lake = lake
        self.events = events
        self.lake_settings = lake_settings
        self._pool: ProcessPoolExecutor | None = None
        self.writer_restarts = 0
        self.name = name  # the ``router`` label of the health samples
        self.health_writes = 0
        self.written = 0  # rows written since start
        self.flushes = 0  # lake batches written
        self.failed_writes = 0
        self.lost = 0  # rows dropped after repeated failed writes
        self.last_error: str | None = None
        self.last_flush: float | None = None  # wall time of the last successful write
        self._noted = 0  # outcomes recorded since the last drain (the proxy's cheap counter)
        self._retry: list[Outcome] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ---- the proxy's side -----------------------------------------------------------------------
    def note(self) -> None:
        """One outcome was recorded (called by the proxy per outcome: a counter, nothing more)."""
        self._noted += 1
        if self._wake is not None and self._noted >= self.router.settings.service.outcome_batch:
            self._wake.set()

    def _writer(self) -> ProcessPoolExecutor | None:
        """The writer process (started on first use, replaced when it died); None: write in a thread."""
        if self.lake_settings is None:
            return None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process running an event loop
                initializer=_writer_init,
                initargs=(self.lake_settings,),
            )
        return self._pool

    def _writer_died(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self.writer_restarts += 1

    async def _write_off_loop(self, batch: list[Outcome]) -> None:
        pool = self._writer()
        if pool is None:
            await asyncio.to_thread(self._write, batch)
        else:
            await self._submit(pool, _writer_outcomes, [_row(o) for o in batch], self.events)

    async def _health_off_loop(self, status: dict[str, Any], now: datetime) -> None:
        pool = self._writer()
        if pool is None:
            await asyncio.to_thread(self._health, status, now, self.name)
        else:
            await self._submit(pool, _writer_health, status, now, self.name)

    async def _submit(self, pool: ProcessPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        try:
            await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            self._writer_died()  # the next flush starts a new writer; the caller keeps the batch
            raise

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="router-recorder")

    async def stop(self) -> None:
        """Stop the loop, then write every outcome still buffered."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while await self.flush_async() > 0:
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.router.settings.service.flush_s)
            self._wake.clear()
            try:
                await self.flush_async()
            except Exception as exc:  # never let the recorder die: the next flush tries again
                log.error("router: recording outcomes failed: %s", redact_url(str(exc)))
            await self.health_async()

    async def health_async(self) -> None:
        """Write the router's health now: the status is read on the loop (live state), written off it."""
        status = self.router.status()
        try:
            await self._health_off_loop(status, datetime.now(UTC))
            self.health_writes += 1
        except Exception as exc:  # health is telemetry: a failed write is logged, the next tick tries again
            log.error("router: writing health failed: %s", redact_url(str(exc)))

    # ---- flushing ----------------------------------------------------------------------------
    def _take(self) -> list[Outcome]:
        """At most one batch: rows a failed write left first, then the router's buffer (event loop)."""
        limit = self.router.settings.service.outcome_batch
        batch, self._retry = self._retry[:limit], self._retry[limit:]
        if len(batch) < limit:
            batch.extend(self.router.drain(limit - len(batch)))
        self._noted = 0
        return batch

    def _write(self, batch: list[Outcome]) -> None:
        """One lake file for the batch, and its summary event (in this process)."""
        write_outcomes(self.lake, batch, events=self.events)

    def _health(self, status: dict[str, Any], now: datetime, name: str) -> None:
        write_health(self.lake, status, now, name)

    def _done(self, batch: list[Outcome], exc: BaseException | None) -> int:
        if exc is None:
            self.written += len(batch)
            self.flushes += 1
            self.last_flush = time.time()
            return len(batch)
        self.failed_writes += 1
        self.last_error = redact_url(str(exc))[:500]
        log.error("router: writing %d outcomes failed (kept for the next flush): %s", len(batch), self.last_error)
        keep = self.router.settings.service.outcome_batch * _RETRY_BATCHES
        self._retry = batch + self._retry
        if len(self._retry) > keep:
            self.lost += len(self._retry) - keep
            self._retry = self._retry[-keep:]
        return 0

    async def flush_async(self) -> int:
        """Write one batch from a worker thread; returns the rows written (0: nothing or it failed)."""
        async with self._lock:
            batch = self._take()
            if not batch:
                return 0
            try:
                await self._write_off_loop(batch)
            except Exception as exc:
                return self._done(batch, exc)
            return self._done(batch, None)

    def flush(self) -> int:
        """Write everything buffered now, in batches, in this thread (no event loop needed)."""
        total = 0
        while True:
            batch = self._take()
            if not batch:
                return total
            try:
                self._write(batch)
            except Exception as exc:
                self._done(batch, exc)
                return total
            total += self._done(batch, None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "flushes": self.flushes,
            "failed_writes": self.failed_writes,
            "waiting_retry": len(self._retry),
            "lost": self.lost,
            "last_error": self.last_error,
            "last_flush_age_s": None if self.last_flush is None else round(time.time() - self.last_flush, 3),
        }
