"""Settings models and the loader.

Why pydantic-settings: one typed object gives defaults, file, environment and overrides the same
validation, so a typo in any of them fails at load with the field's dotted name and the allowed
values instead of surfacing later as a ``KeyError`` deep inside a flow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tasks.config.caching import CacheSettings
from tasks.config.gpu import GpuSettings
from tasks.config.project import CONFIG_FILE, anchor_paths, find_project, project_root
from tasks.config.routing import RouterSettings
from tasks.config.scaling import ScalingSettings
from tasks.config.section import Section, check_duration
from tasks.redact import redact_tree, redact_url

DEFAULT_CONFIG_FILE = CONFIG_FILE
ENV_PREFIX = "CORTEX_PERF_"
# --set overrides that carry a secret, handed to flows outside their parameters (stash_secret_overrides)
SECRET_OVERRIDES_ENV = "CORTEX_PERF_SECRET_OVERRIDES"
SECRET_WORDS = ("secret", "token", "password")


class ConfigError(ValueError):
    """Raised when the configuration cannot be loaded; the message names every bad field."""


class LakeSettings(Section):
    """Where the metric lake lives and how strictly it takes data in."""

    root: str = Field("data/lake", description="Lake root: a directory or a URL (file://, s3://bucket/prefix).")
    strict: bool = Field(False, description="Reject a whole batch when any row is bad (default: keep good rows).")
    max_labels_per_series: int = Field(32, ge=1, le=256)
    max_label_value_length: int = Field(2048, ge=1)
    max_series_per_metric: int = Field(
        10_000, ge=1, description="Cardinality limit: new series beyond it are rejected."
    )
    max_future_skew_s: float = Field(3600.0, ge=0, description="Samples further in the future are rejected.")
    retention_days: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {
            "samples": 30,
            "rollup_1m": 90,
            "rollup_5m": 365,
            "rollup_1h": 1825,
            "events": 90,
            "router_outcomes": 30,
            "series": 3650,
        },
        description="Days to keep per table (at least 1); partitions older than this are dropped by maintenance.",
    )
    memory_limit: str = Field(
        "1GB",
        pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB memory ceiling for lake queries and maintenance; beyond it they spill to disk.",
    )
    compact_min_files: int = Field(4, ge=2, description="Compact a partition once it has this many files.")
    import_chunk_rows: int = Field(
        500_000, ge=1, description="`lake import` reads, checks and stages this many rows at a time (bounds memory)."
    )
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL (MinIO, R2, ...).")
    s3_region: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    @field_validator("root")
    @classmethod
    def _root_not_blank(cls, v: str) -> str:
        """An empty root would put the lake in the working directory, wherever that happens to be."""
        if not v.strip():
            raise ValueError("must not be empty (a directory or a URL such as s3://bucket/prefix)")
        return v


class StateSettings(Section):
    """The DuckDB file that holds mutable state (alerts, registry, queues)."""

    path: str = Field("data/state.duckdb")
    lock_timeout_s: float = Field(30.0, gt=0, description="Give up acquiring the state DB after this long.")


class HostSourceSettings(Section):
    enabled: bool = True
    per_cpu: bool = True
    disk_paths: list[str] = Field(default_factory=lambda: ["/"])
    host_label: str | None = Field(None, description="Value of the `host` label (default: the hostname).")
    cpu_interval_s: float = Field(
        0.1, ge=0, le=5, description="Window over which CPU utilisation is measured on the first reading."
    )


class GpuSourceSettings(Section):
    enabled: bool = True


class RedisSourceSettings(Section):
    enabled: bool = False
    url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"), description="redis:// URL (may hold a password).")
    cluster: bool = Field(False, description="Also read INFO from every node of a Redis Cluster.")
    name: str = Field("default", description="Value of the `redis` label.")
    timeout_s: float = Field(5.0, gt=0, description="Connect and read timeout per Redis node.")
    extra_info_fields: list[str] = Field(
        default_factory=list,
        description="More numeric INFO fields to export as gauges `redis_<field>` (names sanitised).",
    )


class PrometheusTarget(Section):
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


class PrefectSourceSettings(Section):
    enabled: bool = True
    api_url: str | None = Field(
        None, description="Prefect API to read flow runs from (default: Prefect's own PREFECT_API_URL)."
    )
    lookback_minutes: int = Field(60, ge=1)
    limit: int = Field(200, ge=1)


class SourcesSettings(Section):
    host: HostSourceSettings = Field(default_factory=HostSourceSettings)
    gpu: GpuSourceSettings = Field(default_factory=GpuSourceSettings)
    redis: RedisSourceSettings = Field(default_factory=RedisSourceSettings)
    prometheus: list[PrometheusTarget] = Field(default_factory=list)
    prefect: PrefectSourceSettings = Field(default_factory=PrefectSourceSettings)


class CollectSettings(Section):
    interval_s: float = Field(60.0, gt=0)
    source_timeout_s: float = Field(10.0, gt=0, description="A source slower than this is abandoned for the tick.")


class ForecastSettings(Section):
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
        return check_duration(v)


class AnomalySettings(Section):
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
        return check_duration(v)


class AlertingSettings(Section):
    """The alerts flow: rule files evaluated over the lake, notifications routed and delivered."""

    enabled: bool = Field(True, description="Run the alerting stage (rules, notifications) in the alerts flow.")
    rule_files: list[str] = Field(
        default_factory=list,
        description="Rule files or globs in the Prometheus rule-file format (relative to the project root).",
    )
    notify_config: str | None = Field(
        None,
        description="Notification config (Alertmanager-shaped route/inhibit_rules/time_intervals, Apprise receivers).",
    )
    max_catch_up: str = Field(
        "1h", description="After downtime, evaluate missed rule intervals up to this far back (older ones are skipped)."
    )
    ack_timeout: str = Field("30m", description="How long an acknowledgement holds before the alert re-triggers.")
    delivery_lease: str = Field(
        "60s",
        description="A run sending a notification holds it this long, renewed every third of it while the run "
        "lives; another run resends it (once, as a possible duplicate) only after the lease ran out and, on the "
        "same host, the run's process is gone.",
    )

    @field_validator("max_catch_up", "ack_timeout", "delivery_lease")
    @classmethod
    def _durations(cls, v: str) -> str:
        return check_duration(v)


class ReportsSettings(Section):
    """The report flow and ``cortex-perf report``: which notebooks, over which window, mailed where.

    Why settings and not only flow parameters: the scheduled deployment, the CLI and ``run`` read
    the same section, so a team sets its report once (window, mail receiver, per-notebook filters)
    instead of repeating it in every deployment's parameters.
    """

    enabled: bool = Field(
        True, description="Run the report flow (its schedule and the report stage of `cortex-perf run`)."
    )
    notebooks: list[str] = Field(
        default_factory=list,
        description="Reports to render (names in `notebooks/`); empty: every report.",
    )
    since: str = Field("7d", description="Default window: how far back a report looks (a duration such as 1d, 7d).")
    email_to: SecretStr | None = Field(
        None, description="Apprise URL(s), e.g. `mailto://…`, that get every rendered report attached (secret)."
    )
    parameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Extra notebook parameters per report, e.g. `{capacity_planning: {capacity: 0.8}}`.",
    )
    show_code: bool = Field(False, description="Keep the code cells in the HTML (default: hidden).")
    timeout_s: int = Field(600, ge=10, description="Longest one notebook cell may run before the report fails.")
    keep_days: int = Field(90, ge=1, description="Rendered reports older than this are deleted after each run.")

    @field_validator("since")
    @classmethod
    def _since(cls, v: str) -> str:
        return check_duration(v)


class LoggingSettings(Section):
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
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    gpu: GpuSettings = Field(default_factory=GpuSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
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


def _may_be_secret(key: str, text: str) -> bool:
    """A setting whose name says secret, token or password, or a value holding URL credentials."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS) or redact_url(text) != text


def is_secret_override(item: str) -> bool:
    """Whether a ``--set key=value`` carries a secret (by the key's name or URL credentials in the value)."""
    key, _, raw = item.partition("=")
    return _may_be_secret(key, raw)


@contextmanager
def secret_overrides_stashed(overrides: list[str] | None) -> Iterator[list[str] | None]:
    """Within the block, the overrides that carry a secret live in this process's environment;
    yields the others (``None`` when there are none left), to be handed to a flow as parameters.

    Why: the CLI hands ``--set`` overrides to a flow as its parameters, and Prefect stores a run's
    parameters in its database (and shows them in the UI). A secret given on the command line must
    reach the flow without being a parameter: the environment is seen by a flow that runs in this
    process and inherited by the subprocesses ``serve`` starts, and ``load_settings`` applies the
    stashed overrides last, so ``--set`` still beats file and environment. The previous value is
    restored afterwards, so nothing outlives the command.
    """
    items = list(overrides or [])
    secret = [o for o in items if is_secret_override(o)]
    public = [o for o in items if o not in secret]
    before = os.environ.get(SECRET_OVERRIDES_ENV)
    if secret:
        os.environ[SECRET_OVERRIDES_ENV] = json.dumps(secret)
    try:
        yield public or None
    finally:
        if secret:
            if before is None:
                os.environ.pop(SECRET_OVERRIDES_ENV, None)
            else:
                os.environ[SECRET_OVERRIDES_ENV] = before


def _stashed_overrides() -> list[str]:
    raw = os.environ.get(SECRET_OVERRIDES_ENV)
    if not raw:
        return []

    try:
        items = json.loads(raw)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{SECRET_OVERRIDES_ENV} must be a JSON list of KEY=VALUE strings")
    return items


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
    """``err`` as ``invalid configuration (<origin>):`` and one indented ``field: message`` line per error."""
    return "\n".join([f"invalid configuration ({origin}):", *(f"  {line}" for line in validation_problems(err))])


def validation_problems(err: ValidationError) -> list[str]:
    """One ``field: message (got value)`` line per error of ``err``, the value left out where it
    might be a secret; for models validated outside the settings (actuator configs) to report
    their fields the way the settings do."""
    lines = []
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
        if _may_be_secret(loc, shown) or loc.endswith(".url") or e["type"] == "extra_forbidden":
            shown = ""
        lines.append(f"{loc}: {msg}{shown}")
    return lines


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file in force: explicit > $CORTEX_PERF_CONFIG > the project's cortex-perf.yaml (the
    nearest one from the working directory up to the project's top; see ``tasks.config.project``)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("CORTEX_PERF_CONFIG")
    if env:
        return Path(env)
    return find_project()[1]


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Settings:
    """Load settings with precedence defaults < file < environment < overrides.

    Relative paths from the file and the environment are resolved against the project root (the
    config file's folder, or the repository root; ``tasks.config.project``), so a kernel started in
    ``notebooks/`` reads the same lake as the CLI; overrides (``--set``) stay relative to the
    working directory, as command-line paths are. Raises ``ConfigError`` naming each bad field and,
    for choices, the allowed values.
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
    given = overrides.items() if isinstance(overrides, dict) else map(_parse_override, overrides or [])
    # secrets given with --set come last (secret_overrides_stashed): they beat file and env too
    items = [*given, *map(_parse_override, _stashed_overrides())]
    root = project_root(file)
    # Anchored only when the root is not the working directory: there a relative path already means
    # the same, and the settings keep the short form people wrote (and `config show` prints).
    moved = root.resolve() != Path.cwd().resolve()
    if items or moved:
        merged = settings.model_dump(mode="python")
        unwrap_secrets(merged)
        if moved:
            anchor_paths(merged, root)
        for key, value in items:
            _set_dotted(merged, key, value)
        try:
            settings = _ResolvedSettings(**merged)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "command-line overrides")) from None
    return settings


def unwrap_secrets(tree: dict[str, Any]) -> None:
    """Replace every ``SecretStr`` in a ``model_dump`` tree by its value, in place (for re-validation
    or a hand-off that must carry the secret, never for printing)."""
    for k, v in list(tree.items()):
        if isinstance(v, SecretStr):
            tree[k] = v.get_secret_value()
        elif isinstance(v, dict):
            unwrap_secrets(v)
        elif isinstance(v, list):
            for item in v:
                if isinstance(item, dict):
                    unwrap_secrets(item)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret shown as ``'**********'`` and the credentials
    of every URL masked (a scrape URL ``http://u:PW@host`` is a plain string field), for `config show`."""
    return dict(redact_tree(settings.model_dump(mode="json")))
