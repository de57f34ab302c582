"""Check the GPU inventory's NVML readings against ``nvidia-smi`` on a machine WITH an NVIDIA GPU.

Run there (the CI and the development box have no GPU; the tests cover NVML through recorded
answers)::

    uv run python benchmarks/gpu_nvml_check.py            # a table, then OK or the mismatches
    uv run python benchmarks/gpu_nvml_check.py --json     # one JSON object

It reads ``tasks.gpu.nvml.read_nvml()`` and, right after,
``nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,
power.draw,power.limit --format=csv,noheader,nounits``, and compares them per GPU (matched by
UUID). Tolerances, because the two are read a few milliseconds apart and nvidia-smi rounds:
memory total within 1 MiB (nvidia-smi prints MiB), memory used within 64 MiB (allocations move),
utilisation within 10 points, temperature within 2 °C, power draw within 5 % (or 5 W when idle)
and the power limit within 1 W. Also printed: the fields nvidia-smi does not compare (throttle
reasons, ECC, remapped rows, MIG, processes) so a person can read them against ``nvidia-smi -q``.

Exit codes: 0 all within tolerance; 1 a mismatch (listed); 2 no GPU / no driver / no nvidia-smi.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from typing import Any

from tasks.gpu.model import Device
from tasks.gpu.nvml import read_nvml

QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,power.limit"
MIB = 1024 * 1024


def smi_rows() -> list[dict[str, str]]:
    """nvidia-smi's answer, one dict per GPU (values as printed; ``[N/A]`` kept as text)."""
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    keys = QUERY.split(",")
    return [dict(zip(keys, (c.strip() for c in line.split(",")), strict=True)) for line in out.splitlines() if line]


def _f(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def compare(d: Device, s: dict[str, str]) -> list[str]:
    """Mismatches beyond tolerance between our reading ``d`` and nvidia-smi's row ``s``."""
    bad: list[str] = []

    def check(what: str, ours: float | None, theirs: float | None, tol: float) -> None:
        if theirs is None:
            return  # nvidia-smi says n/a: nothing to compare
        if ours is None:
            bad.append(f"gpu{d.index} {what}: ours n/a, nvidia-smi {theirs}")
        elif abs(ours - theirs) > tol:
            bad.append(f"gpu{d.index} {what}: ours {ours:.2f}, nvidia-smi {theirs:.2f} (tolerance {tol:g})")

    if (d.name or "") != s["name"]:
        bad.append(f"gpu{d.index} name: ours {d.name!r}, nvidia-smi {s['name']!r}")
    if d.index != int(s["index"]):
        bad.append(f"{d.uuid} index: ours {d.index}, nvidia-smi {s['index']}")
    mib = lambda b: None if b is None else b / MIB  # noqa: E731
    check("memory.total (MiB)", mib(d.memory_total_bytes), _f(s["memory.total"]), 1.0)
    check("memory.used (MiB)", mib(d.memory_used_bytes), _f(s["memory.used"]), 64.0)
    util = None if d.utilization_ratio is None else d.utilization_ratio * 100
    check("utilization.gpu (%)", util, _f(s["utilization.gpu"]), 10.0)
    check("temperature.gpu (C)", d.temperature_c, _f(s["temperature.gpu"]), 2.0)
    draw = _f(s["power.draw"])
    check("power.draw (W)", d.power_w, draw, max(5.0, 0.05 * (draw or 0.0)))
    check("power.limit (W)", d.power_limit_w, _f(s["power.limit"]), 1.0)
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    inv = read_nvml()
    if not inv.devices:
        print(f"NO GPU: {inv.status}", file=sys.stderr)
        return 2
    if shutil.which("nvidia-smi") is None:
        print("NO nvidia-smi on PATH: cannot compare", file=sys.stderr)
        return 2
    rows = {r["uuid"]: r for r in smi_rows()}
    problems: list[str] = []
    report: list[dict[str, Any]] = []
    for d in inv.devices:
        s = rows.get(d.uuid or "")
        if s is None:
            problems.append(f"gpu{d.index} {d.uuid}: not in nvidia-smi's list")
            continue
        problems += compare(d, s)
        report.append({"ours": d.to_json(), "nvidia_smi": s})
    missing = set(rows) - {d.uuid for d in inv.devices}
    problems += [f"{u}: nvidia-smi lists it, NVML inventory does not" for u in sorted(missing)]
    if args.json:
        print(json.dumps({"status": inv.status, "devices": report, "problems": problems}, default=str))
        return 1 if problems else 0
    print(inv.status)
    for r in report:
        o, s = r["ours"], r["nvidia_smi"]
        print(f"\ngpu{o['index']} {o['uuid']} {o['name']}")
        print(f"  memory MiB   ours {o['memory_used_bytes'] / MIB:10.0f} / {o['memory_total_bytes'] / MIB:.0f}"
              f"   nvidia-smi {s['memory.used']:>8} / {s['memory.total']}")  # fmt: skip
        util = "n/a" if o["utilization_ratio"] is None else f"{o['utilization_ratio'] * 100:.0f}"
        print(f"  util %       ours {util:>10}   nvidia-smi {s['utilization.gpu']:>8}")
        print(f"  temp C       ours {o['temperature_c']!s:>10}   nvidia-smi {s['temperature.gpu']:>8}")
        print(f"  power W      ours {o['power_w']!s:>10} / {o['power_limit_w']}"
              f"   nvidia-smi {s['power.draw']:>8} / {s['power.limit']}")  # fmt: skip
        print(f"  clocks MHz   sm {o['sm_clock_mhz']} (max {o['max_sm_clock_mhz']}) mem {o['memory_clock_mhz']}")
        print(f"  throttle     {o['throttle_reasons']}")
        print(f"  ecc          volatile c/u {o['ecc_volatile_corrected']}/{o['ecc_volatile_uncorrected']}"
              f"  aggregate c/u {o['ecc_aggregate_corrected']}/{o['ecc_aggregate_uncorrected']}")  # fmt: skip
        print(f"  rows         retired {o['retired_pages']} remapped c/u {o['remapped_rows_correctable']}/"
              f"{o['remapped_rows_uncorrectable']} pending {o['remap_pending']}"
              f" failure {o['remap_failure']}")  # fmt: skip
        print(f"  mig          {o['mig_enabled']} {[m['name'] for m in o['mig_instances']]}")
        print(f"  processes    {[(p['pid'], p['used_memory_bytes']) for p in (o['processes'] or [])]}")
        for n in o["notes"]:
            print(f"  note         {n}")
    print()
    if problems:
        print("MISMATCH:\n  " + "\n  ".join(problems))
        return 1
    print(f"OK: {len(report)} GPU(s) agree with nvidia-smi within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
