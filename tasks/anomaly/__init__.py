"""Anomaly detection: causal streaming detectors, NAB's scoring rules, and CSV scoring for the CLI.

Public surface::

    from tasks.anomaly import Detector, DetectorConfig, Score, score_series
    det = Detector()                                   # one per series
    s = det.update(ts, value)                          # Score(score, detector, expected, observed, reason)
    s = det.update(ts, value, expected={"p10": .., "p50": .., "p90": ..})   # with a lake forecast
    state = det.state_dict(); det = Detector.from_state(state)            # JSON, persisted by the flow
    res = score_series(ts_array, values)               # batch replay = a loop over update

    from tasks.anomaly.nab import optimize_threshold, PROFILES             # NAB scorer
    from tasks.anomaly.cli_detect import detect_paths                      # `cortex-perf anomaly detect`
"""

from tasks.anomaly.detector import DETECTORS, Detector, DetectorConfig, Expected, Score, SeriesScores, score_series

__all__ = ["DETECTORS", "Detector", "DetectorConfig", "Expected", "Score", "SeriesScores", "score_series"]
