"""Actuators: the one home of "decide → record → apply once → verify", for every kind of action.

A capability decides (scaling today; cache warming, slot and task moves, routing weights next) and
hands an :class:`Action` to an actuator, which applies it at most once per action id:

- ``Actuator.current(target)`` reads reality; ``Actuator.apply(action, *, dry_run=True, retries=0)``
  claims the action in the :class:`ActionLedger` (state DB), sets ``action.to``, reads it back and
  records the outcome — dry run by default, a failure recorded and retried with the same id, a live
  apply never taken over by another process (``ledger``);
- :func:`record_result` appends ``action.applied`` / ``action.failed`` to the lake.

Kinds are plug-ins found through Python entry points (group ``cortex_perf.actuators``, see
``registry``); the built-ins set counts (:class:`CountActuator`, :class:`ScaleAction`): ``log``
(the default: records only), ``command`` (an argv with the count, no shell), ``webhook`` (POSTs
the action, HMAC-SHA256 signed like ``X-Hub-Signature-256``), ``prefect_pool`` (a work pool's or
queue's concurrency limit), ``kubernetes`` (a Deployment's/StatefulSet's ``scale`` subresource),
``process_pool`` (N local worker processes). Build one from config with
``build_actuator({"kind": "webhook", ...}, ledger=ActionLedger(state_path))``; bad config raises
``ActuatorConfigError`` naming the field (``unknown actuator`` lists the known kinds).
"""

from __future__ import annotations

from tasks.actuators.action import Action, ActionMode, ActionResult, ActionStatus, ScaleAction
from tasks.actuators.base import Actuator, ActuatorConfig, CountActuator, validate_config
from tasks.actuators.errors import ActuatorConfigError, ActuatorError
from tasks.actuators.ledger import ActionLedger, LedgerRow
from tasks.actuators.record import record_result
from tasks.actuators.registry import (
    ENTRY_POINT_GROUP,
    actuator_class,
    actuator_kinds,
    build_actuator,
    discover,
    parse_actuator_config,
    register_actuator,
    unregister_actuator,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Action",
    "ActionLedger",
    "ActionMode",
    "ActionResult",
    "ActionStatus",
    "Actuator",
    "ActuatorConfig",
    "ActuatorConfigError",
    "ActuatorError",
    "CountActuator",
    "LedgerRow",
    "ScaleAction",
    "actuator_class",
    "actuator_kinds",
    "build_actuator",
    "discover",
    "parse_actuator_config",
    "record_result",
    "register_actuator",
    "unregister_actuator",
    "validate_config",
]
