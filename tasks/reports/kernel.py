"""The report kernel: one that runs this interpreter, started over IPC with the lake's settings
handed over in its environment (``LAKE_ENV``), and the notebook side of that hand-off
(``open_lake``)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.config import LakeSettings, load_settings, unwrap_secrets
from tasks.config.project import anchor, project_root
from tasks.config.settings import config_path
from tasks.lake import Lake

__all__ = [
    "KERNEL_NAME",
    "LAKE_ENV",
    "OWN_KERNEL_NAME",
    "ensure_kernel",
    "kernel_manager_with",
    "lake_env",
    "open_lake",
]


KERNEL_NAME = "python3"


#: Name of the kernelspec ``ensure_kernel`` installs when ``python3`` would run another Python.
OWN_KERNEL_NAME = "cortex-perf"


#: Environment variable through which ``run_report`` hands the kernel the lake's full settings (S3
#: endpoint and keys included). Why not a notebook parameter: papermill writes parameters into the
#: executed notebook kept beside the HTML, and a secret must never land in a file people share.
LAKE_ENV = "CORTEX_PERF_REPORT_LAKE"


def open_lake(lake_root: str = "") -> Lake:
    """The lake a report notebook reads: what the notebooks call instead of ``Lake(lake_root)``.

    Under ``run_report`` the kernel gets the caller's lake settings through ``LAKE_ENV``, so an S3
    lake opens with its endpoint and credentials. In Jupyter (no handoff) the settings come from the
    usual places (``cortex-perf.yaml``, ``CORTEX_PERF_…`` variables) found from the project root, as
    the CLI finds them: Jupyter starts the kernel in ``notebooks/``, where ``data/lake`` would be an
    empty ``notebooks/data/lake``. ``lake_root`` (when given) replaces the root and keeps every other
    lake setting; a relative one is under the project root too.
    """
    raw = os.environ.get(LAKE_ENV)
    lake_settings = LakeSettings.model_validate_json(raw) if raw else load_settings().lake
    if lake_root:
        root = anchor(lake_root, project_root(config_path())) or lake_root
        lake_settings = lake_settings.model_copy(update={"root": root})
    return Lake.from_lake_settings(lake_settings)


def lake_env(lake_settings: LakeSettings) -> str:
    """``LakeSettings`` as JSON with its secrets in clear (for the kernel's environment only)."""
    data = lake_settings.model_dump(mode="python")
    unwrap_secrets(data)
    return json.dumps(data)


def kernel_manager_with(extra_env: Mapping[str, str]) -> type:
    """A kernel manager class whose kernels talk over IPC sockets and start with ``extra_env`` added.

    Why IPC: over TCP (jupyter's default) every report kernel logged ipykernel's "Kernel is running
    over TCP without encryption" warning into the caller's stderr, and any local user could connect
    to its ports; Unix sockets in this user's private runtime dir need neither ports nor encryption.
    Why not ``os.environ`` for ``extra_env``: setting the variable process-wide would hand the S3
    keys to every subprocess another thread starts meanwhile, and two renders at once would race on
    restoring it. Papermill passes ``kernel_manager_class`` through to nbclient, which starts the
    kernel with it; the ``env`` given to ``start_kernel`` becomes the kernel process's environment.
    """
    # lazy: jupyter_client and ipykernel cost +0.19 s on top of tasks.config_checks, which imports this
    # package for every settings load (measured 2026-12-07); only a render needs them.
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class _ReportKernelManager(AsyncKernelManager):
        # ``start_kernel`` (what nbclient awaits) is bound to the base class's function at class
        # creation, so overriding ``_async_start_kernel`` alone would never be called.
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.transport = "ipc"
            # the socket files' prefix: in the runtime dir (the default would be the working directory)
            self.ip = str(runtime / f"cortex-report-{uuid.uuid4().hex[:12]}-ipc")
            kw["env"] = {**os.environ, **kw.get("env", {}), **extra_env}
            await AsyncKernelManager._async_start_kernel(self, **kw)

    return _ReportKernelManager


def ensure_kernel() -> str:
    """The name of a kernelspec that runs this very interpreter (so the notebook sees this venv).

    ``python3`` is ipykernel's spec installed into the venv by ``uv sync``; its ``python`` argv is
    replaced by ``sys.executable`` by jupyter_client. A user-level ``python3`` spec pointing at
    another Python would shadow it, so in that case a ``cortex-perf`` spec is installed into
    ``sys.prefix`` (the venv) and used instead.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # lazy: see kernel_manager_with

    ksm = KernelSpecManager()
    for name in (KERNEL_NAME, OWN_KERNEL_NAME):
        try:
            argv0 = ksm.get_kernel_spec(name).argv[0]
        except NoSuchKernel:
            continue
        if argv0 in {"python", "python3", f"python3.{sys.version_info.minor}"} or (
            Path(argv0).resolve() == Path(sys.executable).resolve()
        ):
            return name
    from ipykernel.kernelspec import install  # lazy: see kernel_manager_with

    install(kernel_name=OWN_KERNEL_NAME, prefix=sys.prefix, display_name="cortex-perf (venv)")
    return OWN_KERNEL_NAME
