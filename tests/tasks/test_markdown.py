"""The one rule for user text in an artifact's markdown table."""

from __future__ import annotations

from tasks.markdown import md_cell


def test_md_cell_keeps_the_row_whole() -> None:
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell("path\\|x") == "path\\\\\\|x"  # a backslash before a pipe cannot eat its escape
