"""Alert label and annotation templates: the subset of Go ``text/template`` Prometheus rules use.

Prometheus expands each label and annotation value of a firing alert as a Go template with the
preamble ``{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL :=
.ExternalURL}}{{$value := .Value}}``. This module implements that environment:

* text with ``{{ … }}`` actions, ``{{-``/``-}}`` whitespace trimming and ``{{/* comments */}}``;
* pipelines ``a | f | g`` whose commands are an operand (``$value``, ``$labels.x``, ``.Labels.x``,
  ``.Value``, ``$``, ``.``, a string or number literal) or a function call ``f arg…`` (the piped
  value is passed as the last argument, as Go does);
* the functions ``humanize``, ``humanize1024``, ``humanizeDuration``, ``humanizePercentage``,
  ``toUpper``, ``toLower``, ``title`` with Prometheus's exact output (``%.4g`` style, SI prefixes
  ``k M G T P E Z Y`` and ``m u n p f a z y`` — Prometheus writes ``u`` for micro, not ``µ``);
* values print as Go prints them: floats via :func:`format_value` (``1e+06``, ``+Inf``, ``NaN``),
  a missing label as the empty string (Prometheus runs with ``missingkey=zero``).

Control structures (``if``/``range``/``with``/``define``) and variable assignment are not supported
yet and are reported as errors when a rule file is checked. Errors are :class:`TemplateError` with
the 1-based ``line``/``column`` inside the template text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.alerting.evaluate import format_value

__all__ = [
    "FUNCTIONS",
    "Template",
    "TemplateError",
    "check_template",
    "go_g4",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
    "render",
]


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# ---- Prometheus's number formatting -----------------------------------------------------------------


def go_g4(v: float) -> str:
    """Go's ``fmt.Sprintf("%.4g", v)``: like C's, but ``+Inf``/``-Inf``/``NaN``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.4g}"


def _to_float(x: object) -> float:
    if isinstance(x, bool):
        raise ValueError(f"unexpected value type {_go_type(x)}")
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            if x != x.strip() or "_" in x:
                raise ValueError
            return float(x)
        except ValueError:
            raise ValueError(f'strconv.ParseFloat: parsing "{x}": invalid syntax') from None
    raise ValueError(f"unexpected value type {_go_type(x)}")


def humanize(x: object) -> str:
    """Prometheus ``humanize``: 1000-based SI prefixes, 4 significant digits (1234567 → ``1.235M``)."""
    v = _to_float(x)
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


def humanize1024(x: object) -> str:
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


def humanize_duration(x: object) -> str:
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
        whole = int(v)
        seconds, minutes, hours, days = whole % 60, (whole // 60) % 60, (whole // 3600) % 24, whole // 86400
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


def humanize_percentage(x: object) -> str:
    """Prometheus ``humanizePercentage``: the ratio × 100 with 4 significant digits (0.1234 → ``12.34%``)."""
    return go_g4(_to_float(x) * 100) + "%"


def _title(x: object) -> str:
    s = _as_string("title", x)
    return re.sub(r"(^|(?<=[^\w]))(\w)", lambda m: m.group(1) + m.group(2).upper(), s)


def _as_string(fn: str, x: object) -> str:
    if not isinstance(x, str):
        raise ValueError(f"wrong type for value; expected string; got {_go_type(x)}")
    return x


FUNCTIONS: dict[str, Any] = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizeDuration": humanize_duration,
    "humanizePercentage": humanize_percentage,
    "toUpper": lambda x: _as_string("toUpper", x).upper(),
    "toLower": lambda x: _as_string("toLower", x).lower(),
    "title": _title,
}


def _go_type(x: object) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float64"
    if isinstance(x, str):
        return "string"
    if isinstance(x, Mapping):
        return "map[string]string"
    return type(x).__name__


def _go_print(x: object) -> str:
    """``fmt.Sprint`` of a template value."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        return format_value(x)
    if isinstance(x, Mapping):
        return "map[" + " ".join(f"{k}:{_go_print(v)}" for k, v in sorted(x.items())) + "]"
    return str(x)


# ---- parsing ------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
  | (?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<pipe>\|)
  | (?P<other>.)
    """,
    re.X | re.S,
)

_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
_VARIABLES = ("$", "$labels", "$externalLabels", "$externalURL", "$value")


@dataclass(frozen=True)
class _Operand:
    kind: str  # "str" | "num" | "var" | "field"
    value: Any
    pos: int


@dataclass(frozen=True)
class _Command:
    func: str | None
    args: tuple[_Operand, ...]
    pos: int


@dataclass(frozen=True)
class _Action:
    commands: tuple[_Command, ...]
    pos: int


_Node = str | _Action


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


def _err(src: str, pos: int, message: str) -> TemplateError:
    return TemplateError(message, *_line_col(src, pos))


def _unquote(src: str, text: str, pos: int) -> str:
    if text.startswith("`"):
        return text[1:-1]
    import json

    try:
        out = json.loads(text)
    except ValueError:
        raise _err(src, pos, f"invalid syntax in string {text}") from None
    assert isinstance(out, str)
    return out


def _parse_action(src: str, body: str, offset: int) -> _Action | None:
    """``body`` is the text between the delimiters (trim markers removed); ``offset`` its position."""
    stripped = body.strip()
    if stripped.startswith("/*"):
        if not stripped.endswith("*/"):
            raise _err(src, offset, "unclosed comment")
        return None
    commands: list[_Command] = []
    current: list[tuple[str, str, int]] = []
    groups: list[list[tuple[str, str, int]]] = [current]
    for m in _TOKEN_RE.finditer(body):
        kind = m.lastgroup or "other"
        text = m.group()
        pos = offset + m.start()
        if kind == "ws":
            continue
        if kind == "pipe":
            current = []
            groups.append(current)
            continue
        if kind == "other":
            if text == ":" or text == "=":
                raise _err(src, pos, "variable declarations are not supported")
            if text in "()":
                raise _err(src, pos, "parenthesized pipelines are not supported")
            raise _err(src, pos, f"unexpected {text!r} in command")
        current.append((kind, text, pos))
    if len(groups) == 1 and not groups[0]:
        raise _err(src, offset, "missing value for command")
    for group in groups:
        if not group:
            raise _err(src, offset, "missing value for command")
        kind, text, pos = group[0]
        if kind == "ident":
            if text in _KEYWORDS:
                raise _err(src, pos, f"{{{{{text}}}}} actions are not supported")
            if text in ("true", "false", "nil"):
                if len(group) > 1:
                    raise _err(src, group[1][2], f"can't give argument to non-function {text}")
                commands.append(_Command(None, (_Operand("bool", text == "true", pos),), pos))
                continue
            if text not in FUNCTIONS:
                raise _err(src, pos, f'function "{text}" not defined')
            args = tuple(_operand(src, k, t, p) for k, t, p in group[1:])
            commands.append(_Command(text, args, pos))
        else:
            if len(group) > 1:
                raise _err(src, group[1][2], f"can't give argument to non-function {text}")
            commands.append(_Command(None, (_operand(src, kind, text, pos),), pos))
    for i, cmd in enumerate(commands):
        if i > 0 and cmd.func is None:
            raise _err(src, cmd.pos, f"non executable command in pipeline stage {i + 1}")
    return _Action(tuple(commands), offset)


def _operand(src: str, kind: str, text: str, pos: int) -> _Operand:
    if kind == "str":
        return _Operand("str", _unquote(src, text, pos), pos)
    if kind == "num":
        try:
            num: int | float = int(text)
        except ValueError:
            num = float(text)
        return _Operand("num", num, pos)
    if kind == "var":
        name = text.split(".", 1)[0]
        if name not in _VARIABLES:
            raise _err(src, pos, f'undefined variable "{name}"')
        return _Operand("var", text, pos)
    if kind == "field":
        return _Operand("field", text, pos)
    if kind == "ident":
        raise _err(src, pos, f"function {text} used as an argument needs parentheses (not supported)")
    raise _err(src, pos, f"unexpected {text!r} in operand")


def _parse(src: str) -> list[_Node]:
    nodes: list[_Node] = []
    i = 0
    trim_next = False
    while True:
        j = src.find("{{", i)
        text = src[i:] if j < 0 else src[i:j]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        left_trim = j >= 0 and src.startswith("{{-", j) and src[j + 3 : j + 4] in (" ", "\t", "\r", "\n")
        if left_trim:
            text = text.rstrip(" \t\r\n")
        if text:
            nodes.append(text)
        if j < 0:
            return nodes
        start = j + (3 if left_trim else 2)
        end = _find_close(src, start)
        if end < 0:
            raise _err(src, j, "unclosed action")
        trim_next = end >= 1 and src[end - 1] == "-" and end - 1 > start and src[end - 2] in " \t\r\n"
        body_end = end - 1 if trim_next else end
        action = _parse_action(src, src[start:body_end], start)
        if action is not None:
            nodes.append(action)
        i = end + 2


def _find_close(src: str, start: int) -> int:
    """Index of the ``}}`` closing an action, skipping string literals and comments."""
    i = start
    n = len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            k = src.find("*/", i + 2)
            if k < 0:
                return -1
            i = k + 2
            continue
        if c == '"':
            i += 1
            while i < n and src[i] != '"':
                if src[i] == "\n":
                    return -1
                i += 2 if src[i] == "\\" else 1
            i += 1
            continue
        if c == "`":
            k = src.find("`", i + 1)
            if k < 0:
                return -1
            i = k + 1
            continue
        if src.startswith("}}", i):
            return i
        i += 1
    return -1


# ---- execution ----------------------------------------------------------------------------------------


class Template:
    """A parsed template; :meth:`render` expands it for one alert."""

    def __init__(self, src: str) -> None:
        self.src = src
        self._nodes = _parse(src)

    def render(
        self,
        labels: Mapping[str, str],
        value: float,
        *,
        external_labels: Mapping[str, str] | None = None,
        external_url: str = "",
    ) -> str:
        data: dict[str, Any] = {
            "Labels": dict(labels),
            "ExternalLabels": dict(external_labels or {}),
            "ExternalURL": external_url,
            "Value": float(value),
        }
        env: dict[str, Any] = {
            "$": data,
            "$labels": data["Labels"],
            "$externalLabels": data["ExternalLabels"],
            "$externalURL": external_url,
            "$value": data["Value"],
        }
        out: list[str] = []
        for node in self._nodes:
            if isinstance(node, str):
                out.append(node)
            else:
                out.append(_go_print(self._exec(node, data, env)))
        return "".join(out)

    def _exec(self, action: _Action, data: dict[str, Any], env: dict[str, Any]) -> Any:
        piped: Any = None
        for i, cmd in enumerate(action.commands):
            args = [self._eval(a, data, env) for a in cmd.args]
            if cmd.func is None:
                piped = args[0]
                continue
            if i > 0:
                args.append(piped)
            if len(args) != 1:
                raise _err(self.src, cmd.pos, f"wrong number of args for {cmd.func}: want 1 got {len(args)}")
            try:
                piped = FUNCTIONS[cmd.func](args[0])
            except ValueError as exc:
                raise _err(self.src, cmd.pos, f"error calling {cmd.func}: {exc}") from None
        return piped

    def _eval(self, op: _Operand, data: dict[str, Any], env: dict[str, Any]) -> Any:
        if op.kind in ("str", "num", "bool"):
            return op.value
        text: str = op.value
        if op.kind == "var":
            name, _, rest = text.partition(".")
            cur = env[name]
        else:
            cur, rest = data, text[1:]
        for f in rest.split(".") if rest else ():
            if isinstance(cur, Mapping):
                cur = cur.get(f, "" if cur is not data else None)
                if cur is None:
                    raise _err(self.src, op.pos, f"can't evaluate field {f} in type template.tmplData")
            else:
                raise _err(self.src, op.pos, f"can't evaluate field {f} in type {_go_type(cur)}")
        return cur


def check_template(src: str) -> None:
    """Parse ``src`` (like promtool, which only parses); raises :class:`TemplateError`."""
    Template(src)


def render(
    src: str,
    labels: Mapping[str, str],
    value: float,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str = "",
) -> str:
    """Expand one template string for an alert with ``labels`` and ``value``."""
    return Template(src).render(labels, value, external_labels=external_labels, external_url=external_url)
