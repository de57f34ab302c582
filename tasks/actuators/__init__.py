"""Scaling actuators: plug-ins that set a target's count on a real system, behind one interface.

``Actuator.current(target) -> int`` reads reality; ``Actuator.apply(decision, *, dry_run=True) ->
ActionResult`` sets ``decision.to`` at most once per decision id (see ``base`` for how). Kinds:

- ``log`` (the default: records only), ``command`` (runs an argv with the count, no shell),
- ``webhook`` (POSTs the decision, HMAC-SHA256 signed like ``X-Hub-Signature-256``),
- ``prefect_pool`` (a work pool's or work queue's concurrency limit),
- ``kubernetes`` (a Deployment's/StatefulSet's ``scale`` subresource),
- ``process_pool`` (N local worker processes, tracked by pid files).

Build one from config with ``build_actuator({"kind": "webhook", ...}, ledger=Ledger(state_path))``;
``record_result(lake, result)`` appends ``action.applied``/``action.failed`` to the lake;
``register_actuator`` adds a kind (plug-ins). Bad config raises ``ActuatorConfigError`` naming the
field (``unknown actuator`` lists the known kinds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.actuators.base import (
    ActionResult,
    ActionStatus,
    Actuator,
    ActuatorConfig,
    ActuatorConfigError,
    ActuatorError,
    Decision,
    Ledger,
    record_result,
    validate_config,
)
from tasks.actuators.command import CommandActuator, CommandConfig
from tasks.actuators.kubernetes import KubernetesActuator, KubernetesConfig
from tasks.actuators.log import LogActuator, LogConfig
from tasks.actuators.prefect_pool import PrefectPoolActuator, PrefectPoolConfig
from tasks.actuators.process_pool import ProcessPoolActuator, ProcessPoolConfig
from tasks.actuators.webhook import WebhookActuator, WebhookConfig

__all__ = [
    "ACTUATORS",
    "ActionResult",
    "ActionStatus",
    "Actuator",
    "ActuatorConfig",
    "ActuatorConfigError",
    "ActuatorError",
    "CommandActuator",
    "CommandConfig",
    "Decision",
    "KubernetesActuator",
    "KubernetesConfig",
    "Ledger",
    "LogActuator",
    "LogConfig",
    "PrefectPoolActuator",
    "PrefectPoolConfig",
    "ProcessPoolActuator",
    "ProcessPoolConfig",
    "WebhookActuator",
    "WebhookConfig",
    "build_actuator",
    "parse_actuator_config",
    "record_result",
    "register_actuator",
]

#: kind → actuator class (its ``config_model`` validates the config). The one registry.
ACTUATORS: dict[str, type[Actuator]] = {
    cls.kind: cls
    for cls in (
        LogActuator,
        CommandActuator,
        WebhookActuator,
        PrefectPoolActuator,
        KubernetesActuator,
        ProcessPoolActuator,
    )
}


def register_actuator(cls: type[Actuator]) -> type[Actuator]:
    """Add an actuator kind (usable as a class decorator); a kind already taken is an error."""
    if cls.kind in ACTUATORS and ACTUATORS[cls.kind] is not cls:
        raise ValueError(f"actuator kind {cls.kind!r} is already registered ({ACTUATORS[cls.kind].__name__})")
    ACTUATORS[cls.kind] = cls
    return cls


def parse_actuator_config(data: Mapping[str, Any] | ActuatorConfig, *, origin: str = "actuator") -> ActuatorConfig:
    """Validate a config mapping (``kind`` picks the model; default ``log``) into its typed config."""
    if isinstance(data, ActuatorConfig):
        return data
    if not isinstance(data, Mapping):
        raise ActuatorConfigError(f"{origin}: expected a mapping with a 'kind', got {type(data).__name__}")
    kind = data.get("kind", "log")
    cls = ACTUATORS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ActuatorConfigError(f"{origin}.kind: unknown actuator {kind!r} (known: {', '.join(sorted(ACTUATORS))})")
    return validate_config(cls.config_model, {**data, "kind": kind}, origin)


def build_actuator(
    config: Mapping[str, Any] | ActuatorConfig, *, ledger: Ledger, origin: str = "actuator", **kwargs: Any
) -> Actuator:
    """The actuator a config describes, bound to ``ledger``; ``kwargs`` go to its constructor (clients)."""
    cfg = parse_actuator_config(config, origin=origin)
    return ACTUATORS[cfg.kind](cfg, ledger=ledger, **kwargs)
