"""Prometheus 2.42's template functions (``template/template.go``): ``humanize*``,
``humanizeTimestamp``, ``toTime``, ``title toUpper toLower match reReplaceAll safeHtml stripPort
stripDomain parseDuration args graphLink tableLink externalURL pathPrefix``, and the function map
every template runs with (Go's builtins first).

``query`` (and ``first label value strvalue sortByLabel``, which only make sense on its results)
need a PromQL engine inside the template: they are listed in :data:`UNSUPPORTED_FUNCTIONS`, which
``check_template`` rejects, and executing them is an error, never a silently wrong string."""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any

from tasks.alerting.rules.evaluate import format_value
from tasks.alerting.rules.templating.errors import FuncError
from tasks.alerting.rules.templating.funcs import Func, builtin_functions, query_escape
from tasks.alerting.rules.templating.gotime import GoTime
from tasks.alerting.rules.templating.printf import go_g4, go_quote
from tasks.alerting.rules.templating.values import HTML, ArgsMap, QueryResult, type_name
from tasks.goregex import GoRegexError, GoRegexp, compile_go_regex
from tasks.timeparse import parse_prometheus_duration

__all__ = [
    "DEFAULT_FUNCS",
    "FUNCTIONS",
    "UNSUPPORTED_FUNCTIONS",
    "build_functions",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
]


#: Unambiguous on purpose (``\d+(?:\.\d*)?``, not ``\d+\.?\d*``): these run on label values
#: (``humanize $labels.x``), and an ambiguous split backtracks quadratically on a long digit run.
#: Hex: underscores only between digits or after the prefix, as Go's ``underscoreOK``.
_GO_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_GO_HEXFLOAT_RE = re.compile(r"[+-]?0[xX](?:_?[0-9a-fA-F])*(?:\.(?:[0-9a-fA-F](?:_?[0-9a-fA-F])*)?)?[pP][+-]?\d+")
_GO_SPECIAL_RE = re.compile(r"[+-]?(?:inf|infinity)|nan", re.I)


def _parse_go_float(s: str) -> float:
    """``strconv.ParseFloat(s, 64)`` with Go's syntax and error messages."""
    if _GO_SPECIAL_RE.fullmatch(s):
        return float(s)
    if _GO_FLOAT_RE.fullmatch(s):
        v = float(s)
        if math.isinf(v):
            raise FuncError(f"strconv.ParseFloat: parsing {go_quote(s)}: value out of range")
        return v
    if _GO_HEXFLOAT_RE.fullmatch(s):
        sign = -1.0 if s.startswith("-") else 1.0
        body = s.lstrip("+-").replace("_", "")
        try:
            return sign * float.fromhex(body)
        except OverflowError:
            raise FuncError(f"strconv.ParseFloat: parsing {go_quote(s)}: value out of range") from None
        except ValueError:  # no mantissa digit: "0xp1"
            pass
    raise FuncError(f"strconv.ParseFloat: parsing {go_quote(s)}: invalid syntax")


def _to_float(x: object) -> float:
    """Prometheus's ``convertToFloat``: float64, string (``strconv.ParseFloat``) and ints."""
    if isinstance(x, bool) or x is None or not isinstance(x, int | float | str):
        raise FuncError(f"can't convert {type_name(x)} to float")
    if isinstance(x, str):
        if isinstance(x, HTML):
            raise FuncError("can't convert template.HTML to float")
        return _parse_go_float(x)
    return float(x)


def _humanize(v: float) -> str:
    if v == 0 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefix = ""
    if abs(v) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return go_g4(v) + prefix
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return go_g4(v) + prefix


def _plain(fn: Callable[[Any], str]) -> Callable[[object], str]:
    """A function that raises ``ValueError`` (the public API) instead of the internal ``FuncError``."""

    def wrapper(x: object) -> str:
        try:
            return fn(x)
        except FuncError as exc:
            raise ValueError(str(exc)) from None

    wrapper.__doc__ = fn.__doc__
    return wrapper


def _humanize_any(x: object) -> str:
    """Prometheus ``humanize``: 1000-based SI prefixes, 4 significant digits (1234567 → ``1.235M``)."""
    return _humanize(_to_float(x))


def _humanize1024(x: object) -> str:
    """Prometheus ``humanize1024``: 1024-based prefixes ``ki Mi Gi …`` (1048576 → ``1Mi``)."""
    v = _to_float(x)
    if abs(v) <= 1 or math.isnan(v) or math.isinf(v):
        return go_g4(v)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(v) < 1024:
            break
        prefix = p
        v /= 1024
    return go_g4(v) + prefix


def _humanize_duration(x: object) -> str:
    """Prometheus ``humanizeDuration``: seconds as ``1d 2h 3m 4s``, ``1.5s``, ``10ms``."""
    v = _to_float(x)
    if math.isnan(v) or math.isinf(v):
        return go_g4(v)
    if v == 0:
        return go_g4(v) + "s"
    if abs(v) >= 1:
        sign = ""
        if v < 0:
            sign, v = "-", -v
        whole = _go_int64(v)
        seconds = _go_rem(whole, 60)
        minutes = _go_rem(_go_quo(whole, 60), 60)
        hours = _go_rem(_go_quo(_go_quo(whole, 60), 60), 24)
        days = _go_quo(_go_quo(_go_quo(whole, 60), 60), 24)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{go_g4(v)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{go_g4(v)}{prefix}s"


def _go_int64(v: float) -> int:
    """Go's ``int64(v)`` on amd64: truncation, and MinInt64 when ``v`` does not fit (1e21 → -2^63)."""
    if math.isnan(v) or not -(2.0**63) <= v < 2.0**63:
        return -(2**63)
    return int(v)


def _go_quo(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_rem(a: int, b: int) -> int:
    return a - _go_quo(a, b) * b


def _humanize_percentage(x: object) -> str:
    """Prometheus ``humanizePercentage``: the ratio × 100 with 4 significant digits (0.1234 → ``12.34%``)."""
    return go_g4(_to_float(x) * 100) + "%"


humanize = _plain(_humanize_any)
humanize1024 = _plain(_humanize1024)
humanize_duration = _plain(_humanize_duration)
humanize_percentage = _plain(_humanize_percentage)


class _NaNOrInf(Exception):
    pass


def _float_to_time(v: float) -> GoTime:
    """Prometheus's ``floatToTime``: seconds → time, truncated to milliseconds (``model.Time``)."""
    if math.isnan(v) or math.isinf(v):
        raise _NaNOrInf
    ts = v * 1e9
    if ts > 9.223372036854775807e18 or ts < -9.223372036854775808e18:
        raise FuncError(f"{format_value(v)} cannot be represented as a nanoseconds timestamp since it overflows int64")
    ns = int(ts)
    ms = abs(ns) // 1_000_000 * (1 if ns >= 0 else -1)  # Go's integer division truncates
    return GoTime(ms * 1_000_000)


def _to_time(x: object) -> GoTime:
    try:
        return _float_to_time(_to_float(x))
    except _NaNOrInf:
        raise FuncError("value is NaN or Inf") from None


def _humanize_timestamp(x: object) -> str:
    v = _to_float(x)
    try:
        return str(_float_to_time(v))
    except _NaNOrInf:
        return go_g4(v)


def _go_upper(s: str) -> str:
    """``strings.ToUpper``: Go's one-rune case mapping (``ß`` stays ``ß``)."""
    return "".join(u if len(u := c.upper()) == 1 else c for c in s)


def _go_lower(s: str) -> str:
    """``strings.ToLower``: one rune per rune (``İ`` → ``i``)."""
    return "".join("i" if c == "\u0130" else (lo if len(lo := c.lower()) == 1 else c) for c in s)


def _is_separator(c: str) -> bool:
    """``strings.Title``'s word separator rule."""
    if ord(c) <= 0x7F:
        return not (c.isascii() and (c.isalnum() or c == "_"))
    cat = unicodedata.category(c)
    if cat.startswith("L") or cat == "Nd":
        return False
    return c.isspace()


def _go_title(s: str) -> str:
    """``strings.Title`` (Prometheus 2.42): upper-case (title-case) the first letter of each word."""
    out = []
    prev = " "
    for c in s:
        if _is_separator(prev):
            t = c.title()
            out.append(t if len(t) == 1 else c)
        else:
            out.append(c)
        prev = c
    return "".join(out)


def _split_host_port(hp: str) -> tuple[str, str] | None:
    """``net.SplitHostPort``; None where Go returns an error."""
    i = hp.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0 or end + 1 == len(hp) or end + 1 != i:
            return None
        host = hp[1:end]
        j, k = 1, end + 1
    else:
        host = hp[:i]
        if ":" in host:
            return None
    if "[" in hp[j:] or "]" in hp[k:]:
        return None
    return host, hp[i + 1 :]


def _is_ip(host: str) -> bool:
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _strip_port(hp: str) -> str:
    parts = _split_host_port(hp)
    return hp if parts is None else parts[0]


def _strip_domain(hp: str) -> str:
    parts = _split_host_port(hp)
    host, port = (hp, "") if parts is None else parts
    if _is_ip(host):
        return hp
    host = host.split(".")[0]
    if port:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def _go_regexp(pattern: str, caller: str = "match") -> GoRegexp:
    """Compile a Go RE2 pattern (``tasks.goregex``); a bad one fails with Go's text for ``caller``:
    ``match`` is ``regexp.MatchString`` (returns the error), ``reReplaceAll`` is ``regexp.MustCompile``
    (panics with ``regexp: Compile(`PATTERN`): …``, which ``text/template`` reports as the error)."""
    try:
        return compile_go_regex(pattern)
    except GoRegexError as exc:
        if caller == "match":
            raise FuncError(str(exc)) from None
        raise FuncError(f"regexp: Compile({_go_regexp_quote(pattern)}): {exc}") from None


def _go_regexp_quote(s: str) -> str:
    """``regexp.quote``: backquoted when ``strconv.CanBackquote``, else ``strconv.Quote``."""
    if any(c == "`" or c == "\ufeff" or c == "\x7f" or (c < " " and c != "\t") for c in s):
        return go_quote(s)
    return f"`{s}`"


def _re_replace_all(pattern: str, repl: str, text: str) -> str:
    """``regexp.MustCompile(pattern).ReplaceAllString(text, repl)`` (RE2: linear in ``text``)."""
    return _go_regexp(pattern, "reReplaceAll").replace_all(text, repl)


def _match(pattern: str, text: str) -> bool:
    return _go_regexp(pattern).search(text) is not None


def _parse_duration(d: str) -> float:
    try:
        return parse_prometheus_duration(d)
    except ValueError as exc:
        raise FuncError(str(exc)) from None


def _not_supported(name: str) -> Callable[..., Any]:
    def fn(*_args: Any) -> Any:
        raise FuncError(f"{name} is not supported: cortex-perf templates run no PromQL queries")

    return fn


def _first(v: Any) -> Any:
    raise FuncError("first() called on vector with no elements")


def _nil_sample(*_args: Any) -> Any:
    raise FuncError("runtime error: invalid memory address or nil pointer dereference")


def _args(*xs: Any) -> ArgsMap:
    return ArgsMap({f"arg{i}": x for i, x in enumerate(xs)})


def build_functions(external_url: str | None) -> dict[str, Func]:
    def url_part(path: bool) -> Callable[[], str]:
        def fn() -> str:
            if external_url is None:  # promtool runs with a nil external URL
                raise FuncError("runtime error: invalid memory address or nil pointer dereference")
            return urllib.parse.urlsplit(external_url).path if path else external_url

        return fn

    f = Func
    return {
        **builtin_functions(),
        # Prometheus 2.42 template/template.go
        "query": f(("string",), None, _not_supported("query")),
        "first": f(("result",), None, _first),
        "label": f(("string", "sample"), None, _nil_sample),
        "value": f(("sample",), None, _nil_sample),
        "strvalue": f(("sample",), None, _nil_sample),
        "sortByLabel": f(("string", "result"), None, lambda _l, v: QueryResult(v or [])),
        "args": f((), "any", _args),
        "reReplaceAll": f(("string", "string", "string"), None, lambda p, r, t: _re_replace_all(p, r, t)),
        "safeHtml": f(("string",), None, HTML),
        "match": f(("string", "string"), None, _match),
        "title": f(("string",), None, _go_title),
        "toUpper": f(("string",), None, _go_upper),
        "toLower": f(("string",), None, _go_lower),
        "graphLink": f(("string",), None, lambda e: f"/graph?g0.expr={query_escape(e)}&g0.tab=0"),
        "tableLink": f(("string",), None, lambda e: f"/graph?g0.expr={query_escape(e)}&g0.tab=1"),
        "stripPort": f(("string",), None, _strip_port),
        "stripDomain": f(("string",), None, _strip_domain),
        "humanize": f(("any",), None, _humanize_any),
        "humanize1024": f(("any",), None, _humanize1024),
        "humanizeDuration": f(("any",), None, _humanize_duration),
        "humanizePercentage": f(("any",), None, _humanize_percentage),
        "humanizeTimestamp": f(("any",), None, _humanize_timestamp),
        "toTime": f(("any",), None, _to_time),
        "pathPrefix": f((), None, url_part(True)),
        "externalURL": f((), None, url_part(False)),
        "parseDuration": f(("string",), None, _parse_duration),
    }


DEFAULT_FUNCS = build_functions("")
#: Every function name a template may call (Go builtins and Prometheus 2.42's), as promtool knows them.
FUNCTIONS: dict[str, Any] = {name: fn.impl for name, fn in DEFAULT_FUNCS.items()}
#: Functions that exist in Prometheus but need its query engine: :func:`check_template` rejects them.
UNSUPPORTED_FUNCTIONS = frozenset({"query", "first", "label", "value", "strvalue", "sortByLabel"})
