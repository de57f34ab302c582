"""Which actuator kinds exist: Python entry points in the group ``cortex_perf.actuators``.

Why entry points: a team that scales something we never heard of (an internal API, a queue
service) writes an ``Actuator`` subclass in its own package and declares it::

    [project.entry-points."cortex_perf.actuators"]
    my_queue = "my_package.actuators:QueueActuator"

and, once that package is installed beside cortex-perf, ``actuator: {kind: my_queue, ...}`` works
in ``cortex-perf.yaml`` without editing this repository. The built-in kinds are declared the same
way in our own ``pyproject.toml``, so there is one way in. Entry points are listed once per
process (scanning every installed distribution costs ~15 ms) and a kind's class is imported only
when that kind is used (``kubernetes`` or ``prefect`` are not imported for a ``log`` target).
:func:`discover` lists them again (after installing a plug-in into a running process).
:func:`register_actuator` adds a class in-process (tests, notebooks).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from typing import Any

from tasks.actuators.base import Actuator, ActuatorConfig, validate_config
from tasks.actuators.errors import ActuatorConfigError
from tasks.actuators.ledger import ActionLedger

__all__ = [
    "ENTRY_POINT_GROUP",
    "actuator_class",
    "actuator_kinds",
    "build_actuator",
    "discover",
    "parse_actuator_config",
    "register_actuator",
    "unregister_actuator",
]

ENTRY_POINT_GROUP = "cortex_perf.actuators"

#: Classes added in-process with ``register_actuator`` (they win over nothing: a clash is an error).
_registered: dict[str, type[Actuator[Any, Any]]] = {}
#: Entry-point classes already imported, by kind.
_loaded: dict[str, type[Actuator[Any, Any]]] = {}


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The group's entry points by name. The same name from two distributions is an error unless
    both point at the same object (one package seen twice on ``sys.path``)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen = found.get(ep.name)
        if seen is not None and seen.value != ep.value:
            raise ActuatorConfigError(
                f"actuator kind {ep.name!r} is declared twice: {seen.value} and {ep.value} "
                f"(entry points in group {ENTRY_POINT_GROUP!r}; uninstall one of the packages)"
            )
        found[ep.name] = ep
    return found


def discover() -> list[str]:
    """List the installed actuator plug-ins again (forgets what was listed); returns every kind."""
    _entry_points.cache_clear()
    _loaded.clear()
    return actuator_kinds()


def actuator_kinds() -> list[str]:
    """Every kind that can be configured, sorted: entry points and in-process registrations."""
    return sorted(set(_entry_points()) | set(_registered))


def actuator_class(kind: str) -> type[Actuator[Any, Any]] | None:
    """The class for ``kind`` (importing its module on first use); ``None`` when no such kind exists.

    A plug-in that cannot be imported, or that is not an ``Actuator`` for that kind, is an
    ``ActuatorConfigError`` naming the entry point (a broken install, not a typo in the config)."""
    if kind in _registered:
        return _registered[kind]
    if kind in _loaded:
        return _loaded[kind]
    ep = _entry_points().get(kind)
    if ep is None:
        return None
    try:
        cls = ep.load()
    except Exception as exc:
        raise ActuatorConfigError(
            f"actuator kind {kind!r}: its plug-in {ep.value} cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Actuator)) or getattr(cls, "kind", None) != kind:
        raise ActuatorConfigError(
            f"actuator kind {kind!r}: entry point {ep.value} is not an Actuator subclass with kind = {kind!r}"
        )
    _loaded[kind] = cls
    return cls


def register_actuator(cls: type[Actuator[Any, Any]]) -> type[Actuator[Any, Any]]:
    """Add an actuator kind in this process (usable as a class decorator); a kind already taken is an error."""
    taken = _registered.get(cls.kind) or (actuator_class(cls.kind) if cls.kind in _entry_points() else None)
    if taken is not None and taken is not cls:
        raise ValueError(f"actuator kind {cls.kind!r} is already registered ({taken.__name__})")
    _registered[cls.kind] = cls
    return cls


def unregister_actuator(kind: str) -> None:
    """Forget a kind added with :func:`register_actuator` (entry points stay)."""
    _registered.pop(kind, None)


def parse_actuator_config(data: Mapping[str, Any] | ActuatorConfig, *, origin: str = "actuator") -> ActuatorConfig:
    """Validate a config mapping (``kind`` picks the model; default ``log``) into its typed config."""
    if isinstance(data, ActuatorConfig):
        return data
    if not isinstance(data, Mapping):
        raise ActuatorConfigError(f"{origin}: expected a mapping with a 'kind', got {type(data).__name__}")
    kind = data.get("kind", "log")
    cls = actuator_class(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ActuatorConfigError(f"{origin}.kind: unknown actuator {kind!r} (known: {', '.join(actuator_kinds())})")
    return validate_config(cls.config_model, {**data, "kind": kind}, origin)


def build_actuator(
    config: Mapping[str, Any] | ActuatorConfig, *, ledger: ActionLedger, origin: str = "actuator", **kwargs: Any
) -> Actuator[Any, Any]:
    """The actuator a config describes, bound to ``ledger``; ``kwargs`` go to its constructor (clients)."""
    cfg = parse_actuator_config(config, origin=origin)
    cls = actuator_class(cfg.kind)
    assert cls is not None  # parse_actuator_config found it
    return cls(cfg, ledger=ledger, **kwargs)
