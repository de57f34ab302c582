"""Warming as an action: decided, recorded, applied once, and told to the lake as ``cache.warmed``.

Why through the actuator home: a warm-up writes to a production cache, so it gets what every
action gets (``tasks.actuators``) — an id that applies it at most once (a re-run of the same
trigger is a skip, not a second load on the origin), a ledger row with the outcome, dry-run by
asking, and ``action.applied``/``action.failed`` in the lake — plus our own ``cache.warmed`` event
with the counts, which automations and reports read.

The action carries what identifies it (how many keys, a hash of them, the loader); the keys
themselves are handed to the actuator, since a 100k-key list has no place in a ledger row or an
event.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tasks.actuators import Action, ActionLedger, ActionResult, Actuator, ActuatorConfig, ActuatorError, record_result
from tasks.caching.client import CacheClient
from tasks.caching.warm import Loader, WarmReport, warm_keys
from tasks.config.caching import CacheWarmSettings
from tasks.events import emit
from tasks.lake import Lake
from tasks.lake.schema import now_utc

__all__ = ["RedisWarmActuator", "RedisWarmConfig", "WarmOutcome", "keys_digest", "run_warm", "warm_action"]


class RedisWarmConfig(ActuatorConfig):
    """The ``redis_warm`` actuator: no settings beyond a name (the caps are ``cache.warm``)."""

    kind: Literal["redis_warm"] = "redis_warm"


def keys_digest(keys: Sequence[str]) -> str:
    """A short hash of a key set (order-free): identifies the warm-up in the ledger and the event."""
    h = hashlib.sha256()
    for k in sorted(set(keys)):
        h.update(k.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]


class RedisWarmActuator(Actuator[Action, dict[str, Any]]):
    """Loads the keys it was given into the Redis of ``client``; ``current`` is the key count."""

    kind = "redis_warm"
    config_model = RedisWarmConfig

    def __init__(
        self,
        config: ActuatorConfig,
        *,
        ledger: ActionLedger,
        client: CacheClient,
        loader: Loader,
        keys: Sequence[str],
        settings: CacheWarmSettings,
        progress: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(config, ledger=ledger)
        self.client = client
        self.loader = loader
        self.keys = list(keys)
        self.settings = settings
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.report: WarmReport | None = None

    def _read(self, target: str) -> dict[str, Any]:
        return {"keys": self.client.dbsize()}

    def _set(self, action: Action, detail: dict[str, Any]) -> dict[str, Any]:
        if action.params.get("keys_sha") != keys_digest(self.keys):
            raise ActuatorError(f"{self.name}: the keys handed over are not the action's ({action.id})")
        rep = warm_keys(
            self.client,
            self.keys,
            self.loader,
            self.settings,
            progress=self.progress,
            clock=self.clock,
            sleep=self.sleep,
        )
        self.report = rep
        detail.update(rep.counts())
        if rep.error is not None:
            raise ActuatorError(rep.error)
        return rep.counts()

    def _matches(self, action: Action, observed: dict[str, Any]) -> bool:
        return observed.get("error") is None


def warm_action(
    client: CacheClient, keys: Sequence[str], loader: Loader, *, source: str, now: datetime | None = None
) -> Action:
    """The action for warming ``keys``: its id is stable for the same keys, loader and minute, so a
    trigger that fires twice in a minute warms once."""
    now = now or now_utc()
    sha = keys_digest(keys)
    ident = hashlib.sha256(f"{client.name}|{loader.spec}|{sha}|{now:%Y-%m-%dT%H:%M}".encode()).hexdigest()[:16]
    return Action(
        id=f"warm-{ident}",
        target=client.name,
        to=len(set(keys)),
        kind="keys",
        area="cache",
        reason=f"warm {len(set(keys))} keys ({source}) from {loader.spec}",
        policy=source,
        mode="apply",
        params={"keys_sha": sha, "loader": loader.spec, "source": source, "sample": sorted(set(keys))[:10]},
    )


@dataclass
class WarmOutcome:
    """The action's result and the warm-up record (``None`` when the action was skipped)."""

    result: ActionResult
    report: WarmReport | None


def run_warm(
    lake: Lake,
    ledger: ActionLedger,
    client: CacheClient,
    keys: Sequence[str],
    loader: Loader,
    settings: CacheWarmSettings,
    *,
    source: str,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WarmOutcome:
    """Warm ``keys`` as an action (applied once per id), then record ``action.*`` and ``cache.warmed``."""
    action = warm_action(client, keys, loader, source=source, now=now)
    actuator = RedisWarmActuator(
        RedisWarmConfig(),
        ledger=ledger,
        client=client,
        loader=loader,
        keys=keys,
        settings=settings,
        progress=progress,
        clock=clock,
        sleep=sleep,
    )
    result = actuator.apply(action, dry_run=False)
    record_result(lake, result)
    rep = actuator.report
    if rep is not None:
        emit(
            lake,
            "cache.warmed",
            f"cache.{client.name}",
            {"decision_id": action.id, "source": source, "status": result.status, **rep.counts()},
        )
    return WarmOutcome(result, rep)
