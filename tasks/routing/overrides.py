"""Routing weights and resilience settings changed as recorded actions, picked up by the service.

Why not edit ``cortex-perf.yaml``: the config is the user's file (comments, layout, version
control); a flow or an operator changing a weight at 03:00 must leave a record (who, why, from →
to) and must apply once, like every other action. So a change is an ``Action`` (area ``routing``,
kind ``settings``) applied by the ``router_settings`` actuator, which stores it in the state DB
(``router_overrides``); the proxy's reload loop reads the overrides every ``service.reload_s`` and
lays them over the config (``effective_settings``), without a restart and without dropping a request.

What can be changed (``FIELDS``): per target ``weight``, ``capacity``, ``cost``; per pool
``strategy``; router-wide ``strategy``, ``panic_threshold_percent`` and every field of
``breaker``, ``ejection``, ``retry`` and ``learned``. A change is validated against the whole
settings model before anything is stored: a bad value is a one-line error naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import ValidationError

from tasks.actuators import Action, ActionLedger, ActionResult, Actuator, ActuatorConfig, record_result
from tasks.config.routing import (
    BreakerSettings,
    EjectionSettings,
    LearnedSettings,
    RetrySettings,
    RouterSettings,
)
from tasks.lake import Lake
from tasks.state import State, register_schema

__all__ = [
    "FIELDS",
    "Override",
    "OverrideError",
    "RouterSettingsActuator",
    "RouterSettingsConfig",
    "effective_settings",
    "load_overrides",
    "parse_scope",
    "settings_action",
]

register_schema(
    "router_overrides",
    """CREATE TABLE IF NOT EXISTS router_overrides (
        pool VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        field VARCHAR NOT NULL,
        value JSON NOT NULL,
        action_id VARCHAR NOT NULL,
        set_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (pool, target, field)
    )""",
)

TARGET_FIELDS = ("weight", "capacity", "cost")
POOL_FIELDS = ("strategy",)
ROUTER_FIELDS = (
    "strategy",
    "panic_threshold_percent",
    *(f"breaker.{f}" for f in BreakerSettings.model_fields),
    *(f"ejection.{f}" for f in EjectionSettings.model_fields),
    *(f"retry.{f}" for f in RetrySettings.model_fields),
    *(f"learned.{f}" for f in LearnedSettings.model_fields),
)
FIELDS = {"target": TARGET_FIELDS, "pool": POOL_FIELDS, "router": ROUTER_FIELDS}


class OverrideError(ValueError):
    """A change that cannot be made (unknown scope or field, a value the settings refuse)."""


@dataclass(frozen=True)
class Override:
    pool: str  # "" = router-wide
    target: str  # "" = the pool itself
    field: str
    value: Any
    action_id: str
    set_at: datetime

    @property
    def scope(self) -> str:
        return "/".join(p for p in (self.pool, self.target) if p) or "router"


def parse_scope(scope: str) -> tuple[str, str]:
    """``router`` → ("", ""); ``POOL`` → (pool, ""); ``POOL/TARGET`` → (pool, target)."""
    if scope == "router":
        return "", ""
    pool, _, target = scope.partition("/")
    if not pool or "/" in target:
        raise OverrideError(f"target: {scope!r} is not `router`, `POOL` or `POOL/TARGET`")
    return pool, target


def _level(pool: str, target: str) -> Literal["router", "pool", "target"]:
    return "target" if target else ("pool" if pool else "router")


def _apply(tree: dict[str, Any], pool: str, target: str, field: str, value: Any) -> bool:
    """Lay one override on a settings dict; False when its pool or target is not configured."""
    if not pool:
        node = tree
        *parents, leaf = field.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
        return True
    for p in tree.get("pools", []):
        if p["name"] != pool:
            continue
        if not target:
            p[field] = value
            return True
        for t in p["targets"]:
            if t["name"] == target:
                t[field] = value
                return True
    return False


def effective_settings(base: RouterSettings, overrides: list[Override]) -> tuple[RouterSettings, list[Override]]:
    """``base`` with ``overrides`` laid over it, and the overrides that name no configured pool or
    target any more (kept in the state DB — the target may come back — but shown as stale).

    An override the settings refuse now (e.g. a capacity made invalid by a later constraint) is
    stale too, rather than taking the router down."""
    tree = base.model_dump(mode="python")
    stale: list[Override] = []
    for o in overrides:
        trial = json.loads(json.dumps(tree, default=str))
        if not _apply(trial, o.pool, o.target, o.field, o.value):
            stale.append(o)
            continue
        try:
            RouterSettings.model_validate(trial)
        except ValidationError:
            stale.append(o)
            continue
        tree = trial
    return RouterSettings.model_validate(tree), stale


def load_overrides(state: State) -> list[Override]:
    """Every stored override, oldest first (so a later one on the same field cannot exist: one row each)."""
    with state.transaction(read_only=True) as con:
        rows = con.execute(
            "SELECT pool, target, field, value, action_id, set_at FROM router_overrides ORDER BY set_at, pool, target"
        ).fetchall()
    return [Override(p, t, f, json.loads(v), a, s) for p, t, f, v, a, s in rows]


def validate_changes(base: RouterSettings, scope: str, changes: dict[str, Any]) -> tuple[str, str]:
    """Check ``changes`` at ``scope`` against the settings; raise ``OverrideError`` naming the field."""
    pool, target = parse_scope(scope)
    level = _level(pool, target)
    if not changes:
        raise OverrideError("changes: nothing to change (give FIELD=VALUE)")
    tree = base.model_dump(mode="python")
    if pool and pool not in {p["name"] for p in tree["pools"]}:
        raise OverrideError(
            f"target: unknown pool {pool!r} (pools: {', '.join(p['name'] for p in tree['pools']) or 'none'})"
        )
    for field, value in changes.items():
        if field not in FIELDS[level]:
            raise OverrideError(f"{field}: cannot be set on a {level} (settable: {', '.join(FIELDS[level])})")
        if not _apply(tree, pool, target, field, value):
            raise OverrideError(f"target: unknown target {target!r} in pool {pool!r}")
    try:
        RouterSettings.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise OverrideError(f"router.{where}: {err['msg']}") from None
    return pool, target


def settings_action(
    base: RouterSettings, scope: str, changes: dict[str, Any], *, reason: str = "", now: datetime | None = None
) -> Action:
    """The action that sets ``changes`` at ``scope`` (validated first). Its id hashes the change and
    the minute, so a retried flow run or a double-clicked command applies it once."""
    validate_changes(base, scope, changes)
    now = now or datetime.now(UTC)
    body = json.dumps({"scope": scope, "changes": changes}, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{body}|{now:%Y-%m-%dT%H:%M}".encode()).hexdigest()[:16]
    current = {f: _current(base, scope, f) for f in changes}
    return Action(
        id=f"router-{digest}",
        target=scope,
        to=json.loads(json.dumps(changes, default=str)),
        **{"from": json.loads(json.dumps(current, default=str))},
        kind="settings",
        reason=reason,
        area="routing",
        mode="apply",
    )


def _current(base: RouterSettings, scope: str, field: str) -> Any:
    pool, target = parse_scope(scope)
    tree = base.model_dump(mode="json")
    if not pool:
        node: Any = tree
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node
    for p in tree["pools"]:
        if p["name"] == pool:
            if not target:
                return p.get(field)
            for t in p["targets"]:
                if t["name"] == target:
                    return t.get(field)
    return None


class RouterSettingsConfig(ActuatorConfig):
    kind: Literal["router_settings"] = "router_settings"


class RouterSettingsActuator(Actuator[Action, dict[str, Any]]):
    """Stores routing changes in ``router_overrides``; the service lays them over its config."""

    kind: ClassVar[str] = "router_settings"
    config_model: ClassVar[type[ActuatorConfig]] = RouterSettingsConfig

    def __init__(self, config: ActuatorConfig, *, ledger: ActionLedger, state: State) -> None:
        super().__init__(config, ledger=ledger)
        self.state = state

    def _read(self, target: str) -> dict[str, Any]:
        pool, tgt = parse_scope(target)
        with self.state.transaction(read_only=True) as con:
            rows = con.execute(
                "SELECT field, value FROM router_overrides WHERE pool = ? AND target = ?", [pool, tgt]
            ).fetchall()
        return {f: json.loads(v) for f, v in rows}

    def _set(self, action: Action, detail: dict[str, Any]) -> dict[str, Any]:
        pool, tgt = parse_scope(action.target)
        assert isinstance(action.to, dict)
        now = datetime.now(UTC)
        with self.state.transaction() as con:
            for field, value in action.to.items():
                con.execute(
                    "INSERT OR REPLACE INTO router_overrides VALUES (?, ?, ?, ?, ?, ?)",
                    [pool, tgt, field, json.dumps(value), action.id, now],
                )
        return self._read(action.target)

    def _matches(self, action: Action, observed: dict[str, Any]) -> bool:
        assert isinstance(action.to, dict)
        return all(observed.get(k) == v for k, v in action.to.items())


def apply_settings_action(action: Action, *, state: State, lake: Lake | None, dry_run: bool) -> ActionResult:
    """Apply ``action`` once through the ``router_settings`` actuator and record the result in the lake."""
    act = RouterSettingsActuator(RouterSettingsConfig(), ledger=ActionLedger(str(state.path)), state=state)
    result = act.apply(action, dry_run=dry_run)
    if lake is not None:
        record_result(lake, result)
    return result


def clear_overrides(state: State, scope: str | None = None) -> int:
    """Remove the overrides at ``scope`` (every one when ``None``); how many were removed."""
    with state.transaction() as con:
        if scope is None:
            n = con.execute("SELECT count(*) FROM router_overrides").fetchone()
            con.execute("DELETE FROM router_overrides")
        else:
            pool, tgt = parse_scope(scope)
            n = con.execute(
                "SELECT count(*) FROM router_overrides WHERE pool = ? AND target = ?", [pool, tgt]
            ).fetchone()
            con.execute("DELETE FROM router_overrides WHERE pool = ? AND target = ?", [pool, tgt])
    return int(n[0]) if n else 0
