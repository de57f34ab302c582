"""Scaling decisions (issue 5).

``policies.decide(target, current, history, forecast, now, state)`` is the one pure decision
function the scale flow, the CLI and the simulator call; ``guardrails`` is the one place limits
live; ``simulate`` replays a request-rate trace (``traces``) in 15 s steps with a provisioning
delay; ``nowcast`` is the fast causal quantile forecaster of the next minutes. Nothing is
re-exported here, so importing an actuator or the settings does not pull in numpy/polars/scipy.
"""
