"""The target workload: the mix of task shapes seen so far, as FGD's fragmentation measure needs it.

Why "seen so far" (and not a declared prior): the scheduler cannot know the future stream; it
learns the mix from the tasks it is asked to place (the issue's "recent mix of task shapes"). An
optional ``window`` keeps only the last N tasks, for a fleet whose mix drifts.

The arrays (``cpu``, ``host``, ``cls`` per shape; ``class_gpus``, ``class_milli`` per GPU-demand
class) are rebuilt only when a new shape appears, so the scheduler can hold on to them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from tasks.gpu.cluster import TaskShape

__all__ = ["Workload"]


def _key(s: TaskShape) -> TaskShape:
    # GPU memory is not part of the fragmentation measure: shapes differing only in it are one shape
    return TaskShape(s.gpus, s.milli, 0, s.cpu_milli, s.host_memory_mib)


class Workload:
    """Counts of task shapes; :meth:`mix` gives each shape with its popularity ``p_m``."""

    def __init__(self, shapes: Iterable[TaskShape] = (), *, window: int | None = None) -> None:
        if window is not None and window < 1:
            raise ValueError(f"window: {window} must be at least 1")
        self.window = window
        self._recent: deque[TaskShape] = deque()
        self.counts: Counter[TaskShape] = Counter()
        self.shapes: list[TaskShape] = []
        self._index: dict[TaskShape, int] = {}
        self.generation = 0  # bumped when the shape list (and so the class arrays) changes
        for s in shapes:
            self.observe(s)

    def observe(self, shape: TaskShape) -> None:
        k = _key(shape)
        self.counts[k] += 1
        if k not in self._index:
            self._index[k] = len(self.shapes)
            self.shapes.append(k)
            self._rebuild()
        if self.window is not None:
            self._recent.append(k)
            if len(self._recent) > self.window:
                old = self._recent.popleft()
                self.counts[old] -= 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def mix(self) -> Iterator[tuple[TaskShape, float]]:
        total = self.total
        for s in self.shapes:
            if self.counts[s] > 0:
                yield s, self.counts[s] / total

    def probabilities(self) -> npt.NDArray[np.float64]:
        """``p[M]`` in the order of :attr:`shapes`."""
        c = np.array([self.counts[s] for s in self.shapes], dtype=np.float64)
        return c / c.sum() if c.sum() else c

    def _rebuild(self) -> None:
        self.cpu = np.array([s.cpu_milli for s in self.shapes], dtype=np.int64)
        self.host = np.array([s.host_memory_mib for s in self.shapes], dtype=np.int64)
        classes: dict[tuple[int, int], int] = {}
        cls = []
        for s in self.shapes:
            if s.gpus == 0:
                cls.append(-1)
                continue
            cls.append(classes.setdefault((s.gpus, s.milli), len(classes)))
        self.cls = np.array(cls, dtype=np.int64)
        self.class_gpus = np.array([k for k, _ in classes], dtype=np.int64)
        self.class_milli = np.array([g for _, g in classes], dtype=np.int64)
        self.generation += 1

    def class_weights(self) -> npt.NDArray[np.float64]:
        """``P[M, D]``: ``p_m`` in the column of ``m``'s GPU-demand class (CPU-only shapes: none)."""
        p = self.probabilities()
        out = np.zeros((len(self.shapes), len(self.class_gpus)), dtype=np.float64)
        gpu = self.cls >= 0
        out[np.nonzero(gpu)[0], self.cls[gpu]] = p[gpu]
        return out
