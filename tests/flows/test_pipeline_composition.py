"""The pipeline is one composition root: it loads the settings once, builds one lake and one state
DB, and hands them to every stage; the demo's scaling target and rules reach their stages as typed
settings, not as JSON overrides re-parsed by each stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.config import ScalingTargetSettings
from tasks.demo_config import DEMO_RULES, DEMO_SCALING_TARGET

pytestmark = pytest.mark.usefixtures("prefect_harness")

#: The expensive stages are switched off: this test is about what the stages receive.
FAST = ["forecast.enabled=false", "anomaly.enabled=false", "reports.enabled=false"]


def test_pipeline_loads_once_and_hands_every_stage_the_same_runtime(
    lake_overrides: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # flows import Prefect: imported once the harness has set Prefect's environment (as in test_flows.py)
    import flows._common as common
    import flows.pipeline as pipeline_module
    from flows._common import Runtime

    monkeypatch.chdir(tmp_path)  # a project without a cortex-perf.yaml: the demo brings its own setup
    monkeypatch.delenv("CORTEX_PERF_CONFIG", raising=False)
    loads: list[Any] = []
    real_load = common.load_checked_settings

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(common, "load_checked_settings", counting_load)
    received: dict[str, Runtime] = {}

    def spy(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(rt: Runtime, **kwargs: Any) -> Any:
            received[name] = rt
            return stage(rt, **kwargs)

        return wrapper

    for name in ("collect", "maintain", "forecast", "anomaly", "scale", "alerts", "report"):
        attr = f"{name}_stage"
        monkeypatch.setattr(pipeline_module, attr, spy(name, getattr(pipeline_module, attr)))

    summary = pipeline_module.pipeline(demo=True, overrides=[*lake_overrides, *FAST], demo_days=0.2)

    assert summary["ok"] is True, [s["detail"] for s in summary["stages"]]
    assert len(loads) == 1  # the pipeline's own load; no stage read the config again
    assert not any("scaling.targets" in o or "rule_files" in o for o in loads[0][1])
    assert set(received) == {"collect", "maintain", "forecast", "anomaly", "scale", "alerts", "report"}
    runtimes = list(received.values())
    assert all(rt.lake is runtimes[0].lake and rt.state is runtimes[0].state for rt in runtimes)
    assert received["collect"].settings is received["report"].settings

    # the demo target reaches the scale stage as a typed, checked target (actuator config typed)
    (target,) = received["scale"].settings.scaling.targets
    assert isinstance(target, ScalingTargetSettings)
    assert target.name == DEMO_SCALING_TARGET["name"] and target.actuator["kind"] == "log"
    assert received["alerts"].settings.alerting.rule_files == [str(DEMO_RULES)]
    assert received["collect"].settings.scaling.targets == []  # the other stages see the config as loaded
    stages = {s["stage"]: s for s in summary["stages"]}
    assert "demo-web" in stages["scale"]["detail"] and "dry-run" in stages["scale"]["detail"]
    assert stages["alerts"]["result"]["firing"] >= 1  # the demo rules' Watchdog
