import subprocess
import sys
import textwrap
import time

import pytest

from tasks.state import State, StateLockTimeout, observe_transactions, register_schema, transaction


def test_set_get_and_rollback(tmp_path):
    st = State(str(tmp_path / "state.duckdb"))
    st.set("k", {"a": [1, 2]})
    assert st.get("k") == {"a": [1, 2]}
    assert st.get("missing", 7) == 7
    with pytest.raises(RuntimeError), st.transaction() as con:
        con.execute("UPDATE kv SET value = '1' WHERE key = 'k'")
        raise RuntimeError("boom")
    assert st.get("k") == {"a": [1, 2]}  # rolled back


def test_registered_schema_created_on_first_use(tmp_path):
    register_schema("test_things", "CREATE TABLE IF NOT EXISTS test_things (id INTEGER)")
    with transaction(tmp_path / "s.duckdb") as con:
        con.execute("INSERT INTO test_things VALUES (1)")
    with transaction(tmp_path / "s.duckdb") as con:
        assert con.execute("SELECT count(*) FROM test_things").fetchall()[0][0] == 1


HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def _hold(path, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_waits_for_another_process_holding_the_lock(tmp_path):
    path = tmp_path / "state.duckdb"
    State(str(path)).set("x", 1)
    holder = _hold(path, 1.5)
    t0 = time.monotonic()
    State(str(path), timeout_s=20).set("x", 2)
    waited = time.monotonic() - t0
    holder.wait()
    assert waited >= 0.5
    assert State(str(path)).get("x") == 2


def test_gives_up_after_the_timeout_with_a_clear_error(tmp_path):
    path = tmp_path / "state.duckdb"
    State(str(path)).set("x", 1)
    holder = _hold(path, 5)
    try:
        with pytest.raises(StateLockTimeout, match="locked by another process for over 0.5s"):
            State(str(path), timeout_s=0.5).set("x", 2)
    finally:
        holder.kill()
        holder.wait()


def test_read_only_first_use_creates_missing_tables(tmp_path):
    """A fresh process's first read of a file that predates a table must not fail on read-only DDL."""
    import duckdb

    from tasks.state import register_schema, transaction

    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).close()  # an existing state DB without our tables
    register_schema("test_ro_table", "CREATE TABLE IF NOT EXISTS test_ro_table (x INTEGER)")
    with transaction(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM test_ro_table").fetchall() == [(0,)]
    # now ensured: a real read-only connection
    with transaction(path, read_only=True) as con, pytest.raises(duckdb.Error):
        con.execute("INSERT INTO test_ro_table VALUES (1)")


def test_batch_commits_every_step_at_once_and_rolls_back_as_one(tmp_path):
    st = State(str(tmp_path / "state.duckdb"))
    st.set("a", 0)
    with observe_transactions() as tx, st.batch() as b:
        b.set("a", 1)
        b.set("b", 2)
        assert b.get("a") == 1 and b.in_batch
    assert tx.count == 1  # three steps, one transaction
    assert (st.get("a"), st.get("b")) == (1, 2)
    with pytest.raises(RuntimeError, match="boom"), st.batch() as b:
        b.set("a", 10)
        b.set("c", 3)
        raise RuntimeError("boom")
    assert (st.get("a"), st.get("c")) == (1, None)  # neither step survived
    with pytest.raises(RuntimeError, match="batch that is over"):
        b.get("a")


def test_nested_transaction_on_one_thread_is_an_error_not_a_deadlock(tmp_path):
    st = State(str(tmp_path / "state.duckdb"))
    with (
        pytest.raises(RuntimeError, match="inside another on the same thread"),
        st.batch(),
    ):
        st.set("x", 1)  # the outer State, not the batch's: would wait for itself
    with pytest.raises(RuntimeError, match="inside a batch"), st.batch() as b, b.batch():
        pass
    st.set("x", 2)  # the thread is free again
    assert st.get("x") == 2


def test_table_registered_inside_a_batch_is_created_there(tmp_path):
    st = State(str(tmp_path / "state.duckdb"))
    with st.batch() as b:
        register_schema("test_late_table", "CREATE TABLE IF NOT EXISTS test_late_table (x INTEGER)")
        with b.transaction() as con:
            con.execute("INSERT INTO test_late_table VALUES (7)")
    with st.transaction() as con:
        assert con.execute("SELECT x FROM test_late_table").fetchall() == [(7,)]


# ---- claims ----------------------------------------------------------------------------------------


def test_claim_owner_alive_on_this_host_another_host_and_this_process():
    """Who may take a claim over: a live holder never; a gone one yes; another host's only by lease."""
    import dataclasses

    from tasks.state import ClaimOwner, Heartbeat

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = ClaimOwner.me()
        other = dataclasses.replace(me, pid=child.pid, started=None)
        assert other.alive() is True
        assert dataclasses.replace(me, host="elsewhere").alive() is None  # only its lease can tell
    finally:
        child.kill()
        child.wait()
    assert other.alive() is False  # its process is gone
    assert ClaimOwner.from_json(other.to_json()) == other and ClaimOwner.from_json("{bad") is None
    # in this process: alive exactly while its heartbeat runs
    beats: list[int] = []
    with Heartbeat(me.token, lambda: beats.append(1), every_s=0.01):
        assert me.alive() is True
        deadline = time.monotonic() + 10
        while not beats and time.monotonic() < deadline:
            time.sleep(0.01)
    assert beats and me.alive() is False


def test_a_relative_path_in_another_directory_is_another_db(tmp_path, monkeypatch):
    """The tables made for data/state.duckdb in one project are not assumed to exist in another
    project's data/state.duckdb (one process, two working directories: tests, notebooks)."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        st = State("data/state.duckdb")
        st.set("project", name)
        assert st.get("project") == name
