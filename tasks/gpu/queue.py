"""The durable priority queue of GPU work, in the state DB (table ``gpu_tasks``).

A task is ``queued`` → ``running`` (placed: it holds a *reservation* of its GPUs and memory) →
``done``/``failed``, or ``cancelled``, ``expired`` (waited longer than its max wait) or ``lost``
(its process is gone without a word: it crashed or was killed; its reservation is released).

Order. Higher ``priority`` first; FIFO (submission order) within a priority. Aging: a queued task's
*effective* priority rises one level per ``gpu.queue.aging_s`` waited, so low-priority work is
never starved by a stream of higher-priority work.

Quotas. ``gpu.queue.quotas`` caps the GPUs (fractions count as fractions) an owner's running tasks
hold at once; a task that would go over waits, the others pass it.

Reservations and crashes. A running task names the process that answers for it (a
``tasks.state.ClaimOwner``: host, boot, pid and start time — the launcher wrapper of a local
command, or the placer while it starts one). :meth:`GpuQueue.reconcile` releases a reservation
whose process is gone on this host, the rule ``tasks.state.claim_still_held`` applies to claims; a
process on another host is trusted until it reports.

Why the state DB: the queue must survive restarts and be shared by the CLI, the gpu flow and the
launcher wrappers, each in its own process, through short transactions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tasks.gpu.request import GpuRequest
from tasks.state import ClaimOwner, State, register_schema

__all__ = ["TERMINAL", "GpuQueue", "QueueError", "TaskRow", "TaskStatus"]

TABLE = "gpu_tasks"

register_schema(
    TABLE,
    f"""CREATE SEQUENCE IF NOT EXISTS {TABLE}_seq;
    CREATE TABLE IF NOT EXISTS {TABLE} (
        id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL DEFAULT nextval('{TABLE}_seq'),
        owner VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        spec JSON NOT NULL,
        gpus INTEGER NOT NULL,
        milli INTEGER NOT NULL,
        memory_bytes BIGINT NOT NULL,
        priority INTEGER NOT NULL,
        preemptible BOOLEAN NOT NULL,
        max_wait_s DOUBLE NOT NULL,
        status VARCHAR NOT NULL,
        submitted_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        node VARCHAR,
        devices JSON,
        holder VARCHAR,
        pid INTEGER,
        flow_run_id VARCHAR,
        exit_code INTEGER,
        reason VARCHAR
    )""",
)

TaskStatus = Literal["queued", "running", "done", "failed", "cancelled", "expired", "lost"]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled", "expired", "lost"})
_COLS = (
    "id, seq, owner, kind, spec, gpus, milli, memory_bytes, priority, preemptible, max_wait_s, status, "
    "submitted_at, started_at, finished_at, node, devices, holder, pid, flow_run_id, exit_code, reason"
)


class QueueError(ValueError):
    """A queue operation that cannot be done (unknown id, a finished task cancelled)."""


@dataclass(frozen=True)
class TaskRow:
    """One task as the queue holds it."""

    id: str
    seq: int
    owner: str
    kind: str
    spec: dict[str, Any]
    gpus: int
    milli: int
    memory_bytes: int
    priority: int
    preemptible: bool
    max_wait_s: float
    status: str
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    node: str | None
    devices: list[str] | None
    holder: str | None
    pid: int | None
    flow_run_id: str | None
    exit_code: int | None
    reason: str | None

    @classmethod
    def from_db(cls, row: Sequence[Any]) -> TaskRow:
        v = list(row)
        v[4] = json.loads(v[4])
        v[16] = json.loads(v[16]) if v[16] is not None else None
        return cls(*v)

    @property
    def gpu_milli(self) -> int:
        """GPU compute it holds or asks for, in milli-GPUs."""
        return self.gpus * self.milli

    def effective_priority(self, now: datetime, aging_s: float) -> int:
        """Its priority plus one level per ``aging_s`` waited (only while queued)."""
        if self.status != "queued":
            return self.priority
        return self.priority + int(max(0.0, (now - self.submitted_at).total_seconds()) // aging_s)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "id",
                "owner",
                "kind",
                "spec",
                "gpus",
                "memory_bytes",
                "priority",
                "preemptible",
                "max_wait_s",
                "status",
                "node",
                "devices",
                "pid",
                "flow_run_id",
                "exit_code",
                "reason",
            )
        }
        out["fraction"] = self.milli / 1000
        for k in ("submitted_at", "started_at", "finished_at"):
            t = getattr(self, k)
            out[k] = t.isoformat() if t is not None else None
        return out


def _now() -> datetime:
    return datetime.now(UTC)


class GpuQueue:
    """Submit, cancel, look up and list GPU tasks; start, finish and reconcile their reservations."""

    def __init__(self, state: State, *, aging_s: float = 600.0, max_wait_s: float = 86400.0) -> None:
        self.state = state
        self.aging_s = aging_s
        self.max_wait_s = max_wait_s

    def submit(self, req: GpuRequest, *, now: datetime | None = None) -> TaskRow:
        """Queue ``req`` (already checked); returns its row with a new id."""
        shape = req.shape
        spec: dict[str, Any] = (
            {"command": list(req.command)}
            if req.kind == "command"
            else {"deployment": req.deployment, "parameters": req.parameters}
        )
        task_id = uuid.uuid4().hex[:12]
        with self.state.transaction() as con:
            con.execute(
                f"INSERT INTO {TABLE} (id, owner, kind, spec, gpus, milli, memory_bytes, priority, preemptible, "
                "max_wait_s, status, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                [
                    task_id,
                    req.owner,
                    req.kind,
                    json.dumps(spec),
                    shape.gpus,
                    shape.milli,
                    shape.memory_bytes,
                    req.priority,
                    req.preemptible,
                    req.max_wait_s if req.max_wait_s is not None else self.max_wait_s,
                    now or _now(),
                ],
            )
        row = self.get(task_id)
        assert row is not None
        return row

    def get(self, task_id: str) -> TaskRow | None:
        with self.state.transaction() as con:
            rows = con.execute(f"SELECT {_COLS} FROM {TABLE} WHERE id = ?", [task_id]).fetchall()
        return TaskRow.from_db(rows[0]) if rows else None

    def tasks(self, *, statuses: Sequence[str] | None = None, limit: int = 1000) -> list[TaskRow]:
        """Tasks (all, or in ``statuses``), newest submissions last."""
        where, params = "", []
        if statuses:
            where = f"WHERE status IN ({', '.join('?' for _ in statuses)})"
            params = list(statuses)
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT {_COLS} FROM (SELECT {_COLS} FROM {TABLE} {where} ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                [*params, limit],
            ).fetchall()
        return [TaskRow.from_db(r) for r in rows]

    def ordered(self, *, now: datetime | None = None) -> list[TaskRow]:
        """Queued tasks in the order they are to be placed: effective priority (aging included)
        highest first, then submission order."""
        now = now or _now()
        rows = self.tasks(statuses=["queued"], limit=1_000_000)
        return sorted(rows, key=lambda r: (-r.effective_priority(now, self.aging_s), r.seq))

    def cancel(self, task_id: str, *, now: datetime | None = None) -> TaskRow:
        """Cancel a queued task, or mark a running one cancelled (its reservation is released; the
        caller stops its process). A finished task cannot be cancelled."""
        row = self.get(task_id)
        if row is None:
            raise QueueError(f"task: no task {task_id!r}")
        if row.status in TERMINAL:
            raise QueueError(f"task {task_id}: already {row.status}")
        self._finish(task_id, "cancelled", reason="cancelled", now=now, only_from=(row.status,))
        out = self.get(task_id)
        assert out is not None
        return out

    def held_milli(self, owner: str) -> int:
        """GPU compute (milli-GPUs) ``owner``'s running tasks hold."""
        with self.state.transaction() as con:
            row = con.execute(
                f"SELECT coalesce(sum(gpus * milli), 0) FROM {TABLE} WHERE owner = ? AND status = 'running'", [owner]
            ).fetchone()
        return int(row[0]) if row else 0

    def start(
        self, task_id: str, node: str, devices: Sequence[str], holder: ClaimOwner, *, now: datetime | None = None
    ) -> bool:
        """Reserve: mark a queued task running on ``devices`` of ``node``, answered for by ``holder``.
        ``False`` when it is no longer queued (cancelled or started by another placer meanwhile)."""
        with self.state.transaction() as con:
            got = con.execute(
                f"UPDATE {TABLE} SET status = 'running', started_at = ?, node = ?, devices = ?, holder = ? "
                "WHERE id = ? AND status = 'queued' RETURNING id",
                [now or _now(), node, json.dumps(list(devices)), holder.to_json(), task_id],
            ).fetchall()
        return bool(got)

    def launched(self, task_id: str, *, holder: ClaimOwner | None, pid: int | None, flow_run_id: str | None) -> None:
        """Record what a started task runs as (the launcher's process, or the Prefect flow run)."""
        with self.state.transaction() as con:
            con.execute(
                f"UPDATE {TABLE} SET holder = ?, pid = ?, flow_run_id = ? WHERE id = ? AND status = 'running'",
                [holder.to_json() if holder else None, pid, flow_run_id, task_id],
            )

    def finish(
        self, task_id: str, status: TaskStatus, *, exit_code: int | None = None, reason: str | None = None
    ) -> bool:
        """End a running task (its reservation is released). ``False`` if it was not running."""
        return self._finish(task_id, status, exit_code=exit_code, reason=reason, only_from=("running",))

    def _finish(
        self,
        task_id: str,
        status: str,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        now: datetime | None = None,
        only_from: Sequence[str],
    ) -> bool:
        with self.state.transaction() as con:
            got = con.execute(
                f"UPDATE {TABLE} SET status = ?, finished_at = ?, exit_code = coalesce(?, exit_code), "
                f"reason = coalesce(?, reason) WHERE id = ? AND status IN ({', '.join('?' for _ in only_from)}) "
                "RETURNING id",
                [status, now or _now(), exit_code, reason, task_id, *only_from],
            ).fetchall()
        return bool(got)

    def expire(self, *, now: datetime | None = None) -> list[str]:
        """Expire queued tasks that waited longer than their max wait; returns their ids."""
        now = now or _now()
        with self.state.transaction() as con:
            rows = con.execute(
                f"UPDATE {TABLE} SET status = 'expired', finished_at = ?, reason = 'waited longer than its max wait' "
                "WHERE status = 'queued' AND submitted_at + to_seconds(max_wait_s) < ? RETURNING id",
                [now, now],
            ).fetchall()
        return [r[0] for r in rows]

    def reconcile(self, *, now: datetime | None = None) -> list[str]:
        """Release the reservations of running tasks whose process is gone on this host (``lost``).
        Returns their ids. Deployment runs are not judged here (their flow run's state says)."""
        lost = []
        for row in self.tasks(statuses=["running"], limit=1_000_000):
            owner = ClaimOwner.from_json(row.holder)
            if owner is None or owner.alive() is not False:
                continue
            if self._finish(
                row.id, "lost", reason=f"its process (pid {owner.pid}) is gone", now=now, only_from=("running",)
            ):
                lost.append(row.id)
        return lost

    def reservations(self) -> list[TaskRow]:
        """Running tasks: what they hold, for the placement model."""
        return self.tasks(statuses=["running"], limit=1_000_000)

    def requeue(
        self,
        task_id: str,
        *,
        pin: tuple[str, Sequence[str]] | None = None,
        reason: str,
        only_from: Sequence[str] = ("queued", "running", "failed", "lost"),
    ) -> bool:
        """Put a task back in line (rebalancing moved it): same id, request, priority and place in
        line; its placement, process and exit code cleared; ``spec["moves"]`` counts the moves and
        ``spec["pin"]`` names the node and devices the next placement pass tries first (it falls
        back to the strategy when they no longer fit). ``False`` when it is not in ``only_from``
        (it ended or was cancelled meanwhile). The caller stops a running task's process first,
        so its reservation was released by the finish/reconcile path before this."""
        with self.state.transaction() as con:
            rows = con.execute(
                f"SELECT spec FROM {TABLE} WHERE id = ? AND status IN ({', '.join('?' for _ in only_from)})",
                [task_id, *only_from],
            ).fetchall()
            if not rows:
                return False
            spec = json.loads(rows[0][0])
            spec["moves"] = int(spec.get("moves", 0)) + 1
            spec.pop("pin", None)
            if pin is not None:
                spec["pin"] = {"node": pin[0], "devices": list(pin[1])}
            con.execute(
                f"UPDATE {TABLE} SET status = 'queued', spec = ?, started_at = NULL, finished_at = NULL, "
                "node = NULL, devices = NULL, holder = NULL, pid = NULL, flow_run_id = NULL, exit_code = NULL, "
                "reason = ? WHERE id = ?",
                [json.dumps(spec), reason, task_id],
            )
        return True
