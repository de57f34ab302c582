"""Recent Prefect flow runs as metrics: durations and counts per flow and state.

Series: ``prefect_flow_run_duration_seconds{flow, state}`` for each finished run (stamped with its
end time) and ``prefect_flow_runs{flow, state}`` (runs seen in the look-back window, stamped now).
``state`` is the run's state type in lower case (``completed``, ``failed``, ``crashed``,
``running``, ...), a small fixed set, so the series count stays bounded.

Why the source checks for an API first: ``get_client()`` without ``PREFECT_API_URL`` starts a
temporary local server (15-24 s here) that knows no runs. So with no API configured the source is
skipped (``skip_reason``: the runner does not start it and says why); it never starts a server.
Even asking Prefect's settings imports Prefect (3-5 s here), so when Prefect is not loaded yet and
nothing Prefect reads could name an API, the answer is "none" without importing it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks import prefect_api
from tasks.config.settings import PrefectSourceSettings
from tasks.lake.schema import Sample, now_utc, to_utc_ms
from tasks.sources.base import Source, SourceError, log_once, source_logger

__all__ = ["NO_API", "PrefectSource", "configured_api_url", "flow_runs_to_samples"]

NO_API = "no Prefect API configured (PREFECT_API_URL unset): flow-run metrics skipped"


def _surely_no_api() -> bool:
    """True when no place Prefect reads its settings from can name an API URL, decided without
    importing Prefect; False means "ask Prefect" (it may still be unset).

    Conservative on purpose: any ``PREFECT_API…``/profile variable, a ``.env`` mentioning Prefect, a
    ``prefect.toml``, a ``[tool.prefect]`` table or a profiles file naming ``PREFECT_API_URL`` sends
    the question to Prefect itself, so a configured API is never missed.
    """
    if any(k.startswith(("PREFECT_API", "PREFECT_PROFILE", "PREFECT_TESTING")) for k in os.environ):
        return False
    cwd = Path.cwd()
    if (cwd / "prefect.toml").exists():
        return False
    checks = [(cwd / ".env", "PREFECT_"), (cwd / "pyproject.toml", "tool.prefect")]
    home = Path(os.environ["PREFECT_HOME"]) if os.environ.get("PREFECT_HOME") else Path.home() / ".prefect"
    checks.append((home / "profiles.toml", "PREFECT_API_URL"))
    for path, needle in checks:
        try:
            if needle in path.read_text(errors="replace"):
                return False
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def configured_api_url() -> str | None:
    """Prefect's own API URL setting (environment or active profile), ``None`` when unset."""
    if "prefect.settings" not in sys.modules and _surely_no_api():
        return None  # nothing could set it, and no in-process settings context exists yet
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    # Prefect hands out pendulum DateTimes; the lake wants plain stdlib datetimes.
    if ts.tzinfo is None:
        ts = datetime(*ts.timetuple()[:6], ts.microsecond, tzinfo=UTC)
    u = ts.astimezone(UTC)
    return to_utc_ms(datetime(*u.timetuple()[:6], u.microsecond, tzinfo=UTC))


def _state(run: Any) -> str:
    st = getattr(run, "state_type", None)
    if st is None and getattr(run, "state", None) is not None:
        st = run.state.type
    if st is None:
        return "unknown"
    return str(getattr(st, "value", st)).lower()


def flow_runs_to_samples(runs: list[Any], flow_names: dict[Any, str], now: datetime) -> list[Sample]:
    """Turn Prefect ``FlowRun`` objects into samples (pure: tested without a server)."""
    out: list[Sample] = []
    counts: Counter[tuple[str, str]] = Counter()
    for run in runs:
        flow = flow_names.get(run.flow_id, str(run.flow_id))
        state = _state(run)
        counts[(flow, state)] += 1
        end = _aware(getattr(run, "end_time", None))
        if end is None:
            continue
        start = _aware(getattr(run, "start_time", None))
        if start is not None:
            duration = (end - start).total_seconds()
        else:
            trt = getattr(run, "total_run_time", None)
            if not isinstance(trt, timedelta):
                continue
            duration = trt.total_seconds()
        out.append(Sample("prefect_flow_run_duration_seconds", max(0.0, duration), end, {"flow": flow, "state": state}))
    for (flow, state), n in sorted(counts.items()):
        out.append(Sample("prefect_flow_runs", float(n), now, {"flow": flow, "state": state}))
    return out


class PrefectSource(Source):
    """Flow runs updated in the last ``lookback_minutes`` from a Prefect API.

    ``client_factory`` returns a context manager yielding a sync Prefect client (default:
    ``prefect.client.orchestration.get_client(sync_client=True)``); ``api_url`` overrides Prefect's
    own setting. Neither given and no ``PREFECT_API_URL``: the source yields ``[]``.
    """

    def __init__(
        self,
        *,
        name: str = "prefect",
        lookback_minutes: int = 60,
        limit: int = 200,
        api_url: str | None = None,
        client_factory: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.name = name
        self.lookback_minutes = lookback_minutes
        self.limit = limit
        self.api_url = api_url
        self._factory = client_factory
        self._log = source_logger(name)

    @classmethod
    def from_settings(cls, cfg: PrefectSourceSettings) -> PrefectSource:
        return cls(lookback_minutes=cfg.lookback_minutes, limit=cfg.limit, api_url=cfg.api_url)

    def skip_reason(self) -> str | None:
        """``NO_API`` when there is no API to ask (the runner then does not start this source)."""
        if self._factory is not None or self.api_url or configured_api_url():
            return None
        return NO_API

    def _client(self) -> AbstractContextManager[Any] | None:
        if self._factory is not None:
            return self._factory()
        url = self.api_url or configured_api_url()
        if not url:
            log_once(self._log, f"{self.name}:no-api", logging.INFO, NO_API)
            return None
        # Safe with no explicit URL: one is configured, so Prefect's client cannot fall back to an
        # ephemeral server.
        return prefect_api.client(self.api_url)

    def collect(self, now: datetime | None = None) -> list[Sample]:
        now = now or now_utc()
        cm = self._client()
        if cm is None:
            return []
        since = now - timedelta(minutes=self.lookback_minutes)
        try:
            with cm as client:
                runs, names = prefect_api.recent_runs(client, since, now, self.limit)
        except Exception as exc:
            raise SourceError(f"prefect API: {type(exc).__name__}: {exc}") from None
        return flow_runs_to_samples(runs, names, now)
