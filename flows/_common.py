"""What every flow shares: the composition root of a run (settings, lake and state built once) and
skipping stale scheduled runs.

Kept out of ``tasks/`` because both are about orchestration (what this run is built on, which run
is this, how late is it), not about the domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext

from tasks.config import Settings
from tasks.config_checks import load_checked_settings
from tasks.lake import Lake
from tasks.redact import install_log_redaction
from tasks.state import State

__all__ = ["Runtime", "handed_down", "lateness_s", "load", "nothing_to_do", "skipped_summary", "stale_run"]


@dataclass(frozen=True)
class Runtime:
    """What one flow run works on: its checked settings, the lake and the state DB they name.

    Built once per run by :func:`load` (the run's composition root) and handed to every stage:
    the pipeline runs seven stages on one ``Runtime`` instead of reading the config seven times.
    Neither the lake nor the state holds a connection while idle, so one object serves every stage.
    """

    settings: Settings
    lake: Lake
    state: State

    def with_settings(self, settings: Settings) -> Runtime:
        """The same lake and state under ``settings`` (the pipeline's demo additions: a scaling
        target, rule files); only sections that name neither the lake nor the state may differ."""
        if settings.lake != self.settings.lake or settings.state != self.settings.state:
            raise ValueError("with_settings: the lake and state sections must stay those the runtime was built on")
        return replace(self, settings=settings)


#: The runtime a caller in this process already built, with the flow parameters it was built from.
_HANDED: ContextVar[tuple[tuple[str | None, tuple[str, ...]], Runtime] | None] = ContextVar(
    "cortex_perf_handed_runtime", default=None
)


def _key(config_path: str | None, overrides: list[str] | None) -> tuple[str | None, tuple[str, ...]]:
    return config_path, tuple(overrides or ())


@contextmanager
def handed_down(config_path: str | None, overrides: list[str] | None, rt: Runtime) -> Iterator[None]:
    """Inside this block, a flow called in this process with exactly these ``config_path`` and
    ``overrides`` runs on ``rt`` instead of loading them again.

    Why: a CLI command (``run``, ``collect``, ``forecast run``) checks the config before it starts
    Prefect, and seeds the demo through its lake; the flow it then calls would read the same config
    a second time. The parameters still reach Prefect unchanged (the run's record says what it ran
    with); only the loading is shared. A flow run elsewhere (a worker, ``serve``) loads as always.
    """
    token = _HANDED.set((_key(config_path, overrides), rt))
    try:
        yield
    finally:
        _HANDED.reset(token)


def load(config_path: str | None, overrides: list[str] | None) -> Runtime:
    """Settings (file < env < overrides), the lake and the state DB they point at: once per run
    (or the runtime its caller built from the same inputs, see :func:`handed_down`).

    Raises ``ConfigError`` naming the bad fields, which fails the flow run with that message.
    """
    install_log_redaction()  # before the run logs anything that may quote a URL with credentials
    handed = _HANDED.get()
    if handed is not None and handed[0] == _key(config_path, overrides):
        return handed[1]
    settings = load_checked_settings(config_path, overrides or None)
    return Runtime(settings, Lake.from_settings(settings), State.from_settings(settings))


def lateness_s(now: datetime | None = None) -> float | None:
    """How many seconds after its scheduled time this *deployment* run started (None otherwise).

    Ad-hoc runs (tests, ``cortex-perf run``, a flow called as a function) are never late: only a
    run created by a deployment's schedule has a schedule to be late against.
    """

    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None or run.deployment_id is None or run.expected_start_time is None:
        return None
    now = now or datetime.now(UTC)
    return max(0.0, (now - run.expected_start_time).total_seconds())


def skipped_summary(flow: str, late_s: float, max_lateness_s: float) -> dict[str, Any]:
    """The summary a flow returns when it skips itself as a stale catch-up run."""
    return {
        "flow": flow,
        "skipped": True,
        "reason": f"started {late_s:.0f}s after its scheduled time (max_lateness_s={max_lateness_s:g})",
    }


def stale_run(flow: str, max_lateness_s: float | None) -> dict[str, Any] | None:
    """The summary to return when this scheduled run started too late (and says so), else None."""
    late = lateness_s()
    if max_lateness_s is None or late is None or late <= max_lateness_s:
        return None

    skipped = skipped_summary(flow, late, max_lateness_s)
    get_run_logger().warning("skipping stale run: %s", skipped["reason"])
    return skipped


def nothing_to_do(flow: str, reason: str, *, hint: str = "", artifact_key: str, warn: bool = True) -> dict[str, Any]:
    """Say in the run's log and its artifact why this run did nothing, and return its summary.

    Why: an unconfigured deployment (no rule files, no scaling targets) completes every minute
    while doing nothing; without a line saying so it looks like a healthy flow in the UI. ``warn``
    is for a missing configuration, not for a stage someone switched off on purpose.
    """

    text = f"nothing to do because {reason}" + (f": {hint}" if hint else "")
    logger = get_run_logger()
    (logger.warning if warn else logger.info)(text)
    create_markdown_artifact(markdown=f"**{flow}**: {text}", key=artifact_key, description=f"{flow}: nothing to do")
    return {"flow": flow, "skipped": True, "reason": reason}
