"""``cortex-perf config show | check``: the effective configuration, secrets redacted, and its
validation. Mounted on the app by ``flows.cli``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from flows.cli.common import cli_state, console, err_console, handle_errors, print_json
from flows.cli.output import escape

config_app = typer.Typer(help="Show or check the configuration (cortex-perf.yaml < env < --set).", no_args_is_help=True)


@config_app.command("show")
@handle_errors
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the effective configuration, secrets redacted (`**********`)."""
    from tasks.config import redacted  # lazy (start-up): pydantic
    from tasks.config.settings import config_path  # lazy (start-up): pydantic

    st = cli_state(ctx)
    data = redacted(st.settings())
    if as_json:
        print_json(data)
        return
    import yaml  # lazy (start-up): only `config show` prints YAML

    src = config_path(st.config)
    sys.stdout.write(f"# effective configuration (file: {src or 'none, defaults'}; env and --set applied)\n")
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration; exit 1 with every bad field named (and its allowed values)."""
    from tasks.config import ConfigError  # lazy (start-up): pydantic
    from tasks.config.settings import config_path  # lazy (start-up): pydantic

    st = cli_state(ctx)
    try:
        st.settings()
    except ConfigError as exc:
        err_console.print(f"[bold red]config invalid:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    src = config_path(st.config)
    extra = f" + {len(st.overrides)} override(s)" if st.overrides else ""
    console.print(f"[green]config OK[/green] ({escape(str(src or 'defaults'))} + environment{extra})", highlight=False)
