"""Per-receiver rate limits: sliding-window arithmetic, and deferral without loss in the dispatcher."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from tasks.alerting.model import Alert
from tasks.alerting.notify.dispatch import Dispatcher, DispatchSettings, RouteSettings
from tasks.alerting.notify.ratelimit import RateLimit, SendWindow, parse_rate_limits

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def test_sliding_window():
    lim = RateLimit(2, timedelta(minutes=10))
    w = SendWindow([])
    assert w.allowance(at(0), lim) == 2
    w.record(at(0))
    w.record(at(3))
    assert w.allowance(at(9), lim) == 0
    assert w.allowance(at(10), lim) == 1  # the 0-minute send left the window
    assert SendWindow.from_list(w.to_list()) == w


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"default": {"max_messages": 0}}, r"rate_limits.default.max_messages: must be at least 1"),
        ({"default": {"max_messages": "ten"}}, r"rate_limits.default.max_messages: expected an integer"),
        ({"receivers": {"pager": {"per": "often"}}}, r"rate_limits.receivers.pager.per: not a valid duration"),
        ({"receivers": {"pager": {"burst": 3}}}, r"rate_limits.receivers.pager: unknown field\(s\) burst"),
        ({"global": {}}, r"rate_limits: unknown field\(s\) global"),
    ],
)
def test_parse_errors_name_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(raw)


def test_parse_rate_limits():
    default, per = parse_rate_limits(
        {"default": {"max_messages": 10, "per": "5m"}, "receivers": {"p": {"max_messages": 1}}}
    )
    assert default == RateLimit(10, timedelta(minutes=5)) and per == {"p": RateLimit(1, timedelta(minutes=5))}
    assert parse_rate_limits(None) == (None, {})


class ByName:
    def match(self, labels: Mapping[str, str]) -> list[RouteSettings]:
        recv = "team" if labels["alertname"].startswith("A") else "other"
        return [RouteSettings("root", recv, group_by=("alertname",))]


def test_excess_deferred_merged_never_dropped():
    settings = DispatchSettings.from_mapping(
        {"rate_limits": {"receivers": {"team": {"max_messages": 2, "per": "10m"}}}}
    )
    d = Dispatcher(ByName(), settings)

    def alerts(m: int) -> list[Alert]:
        out = [Alert({"alertname": f"A{i}"}, starts_at=at(0)) for i in range(5)]
        out.append(Alert({"alertname": "B"}, starts_at=at(0)))  # another receiver: not limited
        if m >= 4:
            out.append(Alert({"alertname": "A3", "instance": "late"}, starts_at=at(4)))
        return out

    st, sent = None, []
    for m in range(0, 40):
        ns, st = d.tick(alerts(m), at(m), st)
        sent += [(m, n) for n in ns]
    got = [(m, n.receiver, n.group_labels["alertname"], len(n.alerts)) for m, n in sent]
    assert got == [
        (1, "other", "B", 1),
        (1, "team", "A0", 1),
        (1, "team", "A1", 1),
        # A2, A3, A4 deferred at 1; A3's update at 6 (new alert) merges into its deferred message
        (11, "team", "A2", 1),
        (11, "team", "A3", 2),
        (21, "team", "A4", 1),
    ]
    merged = next(n for m, n in sent if n.group_labels["alertname"] == "A3")
    assert merged.reason == "initial"  # the receiver had not heard of the group: still its first message
    assert "rate limited: receiver team allows 2 per 10m; deferred" in merged.notes
    assert st is not None and st.stats["deferred"] == 0
    # Every alert that was due reached the receiver exactly in one message
    fps = [a.fingerprint for _, n in sent for a in n.alerts]
    assert len(fps) == len(set(fps)) == 7
