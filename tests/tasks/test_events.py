from datetime import UTC, datetime, timedelta

import pytest

from tasks.events import emit
from tasks.lake import Lake
from tasks.lake.schema import SchemaError


def test_emit_writes_to_the_lake_without_prefect(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    lake = Lake(str(tmp_path / "lake"))
    ts = datetime(2026, 11, 27, 12, tzinfo=UTC)
    ev = emit(lake, "metrics.collected", "flow.collect", {"samples": 12, "at": ts}, ts=ts)
    assert ev.resource == "cortex.flow.collect"
    df = lake.events(since=ts - timedelta(minutes=1), name="metrics.collected")
    assert df.height == 1
    assert df.get_column("resource")[0] == "cortex.flow.collect"
    assert '"samples": 12' in df.get_column("payload")[0]


def test_unknown_event_names_are_refused(tmp_path):
    with pytest.raises(SchemaError, match="unknown event 'metric.collected'"):
        emit(Lake(str(tmp_path / "l")), "metric.collected", "x")


def test_emit_many_writes_one_batch_and_refuses_unknown_names(tmp_path, monkeypatch):
    from tasks.events import emit_many

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    lake = Lake(str(tmp_path / "lake"))
    ts = datetime(2026, 11, 27, 12, tzinfo=UTC)
    items = [("alert.firing", f"alert.{i}", {"i": i}, ts) for i in range(5)]
    evs = emit_many(lake, items, to_prefect=False)
    assert [e.resource for e in evs] == [f"cortex.alert.{i}" for i in range(5)]
    assert lake.events(since=ts - timedelta(minutes=1), name="alert.firing").height == 5
    assert len(lake.storage.files("events")) == 1
    with pytest.raises(SchemaError, match="unknown event 'alert.fired'"):
        emit_many(lake, [("alert.fired", "x", {}, ts)])
    assert emit_many(lake, []) == []


def test_event_payloads_are_stored_without_url_credentials(tmp_path, monkeypatch):
    """Whoever emits, an error text quoting ``http://u:PW@host`` reaches the lake masked."""
    from tasks.events import emit_many

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    lake = Lake(str(tmp_path / "lake"))
    ts = datetime(2026, 11, 27, 12, tzinfo=UTC)
    bad = {"error": "GET http://u:PW-123@h:1/m failed", "urls": ["https://TOKEN-9@h/x"]}
    emit(lake, "source.failed", "source.x", bad, ts=ts, to_prefect=False)
    emit_many(lake, [("action.failed", "action.y", bad, ts)], to_prefect=False)
    stored = "".join(lake.events(since=ts - timedelta(minutes=1)).get_column("payload").to_list())
    assert "PW-123" not in stored and "TOKEN-9" not in stored
    assert stored.count("http://u:***@h:1/m") == 2 and stored.count("https://***@h/x") == 2
