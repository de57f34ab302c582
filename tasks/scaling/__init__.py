"""Scaling decisions: policies behind one pure function, guard rails in one place, a trace simulator.

``decide(target, current, history, forecast, now, state)`` (``policies``) is what the scale flow,
the CLI and the simulator all call; ``apply_guardrails`` (``guardrails``) is the one place limits
live; ``simulate`` replays a request-rate trace (``traces``) in 15 s steps with a provisioning
delay; ``Nowcaster`` (``nowcast``) is the fast causal quantile forecaster of the next minutes.
Actuators, the flow and the CLI plug in on top (issue 5).
"""

from __future__ import annotations

from tasks.scaling.guardrails import GuardRails, RailState, apply_guardrails
from tasks.scaling.nowcast import Nowcaster
from tasks.scaling.policies import (
    POLICIES,
    Decision,
    Forecast,
    MetricHistory,
    PolicyState,
    ScalingTarget,
    decide,
    hpa_recommendation,
    newsvendor_quantile,
)
from tasks.scaling.simulate import SimResult, nowcasts, oracle, reference_targets, simulate, static_peak
from tasks.scaling.traces import BUILTIN_TRACES, Trace, TraceError, builtin_trace, load_csv_trace

__all__ = [
    "BUILTIN_TRACES",
    "POLICIES",
    "Decision",
    "Forecast",
    "GuardRails",
    "MetricHistory",
    "Nowcaster",
    "PolicyState",
    "RailState",
    "ScalingTarget",
    "SimResult",
    "Trace",
    "TraceError",
    "apply_guardrails",
    "builtin_trace",
    "decide",
    "hpa_recommendation",
    "load_csv_trace",
    "newsvendor_quantile",
    "nowcasts",
    "oracle",
    "reference_targets",
    "simulate",
    "static_peak",
]
