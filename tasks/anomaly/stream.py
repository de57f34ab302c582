"""The live side of anomaly detection: score new samples incrementally, keep detector state.

Each run reads only the samples after the last one each series' detector has seen (bucketed on
the configured step; only complete buckets), feeds them through that series' detector restored
from the state DB, appends the scores to the lake's ``anomalies`` table and saves the detectors.
A series seen for the first time is replayed over ``backfill`` of history first — the same code
path, so live scores and a batch replay are identical.

Crash safety: scores are written to the lake before the detector state is saved. A crash between
the two makes the next run score the same samples again from the old state; the detector is
deterministic, so it writes the same rows, which the lake de-duplicates by (series, ts).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from tasks.anomaly.detector import Detector, DetectorConfig, Expected
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.state import State, register_schema

log = logging.getLogger("cortex_perf.anomaly")

register_schema(
    "anomaly_state",
    """CREATE TABLE IF NOT EXISTS anomaly_state (
        series_id BIGINT PRIMARY KEY,
        series VARCHAR NOT NULL,
        last_ts TIMESTAMPTZ NOT NULL,
        state JSON NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
)


#: Rows of the lake's ``anomalies`` table as this module builds them (types from the lake's schema).
_ROW_SCHEMA: dict[str, pl.DataType] = dict(pl.from_arrow(S.ANOMALIES_SCHEMA.empty_table()).schema)  # type: ignore[union-attr]
_SCORE_COLUMNS = ("ts", "score", "value", "expected", "detector", "reason")


@dataclass
class AnomalyRunResult:
    series: int = 0
    scored: int = 0
    new_series: int = 0
    reset_series: list[str] = field(default_factory=list)
    anomalies: list[dict[str, Any]] = field(default_factory=list)  # points at or above the threshold
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "scored": self.scored,
            "new_series": self.new_series,
            "reset_series": self.reset_series,
            "anomalies": len(self.anomalies),
            "top": sorted(self.anomalies, key=lambda a: -a["score"])[:10],
        }


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _floor(ts: datetime, step: timedelta) -> datetime:
    s = step.total_seconds()
    return datetime.fromtimestamp((ts.timestamp() // s) * s, tz=UTC)


def _load_states(state: State, ids: list[int]) -> dict[int, tuple[datetime, dict[str, Any]]]:
    if not ids:
        return {}
    with state.transaction() as con:
        rows = con.execute(
            "SELECT series_id, last_ts, state FROM anomaly_state WHERE series_id IN (SELECT unnest(?))", [ids]
        ).fetchall()
    return {int(sid): (last_ts.astimezone(UTC), json.loads(st)) for sid, last_ts, st in rows}


def _save_states(state: State, rows: list[tuple[int, str, datetime, str]], now: datetime) -> None:
    if not rows:
        return
    with state.transaction() as con:
        con.executemany(
            "INSERT INTO anomaly_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (series_id) DO UPDATE SET "
            "series = excluded.series, last_ts = excluded.last_ts, state = excluded.state, "
            "updated_at = excluded.updated_at",
            [(sid, name, last, st, now) for sid, name, last, st in rows],
        )


def _expected_by_key(lake: Lake, selector: str, start: datetime, end: datetime) -> dict[tuple[int, int], Expected]:
    """Latest issued forecast quantiles per (series_id, target ms) in the window, if any."""
    try:
        rows = lake.read_rows(S.FORECASTS, start - timedelta(days=2), end + timedelta(minutes=1), selector)
    except Exception as exc:  # forecasts are optional input; never let them stop detection
        log.warning("forecasts unavailable for %s: %s", selector, exc)
        return {}
    if not rows.height:
        return {}
    rows = rows.sort("issued_at").unique(["series_id", "ts"], keep="last")
    out: dict[tuple[int, int], Expected] = {}
    for sid, ts, p10, p50, p90 in rows.select("series_id", "ts", "p10", "p50", "p90").iter_rows():
        out[(int(sid), int(ts.timestamp() * 1000))] = Expected(p10=p10, p50=p50, p90=p90)
    return out


def detect_incremental(
    lake: Lake,
    state: State,
    selectors: list[str],
    step: timedelta,
    *,
    now: datetime | None = None,
    backfill: timedelta = timedelta(days=7),
    threshold: float = 0.9,
    config: DetectorConfig | None = None,
) -> AnomalyRunResult:
    """Score every complete bucket since the last run for the series matching ``selectors``."""
    now = now or datetime.now(UTC)
    end = _floor(now, step)  # the bucket starting at `end` is still filling
    result = AnomalyRunResult()
    out_rows: list[dict[str, Any]] = []
    saves: list[tuple[int, str, datetime, str]] = []
    for sel in selectors:
        series = lake.series(sel)
        if not series.height:
            continue
        ids = [int(x) for x in series.get_column("series_id").to_list()]
        states = _load_states(state, ids)
        detectors: dict[int, tuple[Detector, datetime | None]] = {}
        for sid, name in series.select("series_id", "series").iter_rows():
            known = states.get(int(sid))
            det, last = None, None
            if known is not None:
                try:
                    det, last = Detector.from_state(known[1]), known[0]
                except (ValueError, KeyError, TypeError) as exc:  # detector upgraded: replay history
                    result.reset_series.append(f"{name}: {exc}")
            if det is None:
                det = Detector(config)
                result.new_series += 1
            detectors[int(sid)] = (det, last)
        starts = [(last + step) if last else end - backfill for _, last in detectors.values()]
        start = min(starts)
        if start >= end:
            continue
        data = lake.query(sel, start, end, step=step, agg="avg")
        if not data.height:
            continue
        expected = _expected_by_key(lake, sel, start, end)
        keyed = data.join(series.select("series_id", "series"), on="series", how="inner")
        for (sid,), part in keyed.group_by("series_id", maintain_order=True):
            det, last = detectors[int(sid)]
            if last is not None:
                part = part.filter(pl.col("ts") > pl.lit(last, dtype=S.POLARS_TS))
            if not part.height:
                continue
            result.series += 1
            name, metric, labels = part.row(0, named=True)["series"], part["metric"][0], part["labels"][0]
            for ts, value in part.select("ts", "value").iter_rows():
                ms = int(ts.timestamp() * 1000)
                sc = det.update(ts, value, expected.get((int(sid), ms)))
                out_rows.append(
                    {
                        "series_id": int(sid),
                        "metric": metric,
                        "labels": labels,
                        "ts": ts,
                        "score": float(sc.score),
                        "value": float(value),
                        "expected": _finite(sc.expected),
                        "detector": sc.detector or "",
                        "reason": sc.reason or "",
                    }
                )
                if sc.score >= threshold:
                    result.anomalies.append(
                        {
                            "series": name,
                            "ts": ts.isoformat(),
                            "score": round(float(sc.score), 4),
                            "detector": sc.detector,
                            "reason": sc.reason,
                        }
                    )
            result.scored += part.height
            saves.append((int(sid), name, part["ts"].max(), json.dumps(det.state_dict())))
    if out_rows:
        frame = pl.DataFrame(out_rows, schema=_ROW_SCHEMA)
        result.files = lake.write_rows(S.ANOMALIES, frame).files
    _save_states(state, saves, now)
    return result


def anomaly_scores(lake: Lake, selector: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Stored scores of the matching series in [start, end): series, ts, score, value, expected,
    detector, reason — what alert rules' ``anomaly(m[w])`` and the reports read."""
    rows = lake.read_rows(S.ANOMALIES, start, end, selector)
    names = lake.series(selector).select("series_id", "series") if rows.height else None
    if names is None or not names.height:
        return pl.DataFrame(
            schema={"series": pl.String, **{k: v for k, v in _ROW_SCHEMA.items() if k in _SCORE_COLUMNS}}
        )
    return rows.join(names, on="series_id").select("series", *_SCORE_COLUMNS).sort("series", "ts")
