"""``detect_paths``: files and folders in, NAB-format CSVs out under the same relative paths;
bad input named by file, line and column; and the NAB benchmark's quick run end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.anomaly.cli_detect import DetectError, detect_paths, parse_timestamp

ROOT = Path(__file__).resolve().parents[3]
NAB = ROOT.parent / "shared" / "datasets" / "nab"


def write_series(path: Path, n: int = 1200, spike: int | None = 1000, time_col: str = "timestamp") -> None:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([time_col, "cpu"])
        for i in range(n):
            v = 10 + rng.normal(0, 0.5) + (20 if i == spike else 0)
            w.writerow([f"2024-01-{1 + i // 288:02d} {(i % 288) // 12:02d}:{(i % 12) * 5:02d}:00", f"{v:.4f}"])


def test_folders_recursively_and_files_keep_relative_paths(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_series(src / "a" / "one.csv")
    write_series(src / "b" / "c" / "two.csv", spike=None)
    single = tmp_path / "single.csv"
    write_series(single)
    out = tmp_path / "out"
    summary = detect_paths([src, single], time_col="timestamp", value_col="cpu", out=out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.csv")) == ["a/one.csv", "b/c/two.csv", "single.csv"]
    assert summary.rows == 3 * 1200 and len(summary.files) == 3
    with (out / "a" / "one.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert rows[1][0] == "2024-01-01 00:00:00"  # the input's timestamp text, unchanged
    scores = np.array([float(r[2]) for r in rows[1:]])
    assert int(np.argmax(scores)) == 1000
    one = next(f for f in summary.files if f.source.endswith("one.csv"))
    assert one.max_score_at == rows[1001][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp,cpu\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n", "line 3: column 'cpu': not a number"),
        ("timestamp,cpu\nyesterday,1\n", "line 2: column 'timestamp': not a timestamp"),
        ("time,cpu\n2024-01-01 00:00:00,1\n", "line 1: no column 'timestamp'"),
        ("", "empty file"),
    ],
)
def test_bad_input_names_file_line_and_column(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(DetectError, match=message) as err:
        detect_paths([bad], time_col="timestamp", value_col="cpu", out=tmp_path / "out")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written when an input is bad


def test_missing_path_and_timestamp_formats(tmp_path: Path) -> None:
    with pytest.raises(DetectError, match="no such file"):
        detect_paths([tmp_path / "nope"], out=tmp_path / "out")
    assert parse_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert parse_timestamp("1970-01-01 00:01:00") == 60.0
    assert parse_timestamp("60") == 60.0
    assert parse_timestamp("60000000000000") == 60_000_000_000.0  # epoch ms


@pytest.mark.skipif(not (NAB / "labels").is_dir(), reason="NAB data set not present")
def test_nab_bench_quick_run_reports_profiles() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "nab_bench.py"), "--quick", "--json", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if not (ROOT.parent / "shared" / "datasets" / "nab").is_dir():  # a clone without ../shared
        assert figures["nab"] == "absent" and "NAB data set not found" in proc.stderr
        return
    for key in ("standard", "reward_low_FP", "reward_low_FN", "threshold"):
        assert isinstance(figures[key], float), key
    assert figures["files"] == 4
    assert figures["target_standard"] == 74.85 and figures["target_met"] is None  # a subset is not judged
    assert "not assessed on --quick" in proc.stdout


def write_with_backward_step(path: Path, n: int = 1200, step_at: int = 700) -> list[str]:
    """A 5-minute series whose clock steps back 55 minutes at data row ``step_at`` (line ``step_at + 2``),
    like NAB's ``machine_temperature_system_failure.csv`` at line 10151. Returns the timestamp texts."""
    rng = np.random.default_rng(1)
    stamps = []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            minutes = 5 * i - (55 if i >= step_at else 0)
            text = f"2024-01-{1 + minutes // 1440:02d} {(minutes % 1440) // 60:02d}:{minutes % 60:02d}:00"
            stamps.append(text)
            w.writerow([text, f"{10 + rng.normal(0, 0.5):.4f}"])
    return stamps


def test_backward_step_is_scored_in_file_order_with_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "machine.csv"
    stamps = write_with_backward_step(src)
    summary = detect_paths([src], out=tmp_path / "out")
    with (tmp_path / "out" / "machine.csv").open() as fh:
        rows = list(csv.reader(fh))[1:]
    assert [r[0] for r in rows] == stamps  # every row kept, in the file's order
    (result,) = summary.files
    assert len(result.warnings) == 1
    assert "line 702" in result.warnings[0] and "'timestamp'" in result.warnings[0]
    assert "file order" in result.warnings[0] and "--sort" in result.warnings[0]


def test_sort_scores_rows_in_time_order(tmp_path: Path) -> None:
    src = tmp_path / "machine.csv"
    stamps = write_with_backward_step(src)
    summary = detect_paths([src], out=tmp_path / "out", order="time")
    with (tmp_path / "out" / "machine.csv").open() as fh:
        written = [r[0] for r in list(csv.reader(fh))[1:]]
    assert sorted(written) == sorted(stamps) and written == sorted(stamps, key=parse_timestamp)
    assert summary.files[0].warnings and "sorted" in summary.files[0].warnings[0]


def test_warmup_follows_nab_probation_by_default_or_a_row_count(tmp_path: Path) -> None:
    """The CLI gives the detector NAB's probationary period as warm-up, as the NAB benchmark does."""
    from tasks.anomaly.detector import DetectorConfig, score_series
    from tasks.anomaly.nab import probation_rows

    src = tmp_path / "s.csv"
    write_series(src, n=1200, spike=1000)
    detect_paths([src], time_col="timestamp", value_col="cpu", out=tmp_path / "nab")
    with (tmp_path / "nab" / "s.csv").open() as fh:
        rows = list(csv.reader(fh))[1:]
    secs = np.array([parse_timestamp(r[0]) for r in rows])
    values = np.array([float(r[1]) for r in rows])
    want = score_series(secs, values, config=DetectorConfig(warmup=probation_rows(1200))).score
    assert np.allclose([float(r[2]) for r in rows], np.round(want, 6))

    detect_paths([src], time_col="timestamp", value_col="cpu", out=tmp_path / "fixed", warmup=50)
    with (tmp_path / "fixed" / "s.csv").open() as fh:
        fixed = [float(r[2]) for r in list(csv.reader(fh))[1:]]
    want50 = score_series(secs, values, config=DetectorConfig(warmup=50)).score
    assert np.allclose(fixed, np.round(want50, 6))


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", ""])
def test_bad_warmup_is_named(bad: str) -> None:
    from tasks.anomaly.cli_detect import parse_warmup

    with pytest.raises(DetectError, match="--warmup"):
        parse_warmup(bad)
    assert parse_warmup("nab") == "nab" and parse_warmup("120") == 120


def _tiny_nab(root: Path) -> None:
    """A NAB-shaped folder (data/, labels/) of two small files, one with a clock step back."""
    (root / "data" / "realKnownCause").mkdir(parents=True)
    (root / "labels").mkdir()
    write_with_backward_step(root / "data" / "realKnownCause" / "machine.csv", n=1500, step_at=900)
    write_series(root / "data" / "artificial" / "spike.csv", n=1200, spike=1000, time_col="timestamp")
    text = (root / "data" / "artificial" / "spike.csv").read_text().replace("timestamp,cpu", "timestamp,value", 1)
    (root / "data" / "artificial" / "spike.csv").write_text(text)
    windows = {
        "realKnownCause/machine.csv": [["2024-01-04 09:00:00.000000", "2024-01-04 11:00:00.000000"]],
        "artificial/spike.csv": [["2024-01-04 10:00:00.000000", "2024-01-04 12:00:00.000000"]],
    }
    labels = {"realKnownCause/machine.csv": ["2024-01-04 10:00:00"], "artificial/spike.csv": ["2024-01-04 11:20:00"]}
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "labels" / "combined_labels.json").write_text(json.dumps(labels))


@pytest.mark.timeout(300)
def test_nab_bench_and_the_cli_give_the_same_figures(tmp_path: Path) -> None:
    """``nab_bench.py`` scores through the CLI's code path; ``--via-cli`` runs ``cortex-perf anomaly
    detect`` itself over the data folder and scores its output files: the figures must agree."""
    nab = tmp_path / "nab"
    _tiny_nab(nab)
    figures = []
    for extra in ([], ["--via-cli"]):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "nab_bench.py"), "--nab", str(nab), "--json", "--workers", "1"]
            + extra,
            capture_output=True,
            text=True,
            timeout=240,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        figures.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    bench, cli = figures
    assert bench["files"] == cli["files"] == 2 and bench["rows"] == cli["rows"] == 2700
    for key in ("standard", "reward_low_FP", "reward_low_FN", "standard_exact"):
        assert bench[key] == cli[key], key
    assert cli["via"] == "cli" and bench["via"] == "bench"
