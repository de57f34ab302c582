"""Moving slots and their keys between masters, in ``redis-cli --cluster``'s order, pipelined.

The order per slot is redis-cli's (``clusterManagerMoveSlot``), and it is what makes a move safe
to kill at any point: ``SETSLOT IMPORTING`` on the target, then ``MIGRATING`` on the source, then
``GETKEYSINSLOT`` / ``MIGRATE … KEYS`` batches of ``pipeline`` keys until the slot is empty, then
``SETSLOT NODE <target>`` on the target first (it claims the slot with a bumped epoch), then the
source, then every other master. A process killed anywhere leaves the slot open on one or both
nodes with each key on exactly one of them, readable through ASK redirections;
``cluster_fix`` closes it.

Why faster than redis-cli with the same order: redis-cli does one round trip per command per slot
(~9 per slot, ~1–3 ms a slot, CONVENTIONS.md item 11). Here a *round* of up to ``slots_per_round``
slots between one source and one target sends each step for all its slots in one pipeline (one
round trip per step per round), and ``MIGRATE`` calls for different slots go in one pipeline too
(each ``MIGRATE`` still carries keys of one slot: Redis refuses cross-slot key lists). Steps never
reorder across nodes: every slot of a round is IMPORTING on the target before any is MIGRATING on
the source, and so on.

``on_step(stage, slots)`` is called after each stage of a round (``importing``, ``migrating``,
``keys``, ``node-target``, ``node-source``, ``node-all``): the CLI's progress and the tests'
deterministic kill point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis

from tasks.caching.client import CacheClient, CacheError
from tasks.caching.cluster_plan import SlotMove, group_moves
from tasks.caching.topology import ClusterNode, Topology

__all__ = ["MoveStats", "StepHook", "count_keys", "migrate_keys", "move_slots"]

StepHook = Callable[[str, Sequence[int]], None]
Progress = Callable[[int, int], None]


@dataclass
class MoveStats:
    """What a move did: slots moved, keys migrated, keys replaced on the target (``fix`` only)."""

    slots: int = 0
    keys: int = 0
    replaced: int = 0
    rounds: int = 0


def _check(results: list[Any], what: str, slots: Sequence[int], client: CacheClient) -> None:
    for slot, res in zip(slots, results, strict=True):
        if isinstance(res, Exception):
            raise client.error(f"{what} slot {slot}", res)


def count_keys(client: CacheClient, topo: Topology, moves: Sequence[SlotMove]) -> dict[tuple[str, str], int]:
    """Keys in the moved slots, by (source, target): what a dry run says will travel."""
    out: dict[tuple[str, str], int] = {}
    for src, dst, slots in group_moves(moves):
        node = _node(topo, src)
        pipe = client.node(node.address).pipeline(transaction=False)
        for s in slots:
            pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", s)
        try:
            counts = pipe.execute()
        except Exception as exc:
            raise client.error(f"COUNTKEYSINSLOT on {node.addr}", exc) from None
        out[(src, dst)] = sum(int(c) for c in counts)
    return out


def _node(topo: Topology, node_id: str) -> ClusterNode:
    node = topo.by_id(node_id)
    if node is None:
        raise CacheError(f"node {node_id} is not in the cluster any more")
    return node


def _auth_args(conn: Redis) -> list[Any]:
    """``AUTH``/``AUTH2`` arguments for ``MIGRATE``, from the node connection's own credentials."""
    kw = conn.connection_pool.connection_kwargs
    password, username = kw.get("password"), kw.get("username")
    if password is None:
        return []
    return ["AUTH2", username, password] if username else ["AUTH", password]


def migrate_keys(
    client: CacheClient,
    source: ClusterNode,
    target: ClusterNode,
    slots: Sequence[int],
    *,
    pipeline: int,
    timeout_ms: int,
    replace: bool = False,
    asking: bool = False,
    on_batch: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Move every key of ``slots`` from ``source`` to ``target``: (keys moved, keys replaced).

    Batches of ``pipeline`` keys per ``MIGRATE``; one round trip for all slots' ``GETKEYSINSLOT``,
    one for all their ``MIGRATE``\\ s. ``NOKEY`` (keys expired or deleted meanwhile) is fine. A key
    the target already holds (``BUSYKEY``) stops the move unless ``replace`` (``fix`` only, as in
    redis-cli: the source's copy is the one clients were reading). ``asking`` prefixes each
    ``MIGRATE`` with ``ASKING`` so a node that is only *importing* the slot may send its keys
    (``fix`` moving stray keys to the owner)."""
    conn = client.node(source.address)
    auth = _auth_args(conn)
    moved = replaced = 0
    pending = list(slots)
    while pending:
        pipe = conn.pipeline(transaction=False)
        for s in pending:
            pipe.execute_command("CLUSTER", "GETKEYSINSLOT", s, pipeline)
        batches = pipe.execute(raise_on_error=False)
        _check(batches, f"GETKEYSINSLOT on {source.addr}", pending, client)
        work = [(s, list(keys)) for s, keys in zip(pending, batches, strict=True) if keys]
        if not work:
            break
        pipe = conn.pipeline(transaction=False)
        for _, keys in work:
            if asking:
                pipe.execute_command("ASKING")
            flags = ["REPLACE"] if replace else []
            pipe.execute_command(
                "MIGRATE", target.address.host, target.address.port, "", 0, timeout_ms, *flags, *auth, "KEYS", *keys
            )
        results = pipe.execute(raise_on_error=False)
        if asking:
            results = results[1::2]
        for (slot, keys), res in zip(work, results, strict=True):
            if isinstance(res, Exception):
                if "BUSYKEY" in str(res) and not replace:
                    raise CacheError(
                        f"MIGRATE slot {slot} {source.addr} → {target.addr}: the target already holds some of its keys "
                        "(BUSYKEY); `cortex-perf cache cluster fix` moves them with REPLACE (the source's copy wins)"
                    )
                raise client.error(f"MIGRATE slot {slot} {source.addr} → {target.addr}", res)
            moved += len(keys)
            replaced += len(keys) if replace else 0
        if on_batch:
            on_batch()
        pending = [s for s, keys in work if len(keys) >= pipeline]
    return moved, replaced


def set_slots_node(client: CacheClient, node: ClusterNode, slots: Sequence[int], owner_id: str) -> list[Any]:
    """``CLUSTER SETSLOT <slot> NODE <owner>`` for every slot on ``node``, one round trip; the replies."""
    pipe = client.node(node.address).pipeline(transaction=False)
    for s in slots:
        pipe.execute_command("CLUSTER", "SETSLOT", s, "NODE", owner_id)
    try:
        return list(pipe.execute(raise_on_error=False))
    except Exception as exc:  # the connection itself failed
        return [exc] * len(slots)


def _became_replica(reply: Any) -> bool:
    return isinstance(reply, Exception) and "only with masters" in str(reply)


def _rounds(moves: Sequence[SlotMove], size: int) -> list[tuple[str, str, list[int]]]:
    """Rounds of at most ``size`` slots per (source, target); the first rounds to each target grow
    1, 2, 4, … (slow start).

    Why slow start: redis-py's ``RedisCluster`` (8.1, redis/redis-py#2432) fails with
    ``AttributeError`` when its first redirection to a node it has not met yet is an ``ASK``
    (it learns new nodes only from ``MOVED``). A new master that is sent 128 open slots at once
    makes that likely; after a few small rounds some of its slots are finished, so clients meet
    it through ``MOVED`` first. Measured in benchmarks/redis_cluster_bench.py (BENCHMARKS.md)."""
    out: list[tuple[str, str, list[int]]] = []
    started: set[str] = set()
    for src, dst, slots in group_moves(moves):
        i, step = 0, 1 if dst not in started else size
        started.add(dst)
        while i < len(slots):
            out.append((src, dst, slots[i : i + step]))
            i += step
            step = min(step * 2, size)
    return out


def move_slots(
    client: CacheClient,
    topo: Topology,
    moves: Sequence[SlotMove],
    *,
    pipeline: int = 10,
    timeout_ms: int = 60_000,
    slots_per_round: int = 128,
    on_step: StepHook | None = None,
    progress: Progress | None = None,
) -> MoveStats:
    """Run ``moves`` (see the module docstring); a ``CacheError`` naming the slot stops it.

    A stop leaves the current round's slots open; the error says so and ``fix`` repairs them."""
    stats = MoveStats()
    step = on_step or (lambda stage, slots: None)
    masters = topo.masters
    for src_id, dst_id, slots in _rounds(moves, slots_per_round):
        src, dst = _node(topo, src_id), _node(topo, dst_id)
        try:
            pipe = client.node(dst.address).pipeline(transaction=False)
            for s in slots:
                pipe.execute_command("CLUSTER", "SETSLOT", s, "IMPORTING", src.id)
            _check(pipe.execute(raise_on_error=False), f"SETSLOT IMPORTING on {dst.addr}", slots, client)
            step("importing", slots)
            pipe = client.node(src.address).pipeline(transaction=False)
            for s in slots:
                pipe.execute_command("CLUSTER", "SETSLOT", s, "MIGRATING", dst.id)
            _check(pipe.execute(raise_on_error=False), f"SETSLOT MIGRATING on {src.addr}", slots, client)
            step("migrating", slots)
            keys, _ = migrate_keys(
                client,
                src,
                dst,
                slots,
                pipeline=pipeline,
                timeout_ms=timeout_ms,
                on_batch=lambda slots=slots: step("keys", slots),  # type: ignore[misc]
            )
            _check(set_slots_node(client, dst, slots, dst.id), f"SETSLOT NODE on the target {dst.addr}", slots, client)
            step("node-target", slots)
            # A master that just gave its last slot away turns into the target's replica (Redis 7's
            # cluster-allow-replica-migration) before this reaches it: tolerated, as redis-cli does.
            replies = [r for r in set_slots_node(client, src, slots, dst.id) if not _became_replica(r)]
            _check(replies, f"SETSLOT NODE on the source {src.addr}", slots[: len(replies)], client)
            step("node-source", slots)
        except CacheError as exc:
            raise CacheError(
                f"{exc} (slots {slots[0]}–{slots[-1]} may be left open: `cortex-perf cache cluster check` shows them, "
                "`cortex-perf cache cluster fix` closes them)"
            ) from None
        except Exception as exc:
            raise client.error(f"moving slots {slots[0]}–{slots[-1]} {src.addr} → {dst.addr}", exc) from None
        for other in masters:
            if other.id not in (src.id, dst.id):
                set_slots_node(client, other, slots, dst.id)  # best effort: gossip tells the rest
        step("node-all", slots)
        stats.slots += len(slots)
        stats.keys += keys
        stats.rounds += 1
        if progress:
            progress(len(slots), keys)
    return stats
