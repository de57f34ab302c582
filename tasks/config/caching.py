"""The cache section: which Redis (standalone or Redis Cluster) the cache manager runs, and how.

Why a section apart from ``sources.redis``: the source only *reads* INFO for the lake; the cache
manager writes (warming), moves slots and adds nodes, so it needs its own connection settings
(TLS, a separate password, per-node timeouts) and its own limits (warming rate caps, rebalance
threshold). When ``cache.url`` is not set the manager uses ``sources.redis.url`` — one Redis to
name for the common case.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from tasks.config.section import Section, check_duration

__all__ = ["CacheClusterOpsSettings", "CacheHotSettings", "CacheSettings", "CacheWarmSettings"]


class CacheWarmSettings(Section):
    """How warming loads keys: what to warm, where values come from, and how fast at most."""

    patterns: list[str] = Field(
        default_factory=list, description="Glob patterns of keys to warm (Redis MATCH syntax), besides the hot set."
    )
    top: int = Field(1000, ge=1, le=10_000_000, description="How many predicted hot keys to warm.")
    loader: str | None = Field(
        None,
        description=(
            "Where values come from: `module:function` (called with a list of keys, returns {key: value}), "
            "an http(s) URL template with `{key}`, or `sql:` + a query over the lake taking `$keys`."
        ),
    )
    ops_per_s: float = Field(
        2000.0, gt=0, le=1e7, description="Writes per second at most, so live traffic is never starved."
    )
    bytes_per_s: float = Field(
        16 * 1024 * 1024, gt=0, le=1e11, description="Bytes written per second at most (values' sizes)."
    )
    batch: int = Field(100, ge=1, le=10_000, description="Keys per pipeline round trip.")
    default_ttl_s: float | None = Field(
        None, gt=0, le=10 * 365 * 86400.0, description="TTL for warmed keys whose loader gives none (none: no expiry)."
    )
    history: str = Field("1d", description="How far back the access history reaches for prediction.")
    mode: Literal["dry-run", "apply"] = Field(
        "dry-run", description="What the cache flow does when it warms: `dry-run` records the plan, `apply` writes."
    )

    _history = field_validator("history")(check_duration)


class CacheHotSettings(Section):
    """How hot keys are predicted from the access history."""

    model: Literal["decay", "xgboost"] = Field(
        "xgboost",
        description="`decay`: frequency with exponential decay; `xgboost`: a ranker trained by the cache flow.",
    )
    half_life: str = Field("10m", description="Half-life of a past access in the decayed frequency.")
    window: str = Field("5m", description="The window a prediction is for (and a training label covers).")

    _durations = field_validator("half_life", "window")(check_duration)


class CacheClusterOpsSettings(Section):
    """Limits of cluster operations (redis-cli's defaults where it has one)."""

    threshold_pct: float = Field(
        2.0, ge=0, le=100, description="Rebalance only masters more than this % off their share."
    )
    pipeline: int = Field(10, ge=1, le=10_000, description="Keys per MIGRATE call (redis-cli --cluster-pipeline).")
    migrate_timeout_ms: int = Field(60_000, ge=1, le=3_600_000)
    node_ready_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Wait at most this long for a new node's cluster_state:ok."
    )
    slots_per_round: int = Field(
        128,
        ge=1,
        le=16384,
        description="Slots moved together, each step one pipelined round trip (redis-cli moves 1 at a time).",
    )


class CacheSettings(Section):
    """The Redis the cache manager works on. Secrets (password, a URL's userinfo) are never printed."""

    enabled: bool = Field(False, description="Run the cache flow (stats, prediction, warming) on its schedule.")
    name: str = Field("default", min_length=1, max_length=100, description="Name of this Redis (the `redis` label).")
    url: SecretStr | None = Field(
        None,
        description="redis:// or rediss:// URL of the server, or of one cluster node (default: sources.redis.url).",
    )
    cluster: bool | None = Field(None, description="Redis Cluster (default: sources.redis.cluster).")
    username: str | None = Field(None, max_length=200)
    password: SecretStr | None = Field(None, description="Password (wins over one in the URL).")
    tls: bool = Field(False, description="Use TLS (also implied by a rediss:// URL).")
    tls_ca_file: str | None = Field(None, description="CA bundle to verify the server with.")
    tls_verify: bool = Field(True, description="Verify the server's certificate.")
    connect_timeout_s: float = Field(2.0, gt=0, le=600, description="Connect timeout per node.")
    timeout_s: float = Field(5.0, gt=0, le=600, description="Read/write timeout per node.")
    warm: CacheWarmSettings = Field(default_factory=CacheWarmSettings)
    hot: CacheHotSettings = Field(default_factory=CacheHotSettings)
    cluster_ops: CacheClusterOpsSettings = Field(default_factory=CacheClusterOpsSettings)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v
