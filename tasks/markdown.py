"""Markdown for the artifacts people read in the Prefect UI: one rule for putting text in a table.

Why one place: every tick's artifact (scaling, alerts, cache, GPUs, reports) puts user text —
series names, reasons, error messages — into markdown table cells, where a ``|`` or a newline
breaks the row and a backslash before a ``|`` eats the escape.
"""

from __future__ import annotations

__all__ = ["md_cell"]


def md_cell(text: str) -> str:
    """``text`` safe in a markdown table cell (or a list line): backslashes and pipes escaped,
    newlines folded into spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
