"""Settings checks that need a domain package's own rules: lake tables, selectors, reports,
scaling metrics and actuators.

Why outside ``tasks/config``: the settings package is a leaf (plain models, no domain imports), but
whether ``forecast.selectors`` parse, which tables ``lake.retention_days`` may name, which reports
and report parameters exist, or which actuator kinds are installed (plug-ins included) and what
their configs take is known only to the lake, the reports and the actuators. Each domain keeps its
one validator (``tasks.reports.reports_settings_problems``, ``tasks.scaling.settings_check``);
this module asks each of them and turns the answers into one ``ConfigError`` naming every bad field.
``load_checked_settings`` is what the CLI and the flows load settings with, so ``config check`` and
every command refuse the same values.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tasks.config import ConfigError, Settings, load_settings
from tasks.config.settings import config_path
from tasks.lake.maintain import retention_problems
from tasks.lake.selector import parse_selector
from tasks.reports import reports_settings_problems
from tasks.scaling.settings_check import scaling_settings_problems, with_typed_actuators

__all__ = ["check_settings", "load_checked_settings", "settings_problems"]


def _retention(settings: Settings) -> list[str]:
    return retention_problems(settings.lake.retention_days)


def _selectors(settings: Settings) -> list[str]:
    out = []
    for section, selectors in (("forecast", settings.forecast.selectors), ("anomaly", settings.anomaly.selectors)):
        for i, sel in enumerate(selectors):
            try:
                parse_selector(sel)
            except ValueError as exc:
                out.append(f"{section}.selectors[{i}]: {exc}")
    return out


def _reports(settings: Settings) -> list[str]:
    return reports_settings_problems(settings.reports)


def _scaling(settings: Settings) -> list[str]:
    return scaling_settings_problems(settings.scaling)


#: One entry per domain rule; each returns ``"field: what is wrong"`` lines.
_CHECKS: tuple[Callable[[Settings], list[str]], ...] = (_retention, _selectors, _reports, _scaling)


def settings_problems(settings: Settings) -> list[str]:
    """Every cross-domain problem of ``settings``, one ``field: message`` line each (empty: fine)."""
    return [line for check in _CHECKS for line in check(settings)]


def check_settings(settings: Settings, origin: str = "configuration") -> Settings:
    """``settings`` when every domain accepts it; a ``ConfigError`` listing each bad field otherwise.

    The settings returned hold each scaling target's actuator config as its kind's model gives it
    (defaults filled in, secrets as ``SecretStr``), which only the actuators can produce."""
    problems = settings_problems(settings)
    if problems:
        raise ConfigError("\n".join([f"invalid configuration ({origin}):", *(f"  {p}" for p in problems)]))
    return settings.model_copy(update={"scaling": with_typed_actuators(settings.scaling)})


def load_checked_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Settings:
    """``load_settings`` plus the domain checks: the one way commands and flows load settings."""
    settings = load_settings(path, overrides)
    file = config_path(path)
    origin = f"{file or 'defaults'} + environment" + (" + command-line overrides" if overrides else "")
    return check_settings(settings, origin)
