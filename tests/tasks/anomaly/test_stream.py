"""Incremental anomaly scoring over the lake: live runs equal one replay, state survives restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from tasks.anomaly.stream import detect_incremental
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.state import State

END = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)


def _seed(lake: Lake, minutes: int = 2000) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(minutes)
    frames = []
    for host in ("a", "b"):
        y = 0.5 + 0.2 * np.sin(2 * np.pi * t / 1440) + rng.normal(0, 0.01, minutes)
        if host == "b":
            y[1700:1720] += 0.6  # a planted incident late in the series
        ts = pl.Series([END - timedelta(minutes=int(minutes - i)) for i in t]).dt.cast_time_unit("ms")
        frames.append(pl.DataFrame({"metric": "cpu", "labels": json.dumps({"host": host}), "ts": ts, "value": y}))
    lake.write_samples(pl.concat(frames), now=END)


@pytest.fixture
def setup(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    _seed(lake)
    return lake, State(str(tmp_path / "state.duckdb"))


def _scores(lake: Lake) -> pl.DataFrame:
    return lake.read_rows(S.ANOMALIES, END - timedelta(days=3), END + timedelta(hours=1)).sort("series_id", "ts")


def test_incremental_runs_equal_one_replay(setup, tmp_path):
    import shutil

    lake, state = setup
    shutil.copytree(tmp_path / "lake", tmp_path / "replay-lake")  # same samples, no scores yet
    # live: three runs as time passes
    for now in (END - timedelta(minutes=600), END - timedelta(minutes=250), END):
        detect_incremental(lake, state, ["cpu"], STEP, now=now, backfill=timedelta(days=2))
    live = _scores(lake)
    # replay: one run over everything with fresh state, on the copy
    replay_lake = Lake(str(tmp_path / "replay-lake"))
    res = detect_incremental(
        replay_lake, State(str(tmp_path / "replay.duckdb")), ["cpu"], STEP, now=END, backfill=timedelta(days=2)
    )
    replay = _scores(replay_lake)
    assert res.scored == live.height == 2 * 2000
    cols = ["series_id", "ts", "score", "detector", "reason"]
    assert live.select(cols).equals(replay.select(cols))


def test_second_run_scores_only_new_points_and_state_is_kept(setup):
    lake, state = setup
    first = detect_incremental(lake, state, ["cpu"], STEP, now=END, backfill=timedelta(days=2))
    assert first.scored == 4000 and first.new_series == 2
    again = detect_incremental(lake, state, ["cpu"], STEP, now=END + timedelta(seconds=30))
    assert again.scored == 0 and again.new_series == 0
    with state.transaction() as con:
        rows = con.execute("SELECT series, last_ts FROM anomaly_state ORDER BY series").fetchall()
    assert [r[0] for r in rows] == ['cpu{host="a"}', 'cpu{host="b"}']
    assert all(r[1] == END - timedelta(minutes=1) for r in rows)  # the last complete bucket


def test_planted_incident_is_the_strongest_anomaly(setup):
    lake, state = setup
    res = detect_incremental(lake, state, ["cpu"], STEP, now=END, backfill=timedelta(days=2), threshold=0.5)
    top = res.to_dict()["top"][0]
    assert top["series"] == 'cpu{host="b"}'
    incident = END - timedelta(minutes=300)  # minute 1700 of 2000
    assert abs(datetime.fromisoformat(top["ts"]) - incident) <= timedelta(minutes=20)
    scores = _scores(lake)
    near = (pl.col("ts") - pl.lit(incident, dtype=S.POLARS_TS)).abs() <= pl.duration(minutes=30)
    assert scores.filter(~near).get_column("score").max() < scores.filter(near).get_column("score").max()


def test_unreadable_state_is_reset_with_a_reason(setup):
    lake, state = setup
    detect_incremental(lake, state, ["cpu"], STEP, now=END - timedelta(minutes=100), backfill=timedelta(days=2))
    with state.transaction() as con:
        con.execute("UPDATE anomaly_state SET state = '{\"version\": -1}'")
    res = detect_incremental(lake, state, ["cpu"], STEP, now=END, backfill=timedelta(days=2))
    assert len(res.reset_series) == 2 and "version" in res.reset_series[0]


def test_stored_scores_are_readable_by_selector(setup):
    from tasks.anomaly.stream import anomaly_scores

    lake, state = setup
    detect_incremental(lake, state, ["cpu"], STEP, now=END, backfill=timedelta(days=2))
    b = anomaly_scores(lake, 'cpu{host="b"}', END - timedelta(minutes=400), END - timedelta(minutes=200))
    assert b.height == 200 and set(b.get_column("series")) == {'cpu{host="b"}'}
    assert b.get_column("score").max() == pytest.approx(_scores(lake).get_column("score").max())
    assert anomaly_scores(lake, "nothing", END - timedelta(hours=1), END).height == 0
