"""What every metric source shares: the ``Source`` interface, its error type and naming helpers.

Why an ABC with one synchronous ``collect``: sources are I/O-bound and few (a dozen at most), so
the runner gives each one a thread and a deadline; a plain blocking method is the easiest thing to
write, test and abandon when it hangs. Clients (HTTP, Redis, NVML) are passed in, like httpx's
transports, so tests swap in real local servers or fakes without monkeypatching.
"""

from __future__ import annotations

import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from tasks.lake.schema import Sample

__all__ = [
    "LOGGER_PREFIX",
    "Source",
    "SourceError",
    "log_once",
    "sanitize_label_name",
    "sanitize_metric_name",
    "source_logger",
]

LOGGER_PREFIX = "cortex_perf.sources"

_INVALID_METRIC_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class SourceError(RuntimeError):
    """A source failed, possibly after producing some samples worth keeping.

    Why carry samples: a scrape that fails still has something to say (``up 0``, how long the
    attempt took, the cluster nodes that did answer). The runner stores ``samples`` and records
    the failure, instead of losing both to a bare exception. The message must be safe to log:
    sources redact secrets before raising.
    """

    def __init__(self, message: str, samples: Sequence[Sample] = ()) -> None:
        super().__init__(message)
        self.samples: list[Sample] = list(samples)


class Source(ABC):
    """One place metrics come from. ``collect`` returns samples or raises (``SourceError`` ideally).

    ``name`` is unique among the sources of one collection: it becomes the ``source`` label of the
    runner's own ``cortex_perf_source_*`` series and the logger ``cortex_perf.sources.<name>``.
    """

    name: str

    @abstractmethod
    def collect(self, now: datetime | None = None) -> list[Sample]:
        """Read the source once. ``now`` (aware UTC) stamps samples that carry no time of their own."""

    def skip_reason(self) -> str | None:
        """Why this source has nothing to do now (found without I/O), or None to run it.

        Why a hook: a source that cannot apply (no API configured) should cost nothing and say so,
        rather than run and look "up" with zero samples; the runner lists it in ``skipped``.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing open
        """Release clients the source created itself (injected ones belong to the caller)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def source_logger(name: str) -> logging.Logger:
    """The logger of one source: ``cortex_perf.sources.<name>`` (dots in ``name`` kept as-is)."""
    return logging.getLogger(f"{LOGGER_PREFIX}.{name}")


_once_lock = threading.Lock()
_once_keys: set[str] = set()


def log_once(logger: logging.Logger, key: str, level: int, msg: str, *args: object) -> bool:
    """Log ``msg`` the first time ``key`` is seen in this process; return whether it logged.

    Why: a missing GPU driver or Prefect API is a fact about the machine, not an incident; saying
    it every minute buries real messages.
    """
    with _once_lock:
        if key in _once_keys:
            return False
        _once_keys.add(key)
    logger.log(level, msg, *args)
    return True


def _forget_once(key: str | None = None) -> None:
    """Test helper: forget one (or every) ``log_once`` key so the notice can be seen again."""
    with _once_lock:
        if key is None:
            _once_keys.clear()
        else:
            _once_keys.discard(key)


def sanitize_metric_name(name: str) -> str:
    """Turn an outside name (e.g. a Redis INFO key) into a valid metric name.

    Invalid characters become ``_`` and a leading digit gets a ``_`` prefix, as Prometheus
    exporters do, so ``mem_fragmentation_ratio`` stays itself and ``7d-hits`` becomes ``_7d_hits``.
    """
    out = _INVALID_METRIC_CHARS.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


def sanitize_label_name(name: str) -> str:
    """Like ``sanitize_metric_name`` for label names (no ``:``, no reserved ``__`` prefix)."""
    out = _INVALID_LABEL_CHARS.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    while out.startswith("__"):
        out = out[1:]
    return out
