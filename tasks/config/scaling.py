"""The scaling section: targets, their policy fields and guard rails, load metric and actuator.

Why here and not in ``tasks.scaling``: the settings are a leaf every layer reads, so the plain
models of a target (``ScalingTarget``: capacity, costs, SLO, delay, policy; ``GuardRails``: the
limits its decisions pass through) live with the settings and the policies import them from here.
Each model checks its own fields; what needs another package — whether a metric's selector and
aggregation parse (the lake), whether an actuator kind exists and its config is valid (the
actuators) — is checked by ``tasks.scaling.settings_check``, which every loader runs
(``tasks.config_checks``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.config.section import Section, check_duration

__all__ = ["GuardRails", "ScalingMetricSettings", "ScalingSettings", "ScalingTarget", "ScalingTargetSettings"]


class GuardRails(BaseModel):
    """The limits one target's decisions pass through (defaults: the HPA's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_units: int = Field(1, ge=0)
    max_units: int = Field(1000, ge=1)
    scale_up_percent: float = Field(100.0, ge=0)
    scale_up_units: int = Field(4, ge=0)
    scale_up_period_s: float = Field(15.0, gt=0)
    scale_up_stabilisation_s: float = Field(0.0, ge=0)
    scale_down_percent: float = Field(100.0, ge=0, le=100)
    scale_down_period_s: float = Field(15.0, gt=0)
    scale_down_stabilisation_s: float = Field(300.0, ge=0)
    scale_up_cooldown_s: float = Field(0.0, ge=0)
    scale_down_cooldown_s: float = Field(0.0, ge=0)
    max_changes: int = Field(0, ge=0, description="changes allowed per rate_window_s; 0 = no limit")
    rate_window_s: float = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _min_le_max(self) -> GuardRails:
        if self.min_units > self.max_units:
            raise ValueError(f"min_units ({self.min_units}) must not exceed max_units ({self.max_units})")
        if self.scale_up_percent == 0 and self.scale_up_units == 0:
            raise ValueError("scale_up_percent and scale_up_units are both 0: the target could never scale up")
        return self


class ScalingTarget(BaseModel):
    """One thing that scales, as configured: capacity, costs, SLO, delay, policy and guard rails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["replicas", "memory", "gpu"] = "replicas"
    capacity_per_unit: float = Field(gt=0, description="load one unit serves at its SLO (metric units)")
    provisioning_delay_s: float = Field(60.0, ge=0)
    interval_s: float = Field(15.0, gt=0, description="how often decisions are made")
    cost_per_unit_hour: float = Field(1.0, gt=0)
    shortage_penalty_per_unit_hour: float = Field(
        19.0, gt=0, description="price of one unit-hour short (19 × the unit cost: the p95 of the forecast)"
    )
    policy: Literal["reactive", "predictive", "hybrid", "static"] = "predictive"
    target_utilisation: float = Field(0.7, gt=0, le=1, description="the HPA's target (0.7 = 70 %)")
    tolerance: float = Field(0.1, ge=0, lt=1)
    hybrid_floor_utilisation: float = Field(0.75, gt=0, le=1, description="hybrid: the reactive floor's utilisation")
    predictive_headroom: float = Field(1.1, ge=1, description="capacity ordered = forecast quantile × this")
    predictive_median_headroom: float = Field(
        1.3, ge=1, description="capacity ordered ≥ the forecast median × this (a relative margin; 1 = off)"
    )
    predictive_stabilisation_s: float | None = Field(
        90.0, ge=0, description="scale-down stabilisation while the forecast is trusted; None: the rails' window"
    )
    hold_after_miss_s: float = Field(300.0, ge=0, description="scale-down stabilisation after a forecast miss")
    ramp_gain: float = Field(3.0, ge=0, description="ramp-aware headroom: 0 = off, 1 = extrapolate the ramp fully")
    ramp_window_s: float = Field(180.0, gt=0, description="history the ramp rate is measured over")
    ramp_min_rate: float = Field(0.0, ge=0, description="growth per minute below which no ramp is assumed")
    ramp_max_headroom: float = Field(1.5, ge=1, description="cap on the ramp-aware multiplier")
    ramp_noise_k: float = Field(5.0, ge=0, description="ramp counted = slope − k × its counting-noise standard error")
    forecast_max_age_s: float = Field(120.0, gt=0)
    miss_window: int = Field(20, ge=1)
    miss_limit: int = Field(6, ge=1)
    emergency_utilisation: float | None = Field(1.5, gt=1, description="None: off")
    emergency_miss_ratio: float | None = Field(1.5, gt=1, description="None: off")
    emergency_headroom: float = Field(1.5, ge=1, description="an emergency orders load × this")
    actuator: str = Field("log", min_length=1)
    rails: GuardRails = GuardRails()

    @model_validator(mode="after")
    def _checks(self) -> ScalingTarget:
        if self.miss_limit > self.miss_window:
            raise ValueError(f"miss_limit ({self.miss_limit}) must not exceed miss_window ({self.miss_window})")
        return self


class ScalingMetricSettings(Section):
    """The load a target follows, read from the lake: ``combine(agg(selector) per step bucket)``.

    Why so small a language: ``sum(rate(http_requests_total[1m]))`` is what nearly every scaling
    metric is; a selector, a bucket aggregation, a step and a cross-series combination say it
    without a second query engine (the alert rules have the PromQL one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: str = Field(..., min_length=1, description="Series selector, e.g. 'http_requests_total{job=\"api\"}'.")
    agg: str = Field("avg", description="Per-bucket aggregation: a lake one (avg, max, p95, ...), rate or increase.")
    combine: Literal["sum", "avg", "max"] = Field("sum", description="How matching series add up to one load.")
    step: str = Field("1m", description="Bucket size of the load series (the nowcaster wants 1m).")
    lookback: str = Field("6h", description="History read each tick (the nowcaster needs about 4 h of it).")
    forecast: Literal["auto", "lake", "nowcast", "none"] = Field(
        "auto",
        description="auto: the forecast flow's forecasts when fresh ones exist (agg avg only), else the nowcaster.",
    )
    forecast_max_age: str = Field("2h", description="Lake forecasts issued longer ago than this are not used.")

    @field_validator("step", "lookback", "forecast_max_age")
    @classmethod
    def _durations(cls, v: str) -> str:
        return check_duration(v)


class ScalingTargetSettings(ScalingTarget):
    """One scaling target: the policy's ``ScalingTarget`` fields, the load ``metric`` and the ``actuator``.

    ``actuator`` here is the actuator's config (``{kind: log|command|webhook|prefect_pool|kubernetes|
    process_pool|<a plug-in's kind>, ...}``), a plain mapping: the kinds and their fields belong to
    ``tasks.actuators``, which checks it (``tasks.scaling.settings_check``, run by every loader).
    :meth:`policy_target` gives the policy its ``ScalingTarget`` with the actuator's name in its place."""

    metric: ScalingMetricSettings
    actuator: dict[str, Any] = Field(  # type: ignore[assignment]  # the policy keeps only the name
        default_factory=lambda: {"kind": "log"}, description="Actuator config, validated by its kind."
    )

    @field_validator("actuator", mode="before")
    @classmethod
    def _actuator(cls, v: Any) -> Any:
        """A mapping (its kind and fields are the actuators' to check); nothing means ``log``."""
        if v is None:
            return {"kind": "log"}
        if not isinstance(v, Mapping):
            raise ValueError(f"expected a mapping with a 'kind', got {type(v).__name__}")
        return dict(v)

    @property
    def actuator_name(self) -> str:
        """The ledger name of this target's actuator (its ``name``, else its kind)."""
        return str(self.actuator.get("name") or self.actuator.get("kind") or "log")

    def policy_target(self) -> ScalingTarget:
        """The target as the policy sees it (no metric; the actuator by name)."""
        data = {k: getattr(self, k) for k in ScalingTarget.model_fields if k != "actuator"}
        return ScalingTarget(**data, actuator=self.actuator_name)


class ScalingSettings(Section):
    """The scale flow: targets, their load metric, policy, guard rails and actuator."""

    enabled: bool = Field(True, description="Run the scaling stage (the scale flow decides for every target).")
    mode: Literal["dry-run", "apply"] = Field(
        "dry-run", description="dry-run records decisions only; apply sets counts through the actuators."
    )
    targets: list[ScalingTargetSettings] = Field(
        default_factory=list, description="Scaling targets (policy fields + metric + actuator; see README)."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ScalingSettings:
        """Target names key the ledger, the policy state and the events: two alike would share them."""
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"targets: duplicate target name(s) {', '.join(dupes)}")
        return self

    def target(self, name: str) -> ScalingTargetSettings:
        """The target called ``name``; a ``LookupError`` listing the known ones otherwise."""
        for t in self.targets:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.targets) or "none configured"
        raise LookupError(f"scaling target {name!r} is not configured (known: {known})")
