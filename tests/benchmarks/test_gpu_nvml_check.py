"""``benchmarks/gpu_nvml_check.py``'s comparison, on recorded NVML answers against a recorded
nvidia-smi line (the script itself runs only on a GPU machine)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from nvmlrecorded import H100, RecordedNVML

from tasks.gpu.nvml import read_nvml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_nvml_check.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_nvml_check", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# What `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` printed for the recorded H100.
SMI = "0, GPU-5f2c1e0a-7d1b-4c8e-9a0f-3b6e2d1c4a55, NVIDIA H100 80GB HBM3, 81559, 2180, 37, 41, 213.47, 700.00"


def _row(line: str) -> dict[str, str]:
    mod = _module()
    return dict(zip(mod.QUERY.split(","), (c.strip() for c in line.split(",")), strict=True))


def test_recorded_h100_agrees_with_nvidia_smi() -> None:
    (d,) = read_nvml(RecordedNVML([H100])).devices
    assert _module().compare(d, _row(SMI)) == []


def test_mismatches_beyond_tolerance_are_named() -> None:
    (d,) = read_nvml(RecordedNVML([H100])).devices
    bad = _module().compare(d, _row(SMI.replace("213.47", "260.00").replace("81559", "81561")))
    assert [b.split(":")[0] for b in bad] == ["gpu0 memory.total (MiB)", "gpu0 power.draw (W)"]
    assert _module().compare(d, _row(SMI.replace(", 37,", ", [N/A],"))) == []  # n/a: nothing to compare


def test_without_a_gpu_it_says_so_and_exits_2() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("NO GPU: no NVIDIA driver found (NVML: ")
