"""tasks.reports: the numbers behind the report notebooks, and the notebooks run end to end with a real
kernel (papermill) into offline HTML, on a demo lake with planted alerts/scaling/forecasts and on an
empty lake."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from localsmtp import Mailbox

from tasks import analytics as A
from tasks import reports as R
from tasks.alerting.notify.acks import AckStore
from tasks.demo import seed_demo
from tasks.forecasting.baselines import SeasonalNaive
from tasks.forecasting.registry import ModelRegistry
from tasks.lake import Lake
from tasks.lake import schema as S
from tasks.lake.schema import Event
from tasks.state import State

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def _alert(lake: Lake, state: str, name: str, fp: str, ts: datetime) -> None:
    payload = {"rule": f"rules.yaml:{name}", "labels": {"alertname": name, "severity": "page"}}
    lake.write_events([Event(f"alert.{state}", f"cortex.alert.{fp}", payload, ts=ts)])


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, str]:
    """One day of demo history plus planted alerts (one flapping rule, one acked), scaling, forecasts."""
    root = tmp_path_factory.mktemp("reports-lake")
    lake = Lake(str(root / "lake"))
    seed_demo(lake, now=NOW, days=1)
    t0 = NOW - timedelta(hours=6)
    for i in range(3):  # Flappy fires and resolves three times on the same alert: flapping
        _alert(lake, "firing", "Flappy", "aaa", t0 + timedelta(minutes=20 * i))
        _alert(lake, "resolved", "Flappy", "aaa", t0 + timedelta(minutes=20 * i + 5))
    _alert(lake, "firing", "HighLatency", "bbb", t0)
    _alert(lake, "resolved", "HighLatency", "bbb", t0 + timedelta(minutes=10))
    _alert(lake, "firing", "StillFiring", "ccc", NOW - timedelta(minutes=30))
    state_path = str(root / "state.duckdb")
    AckStore(State(state_path)).ack("bbb", "oncall", at=t0 + timedelta(minutes=2))
    registry = ModelRegistry(State(state_path), root / "models")
    v1 = registry.register("cpu", SeasonalNaive(), train_start=None, train_end=None, score=0.12)
    registry.promote_if_better("cpu", v1.version, challenger_score=0.12, champion_score=None)
    for k, (frm, to) in enumerate([(3, 5), (5, 4)]):
        payload = {"target": "api", "from": frm, "to": to, "mode": "dry-run", "emergency": False, "reason": "load"}
        lake.write_events([Event("scaling.triggered", "cortex.scaling.api", payload, ts=t0 + timedelta(hours=k))])
    cpu = lake.series('host_cpu_utilization_ratio{host="web-1"}')
    sid, labels = cpu.get_column("series_id")[0], cpu.get_column("labels")[0]
    issued = NOW - timedelta(hours=2)
    steps = _forecast_times()
    fc = pl.DataFrame(
        {
            "series_id": [sid] * len(steps),
            "metric": ["host_cpu_utilization_ratio"] * len(steps),
            "labels": [labels] * len(steps),
            "issued_at": [issued] * len(steps),
            "ts": steps,
            "step": list(range(1, len(steps) + 1)),
            "p10": [0.2] * len(steps),
            "p50": [0.4] * len(steps),
            "p90": [0.6] * len(steps),
            "p99": [0.7] * len(steps),
            "model": ["seasonal_naive"] * len(steps),
            "version": ["1"] * len(steps),
        }
    ).with_columns(pl.col("issued_at", "ts").dt.cast_time_unit("ms"))
    lake.write_rows(S.FORECASTS, fc)
    return lake, state_path


def _forecast_times() -> list[datetime]:
    """Target times of the planted forecast: every 15 minutes for 4 h from 2 h ago."""
    return [NOW - timedelta(hours=2) + timedelta(minutes=15 * k) for k in range(1, 17)]


def _window() -> tuple[datetime, datetime]:
    return NOW - timedelta(days=2), NOW + timedelta(minutes=1)


def test_latency_percentiles_match_the_raw_samples(planted: tuple[Lake, str]) -> None:
    lake, _ = planted
    start, end = _window()
    lat = A.latency_percentiles(lake, start, end)
    assert sorted(lat.get_column("host").to_list()) == ["web-1", "web-2", "web-3", "worker-1"]
    raw = lake.raw('http_request_duration_seconds_p95{host="web-1"}', start, end).get_column("value")
    row = lat.filter(pl.col("host") == "web-1").row(0, named=True)
    for q in (0.5, 0.95, 0.99):
        assert row[f"p{round(q * 100)}"] == pytest.approx(raw.quantile(q, "linear"), rel=1e-6)
    assert row["p50"] <= row["p95"] <= row["p99"]
    # web-1 carries the planted 8x latency spike: its p99 is the worst
    assert lat.get_column("host")[0] == "web-1"


def test_headroom_and_top_consumers(planted: tuple[Lake, str]) -> None:
    lake, _ = planted
    start, end = _window()
    room = A.headroom(lake, start, end)
    cpu = room.filter(pl.col("resource") == "cpu")
    assert cpu.height == 4
    for r in cpu.iter_rows(named=True):
        assert r["headroom"] == pytest.approx(1 - r["p95"])
        assert 0 < r["avg"] <= r["p95"] <= 1
    mem = room.filter(pl.col("resource") == "memory")
    # the demo has used bytes but no total: GiB with unknown headroom, never a made-up ratio
    assert mem.height == 4 and set(mem.get_column("unit")) == {"GiB"} and mem.get_column("headroom").null_count() == 4
    assert 0 < mem.get_column("p95").max() < 16  # type: ignore[operator]
    top = A.top_consumers(lake, start, end, k=2)
    rps = top.filter(pl.col("resource") == "requests/s")
    assert rps.height == 2 and 'host="web-1"' in rps.get_column("series")[0]  # highest peak RPS host
    assert rps.get_column("avg").is_sorted(descending=True)


def test_alert_review_counts_flapping_mttr_and_mtta(planted: tuple[Lake, str]) -> None:
    lake, state_path = planted
    events = A.alert_events(lake, *_window())
    assert events.height == 9
    durations = A.alert_durations(events)
    assert durations.filter(pl.col("alertname") == "Flappy").get_column("duration_s").to_list() == [300.0] * 3
    still = durations.filter(pl.col("alertname") == "StillFiring").row(0, named=True)
    assert still["resolved"] is None and still["duration_s"] is None
    review = A.alert_review(events, A.acks_from_state(state_path))
    by = {r["alertname"]: r for r in review.iter_rows(named=True)}
    assert review.get_column("alertname")[0] == "Flappy"  # noisiest first
    assert by["Flappy"]["firings"] == 3 and by["Flappy"]["flapping"] is True and by["Flappy"]["alerts"] == 1
    assert by["HighLatency"]["mttr_s"] == 600.0 and by["HighLatency"]["mtta_s"] == 120.0
    assert by["HighLatency"]["flapping"] is False and by["Flappy"]["mtta_s"] is None
    assert by["StillFiring"]["mttr_s"] is None
    assert A.acks_from_state(None) == {} and A.acks_from_state(str(Path(state_path).with_name("nope.duckdb"))) == {}


def test_scaling_decisions_and_forecast_band(planted: tuple[Lake, str]) -> None:
    lake, _ = planted
    start, end = _window()
    sc = A.scaling_decisions(lake, start, end)
    assert sc.select("target", "from", "to").rows() == [("api", 3, 5), ("api", 5, 4)]
    ts = A.series_with_forecast(lake, 'host_cpu_utilization_ratio{host="web-1"}', start, end)
    band = ts.filter(pl.col("p50").is_not_null())
    assert band.height == 16 and set(band.get_column("p10")) == {0.2} and set(band.get_column("p90")) == {0.6}
    assert band.get_column("ts").max() > NOW  # type: ignore[operator]  # the band runs past the last actual value
    assert ts.filter(pl.col("value").is_not_null()).height >= 24 * 4  # 15-minute actuals over the day


def test_key_numbers(planted: tuple[Lake, str]) -> None:
    lake, state_path = planted
    perf = A.key_numbers("performance_report", lake, *_window())
    assert perf["hosts"] == 4 and perf["alert firings"] == 5 and perf["scaling decisions"] == 2
    assert 0 < perf["min CPU headroom"] < 1
    review = A.key_numbers("alert_review", lake, *_window(), state_path)
    assert review["noisiest rule"] == "Flappy" and review["flapping rules"] == 1
    assert review["MTTR (min)"] == pytest.approx((300 * 3 + 600) / 4 / 60, abs=0.05)


def test_bad_requests_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(R.ReportError, match="notebook: unknown report 'nope'"):
        R.notebook_path("nope")
    with pytest.raises(R.ReportError, match="since"):
        A.report_window("soon")
    with pytest.raises(R.ReportError, match="until"):
        A.report_window("1d", "later")
    with pytest.raises(R.ReportError, match="not before"):
        A.report_window("1h", "2h")
    lake = Lake(str(tmp_path / "lake"))
    start, end = _window()
    assert A.latency_percentiles(lake, start, end).height == 0
    assert A.alert_review(A.alert_events(lake, start, end)).height == 0
    assert A.key_numbers("performance_report", lake, start, end)["hosts"] == 0


def test_the_kernel_runs_this_interpreter() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    name = R.ensure_kernel()
    argv0 = KernelSpecManager().get_kernel_spec(name).argv[0]
    assert argv0.startswith("python") or Path(argv0).resolve() == Path(__import__("sys").executable).resolve()


def _sections(html: str) -> list[str]:
    return re.findall(r"<h2[^>]*>([^<]+)", html)


def _offline(html: str) -> bool:
    return not re.search(r"<(?:script|link)[^>]+(?:src|href)=\"https?://", html)


def _readable_tables(html: str) -> None:
    """The report's tables are HTML tables of values, not polars' text repr: no ``shape:`` line, no
    dtype row, no quoted strings, no ``null``."""
    assert "shape: (" not in html
    assert not re.search(
        r"<t[dh][^>]*>\s*(?:str|f64|i64|u32|i32|bool|datetime\[[^<]*|duration\[[^<]*)\s*</t[dh]>", html
    )
    assert not re.search(r"<td[^>]*>\s*&quot;[^<]*&quot;\s*</td>", html)  # polars quotes whole strings
    assert not re.search(r"<td[^>]*>\s*null\s*</td>", html)
    for cell in re.findall(r"<td[^>]*>\s*-?(\d+\.\d+)\s*</td>", html):  # 4 significant digits at most
        assert len(cell.replace(".", "").lstrip("0")) <= 4, cell


def test_performance_report_notebook_end_to_end(planted: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = planted
    res = R.run_report(
        "performance_report", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path, now=NOW
    )
    html = Path(res.html).read_text()
    assert Path(res.html).name == f"performance_report-{NOW:%Y-%m-%d}.html"
    assert _sections(html) == [
        "Summary",
        "Findings",
        "Latency p50 / p95 / p99 per host",
        "CPU and memory headroom",
        "Top consumers",
        "Anomalies",
        "Alerts fired",
        "Scaling decisions",
    ]
    assert res.images >= 4 and html.count("<img") == res.images  # latency, headroom, CPU+band, scaling
    assert "data:image/png;base64," in html and _offline(html)
    assert "def show" not in html and "A.latency_percentiles" not in html  # inputs hidden
    assert "Flappy" in html and "web-1" in html and "no data" not in html.lower()
    _readable_tables(html)


def test_alert_review_notebook_end_to_end(planted: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = planted
    res = R.run_report("alert_review", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path)
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "Alert volume per rule",
        "Durations (firing → resolved)",
        "MTTA / MTTR",
        "Noisiest and flapping rules",
    ]
    assert res.images >= 2 and _offline(html)
    assert "HighLatency" in html and re.search(r"<td[^>]*>120</td>", html)  # its MTTA in seconds
    _readable_tables(html)
    nb = json.loads(Path(res.html).with_suffix(".ipynb").read_text())
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])


@pytest.mark.parametrize("name", sorted(R.NOTEBOOKS))
def test_notebooks_on_an_empty_lake_say_so(name: str, tmp_path: Path) -> None:
    res = R.run_report(name, lake_root=str(tmp_path / "lake"), out_dir=tmp_path / "out", since="1d")
    html = Path(res.html).read_text()
    assert "Summary" in _sections(html) and res.images == 0
    assert re.search(r"There (is no data|are no alert events|are no forecasts.*) in the lake for this window", html)


def test_notebooks_in_git_have_no_outputs() -> None:
    for name in R.NOTEBOOKS:
        nb = json.loads(R.notebook_path(name).read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), name
        assert "parameters" in code[0]["metadata"]["tags"], name


def test_mail_reports_attaches_the_html_through_local_smtp(smtp: tuple[Mailbox, int], tmp_path: Path) -> None:
    box, port = smtp
    html = tmp_path / "alert_review-2026-01-02.html"
    html.write_text("<html><body><h2>Summary</h2><img src='data:image/png;base64,AAAA'></body></html>")
    res = R.ReportResult("alert_review", str(html), "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00",
                         1.0, html.stat().st_size, 1, {"alert firings": 7, "MTTR (min)": None})  # fmt: skip
    url = f"mailto://127.0.0.1:{port}?from=reports@example.com&to=team@example.com"
    t0 = time.monotonic()
    assert R.mail_reports(url, [res]) == 1
    assert time.monotonic() - t0 < 5  # no 5.5 s Apprise throttle
    ((_, _, msg),) = box.messages
    assert "alert_review" in msg["Subject"] and "team@example.com" in msg["To"]
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert list(parts) == [html.name]
    assert parts[html.name].get_payload(decode=True) == html.read_bytes()
    body = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "alert firings: 7" in body and "MTTR (min): —" in body
    box.refuse = True
    with pytest.raises(R.ReportError, match="email_to: sending to .* failed"):
        R.mail_reports(url, [res])
    with pytest.raises(R.ReportError, match="email_to: cannot load"):
        R.mail_reports("nosuchscheme://x", [res])
    with pytest.raises(R.ReportError, match="email_to: no reports"):
        R.mail_reports(url, [])


def test_capacity_outlook_and_hourly_profile(planted: tuple[Lake, str]) -> None:
    lake, _ = planted
    start, end = NOW - timedelta(days=2), NOW
    out = A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0.5, start, end)
    assert out.height == 4
    web1 = out.row(0, named=True)  # the only series with a forecast, and its p90 (0.6) crosses 0.5
    assert 'host="web-1"' in web1["series"] and web1["runs_out_p50"] is None
    assert web1["runs_out_p90"] == min(t for t in _forecast_times() if t >= end)
    assert web1["forecast_p90_max"] == 0.6 and web1["headroom"] == pytest.approx(0.5 - web1["p95"])
    assert out.get_column("runs_out_p90").null_count() == 3
    assert A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0.65, start, end).get_column(
        "runs_out_p90"
    ).null_count() == 4  # fmt: skip
    with pytest.raises(R.ReportError, match="capacity: must be positive"):
        A.capacity_outlook(lake, "host_cpu_utilization_ratio", 0, start, end)
    prof = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end)
    assert prof.get_column("host").to_list() == ["web-1", "web-2", "web-3", "worker-1"] and prof.width == 25
    # the demo's daily curve: busier at 15:00 UTC than at 03:00 on every host
    assert all(a > b for a, b in zip(prof["15"], prof["3"], strict=True))


def test_top_keeps_the_busiest_series_for_the_plots(planted: tuple[Lake, str]) -> None:
    lake, _ = planted
    start, end = _window()
    full = A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end)
    peaks = full.group_by("series").agg(pl.col("value").max()).sort("value", descending=True)
    two = A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end, top=2)
    assert set(two.get_column("series")) == set(peaks.head(2).get_column("series"))
    # the kept series keep every row they had in the full frame, forecast band included (values
    # compared approximately: DuckDB sums in parallel, so two reads can differ in the last bit)
    same = full.filter(pl.col("series").is_in(two.get_column("series").unique().to_list()))
    assert two.select("series", "ts").equals(same.select("series", "ts"))
    for col in ("value", "p10", "p50", "p90"):
        assert two.get_column(col).fill_null(-1.0).to_list() == pytest.approx(
            same.get_column(col).fill_null(-1.0).to_list(), rel=1e-12
        ), col
    web1 = A.series_with_forecast(lake, 'host_cpu_utilization_ratio{host="web-1"}', start, end, top=5)
    assert web1.filter(pl.col("p50").is_not_null()).height == 16  # a kept series keeps its forecast band
    prof = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end)
    means = prof.select("host", pl.mean_horizontal(pl.exclude("host")).alias("m")).sort("m", descending=True)
    top2 = A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, top=2)
    assert top2.get_column("host").to_list() == sorted(means.head(2).get_column("host").to_list())
    assert top2.width == 25
    for bad in (0, -1):
        with pytest.raises(R.ReportError, match="top"):
            A.series_with_forecast(lake, "host_cpu_utilization_ratio", start, end, top=bad)
        with pytest.raises(R.ReportError, match="top"):
            A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, top=bad)
    with pytest.raises(R.ReportError, match="by"):
        A.hourly_profile(lake, "host_cpu_utilization_ratio", start, end, by="host.name")


def test_anomaly_summary_counts_the_scores_above_the_threshold(planted: tuple[Lake, str], tmp_path: Path) -> None:
    lake, _ = planted
    start, end = _window()
    assert A.anomaly_summary(lake, start, end).height == 0  # the planted lake has no scores yet
    own = Lake(str(tmp_path / "lake"))
    seed_demo(own, now=NOW, days=1)
    cpu = own.series('host_cpu_utilization_ratio{host="web-2"}')
    sid, labels = cpu.get_column("series_id")[0], cpu.get_column("labels")[0]
    times = [NOW - timedelta(hours=3) + timedelta(minutes=i) for i in range(6)]
    scores = [0.1, 0.85, 0.9, 0.2, 0.99, 0.5]
    own.write_rows(
        S.ANOMALIES,
        pl.DataFrame(
            {
                "series_id": [sid] * 6,
                "metric": ["host_cpu_utilization_ratio"] * 6,
                "labels": [labels] * 6,
                "ts": times,
                "score": scores,
                "value": [0.9] * 6,
                "expected": [0.5] * 6,
                "detector": ["ewma"] * 6,
                "reason": ["high"] * 6,
            }
        ).with_columns(pl.col("ts").dt.cast_time_unit("ms")),
    )
    (row,) = A.anomaly_summary(own, start, end).rows(named=True)
    assert row["series"] == 'host_cpu_utilization_ratio{host="web-2",source="demo"}'
    assert row["anomalous_points"] == 3 and row["max_score"] == 0.99
    assert (row["first"], row["last"], row["peak"]) == (times[1], times[4], times[4])
    assert A.anomaly_summary(own, start, end, threshold=0.95).get_column("anomalous_points").to_list() == [1]
    assert A.anomaly_summary(own, start, end, selector="host_load1").height == 0


def test_capacity_planning_notebook_end_to_end(planted: tuple[Lake, str], tmp_path: Path) -> None:
    lake, _ = planted
    res = R.run_report("capacity_planning", lake_root=lake.root, out_dir=tmp_path, since="2d",
                       parameters={"capacity": 0.5})  # fmt: skip
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "When each series runs out",
        "Forecasts against capacity",
        "When the load comes (hour of day, UTC)",
        "What scaling did",
    ]
    assert res.images == 3 and _offline(html)  # forecast band, heatmap, scaling steps
    assert "against capacity <strong>0.5</strong>" in html  # the injected parameter, not the default 0.9
    _readable_tables(html)


def test_forecast_errors_against_the_actuals(planted: tuple[Lake, str]) -> None:
    lake, state_path = planted
    start, end = _window()
    sel = 'host_cpu_utilization_ratio{host="web-1"}'
    errs = A.forecast_errors(lake, sel, start, end)
    assert errs.height == 1
    row = errs.row(0, named=True)
    # independently: the 5-minute average actual at each past target time vs the planted p50 = 0.4
    actual = lake.query(sel, start - timedelta(minutes=5), end, step=timedelta(minutes=5), agg="avg")
    by_ts = dict(zip(actual.get_column("ts").to_list(), actual.get_column("value").to_list(), strict=True))
    vals = [by_ts[t - timedelta(minutes=t.minute % 5)] for t in _forecast_times() if t < end]
    assert row["model"] == "seasonal_naive" and row["points"] == len(vals) == 8
    assert row["mae"] == pytest.approx(sum(abs(0.4 - v) for v in vals) / len(vals))
    assert row["bias"] == pytest.approx(sum(0.4 - v for v in vals) / len(vals))
    assert row["coverage_80"] == pytest.approx(sum(0.2 <= v <= 0.6 for v in vals) / len(vals))
    assert row["mape_pct"] == pytest.approx(100 * sum(abs(0.4 - v) / v for v in vals) / len(vals))
    assert A.forecast_errors(lake, 'gpu_utilization_ratio{gpu="0"}', start, end).height == 0  # no forecasts
    hist = A.model_history(state_path)
    assert hist.select("name", "version", "status", "score").rows() == [("cpu", "v1", "champion", 0.12)]
    assert A.model_history(None).height == 0


def test_forecast_accuracy_notebook_end_to_end(planted: tuple[Lake, str], tmp_path: Path) -> None:
    lake, state_path = planted
    res = R.run_report("forecast_accuracy", lake_root=lake.root, out_dir=tmp_path, since="2d", state_path=state_path)
    html = Path(res.html).read_text()
    assert _sections(html) == [
        "Summary",
        "Errors per model and series",
        "Interval coverage (p10–p90, ideal 0.8)",
        "Champion history",
    ]
    assert res.images == 2 and _offline(html) and "seasonal_naive" in html and "champion" in html
    _readable_tables(html)


def test_show_table_renders_rounded_escaped_html() -> None:
    """The one display helper the notebooks use: a real HTML table, numbers rounded to 4 significant
    digits, empty cells for null, user text escaped, and a row limit that says what it left out."""
    df = pl.DataFrame(
        {
            "series": ['cpu{host="<b>web-1</b>"}', None, "x"],
            "p95": [0.123456789, 12345.678, None],
            "count": [3, None, 1_000_000],
            "flapping": [True, False, None],
            "at": [datetime(2026, 1, 2, 3, 4, tzinfo=UTC), None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)],
        }
    )
    html = R.table_html(df)
    assert html.startswith("<table") and "<b>web-1</b>" not in html and "&lt;b&gt;web-1&lt;/b&gt;" in html
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells[:5] == ["cpu{host=&quot;&lt;b&gt;web-1&lt;/b&gt;&quot;}", "0.1235", "3", "yes", "2026-01-02 03:04"]
    assert cells[5:10] == ["", "12,346", "", "no", ""]
    assert cells[10:] == ["x", "", "1,000,000", "", "2026-01-02 03:04:05"]
    assert "shape" not in html and "str" not in re.sub(r"<td.*", "", html)  # no dtype row in the header
    _readable_tables(html)
    big = pl.DataFrame({"i": list(range(100))})
    cut = R.table_html(big, max_rows=10)
    assert cut.count("<tr>") == 1 + 10 and "90 more rows not shown" in cut


def test_the_kernel_warns_nothing_about_unencrypted_tcp(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The report kernel talks over local IPC sockets, so ipykernel's "running over TCP without
    encryption" warning never reaches the report's stderr (it did on every report)."""
    res = R.run_report("alert_review", lake_root=str(tmp_path / "lake"), out_dir=tmp_path / "out", since="1d")
    out, err = capfd.readouterr()
    assert "without encryption" not in err + out
    assert "without encryption" not in Path(res.html).read_text()
    assert not list(Path.cwd().glob("kernel-*ipc*"))  # no socket files left in the working directory


def _outputs_text(nb: object) -> str:
    """Everything the executed notebook displayed (text, markdown, HTML tables), as one string."""
    parts: list[str] = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["cortex-perf.yaml", "pyproject.toml"])
def test_notebook_opened_in_jupyter_reads_the_projects_lake(
    marker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jupyter starts the kernel in the notebook's folder (notebooks/) and hands it no lake settings:
    the default `data/lake` must still mean <project>/data/lake, the project being the config file's
    folder or, without one, the repository root — not notebooks/data/lake (an empty report)."""
    import nbformat
    from nbclient import NotebookClient

    for key in list(__import__("os").environ):
        if key.startswith("CORTEX_PERF_"):
            monkeypatch.delenv(key)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / marker).write_text("lake:\n  root: data/lake\n" if marker == "cortex-perf.yaml" else "[project]\n")
    seed_demo(Lake(str(project / "data" / "lake")), now=NOW, days=1)

    nb = nbformat.read(R.notebook_path("performance_report"), as_version=4)
    client = NotebookClient(
        nb, kernel_name=R.ensure_kernel(), timeout=300, resources={"metadata": {"path": str(project / "notebooks")}}
    )
    client.execute()
    shown = _outputs_text(nb)
    assert "There is no data in the lake" not in shown
    assert str(project / "data" / "lake") in shown and "web-1" in shown
    assert not (project / "notebooks" / "data").exists()


@pytest.mark.slow
def test_relative_lake_root_means_the_callers_directory_not_the_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel runs in the checkout (so `import tasks` works); a relative lake root handed to it
    is the caller's (`cortex-perf run --demo` in a fresh project directory), not the checkout's."""
    monkeypatch.chdir(tmp_path)
    seed_demo(Lake(str(tmp_path / "data" / "lake")), now=NOW, days=1)
    res = R.run_report("performance_report", lake_root="data/lake", out_dir=tmp_path / "out", since="2d", now=NOW)
    html = Path(res.html).read_text()
    assert "no data in the lake" not in html and str(tmp_path / "data" / "lake") in html
