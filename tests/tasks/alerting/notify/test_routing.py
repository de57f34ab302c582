from __future__ import annotations

import pytest
import yaml

from tasks.alerting.notify.matchers import ConfigPathError
from tasks.alerting.notify.routing import build_route, group_key, group_labels, receivers_for

TREE = yaml.safe_load(
    """
receiver: root
group_by: [alertname]
group_wait: 1m
routes:
  - matchers: ['team="db"']
    receiver: db
    repeat_interval: 1h
    continue: true
    routes:
      - matchers: ['severity="page"']
        receiver: db-page
        group_by: ['...']
      - matchers: ['severity="info"']
        group_by: []
  - match: {team: db}
    match_re: {env: "prod|staging"}
    receiver: db-prod
    group_interval: 10m
    mute_time_intervals: [night]
"""
)
RECEIVERS = {"root", "db", "db-page", "db-prod"}


def route():
    return build_route(TREE, receivers=RECEIVERS, time_intervals={"night"})


def test_defaults_and_inheritance():
    r = route()
    assert (r.group_wait_s, r.group_interval_s, r.repeat_interval_s) == (60.0, 300.0, 14400.0)
    (page,) = r.match({"team": "db", "severity": "page", "env": "dev"})
    assert page.receiver == "db-page"
    assert page.group_by_all and page.group_wait_s == 60.0 and page.repeat_interval_s == 3600.0
    (info,) = r.match({"team": "db", "severity": "info", "env": "dev"})
    # no receiver and an empty group_by: both inherited from the parent, as route.go does
    assert info.receiver == "db" and info.group_by == ("alertname",) and not info.group_by_all


def test_continue_deepest_match_and_fallback():
    r = route()
    assert receivers_for(r, {"team": "db", "env": "prod"}) == ["db", "db-prod"]
    assert receivers_for(r, {"team": "db", "severity": "page", "env": "prod"}) == ["db-page", "db-prod"]
    assert receivers_for(r, {"team": "web"}) == ["root"]
    prod = r.match({"team": "db", "env": "staging"})[1]
    assert prod.group_interval_s == 600.0 and prod.mute_time_intervals == ("night",)
    # mute/active intervals are not inherited
    assert r.match({"team": "db", "severity": "page"})[0].mute_time_intervals == ()


def test_route_ids_and_keys_follow_alertmanager():
    r = route()
    assert r.id == "{}" and r.key == "{}"
    page = r.routes[0].routes[0]
    assert page.key == '{}/{team="db"}/{severity="page"}'
    assert page.id == '{}/{team="db"}/{severity="page"}/0'
    # matchers are sorted by name, as route.go sorts them
    assert r.routes[1].key == '{}/{env=~"prod|staging",team="db"}'
    assert [n.path for n in r.walk()] == [(), (0,), (0, 0), (0, 1), (1,)]


def test_group_key_uses_only_present_group_labels():
    r = route()
    labels = {"alertname": "Lag", "team": "db", "env": "prod", "instance": "a"}
    db, prod = r.match(labels)
    assert group_labels(db, labels) == {"alertname": "Lag"}
    assert group_key(db, labels) == '{}/{team="db"}/0:{alertname="Lag"}'
    assert group_key(prod, {"team": "db", "env": "prod"}).endswith(":{}")
    page, _prod = r.match({**labels, "severity": "page"})
    assert group_labels(page, {**labels, "severity": "page"}) == {**labels, "severity": "page"}


@pytest.mark.parametrize(
    ("cfg", "path", "message"),
    [
        ({"group_by": ["a"]}, "route", "default receiver"),
        ({"receiver": "root", "matchers": ['a="b"']}, "route.matchers", "must not have any matchers"),
        ({"receiver": "root", "continue": True}, "route.continue", "cannot have continue"),
        ({"receiver": "root", "routes": [{"receiver": "nope"}]}, "route.routes[0].receiver", "undefined receiver"),
        ({"receiver": "root", "group_by": ["...", "a"]}, "route.group_by", "wildcard"),
        ({"receiver": "root", "group_by": ["a", "a"]}, "route.group_by[1]", "duplicated label"),
        ({"receiver": "root", "group_interval": "0s"}, "route.group_interval", "cannot be zero"),
        ({"receiver": "root", "group_wait": "5 min"}, "route.group_wait", "not a valid duration"),
        ({"receiver": "root", "routes": [{"matchers": ['a=~"("']}]}, "route.routes[0].matchers[0]", "regular"),
        ({"receiver": "root", "routes": [{"match": {"a-b": "x"}}]}, "route.routes[0].match.a-b", "label name"),
        (
            {"receiver": "root", "routes": [{"mute_time_intervals": ["x"]}]},
            "route.routes[0].mute_time_intervals[0]",
            "undefined time interval",
        ),
        ({"receiver": "root", "routes": [{"recevier": "db"}]}, "route.routes[0].recevier", "unknown field"),
    ],
)
def test_validation_errors_name_the_field(cfg, path, message):
    with pytest.raises(ConfigPathError) as exc:
        build_route(cfg, receivers=RECEIVERS, time_intervals=set())
    assert str(exc.value).startswith(path + ":")
    assert message in str(exc.value)


@pytest.mark.timeout(30)
def test_catastrophic_regex_routes_in_linear_time():
    """Route matchers (``matchers`` and legacy ``match_re``) with ``(a*)*c`` on 40-character values."""
    tree = {
        "receiver": "root",
        "routes": [
            {"matchers": ['host=~"(a*)*c"'], "receiver": "db"},
            {"match_re": {"host": "(a|aa)+c"}, "receiver": "db-page"},
        ],
    }
    r = build_route(tree, receivers=RECEIVERS)
    assert receivers_for(r, {"host": "a" * 40}) == ["root"]
    assert receivers_for(r, {"host": "a" * 60}) == ["root"]
    assert receivers_for(r, {"host": "a" * 40 + "c"}) == ["db"]
