"""The state database (``data/state.duckdb``): short transactions with lock retry.

DuckDB lets one process hold a database file for writing at a time. So every caller opens the file
for one short transaction and closes it at once; a caller that finds the file locked by another
process backs off and retries until ``lock_timeout_s``. Nobody keeps the state DB open while idle,
which is what lets a collect flow, an alert flow and the CLI share it.

Each capability declares its own tables with ``register_schema`` (DDL that is safe to repeat);
they are created on first use.

Claims (a row one process works on while others must keep off it: an outbox send in flight) name
their holder with :class:`ClaimOwner` and keep a lease that a :class:`Heartbeat` renews while the
holder works. Why both: a lease alone cannot tell a slow holder from a dead one once a renewal is
late; on the same host the holder's process can be looked up, so a live one is never taken over.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from tasks.config import Settings

__all__ = [
    "ClaimOwner",
    "Heartbeat",
    "State",
    "StateLockTimeout",
    "TransactionStats",
    "claim_still_held",
    "observe_transactions",
    "register_schema",
    "transaction",
]

log = logging.getLogger(__name__)

_SCHEMAS: dict[str, str] = {
    "kv": "CREATE TABLE IF NOT EXISTS kv (key VARCHAR PRIMARY KEY, value JSON, updated_at TIMESTAMPTZ)",
}
_ensured: set[tuple[str, str]] = set()
_thread_lock = threading.Lock()
#: Whether this thread is inside a transaction: a second one on the same thread would wait forever
#: for ``_thread_lock``, so it is refused with an error instead (use the batch's ``State``).
_local = threading.local()


@dataclass
class TransactionStats:
    """What :func:`observe_transactions` saw: how many state-DB transactions ran and where their
    time went. Why it exists: each transaction costs tens of milliseconds here (mostly opening and
    closing the file), so the alert tick's cost is pinned by counting them (benchmark and test)."""

    count: int = 0
    #: wall time from the first open attempt to the close, lock waits included
    seconds: float = 0.0
    #: of which opening the file (``duckdb.connect`` and first-use DDL)
    open_s: float = 0.0
    #: of which ``COMMIT`` and closing the file
    close_s: float = 0.0


_observers: list[TransactionStats] = []


@contextmanager
def observe_transactions() -> Iterator[TransactionStats]:
    """Count the state-DB transactions this process runs inside the ``with`` block (all paths)."""
    stats = TransactionStats()
    _observers.append(stats)
    try:
        yield stats
    finally:
        _observers.remove(stats)


def _observe(total_s: float, open_s: float, close_s: float) -> None:
    for o in _observers:
        o.count += 1
        o.seconds += total_s
        o.open_s += open_s
        o.close_s += close_s


class StateLockTimeout(TimeoutError):
    """The state DB stayed locked by another process for longer than the configured timeout."""


def register_schema(name: str, ddl: str) -> None:
    """Declare tables a capability needs (``CREATE TABLE IF NOT EXISTS …``), created on first use."""
    _SCHEMAS[name] = ddl


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text or "already open" in text)


@contextmanager
def transaction(
    path: str | os.PathLike[str] = "data/state.duckdb", *, timeout_s: float = 30.0, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the state DB for one transaction; commit on success, roll back on error, always close.

    Retries with jittered exponential backoff while another process holds the file.
    """
    if getattr(_local, "inside", False):
        raise RuntimeError(
            "state DB: a transaction was opened inside another on the same thread (it would wait for itself); "
            "inside State.batch(), use the State it yields"
        )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            # One thread at a time per process: DuckDB's file lock is per process, so threads
            # would otherwise share (and trip over) one writer.
            with _thread_lock:
                # read-only only once this process has created every registered table: a read-only
                # connection cannot run the CREATE TABLE IF NOT EXISTS of a table new to this file
                ensured = all((_key(p), name) in _ensured for name in _SCHEMAS)
                t_open = time.perf_counter()
                con = duckdb.connect(str(p), read_only=read_only and ensured and p.exists())
                try:
                    _ensure(con, str(p))
                    open_s = time.perf_counter() - t_open
                    con.execute("BEGIN TRANSACTION")
                    _local.inside = True
                    try:
                        yield con
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                    finally:
                        _local.inside = False
                    t_close = time.perf_counter()
                    con.execute("COMMIT")
                finally:
                    con.close()
            end = time.perf_counter()
            _observe(end - started, open_s, end - t_close)
            return
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise StateLockTimeout(f"state DB {p} locked by another process for over {timeout_s:g}s") from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)


def _key(path: str | os.PathLike[str]) -> str:
    """The file a path names, for ``_ensured``: a relative path means another file after a chdir."""
    return os.path.abspath(path)


def _ensure(con: duckdb.DuckDBPyConnection, path: str) -> list[tuple[str, str]]:
    """Create the registered tables not yet created through this process; returns those it created."""
    path = _key(path)
    new = []
    for name, ddl in _SCHEMAS.items():
        if (path, name) in _ensured:
            continue
        con.execute(ddl)
        _ensured.add((path, name))
        new.append((path, name))
    return new


class State:
    """Convenience wrapper bound to one state DB path and timeout (from settings).

    :meth:`batch` groups several steps into one transaction: the ``State`` it yields hands every
    ``transaction()`` call the batch's connection (no open, no commit of its own), so stores written
    against ``State`` (rules, silences, acks, the dispatcher, the outbox) share it unchanged. Why:
    each transaction costs tens of milliseconds here, mostly opening and closing the file, and an
    alert tick would otherwise open it about ten times."""

    def __init__(self, path: str = "data/state.duckdb", *, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._batch_over = False
        self._created: list[tuple[str, str]] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> State:
        return cls(settings.state.path, timeout_s=settings.state.lock_timeout_s)

    @property
    def in_batch(self) -> bool:
        """True for the ``State`` a :meth:`batch` yields: its transactions commit only with the batch.
        Code whose promise rests on a commit of its own (the outbox's mark-before-send) refuses it."""
        return self._con is not None or self._batch_over

    def transaction(self, *, read_only: bool = False) -> Any:
        if self.in_batch:
            return self._joined()  # the batch chose read-only or not
        return transaction(self.path, timeout_s=self.timeout_s, read_only=read_only)

    @contextmanager
    def _joined(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is None:
            raise RuntimeError("state DB: this State belongs to a batch that is over")
        # a store whose module was imported after the batch began registered its tables late
        self._created += _ensure(self._con, str(Path(self.path)))
        # ``read_only`` is the batch's to choose: stores ask for a writable transaction even to read,
        # and a read-only batch's connection (once the tables exist) refuses any write itself.
        # No commit and no rollback here: an error ends the whole batch (rolled back as one), so a
        # caller must not catch an error from a joined step and go on writing.
        yield self._con

    @contextmanager
    def batch(self, *, read_only: bool = False) -> Iterator[State]:
        """One transaction for several steps: yields a ``State`` whose ``transaction()`` joins it.

        Commits once at the end, rolls everything back on an error. Keep it short (it holds the
        file, so other processes wait): state reads and writes and in-memory work only, no network
        calls and no lake queries."""
        if self.in_batch:
            raise RuntimeError("state DB: State.batch() inside a batch; use the batch's State")
        with self.transaction(read_only=read_only) as con:
            bound = State(self.path, timeout_s=self.timeout_s)
            bound._con = con
            try:
                yield bound
            except BaseException:
                _ensured.difference_update(bound._created)  # rolled back with the batch
                raise
            finally:
                bound._con, bound._batch_over = None, True

    def get(self, key: str, default: Any = None) -> Any:
        with self.transaction() as con:
            row = con.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchall()
        return json.loads(row[0][0]) if row else default

    def set(self, key: str, value: Any) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT INTO kv VALUES (?, ?, now()) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                [key, json.dumps(value)],
            )


# ---- claims: who holds a row, and whether it still lives ---------------------------------------------

#: Tokens of the claimants of this process whose work is under way (a :class:`Heartbeat` is running).
_live_tokens: set[str] = set()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _boot_id() -> str:
    """This machine's boot (Linux): the same host name after a reboot is another life of the host."""
    return (_read("/proc/sys/kernel/random/boot_id") or "").strip()


def _process_start(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks since boot)`` of ``pid`` from ``/proc``; ``None`` if unknown.
    The start time tells a recycled pid from the process that held a claim."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return (fields[0], fields[19]) if len(fields) > 19 else None


_SELF_START = _process_start(os.getpid())


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim: host and boot, process id and start time, and a token per claimant (one
    process may run several claimants, one after the other or in threads)."""

    host: str
    boot: str
    pid: int
    started: str | None
    token: str

    @classmethod
    def me(cls) -> ClaimOwner:
        """A new claimant in this process."""
        pid = os.getpid()
        start = _process_start(pid)
        return cls(socket.gethostname(), _boot_id(), pid, start[1] if start else None, uuid.uuid4().hex)

    @classmethod
    def of_process(cls, pid: int, token: str = "") -> ClaimOwner:
        """Another process on this host as a holder (a launched child that answers for a GPU
        reservation): alive while that pid is the same process."""
        start = _process_start(pid)
        return cls(socket.gethostname(), _boot_id(), pid, start[1] if start else None, token)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ClaimOwner | None:
        try:
            d = json.loads(text) if text else None
            return cls(str(d["host"]), str(d["boot"]), int(d["pid"]), d["started"], str(d["token"])) if d else None
        except (ValueError, TypeError, KeyError):
            return None

    def alive(self) -> bool | None:
        """Whether the claimant still works: ``True``/``False`` on this host, ``None`` on another
        (only its lease can tell then). In this process: whether its heartbeat runs. Elsewhere on
        this host: whether its pid exists, is no zombie, and is still the same process."""
        if self.host != socket.gethostname() or self.boot != _boot_id():
            return None
        if self.pid == os.getpid() and (self.started is None or _SELF_START is None or self.started == _SELF_START[1]):
            return self.token in _live_tokens
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        proc = _process_start(self.pid)
        if proc is None:
            return True  # no /proc to ask: the pid exists, so assume it is the holder
        state, started = proc
        return state not in ("Z", "X") and (self.started is None or started == self.started)


def claim_still_held(lease_expired: bool, owner_json: str | None) -> str | None:
    """Why a claim may not be taken over, or ``None`` when it may: the one rule of every claim
    (alert outbox, action ledger). Held while its lease runs, and after that while its owner is
    known to be alive on this host; on another host the lease alone decides. (When a lease has
    expired is each table's own: what its claims record, and which clock.)"""
    if not lease_expired:
        return "its lease runs"
    owner = ClaimOwner.from_json(owner_json)
    if owner is not None and owner.alive():
        return f"its lease ran out but its holder (pid {owner.pid} on this host) is alive"
    return None


class Heartbeat:
    """Runs ``renew`` every ``every_s`` seconds from a daemon thread while the ``with`` block runs,
    and marks ``token`` as alive in this process meanwhile (see :meth:`ClaimOwner.alive`).

    A renewal that fails is logged and tried again at the next beat: the lease is longer than
    several beats, and on this host the pid check protects a holder whose renewals are late."""

    def __init__(self, token: str, renew: Callable[[], None], every_s: float) -> None:
        self.token, self.renew, self.every_s = token, renew, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        _live_tokens.add(self.token)
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.token[:8]}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.renew()
            except Exception as e:
                log.warning("claim %s: lease renewal failed (retried at the next beat): %s", self.token[:8], e)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        _live_tokens.discard(self.token)
        if self._thread is not None:
            # a renewal waiting for the state DB's lock may take a while; it only touches rows
            # still claimed by this token, so it is harmless to leave it finishing on its own
            self._thread.join(timeout=5.0)
