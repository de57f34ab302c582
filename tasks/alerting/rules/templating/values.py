"""Go values as templates see them, and Go's reflection of them (``%T``, truthiness).

Why types of our own: Go's output depends on a value's Go type (a ``template.HTML`` is not a
``string``, a byte prints as a number), so Python's types alone cannot say what Go would print.

Go value          here
nil / invalid     None
bool int float64  bool int float
string            str;  template.HTML: HTML (a str subclass: a different Go type)
map[string]string dict; map[string]interface {} (from ``args``): ArgsMap
*time.Time        GoTime (``gotime``)
uint8             GoByte (``index "abc" 1``)
the alert data    AlertData (a struct)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.alerting.rules.templating.gotime import GoTime

__all__ = ["HTML", "AlertData", "ArgsMap", "GoByte", "QueryResult", "is_true", "type_name"]


class HTML(str):
    """Go's ``html/template.HTML`` (what ``safeHtml`` returns): prints as is, but is not a ``string``."""


class ArgsMap(dict[str, Any]):
    """``map[string]interface {}`` as built by Prometheus's ``args``."""


class GoByte(int):
    """A Go ``uint8`` (indexing a string yields a byte)."""


class QueryResult(list[Any]):
    """Prometheus's ``queryResult`` (only ever empty here: queries are not supported)."""


@dataclass
class AlertData:
    """The struct Prometheus passes as ``.`` (``template.AlertTemplateData`` in 2.42)."""

    Labels: dict[str, str]
    ExternalLabels: dict[str, str]
    ExternalURL: str
    Value: float


_STRUCT_TYPE = (
    "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }"
)


def type_name(x: object) -> str:
    """Go's ``reflect.Type.String()`` of a value (what ``%T`` and error messages print)."""
    if x is None:
        return "<nil>"
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, GoByte):
        return "uint8"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float64"
    if isinstance(x, HTML):
        return "template.HTML"
    if isinstance(x, str):
        return "string"
    if isinstance(x, ArgsMap):
        return "map[string]interface {}"
    if isinstance(x, Mapping):
        return "map[string]string"
    if isinstance(x, GoTime):
        return "*time.Time"
    if isinstance(x, AlertData):
        return _STRUCT_TYPE
    if isinstance(x, QueryResult):
        return "template.queryResult"
    return type(x).__name__


def is_true(x: object) -> bool:
    """Go's ``isTrue``: zero values, empty strings and maps, and nil are false; structs are true."""
    if x is None:
        return False
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float):
        return x != 0
    if isinstance(x, str | Mapping | list):
        return len(x) > 0
    return True
