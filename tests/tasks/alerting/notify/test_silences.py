from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.notify.silences import SilenceError, SilenceStore, new_silence, silenced_by

NOW = datetime(2024, 4, 25, 12, tzinfo=UTC)
H = timedelta(hours=1)


def test_states_and_matching():
    s = new_silence('alertname="Disk", env=~"prod|staging"', starts_at=NOW + H, ends_at=NOW + 3 * H, now=NOW)
    assert uuid.UUID(s.id).version == 4
    assert s.state(NOW) == "pending" and s.state(NOW + H) == "active" and s.state(NOW + 3 * H) == "active"
    assert s.state(NOW + 3 * H + timedelta(microseconds=1)) == "expired"
    labels = {"alertname": "Disk", "env": "prod"}
    assert silenced_by([s], labels, NOW) == []
    assert silenced_by([s], labels, NOW + 2 * H) == [s.id]
    assert silenced_by([s], {"alertname": "Disk", "env": "dev"}, NOW + 2 * H) == []


@pytest.mark.parametrize(
    ("matchers", "kwargs", "message"),
    [
        ("", {}, "at least one matcher required"),
        ('a="", b=~".*"', {}, "must not match the empty string"),
        ('a="x"', {"ends_at": NOW - H}, "not in the future"),
        ('a="x"', {"starts_at": NOW + 2 * H, "ends_at": NOW + H}, "must be after starts_at"),
        ('a=~"("', {}, "matchers:"),
    ],
)
def test_validation(matchers, kwargs, message):
    kw = {"ends_at": NOW + H, **kwargs}
    with pytest.raises(SilenceError, match=message):
        new_silence(matchers, now=NOW, **kw)


def test_negative_matcher_alone_is_allowed_and_past_start_becomes_now():
    s = new_silence('env!="prod"', starts_at=NOW - H, ends_at=NOW + H, now=NOW)
    assert s.starts_at == NOW


def test_store_add_list_expire(tmp_path):
    store = SilenceStore(str(tmp_path / "state.duckdb"))
    active = store.create('alertname="X"', ends_at=NOW + 2 * H, created_by="ann", comment="deploy", now=NOW)
    pending = store.create('team="db"', starts_at=NOW + H, ends_at=NOW + 2 * H, now=NOW)
    got = store.get(active.id)
    assert got.matchers == active.matchers and got.created_by == "ann" and got.comment == "deploy"
    assert got.starts_at == NOW and got.ends_at == NOW + 2 * H
    assert {s.id for s in store.active(NOW + timedelta(minutes=1))} == {active.id}
    assert {s.id: s.state(NOW) for s in store.list()} == {active.id: "active", pending.id: "pending"}

    later = NOW + timedelta(minutes=10)
    expired = store.expire(active.id, now=later)
    assert expired.ends_at == later
    after = later + timedelta(seconds=1)
    assert store.get(active.id).state(after) == "expired"
    assert [s.id for s in store.list(after, states=["expired"])] == [active.id]
    with pytest.raises(SilenceError, match="already expired"):
        store.expire(active.id, now=after)

    p = store.expire(pending.id, now=later)  # a pending silence ends before it ever starts
    assert p.starts_at == p.ends_at == later
    assert store.active(after) == []
    with pytest.raises(SilenceError, match="no silence"):
        store.expire("nope", now=later)


def test_store_survives_reopen(tmp_path):
    path = str(tmp_path / "state.duckdb")
    s = SilenceStore(path).create(r'msg=~"a\"b|c,d"', ends_at=NOW + H, now=NOW)
    again = SilenceStore(path).get(s.id)
    assert again.matchers == s.matchers and again.matchers[0].matches({"msg": 'a"b'})
    with pytest.raises(SilenceError, match="already exists"):
        SilenceStore(path).add(s)


@pytest.mark.timeout(30)
def test_catastrophic_regex_silence_matches_in_linear_time():
    """A silence ``host=~"(a*)*c"`` against a 40-character label value backtracked for hours."""
    long = "a" * 40
    s = new_silence('host=~"(a*)*c"', ends_at=NOW + H, now=NOW)
    assert silenced_by([s], {"alertname": "X", "host": long}, NOW) == []
    assert silenced_by([s], {"alertname": "X", "host": long + "c"}, NOW) == [s.id]
    neg = new_silence('alertname="X", host!~"(a|aa)+c"', ends_at=NOW + H, now=NOW)
    assert silenced_by([neg], {"alertname": "X", "host": "a" * 60}, NOW) == [neg.id]
