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
        ("timestamp,cpu\n2024-01-01 00:05:00,1\n2024-01-01 00:00:00,2\n", "line 3: column 'timestamp'"),
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
