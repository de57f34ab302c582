"""NAB scorer checked against hand-computed windows, and against one file of NAB's published results.

The hand computations use NAB's formulas directly: scaled sigmoid ``S(y) = 2/(1+exp(5y)) - 1``,
TP credit ``S(-(end - i + 1)/length) / S(-1)``, FP cost ``A_FP * S(|end - i| / (length - 1))``
after a window and ``-A_FP`` before any window, ``-A_FN`` per missed window.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from tasks.anomaly.nab import (
    PROFILES,
    CorpusFile,
    load_windows,
    optimize_threshold,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_file,
    to_datetime64,
    window_bounds,
)

STD = PROFILES["standard"]
NAB = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "nab"


def S(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def dets(n: int, *rows: int) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[list(rows)] = True
    return d


# a 1,000-row file: probation 150 rows, one window of 11 rows at 400..410
N = 1000
WIN = [(400, 410)]


def test_constants() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0
    assert probation_rows(1000) == 150
    assert probation_rows(22695) == 750  # capped at 0.15 * 5000


def test_detection_at_window_start_earns_full_credit() -> None:
    r = score_file(dets(N, 400), WIN, 150, STD)
    assert r.raw == pytest.approx(1.0)
    assert (r.tp, r.fp, r.windows_detected) == (1, 0, 1)


def test_detection_at_window_end_earns_little() -> None:
    r = score_file(dets(N, 410), WIN, 150, STD)
    assert r.raw == pytest.approx(S(-1 / 11) / S(-1))
    assert r.raw < 0.25


def test_only_first_detection_in_window_counts() -> None:
    early_late = score_file(dets(N, 402, 405, 409), WIN, 150, STD)
    assert early_late.raw == pytest.approx(S(-9 / 11) / S(-1))
    assert early_late.tp == 3 and early_late.fp == 0


def test_missed_window_costs_fn_weight() -> None:
    assert score_file(dets(N), WIN, 150, STD).raw == pytest.approx(-1.0)
    assert score_file(dets(N), WIN, 150, PROFILES["reward_low_FN"]).raw == pytest.approx(-2.0)


def test_false_positives_before_and_after_a_window() -> None:
    before = score_file(dets(N, 300), WIN, 150, STD)
    assert before.raw == pytest.approx(-1.0 - 0.11)  # missed window + FP before any window
    just_after = score_file(dets(N, 412), WIN, 150, STD)
    assert just_after.raw == pytest.approx(-1.0 + 0.11 * S(2 / 10))
    far_after = score_file(dets(N, 900), WIN, 150, STD)
    assert far_after.raw == pytest.approx(-1.0 - 0.11)  # > 3 window lengths: full cost
    low_fp = score_file(dets(N, 300), WIN, 150, PROFILES["reward_low_FP"])
    assert low_fp.raw == pytest.approx(-1.0 - 0.22)


def test_probationary_period_is_ignored() -> None:
    r = score_file(dets(N, 0, 10, 149), WIN, 150, STD)
    assert r.raw == pytest.approx(-1.0)
    assert r.fp == 0
    assert score_file(dets(N, 150), WIN, 150, STD).fp == 1


def test_window_bounds_are_inclusive_timestamps() -> None:
    ts = to_datetime64([f"2020-01-01 00:{m:02d}:00" for m in range(10)])
    assert window_bounds(ts, [("2020-01-01 00:02:00.000000", "2020-01-01 00:05:00.000000")]) == [(2, 5)]


def test_normalisation_null_and_perfect() -> None:
    # two files, one window each; a perfect detector fires once at each window's start
    a = np.zeros(N)
    a[400] = 1.0
    b = np.zeros(N)
    b[600] = 1.0
    files = [CorpusFile("a", a, [(400, 410)]), CorpusFile("b", b, [(600, 620)])]
    for method in ("nab", "exact"):
        res = optimize_threshold(files, STD, method=method)  # type: ignore[arg-type]
        assert res.null == pytest.approx(-2.0) and res.perfect == pytest.approx(2.0)
        assert res.score == pytest.approx(100.0)
    silent = [CorpusFile("a", np.zeros(N), [(400, 410)]), CorpusFile("b", np.zeros(N), [(600, 620)])]
    assert optimize_threshold(silent, STD, method="exact").score == pytest.approx(0.0)


def test_exact_optimum_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    files = [CorpusFile(f"f{i}", rng.random(400) ** 8, [(200 + 20 * i, 230 + 20 * i)], probation=60) for i in range(3)]
    for f in files:  # a strong early detection in each window, so the optimum detects something
        f.scores[f.bounds[0][0] + 3] = 0.995
    res = optimize_threshold(files, STD, method="exact")
    candidates = [*np.unique(np.concatenate([f.scores for f in files])), 2.0]  # 2.0: detect nothing
    brute = max(score_corpus(files, float(t), STD).raw for t in candidates)
    assert res.raw == pytest.approx(brute)
    assert res.raw > -3.0
    assert score_corpus(files, res.threshold, STD).raw == pytest.approx(res.raw)
    assert optimize_threshold(files, STD, method="nab").raw <= res.raw + 1e-12


@pytest.mark.skipif(not (NAB / "labels").is_dir(), reason="NAB data set not present")
def test_reproduces_nab_published_file_score() -> None:
    """numenta's detections on realTraffic/speed_7578.csv at its standard threshold (0.5127).

    NAB's results/numenta/numenta_standard_scores.csv lists this file at Score 1.23649741556,
    TP 4, TN 839, FP 3, FN 112; the seven rows where numenta's anomaly_score >= 0.5127 are below.
    """
    name = "realTraffic/speed_7578.csv"
    with (NAB / "data" / name).open() as fh:
        stamps = [row[0] for row in list(csv.reader(fh))[1:]]
    ts = to_datetime64(stamps)
    bounds = window_bounds(ts, load_windows(NAB / "labels" / "combined_windows.json")[name])
    hits = [
        "2015-09-12 00:16:00",
        "2015-09-14 17:45:00",
        "2015-09-15 06:05:00",
        "2015-09-15 14:34:00",
        "2015-09-16 14:19:00",
        "2015-09-16 17:15:00",
        "2015-09-16 17:45:00",
    ]
    r = score_file(np.isin(ts, to_datetime64(hits)), bounds, probation_rows(len(ts)), STD)
    assert r.raw == pytest.approx(1.23649741556, abs=1e-9)
    assert (r.tp, r.tn, r.fp, r.fn) == (4, 839, 3, 112)
