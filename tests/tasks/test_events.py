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
