"""The Prometheus side of alerting: PromQL over the lake, rule files, the rule manager, templates.

What lives here parses and evaluates rules (the reference evaluator in ``evaluate`` and the SQL
compiler in ``sqlcompile`` that the alerts flow runs), keeps each rule's alert instances through
their lifecycle (``lifecycle``, ``ruler``) and runs ``cortex-perf rules test`` as ``promtool test
rules`` does (``rule_tests``, ``promtool_series``). It hands :class:`tasks.alerting.model.Alert` to
the notification side and imports nothing from ``tasks.alerting.notify``: the two meet only at
``tasks.alerting.model``, and ``tasks.alerting.service`` composes them.
"""
