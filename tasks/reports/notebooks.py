"""The report notebooks: which exist, where their source is, which parameters each takes, and the
check of the ``reports`` settings section against them.

Why here, not in the settings: only the reports know their notebooks; the settings are a leaf, and
the one check every loader runs (``tasks.config_checks``) asks ``reports_settings_problems``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.analytics import ReportError
from tasks.config import ReportsSettings, Settings

__all__ = [
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "RESERVED_PARAMETERS",
    "check_name",
    "check_parameters",
    "notebook_parameters",
    "notebook_path",
    "reports_dir",
    "reports_settings_problems",
]


NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


#: The report notebooks the flow and CLI know, with what each is for.
NOTEBOOKS: dict[str, str] = {
    "performance_report": "Latency percentiles, headroom, top consumers, anomalies, alerts, scaling.",
    "alert_review": "Alert volume per rule, firing→resolved durations, MTTA/MTTR, noisy and flapping rules.",
    "capacity_planning": "Forecasts with intervals against capacity, when each series runs out, what scaling did.",
    "forecast_accuracy": "Forecast errors per model and series (MAE, MAPE, bias, interval coverage), champion history.",
}


def check_name(name: str) -> None:
    if name not in NOTEBOOKS:
        raise ReportError(f"notebook: unknown report {name!r} (known: {', '.join(sorted(NOTEBOOKS))})")


def notebook_path(name: str) -> Path:
    """The source ``.ipynb`` of report ``name``."""
    check_name(name)
    return NOTEBOOK_DIR / f"{name}.ipynb"


def reports_dir(settings: Settings) -> Path:
    """``<data_dir>/reports`` of the settings (created): the one place reports are written."""
    out = Path(settings.data_dir) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    return out


def notebook_parameters(name: str) -> dict[str, Any]:
    """The parameters cell of report ``name``: ``{parameter: its default}`` (papermill's reading)."""
    # lazy: papermill costs +0.86 s on top of tasks.config_checks, which imports this package for every
    # settings load (measured 2026-12-07).
    import papermill as pm

    found = pm.inspect_notebook(str(notebook_path(name)))
    return {k: v.get("default") for k, v in found.items()}


#: Notebook parameters every report run sets itself; a per-report override would make the notebook
#: show another window or lake than the file name and the result say.
RESERVED_PARAMETERS = ("lake_root", "since", "until", "state_path")


def check_parameters(name: str, parameters: Mapping[str, Any], origin: str = "parameters") -> None:
    """Reject a parameter the notebook does not declare (papermill would only warn and ignore it)."""
    reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
    if reserved:
        raise ReportError(
            f"{origin}.{name}.{reserved[0]}: set by the report run itself (the window and the lake); "
            "use reports.since, --since/--until or lake.root instead"
        )
    known = notebook_parameters(name)
    bad = sorted(set(parameters) - set(known))
    if bad:
        raise ReportError(
            f"{origin}.{name}.{bad[0]}: report {name!r} has no such parameter (known: {', '.join(sorted(known))})"
        )


def reports_settings_problems(cfg: ReportsSettings) -> list[str]:
    """Every problem of the ``reports`` settings section, one ``field: message`` line each: reports
    that do not exist, and per-report parameters the run sets itself or the notebook lacks.

    Why here: only the reports know their notebooks; the settings are a leaf, and the one check
    every loader runs (``tasks.config_checks``) asks this. Notebooks are read only when
    ``parameters`` are set."""
    out = []
    known = ", ".join(sorted(NOTEBOOKS))
    for field_name, names in (("notebooks", list(cfg.notebooks)), ("parameters", list(cfg.parameters))):
        bad = [n for n in names if n not in NOTEBOOKS]
        if bad:
            out.append(f"reports.{field_name}: unknown report(s) {', '.join(map(repr, bad))} (known: {known})")
    for name, params in cfg.parameters.items():
        if name not in NOTEBOOKS:
            continue
        reserved = sorted(set(params) & set(RESERVED_PARAMETERS))
        if reserved:
            why = "is set by the report run itself (use reports.since, lake.root)"
            out.append(f"reports.parameters: {name}.{reserved[0]} {why}")
            continue
        try:
            check_parameters(name, params, origin="reports.parameters")
        except ReportError as exc:
            out.append(str(exc))
    return out
