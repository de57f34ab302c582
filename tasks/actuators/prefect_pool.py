"""The ``prefect_pool`` actuator: sets a Prefect work pool's (or work queue's) concurrency limit.

Why concurrency limits: in Prefect the number of flow runs a pool (or one of its queues) may run at
once *is* its capacity; workers pick runs up to that limit. Setting it through the Prefect API (the
official client) works the same against a local server and Prefect Cloud.

Guarantees: the limit is absolute (setting it twice is harmless) and is read back from the API
after the PATCH; a missing pool/queue, an unreachable API or a read-back that differs is a
recorded failure. An unlimited pool (limit ``None``) reads as ``unlimited_as`` (default: error),
because a decision cannot start from "infinite".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from tasks.actuators.action import ScaleAction
from tasks.actuators.base import ActuatorConfig, CountActuator
from tasks.actuators.errors import ActuatorError

__all__ = ["PrefectPoolActuator", "PrefectPoolConfig"]


class PrefectPoolConfig(ActuatorConfig):
    """``pool`` (default: the target's name) and optional ``queue`` in it; ``api_url`` defaults to Prefect's setting."""

    kind: Literal["prefect_pool"] = "prefect_pool"
    pool: str | None = Field(None, min_length=1)
    queue: str | None = Field(None, min_length=1)
    api_url: str | None = Field(None, pattern=r"^https?://")
    api_key: SecretStr | None = None
    unlimited_as: int | None = Field(None, ge=0)
    timeout_s: float = Field(15.0, gt=0, le=300)


class PrefectPoolActuator(CountActuator):
    kind = "prefect_pool"
    config_model = PrefectPoolConfig
    config: PrefectPoolConfig

    def _where(self, target: str) -> tuple[str, str | None]:
        pool = self.config.pool or target
        return pool, self.config.queue

    def _client(self) -> Any:
        # Prefect's client is imported where it is used, in this module's methods: it takes ~5.7 s
        # to import cold here (measured), and every command that loads the settings imports this
        # module to validate a prefect_pool target's config.
        from prefect.client.orchestration import SyncPrefectClient, get_client

        settings = {"timeout": self.config.timeout_s}
        if self.config.api_url is None:
            from prefect.settings import PREFECT_API_URL

            # Without a URL Prefect would start a throwaway ephemeral server, and we would scale
            # a pool nobody uses: refuse instead.
            if not PREFECT_API_URL.value():
                raise ActuatorError(f"{self.name}: no Prefect API configured (set api_url or PREFECT_API_URL)")
            return get_client(sync_client=True, httpx_settings=settings)
        key = self.config.api_key.get_secret_value() if self.config.api_key else None
        return SyncPrefectClient(self.config.api_url, api_key=key, httpx_settings=settings)

    def _read_with(self, client: Any, target: str) -> int:
        from prefect.exceptions import ObjectNotFound

        pool, queue = self._where(target)
        try:
            obj = client.read_work_queue_by_name(queue, work_pool_name=pool) if queue else client.read_work_pool(pool)
        except ObjectNotFound:
            what = f"work queue {queue!r} in pool {pool!r}" if queue else f"work pool {pool!r}"
            raise ActuatorError(f"{self.name}: {what} not found") from None
        limit = obj.concurrency_limit
        if limit is None:
            if self.config.unlimited_as is None:
                raise ActuatorError(
                    f"{self.name}: {pool}{'/' + queue if queue else ''} has no concurrency limit "
                    "(set unlimited_as to treat unlimited as a count)"
                )
            return self.config.unlimited_as
        return int(limit)

    def _read(self, target: str) -> int:
        try:
            with self._client() as client:
                return self._read_with(client, target)
        except ActuatorError:
            raise
        except Exception as exc:
            raise ActuatorError(f"{self.name}: Prefect API read failed: {type(exc).__name__}: {exc}") from None

    def _set(self, action: ScaleAction, detail: dict[str, Any]) -> int:
        from prefect.client.schemas.actions import WorkPoolUpdate
        from prefect.exceptions import ObjectNotFound

        pool, queue = self._where(action.target)
        with self._client() as client:
            try:
                if queue:
                    q = client.read_work_queue_by_name(queue, work_pool_name=pool)
                    client.update_work_queue(q.id, concurrency_limit=action.to)
                    detail["work_queue_id"] = str(q.id)
                else:
                    client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=action.to))
            except ObjectNotFound:
                what = f"work queue {queue!r} in pool {pool!r}" if queue else f"work pool {pool!r}"
                raise ActuatorError(f"{self.name}: {what} not found") from None
            detail["work_pool"] = pool
            if queue:
                detail["work_queue"] = queue
            return self._read_with(client, action.target)
