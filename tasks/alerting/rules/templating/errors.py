"""The template engine's errors: the public :class:`TemplateError`, and :class:`FuncError`, what a
template function returns as Go's ``error`` (``exec`` reports it as ``error calling NAME: MSG``)."""

from __future__ import annotations

__all__ = ["FuncError", "TemplateError"]


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed; ``line``/``column`` are 1-based.

    ``go_message`` is Go's own wording of the error for a template whose text starts after
    :data:`PREAMBLE` (a NUL-delimited ``NAME`` stands for the template's name), so :func:`expand` can reproduce the
    annotation Prometheus writes for a broken template."""

    def __init__(self, message: str, line: int, column: int, go_message: str = "") -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.go_message = go_message


class FuncError(Exception):
    """An error a template function returns: Go reports it as ``error calling NAME: MSG``."""
