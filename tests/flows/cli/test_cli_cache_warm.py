"""``cortex-perf cache hot`` and ``cache warm`` over a tmp lake of ``cache_access`` samples and a real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from typer.testing import CliRunner

from flows.cli import app
from tasks.lake import Lake, Sample
from tasks.lake.schema import now_utc

runner = CliRunner()

#: reads per minute: six hot keys, a tail of cold ones (the prefix keeps runs on the shared server apart).
#: Six alike, not three apart: the ranker's leaves need 5 examples, and a 3-hour history gives each
#: key only 4 (one per training window), so a lone key's own level is below its resolution.
HOT = {f"h{i}": 50.0 for i in range(6)}
COLD = {f"z{i}": 1.0 for i in range(30)}


def values(keys: Sequence[str]) -> dict[str, Any]:
    """The loader the tests name as ``module:function``: a value and a 300 s TTL per key."""
    return {k: (f"v-{k}", 300) for k in keys}


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> tuple[list[str], str]:
    """Settings pointing at a tmp lake (3 h of per-minute ``cache_access`` samples), a tmp state DB
    and the test Redis; and the key prefix of this run."""
    prefix = f"w:{uuid.uuid4().hex[:8]}:"
    lake = Lake(str(tmp_path / "lake"))
    end = now_utc().replace(second=0, microsecond=0)
    rows = [
        Sample("cache_access", v, end - timedelta(minutes=m), {"key": prefix + k})
        for m in range(1, 181)
        for k, v in {**HOT, **COLD}.items()
    ]
    lake.write_samples(rows)
    args = ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"state.path={tmp_path / 'state.duckdb'}",
            "--set", f"cache.url={redis_url}"]  # fmt: skip
    return args, prefix


def _run(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.output


def _keys(redis_url: str, prefix: str) -> dict[str, int]:
    """This run's keys in Redis with their TTLs."""
    r = Redis.from_url(redis_url)
    try:
        return {k.decode(): int(r.ttl(k)) for k in r.scan_iter(match=prefix + "*")}
    finally:
        r.close()


def test_hot_json_ranks_the_most_read_keys_first(env: tuple[list[str], str]) -> None:
    args, prefix = env
    code, out = _run(*args, "cache", "hot", "--top", "8", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["model"] == "xgboost"  # the default predictor, as the benchmark's
    top = [k["key"] for k in got["keys"]]
    assert len(top) == 8 and set(top[:6]) == {prefix + k for k in HOT}
    scores = [k["score"] for k in got["keys"]]
    assert scores == sorted(scores, reverse=True) and scores[5] > scores[6]
    code, out = _run(*args, "cache", "hot", "--top", "6")
    assert code == 0 and prefix + "h0" in out and prefix + "z0" not in out


def test_warm_dry_run_lists_keys_and_writes_nothing(env: tuple[list[str], str], redis_url: str) -> None:
    args, prefix = env
    code, out = _run(*args, "cache", "warm", "--hot", "--top", "3", "--loader", f"{__name__}:values",
                     "--dry-run", "--json")  # fmt: skip
    assert code == 0, out
    got = json.loads(out)
    assert got["dry_run"] is True and got["to_load"] == 3 and got["present"] == 0
    assert set(got["keys"]) <= {prefix + k for k in HOT}
    assert _keys(redis_url, prefix) == {}


def test_warm_writes_with_ttls_then_skips_present_keys(env: tuple[list[str], str], redis_url: str) -> None:
    args, prefix = env
    warm = [*args, "cache", "warm", "--hot", "--top", "3", "--loader", f"{__name__}:values", "--json"]
    code, out = _run(*warm)
    assert code == 0, out
    got = json.loads(out)
    assert (got["status"], got["warmed"], got["skipped_present"]) == ("applied", 3, 0)
    present = _keys(redis_url, prefix)
    assert set(present) <= {prefix + k for k in HOT} and len(present) == 3
    assert all(290 < ttl <= 300 for ttl in present.values())  # the loader's TTL
    r = Redis.from_url(redis_url)
    try:
        first = sorted(present)[0]
        assert r.get(first) == f"v-{first}".encode()
        r.set(first, b"live")  # live traffic rewrote one: the next warm-up must leave it alone
        # a second run, a different key set (so a new action id): the present keys are skipped
        code, out = _run(*args, "cache", "warm", "--hot", "--top", "4", "--loader", f"{__name__}:values", "--json")
        assert code == 0, out
        again = json.loads(out)
        assert (again["warmed"], again["skipped_present"]) == (1, 3)
        assert r.get(first) == b"live"
    finally:
        r.close()


@pytest.mark.parametrize("loader", ["no_such_module_xyz:values", "not a loader", f"{__name__}:HOT"])
def test_a_bad_loader_is_one_line_naming_the_setting(env: tuple[list[str], str], redis_url: str, loader: str) -> None:
    args, prefix = env
    code, out = _run(*args, "cache", "warm", "--hot", "--top", "3", "--loader", loader)
    assert code == 2
    assert "cache.warm.loader" in out and len(out.strip().splitlines()) == 1
    assert _keys(redis_url, prefix) == {}


@pytest.fixture
def password_url(redis_url: str) -> Iterator[str]:
    """The test Redis through an ACL user with a password (the default user is left as it is)."""
    user, pw = f"warm{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    r = Redis.from_url(redis_url)
    r.acl_setuser(user, enabled=True, passwords=[f"+{pw}"], keys=["*"], commands=["+@all"])
    try:
        yield redis_url.replace("redis://", f"redis://{user}:{pw}@", 1)
    finally:
        r.acl_deluser(user)
        r.close()


def test_the_password_in_the_url_is_never_printed(env: tuple[list[str], str], password_url: str) -> None:
    args, _ = env
    pw = password_url.split(":")[2].split("@")[0]
    with_pw = [*args, "--set", f"cache.url={password_url}", "cache", "warm", "--hot", "--top", "3",
               "--loader", f"{__name__}:values"]  # fmt: skip
    for extra in (["--dry-run"], ["--dry-run", "--json"], []):
        code, out = _run(*with_pw, *extra)
        assert code == 0, out
        assert pw not in out
    # a failure (the server refuses a wrong password) names the server but not the secret
    wrong = password_url.replace(pw, pw + "x")
    code, out = _run(*args, "--set", f"cache.url={wrong}", "cache", "warm", "--hot", "--top", "3",
                     "--loader", f"{__name__}:values", "--dry-run")  # fmt: skip
    assert code == 2 and pw not in out and len(out.strip().splitlines()) == 1
