"""``cortex-perf router …``: the query router — run the proxy, see its state, ask where a query would go.

Parsing, wiring and printing only; the work is in ``tasks.routing``. Mounted on the app by
``flows.cli``. ``serve`` is the service's composition root: the settings, the lake and the state
DB are built once and handed to the router, the proxy, the outcome recorder and the reloader.
Targets' URL credentials are never printed (``Router.status`` redacts them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows.cli.common import CliError, cli_state, console, err_console, handle_errors, print_json
from flows.cli.output import DataTable, escape
from flows.cli.router_settings import overrides_cmd, reset_cmd, set_cmd

if TYPE_CHECKING:
    from tasks.config import Settings

router_app = typer.Typer(
    help="The query router: serve the routing proxy, show its targets and breakers, dry-run a route.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
STRATEGY_HELP = "Default strategy of pools that name none: round_robin, p2c, p2c_ewma, consistent_hash, learned."


def _with_strategy(settings: Settings, strategy: str | None) -> Settings:
    if strategy is None:
        return settings
    from tasks.config.routing import STRATEGIES  # lazy (start-up): see flows/cli/common.py

    if strategy not in STRATEGIES:
        raise CliError(f"--strategy: unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    return settings.model_copy(update={"router": settings.router.model_copy(update={"strategy": strategy})})


LOOPS = ("auto", "uvloop", "asyncio")
PARSERS = ("auto", "httptools", "h11")


def server_stack(loop: str = "auto", http: str = "auto") -> tuple[str, str]:
    """uvicorn's event loop and HTTP parser: ``auto`` is uvloop and httptools when installed (they
    are dependencies: measured faster, see BENCHMARKS.md "Proxy overhead"), else the pure-Python
    asyncio loop and h11; naming one (to compare them) needs it installed."""
    if loop not in LOOPS:
        raise CliError(f"--loop: unknown event loop {loop!r} (known: {', '.join(LOOPS)})")
    if http not in PARSERS:
        raise CliError(f"--http: unknown HTTP parser {http!r} (known: {', '.join(PARSERS)})")
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    elif loop == "uvloop" and not importlib.util.find_spec("uvloop"):
        raise CliError("--loop: uvloop is not installed")
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    elif http == "httptools" and not importlib.util.find_spec("httptools"):
        raise CliError("--http: httptools is not installed")
    return loop, http


@router_app.command("serve")
@handle_errors
def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Listen address (default: router.service.host).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Listen port (default: router.service.port).")
    ] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help=STRATEGY_HELP)] = None,
    loop: Annotated[
        str,
        typer.Option("--loop", envvar="CORTEX_PERF_ROUTER_LOOP", help="Event loop: auto (uvloop), uvloop, asyncio."),
    ] = "auto",
    http: Annotated[
        str,
        typer.Option("--http", envvar="CORTEX_PERF_ROUTER_HTTP", help="HTTP parser: auto (httptools), httptools, h11."),
    ] = "auto",
) -> None:
    """Run the routing proxy (one process, ASGI on uvicorn) until Ctrl-C / SIGTERM.

    Each request under a pool's prefix goes to the target its strategy picks; answers stream back;
    outcomes go to the lake in batches; the config file and the model registry's champion are
    re-read every `router.service.reload_s` without a restart. `/_router/status` and
    `/_router/healthz` answer on the same port."""
    # lazy (start-up): uvicorn, httpx and the routing modules are only needed when serving
    import uvicorn

    from tasks.config.settings import config_path
    from tasks.config_checks import load_checked_settings
    from tasks.registry import ModelRegistry
    from tasks.routing.overrides import effective_settings, load_overrides
    from tasks.routing.proxy import build_app
    from tasks.routing.reload import Reloader, registry_champion
    from tasks.routing.router import Router

    loop, http = server_stack(loop, http)  # bad input fails before anything starts
    st = cli_state(ctx)
    settings = _with_strategy(st.settings(), strategy)
    if not settings.router.pools:
        raise CliError("router.pools: no pools configured (add router.pools to the config; see README)")
    svc = settings.router.service
    state = st.state()
    model_name = settings.router.learned.model
    registry = ModelRegistry(state, Path(settings.data_dir) / "models")

    def load_config(path: Any) -> Any:
        return _with_strategy(load_checked_settings(path, st.overrides or None), strategy).router

    applied = load_overrides(state)
    router = Router(effective_settings(settings.router, applied)[0])
    reloader = Reloader(
        router,
        config_path=config_path(st.config_arg),
        load_config=load_config,
        champion=lambda: registry_champion(registry, model_name),
        base=settings.router,
        overrides=lambda: load_overrides(state),
        applied=applied,
    )
    app = build_app(router, settings, st.lake(), background=[reloader])
    host, port = host or svc.host, port or svc.port
    err_console.print(
        f"router: {len(settings.router.pools)} pool(s) on http://{escape(host)}:{port} "
        f"({loop} loop, {http}); status at /_router/status",
        highlight=False,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=int(svc.keepalive_s),
        # uvicorn's X-Forwarded-* rewriting is for apps behind a proxy; this is the proxy (it adds
        # X-Forwarded-For from the peer), and the middleware cost every request a wrapper call
        proxy_headers=False,
    )


def _config_pools(settings: Settings) -> list[dict[str, Any]]:
    from tasks.redact import redact_url  # lazy (start-up): see flows/cli/common.py

    rs = settings.router
    return [
        {
            "name": p.name,
            "prefix": p.prefix,
            "strategy": p.strategy or rs.strategy,
            "targets": [
                {"name": t.name, "url": redact_url(t.url), "weight": t.weight, "capacity": t.capacity, "cost": t.cost}
                for t in p.targets
            ],
        }
        for p in rs.pools
    ]


def _ms(v: Any) -> str:
    return "—" if v is None else f"{float(v):,.1f}"


def _print_status(status: dict[str, Any], url: str) -> None:
    model = status.get("model")
    console.print(
        f"Router at {escape(url)}: model "
        + (escape(f"{model['name']} {model['version']}") if model else "none (learned pools use P2C-EWMA)")
        + f", {status.get('buffered', 0)} outcome(s) buffered, {status.get('dropped', 0)} dropped",
        highlight=False,
    )
    for pool in status.get("pools", []):
        title = (
            f"pool {pool['name']} ({pool['prefix']}, {pool['strategy']}): "
            f"{pool['healthy']}/{len(pool['targets'])} healthy" + (" — PANIC" if pool.get("panic") else "")
        )
        t = DataTable(title=title, title_justify="left")
        # headers that never wrap and no URL column (in --json and in the config view): readable at
        # 80 columns (a pipe, a narrow terminal), where nine columns with URLs were not
        for col in ("target", "ok", "in flight", "ewma ms", "breaker", "eject s", "req", "fail"):
            t.add_column(col, justify="left" if col in ("target", "breaker") else "right", no_wrap=True)
        for tg in pool["targets"]:
            breaker = tg.get("breaker")
            t.add_row(
                tg["name"],
                "yes" if tg["healthy"] else "no",
                f"{tg['pending']}/{tg['capacity']}",
                _ms(tg.get("ewma_ms")),
                breaker.get("state", "?") if isinstance(breaker, dict) else "off",
                _ms(tg.get("ejected_for_s")) if tg.get("ejected_for_s") else "—",
                f"{tg['requests']:,}",
                f"{tg['failures']:,}",
            )
        console.print(t)


@router_app.command("status")
@handle_errors
def status_cmd(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="The running router (default: http://router.service.host:port)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A running router's targets: health, in flight, peak-EWMA, breaker state, ejections, model version.

    If no router answers, says so and shows the configured pools instead."""
    import httpx  # lazy (start-up): see flows/cli/common.py

    settings = cli_state(ctx).settings()
    svc = settings.router.service
    base = (url or f"http://{svc.host}:{svc.port}").rstrip("/")
    try:
        resp = httpx.get(base + "/_router/status", timeout=min(svc.connect_timeout_s, 5.0), trust_env=False)
        resp.raise_for_status()
        status = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        pools = _config_pools(settings)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if json_out:
            print_json({"running": False, "url": base, "error": reason, "pools": pools})
            return
        err_console.print(f"No router answers at {escape(base)} ({escape(reason)}); the configured pools:")
        if not pools:
            console.print("none (router.pools is empty)")
        for p in pools:
            t = DataTable(title=f"pool {p['name']} ({p['prefix']}, {p['strategy']})", title_justify="left")
            for col in ("target", "url", "weight", "capacity", "cost"):
                t.add_column(col, justify="left" if col in ("target", "url") else "right", overflow="fold")
            for tg in p["targets"]:
                t.add_row(tg["name"], tg["url"], f"{tg['weight']:g}", str(tg["capacity"]), f"{tg['cost']:g}")
            console.print(t)
        return
    if json_out:
        print_json({"running": True, "url": base, **status})
        return
    _print_status(status, base)


@router_app.command("route")
@handle_errors
def route_cmd(
    ctx: typer.Context,
    path: Annotated[str, typer.Option("--path", help="The request path, e.g. /api/search.")],
    kind: Annotated[str | None, typer.Option("--kind", help="The query's declared kind (router.kind_header).")] = None,
    method: Annotated[str, typer.Option("--method", help="HTTP method.")] = "GET",
    key: Annotated[str | None, typer.Option("--key", help="Affinity key (router.hash_header).")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help=STRATEGY_HELP)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Dry run: which target an in-process router (fresh: no live load) would pick for this query,
    and why (pool, strategy, the candidates' health and peak-EWMA cost). Nothing is sent."""
    from tasks.routing.model import Query, RoutingError  # lazy (start-up): see flows/cli/common.py
    from tasks.routing.router import Router  # lazy (start-up): see flows/cli/common.py

    if not path.startswith("/"):
        raise CliError(f"--path: {path!r} must start with '/'")
    settings = _with_strategy(cli_state(ctx).settings(), strategy)
    router = Router(settings.router)
    query = Query(method=method.upper(), path=path, kind=kind, key=key)
    try:
        decision = router.route(query)
    except RoutingError as exc:
        raise CliError(str(exc)) from None
    router.release(decision)
    pool = next(p for p in router.status()["pools"] if p["name"] == decision.pool)
    candidates: list[dict[str, Any]] = [
        {k: tg[k] for k in ("name", "url", "healthy", "pending", "capacity", "ewma_ms", "cost")}
        for tg in pool["targets"]
    ]
    out: dict[str, Any] = {
        "pool": decision.pool,
        "target": decision.target.name,
        "strategy": decision.strategy,
        "panic": decision.panic,
        "explored": decision.explored,
        "features": decision.features,
        "candidates": candidates,
    }
    if json_out:
        print_json(out)
        return
    console.print(
        f"{escape(method.upper())} {escape(path)} → pool {escape(decision.pool)}, target "
        f"[bold]{escape(decision.target.name)}[/bold] by {decision.strategy}"
        + (" (panic mode: too few healthy targets)" if decision.panic else ""),
        highlight=False,
    )
    t = DataTable(title="candidates (a fresh router: no live load)", title_justify="left")
    for col in ("target", "url", "healthy", "ewma ms", "cost"):
        t.add_column(col, justify="left" if col in ("target", "url") else "right", overflow="fold")
    for c in candidates:
        mark = " ←" if c["name"] == decision.target.name else ""
        t.add_row(c["name"] + mark, c["url"], "yes" if c["healthy"] else "no", _ms(c["ewma_ms"]), f"{c['cost']:g}")
    console.print(t)


# routing changes as actions (flows/cli/router_settings.py)
router_app.command("set")(set_cmd)
router_app.command("reset")(reset_cmd)
router_app.command("overrides")(overrides_cmd)
