"""The scaling section's cross-package checks (``tasks.scaling.settings_check``), run by every loader.

What could break: an actuator that applies something other than counts accepted for a target (it
would fail at the first tick instead of at load), secrets in an actuator config shown by ``config
show`` once the settings stopped typing it, or a missing actuator no longer meaning ``log``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest
from pydantic import SecretStr

from tasks.actuators import Action, Actuator, ActuatorConfig, register_actuator, unregister_actuator
from tasks.config import ConfigError, Settings, load_settings, redacted
from tasks.config_checks import check_settings
from tasks.scaling.settings_check import scaling_settings_problems


def _settings(actuator: Any) -> Settings:
    target = {"name": "w", "capacity_per_unit": 1, "metric": {"selector": "x"}, "actuator": actuator}
    return load_settings(None, {"scaling.targets": [target]})


class WeightConfig(ActuatorConfig):
    kind: Literal["weight"] = "weight"


class WeightActuator(Actuator[Action, float]):
    kind = "weight"
    config_model = WeightConfig
    weights: ClassVar[dict[str, float]] = {}

    def _read(self, target: str) -> float:
        return 1.0

    def _set(self, action: Action, detail: dict[str, Any]) -> float:
        return 1.0


class PickyAction(Action):
    to: str


class PickyConfig(ActuatorConfig):
    kind: Literal["picky"] = "picky"


class PickyActuator(WeightActuator):
    kind = "picky"
    config_model = PickyConfig
    action_model = PickyAction


def test_an_actuator_that_does_not_set_counts_is_refused_for_a_target() -> None:
    register_actuator(WeightActuator)
    register_actuator(PickyActuator)
    try:
        assert scaling_settings_problems(_settings({"kind": "weight"}).scaling) == []  # takes any Action
        with pytest.raises(ConfigError, match=r"scaling\.targets\[0\]\.actuator\.kind: actuator 'picky' applies "
                                              r"PickyAction actions, not counts"):  # fmt: skip
            check_settings(_settings({"kind": "picky"}))
    finally:
        unregister_actuator("weight")
        unregister_actuator("picky")


def test_checked_settings_type_the_actuator_config_so_secrets_stay_secret() -> None:
    secret = "an-hmac-key-nobody-should-see"
    raw = _settings({"kind": "webhook", "url": "http://h/x", "secret": secret})
    checked = check_settings(raw)
    actuator = checked.scaling.targets[0].actuator
    assert isinstance(actuator["secret"], SecretStr) and actuator["timeout_s"] == 10.0  # defaults filled in
    assert secret not in repr(redacted(checked)) and secret not in repr(checked)
    assert checked.scaling.targets[0].actuator_name == "webhook"


@pytest.mark.parametrize("given", [None, {}, {"kind": "log"}])
def test_no_actuator_means_log(given: Any) -> None:
    checked = check_settings(_settings(given))
    assert checked.scaling.targets[0].actuator == {"kind": "log", "name": None, "initial": 1}
