"""``python -m flows.cli``: the same as the ``cortex-perf`` console script (benchmarks use it when the
script is not installed beside the interpreter)."""

from flows.cli import main

main()
