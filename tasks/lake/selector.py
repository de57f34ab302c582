"""Series selectors in PromQL syntax: ``metric{label="v", label!="v", label=~"re", label!~"re"}``.

Parsed by hand into a small typed object (no user text is ever pasted into SQL) and matched against
the lake's series catalogue with polars. Semantics follow Prometheus: regexes are fully anchored
(RE2 syntax, which polars' Rust regex shares), and a missing label equals the empty string, so
``{env=""}`` matches series without ``env``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from tasks.lake.schema import LABEL_NAME_RE, METRIC_NAME_RE

OPS = ("=~", "!~", "!=", "=")


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message gives the column of the problem."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str

    def __str__(self) -> str:
        v = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{v}"'


@dataclass(frozen=True, slots=True)
class Selector:
    matchers: tuple[Matcher, ...]

    @property
    def metric(self) -> str | None:
        for m in self.matchers:
            if m.name == "__name__" and m.op == "=":
                return m.value
        return None

    def __str__(self) -> str:
        name = self.metric
        rest = [m for m in self.matchers if not (m.name == "__name__" and m.op == "=")]
        inner = ",".join(str(m) for m in rest)
        return f"{name or ''}{{{inner}}}" if rest or not name else name


def _read_string(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    if quote not in "\"'`":
        raise SelectorError(f"column {i + 1}: expected a quoted string, found {text[i]!r}")
    j = i + 1
    out: list[str] = []
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\" and quote != "`":
            j += 1
            if j >= len(text):
                break
            esc = text[j]
            out.append({"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(esc, "\\" + esc))
        else:
            out.append(c)
        j += 1
    raise SelectorError(f"column {i + 1}: unterminated string")


def parse_selector(text: str) -> Selector:
    """Parse ``text``; raises ``SelectorError`` naming the column of the first problem."""
    if not isinstance(text, str) or not text.strip():
        raise SelectorError("empty selector")
    s = text.strip()
    i = 0
    matchers: list[Matcher] = []
    m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", s)
    if m:
        matchers.append(Matcher("__name__", "=", m.group(0)))
        i = m.end()
    if i < len(s):
        if s[i] != "{":
            raise SelectorError(f"column {i + 1}: unexpected {s[i]!r} (expected '{{' or end)")
        i += 1
        while True:
            while i < len(s) and s[i].isspace():
                i += 1
            if i < len(s) and s[i] == "}":
                i += 1
                break
            lm = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", s[i:])
            if not lm:
                raise SelectorError(f"column {i + 1}: expected a label name")
            name = lm.group(0)
            i += lm.end()
            while i < len(s) and s[i].isspace():
                i += 1
            op = next((o for o in OPS if s.startswith(o, i)), None)
            if op is None:
                raise SelectorError(f"column {i + 1}: expected one of = != =~ !~ after {name!r}")
            i += len(op)
            while i < len(s) and s[i].isspace():
                i += 1
            if i >= len(s):
                raise SelectorError(f"column {i + 1}: expected a quoted value")
            value, i = _read_string(s, i)
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as e:
                    raise SelectorError(f"label {name}: invalid regex {value!r}: {e}") from None
            matchers.append(Matcher(name, op, value))
            while i < len(s) and s[i].isspace():
                i += 1
            if i < len(s) and s[i] == ",":
                i += 1
                continue
            if i < len(s) and s[i] == "}":
                i += 1
                break
            raise SelectorError(f"column {i + 1}: expected ',' or '}}'")
        if i != len(s):
            raise SelectorError(f"column {i + 1}: unexpected text after '}}'")
    if not matchers:
        raise SelectorError("selector matches nothing: give a metric name or at least one matcher")
    if all(_matches_empty(mt) for mt in matchers):
        raise SelectorError("vector selector must contain at least one non-empty matcher")
    for mt in matchers:
        if mt.name == "__name__" and mt.op == "=" and not METRIC_NAME_RE.match(mt.value):
            raise SelectorError(f"__name__: invalid metric name {mt.value!r}")
        if mt.name != "__name__" and not LABEL_NAME_RE.match(mt.name):
            raise SelectorError(f"invalid label name {mt.name!r}")
    return Selector(tuple(matchers))


def _matches_empty(m: Matcher) -> bool:
    if m.op == "=":
        return m.value == ""
    if m.op == "!=":
        return m.value != ""
    if m.op == "=~":
        return re.fullmatch(m.value, "") is not None
    return re.fullmatch(m.value, "") is None


def _label_expr(name: str) -> pl.Expr:
    if name == "__name__":
        return pl.col("metric")
    # JSON path on the canonical labels text; absent label → "" (Prometheus semantics).
    return pl.col("labels").str.json_path_match(f"$.{name}").fill_null("")


def match_series(catalogue: pl.DataFrame, selector: Selector | str) -> pl.DataFrame:
    """Rows of ``catalogue`` (series_id, metric, labels, …) that ``selector`` selects."""
    sel = parse_selector(selector) if isinstance(selector, str) else selector
    df = catalogue
    metric = sel.metric
    if metric is not None:
        df = df.filter(pl.col("metric") == metric)
    for m in sel.matchers:
        if m.name == "__name__" and m.op == "=":
            continue
        col = _label_expr(m.name)
        if m.op == "=":
            expr = col == m.value
        elif m.op == "!=":
            expr = col != m.value
        else:
            expr = col.str.contains(f"^(?:{m.value})$")
            if m.op == "!~":
                expr = ~expr
        df = df.filter(expr)
    return df
