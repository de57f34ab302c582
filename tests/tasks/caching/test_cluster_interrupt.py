"""A slot move killed with SIGKILL between MIGRATING and SETSLOT NODE: ``check`` sees it, ``fix`` repairs it.

The move runs in a subprocess whose ``on_step`` hook writes a marker after the first MIGRATE batch
of the slot and then waits, so the test kills it at exactly that point (deterministic, no timing):
ten of the slot's 25 keys are on the target, fifteen on the source, the slot open on both.
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

url, marker, slot, src, dst = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def hook(stage, slots):
    if stage == "keys":
        marker.write_text(stage)
        time.sleep(600)  # killed here

c = CacheClient(url, cluster=True)
topo = ClusterManager(c).topology()
move_slots(c, topo, [SlotMove(slot, src, dst)], pipeline=10, on_step=hook)
"""


@pytest.mark.slow
def test_killed_move_is_reported_and_fixed_without_losing_a_key(
    redis_cluster: LocalRedisCluster, tmp_path: Path
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
        argv = [sys.executable, "-c", MOVER, redis_cluster.url, str(marker), str(slot), src.id, dst.id]
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
        assert (on_src, on_dst) == (15, 10)
        # keys are readable while the slot is open (ASK redirections)
        assert [c.redis.get(k) for k in names] == [f"v-{k}".encode() for k in names]
        report = check_cluster(c)
        assert {p.kind for p in report.problems} == {"open"}
        assert report.open_slots() == [slot]
        m = ClusterManager(c)
        fix = m.plan_fix()
        assert [(s.action, s.owner, s.finish_from) for s in fix.fix_steps] == [("finish", dst.addr, src.addr)]
        m.execute(fix)
        assert check_cluster(c).ok
        assert int(c.node(dst.address).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 25
        c.close()
        assert [c.redis.get(k) for k in names] == [f"v-{k}".encode() for k in names]
