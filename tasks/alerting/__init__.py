"""Alerting: Prometheus-compatible rule expressions evaluated over the lake (issue 4)."""
