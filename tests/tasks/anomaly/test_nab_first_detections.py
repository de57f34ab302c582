"""The per-window view of first detections (``first_detections``), against hand-computed credit.

Credit is NAB's TP term ``S(-(end - i + 1)/length) / S(-1)`` with ``S(y) = 2/(1+exp(5y)) - 1``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.anomaly.nab import PROFILES, first_detections, score_file

STD = PROFILES["standard"]


def S(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def dets(n: int, *rows: int) -> np.ndarray:
    d = np.zeros(n, dtype=bool)
    d[list(rows)] = True
    return d


def test_first_detection_before_the_label_has_negative_lag_and_its_credit() -> None:
    # window 400..410 (11 rows), labelled anomaly at 405, detections at 402 and 407
    (w,) = first_detections(dets(1000, 402, 407), [(400, 410)], 150, STD, labels=[405])
    assert (w.row, w.label, w.lag) == (402, 405, -3)
    assert w.credit == pytest.approx(S(-(410 - 402 + 1) / 11) / S(-1))
    assert w.label_credit == pytest.approx(S(-(410 - 405 + 1) / 11) / S(-1))
    assert w.credit > w.label_credit


def test_late_detection_earns_less_than_one_at_the_label() -> None:
    (w,) = first_detections(dets(1000, 409), [(400, 410)], 150, STD, labels=[405])
    assert w.lag == 4
    assert w.credit == pytest.approx(S(-2 / 11) / S(-1))
    assert w.label_credit is not None and w.credit < w.label_credit


def test_missed_window_and_label_outside_every_window() -> None:
    ws = first_detections(dets(1000, 300, 700), [(400, 410), (500, 520)], 150, STD, labels=[405, 600])
    assert [w.row for w in ws] == [None, None]
    assert [w.credit for w in ws] == [0.0, 0.0]
    assert ws[0].label == 405 and ws[1].label is None and ws[1].lag is None


def test_probation_hides_detections_and_the_label_credit() -> None:
    # window 100..200 starts inside a 150-row probation: a detection at 120 is ignored, 160 counts
    (w,) = first_detections(dets(1000, 120, 160), [(100, 200)], 150, STD, labels=[130])
    assert w.row == 160
    assert w.label_credit is None  # the labelled row itself lies in the probation


def test_credits_sum_to_score_files_tp_term() -> None:
    bounds = [(200, 260), (500, 540), (800, 900)]
    d = dets(1000, 230, 231, 520, 950)  # two windows detected, one missed, one FP after the last
    ws = first_detections(d, bounds, 150, STD)
    fs = score_file(d, bounds, 150, STD)
    fp_cost = STD.fp * S(abs(900 - 950) / (900 - 800))
    assert sum(w.credit for w in ws) - STD.fn * sum(w.row is None for w in ws) + fp_cost == pytest.approx(fs.raw)
