"""Settings models and the loader.

Why pydantic-settings: one typed object gives defaults, file, environment and overrides the same
validation, so a typo in any of them fails at load with the field's dotted name and the allowed
values instead of surfacing later as a ``KeyError`` deep inside a flow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

DEFAULT_CONFIG_FILE = "cortex-perf.yaml"
ENV_PREFIX = "CORTEX_PERF_"
_CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]*@")


class ConfigError(ValueError):
    """Raised when the configuration cannot be loaded; the message names every bad field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LakeSettings(_Section):
    """Where the metric lake lives and how strictly it takes data in."""

    root: str = Field("data/lake", description="Lake root: a directory or a URL (file://, s3://bucket/prefix).")
    strict: bool = Field(False, description="Reject a whole batch when any row is bad (default: keep good rows).")
    max_labels_per_series: int = Field(32, ge=1, le=256)
    max_label_value_length: int = Field(2048, ge=1)
    max_series_per_metric: int = Field(
        10_000, ge=1, description="Cardinality limit: new series beyond it are rejected."
    )
    max_future_skew_s: float = Field(3600.0, ge=0, description="Samples further in the future are rejected.")
    retention_days: dict[str, int] = Field(
        default_factory=lambda: {
            "samples": 30,
            "rollup_1m": 90,
            "rollup_5m": 365,
            "rollup_1h": 1825,
            "events": 90,
            "series": 3650,
        },
        description="Days to keep per table; partitions older than this are dropped by maintenance.",
    )
    memory_limit: str = Field(
        "1GB",
        pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB memory ceiling for lake queries and maintenance; beyond it they spill to disk.",
    )
    compact_min_files: int = Field(4, ge=2, description="Compact a partition once it has this many files.")
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL (MinIO, R2, ...).")
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None


class StateSettings(_Section):
    """The DuckDB file that holds mutable state (alerts, registry, queues)."""

    path: str = Field("data/state.duckdb")
    lock_timeout_s: float = Field(30.0, gt=0, description="Give up acquiring the state DB after this long.")


class HostSourceSettings(_Section):
    enabled: bool = True
    per_cpu: bool = True
    disk_paths: list[str] = Field(default_factory=lambda: ["/"])
    host_label: str | None = Field(None, description="Value of the `host` label (default: the hostname).")
    cpu_interval_s: float = Field(
        0.1, ge=0, le=5, description="Window over which CPU utilisation is measured on the first reading."
    )


class GpuSourceSettings(_Section):
    enabled: bool = True


class RedisSourceSettings(_Section):
    enabled: bool = False
    url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"), description="redis:// URL (may hold a password).")
    cluster: bool = Field(False, description="Also read INFO from every node of a Redis Cluster.")
    name: str = Field("default", description="Value of the `redis` label.")
    timeout_s: float = Field(5.0, gt=0, description="Connect and read timeout per Redis node.")
    extra_info_fields: list[str] = Field(
        default_factory=list,
        description="More numeric INFO fields to export as gauges `redis_<field>` (names sanitised).",
    )


class PrometheusTarget(_Section):
    name: str = Field(..., description="Value of the `job` label.")
    url: str = Field(..., description="The /metrics URL to scrape.")
    timeout_s: float = Field(5.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels added to every series.")
    bearer_token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _http_only(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


class PrefectSourceSettings(_Section):
    enabled: bool = True
    api_url: str | None = Field(
        None, description="Prefect API to read flow runs from (default: Prefect's own PREFECT_API_URL)."
    )
    lookback_minutes: int = Field(60, ge=1)
    limit: int = Field(200, ge=1)


class SourcesSettings(_Section):
    host: HostSourceSettings = Field(default_factory=HostSourceSettings)
    gpu: GpuSourceSettings = Field(default_factory=GpuSourceSettings)
    redis: RedisSourceSettings = Field(default_factory=RedisSourceSettings)
    prometheus: list[PrometheusTarget] = Field(default_factory=list)
    prefect: PrefectSourceSettings = Field(default_factory=PrefectSourceSettings)


class CollectSettings(_Section):
    interval_s: float = Field(60.0, gt=0)
    source_timeout_s: float = Field(10.0, gt=0, description="A source slower than this is abandoned for the tick.")


def _check_duration(v: str) -> str:
    from tasks.timeparse import parse_duration

    try:
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{v!r} is not a positive duration like 5m, 1h or 14d") from None
    return v


class ForecastSettings(_Section):
    """What the forecast flow retrains and forecasts (hourly)."""

    enabled: bool = Field(True, description="Run the forecast stage (retrain, backtest, forecasts).")
    selectors: list[str] = Field(
        default_factory=lambda: [
            "host_cpu_utilization_ratio",
            "host_memory_used_bytes",
            "gpu_utilization_ratio",
            "redis_memory_used_bytes",
            "http_request_duration_seconds_p95",
        ],
        description="Series to forecast (selectors); one model lineage per metric.",
    )
    step: str = Field("5m", description="Grid the series are put on (bucket average of the lake's samples).")
    lookback: str = Field("14d", description="History each retrain reads.")
    horizon: int = Field(12, ge=1, le=2016, description="Steps ahead to forecast (12 × 5m = 1 h).")
    season: int | None = Field(None, ge=2, description="Season length in steps (default: daily, from the step).")
    model: Literal["xgboost", "seasonal_naive", "ets", "ets_damped", "theta", "stl_ets", "linear_trend"] = Field(
        "xgboost", description="The model trained as challenger each retrain."
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["seasonal_naive", "ets_damped", "theta"],
        description="Models backtested beside it for the report (not promoted).",
    )
    max_series_per_group: int = Field(200, ge=1, description="Series per training task (groups train in parallel).")
    min_improvement: float = Field(0.0, ge=0, lt=1, description="Challenger must beat the champion by this fraction.")
    min_points: int = Field(96, ge=8, description="Series with fewer grid points are skipped (and listed).")

    @field_validator("step", "lookback")
    @classmethod
    def _durations(cls, v: str) -> str:
        return _check_duration(v)


class AnomalySettings(_Section):
    """The causal anomaly detector run after each collection."""

    enabled: bool = Field(True, description="Run the anomaly stage after each collection.")
    selectors: list[str] = Field(
        default_factory=lambda: [
            "host_cpu_utilization_ratio",
            "gpu_utilization_ratio",
            "http_request_duration_seconds_p95",
        ],
        description="Series scored for anomalies.",
    )
    step: str = Field("1m", description="Grid the detector sees (bucket average).")
    threshold: float = Field(0.9, gt=0, le=1, description="Score from which a point counts as anomalous in reports.")

    @field_validator("step")
    @classmethod
    def _durations(cls, v: str) -> str:
        return _check_duration(v)


class AlertingSettings(_Section):
    """The alerts flow: rule files evaluated over the lake, notifications routed and delivered."""

    enabled: bool = Field(True, description="Run the alerting stage (rules, notifications) in the alerts flow.")
    rule_files: list[str] = Field(
        default_factory=list,
        description="Rule files or globs in the Prometheus rule-file format (relative to the working directory).",
    )
    notify_config: str | None = Field(
        None,
        description="Notification config (Alertmanager-shaped route/inhibit_rules/time_intervals, Apprise receivers).",
    )
    max_catch_up: str = Field(
        "1h", description="After downtime, evaluate missed rule intervals up to this far back (older ones are skipped)."
    )
    ack_timeout: str = Field("30m", description="How long an acknowledgement holds before the alert re-triggers.")

    @field_validator("max_catch_up", "ack_timeout")
    @classmethod
    def _durations(cls, v: str) -> str:
        return _check_duration(v)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"


class Settings(BaseSettings):
    """Everything cortex-perf can be told. See README's config reference."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: str = Field("data", description="Runtime data root (reports, models).")
    lake: LakeSettings = Field(default_factory=LakeSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    collect: CollectSettings = Field(default_factory=CollectSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    api_token: SecretStr | None = Field(None, description="Bearer token for the REST API.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (file merged with CLI overrides by load_settings) sits *below* env on purpose:
        # load_settings applies CLI overrides itself after env, so the order is
        # defaults < file < env < CLI.
        return (env_settings, init_settings)


class _ResolvedSettings(Settings):
    """Validates an already-merged tree (file + env + overrides) without re-reading the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. lake.root=/tmp/lake")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    # YAML scalars so `--set lake.strict=true` and `--set collect.interval_s=30` get their types.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__") or "(root)"
        msg = e["msg"]
        ctx = e.get("ctx") or {}
        if e["type"] == "literal_error" and "expected" in ctx:
            msg = f"must be one of {ctx['expected']}"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field"
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        # Never echo what might be a secret: secret-ish fields, URLs, and unknown fields (a typo
        # of a secret field's name, e.g. `ulr: redis://:password@host`, would otherwise leak it).
        if (
            "secret" in loc
            or "token" in loc
            or "password" in loc
            or loc.endswith(".url")
            or e["type"] == "extra_forbidden"
            or _CREDENTIALS_IN_URL.search(shown)
        ):
            shown = ""
        lines.append(f"  {loc}: {msg}{shown}")
    return "\n".join(lines)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file in force: explicit > $CORTEX_PERF_CONFIG > ./cortex-perf.yaml (if present)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("CORTEX_PERF_CONFIG")
    if env:
        return Path(env)
    p = Path(DEFAULT_CONFIG_FILE)
    return p if p.exists() else None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Settings:
    """Load settings with precedence defaults < file < environment < overrides.

    Raises ``ConfigError`` naming each bad field and, for choices, the allowed values.
    """
    file = config_path(path)
    data: dict[str, Any] = {}
    origin = "defaults"
    if file is not None:
        if not file.exists():
            raise ConfigError(f"config file {file} does not exist")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded
        origin = str(file)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin + " + environment")) from None
    except SettingsError as exc:
        # e.g. CORTEX_PERF_LAKE='{not json' : pydantic-settings fails before validation.
        raise ConfigError(f"invalid configuration (environment): {exc} (complex values must be JSON)") from None
    if overrides:
        items = overrides.items() if isinstance(overrides, dict) else map(_parse_override, overrides)
        merged = settings.model_dump(mode="python")
        _unwrap_secrets(merged)
        for key, value in items:
            _set_dotted(merged, key, value)
        try:
            settings = _ResolvedSettings(**merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "command-line overrides")) from None
    return settings


def _unwrap_secrets(tree: dict[str, Any]) -> None:
    for k, v in list(tree.items()):
        if isinstance(v, SecretStr):
            tree[k] = v.get_secret_value()
        elif isinstance(v, dict):
            _unwrap_secrets(v)
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    _unwrap_secrets(item)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret shown as ``'**********'`` (for `config show`)."""
    return settings.model_dump(mode="json")
