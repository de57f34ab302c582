"""Warming against a real redis-server: SET NX, TTLs, loaders, the rate cap, the action record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tasks.actuators import ActionLedger
from tasks.caching.client import CacheClient
from tasks.caching.warm import CallableLoader, WarmConfigError, glob_matcher, parse_loader, warm_keys
from tasks.caching.warm_action import run_warm
from tasks.config.caching import CacheWarmSettings
from tasks.lake import Lake


@pytest.fixture
def client(redis_url: str) -> Any:
    with CacheClient(redis_url) as c:
        yield c


def _keys(n: int) -> list[str]:
    p = uuid.uuid4().hex[:8]
    return [f"t:{p}:{i}" for i in range(n)]


def values(keys: Sequence[str]) -> dict[str, Any]:
    """A module-level loader for the ``module:function`` spec."""
    return {k: f"v-{k}" for k in keys}


def test_present_keys_are_not_rewritten_and_ttls_are_kept(client: CacheClient) -> None:
    keys = _keys(5)
    client.redis.set(keys[0], b"live", ex=1000)
    loader = CallableLoader("t:ttl", lambda ks: {k: (b"x", 50) if k == keys[1] else b"y" for k in ks})
    rep = warm_keys(client, keys, loader, CacheWarmSettings(default_ttl_s=300, batch=2))
    assert (rep.warmed, rep.skipped_present, rep.error) == (4, 1, None)
    assert client.redis.get(keys[0]) == b"live" and 990 < client.redis.ttl(keys[0]) <= 1000
    assert 40 < client.redis.ttl(keys[1]) <= 50  # the loader's TTL
    assert 290 < client.redis.ttl(keys[2]) <= 300  # cache.warm.default_ttl_s


def test_the_rate_cap_holds_over_a_run(client: CacheClient) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    keys = _keys(500)
    rep = warm_keys(
        client, keys, CallableLoader("t:v", values), CacheWarmSettings(ops_per_s=100, batch=10),
        clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    assert rep.warmed == 500
    # 500 writes at 100/s with a burst of one batch (10): at least 4.9 s of (injected) time
    assert now[0] >= (500 - 10) / 100 - 1e-9
    assert rep.warmed / now[0] <= 100 * 1.03


def test_the_byte_cap_holds(client: CacheClient) -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    loader = CallableLoader("t:big", lambda ks: dict.fromkeys(ks, b"z" * 1000))
    rep = warm_keys(client, _keys(100), loader, CacheWarmSettings(bytes_per_s=10_000, batch=10),
                    clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert rep.bytes == 100_000 and now[0] >= (100_000 - 1000) / 10_000 - 1e-9


def test_a_loader_that_raises_stops_and_says_what_was_written(client: CacheClient) -> None:
    keys = _keys(30)
    calls = [0]

    def flaky(ks: list[str]) -> dict[str, bytes]:
        calls[0] += 1
        if calls[0] == 2:
            raise ConnectionError("origin down")
        return dict.fromkeys(ks, b"v")

    rep = warm_keys(client, keys, CallableLoader("app:flaky", flaky), CacheWarmSettings(batch=10))
    assert rep.warmed == 10
    assert rep.error == "cache.warm.loader 'app:flaky' raised ConnectionError: origin down"
    assert sum(client.redis.exists(k) for k in keys) == 10


def test_module_function_loader(client: CacheClient) -> None:
    keys = _keys(3)
    rep = warm_keys(client, keys, parse_loader(f"{__name__}:values"), CacheWarmSettings())
    assert rep.warmed == 3 and client.redis.get(keys[0]) == f"v-{keys[0]}".encode()


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("nonsense", "is not module:function"),
        ("no_such_module_x:f", "cannot import"),
        ("https://origin/without-key", "has no {key}"),
        ("sql: SELECT 1", "must take the keys as $keys"),
        ("", "no loader configured"),
    ],
)
def test_bad_loader_spec_names_the_setting(spec: str, why: str) -> None:
    with pytest.raises(WarmConfigError) as err:
        parse_loader(spec, lake=object())
    assert str(err.value).startswith("cache.warm.loader: ") and why in str(err.value)
    assert "\n" not in str(err.value)


def test_http_loader_against_a_local_server(client: CacheClient) -> None:
    from localhttp import JsonHandler, LocalServer

    class Origin(JsonHandler):
        def do_GET(self) -> None:
            if self.path.endswith("missing"):
                self._send(404, {})
                return
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Cache-Control", "max-age=77")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = LocalServer(Origin)
    try:
        keys = [*_keys(2), "a key/with?odd&chars", f"{uuid.uuid4().hex}:missing"]
        client.redis.delete(keys[2])
        rep = warm_keys(client, keys, parse_loader(srv.url + "/v/{key}"), CacheWarmSettings())
    finally:
        srv.close()
    assert (rep.warmed, rep.skipped_no_value) == (3, 1)
    assert client.redis.get(keys[2]) == b"/v/a%20key%2Fwith%3Fodd%26chars"
    assert 70 < client.redis.ttl(keys[2]) <= 77
    client.redis.delete(keys[2])


def test_sql_loader_binds_the_keys(client: CacheClient, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    keys = _keys(2) + ["x'); DROP TABLE samples; --"]
    spec = "sql: SELECT k AS key, 'val-' || k AS value FROM (SELECT unnest($keys) AS k) WHERE k NOT LIKE 'x%'"
    rep = warm_keys(client, keys, parse_loader(spec, lake=lake), CacheWarmSettings())
    assert (rep.warmed, rep.skipped_no_value) == (2, 1)
    assert client.redis.get(keys[0]) == f"val-{keys[0]}".encode()


def test_warm_on_a_cluster_crosses_slots(redis_cluster: Any) -> None:
    with CacheClient(redis_cluster.url, cluster=True) as c:
        keys = [f"user:{i}" for i in range(200)]
        rep = warm_keys(c, keys, CallableLoader("t:v", values), CacheWarmSettings(batch=50))
        assert rep.warmed == 200 and c.dbsize() == 200


def test_warm_as_an_action_is_applied_once_and_recorded(client: CacheClient, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ledger = ActionLedger(str(tmp_path / "state.duckdb"))
    keys = _keys(4)
    first = run_warm(lake, ledger, client, keys, CallableLoader("t:v", values), CacheWarmSettings(), source="keys")
    assert first.result.status == "applied" and first.report is not None and first.report.warmed == 4
    again = run_warm(lake, ledger, client, keys, CallableLoader("t:v", values), CacheWarmSettings(), source="keys")
    assert again.result.status == "skipped"
    names = lake.events(name="cache.warmed")
    assert names.height == 1
    assert lake.events(name="action.applied").height == 1


def test_glob_patterns() -> None:
    m = glob_matcher(["user:*", "s?ss:[ab]"])
    assert [m(k) for k in ["user:1", "sess:a", "sess:c", "other"]] == [True, True, False, False]
