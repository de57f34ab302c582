"""Hot reload for the running proxy: the config file's pools, and the learned strategy's model.

Every ``service.reload_s`` (in a worker thread, so the event loop never waits on disk or the state
DB) the reloader:
- fingerprints the config file (size, mtime, SHA-256); when it changed, loads and validates it.
  A valid config is applied on the event loop with ``Router.reload`` — targets that survive keep
  their live state, and requests in flight finish on the objects they already hold, so nothing is
  dropped. A bad config is logged once with the field that is wrong, and the old pools stay;
- reads the routing overrides (weights, capacities, breaker/retry settings changed as recorded
  actions: ``tasks.routing.overrides``) and lays them over the config (``effective_settings``); a
  new config or a new set of overrides reloads the router the same way;
- asks the model registry for the champion of ``router.learned.model``; when its version differs
  from the one in use, loads it and hands it to ``Router.set_model`` (no restart needed).

The champion comes from the shared model registry (``tasks.registry``), the one the ``router``
flow promotes through; the model itself is the learned strategy's ``RouteModel``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.config import load_settings
from tasks.config.routing import RouterSettings
from tasks.redact import redact_url
from tasks.registry import ModelRegistry
from tasks.routing.learned import RouteModel
from tasks.routing.overrides import Override, effective_settings
from tasks.routing.router import Router

__all__ = ["Reloader", "config_fingerprint", "load_route_model", "registry_champion"]

log = logging.getLogger("cortex_perf.router")

Champion = tuple[str, Path]  # (version, path)


def config_fingerprint(path: Path) -> str | None:
    """Size, mtime and content hash of the config file (None: it does not exist)."""
    try:
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{digest}"


def registry_champion(registry: ModelRegistry, name: str) -> Champion | None:
    """The registry's champion of model ``name`` as (version, path); None while there is none."""
    mv = registry.champion(name)
    return (mv.version, Path(mv.path)) if mv is not None else None


def load_route_model(path: Path) -> RouteModel:
    """The learned strategy's model saved at ``path``."""
    return RouteModel.load(path)


class Reloader:
    """Background task of the proxy (``start``/``stop``), or ``check()`` + ``apply()`` by hand.

    ``load_config`` turns the config file into router settings (the CLI passes one that keeps the
    command line's ``--set`` overrides and runs the domain checks); ``champion`` returns the
    current (version, path) of the model; ``load_model`` loads one. Each may be None (not watched).
    """

    def __init__(
        self,
        router: Router,
        *,
        config_path: Path | None = None,
        load_config: Callable[[Path], RouterSettings] | None = None,
        champion: Callable[[], Champion | None] | None = None,
        load_model: Callable[[Path], Any] = load_route_model,
        base: RouterSettings | None = None,
        overrides: Callable[[], list[Override]] | None = None,
        applied: list[Override] | None = None,
    ) -> None:
        """``base``: the config's router settings the router was built from (default: its
        settings); ``overrides``: reads the stored overrides; ``applied``: those already laid over
        ``base`` when the router was built (so the first check does not reload for nothing)."""
        self.router = router
        self.base = base or router.settings
        self.overrides = overrides
        self._overrides_key = repr(applied) if applied is not None else None
        self.stale: list[Override] = []
        self.config_path = config_path
        self.load_config = load_config or (lambda p: load_settings(p).router)
        self.champion = champion
        self.load_model = load_model
        self._fingerprint = config_fingerprint(config_path) if config_path else None
        self.model_version: str | None = None
        self._bad_version: str | None = None  # a champion that failed to load (not retried until it changes)
        self.reloads = 0
        self.model_loads = 0
        self.last_error: str | None = None
        self.last_check: float | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- checking (worker thread) -------------------------------------------------------------
    def check(self) -> tuple[RouterSettings | None, tuple[Any, str] | None]:
        """What changed: (new router settings or None, (new model, version) or None). Never raises:
        a bad config or model is logged and kept in ``last_error``."""
        self.last_check = time.time()
        return self._check_config(), self._check_model()

    def _check_config(self) -> RouterSettings | None:
        """The settings to reload with when the config file or the overrides changed, else None."""
        new_base = self._check_file()
        found: list[Override] = []
        if self.overrides is not None:
            try:
                found = self.overrides()
            except Exception as exc:
                self._fail(f"routing overrides not readable: {exc}")
                return new_base
            key = repr(found)
            if key != self._overrides_key:
                self._overrides_key = key
                new_base = new_base or self.base
        if new_base is None:
            return None
        self.base = new_base
        if not found:
            self.stale = []
            return new_base
        settings, self.stale = effective_settings(new_base, found)
        return settings

    def _check_file(self) -> RouterSettings | None:
        if self.config_path is None:
            return None
        fp = config_fingerprint(self.config_path)
        if fp == self._fingerprint:
            return None
        self._fingerprint = fp  # a bad file is reported once, not every tick
        if fp is None:
            self._fail(f"config {self.config_path} is gone; keeping the pools in use")
            return None
        try:
            return self.load_config(self.config_path)
        except Exception as exc:
            self._fail(f"config {self.config_path} not applied, keeping the pools in use: {' '.join(str(exc).split())}")
            return None

    def _check_model(self) -> tuple[Any, str] | None:
        if self.champion is None:
            return None
        try:
            found = self.champion()
        except Exception as exc:
            self._fail(f"model registry not readable: {exc}")
            return None
        if found is None or found[0] in (self.model_version, self._bad_version):
            return None
        version, path = found
        try:
            model = self.load_model(path)
        except Exception as exc:
            self._bad_version = version
            self._fail(f"model {self.router.settings.learned.model!r} {version} not loaded: {exc}")
            return None
        return model, version

    def _fail(self, message: str) -> None:
        self.last_error = redact_url(message)[:1000]
        log.error("router: %s", self.last_error)

    # ---- applying (event loop) ----------------------------------------------------------------
    def apply(self, settings: RouterSettings | None, model: tuple[Any, str] | None) -> None:
        if settings is not None:
            self.router.reload(settings)
            self.reloads += 1
            log.warning("router: config reloaded: %d pool(s)", len(settings.pools))
        if model is not None:
            self.router.set_model(model[0], model[1])
            self.model_version = model[1]
            self.model_loads += 1
            log.warning("router: model %s in use", model[1])

    async def tick(self) -> None:
        settings, model = await asyncio.to_thread(self.check)
        self.apply(settings, model)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # never let the reloader die
                self._fail(f"reload failed: {exc}")
            await asyncio.sleep(self.router.settings.service.reload_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="router-reloader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "config": str(self.config_path) if self.config_path else None,
            "reloads": self.reloads,
            "stale_overrides": [o.scope + "." + o.field for o in self.stale],
            "model_version": self.model_version,
            "model_loads": self.model_loads,
            "last_error": self.last_error,
            "last_check_age_s": None if self.last_check is None else round(time.time() - self.last_check, 3),
        }
