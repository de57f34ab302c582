"""The Alertmanager side of alerting: what happens to an alert once a rule fires it.

Matchers, the routing tree, inhibition, silences, time intervals, the dispatcher (groups, acks,
escalation, flapping, rate limits), receivers, notification templates and Apprise delivery. It
takes :class:`tasks.alerting.model.Alert` values and imports nothing from ``tasks.alerting.rules``:
the two sides meet only at ``tasks.alerting.model``, and ``tasks.alerting.service`` composes them.
"""
