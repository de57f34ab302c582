"""How a report notebook shows things: readable tables (``show_table``) and the key numbers handed
back to the render (``show_key_numbers`` → ``notebook_key_numbers``)."""

from __future__ import annotations

import html as html_lib
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import polars as pl

__all__ = [
    "KEY_NUMBERS_MIME",
    "TABLE_MAX_ROWS",
    "format_cell",
    "notebook_key_numbers",
    "show_key_numbers",
    "show_table",
    "table_html",
]


#: MIME type under which a notebook hands its key numbers back to ``run_report`` (the HTML shows
#: the markdown table beside it; nbconvert ignores a type it does not know).
KEY_NUMBERS_MIME = "application/vnd.cortex-perf.key-numbers+json"


def show_key_numbers(numbers: Mapping[str, Any]) -> None:
    """Display the key numbers as a table and hand them to ``run_report`` in the same output.

    Why: the flow's table artifact needs the numbers the notebook already computed; reading them
    back from the executed notebook saves computing them a second time in the flow process (1 s on
    a day of a 50 M-sample lake, 6 s on a week).
    """
    # lazy: IPython.display costs +0.15 s, and tasks.config_checks imports this package, so every
    # command that loads settings would pay it (measured 2026-12-07); in a notebook IPython is loaded already.
    from IPython.display import display

    plain = json.loads(json.dumps(dict(numbers), default=str))
    # numbers as every report table shows them (format_cell: 4 significant digits), not as computed
    rows = [f"| {k} | {'—' if v is None else format_cell(v) if isinstance(v, int | float) else v} |"
            for k, v in plain.items()]  # fmt: skip
    table = "\n".join(["| figure | value |", "|---|---:|", *rows])
    display({KEY_NUMBERS_MIME: plain, "text/markdown": table}, raw=True)


#: Rows a report table shows before it says how many it left out (a table is for reading, not a dump).
TABLE_MAX_ROWS = 30


def format_cell(v: Any) -> str:
    """One value as a person reads it: numbers to 4 significant digits with thousands separators,
    times to the minute (seconds when there are any), yes/no, and nothing at all for a missing value.

    Why not polars' repr: it prints 16-digit floats, quotes every string and writes ``null``.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v == 0 or math.isinf(v):
            return str(v) if math.isinf(v) else "0"
        if abs(v) < 1e-3 or abs(v) >= 1e12:
            return f"{v:.3g}"
        decimals = max(0, 3 - math.floor(math.log10(abs(v))))
        text = f"{v:,.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S" if v.second else "%Y-%m-%d %H:%M")
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={format_cell(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(format_cell(x) for x in v)
    return str(v)


def table_html(df: pl.DataFrame, *, max_rows: int = TABLE_MAX_ROWS) -> str:
    """``df`` as a plain HTML table: a header of column names (no dtype row, no ``shape:``), cells
    from ``format_cell`` (escaped: series names and labels are user text), numbers right-aligned,
    and past ``max_rows`` one line saying how many rows were left out."""
    numeric = [dt.is_numeric() for dt in df.dtypes]
    right = ' style="text-align:right"'
    head = "".join(
        f"<th{right if n else ''}>{html_lib.escape(c)}</th>" for c, n in zip(df.columns, numeric, strict=True)
    )
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = (
            f"<td{right if n else ''}>{html_lib.escape(format_cell(v))}</td>" for v, n in zip(row, numeric, strict=True)
        )
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = df.height - max_rows
    note = f"<p><em>{more:,} more rows not shown</em></p>" if more > 0 else ""
    return f'<table class="dataframe"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{note}'


def show_table(df: pl.DataFrame, empty: str, *, max_rows: int = TABLE_MAX_ROWS) -> bool:
    """Display ``df`` as a readable table (``table_html``), or ``empty`` in words when it has no rows.

    The one way the report notebooks show a frame; returns whether there was anything to show, so a
    notebook can plot only then.
    """
    from IPython.display import Markdown, display  # lazy: see show_key_numbers

    if not df.height:
        display(Markdown(f"_{empty}_"))
        return False
    plain = "\n".join(
        "\t".join(format_cell(v) for v in row) for row in [tuple(df.columns), *df.head(max_rows).iter_rows()]
    )
    display({"text/html": table_html(df, max_rows=max_rows), "text/plain": plain}, raw=True)
    return True


def notebook_key_numbers(notebook: Any) -> dict[str, Any] | None:
    """The key numbers an executed notebook displayed with ``show_key_numbers`` (None: it did not)."""
    for cell in notebook.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if KEY_NUMBERS_MIME in data:
                found = data[KEY_NUMBERS_MIME]
                return dict(json.loads(found) if isinstance(found, str) else found)
    return None
