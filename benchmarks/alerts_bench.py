"""Alert rule evaluation benchmark: N rules over N series, one evaluation tick's wall time.

Builds a temporary lake of ``--series`` series (100 metrics x series/100 instances; 30 % counters
with resets, the rest gauges; each series scraped every 15-60 s with jitter over the last hour),
generates ``--rules`` realistic rules (instant thresholds, ``avg_over_time``, ``rate``,
``sum by (job) (rate(...))``, ``quantile_over_time(0.9, ...)``, regex matchers, ``absent()``) and
times ``evaluate_many`` (``tasks.alerting.rules.sqlcompile``): the first (cold) tick, then the median of
``--ticks`` ticks one minute apart. A random sample of rules is also evaluated by the reference
evaluator at the same time: the agreement count and the speed ratio are reported.

    uv run python benchmarks/alerts_bench.py              # 10,000 rules x 10,000 series
    uv run python benchmarks/alerts_bench.py --quick      # smoke: 300 x 300, a few seconds
    options: --rules N --series N --ticks N --sample N --dir PARENT --json
             --promtool-cases N   also run the promtool differential test with N random cases
                                  (tests/tasks/alerting/rules/test_promtool_differential.py: the same oracle,
                                  Prometheus 2.42's promtool) and report its agreement count

``--tick``: instead, the cost of a whole alert tick (``tasks.alerting.service.run_alerts``: rules →
state DB → silences, acks, dispatcher → outbox → Apprise to a local webhook) on the demo rules
(``data/examples/alerting/demo-rules.yml``) and notification config (``alerting.yml``) over
``--hosts`` hosts (a few hundred alerts): wall time and state-DB transactions per tick, for the
first ticks (alerts go pending, firing, notifications go out) and the quiet ones after.

    uv run python benchmarks/alerts_bench.py --tick            # 300 hosts, 15 ticks
    uv run python benchmarks/alerts_bench.py --tick --quick    # 40 hosts, 10 ticks

``--json``: the last output line is one JSON object (keys ``rules``, ``series``, ``tick_s``,
``rules_per_s``, ``peak_rss_mb``, and the other figures; ``promtool_agreement`` and
``promtool_cases`` with ``--promtool-cases``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `tasks` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.alerting.rules.evaluate import evaluate  # noqa: E402
from tasks.alerting.rules.promql import parse  # noqa: E402
from tasks.alerting.rules.sqlcompile import SQLEngine  # noqa: E402
from tasks.lake import Lake  # noqa: E402

TARGET_TICK_S = 1.0
TARGET_RSS_MB = 1024.0
N_METRICS = 100
N_JOBS = 10


def _instances(n: int) -> list[str]:
    return [f"i-{i:03d}" for i in range(n)]


def _metric_names(n: int) -> list[str]:
    """30 % counters (``*_total``), the rest gauges."""
    return [f"svc_requests_{i:02d}_total" if i % 10 < 3 else f"node_gauge_{i:02d}" for i in range(n)]


def build_lake(lake: Lake, n_series: int, end: datetime, seed: int, console: Console) -> dict[str, Any]:
    """One batch per metric: every instance of it scraped every 15-60 s (jitter) for the last hour."""
    rng = np.random.default_rng(seed)
    n_metrics = min(N_METRICS, n_series)
    per_metric = max(1, n_series // n_metrics)
    metrics = _metric_names(n_metrics)
    insts = _instances(per_metric)
    end_ms = int(end.timestamp() * 1000)
    written = 0
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as prog:
        task = prog.add_task("building lake", total=n_metrics)
        for metric in metrics:
            counter = metric.endswith("_total")
            labels, ts_all, vals = [], [], []
            for j, inst in enumerate(insts):
                step = int(rng.choice([15, 30, 45, 60])) * 1000
                n = 3_600_000 // step
                ts = end_ms - 3_600_000 + np.arange(n, dtype=np.int64) * step + rng.integers(0, 1000, n)
                ts = ts[ts <= end_ms]
                if counter:
                    inc = rng.exponential(5.0, len(ts))
                    v = np.cumsum(inc)
                    for r in np.flatnonzero(rng.random(len(ts)) < 0.01):  # counter resets
                        v[r:] -= v[r]
                else:
                    v = rng.normal(50.0, 15.0, len(ts)).clip(0, 100)
                lab = {"instance": inst, "job": f"job-{j % N_JOBS}"}
                if j % 4 == 0:
                    lab["zone"] = f"z{j % 3}"
                labels += [json.dumps(lab, separators=(",", ":"), sort_keys=True)] * len(ts)
                ts_all.append(ts)
                vals.append(v)
            ts_cat = np.concatenate(ts_all)
            frame = pl.DataFrame(
                {
                    "metric": [metric] * len(ts_cat),
                    "labels": labels,
                    "ts": pl.Series(ts_cat).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
                    "value": np.concatenate(vals),
                }
            )
            lake.write_samples(frame, now=end)
            written += frame.height
            prog.advance(task)
    return {"samples": written, "build_s": time.perf_counter() - t0, "metrics": metrics, "instances": insts}


def make_rules(n: int, metrics: list[str], insts: list[str], seed: int) -> list[str]:
    """A realistic mix; thresholds drawn so that a share of the rules fire."""
    rng = random.Random(seed)
    gauges = [m for m in metrics if not m.endswith("_total")]
    counters = [m for m in metrics if m.endswith("_total")] or gauges
    rules: list[str] = []
    for _ in range(n):
        g, c, i = rng.choice(gauges), rng.choice(counters), rng.choice(insts)
        th = round(rng.uniform(40, 95), 1)
        k = rng.random()
        if k < 0.28:
            rules.append(f'{g}{{instance="{i}"}} > {th}')
        elif k < 0.48:
            rules.append(f'avg_over_time({g}{{instance="{i}"}}[5m]) > {th - 25}')
        elif k < 0.63:
            rules.append(f'rate({c}{{instance="{i}"}}[5m]) > {round(rng.uniform(0.05, 0.3), 3)}')
        elif k < 0.71:
            rules.append(f"sum by (job) (rate({c}[5m])) > {round(rng.uniform(1, 3), 2)}")
        elif k < 0.81:
            rules.append(f'quantile_over_time(0.9, {g}{{instance="{i}"}}[10m]) > {th}')
        elif k < 0.88:
            rules.append(f'{g}{{instance=~"{i[:-1]}.*", job!~"job-[0-2]"}} > {th}')
        elif k < 0.93:
            rules.append(f'max by (instance) ({g}{{job=~"job-{rng.randint(0, 9)}|job-{rng.randint(0, 9)}"}}) > {th}')
        else:
            missing = rng.random() < 0.3
            rules.append(f'absent({g}{{instance="{i + "-gone" if missing else i}"}})')
    return rules


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and (math.isclose(a, b, rel_tol=1e-9) or a == b)
    if len(a) != len(b):
        return False
    for (la, va), (lb, vb) in zip(a, b, strict=True):
        if la != lb or not (math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(va) and math.isnan(vb))):
            return False
    return True


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    with tempfile.TemporaryDirectory(prefix="alerts_bench_", dir=args.dir) as tmp:
        lake = Lake(str(Path(tmp) / "lake"))
        built = build_lake(lake, args.series, end, args.seed, console)
        rules = make_rules(args.rules, built["metrics"], built["instances"], args.seed)
        exprs = [parse(r) for r in rules]
        series = lake.catalogue().height

        engine = SQLEngine(lake)
        times = [end - timedelta(minutes=args.ticks - k) for k in range(args.ticks)] + [end]
        t0 = time.perf_counter()
        engine.evaluate_many(exprs, times[0])  # cold: compile, catalogue, selector matching
        cold = time.perf_counter() - t0
        tick_s: list[float] = []
        results: list[Any] = []
        with Progress(TextColumn("[bold]ticks"), BarColumn(), MofNCompleteColumn(), console=console) as prog:
            task = prog.add_task("ticks", total=len(times) - 1)
            for t in times[1:]:
                t1 = time.perf_counter()
                results = engine.evaluate_many(exprs, t)
                tick_s.append(time.perf_counter() - t1)
                prog.advance(task)
        stats = engine.last_stats
        tick = statistics.median(tick_s)

        sample = random.Random(args.seed + 1).sample(range(len(exprs)), min(args.sample, len(exprs)))
        agree = 0
        ref_s = 0.0
        with Progress(TextColumn("[bold]reference sample"), BarColumn(), MofNCompleteColumn(), console=console) as prog:
            task = prog.add_task("reference", total=len(sample))
            for i in sample:
                t1 = time.perf_counter()
                try:
                    want: Any = evaluate(exprs[i], lake, end)
                except Exception as e:  # the engine must give the same error
                    want = e
                ref_s += time.perf_counter() - t1
                agree += _same(results[i], want)
                prog.advance(task)
        firing = sum(1 for r in results if isinstance(r, list) and r)
        ref_per_rule = ref_s / max(1, len(sample))
        eng_per_rule = tick / max(1, len(exprs))
        return {
            "rules": len(exprs),
            "series": series,
            "tick_s": round(tick, 4),
            "rules_per_s": round(len(exprs) / tick, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "tick_min_s": round(min(tick_s), 4),
            "cold_tick_s": round(cold, 4),
            "ticks": len(tick_s),
            "shapes": stats.shapes,
            "sql_queries": stats.queries,
            "fallbacks": stats.fallbacks,
            "reference_rechecks": stats.reference_rechecks,
            "window_series": stats.series,
            "window_samples": stats.samples,
            "rules_with_results": firing,
            "agreement": agree,
            "agreement_sample": len(sample),
            "reference_s_per_rule": round(ref_per_rule, 6),
            "speedup_vs_reference": round(ref_per_rule / eng_per_rule, 1) if eng_per_rule else None,
            "lake_samples": built["samples"],
            "build_s": round(built["build_s"], 2),
            "phase_s": {k: round(v, 4) for k, v in stats.seconds.items()},
        }


# ---- --tick: one whole run_alerts tick -------------------------------------------------------------

#: A Wednesday, 11:00 in Berlin: inside alerting.yml's business-hours interval, so every route sends.
TICK_START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
EXAMPLES = ROOT / "data" / "examples" / "alerting"


class _Webhook:
    """A local HTTP endpoint for Apprise's ``json://`` that answers 200 and counts posts."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.posts = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build_tick_lake(lake: Lake, hosts: int, minutes: int) -> int:
    """The demo rules' metrics for ``hosts`` hosts, one sample a minute from 30 min before
    ``TICK_START`` to ``minutes`` after: 40 % of hosts CPU-saturated, half slow, a fifth with an idle
    GPU, one failing source. Hosts carry the labels alerting.yml routes on (cluster, team, service)."""
    from tasks.lake import Sample

    samples = []
    times = [TICK_START + timedelta(minutes=m) for m in range(-30, minutes + 1)]
    for h in range(hosts):
        labels = {
            "host": f"h-{h:03d}",
            "cluster": f"c{h % 4}",
            "team": "db" if h % 5 == 0 else "app",
            "env": "prod",
            "service": "web" if h % 3 == 0 else "batch",
        }
        cpu = 0.97 if h % 5 < 2 else 0.5
        p95 = 1.5 if h % 2 == 0 else 0.3
        gpu = 0.01 if h % 5 == 4 else 0.6
        for t in times:
            samples.append(Sample("host_cpu_utilization_ratio", cpu, t, labels))
            samples.append(Sample("http_request_duration_seconds_p95", p95, t, labels))
            samples.append(Sample("gpu_utilization_ratio", gpu, t, {**labels, "gpu": "0"}))
    for i, src in enumerate(["host", "nvml", "redis", "prometheus"]):
        samples += [Sample("cortex_perf_source_up", 0.0 if i == 2 else 1.0, t, {"source": src}) for t in times]
    samples += [Sample("cortex_perf_scaling_emergency", 0.0, t, {"target": "web"}) for t in times]
    res = lake.write_samples(samples)
    return int(res.accepted)


def run_tick(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """``run_alerts`` ticks one minute apart over the demo config; transactions and wall time per tick."""
    from tasks.alerting.service import run_alerts
    from tasks.config import load_settings
    from tasks.state import observe_transactions

    hook = _Webhook()
    try:
        with tempfile.TemporaryDirectory(prefix="alerts_tick_", dir=args.dir) as tmp:
            d = Path(tmp)
            lake = Lake(str(d / "lake"))
            n_samples = build_tick_lake(lake, args.hosts, args.ticks)
            url = f"json://127.0.0.1:{hook.port}"
            # the example config, its receivers pointed at the local webhook (mail included)
            notify = (EXAMPLES / "alerting.yml").read_text().replace("json://127.0.0.1:8080", url)
            mail = "mailto://127.0.0.1:2525?from=cortex@example.org&to=oncall@example.org"
            notify = notify.replace(mail, url + "/pager")
            (d / "alerting.yml").write_text(notify)
            (d / "apprise.yml").write_text((EXAMPLES / "apprise.yml").read_text().replace("json://127.0.0.1:8080", url))
            settings = load_settings(
                None,
                [
                    f"lake.root={d / 'lake'}",
                    f"state.path={d / 'state.duckdb'}",
                    f'alerting.rule_files=["{EXAMPLES / "demo-rules.yml"}"]',
                    f"alerting.notify_config={d / 'alerting.yml'}",
                ],
            )
            rows: list[dict[str, Any]] = []
            for k in range(args.ticks):
                now = TICK_START + timedelta(minutes=k)
                posts0 = hook.posts
                with observe_transactions() as tx:
                    t0 = time.perf_counter()
                    res = run_alerts(settings, lake, now=now)
                    wall = time.perf_counter() - t0
                rows.append(
                    {
                        "tick": k,
                        "wall_s": round(wall, 4),
                        "transactions": tx.count,
                        "tx_s": round(tx.seconds, 4),
                        "tx_open_s": round(tx.open_s, 4),
                        "tx_close_s": round(tx.close_s, 4),
                        "firing": len(res.firing),
                        "pending": res.pending,
                        "notifications": len(res.notifications),
                        "posts": hook.posts - posts0,
                        "errors": len(res.errors),
                    }
                )
    finally:
        hook.close()
    quiet = [r for r in rows if r["notifications"] == 0 and r["posts"] == 0 and r["tick"] > 0]
    busy = [r for r in rows if r not in quiet]

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(r[key] for r in rs), 4) if rs else float("nan")

    return {
        "mode": "tick",
        "hosts": args.hosts,
        "lake_samples": n_samples,
        "ticks": rows,
        "max_firing": max(r["firing"] for r in rows),
        "quiet_ticks": len(quiet),
        "quiet_tick_s": med(quiet, "wall_s"),
        "quiet_transactions": max((r["transactions"] for r in quiet), default=0),
        "quiet_tx_s": med(quiet, "tx_s"),
        "busy_tick_s": med(busy, "wall_s"),
        "busy_transactions": med(busy, "transactions"),
        "notifications": sum(r["notifications"] for r in rows),
        "posts": sum(r["posts"] for r in rows),
    }


def print_tick(r: dict[str, Any], console: Console) -> None:
    table = Table(title=f"run_alerts ticks: demo rules + alerting.yml over {r['hosts']} hosts")
    for col in ("tick", "wall s", "transactions", "in tx s", "open s", "commit+close s", "firing", "pending",
                "notifications", "posts"):  # fmt: skip
        table.add_column(col, justify="right")
    for x in r["ticks"]:
        table.add_row(
            str(x["tick"]), f"{x['wall_s']:.3f}", str(x["transactions"]), f"{x['tx_s']:.3f}", f"{x['tx_open_s']:.3f}",
            f"{x['tx_close_s']:.3f}", str(x["firing"]), str(x["pending"]), str(x["notifications"]), str(x["posts"]),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"quiet ticks ({r['quiet_ticks']}): median {r['quiet_tick_s']:.3f} s, at most {r['quiet_transactions']} "
        f"transactions ({r['quiet_tx_s']:.3f} s in them); ticks that notify: median {r['busy_tick_s']:.3f} s, "
        f"{r['busy_transactions']} transactions; {r['notifications']} notifications, {r['posts']} posts"
    )


def promtool_agreement(cases: int, seed: int | None = None) -> tuple[int, int, float]:
    """Run the promtool differential test (our SQL engine vs promtool 2.42 on random rules and series)
    with ``cases`` cases; returns (agreeing, cases, seconds). One oracle, kept in one place: the test."""
    import re
    import shutil
    import subprocess
    import time

    if shutil.which("promtool") is None:
        raise SystemExit("--promtool-cases: promtool is not installed (Debian: apt-get install prometheus)")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "ALERT_DIFF_CASES": str(cases)}
    if seed is not None:
        env["ALERT_DIFF_SEED"] = str(seed)
    t0 = time.perf_counter()
    proc = subprocess.run(
        # -n 0: one process (no xdist workers), so the test's printed agreement line reaches this stdout
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-n", "0",
         "tests/tasks/alerting/rules/test_promtool_differential.py", "-k", "agrees"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    m = re.search(r"(\d+)/(\d+) cases agree", proc.stdout)
    if m is None:
        raise SystemExit(
            f"promtool differential test gave no agreement line:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    return int(m.group(1)), int(m.group(2)), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=int, default=None, help="number of rules (default 10000; quick 300)")
    ap.add_argument("--series", type=int, default=None, help="number of series (default 10000; quick 300)")
    ap.add_argument("--ticks", type=int, default=None, help="timed ticks after the cold one (default 5)")
    ap.add_argument("--sample", type=int, default=None, help="rules checked against the reference (default 200)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dir", default=None, help="parent directory of the temporary lake")
    ap.add_argument("--quick", action="store_true", help="small sizes: the CI smoke run")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    ap.add_argument("--tick", action="store_true", help="time whole run_alerts ticks on the demo config instead")
    ap.add_argument("--hosts", type=int, default=None, help="--tick: hosts in the demo lake (default 300; quick 40)")
    ap.add_argument(
        "--promtool-cases", type=int, default=0, help="also check N random cases against promtool (0: skip)"
    )
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    if args.tick:
        args.hosts = args.hosts or (40 if args.quick else 300)
        args.ticks = args.ticks or (10 if args.quick else 15)
        if args.hosts <= 0 or args.ticks <= 0:
            ap.error("--hosts and --ticks must be positive")
        t = run_tick(args, console)
        print_tick(t, console)
        if args.json:
            print(json.dumps(t))
        return 0
    args.rules = args.rules or (300 if args.quick else 10_000)
    args.series = args.series or (300 if args.quick else 10_000)
    args.ticks = args.ticks or (3 if args.quick else 5)
    args.sample = args.sample if args.sample is not None else (40 if args.quick else 200)
    for name in ("rules", "series", "ticks"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive")
    r = run(args, console)
    if args.promtool_cases > 0:
        with console.status(f"promtool differential test, {args.promtool_cases} cases"):
            agree, n, secs = promtool_agreement(args.promtool_cases)
        r["promtool_agreement"], r["promtool_cases"], r["promtool_s"] = agree, n, round(secs, 1)

    table = Table(title=f"Alert rule evaluation: {r['rules']} rules over {r['series']} series")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    ok = "[green]ok[/]"
    bad = "[red]missed[/]"
    table.add_row(
        "tick (median)", f"{r['tick_s']:.3f} s", f"≤ {TARGET_TICK_S} s {ok if r['tick_s'] <= TARGET_TICK_S else bad}"
    )
    table.add_row("rules/s", f"{r['rules_per_s']:,.0f}", "")
    table.add_row("tick (fastest)", f"{r['tick_min_s']:.3f} s", "")
    table.add_row("cold tick (first)", f"{r['cold_tick_s']:.3f} s", "")
    table.add_row(
        "peak RSS",
        f"{r['peak_rss_mb']:.0f} MB",
        f"≤ {TARGET_RSS_MB:.0f} MB {ok if r['peak_rss_mb'] <= TARGET_RSS_MB else bad}",
    )
    table.add_row("SQL queries per tick", str(r["sql_queries"]), f"{r['shapes']} shapes + 1 window read")
    table.add_row("fallbacks to the reference", str(r["fallbacks"]), "0")
    table.add_row(
        "agreement with the reference",
        f"{r['agreement']}/{r['agreement_sample']}",
        f"all {ok if r['agreement'] == r['agreement_sample'] else bad}",
    )
    table.add_row("speed vs the reference (same rules)", f"{r['speedup_vs_reference']}x", "")
    if "promtool_agreement" in r:
        table.add_row(
            "agreement with promtool 2.42 (random rules)",
            f"{r['promtool_agreement']}/{r['promtool_cases']}",
            f"all {ok if r['promtool_agreement'] == r['promtool_cases'] else bad}",
        )
    table.add_row("window read", f"{r['window_samples']:,} samples of {r['window_series']:,} series", "")
    table.add_row("rules with a result", f"{r['rules_with_results']:,}", "")
    table.add_row("lake", f"{r['lake_samples']:,} samples, built in {r['build_s']} s", "")
    console.print(table)
    console.print(f"phases of the last tick (s): {r['phase_s']}")
    cpu = platform.processor() or platform.machine()
    console.print(f"machine: {os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
