"""Scrape Prometheus ``/metrics`` endpoints (text exposition format) into samples.

Each scrape behaves like Prometheus's own: labels ``job`` (the target's name) and ``instance``
(``host:port``) plus the target's extra labels are attached, and a scraped label that collides
with one of them is kept as ``exported_<name>`` (Prometheus with ``honor_labels: false``). Every
scrape, good or bad, also yields ``up``, ``scrape_duration_seconds`` and ``scrape_samples_scraped``
so a dead target is visible in the lake rather than silently missing.

Why NaN/±Inf are dropped but counted (``scrape_samples_nonfinite``): the lake stores finite floats
only, and an empty summary legitimately exposes NaN quantiles; counting keeps the loss visible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tasks.config.settings import PrometheusTarget
from tasks.lake.schema import Sample, now_utc, to_utc_ms
from tasks.redact import redact_text
from tasks.sources.base import Source, SourceError, source_logger

__all__ = ["PrometheusSource", "exposition_to_samples", "instance_of"]

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


def instance_of(url: str) -> str:
    """``host:port`` of a URL, with the scheme's default port when none is given (as Prometheus)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _merge_labels(scraped: Mapping[str, str], target: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scraped.items():
        if k.startswith("__"):  # reserved, never stored
            continue
        if k in target:
            if v != "":
                out[f"exported_{k}"] = v
        else:
            out[k] = v
    out.update(target)
    return out


def exposition_to_samples(
    text: str,
    target_labels: Mapping[str, str],
    now: datetime,
) -> tuple[list[Sample], int, int]:
    """Parse exposition ``text``; return (finite samples, samples seen, non-finite skipped).

    Raises ``ValueError`` when the text is not valid exposition format.
    """
    out: list[Sample] = []
    seen = nonfinite = 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            seen += 1
            value = float(s.value)
            if not math.isfinite(value):
                nonfinite += 1
                continue
            ts = now if s.timestamp is None else to_utc_ms(datetime.fromtimestamp(float(s.timestamp), UTC))
            out.append(Sample(s.name, value, ts, _merge_labels(s.labels, target_labels)))
    return out, seen, nonfinite


class PrometheusSource(Source):
    """One scrape target. ``client`` (an ``httpx.Client``) or ``transport`` may be injected.

    An injected client is used as-is (the caller closes it); otherwise a client is made per
    collection with ``transport`` if given, so the source holds no connection between ticks.
    """

    def __init__(
        self,
        target: PrometheusTarget,
        *,
        name: str | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.target = target
        self.name = name or f"prometheus:{target.name}"
        self._client = client
        self._transport = transport
        self._log = source_logger(self.name)
        self.target_labels: dict[str, str] = {
            "job": target.name,
            "instance": instance_of(target.url),
            **target.labels,
        }
        # The URL's own password too, decoded as well: a client error may quote it either way.
        password = urlsplit(target.url).password
        self._secrets = [target.bearer_token.get_secret_value()] if target.bearer_token else []
        self._secrets += [password, unquote(password)] if password else []

    def _fetch(self) -> str:
        headers = {"Accept": ACCEPT}
        if self.target.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.target.bearer_token.get_secret_value()}"
        timeout = httpx.Timeout(self.target.timeout_s)
        if self._client is not None:
            resp = self._client.get(self.target.url, headers=headers, timeout=timeout)
        else:
            with httpx.Client(transport=self._transport, timeout=timeout) as client:
                resp = client.get(self.target.url, headers=headers)
        resp.raise_for_status()
        return resp.text

    def collect(self, now: datetime | None = None) -> list[Sample]:
        now = now or now_utc()
        t0 = time.perf_counter()
        error: str | None = None
        samples: list[Sample] = []
        seen = nonfinite = 0
        try:
            text = self._fetch()
            samples, seen, nonfinite = exposition_to_samples(text, self.target_labels, now)
        except httpx.TimeoutException as exc:
            error = f"timed out after {self.target.timeout_s:g}s ({type(exc).__name__})"
        except httpx.HTTPStatusError as exc:
            error = f"HTTP {exc.response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except ValueError as exc:  # the parser's complaint about the body
            error = f"invalid exposition format: {exc}"
        duration = time.perf_counter() - t0
        meta = self._meta(now, error is None, duration, seen, nonfinite)
        if error is not None:
            error = redact_text(f"scrape {self.target.url}: {error}", self._secrets)
            self._log.debug("%s", error)
            raise SourceError(error, meta)
        if nonfinite:
            self._log.debug("dropped %d non-finite samples", nonfinite)
        return samples + meta

    def _meta(self, now: datetime, up: bool, duration: float, seen: int, nonfinite: int) -> list[Sample]:
        lab = self.target_labels  # like Prometheus: target labels on the synthetic series too
        rows: Iterable[tuple[str, float]] = (
            ("up", 1.0 if up else 0.0),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", float(seen)),
            ("scrape_samples_nonfinite", float(nonfinite)),
        )
        return [Sample(m, v, now, dict(lab)) for m, v in rows]
