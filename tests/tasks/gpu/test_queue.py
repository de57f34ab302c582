"""The durable queue on a real state DB: order, aging, quotas, cancel, expiry, restart, crashes."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.config import Settings
from tasks.gpu.cluster import Cluster, NodeSpec
from tasks.gpu.queue import GpuQueue, QueueError
from tasks.gpu.request import GpuRequest, RequestError, parse_bytes
from tasks.gpu.scheduler import default_strategy, place_queued, set_default_strategy
from tasks.state import ClaimOwner, State

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def req(gpus: int = 1, *, priority: int = 0, owner: str = "ann", fraction: float = 1.0, **kw: object) -> GpuRequest:
    return GpuRequest("command", gpus, command=("true",), priority=priority, owner=owner, fraction=fraction, **kw)  # type: ignore[arg-type]


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(str(tmp_path / "state.duckdb"))


def test_priority_then_fifo(state: State) -> None:
    q = GpuQueue(state, aging_s=3600)
    a = q.submit(req(priority=0), now=T0)
    b = q.submit(req(priority=5), now=T0 + timedelta(seconds=1))
    c = q.submit(req(priority=0), now=T0 + timedelta(seconds=2))
    d = q.submit(req(priority=5), now=T0 + timedelta(seconds=3))
    assert [r.id for r in q.ordered(now=T0 + timedelta(seconds=10))] == [b.id, d.id, a.id, c.id]


def test_aging_lifts_a_starved_task(state: State) -> None:
    q = GpuQueue(state, aging_s=60)
    old = q.submit(req(priority=0), now=T0)
    new = q.submit(req(priority=3), now=T0 + timedelta(seconds=170))
    # at 171 s the old task has aged 2 levels (0 → 2): the priority-3 one goes first
    assert [r.id for r in q.ordered(now=T0 + timedelta(seconds=171))] == [new.id, old.id]
    # at 240 s it has aged 4 levels, the new one 1 (3 → 4): equal, and the older goes first
    assert [r.id for r in q.ordered(now=T0 + timedelta(seconds=240))] == [old.id, new.id]
    assert q.get(old.id).effective_priority(T0 + timedelta(seconds=240), 60) == 4  # type: ignore[union-attr]


def test_restart_keeps_the_queue(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    a = GpuQueue(State(path)).submit(req(2, priority=3, owner="bob"))
    again = GpuQueue(State(path))  # a new process would do exactly this
    rows = again.tasks()
    assert [(r.id, r.gpus, r.priority, r.owner, r.status) for r in rows] == [(a.id, 2, 3, "bob", "queued")]


def test_cancel_and_errors(state: State) -> None:
    q = GpuQueue(state)
    a = q.submit(req())
    assert q.cancel(a.id).status == "cancelled"
    with pytest.raises(QueueError, match="already cancelled"):
        q.cancel(a.id)
    with pytest.raises(QueueError, match="no task 'nope'"):
        q.cancel("nope")
    assert q.ordered() == []


def test_expiry_after_max_wait(state: State) -> None:
    q = GpuQueue(state)
    short = q.submit(req(max_wait_s=60), now=T0)
    long = q.submit(req(max_wait_s=3600), now=T0)
    assert q.expire(now=T0 + timedelta(seconds=61)) == [short.id]
    assert q.get(short.id).status == "expired"  # type: ignore[union-attr]
    assert q.get(long.id).status == "queued"  # type: ignore[union-attr]


def test_crashed_holder_releases_its_reservation(state: State) -> None:
    q = GpuQueue(state)
    a = q.submit(req())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert q.start(a.id, "n", ["0"], ClaimOwner.of_process(child.pid))
        assert q.reconcile() == []  # alive: kept
        assert [r.id for r in q.reservations()] == [a.id]
    finally:
        child.kill()
        child.wait()
    assert q.reconcile() == [a.id]
    row = q.get(a.id)
    assert row is not None and row.status == "lost" and "is gone" in (row.reason or "")
    assert q.reservations() == []


def settings(tmp_path: Path, **queue: object) -> Settings:
    return Settings.model_validate({"state": {"path": str(tmp_path / "state.duckdb")}, "gpu": {"queue": queue}})


def two_nodes() -> Cluster:
    return Cluster.from_nodes([NodeSpec("n1", [1000, 1000]), NodeSpec("n2", [1000, 1000, 1000, 1000])])


def test_quota_blocks_an_owner_over_quota(tmp_path: Path) -> None:
    s = settings(tmp_path, quotas={"ann": 2})
    st = State(s.state.path)
    q = GpuQueue(st)
    first = q.submit(req(2, owner="ann"), now=T0)
    over = q.submit(req(1, owner="ann"), now=T0 + timedelta(seconds=1))
    other = q.submit(req(1, owner="bob"), now=T0 + timedelta(seconds=2))
    res = place_queued(s, st, two_nodes(), dry_run=True, now=T0 + timedelta(seconds=5))
    by = {d.task_id: d for d in res.decisions}
    assert by[first.id].placed and by[other.id].placed
    assert not by[over.id].placed and by[over.id].reason == "owner ann at quota (2 GPUs)"
    # dry run: nothing changed
    assert {r.status for r in q.tasks()} == {"queued"}


def test_reservations_are_respected_by_the_next_pass(tmp_path: Path) -> None:
    s = settings(tmp_path)
    st = State(s.state.path)
    q = GpuQueue(st)
    a = q.submit(req(4), now=T0)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert q.start(a.id, "n2", ["0", "1", "2", "3"], ClaimOwner.of_process(live.pid))
        b = q.submit(req(4), now=T0)
        res = place_queued(s, st, two_nodes(), dry_run=True)
        assert [(d.task_id, d.placed) for d in res.decisions] == [(b.id, False)]
    finally:
        live.kill()
        live.wait()
    res = place_queued(s, st, two_nodes(), dry_run=True)  # dry run: the dead holder is not judged
    assert not res.decisions[0].placed


def test_strategy_persists(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert default_strategy(s, State(s.state.path)) == "fragmentation_aware"
    set_default_strategy(State(s.state.path), "spread")
    assert default_strategy(s, State(s.state.path)) == "spread"
    with pytest.raises(ValueError, match="strategy: unknown 'nope'"):
        set_default_strategy(State(s.state.path), "nope")
    assert default_strategy(s, State(s.state.path)) == "spread"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": 0}, "gpus: 0 is not between 1 and 64"),
        ({"gpus": 2, "fraction": 0.5}, "gpu-fraction: 0.5 with gpus=2"),
        ({"gpus": 1, "fraction": 1.5}, r"gpu-fraction: 1.5 is not in \(0, 1\]"),
        ({"gpus": 1, "memory_bytes": -1}, "memory: -1 bytes is negative"),
        ({"gpus": 1, "owner": "a b"}, "owner: 'a b'"),
        ({"gpus": 1, "priority": 5000}, "priority: 5000"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RequestError, match=message):
        GpuRequest("command", command=("x",), **kwargs)  # type: ignore[arg-type]


def test_more_gpus_than_any_node_and_sizes() -> None:
    with pytest.raises(RequestError, match=r"gpus: 16 is more than any node has \(the largest has 8\)"):
        req(16).check_fits(8)
    assert parse_bytes("20GiB") == 20 << 30 and parse_bytes("1.5GB") == 1_500_000_000 and parse_bytes("512") == 512
    for bad, msg in (("-1GiB", "negative"), ("lots", "not a size"), ("2TiB", "1 TiB bound")):
        with pytest.raises(RequestError, match=f"memory: .*{msg}"):
            parse_bytes(bad)
