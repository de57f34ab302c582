"""``benchmarks/gpu_place_bench.py``'s reference figure: what packing the fractional pods alone costs
(``fractional_waste``), on streams small enough to check by hand. (The full run takes minutes on the
Alibaba trace; its figures are in BENCHMARKS.md.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tasks.gpu.cluster import TaskShape

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_place_bench", ROOT / "benchmarks" / "gpu_place_bench.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def frac(milli: int) -> TaskShape:
    return TaskShape(1, milli)


def test_leftover_of_large_shares_is_waste_unless_small_ones_fill_it(bench: ModuleType) -> None:
    # two GPUs for the 810s; the 160 fills one leftover (190 -> 30): 2000 - 1780 = 220 milli
    assert bench.fractional_waste([frac(810), frac(810), frac(160)]) == (0.22, 0.22)
    # three 600s need three GPUs; the 400 fits one leftover exactly: 3000 - 2200
    assert bench.fractional_waste([frac(600), frac(400), frac(600), frac(600)]) == (0.8, 0.8)
    # small ones share: three 300s on one GPU
    assert bench.fractional_waste([frac(300)] * 3) == (0.1, 0.1)


def test_whole_gpu_and_cpu_only_pods_do_not_count(bench: ModuleType) -> None:
    stream = [TaskShape(1), TaskShape(8), TaskShape(0, cpu_milli=4000), frac(500)]
    assert bench.fractional_waste(stream) == (0.5, 0.5)
    assert bench.fractional_waste([TaskShape(2)]) == (0.0, 0.0)


def test_bound_never_exceeds_the_offline_packing(bench: ModuleType) -> None:
    # 6 x 350 and 3 x 600 (3,900 milli): the bound counts a GPU per 600 and their 3 x 400 leftovers
    # as room for the 350s by volume: 3 + ceil((2100 - 1200) / 1000) = 4 GPUs; but only one 350 fits
    # beside each 600, and three 350s need two GPUs, so best-fit-decreasing (optimal here) uses 5
    lower, offline = bench.fractional_waste([frac(350)] * 6 + [frac(600)] * 3)
    assert (lower, offline) == (0.1, 1.1)
    assert lower <= offline
