"""A slot move killed with SIGKILL between MIGRATING and SETSLOT NODE: ``check`` sees it, ``fix`` repairs it.

The move runs in a subprocess whose ``on_step`` hook writes a marker after a given stage and then
waits, so the test kills it at exactly that point (deterministic, no timing): after IMPORTING on
the target, after MIGRATING on the source, after the first MIGRATE batch (ten of the slot's 25 keys
on the target, fifteen on the source, the slot open on both), after SETSLOT NODE on the target,
after SETSLOT NODE on the source (other masters not yet told).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rediscluster import LocalRedisCluster

from tasks.caching.client import CacheClient
from tasks.caching.cluster_check import check_cluster
from tasks.caching.cluster_ops import ClusterManager

MOVER = """
import sys, time
from pathlib import Path
from tasks.caching.client import CacheClient
from tasks.caching.cluster_migrate import move_slots
from tasks.caching.cluster_ops import ClusterManager
from tasks.caching.cluster_plan import SlotMove

url, marker, slot, src, dst, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:7]

def hook(stage, slots):
    if stage == kill_at:
        marker.write_text(stage)
        time.sleep(600)  # killed here

c = CacheClient(url, cluster=True)
topo = ClusterManager(c).topology()
move_slots(c, topo, [SlotMove(slot, src, dst)], pipeline=10, on_step=hook)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["importing", "migrating", "keys", "node-target", "node-source"])
def test_killed_move_is_reported_and_fixed_without_losing_a_key(
    redis_cluster: LocalRedisCluster, tmp_path: Path, kill_at: str
) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        names = [f"{{tag}}:{i}" for i in range(25)] + [f"other:{i}" for i in range(200)]
        for k in names:
            c.redis.set(k, f"v-{k}")
        slot = c.redis.keyslot("{tag}")
        topo = ClusterManager(c).topology()
        src = next(n for n in topo.masters if slot in n.slots)
        dst = next(n for n in topo.masters if n.id != src.id)
        marker = tmp_path / "paused"
        argv = [sys.executable, "-c", MOVER, redis_cluster.url, str(marker), str(slot), src.id, dst.id, kill_at]
        proc = subprocess.Popen(argv)
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert proc.poll() is None, "the mover exited before reaching the kill point"
                assert time.monotonic() < deadline, "the mover never reached the kill point"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        on_src = int(c.node(src.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
        on_dst = int(c.node(dst.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
        moved = {"importing": 0, "migrating": 0, "keys": 10}.get(kill_at, 25)
        assert (on_src, on_dst) == (25 - moved, moved)
        # keys are readable while the slot is open (ASK redirections)
        assert [c.redis.get(k) for k in names] == [f"v-{k}".encode() for k in names]
        report = check_cluster(c)
        if kill_at != "node-source":  # after the source's SETSLOT NODE nothing is open any more
            assert "open" in {p.kind for p in report.problems}
            assert report.open_slots() == [slot]
        m = ClusterManager(c)
        fix = m.plan_fix()
        if kill_at in ("migrating", "keys"):
            assert [(s.action, s.owner, s.finish_from) for s in fix.fix_steps] == [("finish", dst.addr, src.addr)]
        m.execute(fix)
        assert check_cluster(c).ok
        owner = dst if kill_at != "importing" else src  # killed before MIGRATING: the move never started
        assert int(c.node(owner.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 25
        c.close()
        assert [c.redis.get(k) for k in names] == [f"v-{k}".encode() for k in names]
