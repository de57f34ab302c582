"""Causal streaming anomaly detection: one ``Detector`` per series, fed one sample at a time.

Why this shape: the flow scores new samples every minute and must not recompute history, and the
benchmark must replay a whole file exactly as the flow would have seen it. So there is a single
code path — :meth:`Detector.update` — whose state is a JSON document (:meth:`Detector.state_dict`)
the flow persists between runs; :func:`score_series` is literally a loop over ``update``.
A score at time t depends only on samples up to t (tests check that appending data never changes
earlier scores, and that save/restore in the middle of a series changes nothing).

Detectors look at each sample; the first four produce a robust z (deviation in robust standard
deviations, IQR/1.349 of a rolling window, never the mean/std a spike would distort):

* ``residual`` — the sample against a one-step forecast: the median of the last few samples, or an
  external forecast (``expected``: p10/p50/p90 from the lake's ``forecasts`` table) when one is
  given. Catches spikes and dips.
* ``seasonal`` — the sample against the median of its daily slot (slot width from the sampling
  interval, at least an hour; slots learned online). Catches "normal value at the wrong time of
  day", which the other two cannot see.
* ``level_shift`` — the median of the last few samples against the median of the window before
  them (a two-window median test). Catches sustained shifts early, and ignores a single spike.
* ``slow_shift`` — the same test on a slower time scale (median of the last 30 samples vs the 1,000
  before them): shifts and drifts too small to stand out of 5 samples' noise.
* ``range`` — the sample beyond the smallest/largest value ever seen by more than 2 % of that
  range (the "spatial anomaly" of Numenta's NAB detector, which uses 5 %): a never-seen value is
  anomalous whatever the local noise; scored on its own (excess / tolerance, shaped like the
  others, so any new record beyond the tolerance scores at least 0.67 and is reported). Why 2 %:
  a new all-time record is rarely routine, and reporting the first one of an incident early
  (the quiet period then silences the follow-ups) earns more than it costs in false alarms.
* ``level_range`` — ``range`` on the mean of the last warm-up/32 samples: a level never reached by any
  earlier such mean (beyond 3.5 % of their range) reports, scored like ``range``. On a spiky series the
  raw range is set by spikes, so a sustained rise or a burst inside it is no new value; its level is.

Each z is divided by that detector's usual extreme on this series (a high quantile of its own recent
z), and the ratios are combined into r (the strongest detector, after per-detector weights, plus a share
of the others). r = 1 is "as extreme as this series usually gets", so the score grades the
**evidence** beyond it: the excess max(0, r - 1) summed over the last few samples (a short moving-sum
CUSUM with the usual extreme as reference value), shaped into [0, 1]. A lone sample at the usual
extreme scores nothing; a deviation that stays beyond it for a few samples outranks a single blip of
the same size. Then two rules shape the score for alerting (NAB rewards them, and so does an on-call
person):

* **warm-up**: no score until ``warmup`` samples have been seen (NAB's probationary period);
* **novelty**: a deviation that keeps going is reported once, when it starts: while the
  combined z stays below the level that already alarmed, the score is damped, so a shifted level
  does not raise an alarm on every sample. That level decays slowly back to normal, but only once r
  is back within the usual extreme (r <= 1): a long deviation that wanders just above its usual
  extreme is one deviation, not a new one whenever it creeps up.
* **quiet period**: after a reported alarm (score >= ``quiet_score``) the next
  ``quiet_fraction`` x ``warmup`` samples score 0, unless a score beats the alarm's by
  ``quiet_breakthrough`` (so a marginal alarm can still be overtaken by a clear one); an alarm
  scoring ``quiet_firm_score`` or more is not marginal and cannot be overtaken. Why: one
  incident is one page; NAB likewise credits only the first detection in a window and charges
  every further one outside it. The length is tied to the warm-up, the one time scale every
  series is given (NAB's probationary period, like its windows, grows with the file). The novelty
  rule alone does not do this: a burst of *different* spikes each looks new to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from tasks.anomaly.stats import RollingWindow

__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorConfig",
    "Expected",
    "Score",
    "SeriesScores",
    "score_series",
]

DAY_S = 86_400.0
#: p90 - p10 of a normal distribution, in standard deviations.
P10_P90_SIGMAS = 2.5631
#: Standard error of a sample median, in standard deviations, times sqrt(n) (normal data).
MEDIAN_SE = 1.2533
DETECTORS = ("residual", "seasonal", "level_shift", "slow_shift", "range", "level_range")
#: Bumped whenever the state or a default it carries changes (6: range_tolerance 0.05 → 0.02; 7: quiet_firm_score
#: 0.65, a clear alarm's quiet period cannot be broken; 8: the ``level_range`` detector), so saved
#: detectors restart with the current defaults and live scores stay identical to a replay.
STATE_VERSION = 8


class Expected(TypedDict, total=False):
    """An external forecast for the sample being scored (quantiles of the lake's ``forecasts`` table)."""

    p10: float
    p50: float
    p90: float


@dataclass(frozen=True)
class Score:
    """The score of one sample: ``score`` in [0, 1], which detector gave it, and why."""

    score: float
    detector: str  # one of DETECTORS, or "" (warm-up, missing value, nothing unusual)
    expected: float | None
    observed: float
    reason: str
    z: float = 0.0  # the combined robust z before shaping into [0, 1]


#: DetectorConfig fields that are window lengths (samples): at least 1.
_WINDOWS = (
    "forecast_window",
    "residual_window",
    "level_recent",
    "level_reference",
    "history_window",
    "slow_recent",
    "slow_reference",
)


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of a :class:`Detector`: one set for every series (no per-series tuning).

    Window sizes are in samples; ``warmup`` is the probationary period.
    """

    warmup: int = 300
    forecast_window: int = 5
    residual_window: int = 2000
    level_recent: int = 5
    level_reference: int = 300
    level_min_reference: int = 30  # smallest reference the level test starts with after a short warm-up
    seasonal_days: int = 14
    seasonal_min_days: float = 2.0
    min_slot_seconds: float = 3600.0
    weight_residual: float = 1.0
    weight_seasonal: float = 1.0
    weight_level_shift: float = 0.7
    history_window: int = 8000  # samples of each detector's own z history
    history_quantile: float = 0.998  # a z is judged against this quantile of the detector's history
    history_min: int = 100
    min_reference_z: float = 3.0  # the history quantile is never taken below this (clean series)
    r_half: float = 0.5  # the evidence (summed excess of r over 1, or the range excess) that maps to score 0.5
    novelty_decay: float = 0.99  # per sample, of the alarm level the novelty rule compares with
    decay_after_deviation: bool = True  # the alarm level decays only once r is back within the usual extreme
    novelty_hold: int = 0  # samples after an alarm during which the alarm level does not decay
    alarm_ratio: float = 1.0  # a calibrated ratio at least this high starts a hold
    agreement: float = 0.3  # share of the other detectors' ratios added to the strongest one
    novelty_damping: float = 0.0  # score multiplier while the deviation is not new
    evidence_window: int = 5  # the score grades the excess of r over 1 summed over the last samples (0: r itself)
    slow_recent: int = 30  # the slow level-shift test: median of the last 30 vs the 1,000 before
    slow_reference: int = 1000
    weight_slow_shift: float = 0.7  # as the fast test's
    # "range" fires beyond [min, max] seen so far +- this share of max - min (NAB's Numenta detector uses
    # 5 %; 2 % scores higher on NAB, and every value from 0.5 % to 2.5 % does, see BENCHMARKS.md Round 6)
    range_tolerance: float = 0.02
    scale_floor: float = 1e-3  # relative to the series' typical magnitude
    quiet_fraction: float = 0.2  # after a reported alarm, this share of ``warmup`` samples stays quiet (0: off)
    quiet_score: float = 0.5  # a score at least this high is a reported alarm (starts the quiet period)
    quiet_breakthrough: float = 1.3  # a quiet-period score above this x the alarm's score (capped at 0.999) reports
    # an alarm scoring at least this is clear, not marginal: its quiet period admits no breakthrough (1: off).
    # Breakthroughs after such alarms were all false alarms on NAB (BENCHMARKS.md Round 7)
    quiet_firm_score: float = 0.65
    # "level_range": the mean of the last level_range_fraction x warmup samples beyond the smallest/largest such
    # mean seen so far by more than level_range_tolerance of their range (BENCHMARKS.md Round 8). 0: off
    level_range_fraction: float = 0.03125
    level_range_tolerance: float = 0.035

    def __post_init__(self) -> None:
        """Reject settings that would crash mid-series or silently score everything (names the field).

        Why here and not in each detector: a ``--config`` typo such as a zero tolerance divides by
        zero thousands of samples later, far from the value that caused it.
        """
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                continue
            if not isinstance(v, int | float) or math.isnan(v) or v < 0:  # inf is "never" (e.g. breakthrough)
                raise ValueError(f"detector.{f.name}: must be a number >= 0, got {v!r}")
        for name in ("range_tolerance", "level_range_tolerance", "r_half"):
            if getattr(self, name) <= 0:
                raise ValueError(f"detector.{name}: must be > 0, got {getattr(self, name)!r}")
        for name in _WINDOWS:
            if getattr(self, name) < 1:
                raise ValueError(f"detector.{name}: a window of at least 1 sample, got {getattr(self, name)!r}")
        if not 0 < self.history_quantile <= 1:
            raise ValueError(f"detector.history_quantile: must be in (0, 1], got {self.history_quantile!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown detector parameters: {sorted(unknown)}")
        return cls(**data)


def _median(values: list[float]) -> float:
    """Median of a short list (the forecast and recent windows hold a handful of values)."""
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else 0.5 * (v[k // 2 - 1] + v[k // 2])


def _epoch_seconds(ts: float | int | datetime | np.datetime64) -> float:
    if isinstance(ts, datetime):
        return ts.timestamp()
    if isinstance(ts, np.datetime64):
        return float(ts.astype("datetime64[us]").astype(np.int64)) / 1e6
    return float(ts)


@dataclass
class _State:
    """Everything a detector has learned; every field is JSON-serialisable or a RollingWindow."""

    n: int = 0
    last_ts: float | None = None
    diffs: RollingWindow = field(default_factory=lambda: RollingWindow(64))
    slot_seconds: float | None = None
    values: RollingWindow = field(default_factory=lambda: RollingWindow(2000))
    residuals: RollingWindow = field(default_factory=lambda: RollingWindow(2000))
    reference: RollingWindow = field(default_factory=lambda: RollingWindow(300))
    recent: RollingWindow = field(default_factory=lambda: RollingWindow(4))
    slots: dict[str, RollingWindow] = field(default_factory=dict)
    zhist: dict[str, RollingWindow] = field(default_factory=dict)
    alarm_z: float = 0.0
    hold: int = 0
    slow_recent: RollingWindow = field(default_factory=lambda: RollingWindow(30))
    slow_reference: RollingWindow = field(default_factory=lambda: RollingWindow(1000))
    lo: float | None = None  # smallest and largest value ever seen (the "range" detector)
    hi: float | None = None
    excess: RollingWindow = field(default_factory=lambda: RollingWindow(5))  # max(0, r - 1), last samples
    quiet: int = 0  # samples left in the quiet period after the last reported alarm
    quiet_level: float = 0.0  # score of the alarm that started it
    level_lo: float | None = None  # smallest and largest moving mean ever seen (the "level_range" detector)
    level_hi: float | None = None


class Detector:
    """Streaming detector for one series; see the module docstring for what it does and why."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        c = self.config
        self._s = _State(
            values=RollingWindow(c.residual_window),
            residuals=RollingWindow(c.residual_window),
            reference=RollingWindow(c.level_reference),
            recent=RollingWindow(max(1, c.level_recent - 1)),
            slow_recent=RollingWindow(c.slow_recent),
            slow_reference=RollingWindow(c.slow_reference),
            excess=RollingWindow(max(1, c.evidence_window)),
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The detector's full state as plain JSON types (``json.dumps`` works on it)."""
        s = self._s
        return {
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "n": s.n,
            "last_ts": s.last_ts,
            "diffs": s.diffs.state(),
            "slot_seconds": s.slot_seconds,
            "values": s.values.state(),
            "residuals": s.residuals.state(),
            "reference": s.reference.state(),
            "recent": s.recent.state(),
            "slots": {k: w.state() for k, w in s.slots.items()},
            "zhist": {k: w.state() for k, w in s.zhist.items()},
            "alarm_z": s.alarm_z,
            "hold": s.hold,
            "slow_recent": s.slow_recent.state(),
            "slow_reference": s.slow_reference.state(),
            "lo": s.lo,
            "hi": s.hi,
            "excess": s.excess.state(),
            "quiet": s.quiet,
            "quiet_level": s.quiet_level,
            "level_lo": s.level_lo,
            "level_hi": s.level_hi,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Detector:
        """A detector that continues exactly where the one that wrote ``state`` stopped."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"detector state version {state.get('version')!r}, expected {STATE_VERSION}")
        det = cls(DetectorConfig.from_dict(state["config"]))
        det._s = _State(
            n=int(state["n"]),
            last_ts=None if state["last_ts"] is None else float(state["last_ts"]),
            diffs=RollingWindow.from_state(state["diffs"]),
            slot_seconds=None if state["slot_seconds"] is None else float(state["slot_seconds"]),
            values=RollingWindow.from_state(state["values"]),
            residuals=RollingWindow.from_state(state["residuals"]),
            reference=RollingWindow.from_state(state["reference"]),
            recent=RollingWindow.from_state(state["recent"]),
            slots={k: RollingWindow.from_state(v) for k, v in state["slots"].items()},
            zhist={k: RollingWindow.from_state(v) for k, v in state["zhist"].items()},
            alarm_z=float(state["alarm_z"]),
            hold=int(state["hold"]),
            slow_recent=RollingWindow.from_state(state["slow_recent"]),
            slow_reference=RollingWindow.from_state(state["slow_reference"]),
            lo=None if state["lo"] is None else float(state["lo"]),
            hi=None if state["hi"] is None else float(state["hi"]),
            excess=RollingWindow.from_state(state["excess"]),
            quiet=int(state["quiet"]),
            quiet_level=float(state["quiet_level"]),
            level_lo=None if state["level_lo"] is None else float(state["level_lo"]),
            level_hi=None if state["level_hi"] is None else float(state["level_hi"]),
        )
        return det

    # ------------------------------------------------------------------ scoring
    def update(
        self, ts: float | int | datetime | np.datetime64, value: float, expected: Expected | None = None
    ) -> Score:
        """Score ``value`` observed at ``ts`` (after every earlier sample), then learn from it."""
        out = self._update(ts, value, expected)
        return self._quiet(out)

    def _quiet(self, out: Score) -> Score:
        """Apply the quiet period (module docstring) to a finished score; it only ever silences."""
        c = self.config
        s = self._s
        if c.quiet_fraction <= 0:
            return out
        if s.quiet > 0:
            s.quiet -= 1
            firm = s.quiet_level >= c.quiet_firm_score
            if firm or out.score <= min(0.999, s.quiet_level * c.quiet_breakthrough):
                if out.score > 0:
                    return Score(
                        0.0, out.detector, out.expected, out.observed, out.reason + "; quiet after an alarm", out.z
                    )
                return out
        if out.score >= c.quiet_score:
            s.quiet = max(1, math.ceil(c.quiet_fraction * c.warmup))
            s.quiet_level = out.score
        return out

    def _update(
        self, ts: float | int | datetime | np.datetime64, value: float, expected: Expected | None = None
    ) -> Score:
        c = self.config
        s = self._s
        t = _epoch_seconds(ts)
        x = float(value)
        if not math.isfinite(x):
            return Score(0.0, "", None, x, "missing value: not scored, not learned")

        if s.last_ts is not None and t > s.last_ts:
            s.diffs.push(t - s.last_ts)
        s.last_ts = t if s.last_ts is None else max(s.last_ts, t)
        if s.slot_seconds is None and len(s.diffs) >= 16:
            interval = s.diffs.median()
            s.slot_seconds = max(c.min_slot_seconds, interval) if interval * 4 <= DAY_S else 0.0

        zs, exp = self._deviations(t, x, expected)
        ratios = self._calibrate(zs)
        out_of_range = self._out_of_range(x)
        prev_lo, prev_hi = s.lo, s.hi
        self._learn(t, x)
        level_range = self._level_range()
        s.n += 1

        if s.n <= c.warmup:
            return Score(0.0, "", exp.get("residual"), x, f"warm-up ({s.n}/{c.warmup} samples)")

        weights = {
            "residual": c.weight_residual,
            "seasonal": c.weight_seasonal,
            "level_shift": c.weight_level_shift,
            "slow_shift": c.weight_slow_shift,
        }
        best, r, total = "", 0.0, 0.0
        for name, ri in ratios.items():
            wr = ri * weights[name]
            total += wr
            if wr > r:
                best, r = name, wr
        r += c.agreement * (total - r)
        novel = r > s.alarm_z
        if novel and r >= c.alarm_ratio:
            s.hold = c.novelty_hold
        if s.hold > 0:
            s.hold -= 1
            s.alarm_z = max(s.alarm_z, r)
        elif c.decay_after_deviation and r > 1.0:
            s.alarm_z = max(s.alarm_z, r)  # still beyond the usual extreme: the same deviation, no decay
        else:
            s.alarm_z = max(s.alarm_z * c.novelty_decay, r)
        e = r
        if c.evidence_window > 0:
            # evidence: how far r went beyond the usual extreme (1), summed over the last few samples,
            # reported while it is growing (r > 1 now)
            s.excess.push(max(0.0, r - 1.0))
            e = sum(s.excess.values()) if r > 1.0 else 0.0
        score = e / (e + c.r_half) if e > 0 else 0.0
        if not novel:
            score *= c.novelty_damping
        range_score = 0.0
        if out_of_range is not None:
            # the excess beyond the range as a multiple of the tolerance, shaped like r (1 -> 0.5)
            rr = out_of_range / c.range_tolerance
            range_score = rr / (rr + c.r_half)
        level_score = 0.0
        if level_range is not None:
            lr = level_range[0] / c.level_range_tolerance
            level_score = lr / (lr + c.r_half)
            if level_score > max(score, range_score):
                _, mean, passed = level_range
                side = "above the highest" if mean > passed else "below the lowest"
                reason = (
                    f"level_range: mean of the last {self._level_range_size()} samples {mean:.6g}, {side} such mean "
                    f"seen before ({passed:.6g}) by {level_range[0]:.0%} of their range"
                )
                return Score(level_score, "level_range", passed, x, reason, max(r, lr))
        if out_of_range is not None and range_score > score:
            above = prev_hi is not None and x > prev_hi
            bound = prev_hi if above else prev_lo
            side = "above the highest" if above else "below the lowest"
            reason = (
                f"range: observed {x:.6g}, {side} value seen before ({bound:.6g}) "
                f"by {out_of_range:.0%} of the range seen"
            )
            return Score(range_score, "range", bound, x, reason, max(r, rr))
        if not best:
            return Score(score, "", None, x, "no detector has a baseline yet", r)
        expected_value = exp.get(best)
        shown = f"{expected_value:.6g}" if expected_value is not None else "n/a"
        reason = f"{best}: observed {x:.6g} vs expected {shown} ({zs[best]:.1f} robust sd, {r:.2f}x its usual extreme)"
        if not novel:
            reason += "; deviation already reported"
        return Score(score, best, expected_value, x, reason, r)

    def _out_of_range(self, x: float) -> float | None:
        """How far ``x`` lies beyond the [min, max] seen so far, as a share of max - min; None when
        within the tolerance.

        Why (the "spatial anomaly" of Numenta's NAB detector): a value never seen before, well
        outside everything the series has done, is anomalous whatever the local noise level is;
        the z-based detectors miss it on noisy series whose usual extremes are already large.
        """
        s = self._s
        if s.lo is None or s.hi is None or s.hi <= s.lo:
            return None
        excess = max(x - s.hi, s.lo - x) / (s.hi - s.lo)
        return excess if excess > self.config.range_tolerance else None

    def _level_range_size(self) -> int:
        c = self.config
        return min(max(2, int(c.warmup * c.level_range_fraction)), c.residual_window)

    def _level_range(self) -> tuple[float, float, float] | None:
        """(excess, moving mean, bound passed) when the mean of the last samples lies beyond every earlier
        such mean by more than ``level_range_tolerance`` of their range; None when not (or not yet).

        Why: ``range`` on a smoothed series. On a spiky series the raw range is set by spikes, so a
        sustained rise or a burst of activity inside it is no new record for ``range``, and its
        samples are no rarer than the spikes the z detectors have learned; but the level over a
        few dozen samples (warm-up/32: two hours of 5-minute data) may never have been this high. A
        record of that level is rare on any series and needs no calibration, as a record value is
        for ``range``. Learned from the first full window on (warm-up included); called after the
        sample is learned.
        """
        c = self.config
        s = self._s
        if c.level_range_fraction <= 0:
            return None
        size = self._level_range_size()
        if len(s.values) < size:
            return None
        mean = sum(s.values.last(size)) / size
        lo, hi = s.level_lo, s.level_hi
        s.level_lo = mean if lo is None else min(lo, mean)
        s.level_hi = mean if hi is None else max(hi, mean)
        if lo is None or hi is None or hi <= lo or s.n < c.warmup:
            return None
        excess = max(mean - hi, lo - mean) / (hi - lo)
        if excess <= c.level_range_tolerance:
            return None
        return excess, mean, hi if mean > hi else lo

    def _calibrate(self, zs: dict[str, float]) -> dict[str, float]:
        """Each z as a multiple of that detector's usual extreme on this series, then learn the z.

        Why: series differ wildly in tails (tweet counts vs. a thermometer); a robust z of 8 is
        routine in one and unheard of in the other. Dividing by a high quantile of the detector's
        own past z makes one global threshold mean "rarer than this series' usual extremes".
        """
        c = self.config
        out: dict[str, float] = {}
        for name, z in zs.items():
            hist = self._s.zhist.get(name)
            if hist is None:
                hist = self._s.zhist[name] = RollingWindow(c.history_window)
            need = c.slow_reference if name == "slow_shift" else c.history_min  # autocorrelated: longer
            if len(hist) >= need:
                out[name] = z / max(hist.quantile(c.history_quantile), c.min_reference_z)
            hist.push(z)
        return out

    def _floor(self) -> float:
        """Smallest scale a detector may divide by: flat series must not give infinite z."""
        s = self._s
        mag = abs(s.values.median()) if len(s.values) else 0.0
        spread = (s.values.quantile(0.99) - s.values.quantile(0.01)) if len(s.values) > 1 else 0.0
        return max(self.config.scale_floor * max(mag, spread), 1e-9)

    def _deviations(self, t: float, x: float, expected: Expected | None) -> tuple[dict[str, float], dict[str, float]]:
        """Robust z of ``x`` for each detector that has a baseline, and what each expected."""
        c = self.config
        s = self._s
        zs: dict[str, float] = {}
        exp: dict[str, float] = {}
        floor = self._floor()

        # residual of a one-step forecast
        recent = s.values.last(c.forecast_window)
        if expected is not None and "p50" in expected:
            f = float(expected["p50"])
            width = float(expected.get("p90", f)) - float(expected.get("p10", f))
            scale = max(width / P10_P90_SIGMAS, s.residuals.sigma() if len(s.residuals) > 30 else 0.0, floor)
            zs["residual"], exp["residual"] = abs(x - f) / scale, f
        elif len(recent) == c.forecast_window and len(s.residuals) > 30:
            f = _median(recent)
            scale = max(s.residuals.sigma(), floor)
            zs["residual"], exp["residual"] = abs(x - f) / scale, f

        # seasonal slot baseline
        slot = self._slot(t)
        if slot is not None:
            w = s.slots.get(slot)
            per_day = DAY_S / (s.slot_seconds or DAY_S)
            need = c.seasonal_min_days * max(1.0, (s.slot_seconds or 0) / max(s.diffs.median(), 1e-9))
            if w is not None and len(w) >= need and per_day >= 2:
                m = w.median()
                scale = max(w.sigma(), floor)
                zs["seasonal"], exp["seasonal"] = abs(x - m) / scale, m

        # two-window median test
        ref = s.reference
        m = len(ref)
        if m >= self._level_min_reference() and len(s.recent) == c.level_recent - 1:
            ma = _median([*s.recent.values(), x])
            mb = ref.median()
            # in standard errors of the difference of two medians (`level_recent` and m samples), so
            # its z is comparable whether the reference is full or still growing after the warm-up
            scale = max(ref.sigma() * MEDIAN_SE * math.sqrt(1.0 / c.level_recent + 1.0 / m), floor)
            zs["level_shift"], exp["level_shift"] = abs(ma - mb) / scale, mb

        # the same test on a slower time scale (drifts and shifts too small for 5 samples)
        sr, sf = s.slow_recent, s.slow_reference
        if len(sf) >= c.slow_reference and len(sr) == c.slow_recent:
            ma = sr.median()  # the slow window ends one sample back: x itself is the fast test's job
            mb = sf.median()
            scale = max(sf.sigma() * MEDIAN_SE / math.sqrt(c.slow_recent), floor)
            zs["slow_shift"], exp["slow_shift"] = abs(ma - mb) / scale, mb

        return zs, exp

    def _level_min_reference(self) -> int:
        """Reference size at which the level test starts: the full ``level_reference`` when the warm-up
        is long enough to fill it and calibrate the test, else small enough that the test is
        calibrated (``history_min`` z values) by the end of the warm-up, never below
        ``level_min_reference``."""
        c = self.config
        fits = c.warmup - c.history_min - c.level_recent + 1
        return max(min(c.level_min_reference, c.level_reference), min(c.level_reference, fits))

    def _slot(self, t: float) -> str | None:
        ss = self._s.slot_seconds
        if not ss:
            return None
        return str(int((t % DAY_S) // ss))

    def _learn(self, t: float, x: float) -> None:
        c = self.config
        s = self._s
        s.lo = x if s.lo is None else min(s.lo, x)
        s.hi = x if s.hi is None else max(s.hi, x)
        recent = s.values.last(c.forecast_window)
        if len(recent) == c.forecast_window:
            f = _median(recent)
            s.residuals.push(x - f)
        if len(s.slow_recent) == c.slow_recent:
            s.slow_reference.push(s.slow_recent.values()[0])
        s.slow_recent.push(x)
        s.values.push(x)
        if c.level_recent > 1:
            if len(s.recent) == c.level_recent - 1:
                s.reference.push(s.recent.last(c.level_recent - 1)[0])
            s.recent.push(x)
        else:
            s.reference.push(x)
        slot = self._slot(t)
        if slot is not None:
            w = s.slots.get(slot)
            if w is None:
                per_slot = max(1, round((s.slot_seconds or DAY_S) / max(s.diffs.median(), 1e-9)))
                w = s.slots[slot] = RollingWindow(max(8, per_slot * c.seasonal_days))
            w.push(x)


@dataclass(frozen=True)
class SeriesScores:
    """Per-sample results of :func:`score_series`, as arrays aligned with the input."""

    score: npt.NDArray[np.float64]
    z: npt.NDArray[np.float64]
    detector: list[str]
    expected: npt.NDArray[np.float64]  # nan where no detector had an expectation
    reason: list[str]


def score_series(
    ts: Sequence[float] | npt.NDArray[Any],
    values: Sequence[float] | npt.NDArray[Any],
    *,
    config: DetectorConfig | None = None,
    detector: Detector | None = None,
    expected: Sequence[Expected | None] | None = None,
) -> SeriesScores:
    """Batch replay: ``Detector.update`` over every sample, in order (the live flow's exact path).

    Pass ``detector`` to continue from a saved state (it is updated in place).
    """
    det = detector or Detector(config)
    n = len(values)
    if len(ts) != n:
        raise ValueError(f"ts has {len(ts)} items, values has {n}")
    out_s = np.zeros(n)
    out_z = np.zeros(n)
    out_e = np.full(n, np.nan)
    names: list[str] = []
    reasons: list[str] = []
    for i in range(n):
        r = det.update(ts[i], values[i], None if expected is None else expected[i])
        out_s[i], out_z[i] = r.score, r.z
        if r.expected is not None:
            out_e[i] = r.expected
        names.append(r.detector)
        reasons.append(r.reason)
    return SeriesScores(out_s, out_z, names, out_e, reasons)
