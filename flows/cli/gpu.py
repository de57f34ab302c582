"""``cortex-perf gpu …``: GPU inventory and health, the GPU work queue, placement and rebalancing.

Parsing and printing only; the work is in ``tasks.gpu``. Mounted on the app by ``flows.cli``. The
domain modules are imported inside the commands (see flows/cli/common.py: every ``--help`` loads
every group).
"""

from __future__ import annotations

from typing import Annotated

import typer

gpu_app = typer.Typer(
    help="GPUs: inventory and health, a priority queue of GPU work, placement strategies, rebalancing.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
