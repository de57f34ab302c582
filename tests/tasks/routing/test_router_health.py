"""The router's health as lake samples, and the shipped rule file evaluated over them by the
project's own rule engine on a real lake and state DB."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.alerting.rules.rule_files import load_rule_files
from tasks.alerting.rules.ruler import RuleStore, run_rules
from tasks.alerting.rules.sqlcompile import evaluate_many
from tasks.lake import Lake
from tasks.routing.health import HEALTH_METRICS, health_samples, write_health
from tasks.state import State

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parents[3] / "data" / "examples" / "alerting" / "router-rules.yml"


def target(name: str, *, healthy: bool = True, breaker: Any = "closed", ejected_for_s: float = 0.0) -> dict[str, Any]:
    """One target as ``Router.status()`` shows it (built by hand)."""
    return {
        "name": name,
        "url": f"http://127.0.0.1:9/{name}",
        "pending": 2,
        "capacity": 100,
        "ewma_ms": 35.0,
        "breaker": {"state": breaker, "failure_rate": None} if isinstance(breaker, str) else breaker,
        "ejected_for_s": ejected_for_s,
        "requests": 120,
        "failures": 7,
        "healthy": healthy,
        "tags": {"gpu": "a100"},
        "cost": 0.5,
    }


def status(*pools: tuple[str, list[dict[str, Any]], bool]) -> dict[str, Any]:
    def pool(name: str, targets: list[dict[str, Any]], panic: bool) -> dict[str, Any]:
        healthy = sum(t["healthy"] for t in targets)
        return {"name": name, "prefix": f"/{name}", "strategy": "p2c_ewma", "panic": panic, "healthy": healthy}

    return {
        "pools": [pool(n, ts, panic) | {"targets": ts} for n, ts, panic in pools],
        "model": None,
        "buffered": 12,
        "dropped": 0,
        "retry_budget": {"active": 4, "retries_in_flight": 1, "allowance": 3},
    }


def as_map(samples):
    return {(s.metric, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_status_becomes_samples():
    st = status(
        (
            "search",
            [
                target("a"),
                target("b", healthy=False, breaker="open"),
                target("c", healthy=False, breaker="half_open", ejected_for_s=12.5),
            ],
            True,
        )
    )
    samples = health_samples(st, T0, router_name="edge")
    assert {s.ts for s in samples} == {T0}
    got = as_map(samples)

    def lab(t: str | None = None) -> tuple[tuple[str, str], ...]:
        labels = {"router": "edge", "pool": "search"} | ({"target": t} if t else {})
        return tuple(sorted(labels.items()))

    assert got[("router_target_healthy", lab("a"))] == 1.0
    assert got[("router_target_healthy", lab("b"))] == 0.0
    assert got[("router_breaker_state", lab("a"))] == 0.0
    assert got[("router_breaker_state", lab("c"))] == 1.0
    assert got[("router_breaker_state", lab("b"))] == 2.0
    assert got[("router_target_ejected", lab("c"))] == 1.0 and got[("router_target_ejected", lab("a"))] == 0.0
    assert got[("router_target_pending", lab("a"))] == 2.0
    assert got[("router_target_ewma_seconds", lab("a"))] == pytest.approx(0.035)
    assert got[("router_requests_total", lab("a"))] == 120.0 and got[("router_failures_total", lab("a"))] == 7.0
    assert got[("router_pool_healthy_ratio", lab())] == pytest.approx(1 / 3)
    assert got[("router_pool_panic", lab())] == 1.0
    router = (("router", "edge"),)
    assert got[("router_outcomes_buffered", router)] == 12.0
    assert got[("router_outcomes_dropped_total", router)] == 0.0
    assert got[("router_retries_in_flight", router)] == 1.0
    assert len(got) == len(samples) == 3 * 7 + 2 + 3  # no duplicate series
    assert {m for m, _ in got} == set(HEALTH_METRICS)


def test_optional_fields_and_breakers_off():
    t = {"name": "a", "healthy": True, "breaker": None}  # breakers off, nothing else known
    got = as_map(health_samples({"pools": [{"name": "p", "targets": [t]}]}, T0))
    assert got == {
        ("router_target_healthy", (("pool", "p"), ("router", "default"), ("target", "a"))): 1.0,
        ("router_pool_healthy_ratio", (("pool", "p"), ("router", "default"))): 1.0,
        ("router_pool_panic", (("pool", "p"), ("router", "default"))): 0.0,
    }
    assert health_samples({"pools": []}, T0) == []


def _set(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    *head, last = path.split(".")
    cur: Any = d
    for part in head:
        cur = cur[int(part)] if part.isdigit() else cur[part]
    if value is KeyError:
        del cur[last]
    else:
        cur[last] = value
    return d


GOOD = status(("p", [target("a")], False))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("pools", KeyError, "'pools' is missing"),
        ("pools", "x", "pools must be a list"),
        ("pools.0.name", "", "pools[0].name must be a non-empty string"),
        ("pools.0.targets", {"a": 1}, "pools[0].targets must be a list"),
        ("pools.0.targets.0.name", KeyError, "pools[0].targets[0].name must be a non-empty string"),
        ("pools.0.targets.0.healthy", KeyError, "pools[0].targets[0].healthy is missing"),
        ("pools.0.targets.0.healthy", "yes", "pools[0].targets[0].healthy must be true or false"),
        ("pools.0.targets.0.pending", "2", "pools[0].targets[0].pending must be a finite number, not '2'"),
        ("pools.0.targets.0.ewma_ms", float("nan"), "ewma_ms must be a finite number"),
        ("pools.0.targets.0.breaker", {"state": "ajar"}, "breaker state 'ajar' is not one of closed, half_open, open"),
        ("pools.0.panic", 1, "pools[0].panic must be true or false"),
        ("retry_budget", [1], "retry_budget must be an object"),
    ],
)
def test_bad_status_is_refused_with_the_field_named(path, value, message):
    with pytest.raises(ValueError, match="^router status: .*" + re.escape(message)):
        health_samples(_set(GOOD, path, value), T0)


def test_naive_time_and_empty_router_name_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        health_samples(GOOD, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="router_name must be a non-empty string"):
        health_samples(GOOD, T0, router_name="")


# ---- the rule file over a real lake ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ["reference", "sql"])
def test_shipped_router_rules_fire_on_a_real_lake(tmp_path, engine):
    """Samples every 15 s for 5 minutes; the rules evaluated every 30 s as the alerts flow does.

    - pool ``search``: from 60 s on, ``b`` ejected and ``c``'s breaker open/half-open: 1 of 3
      healthy → RouterPoolUnhealthy pending at 60 s, firing at 120 s (``for: 1m``);
    - ``c``'s breaker alternates open and half-open (trial calls failing) → RouterBreakerOpen
      pending at 60 s, firing at 180 s (``for: 2m``); ``b``'s breaker opens for 30 s and closes → never;
    - pool ``blip``: below half healthy for 30 s only → pending, never firing.
    """
    lake = Lake(str(tmp_path / "lake"))
    for step in range(21):  # 0 … 300 s
        s = step * 15
        bad = s >= 60
        c_breaker = ("open" if step % 3 else "half_open") if bad else "closed"
        b_breaker = "open" if 60 <= s < 90 else "closed"
        blip = 60 <= s < 90
        st = status(
            (
                "search",
                [
                    target("a"),
                    target("b", healthy=not bad, breaker=b_breaker, ejected_for_s=30.0 if bad else 0.0),
                    target("c", healthy=not bad, breaker=c_breaker),
                ],
                False,
            ),
            ("blip", [target(n, healthy=not (blip and n != "x")) for n in ("x", "y", "z")], False),
        )
        res = write_health(lake, st, T0 + timedelta(seconds=s), router_name="edge")
        assert res.rejected == 0

    ruleset = load_rule_files([RULES])
    assert [r.name for r in ruleset.alerts] == ["RouterPoolUnhealthy", "RouterBreakerOpen"]
    store = RuleStore(State(str(tmp_path / "state.duckdb")))
    seen: list[tuple[str, str, str, int]] = []
    firing_at_end: set[tuple[str, str]] = set()
    for step in range(11):  # 0 … 300 s
        batch = evaluate_many if engine == "sql" else None
        out = run_rules(ruleset, lake, store, T0 + timedelta(seconds=30 * step), batch=batch)
        assert not out.errors
        for _, tr in out.transitions:
            labels = tr.alert.labels
            who = labels.get("target") or labels["pool"]
            seen.append((labels["alertname"], who, tr.kind, int((tr.t - T0).total_seconds())))
        firing_at_end = {
            (a.labels["alertname"], a.labels.get("target") or a.labels["pool"])
            for a in out.alerts
            if a.status == "firing"
        }

    assert ("RouterPoolUnhealthy", "search", "pending", 60) in seen
    assert ("RouterPoolUnhealthy", "search", "firing", 120) in seen
    assert ("RouterBreakerOpen", "c", "pending", 60) in seen
    assert ("RouterBreakerOpen", "c", "firing", 180) in seen
    assert ("RouterBreakerOpen", "b", "pending", 60) in seen
    assert not any(name == "RouterBreakerOpen" and who == "b" and kind == "firing" for name, who, kind, _ in seen)
    assert ("RouterPoolUnhealthy", "blip", "pending", 60) in seen
    assert not any(who == "blip" and kind == "firing" for _, who, kind, _ in seen)
    assert firing_at_end == {("RouterPoolUnhealthy", "search"), ("RouterBreakerOpen", "c")}
    (alert,) = [a for a in out.alerts if a.labels["alertname"] == "RouterPoolUnhealthy"]
    assert alert.annotations["summary"] == "router edge: only 33.33% of pool search's targets are healthy"
    assert alert.labels["severity"] == "page"
