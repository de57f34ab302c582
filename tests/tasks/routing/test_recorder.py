"""The outcome recorder: batches in the lake, a query.routed summary per flush, nothing lost on stop."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from routerhttp import Backend, Service

from tasks.config import Settings
from tasks.config.routing import RouterSettings
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.routing.model import Query
from tasks.routing.proxy import build_app
from tasks.routing.recorder import OutcomeRecorder, outcome_summary
from tasks.routing.router import Router

NOW = datetime.now(UTC)


def _router(batch: int, flush_s: float = 60.0) -> Router:
    return Router(
        RouterSettings.model_validate(
            {
                "pools": [{"name": "api", "targets": [{"name": "a", "url": "http://127.0.0.1:9"}]}],
                "service": {"outcome_batch": batch, "flush_s": flush_s},
            }
        )
    )


def _outcomes(router: Router, n: int, *, fail_every: int = 0) -> None:
    for i in range(n):
        d = router.route(Query(path=f"/q/{i}", kind="k"))
        bad = fail_every and i % fail_every == 0
        router.record(d, status=503 if bad else 200, latency_ms=float(i))


def _rows(lake: Lake) -> list[dict[str, object]]:
    return lake.read_rows(S.ROUTER_OUTCOMES, NOW - timedelta(days=1), NOW + timedelta(days=1)).to_dicts()


def _files(lake_dir: Path) -> list[Path]:
    return sorted((lake_dir / S.ROUTER_OUTCOMES).rglob("*.parquet"))


def test_flush_writes_batches_of_at_most_outcome_batch(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    router = _router(batch=4)
    _outcomes(router, 10, fail_every=5)
    rec = OutcomeRecorder(router, lake)
    assert rec.flush() == 10
    assert len(_files(tmp_path / "lake")) == 3  # 4 + 4 + 2
    rows = _rows(lake)
    assert sorted(r["path"] for r in rows) == sorted(f"/q/{i}" for i in range(10))
    assert sum(not r["ok"] for r in rows) == 2
    assert router.buffered == 0 and rec.flush() == 0
    events = lake.events(since=NOW - timedelta(days=1), name="query.routed")
    assert events.height == 3  # one summary per flush, not one per request
    assert sum(json.loads(p)["outcomes"] for p in events.get_column("payload")) == 10


def test_summary_counts_per_pool_and_target() -> None:
    router = _router(batch=10)
    _outcomes(router, 4, fail_every=2)
    summary = outcome_summary(router.drain())
    assert summary["outcomes"] == 4 and summary["failures"] == 2
    assert summary["pools"] == {"api": {"a": {"requests": 4, "failures": 2, "mean_ms": 1.5}}}


def test_a_failed_write_keeps_the_rows_for_the_next_flush(tmp_path: Path) -> None:
    blocker = tmp_path / "lake"
    blocker.write_text("not a folder")  # the lake cannot write under a file
    router = _router(batch=100)
    _outcomes(router, 5)
    rec = OutcomeRecorder(router, Lake(str(blocker)), events=False)
    assert rec.flush() == 0
    assert rec.failed_writes == 1 and rec.snapshot()["waiting_retry"] == 5 and rec.last_error
    blocker.unlink()
    assert rec.flush() == 5
    assert len(_rows(Lake(str(blocker)))) == 5


def test_the_service_writes_in_batches_and_loses_nothing_on_stop(tmp_path: Path) -> None:
    backend = Backend("a")
    lake = Lake(str(tmp_path / "lake"))
    rs = RouterSettings.model_validate(
        {
            "pools": [{"name": "api", "targets": [{"name": "a", "url": backend.url}]}],
            "service": {"outcome_batch": 5, "flush_s": 3600},
        }
    )
    router = Router(rs)
    service = Service(build_app(router, Settings(router=rs), lake))
    try:
        with httpx.Client(base_url=service.url) as client:
            for i in range(12):
                assert client.get(f"/echo/{i}").status_code == 200
        # a batch is written as soon as outcome_batch are waiting, without waiting for flush_s
        for _ in range(500):
            if len(_files(tmp_path / "lake")) >= 2:
                break
            time.sleep(0.01)
        assert len(_files(tmp_path / "lake")) >= 2
    finally:
        service.stop()  # the lifespan's shutdown writes the last 2
        backend.close()
    rows = _rows(lake)
    assert sorted(r["path"] for r in rows) == sorted(f"/echo/{i}" for i in range(12))
    assert len({r["outcome_id"] for r in rows}) == 12  # none written twice
    assert router.buffered == 0


def test_each_tick_writes_the_routers_health_for_rules_to_read(tmp_path: Path) -> None:

    lake = Lake(str(tmp_path / "lake"))
    router = _router(batch=100, flush_s=0.05)
    for _ in range(5):  # five failures in a row: ejected and breaker open
        router.record(router.route(Query(path="/x")), status=503, latency_ms=1.0)
    rec = OutcomeRecorder(router, lake, name="edge")

    async def run() -> None:
        await rec.start()
        while rec.health_writes < 2:
            await asyncio.sleep(0.01)
        await rec.stop()

    asyncio.run(run())
    got = lake.latest('router_pool_healthy_ratio{router="edge",pool="api"}')
    assert got.height == 1 and got.get_column("value")[0] == 0.0
    ejected = lake.latest('router_target_ejected{router="edge",pool="api",target="a"}')
    assert ejected.get_column("value")[0] == 1.0
    assert len(_rows(lake)) == 5  # and the outcomes themselves


def test_the_writer_process_writes_and_a_killed_writer_loses_nothing(tmp_path: Path) -> None:
    """With the lake's settings, batches go to a writer process (off the proxy's GIL); when that
    process dies, the batch it held is kept, a new writer takes over, and nothing is lost or doubled."""
    import os
    import signal

    from tasks.config.settings import LakeSettings

    lake = Lake.from_lake_settings(LakeSettings(root=str(tmp_path / "lake")))
    assert lake.settings is not None
    router = _router(batch=10)
    rec = OutcomeRecorder(router, lake, lake_settings=lake.settings)

    async def run() -> None:
        _outcomes(router, 10)
        assert await rec.flush_async() == 10  # a writer process wrote it
        pool = rec._pool
        assert pool is not None
        (pid,) = pool._processes  # the one writer
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        _outcomes(router, 10)
        assert await rec.flush_async() == 0  # the dead writer's batch is kept...
        assert rec.writer_restarts == 1 and rec.failed_writes == 1
        while await rec.flush_async() > 0:  # ...and written by the next one
            pass
        await rec.stop()

    asyncio.run(run())
    rows = _rows(lake)
    assert len(rows) == 20 and len({r["outcome_id"] for r in rows}) == 20
    assert rec.lost == 0 and rec._pool is None
