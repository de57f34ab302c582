"""The scaling section's checks that need other packages: the lake's selectors and aggregations,
the actuators' kinds and configs.

Why here: the settings are a leaf (``tasks.config.scaling`` holds plain models that check their
own fields), while what a metric may query and which actuators exist belong to the lake and to
``tasks.actuators`` (plug-ins included). Scaling, which uses both, answers for its section; the one
check every loader runs (``tasks.config_checks``) asks it. Messages name the field as the settings
always have (``scaling.targets.0.metric.agg``, ``scaling.targets[0].actuator.url``).
"""

from __future__ import annotations

from typing import Any

from tasks.actuators import ActuatorConfigError, ScaleAction, actuator_class, parse_actuator_config
from tasks.config import ScalingSettings, ScalingTargetSettings
from tasks.lake.lake import QueryError, parse_agg
from tasks.lake.selector import parse_selector

__all__ = ["COUNTER_AGGS", "scaling_settings_problems", "with_typed_actuators"]

#: Within-bucket aggregations a scaling metric may use: the lake's own (``Lake.query``) plus the
#: counter functions ``rate`` (per second) and ``increase`` (per bucket), which the tick computes.
COUNTER_AGGS = ("rate", "increase")


def scaling_settings_problems(scaling: ScalingSettings) -> list[str]:
    """Every problem of ``scaling`` that its own models cannot see, one ``field: message`` line each."""
    out: list[str] = []
    for i, t in enumerate(scaling.targets):
        out += _metric_problems(i, t)
        out += _actuator_problems(i, t)
    return out


def with_typed_actuators(scaling: ScalingSettings) -> ScalingSettings:
    """``scaling`` with each target's actuator config as its kind's model dumps it: defaults filled
    in and secrets as ``SecretStr`` (so ``config show`` prints ``**********``). Call it on checked
    settings (:func:`scaling_settings_problems` empty)."""
    targets = [
        t.model_copy(update={"actuator": _typed(t.actuator, f"scaling.targets[{i}].actuator")})
        for i, t in enumerate(scaling.targets)
    ]
    return scaling.model_copy(update={"targets": targets})


def _typed(actuator: dict[str, Any], origin: str) -> dict[str, Any]:
    return parse_actuator_config(actuator, origin=origin).model_dump()


def _metric_problems(i: int, t: ScalingTargetSettings) -> list[str]:
    out = []
    where = f"scaling.targets.{i}.metric"
    try:
        parse_selector(t.metric.selector)
    except ValueError as exc:
        out.append(f"{where}.selector: {exc} (got {t.metric.selector!r})")
    if t.metric.agg not in COUNTER_AGGS:
        try:
            parse_agg(t.metric.agg)
        except QueryError as exc:
            out.append(f"{where}.agg: {exc} or one of {', '.join(COUNTER_AGGS)} (got {t.metric.agg!r})")
    return out


def _actuator_problems(i: int, t: ScalingTargetSettings) -> list[str]:
    origin = f"scaling.targets[{i}].actuator"
    try:
        cfg = parse_actuator_config(t.actuator, origin=origin)
    except ActuatorConfigError as exc:
        return list(exc.problems)
    cls = actuator_class(cfg.kind)
    if cls is not None and not issubclass(ScaleAction, cls.action_model):
        return [f"{origin}.kind: actuator {cfg.kind!r} applies {cls.action_model.__name__} actions, not counts"]
    return []
