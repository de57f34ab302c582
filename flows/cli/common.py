"""What every ``cortex-perf`` command group shares: the consoles, the one-line errors, the global
options (``CliState``: settings, lake and state built once per command) and the output helpers.

Why one module: the command groups (``flows/cli/<group>.py``) import these and nothing else of the
CLI; the app (``flows/cli/__init__.py``) imports the groups. Nothing imports back, so there is no
import cycle however the groups grow.

Why almost everything of ``tasks`` is imported inside functions (``# lazy (start-up)``): every
command's ``--help`` loads every group, and nearly every domain module pulls polars, duckdb or
pydantic. Measured on top of ``import flows.cli`` (fresh processes, best of 5, 2026-12-07): polars
+0.50 s, ``tasks.config`` +0.37 s, ``tasks.lake`` +0.56 s, ``tasks.config_checks`` +1.1 s,
``tasks.alerting.listing`` +1.1 s, ``tasks.reports`` +1.6 s, ``tasks.scaling.service`` +3.0 s, the
flow modules (Prefect) 7–9 s; all of ``tasks`` that the groups use +3.9 s, with the flows +7.4 s,
against 0.53 s for the whole of ``cortex-perf --help`` today (BENCHMARKS.md, "CLI start-up").
Only what costs nothing measurable (``rich.progress``, +17 ms) is imported at the top.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.output import DataTable, escape

if TYPE_CHECKING:
    from tasks.config import Settings
    from tasks.lake import Lake
    from tasks.state import State

__all__ = [
    "REPO_ROOT",
    "CliError",
    "CliState",
    "announce_prefect",
    "cli_state",
    "console",
    "err_console",
    "fail",
    "fmt_value",
    "handle_errors",
    "human_bytes",
    "prepare_prefect_env",
    "print_json",
    "tables_table",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
EPHEMERAL_STARTUP_TIMEOUT_S = "120"

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


# ---- environment -------------------------------------------------------------------------------
def default_prefect_home() -> Path:
    """``<checkout>/.prefect``: each checkout gets its own Prefect database and settings."""
    root = REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / ".prefect"


def prepare_prefect_env(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Set Prefect's environment before Prefect is imported; values already set are kept."""
    env = os.environ if environ is None else environ
    env.setdefault("PREFECT_HOME", str(default_prefect_home()))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_S)
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The project's own root on the path of flow-run subprocesses (`serve`, workers).
    env.setdefault("PROJECT_DIR", str(REPO_ROOT))


def announce_prefect() -> None:
    """Say on stderr that Prefect is about to start a temporary server, which takes seconds."""
    if not os.environ.get("PREFECT_API_URL"):
        err_console.print(
            "[dim]No PREFECT_API_URL set:[/dim] Starting a temporary Prefect server (15–25 s)…",
            highlight=False,
        )


# ---- errors ------------------------------------------------------------------------------------
class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` as one ``error:`` line on stderr (user text escaped) and exit ``code``."""
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures (bad config, selector, file, duration...) into one line + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except CliError as exc:
            fail(str(exc), exc.code)
        except Exception as exc:
            if os.environ.get("CORTEX_PERF_DEBUG"):
                raise
            from tasks.config import ConfigError  # lazy (start-up): pulls pydantic, ~0.4 s

            if isinstance(exc, ConfigError):
                # config messages are multi-line on purpose (one line per bad field)
                err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            known = isinstance(exc, ValueError | OSError | LookupError)
            prefix = "" if known else f"{type(exc).__name__}: "
            fail(prefix + _one_line(exc) + ("" if known else " (CORTEX_PERF_DEBUG=1 shows the traceback)"))
        except BaseException as exc:
            # A Rust library's panic (polars, via pyo3) is a BaseException: one line, not a traceback.
            if type(exc).__name__ != "PanicException" or os.environ.get("CORTEX_PERF_DEBUG"):
                raise
            fail(f"internal error in a library: {_one_line(exc)} (CORTEX_PERF_DEBUG=1 shows the traceback)")

    return wrapper


# ---- global options ----------------------------------------------------------------------------
@dataclass
class CliState:
    """The global options (``--config``, ``--set``) and what a command builds from them, once: the
    settings, the lake and the state DB are each made on first use and handed to every later call,
    so one command reads its config once (the composition root of a CLI command)."""

    config: Path | None = None
    overrides: list[str] = field(default_factory=list)
    _settings: Settings | None = field(default=None, init=False, repr=False)
    _lake: Lake | None = field(default=None, init=False, repr=False)
    _state: State | None = field(default=None, init=False, repr=False)

    @property
    def config_arg(self) -> str | None:
        return str(self.config) if self.config else None

    def settings(self) -> Settings:
        if self._settings is None:
            from tasks.config_checks import load_checked_settings  # lazy (start-up): polars, duckdb, pydantic

            self._settings = load_checked_settings(self.config, self.overrides or None)
        return self._settings

    def flow_overrides(self) -> AbstractContextManager[list[str] | None]:
        """``with st.flow_overrides() as overrides:`` the ``--set`` values to hand a flow as parameters;
        those carrying a secret reach it through the environment instead (Prefect stores parameters)."""
        from tasks.config import secret_overrides_stashed  # lazy (start-up): pydantic

        return secret_overrides_stashed(self.overrides)

    @contextmanager
    def flow_inputs(self) -> Iterator[list[str] | None]:
        """``with st.flow_inputs() as overrides:`` as :meth:`flow_overrides`, and a flow this command
        then calls in this process runs on the settings, lake and state the command already built
        (``flows._common.handed_down``): one command, one load of the config."""
        # lazy (start-up): flows._common pulls the domain checks (polars, duckdb); only flow commands need it
        from flows._common import Runtime, handed_down

        rt = Runtime(self.settings(), self.lake(), self.state())
        with self.flow_overrides() as overrides, handed_down(self.config_arg, overrides, rt):
            yield overrides

    def lake(self) -> Lake:
        if self._lake is None:
            from tasks.lake import Lake  # lazy (start-up): polars

            self._lake = Lake.from_settings(self.settings())
        return self._lake

    def state(self) -> State:
        """The state DB (alerts, silences, acks, outbox, registry): opened per transaction, never held."""
        if self._state is None:
            from tasks.state import State  # lazy (start-up): duckdb

            self._state = State.from_settings(self.settings())
        return self._state


def cli_state(ctx: typer.Context) -> CliState:
    """The global options the app's callback stored on ``ctx`` (defaults when a command runs alone)."""
    return ctx.obj if isinstance(ctx.obj, CliState) else CliState()


# ---- formatting helpers ------------------------------------------------------------------------
def human_bytes(n: int | float | None) -> str:
    v = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e7 or abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, datetime):
        return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else str(v)


def tables_table(tables: dict[str, dict[str, Any]], title: str = "Lake") -> Table:
    t = DataTable(title=title, title_justify="left")
    t.add_column("table")
    for col in ("rows", "files", "size", "series"):
        t.add_column(col, justify="right")
    t.add_column("oldest")
    t.add_column("newest")
    for name, e in tables.items():
        t.add_row(
            name,
            f"{e.get('rows', 0):,}",
            f"{e.get('files', 0):,}",
            human_bytes(e.get("bytes")),
            f"{e.get('series', 0):,}",
            (e.get("oldest") or "")[:19].replace("T", " "),
            (e.get("newest") or "")[:19].replace("T", " "),
        )
    return t


def print_json(obj: Any) -> None:
    # print() rather than rich: machine-readable output must not be wrapped or coloured
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
