"""Smoke test of ``benchmarks/gpu_idle_bench.py`` on a hand-made trace in the dataset's own format
(two gzip tars, each one csv, the columns in the two files' different orders), numbers checked by hand."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_idle_bench.py"
GIB = 2**30


def _tar(path: Path, name: str, text: str) -> None:
    data = text.encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_counts_idle_holding_time_and_memory(tmp_path: Path) -> None:
    # pod a: 4 samples 57 s apart, idle 3 of them holding 20 GiB; pod b: busy; pod c: idle but empty (0.5 GiB)
    util = ["value,timestamp_anon,container_ip"]
    mem = ["timestamp_anon,value,container_ip"]
    for i, (ua, ub, uc) in enumerate([(0.0, 50.0, 0.0), (0.0, 40.0, 0.0), (12.5, 60.0, 0.0), (0.0, 70.0, 0.0)]):
        t = 1000.0 + 57 * i
        util += [f"{ua},{t},a", f"{ub},{t},b", f"{uc},{t},c"]
        mem += [f"{t},{20 * GIB},a", f"{t},{30 * GIB},b", f"{t},{GIB // 2},c"]
    util.append("0.0,5000.0,d")  # a pod with no memory sample: not joined
    _tar(tmp_path / "pod_gpu_duty_cycle_anon.tar.gz", "pod_gpu_duty_cycle_anon.csv", "\n".join(util) + "\n")
    _tar(
        tmp_path / "pod_gpu_memory_used_bytes_anon.tar.gz", "pod_gpu_memory_used_bytes_anon.csv", "\n".join(mem) + "\n"
    )
    proc = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert (out["pods"], out["joined"], out["util_rows"], out["util_rows_at_zero"]) == (3, 12, 13, 8)
    assert out["idle_holding_sample_share"] == round(3 / 12, 4)
    assert out["gpu_hours"] == round(12 * 57 / 3600, 1)
    assert out["idle_holding_time_share"] == 0.25
    assert out["mean_held_gib"] == 20.0 and out["median_sample_held_gib"] == 20.0
    assert out["pods_idle_holding_over_half_the_time"] == 1  # pod a: 75 %

    bad = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path), "--idle-pct", "120"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "--idle-pct 120.0: not between 0 and 100" in bad.stderr
