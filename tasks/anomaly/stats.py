"""Small online statistics the detectors share: a rolling window that answers quantiles in O(1).

Why a sorted window rather than exponentially weighted moments: anomaly baselines must be robust
(one spike must not drag the median or blow up the scale), and a window keeps the state
inspectable and exactly serialisable (its values, in arrival order) so a restored detector
continues bit-for-bit where the saved one stopped.
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = ["IQR_TO_SIGMA", "RollingWindow"]

#: A normal distribution's standard deviation is its inter-quartile range / 1.349.
IQR_TO_SIGMA = 1.0 / 1.349


class RollingWindow:
    """The last ``size`` values, with quantiles read from a sorted copy (insert/evict by bisection)."""

    __slots__ = ("_order", "_sorted", "size")

    def __init__(self, size: int, values: list[float] | None = None) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []
        for v in values or []:
            self.push(v)

    def __len__(self) -> int:
        return len(self._order)

    def push(self, value: float) -> None:
        """Append ``value``; the oldest value leaves once the window is full."""
        if len(self._order) == self.size:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._order.append(value)
        bisect.insort(self._sorted, value)

    def quantile(self, q: float) -> float:
        """Linear-interpolated quantile (numpy's default method); ``nan`` when empty."""
        n = len(self._sorted)
        if n == 0:
            return float("nan")
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        return self._sorted[lo] + (self._sorted[hi] - self._sorted[lo]) * frac

    def median(self) -> float:
        return self.quantile(0.5)

    def sigma(self) -> float:
        """Robust standard deviation: IQR / 1.349 (0 for a window of equal values)."""
        return (self.quantile(0.75) - self.quantile(0.25)) * IQR_TO_SIGMA

    def last(self, k: int) -> list[float]:
        """The ``k`` most recent values, oldest first."""
        n = len(self._order)
        return [self._order[i] for i in range(max(0, n - k), n)]

    def values(self) -> list[float]:
        """Values in arrival order (the serialisable state)."""
        return list(self._order)

    def state(self) -> dict[str, object]:
        return {"size": self.size, "values": self.values()}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> RollingWindow:
        values = state["values"]
        size = state["size"]
        assert isinstance(values, list) and isinstance(size, int)
        return cls(size, [float(v) for v in values])
