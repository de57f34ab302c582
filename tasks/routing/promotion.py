"""Promoting a router model as an action, and reading the champion back for the service.

Why an action: a promotion changes how live traffic is routed (the proxy picks the champion up on
its next registry check, without a restart), so it gets what every such change gets from
``tasks.actuators`` — an id that applies it once (``router-model-<name>-<version>``), a ledger row
with the outcome, dry-run on asking, ``action.applied``/``action.failed`` in the lake on the
resource ``cortex.router.<name>`` — and the pick-up is auditable: the version the service loads is
the one the last applied ``router.model`` action set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue

from tasks.actuators import Action, ActionLedger, ActionResult, Actuator, ActuatorConfig, record_result
from tasks.lake import Lake
from tasks.registry import ModelRegistry, RegistryError
from tasks.routing.learned import RouteModel

__all__ = [
    "ACTUATOR_NAME",
    "RouterModelActuator",
    "RouterModelConfig",
    "load_champion",
    "promote_model",
    "promotion_action",
]

ACTUATOR_NAME = "router.model"


class RouterModelConfig(ActuatorConfig):
    """The ``router_model`` actuator: sets which version of a router model is the champion."""

    kind: Literal["router_model"] = "router_model"
    name: str | None = Field(ACTUATOR_NAME, min_length=1, max_length=100)


class RouterModelActuator(Actuator[Action, str | None]):
    """Reads and sets the champion version of a registry lineage (``target`` = the model name)."""

    kind = "router_model"
    config_model = RouterModelConfig

    def __init__(self, config: ActuatorConfig, *, ledger: ActionLedger, registry: ModelRegistry) -> None:
        super().__init__(config, ledger=ledger)
        self.registry = registry

    def _read(self, target: str) -> str | None:
        champion = self.registry.champion(target)
        return champion.version if champion else None

    def _set(self, action: Action, detail: dict[str, Any]) -> str | None:
        version = str(action.to)
        if self._read(action.target) != version:  # a re-run after a crash between promote and finish
            decision = self.registry.promote(action.target, version, reason=action.reason)
            detail["previous"] = decision.champion.version if decision.champion else None
        return self._read(action.target)


def promotion_action(
    name: str,
    version: str,
    *,
    previous: str | None,
    reason: str,
    scores: dict[str, JsonValue],
    dry_run: bool = False,
) -> Action:
    """The decision to make ``version`` the champion of ``name`` (its id is stable per version)."""
    return Action(
        id=f"router-model-{name}-{version}",
        target=name,
        to=version,
        **{"from": previous},
        kind="model",
        area="router",
        reason=reason,
        policy="router flow backtest",
        mode="dry-run" if dry_run else "apply",
        params={"scores": scores},
    )


def promote_model(
    lake: Lake,
    ledger: ActionLedger,
    registry: ModelRegistry,
    action: Action,
    *,
    dry_run: bool = False,
) -> ActionResult:
    """Apply a promotion once and record ``action.applied``/``action.failed`` in the lake."""
    actuator = RouterModelActuator(RouterModelConfig(), ledger=ledger, registry=registry)
    result = actuator.apply(action, dry_run=dry_run)
    record_result(lake, result)
    return result


def load_champion(registry: ModelRegistry, name: str) -> tuple[str, RouteModel] | None:
    """The champion router model of ``name`` and its version; None while there is none.

    What the service's reload loop calls every ``router.service.reload_s`` and hands to
    ``Router.set_model`` when the version changed."""
    champion = registry.champion(name)
    if champion is None:
        return None
    try:
        mv, model = registry.load_as(name, RouteModel, champion.version)
    except (RegistryError, OSError, ValueError) as exc:
        raise RegistryError(f"router model {name!r} {champion.version} cannot be loaded: {exc}") from exc
    return mv.version, model
