"""``cortex-perf report``: render the report notebooks to HTML now (no Prefect server needed).

Parsing and printing only; the work is ``tasks.reports.render_reports`` (the ``report`` flow does the
same on its schedule and adds Prefect artifacts). Mounted on the app by ``flows.cli``.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import cli_state, console, handle_errors, print_json
from flows.cli.output import DataTable


@handle_errors
def report_command(
    ctx: typer.Context,
    notebook: Annotated[
        list[str] | None,
        typer.Option("--notebook", "-n", help="Report to render (repeatable; default: all).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Start of the window: a duration ago (7d) or ISO 8601 [default: reports.since].", show_default=False
        ),
    ] = None,
    until: Annotated[str, typer.Option(help="End of the window.")] = "now",
    open_: Annotated[bool, typer.Option("--open", help="Open the HTML in a web browser when done.")] = False,
    email: Annotated[
        str | None,
        typer.Option("--email", help="Also mail the HTML through Apprise (a `mailto://…` URL).", show_default=False),
    ] = None,
    mail: Annotated[
        bool, typer.Option("--mail", help="Also mail the HTML to the configured `reports.email_to`.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run the report notebooks over the lake into self-contained HTML under `<data_dir>/reports/`."""
    from tasks.reports import mail_reports, render_reports  # lazy (start-up): papermill, polars, duckdb

    settings = cli_state(ctx).settings()
    if mail and not email:
        if settings.reports.email_to is None:
            raise typer.BadParameter("reports.email_to is not configured", param_hint="--mail")
        email = settings.reports.email_to.get_secret_value()
    results = render_reports(settings, notebook or None, since=since, until=until)
    if email:
        mail_reports(email, results)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        t = DataTable(title="Reports")
        for col in ("report", "html", "plots", "seconds"):
            t.add_column(col)
        for r in results:
            t.add_row(r.name, r.html, str(r.images), f"{r.seconds:.1f}")
        console.print(t)
    if open_:
        for r in results:
            webbrowser.open(Path(r.html).resolve().as_uri())
