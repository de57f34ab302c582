"""tasks.config.scaling: a scaling target and its guard rails as configured; a bad value is refused
by pydantic naming the field (the policies and rails that use them are tested in tests/tasks/scaling)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tasks.config.scaling import GuardRails, ScalingTarget


def _target(**kw: object) -> ScalingTarget:
    base: dict[str, object] = {"name": "web", "capacity_per_unit": 100.0, "provisioning_delay_s": 120.0}
    base.update(kw)
    return ScalingTarget(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"capacity_per_unit": 0}, "capacity_per_unit"),
        ({"provisioning_delay_s": -1}, "provisioning_delay_s"),
        ({"policy": "magic"}, "policy"),
        ({"target_utilisation": 1.5}, "target_utilisation"),
        ({"miss_limit": 9, "miss_window": 3}, "miss_limit"),
        ({"rails": {"min_units": 5, "max_units": 1}}, "min_units"),
        ({"actuator": ""}, "actuator"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_target_names_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _target(**kw)


def test_bad_rails_name_the_field() -> None:
    with pytest.raises(ValidationError, match="min_units"):
        GuardRails(min_units=5, max_units=2)
    with pytest.raises(ValidationError, match="scale_up_period_s"):
        GuardRails(scale_up_period_s=0)
    with pytest.raises(ValidationError, match="scale_up_percent"):
        GuardRails(scale_up_percent=0, scale_up_units=0)
