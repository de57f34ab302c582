"""Go's builtin template functions (``text/template/funcs.go``): ``and or not len index slice print
printf println html js urlquery eq ne lt le gt ge``, with Go's rules (``gt $value 1`` compares a
float64 with an int constant: an error, "incompatible types for comparison")."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasks.alerting.rules.templating.errors import FuncError
from tasks.alerting.rules.templating.gotime import GoTime
from tasks.alerting.rules.templating.printf import Flags, fmt_arg, go_sprint, go_sprintf, go_sprintln
from tasks.alerting.rules.templating.values import HTML, ArgsMap, GoByte, is_true, type_name

__all__ = ["Func", "builtin_functions", "query_escape"]


def _eval_args(args: list[Any]) -> str:
    """``evalArgs`` of the escaping builtins: like ``fmt.Sprint`` with nil as ``<no value>``."""
    if len(args) == 1 and type(args[0]) is str:
        return str(args[0])
    return go_sprint([HTML("<no value>") if a is None else a for a in args])


def query_escape(s: str) -> str:
    """Go's ``url.QueryEscape``."""
    return urllib.parse.quote_plus(s, safe="", encoding="utf-8", errors="surrogateescape")


def _len(x: Any) -> int:
    if x is None:
        raise FuncError("len of nil pointer")
    if isinstance(x, str):
        return len(x.encode("utf-8", "surrogateescape"))
    if isinstance(x, Mapping | list):
        return len(x)
    t = "time.Time" if isinstance(x, GoTime) else type_name(x)
    raise FuncError(f"len of type {t}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise FuncError("index of untyped nil")
    for ix in indexes:
        if item is None:
            raise FuncError("index of nil pointer")
        if isinstance(item, str) and not isinstance(item, HTML | GoByte):
            b = item.encode("utf-8", "surrogateescape")
            if ix is None:
                raise FuncError("cannot index slice/array with nil")
            if isinstance(ix, bool) or not isinstance(ix, int):
                raise FuncError(f"cannot index slice/array with type {type_name(ix)}")
            if ix < 0 or ix > len(b):
                raise FuncError(f"index out of range: {ix}")
            if ix == len(b):  # Go checks x > len, then reflect panics on x == len
                raise FuncError("reflect: string index out of range")
            item = GoByte(b[ix])
        elif isinstance(item, Mapping):
            if ix is None:
                ix = ""
            if type(ix) is not str:
                raise FuncError(f"value has type {type_name(ix)}; should be string")
            item = item.get(ix, None if isinstance(item, ArgsMap) else "")
        else:
            t = "time.Time" if isinstance(item, GoTime) else type_name(item)
            raise FuncError(f"can't index item of type {t}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, str) or isinstance(item, HTML):
        raise FuncError(f"can't slice item of type {type_name(item)}")
    if len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    b = item.encode("utf-8", "surrogateescape")
    idx = [0, len(b)]
    for k, ix in enumerate(indexes):
        if isinstance(ix, bool) or not isinstance(ix, int):
            raise FuncError(f"cannot index slice/array with type {type_name(ix)}")
        if ix < 0 or ix > len(b):
            raise FuncError(f"index out of range: {ix}")
        idx[k] = ix
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    return b[idx[0] : idx[1]].decode("utf-8", "surrogateescape")


_INT, _FLOAT, _STRING, _BOOL, _OTHER = range(5)


def _basic_kind(x: Any) -> int | None:
    if isinstance(x, bool):
        return _BOOL
    if isinstance(x, int):
        return _INT if not isinstance(x, GoByte) else 10
    if isinstance(x, float):
        return _FLOAT
    if isinstance(x, str):
        return _STRING
    return None


def _eq(a: Any, *bs: Any) -> bool:
    """Go's ``eq``: basic kinds must match (int vs float64 is an error), nil compares with nil."""
    if not bs:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(a)
    for b in bs:
        k2 = _basic_kind(b)
        truth = False
        if k1 != k2:
            if {k1, k2} == {_INT, 10}:
                truth = a >= 0 and b >= 0 and int(a) == int(b)
            elif a is not None and b is not None:
                raise FuncError("incompatible types for comparison")
        elif k1 is not None:
            truth = a == b
        else:
            if a is None or b is None:
                truth = a is None and b is None
            elif isinstance(b, Mapping):
                raise FuncError(f"non-comparable type {fmt_arg(b, 'v', Flags())}: {type_name(b)}")
            else:
                truth = a is b
        if truth:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if k1 is None or k2 is None:
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        if {k1, k2} == {_INT, 10}:
            return bool(a < b)
        raise FuncError("incompatible types for comparison")
    if k1 == _BOOL:
        raise FuncError("invalid type for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _html_escape(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def _js_escape(s: str) -> str:
    out = []
    for c in s:
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif c == "'":
            out.append("\\'")
        elif c == '"':
            out.append('\\"')
        elif c in "<>&=" or o < 0x20:
            out.append(f"\\u00{o:02X}")
        elif o >= 0x80 and not c.isprintable():
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True)
class Func:
    """A template function: Go parameter types (``any``, ``string``, ``sample``, ``result``), a
    variadic element type, and the Python implementation."""

    params: tuple[str, ...]
    variadic: str | None
    impl: Callable[..., Any]


def _raise(msg: str) -> Any:
    raise FuncError(msg)


def builtin_functions() -> dict[str, Func]:
    """Go's builtins (``funcs.go``'s ``builtins()``), in Go's order: every function map starts
    with them, and Prometheus adds its own (``prometheus.build_functions``)."""
    f = Func
    return {
        "and": f(("any",), "any", lambda *a: a),
        "or": f(("any",), "any", lambda *a: a),
        "not": f(("any",), None, lambda x: not is_true(x)),
        "len": f(("any",), None, _len),
        "index": f(("any",), "any", _index),
        "slice": f(("any",), "any", _slice),
        "call": f(("any",), "any", lambda fn, *a: _raise(f"non-function of type {type_name(fn)}")),
        "print": f((), "any", lambda *a: go_sprint(list(a))),
        "printf": f(("string",), "any", lambda fmt, *a: go_sprintf(fmt, list(a))),
        "println": f((), "any", lambda *a: go_sprintln(list(a))),
        "html": f((), "any", lambda *a: _html_escape(_eval_args(list(a)))),
        "js": f((), "any", lambda *a: _js_escape(_eval_args(list(a)))),
        "urlquery": f((), "any", lambda *a: query_escape(_eval_args(list(a)))),
        "eq": f(("any",), "any", _eq),
        "ne": f(("any", "any"), None, lambda a, b: not _eq(a, b)),
        "lt": f(("any", "any"), None, _lt),
        "le": f(("any", "any"), None, _le),
        "gt": f(("any", "any"), None, lambda a, b: not _le(a, b)),
        "ge": f(("any", "any"), None, lambda a, b: not _lt(a, b)),
    }
