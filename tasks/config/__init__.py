"""The one settings object: ``cortex-perf.yaml`` < environment < command-line overrides.

Precedence (lowest first): built-in defaults, the YAML file (``cortex-perf.yaml`` in the working
directory, or the file ``CORTEX_PERF_CONFIG`` names), environment variables ``CORTEX_PERF_…``
(nested with ``__``, e.g. ``CORTEX_PERF_LAKE__ROOT``), then overrides given on the command line
(``--set lake.root=/tmp/lake``). Everything else reads settings from here and nowhere else.
"""

from tasks.config.caching import CacheClusterOpsSettings, CacheHotSettings, CacheSettings, CacheWarmSettings
from tasks.config.gpu import GpuInventorySettings, GpuPlacementSettings, GpuQueueSettings, GpuSettings
from tasks.config.routing import (
    BreakerSettings,
    EjectionSettings,
    LearnedSettings,
    RetrySettings,
    RouterPool,
    RouterServiceSettings,
    RouterSettings,
    RouterTarget,
)
from tasks.config.scaling import (
    GuardRails,
    ScalingMetricSettings,
    ScalingSettings,
    ScalingTarget,
    ScalingTargetSettings,
)
from tasks.config.settings import (
    AlertingSettings,
    AnomalySettings,
    CollectSettings,
    ConfigError,
    ForecastSettings,
    GpuSourceSettings,
    HostSourceSettings,
    LakeSettings,
    LoggingSettings,
    PrefectSourceSettings,
    PrometheusTarget,
    RedisSourceSettings,
    ReportsSettings,
    Settings,
    SourcesSettings,
    StateSettings,
    format_validation_error,
    load_settings,
    redacted,
    secret_overrides_stashed,
    unwrap_secrets,
    validation_problems,
)

__all__ = [
    "AlertingSettings",
    "AnomalySettings",
    "BreakerSettings",
    "CacheClusterOpsSettings",
    "CacheHotSettings",
    "CacheSettings",
    "CacheWarmSettings",
    "CollectSettings",
    "ConfigError",
    "EjectionSettings",
    "ForecastSettings",
    "GpuInventorySettings",
    "GpuPlacementSettings",
    "GpuQueueSettings",
    "GpuSettings",
    "GpuSourceSettings",
    "GuardRails",
    "HostSourceSettings",
    "LakeSettings",
    "LearnedSettings",
    "LoggingSettings",
    "PrefectSourceSettings",
    "PrometheusTarget",
    "RedisSourceSettings",
    "ReportsSettings",
    "RetrySettings",
    "RouterPool",
    "RouterServiceSettings",
    "RouterSettings",
    "RouterTarget",
    "ScalingMetricSettings",
    "ScalingSettings",
    "ScalingTarget",
    "ScalingTargetSettings",
    "Settings",
    "SourcesSettings",
    "StateSettings",
    "format_validation_error",
    "load_settings",
    "redacted",
    "secret_overrides_stashed",
    "unwrap_secrets",
    "validation_problems",
]
