"""``cortex-perf router set|reset|overrides``: routing weights and resilience settings as actions.

Parsing and printing only: the change is validated, recorded and applied once by
``tasks.routing.overrides`` (the ``router_settings`` actuator); a running ``router serve`` lays the
stored overrides over its config at its next reload (``router.service.reload_s``), no restart.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.cli.common import CliError, cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable, escape

__all__ = ["overrides_cmd", "reset_cmd", "set_cmd"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the change (from → to); store nothing.")]
ScopeArg = Annotated[str, typer.Argument(help="`router`, a pool (`POOL`) or a target (`POOL/TARGET`).")]


def _parse_changes(pairs: list[str]) -> dict[str, Any]:
    import yaml  # lazy (start-up): see flows/cli/common.py

    changes: dict[str, Any] = {}
    for pair in pairs:
        field, eq, raw = pair.partition("=")
        if not eq or not field:
            raise CliError(f"changes: {pair!r} is not FIELD=VALUE (e.g. weight=2, breaker.failure_rate_threshold=30)")
        try:
            changes[field.strip()] = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            raise CliError(f"{field}: {raw!r} is not a value (a number, true/false, or text)") from None
    return changes


@handle_errors
def set_cmd(
    ctx: typer.Context,
    scope: ScopeArg,
    changes: Annotated[
        list[str],
        typer.Argument(
            help="FIELD=VALUE: weight, capacity, cost (target); strategy (pool, router); "
            "breaker.*, ejection.*, retry.*, learned.*, panic_threshold_percent (router)."
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the action).")] = "set by hand",
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Change routing weights, capacities, strategies or breaker/ejection/retry settings, recorded as
    a `router_settings` action (applied once; `action.applied` in the lake). A running router picks
    the change up at its next reload; `router reset` undoes it."""
    # lazy (start-up): see flows/cli/common.py
    from tasks.routing.overrides import OverrideError, apply_settings_action, settings_action

    st = cli_state(ctx)
    settings = st.settings()
    try:
        action = settings_action(settings.router, scope, _parse_changes(changes), reason=reason)
    except OverrideError as exc:
        raise CliError(str(exc)) from None
    result = apply_settings_action(action, state=st.state(), lake=None if dry_run else st.lake(), dry_run=dry_run)
    if json_out:
        print_json({"action": action.payload(), "result": result.to_dict()})
    else:
        t = DataTable(title=f"{escape(scope)}: {result.status}", title_justify="left")
        for col in ("field", "from", "to"):
            t.add_column(col, justify="left", overflow="fold")
        before = action.from_ if isinstance(action.from_, dict) else {}
        assert isinstance(action.to, dict)
        for field, value in action.to.items():
            t.add_row(field, str(before.get(field)), str(value))
        console.print(t)
        if result.error:
            console.print(f"[red]{escape(result.error)}[/red]")
    if not result.ok:
        raise typer.Exit(1)


@handle_errors
def reset_cmd(
    ctx: typer.Context,
    scope: Annotated[
        str | None, typer.Argument(help="`router`, `POOL` or `POOL/TARGET` (with --all: every one).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every override.")] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Remove overrides set with `router set`: the config's values apply again at the next reload."""
    # lazy (start-up): see flows/cli/common.py
    from tasks.routing.overrides import OverrideError, clear_overrides, load_overrides, parse_scope

    if (scope is None) == (not all_):
        raise CliError("scope: give a SCOPE or --all (not both)")
    st = cli_state(ctx)
    try:
        target = None if all_ else parse_scope(scope or "")
    except OverrideError as exc:
        raise CliError(str(exc)) from None
    found = [o for o in load_overrides(st.state()) if target is None or (o.pool, o.target) == target]
    if dry_run:
        console.print(f"would remove {len(found)} override(s)")
        return
    n = clear_overrides(st.state(), None if all_ else scope)
    console.print(f"removed {n} override(s)")


@handle_errors
def overrides_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The stored routing overrides, and which no longer match a configured pool or target (stale)."""
    from tasks.routing.overrides import effective_settings, load_overrides  # lazy (start-up): see flows/cli/common.py

    st = cli_state(ctx)
    found = load_overrides(st.state())
    _, stale = effective_settings(st.settings().router, found)
    rows = [
        {
            "scope": o.scope,
            "field": o.field,
            "value": o.value,
            "action": o.action_id,
            "set_at": o.set_at.isoformat(),
            "stale": o in stale,
        }
        for o in found
    ]
    if json_out:
        print_json({"overrides": rows})
        return
    if not rows:
        console.print("no overrides (the config's values apply)")
        return
    t = DataTable(title="router overrides", title_justify="left")
    for col in ("scope", "field", "value", "set at", "action", "stale"):
        t.add_column(col, justify="left", overflow="fold")
    for r in rows:
        t.add_row(r["scope"], r["field"], str(r["value"]), r["set_at"][:19], r["action"], "stale" if r["stale"] else "")
    console.print(t)
