"""Serve every deployment of ``prefect.yaml`` from one process (``cortex-perf serve``).

Why read ``prefect.yaml`` instead of repeating schedules in code: deployments are data, and
``prefect deploy --all`` (workers) and ``serve`` (one process, no worker) must run the same
schedules, parameters and concurrency limits. Anything the file says that ``serve`` cannot honour
(work pools) is ignored: served runs execute in this process.

Why serve refuses to start next to ``prefect deploy``: both register deployments under the same
names (``collect/collect``), and serving a name rewrites that deployment without its pull step,
while it stays in its work pool; every worker run of it then crashes ("Downloading flow code from
storage at None"), and both would run every schedule. So one project uses one of the two, and
serve says which deployments stand in its way and how to choose (``ServeConflict``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron, Interval, RRule
from pydantic import TypeAdapter

__all__ = [
    "DeploymentSpec",
    "ServeConflict",
    "deployed_by_workers",
    "deployments_from_yaml",
    "load_deployment_specs",
    "serve_from_yaml",
]

REPO_ROOT = Path(__file__).resolve().parents[1]

DeploymentSpec = dict[str, Any]


def load_deployment_specs(path: str | Path) -> list[DeploymentSpec]:
    """The ``deployments`` list of a prefect.yaml (raises ValueError naming the problem)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such deployments file")
    data = yaml.safe_load(p.read_text()) or {}
    deps = data.get("deployments")
    if not isinstance(deps, list) or not deps:
        raise ValueError(f"{p}: no `deployments` list")
    for d in deps:
        if not isinstance(d, dict) or not d.get("name") or not d.get("entrypoint"):
            raise ValueError(f"{p}: every deployment needs a name and an entrypoint, got {d!r}")
    return deps


def load_entrypoint(entrypoint: str, root: Path = REPO_ROOT) -> Any:
    """``flows/collect.py:collect`` → the flow object (imported as its package module when possible)."""
    file, _, attr = entrypoint.partition(":")
    if not attr:
        raise ValueError(f"entrypoint {entrypoint!r}: expected path/to/file.py:flow_name")
    path = (root / file).resolve()
    try:
        rel = path.relative_to(root.resolve())
        module_name = ".".join(rel.with_suffix("").parts)
        module = importlib.import_module(module_name)
    except (ValueError, ModuleNotFoundError):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"entrypoint {entrypoint!r}: cannot load {path}") from None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"entrypoint {entrypoint!r}: {file} has no {attr!r}") from None


def _schedules(spec: DeploymentSpec) -> list[Any]:

    out: list[Any] = []
    for s in spec.get("schedules") or []:
        active = bool(s.get("active", True))
        tz = s.get("timezone")
        if "interval" in s:
            out.append(Interval(float(s["interval"]), timezone=tz, active=active))
        elif "cron" in s:
            out.append(Cron(str(s["cron"]), timezone=tz, active=active))
        elif "rrule" in s:
            out.append(RRule(str(s["rrule"]), timezone=tz, active=active))
        else:
            raise ValueError(f"deployment {spec['name']!r}: unsupported schedule {s!r}")
    return out


def _triggers(spec: DeploymentSpec) -> list[Any]:
    """The deployment's event triggers (``triggers:``), validated as ``prefect deploy`` does: the
    cache deployment runs on ``cortex.cache.miss``, under serve as under a worker."""

    return [TypeAdapter(DeploymentTriggerTypes).validate_python(t) for t in spec.get("triggers") or []]


def _concurrency(spec: DeploymentSpec) -> Any:
    c = spec.get("concurrency_limit")
    if c is None or isinstance(c, int):
        return c

    return ConcurrencyLimitConfig(
        limit=int(c["limit"]),
        collision_strategy=ConcurrencyLimitStrategy(c.get("collision_strategy", "ENQUEUE")),
    )


def deployments_from_yaml(
    path: str | Path,
    *,
    overrides: list[str] | None = None,
    config_path: str | None = None,
) -> list[Any]:
    """One ``RunnerDeployment`` per prefect.yaml entry, with its schedules, parameters and limits.

    ``overrides`` / ``config_path`` (the CLI's ``--set`` / ``--config``) are added to the parameters
    of deployments whose flow takes them, so `cortex-perf --set lake.root=… serve` does what it says.
    """
    root = Path(path).resolve().parent
    out = []
    for spec in load_deployment_specs(path):
        flow = load_entrypoint(spec["entrypoint"], root)
        params = dict(spec.get("parameters") or {})
        if overrides and "overrides" in params:
            params["overrides"] = [*(params.get("overrides") or []), *overrides]
        if config_path and "config_path" in params:
            params["config_path"] = config_path
        out.append(
            flow.to_deployment(
                name=spec["name"],
                schedules=_schedules(spec),
                triggers=_triggers(spec),
                concurrency_limit=_concurrency(spec),
                parameters=params,
                description=spec.get("description"),
                tags=list(spec.get("tags") or []),
            )
        )
    return out


class ServeConflict(ValueError):
    """Deployments to be served already exist as worker deployments (``prefect deploy``)."""


def deployed_by_workers(deployments: list[Any]) -> dict[str, str | None]:
    """``{"flow/deployment": work pool}`` of the given deployments that the API already holds as
    worker deployments: in a work pool or with pull steps, as ``prefect deploy`` creates them.
    Deployments a previous ``serve`` registered have neither, so serving again is no conflict."""

    found: dict[str, str | None] = {}
    with get_client(sync_client=True) as client:
        for d in deployments:
            name = f"{d.flow_name}/{d.name}"
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name or existing.pull_steps:
                found[name] = existing.work_pool_name
    return found


def _conflict_message(found: dict[str, str | None]) -> str:
    pools = sorted({p for p in found.values() if p})
    first = next(iter(found))
    worker = f"`prefect worker start --pool {pools[0]}`" if pools else "a worker"
    return (
        f"cannot serve: {', '.join(found)} already deployed by `prefect deploy`"
        + (f" (work pool {', '.join(pools)})" if pools else "")
        + "; serving the same names would strip their pull step and crash every worker run. "
        f"Use one of the two: keep the deployments and run {worker}, or delete them "
        f"(`prefect deployment delete {first}`, one per name) and run `cortex-perf serve` again"
    )


def serve_from_yaml(
    path: str | Path,
    *,
    overrides: list[str] | None = None,
    config_path: str | None = None,
    limit: int | None = None,
) -> None:
    """Block serving every deployment of ``path`` until interrupted; ``ServeConflict`` (naming them)
    when ``prefect deploy`` already registered some of them for workers."""

    deployments = deployments_from_yaml(path, overrides=overrides, config_path=config_path)
    found = deployed_by_workers(deployments)
    if found:
        raise ServeConflict(_conflict_message(found))
    serve(*deployments, limit=limit)
