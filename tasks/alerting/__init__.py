"""Alerting: Prometheus-compatible rules over the lake, and Alertmanager-style notification.

Two sides with one seam: ``rules/`` (the Prometheus side: PromQL, rule files, the rule manager,
templates, ``rules test``) produces :class:`~tasks.alerting.model.Alert` values and ``notify/`` (the
Alertmanager side: routing, inhibition, silences, dispatch, delivery) consumes them. Neither
imports the other; they meet only at ``model``, and ``service`` composes them into one tick.
"""
