from datetime import timedelta

import polars as pl
import pytest

from tasks.lake import Sample
from tasks.lake.lake import QueryError


@pytest.fixture
def filled(lake, now):
    """Three hosts, one sample per minute for 2 hours; host c has an env label."""
    batch = []
    for h, base in (("a", 0.0), ("b", 100.0), ("c", 200.0)):
        labels = {"host": h} | ({"env": "prod"} if h == "c" else {})
        for i in range(120):
            batch.append(Sample("cpu", base + i, now - timedelta(minutes=120 - i), labels))
    lake.write_samples(batch, now=now)
    return lake


def _hosts(df):
    return sorted({s for s in df.get_column("series")})


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        ('cpu{host="a"}', ['cpu{host="a"}']),
        ('cpu{host!="a"}', ['cpu{env="prod",host="c"}', 'cpu{host="b"}']),
        ('cpu{host=~"a|b"}', ['cpu{host="a"}', 'cpu{host="b"}']),
        ('cpu{host!~"a|b"}', ['cpu{env="prod",host="c"}']),
        ('cpu{host=~"a"}', ['cpu{host="a"}']),  # anchored: "a" does not match "ab"
        ('cpu{env=""}', ['cpu{host="a"}', 'cpu{host="b"}']),  # missing label == ""
        ('{__name__=~"cp.*", env="prod"}', ['cpu{env="prod",host="c"}']),
        ("nothing", []),
    ],
)
def test_selector_matchers(filled, now, sel, expected):
    df = filled.raw(sel, now - timedelta(hours=3), now)
    assert _hosts(df) == expected


def test_raw_range_is_half_open(filled, now):
    df = filled.raw('cpu{host="a"}', now - timedelta(minutes=10), now - timedelta(minutes=5))
    assert df.height == 5
    assert df.get_column("value").to_list() == [110.0, 111.0, 112.0, 113.0, 114.0]
    assert df.schema["ts"] == pl.Datetime("ms", "UTC")


def test_bucket_aggregations(filled, now):
    start, end = now - timedelta(hours=2), now
    step = timedelta(minutes=30)
    avg = filled.query('cpu{host="a"}', start, end, step=step, agg="avg")
    assert avg.get_column("value").to_list() == [14.5, 44.5, 74.5, 104.5]
    assert filled.query('cpu{host="a"}', start, end, step=step, agg="max").get_column("value").to_list() == [
        29.0,
        59.0,
        89.0,
        119.0,
    ]
    assert filled.query('cpu{host="a"}', start, end, step=step, agg="count").get_column("value").to_list() == [30.0] * 4
    assert filled.query('cpu{host="a"}', start, end, step=step, agg="last").get_column("value")[0] == 29.0
    p50 = filled.query('cpu{host="a"}', start, end, step=step, agg="p50").get_column("value")[0]
    assert p50 == pytest.approx(14.5)
    q = filled.query('cpu{host="a"}', start, end, step=step, agg="quantile:0.9").get_column("value")[0]
    assert q == pytest.approx(26.1)


def test_bad_queries_say_why(filled, now):
    with pytest.raises(QueryError, match="agg: unknown aggregation 'mean'"):
        filled.query("cpu", now - timedelta(hours=1), now, step=timedelta(minutes=5), agg="mean")
    with pytest.raises(QueryError, match="selector: column 9: expected one of"):
        filled.raw('cpu{host"a"}', now - timedelta(hours=1), now)
    with pytest.raises(QueryError, match="naive datetime"):
        filled.raw("cpu", (now - timedelta(hours=1)).replace(tzinfo=None), now)
    with pytest.raises(QueryError, match="is not after start"):
        filled.raw("cpu", now, now - timedelta(hours=1))


def test_rate_and_increase_handle_counter_resets(lake, now):
    values = [0, 10, 20, 30, 5, 15, 25, 35, 45, 55]  # reset after 30
    lake.write_samples(
        [Sample("req_total", float(v), now - timedelta(minutes=10 - i)) for i, v in enumerate(values)], now=now
    )
    inc = lake.increase("req_total", now - timedelta(minutes=10), now, timedelta(minutes=5))
    assert inc.get_column("value").to_list() == [35.0, 50.0]
    rate = lake.rate("req_total", now - timedelta(minutes=10), now, timedelta(minutes=5))
    assert rate.get_column("value").to_list() == pytest.approx([35 / 300, 50 / 300])


def test_latest_and_top_k(filled, now):
    latest = filled.latest("cpu", at=now)
    assert dict(zip(latest["series"], latest["value"], strict=True)) == {
        'cpu{env="prod",host="c"}': 319.0,
        'cpu{host="a"}': 119.0,
        'cpu{host="b"}': 219.0,
    }
    older = filled.latest('cpu{host="a"}', at=now - timedelta(minutes=60))
    assert older.get_column("value").to_list() == [60.0]
    top = filled.top_k("cpu", now - timedelta(hours=1), now, k=2)
    assert top.get_column("series").to_list() == ['cpu{env="prod",host="c"}', 'cpu{host="b"}']


def test_empty_lake_answers_empty(lake, now):
    assert lake.raw("cpu", now - timedelta(hours=1), now).height == 0
    assert lake.query("cpu", now - timedelta(hours=1), now, step=timedelta(minutes=5)).height == 0
    assert lake.latest("cpu").height == 0
    stats = lake.stats()["tables"]["samples"]
    assert stats == {"rows": 0, "files": 0, "bytes": 0, "series": 0, "oldest": None, "newest": None}


def test_duckdb_views_for_ad_hoc_sql(filled, lake, now):
    con = filled.views()
    assert con.execute("SELECT count(*) FROM samples").fetchall()[0][0] == 360
    assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 0  # empty, but queryable
    rows = con.execute("SELECT metric, count(DISTINCT series_id) FROM samples GROUP BY metric").fetchall()
    assert rows == [("cpu", 3)]


@pytest.mark.parametrize(
    ("step", "agg"),
    [(None, "avg"), (timedelta(minutes=5), "avg"), (timedelta(minutes=7), "p95"), (timedelta(minutes=10), "rate")],
)
def test_stream_yields_query_rows_in_order_in_bounded_batches(filled, now, step, agg, monkeypatch):
    """Issue 11 #7: ``stream`` gives exactly ``query``'s rows (same order), a batch at a time."""
    from tasks.lake import lake as lake_mod

    monkeypatch.setattr(lake_mod, "STREAM_SERIES_GROUP", 2)  # bucket queries over several series groups
    start, end = now - timedelta(hours=3), now
    if agg == "rate":
        want = filled.rate("cpu", start, end, step)
    else:
        want = filled.query("cpu", start, end, step=step, agg=agg)
    batches = list(filled.stream("cpu", start, end, step=step, agg=agg, batch_rows=17))
    assert want.height > 17 and all(0 < b.height <= 17 for b in batches)
    assert pl.concat(batches).equals(want)
    capped = list(filled.stream("cpu", start, end, step=step, agg=agg, limit=40, batch_rows=17))
    assert pl.concat(capped).equals(want.head(40))


def test_stream_checks_its_arguments(filled, now):
    with pytest.raises(QueryError, match="agg: unknown aggregation 'median-ish'"):
        next(filled.stream("nothing", now - timedelta(hours=1), now, step=timedelta(minutes=5), agg="median-ish"))
    with pytest.raises(QueryError, match="rate needs a step"):
        next(filled.stream("cpu", now - timedelta(hours=1), now, agg="rate"))
    assert list(filled.stream("nothing", now - timedelta(hours=1), now)) == []
