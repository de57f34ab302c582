"""Rendering a report notebook into an HTML file: papermill executes the notebook with its
parameters injected, in a kernel that runs *this* interpreter (``tasks.reports.kernel``), and
nbconvert writes one self-contained HTML file with the code hidden (plots are embedded PNGs:
readable offline) to ``<data_dir>/reports/<name>-<YYYY-MM-DD>.html``; old reports are pruned.

The numbers the notebooks show are ``tasks.analytics``' (the notebooks only call those and plot).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.analytics import report_window
from tasks.config import LakeSettings, Settings
from tasks.config.project import anchor
from tasks.reports.display import notebook_key_numbers
from tasks.reports.kernel import LAKE_ENV, ensure_kernel, kernel_manager_with, lake_env
from tasks.reports.notebooks import NOTEBOOK_DIR, NOTEBOOKS, check_name, check_parameters, notebook_path, reports_dir

__all__ = ["ReportResult", "prune_reports", "render_reports", "run_report", "to_html"]


@dataclass(slots=True)
class ReportResult:
    """One rendered report: where the HTML is, the window it covers, how long it took."""

    name: str
    html: str
    since: str
    until: str
    seconds: float
    bytes: int
    images: int
    key_numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: nbconvert's lab template without the two scripts it loads from a CDN (require.js, MathJax): the
#: reports have no widgets or formulas, and a report must read the same offline (CSS is inlined).
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""


def to_html(notebook: Any, *, show_code: bool = False) -> str:
    """Self-contained HTML of an executed notebook; code cells hidden unless ``show_code``."""
    # lazy: nbconvert costs +0.79 s and papermill +0.86 s on top of tasks.config_checks, which imports
    # this package for every settings load (measured 2026-12-07); only a render needs them.
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"cortex_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="cortex_offline.html.j2",
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(notebook)
    return body


def run_report(
    name: str,
    *,
    lake_root: str,
    out_dir: Path,
    since: str | datetime = "7d",
    until: str | datetime = "now",
    state_path: str | None = None,
    now: datetime | None = None,
    parameters: Mapping[str, Any] | None = None,
    timeout_s: int = 600,
    show_code: bool = False,
    lake_settings: LakeSettings | None = None,
) -> ReportResult:
    """Execute notebook ``name`` with papermill and write ``<out_dir>/<name>-<date>.html``.

    The window is resolved here (``since``/``until`` → ISO UTC) so the notebook and the key numbers
    see the same one. The executed ``.ipynb`` is kept beside the HTML (``<name>-<date>.ipynb``) for
    people who want the code. The key numbers are the ones the notebook displayed with
    ``show_key_numbers`` (every report notebook does; ``{}`` for one that does not).
    ``lake_settings`` (a ``LakeSettings``) reaches the kernel through ``LAKE_ENV``, never as a
    parameter, so S3 credentials stay out of the executed notebook.
    """
    import papermill as pm  # lazy: see to_html

    src = notebook_path(name)
    start, end = report_window(since, until, now=now)
    if parameters:
        check_parameters(name, parameters)
    # The kernel runs in the checkout (NOTEBOOK_DIR's parent), not in the caller's directory: a
    # relative lake or state path means the caller's, so it travels absolute.
    lake_root = anchor(lake_root, Path.cwd()) or lake_root
    state_path = anchor(state_path, Path.cwd())
    if lake_settings is not None:
        lake_settings = lake_settings.model_copy(update={"root": anchor(lake_settings.root, Path.cwd())})
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{end:%Y-%m-%d}"
    executed = out_dir / f"{stem}.ipynb"
    params = {
        "lake_root": lake_root,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "state_path": state_path or "",
        **dict(parameters or {}),
    }
    t0 = time.perf_counter()
    kernel_env = {} if lake_settings is None else {LAKE_ENV: lake_env(lake_settings)}
    nb = pm.execute_notebook(
        str(src),
        str(executed),
        parameters=params,
        kernel_name=ensure_kernel(),
        progress_bar=False,
        log_output=False,
        cwd=str(NOTEBOOK_DIR.parent),  # so `import tasks` works whatever the caller's directory
        execution_timeout=timeout_s,
        kernel_manager_class=kernel_manager_with(kernel_env),
    )
    html = to_html(nb, show_code=show_code)
    target = out_dir / f"{stem}.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)  # readers never see half a report
    return ReportResult(
        name=name,
        html=str(target),
        since=start.isoformat(),
        until=end.isoformat(),
        seconds=round(time.perf_counter() - t0, 2),
        bytes=target.stat().st_size,
        images=html.count("<img"),
        key_numbers=notebook_key_numbers(nb) or {},
    )


_REPORT_FILE = re.compile(r"^(?P<name>[a-z_]+)-(?P<day>\d{4}-\d{2}-\d{2})\.(?:html|ipynb)$")


def prune_reports(
    out_dir: Path, keep_days: int, *, now: datetime | None = None, keep: Iterable[str | Path] = ()
) -> list[Path]:
    """Delete rendered reports (``<name>-<YYYY-MM-DD>.html|.ipynb``) written more than ``keep_days`` ago.

    Why: the daily flow writes two files per report per day, and nobody wants a reports folder that
    grows without bound. Age is when the file was *written* (its mtime), not the date in its name:
    that is the window's end, and a report rendered today for last year's window must survive.
    Only files named like a report are touched (anything else a person put there stays), and never
    the paths in ``keep`` (what this run just wrote). Returns the deleted paths.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    kept = {Path(k).resolve() for k in keep}
    gone = []
    for f in sorted(out_dir.glob("*-*.*")):
        m = _REPORT_FILE.match(f.name)
        if not m or m["name"] not in NOTEBOOKS or f.resolve() in kept:
            continue
        try:
            written = datetime.fromtimestamp(f.stat().st_mtime, UTC)
        except FileNotFoundError:  # another run pruned it meanwhile
            continue
        if written < cutoff:
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def render_reports(
    settings: Settings,
    names: list[str] | None = None,
    *,
    since: str | datetime | None = None,
    until: str | datetime = "now",
    now: datetime | None = None,
) -> list[ReportResult]:
    """Render each report ``names`` for the lake, state DB and data dir of ``settings``.

    What both the ``report`` flow (per-report task) and ``cortex-perf report`` call. Defaults come
    from the ``reports`` settings (which notebooks, the window, per-notebook parameters, code
    shown or not, timeout); names and parameters are checked before any kernel starts, so a typo
    fails at once naming the field. Reports older than ``reports.keep_days`` are pruned after.
    """
    cfg = settings.reports
    names = list(names or cfg.notebooks or NOTEBOOKS)
    for n in names:
        check_name(n)
    for n, extra in cfg.parameters.items():
        check_parameters(n, extra, origin="reports.parameters")
    start, end = report_window(cfg.since if since is None else since, until, now=now)
    out = reports_dir(settings)
    state_path = str(settings.state.path)
    results = [
        run_report(
            n,
            lake_root=settings.lake.root,  # the URL (s3://…); ``Lake.root`` would be the bare path
            out_dir=out,
            since=start,
            until=end,
            state_path=state_path,
            parameters=cfg.parameters.get(n),
            timeout_s=cfg.timeout_s,
            show_code=cfg.show_code,
            lake_settings=settings.lake,
        )
        for n in names
    ]
    wrote = [p for r in results for p in (r.html, Path(r.html).with_suffix(".ipynb"))]
    prune_reports(out, cfg.keep_days, now=now, keep=wrote)
    return results
