"""Rich output in which user text stays data: label values, selectors, paths and error messages are
printed as typed, never parsed as Rich markup.

Why: Rich reads ``[...]`` in a plain string as markup, so a label value ``[/x]`` crashed a table
(``MarkupError``) and ``[red]x[/red]`` showed as a red ``x``: the value people needed to see was
lost. Tables go through :class:`DataTable` (every ``str`` cell, title and caption becomes a
``rich.text.Text``, which is never parsed); a cell that *should* be coloured is built with
:func:`styled`; lines that mix our markup with user text pass the user part through :func:`escape`
(Rich's own), and lines without our markup are printed with ``markup=False``.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["DataTable", "escape", "styled"]


def _data(value: Any, style: str = "") -> Any:
    return Text(value, style=style) if isinstance(value, str) else value


def styled(text: str, style: str) -> Text:
    """``text`` shown in ``style`` (e.g. a status in green), its characters untouched."""
    return Text(text, style=style)


class DataTable(Table):
    """A ``rich.table.Table`` whose string cells, title and caption are data, never markup."""

    def __init__(self, *headers: Any, title: Any = None, caption: Any = None, **kwargs: Any) -> None:
        super().__init__(*headers, title=_data(title, "table.title"), caption=_data(caption, "table.caption"), **kwargs)

    def add_row(self, *renderables: Any, style: Any = None, end_section: bool = False) -> None:
        super().add_row(*(_data(r) for r in renderables), style=style, end_section=end_section)
