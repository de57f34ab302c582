"""The metric lake: Parquet files per table and day, queried with DuckDB.

Public surface (everything else in ``tasks.lake`` is internal)::

    from tasks.lake import Lake, Sample, Event
    lake = Lake.from_settings(settings)          # or Lake("data/lake")
    res = lake.write_samples([Sample("cpu_utilization", 0.4, ts, {"host": "a"})])
    res.accepted, res.rejected, res.reasons      # bad rows are reported, good ones kept
    lake.write_samples(df)                       # bulk: polars frame metric, labels(JSON str), ts, value
    lake.write_events([Event("metrics.collected", "cortex.flow.collect", {"samples": 12})])
    lake.raw('cpu_utilization{host="a"}', start, end)            # series, metric, labels, ts, value
    lake.query('cpu_utilization{host=~"a|b"}', start, end, step=timedelta(minutes=5), agg="avg")
    lake.rate('http_requests_total', start, end, step=...)        # per-second, counter resets handled
    lake.increase(...); lake.latest('up'); lake.top_k(sel, start, end, k=10)
    lake.events(since=..., name="metrics.collected")
    lake.stats()                                 # {"tables": {"samples": {rows, files, bytes, series, oldest, newest}}}
    lake.compact(); lake.build_rollups(); lake.apply_retention()
"""

from tasks.lake.schema import Event, Sample, SchemaError

__all__ = ["Event", "Lake", "Sample", "SchemaError", "WriteResult"]


# Lazy: importing the schema (sources, events) must not pull DuckDB in: ``import duckdb`` alone
# costs ~150 ms of start-up here (measured with -X importtime).
def __getattr__(name: str):
    if name == "Lake":
        from tasks.lake.lake import Lake

        return Lake
    if name == "WriteResult":
        from tasks.lake.write import WriteResult

        return WriteResult
    raise AttributeError(name)
