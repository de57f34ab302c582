"""root_cause(): the demo's CPU saturation explains web-2's latency; stored anomalies count; edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.analytics import AnalyticsError, root_cause
from tasks.demo import DEMO_INCIDENTS, generate_demo_history, incident_window
from tasks.lake import schema as S
from tasks.lake.lake import Lake

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INCIDENTS = {i.name: i for i in DEMO_INCIDENTS}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, datetime]:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    frame = generate_demo_history(NOW, days=2)
    lake.write_samples(frame)
    end = frame["ts"].max()
    assert isinstance(end, datetime)
    return lake, end


def test_cpu_saturation_is_the_top_cause_of_web2_latency(demo: tuple[Lake, datetime]) -> None:
    lake, end = demo
    start, _ = incident_window(INCIDENTS["cpu_saturation"], end)
    res = root_cause(lake, 'http_request_duration_seconds_p95{host="web-2"}', start + timedelta(minutes=10))
    assert res.target == 'http_request_duration_seconds_p95{host="web-2",source="demo"}'
    top = res.causes[0]
    assert top.series == 'host_cpu_utilization_ratio{host="web-2",source="demo"}'
    assert top.evidence["saturated"] is True
    assert top.evidence["shared_labels"] == {"host": "web-2"}
    assert top.evidence["correlation"] > 0.5
    assert all(c.series != res.target for c in res.causes)
    # scores are ranked and in [0, 1]; the other hosts' CPU explains much less
    scores = [c.score for c in res.causes]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    others = [c for c in res.causes if c.series.startswith("host_cpu_utilization_ratio") and "web-2" not in c.series]
    assert all(c.score < top.score - 0.2 for c in others)
    assert len(res.causes) <= 10
    assert res.to_dict()["causes"][0]["series"] == top.series


def test_stored_anomaly_scores_raise_a_candidate(demo: tuple[Lake, datetime], tmp_path: Path) -> None:
    lake, end = demo
    at = end - timedelta(hours=6)
    target = 'http_request_duration_seconds_p95{host="web-3"}'
    before = root_cause(lake, target, at, window="30m", limit=50)
    name = 'redis_memory_used_bytes{redis="demo-cache",source="demo"}'
    old = next(c for c in before.causes if c.series == name)
    cat = lake.catalogue().filter(pl.col("series") == name)
    lake.write_rows(
        S.ANOMALIES,
        pl.DataFrame(
            {
                "series_id": cat["series_id"][0],
                "metric": cat["metric"][0],
                "labels": cat["labels"][0],
                "ts": [at],
                "score": [0.99],
                "value": [1.0],
                "expected": [0.5],
                "detector": "test",
                "reason": "planted",
            }
        ).with_columns(pl.col("ts").cast(S.POLARS_TS)),
    )
    after = root_cause(lake, target, at, window="30m", limit=50)
    new = next(c for c in after.causes if c.series == name)
    assert new.evidence["anomaly_score"] == 0.99
    assert new.score > old.score


def test_unknown_series_and_empty_lake_give_empty_results(demo: tuple[Lake, datetime], tmp_path: Path) -> None:
    lake, end = demo
    res = root_cause(lake, 'no_such_metric{host="x"}', end)
    assert res.causes == [] and "matches nothing" in res.note
    empty = root_cause(Lake(str(tmp_path / "empty")), "host_cpu_utilization_ratio", end)
    assert empty.causes == [] and empty.note
    # the series exists but has no samples around that time
    old = root_cause(lake, 'host_load1{host="web-1"}', end - timedelta(days=30))
    assert old.causes == [] and "no samples" in old.note
    counter = root_cause(lake, 'http_requests_total{host="web-3"}', end - timedelta(hours=26))
    assert counter.causes == [] and "is a counter" in counter.note


def test_bad_input_names_the_argument(demo: tuple[Lake, datetime]) -> None:
    lake, end = demo
    with pytest.raises(AnalyticsError, match="series: .* matches 4 series"):
        root_cause(lake, "host_load1", end)
    with pytest.raises(AnalyticsError, match="window"):
        root_cause(lake, 'host_load1{host="web-1"}', end, window="soon")
    with pytest.raises(AnalyticsError, match="at"):
        root_cause(lake, 'host_load1{host="web-1"}', datetime(2026, 1, 1))  # naive on purpose
    with pytest.raises(AnalyticsError, match="limit"):
        root_cause(lake, 'host_load1{host="web-1"}', end, limit=0)


def _one_corr(dy: np.ndarray, dx: np.ndarray, max_lag: int) -> tuple[float, int]:
    """The per-candidate reference: one ``np.corrcoef`` per lag (what the matrix form replaces)."""
    best, best_lag, n = 0.0, 0, len(dy)
    for lag in range(-max_lag, max_lag + 1):
        a, b = (dy[lag:], dx[: n - lag]) if lag >= 0 else (dy[: n + lag], dx[-lag:])
        if a.size < 5 or a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        w = abs(r) * (1.0 if lag >= 0 else 0.7)
        if w > best:
            best, best_lag = w, lag
    return best, best_lag


def test_lagged_correlation_of_many_candidates_matches_one_at_a_time() -> None:
    from tasks.analytics.root_cause import _lagged_corr

    rng = np.random.default_rng(5)
    dy = rng.normal(size=120)
    rows = [
        np.roll(dy, -3) + rng.normal(0, 0.1, 120),  # x[t] = y[t + 3]: leads the target by 3 steps
        np.roll(dy, 2) * -1.0,  # x[t] = -y[t - 2]: follows it by 2 steps, inverted: discounted by 0.7
        np.zeros(120),  # flat: no correlation at all
        rng.normal(size=120),  # noise
    ]
    dx = np.vstack(rows)
    best, lag = _lagged_corr(dy, dx, 6)
    for i, row in enumerate(rows):
        ref_best, ref_lag = _one_corr(dy, row, 6)
        assert best[i] == pytest.approx(ref_best, abs=1e-12) and lag[i] == ref_lag, i
    assert lag[0] == 3 and best[0] > 0.9
    assert lag[1] == -2 and best[1] == pytest.approx(0.7, abs=1e-9)
    assert best[2] == 0.0 and lag[2] == 0
    short, at = _lagged_corr(dy[:4], dx[:, :4], 2)  # fewer than 5 points at every lag
    assert short.tolist() == [0.0] * 4 and at.tolist() == [0] * 4
