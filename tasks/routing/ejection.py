"""Outlier ejection for one pool, with Envoy's consecutive-5xx semantics.

Why Envoy's: a breaker protects a target from load it cannot take; ejection protects the *pool's*
clients from a target that answers errors, and Envoy's rules for it are the ones operators know
(``outlier_detection.consecutive_5xx``, ``base_ejection_time``, ``max_ejection_time``,
``max_ejection_percent``). As in ``source/common/upstream/outlier_detection_impl.cc``:

- every answer is reported; a 5xx — or no answer at all (status 0: connect error, reset, timeout,
  which Envoy maps to 503/504 when local-origin errors are not split) — extends the target's run of
  consecutive 5xx, anything else resets it;
- a run of ``consecutive_5xx`` ejects the target for ``min(base_ejection_s × n, max_ejection_s)``
  where ``n`` counts its ejections (Envoy's ``ejectTimeBackoff``: incremented on each ejection
  while ``n × base < max + base``, so 30 s, 60 s … 300 s, and it stays at 300 s);
- ``n`` decays while the target stays healthy: one less for each full ``base_ejection_s`` since it
  was un-ejected (so a target that misbehaves once a day is not ejected for 300 s forever);
- at most ``max(1, floor(max_ejection_percent % × pool_size))`` targets of the pool are ejected at
  once; a target over that cap is not ejected;
- an un-ejected target starts a new run from zero (Envoy resets the counters in ``unejectHost``),
  and ejecting a target resets its run too.

Where this differs from Envoy, and why:
- Un-ejection is lazy: it happens when the time has passed and someone looks (``record``,
  ``ejected_until``, ``snapshot``), not on Envoy's ``interval`` timer (default 10 s), so a target
  is back exactly ``base × n`` after its ejection rather than up to one interval later.
- ``n`` decays by one per ``base_ejection_s`` of health; Envoy decrements it on every ``interval``
  tick once one interval has passed since the un-ejection (with the defaults, faster). This router
  has no interval setting, and the base period is the natural unit of "stayed healthy".
- A target over the cap keeps its run counting and is ejected by its next 5xx once the cap allows
  (Envoy resets the run even when the cap refused the ejection, so it needs a whole new run);
  the cap also always allows one (Envoy: only with ``always_eject_one_host``).
- No jitter (``max_ejection_time_jitter``), no success-rate or failure-percentage detection, no
  ``enforcing_*`` percentages (always enforced).

Not thread-safe: the router calls it from one event loop. Memory: one small record per target the
pool has had (``forget`` drops a target that left on reload).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.config.routing import EjectionSettings

__all__ = ["OutlierDetector", "ejection_cap", "is_5xx"]


def is_5xx(status: int) -> bool:
    """An answer that counts as a server error: 5xx, or none at all (status 0)."""
    return status == 0 or status >= 500


def ejection_cap(max_ejection_percent: float, pool_size: int) -> int:
    """Targets of a pool that may be ejected at once: ``max(1, floor(percent % × size))``."""
    # percent × size / 100 rather than percent / 100 × size: 10 × 30 / 100 is exactly 3.0
    return max(1, math.floor(max_ejection_percent * max(pool_size, 0) / 100.0))


@dataclass
class _Target:
    consecutive_5xx: int = 0
    backoff: int = 0  # Envoy's ejectTimeBackoff: the n of base × n
    ejections: int = 0  # ever (Envoy's num_ejections)
    until: float = 0.0  # ejected until this monotonic time; 0 = not ejected
    healthy_since: float | None = None  # un-ejection time, advanced by each base period counted


class OutlierDetector:
    """Consecutive-5xx ejection for one pool: ``record`` every answer, ask ``ejected_until``."""

    def __init__(self, settings: EjectionSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._targets: dict[str, _Target] = {}
        #: ejections the cap refused (Envoy's ``ejections_overflow``)
        self.overflows = 0

    # ---- the request path -----------------------------------------------------------------------

    def record(self, target: str, status: int, pool_size: int) -> float | None:
        """Count one answer of ``target``; the time it is ejected until when this answer ejected it."""
        now = self._clock()
        t = self._settled(target, now)
        if not is_5xx(status):
            t.consecutive_5xx = 0
            return None
        t.consecutive_5xx += 1
        s = self.settings
        if not s.enabled or t.consecutive_5xx < s.consecutive_5xx or t.until > now:
            return None  # below the run, or already ejected (panic-mode traffic still counts)
        ejected = sum(1 for name, o in self._targets.items() if name != target and o.until > now)
        if ejected + 1 > ejection_cap(s.max_ejection_percent, pool_size):
            self.overflows += 1
            return None
        if t.backoff * s.base_ejection_s < s.max_ejection_s + s.base_ejection_s:
            t.backoff += 1
        t.ejections += 1
        t.until = now + min(s.base_ejection_s * t.backoff, s.max_ejection_s)
        t.consecutive_5xx = 0
        t.healthy_since = None
        return t.until

    def ejected_until(self, target: str) -> float:
        """The monotonic time ``target`` is ejected until; 0.0 when it is not ejected now."""
        if target not in self._targets:
            return 0.0
        now = self._clock()
        t = self._settled(target, now)
        return t.until if t.until > now else 0.0

    def ejected(self) -> list[str]:
        """The targets ejected now, by name."""
        now = self._clock()
        return sorted(name for name, t in self._targets.items() if t.until > now)

    def forget(self, target: str) -> None:
        """``target`` left the pool (reload): drop its run, ejection and backoff."""
        self._targets.pop(target, None)

    # ---- reporting ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per target: seconds left ejected, the backoff ``n``, the current run, ejections ever."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self._targets):
            t = self._settled(name, now)
            out[name] = {
                "ejected_for_s": max(t.until - now, 0.0),
                "times_ejected": t.backoff,
                "consecutive_5xx": t.consecutive_5xx,
                "ejections": t.ejections,
            }
        return out

    # ---- lazy un-ejection and backoff decay -----------------------------------------------------

    def _settled(self, target: str, now: float) -> _Target:
        t = self._targets.get(target)
        if t is None:
            t = self._targets[target] = _Target()
            return t
        if t.until and now >= t.until:  # Envoy: un-eject once base × n has passed since ejection
            t.healthy_since = t.until
            t.until = 0.0
            t.consecutive_5xx = 0
        if t.until == 0.0 and t.healthy_since is not None and t.backoff > 0:
            base = self.settings.base_ejection_s
            periods = math.floor((now - t.healthy_since) / base)
            if periods > 0:
                t.backoff = max(t.backoff - periods, 0)
                t.healthy_since += periods * base
        return t
