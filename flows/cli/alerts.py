"""``cortex-perf alerts …``: list alerts, run a tick, acknowledge, resolve, silence, test receivers.
Parsing and printing only; the work is in ``tasks.alerting``. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.common import CliError, cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable
from tasks.timeparse import parse_duration

if TYPE_CHECKING:
    from tasks.alerting.notify.notify_config import NotifyConfig
    from tasks.alerting.notify.silences import SilenceState, SilenceStore
    from tasks.config import Settings
    from tasks.state import State

# The alerting modules are imported inside the commands: they pull duckdb, polars and yaml
# (0.2-1.4 s), which every other command's start-up would pay (see ``flows.cli``).

alerts_app = typer.Typer(
    help="Alerts from the rule files: list, evaluate now, acknowledge, resolve, silence, test receivers.",
    no_args_is_help=True,
)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")


def _print_failing_rules(state: State) -> None:
    """Rules whose last evaluation failed: their alerts below are as they were before it (the
    failure would otherwise only show in the tick's summary, which nobody may be reading)."""
    from tasks.alerting.listing import failing_rules  # lazy (start-up): duckdb, polars

    failing = failing_rules(state)
    if not failing:
        return
    console.print(f"{len(failing)} rule{'s' if len(failing) != 1 else ''} failing (alerts keep their last state):")
    for r in failing:
        since = f" at {r.last_error_at:%Y-%m-%d %H:%M}" if r.last_error_at else ""
        # rule names and errors are user text: printed as data, never as Rich markup
        console.print(
            f"  {r.group}/{r.alert}: {r.failures} failure(s), last{since}: {r.last_error}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@alerts_app.command("list")
@handle_errors
def alerts_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include recently resolved alerts.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Current alerts (firing first, then pending) as the alerts flow last left them."""
    from tasks.alerting.listing import alert_rows  # lazy (start-up): duckdb, polars

    db = cli_state(ctx).state()
    rows = alert_rows(db, all_)
    if as_json:
        print_json(rows)
        return
    _print_failing_rules(db)
    if not rows:
        console.print("No alert is firing or pending.")
        return
    firing = sum(r["state"] == "firing" for r in rows)
    t = DataTable(title=f"{firing} firing, {sum(r['state'] == 'pending' for r in rows)} pending")
    for col in ("id", "state", "alert", "labels", "since", "value", "summary"):
        t.add_column(col, overflow="fold")
    for r in rows:
        state = r["state"]
        if r["ack"]:
            state += f" (acked by {r['ack']['by']} until {r['ack']['until'][11:16]})"
        if r["manual_resolve"]:
            state += f" (resolved by hand by {r['manual_resolve']['by']})"
        t.add_row(
            r["id"],
            state,
            r["alertname"],
            _labels(r["labels"]),
            r["active_at"][:16].replace("T", " "),
            f"{r['value']:g}",
            r["annotations"].get("summary", ""),
        )
    console.print(t)


@alerts_app.command("run")
@handle_errors
def alerts_run(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Evaluate and show what would change; store, record and send nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary.")] = False,
) -> None:
    """Run one alerting tick now (what the `alerts` flow does every minute), without Prefect."""
    from tasks.alerting.service import run_alerts  # lazy (start-up): the whole alerting stack

    st = cli_state(ctx)
    settings = st.settings()
    if not settings.alerting.rule_files:
        console.print("alerting.rule_files is empty: no rules to evaluate (set it in the config or with --set).")
        raise typer.Exit(1)
    res = run_alerts(settings, st.lake(), dry_run=dry_run)
    if as_json:
        print_json(res.to_dict())
        return
    console.print(res.markdown(), markup=False, highlight=False, soft_wrap=True)


# ---- silences ---------------------------------------------------------------------------------------

silence_app = typer.Typer(help="Silences: mute matching alerts' notifications for a while (Alertmanager-style).")
alerts_app.add_typer(silence_app, name="silence")


def _silences(ctx: typer.Context) -> SilenceStore:
    from tasks.alerting.notify.silences import SilenceStore  # lazy (start-up): duckdb

    return SilenceStore(cli_state(ctx).state())


@silence_app.command("add")
@handle_errors
def silence_add(
    ctx: typer.Context,
    matchers: Annotated[
        str, typer.Argument(help='Matchers, e.g. \'alertname="HighCPU", instance=~"web-.*"\'.', show_default=False)
    ],
    for_: Annotated[str, typer.Option("--for", help="How long the silence lasts (e.g. 30m, 2h, 1d).")] = "1h",
    author: Annotated[str, typer.Option("--author", help="Who silences (default: $USER).")] = "",
    comment: Annotated[str, typer.Option("--comment", help="Why.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the silence; store nothing.")] = False,
) -> None:
    """Silence alerts matching MATCHERS for a while (`--for 2h`); prints the silence's ID."""
    from tasks.alerting.notify.silences import new_silence  # lazy (start-up): duckdb

    now = datetime.now(UTC)
    who = author or getpass.getuser()
    s = new_silence(matchers, ends_at=now + parse_duration(for_), created_by=who, comment=comment, now=now)
    if not dry_run:
        _silences(ctx).add(s)
    verb = "would add" if dry_run else "added"
    console.print(
        f"{verb} silence {s.id}: {s.matchers_text} until {s.ends_at:%Y-%m-%d %H:%M} UTC", highlight=False, markup=False
    )


@silence_app.command("list")
@handle_errors
def silence_list(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", help="Include expired silences.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Silences: active and pending (and expired with --all)."""
    now = datetime.now(UTC)
    states: tuple[SilenceState, ...] | None = None if all_ else ("active", "pending")
    rows = [s.to_dict(now) for s in _silences(ctx).list(now, states=states)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No silences.")
        return
    t = DataTable(title=f"{len(rows)} silence(s)")
    for col in ("id", "state", "matchers", "ends", "by", "comment"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["id"], r["state"], r["matchers"], str(r["ends_at"])[:16], r["created_by"], r["comment"])
    console.print(t)


@silence_app.command("expire")
@handle_errors
def silence_expire(
    ctx: typer.Context,
    silence_id: Annotated[
        str, typer.Argument(help="The silence's ID (see `alerts silence list`).", show_default=False)
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the silence exists; change nothing.")] = False,
) -> None:
    """End a silence now."""
    store = _silences(ctx)
    if dry_run:
        s = store.get(silence_id)
        console.print(f"would expire silence {s.id}: {s.matchers_text}", highlight=False, markup=False)
        return
    s = store.expire(silence_id)
    console.print(f"expired silence {s.id}: {s.matchers_text}", highlight=False, markup=False)


# ---- acknowledgement and manual resolve ---------------------------------------------------------------


def _who(author: str) -> str:
    return author or getpass.getuser()


@alerts_app.command("ack")
@handle_errors
def alerts_ack(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="Alert ID or its first 6+ characters.", show_default=False)],
    for_: Annotated[
        str | None, typer.Option("--for", help="How long the ack holds (default: alerting.ack_timeout).")
    ] = None,
    author: Annotated[str, typer.Option("--author", help="Who acknowledges (default: $USER).")] = "",
    comment: Annotated[str, typer.Option("--comment", help="What is being done.")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Find the alert and show the ack; store nothing.")] = False,
) -> None:
    """Acknowledge an alert: no repeats or escalation until it resolves or the ack expires (then it re-triggers)."""
    from tasks.alerting.listing import find_alert  # lazy (start-up): duckdb, polars
    from tasks.alerting.notify.acks import AckStore  # lazy (start-up): duckdb

    st = cli_state(ctx)
    settings = st.settings()
    row = find_alert(st.state(), alert_id)
    hold = parse_duration(for_ or settings.alerting.ack_timeout)
    now = datetime.now(UTC)
    if dry_run:
        console.print(
            f"would ack {row['id']} ({row['alertname']}) until {now + hold:%H:%M} UTC", highlight=False, markup=False
        )
        return
    a = AckStore(st.state()).ack(row["id"], _who(author), at=now, comment=comment, for_=hold)
    console.print(
        f"acked {a.fingerprint} ({row['alertname']}) until {a.expires_at:%Y-%m-%d %H:%M} UTC",
        highlight=False,
        markup=False,
    )


@alerts_app.command("resolve")
@handle_errors
def alerts_resolve(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="Alert ID or its first 6+ characters.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", help="Why it is resolved (required).", show_default=False)],
    author: Annotated[str, typer.Option("--author", help="Who resolves (default: $USER).")] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Find the alert; store nothing.")] = False,
) -> None:
    """Resolve an alert by hand: notified once as resolved, then quiet until a new episode starts."""
    from tasks.alerting.listing import find_alert  # lazy (start-up): duckdb, polars
    from tasks.alerting.notify.acks import AckStore  # lazy (start-up): duckdb

    if not reason.strip():
        raise CliError("--reason: say why the alert is resolved")
    state = cli_state(ctx).state()
    row = find_alert(state, alert_id)
    if dry_run:
        console.print(f"would resolve {row['id']} ({row['alertname']}): {reason}", highlight=False, markup=False)
        return
    r = AckStore(state).resolve(row["id"], _who(author), reason, at=datetime.now(UTC))
    console.print(f"resolved {r.fingerprint} ({row['alertname']}) by hand: {r.reason}", highlight=False, markup=False)


# ---- receivers and the outbox ---------------------------------------------------------------------------


def _notify_config(settings: Settings) -> NotifyConfig:
    from tasks.alerting.notify.notify_config import load_notify_config  # lazy (start-up): yaml, apprise

    if not settings.alerting.notify_config:
        raise CliError("alerting.notify_config is not set: no receivers are configured")
    return load_notify_config(settings.alerting.notify_config)


@alerts_app.command("test-notify")
@handle_errors
def alerts_test_notify(
    ctx: typer.Context,
    receiver: Annotated[str, typer.Argument(help="Receiver name from the notification config.", show_default=False)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the receiver (secrets redacted); send nothing.")
    ] = False,
) -> None:
    """Send a test notification to RECEIVER now (bypassing routing and the outbox); exit 1 if it fails."""
    from tasks.alerting.notify.delivery import test_notify  # lazy (start-up): apprise, duckdb

    st = cli_state(ctx)
    settings = st.settings()
    cfg = _notify_config(settings)
    if receiver not in cfg.parsed_receivers:
        raise CliError(f"receiver {receiver!r}: not in {cfg.path} (have: {', '.join(sorted(cfg.parsed_receivers))})")
    rec = cfg.parsed_receivers[receiver]
    if dry_run:
        console.print(f"would send a test notification to {rec}", highlight=False, markup=False)
        return
    res = test_notify(rec, state=st.state())
    if res.ok:
        console.print(f"sent to {receiver} in {res.duration_s:.2f}s: {res.title}", highlight=False, markup=False)
        return
    console.print(f"FAILED to send to {receiver}: {res.error}", highlight=False, markup=False)
    raise typer.Exit(1)


@alerts_app.command("notifications")
@handle_errors
def alerts_notifications(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only these states (pending, sending, sent, failed, dead); repeatable."),
    ] = None,
    receiver: Annotated[str | None, typer.Option("--receiver", help="Only this receiver.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The notification outbox: what was sent, what is waiting for a retry, what failed for good."""
    from tasks.alerting.listing import outbox_rows  # lazy (start-up): apprise, duckdb

    rows = outbox_rows(cli_state(ctx).state(), status=status, receiver=receiver, limit=limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("No notifications.")
        return
    t = DataTable(title=f"{len(rows)} notification(s), newest first")
    for col in ("created", "receiver", "group", "reason", "status", "tries", "error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        status_text = r["status"] + (" (possible duplicate)" if r["possible_duplicate"] else "")
        t.add_row(
            str(r["created_at"])[:16].replace("T", " "),
            r["receiver"],
            r["group_key"],
            r["reason"],
            status_text,
            str(r["attempts"]),
            r["last_error"] or "",
        )
    console.print(t)
