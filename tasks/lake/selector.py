"""Series selectors in PromQL syntax: ``metric{label="v", label!="v", label=~"re", label!~"re"}``.

Parsed by hand into a small typed object (no user text is ever pasted into SQL) and matched against
the lake's series catalogue with polars. Semantics follow Prometheus: regexes are Go RE2, fully
anchored (``^(?:re)$``), and a missing label equals the empty string, so ``{env=""}`` matches series
without ``env``. Regexes go through ``tasks.goregex``, the translator the alert rules' matchers and
templates use, so ``\\z``, ``[[:alpha:]]``, ``\\Q…\\E``, ``x(?i)y`` and ASCII ``\\d`` mean in a lake query
what they mean in an alert rule (polars' Rust regex differed: Unicode ``\\d``, no ``\\Q…\\E``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from tasks.goregex import GoRegexError, GoRegexp, compile_go_regex
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
                _label_regex(name, value)
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


def _label_regex(name: str, pattern: str) -> GoRegexp:
    """The compiled Go RE2 ``pattern``; a bad one is a ``SelectorError`` naming the label and Go's error."""
    try:
        return compile_go_regex(pattern)
    except GoRegexError as e:
        raise SelectorError(f"label {name}: invalid regex {pattern!r}: {e}") from None


def regex_full_matches(name: str, pattern: str, values: Sequence[str]) -> list[bool]:
    """Whether each of ``values`` matches label regex ``pattern`` as Prometheus does (``^(?:re)$``).

    Shared with the SQL rule engine (``tasks.alerting.rules.sqlcompile``), which matches distinct label
    values the same way, so both engines agree with the alert rules' Go semantics."""
    rx = _label_regex(name, pattern)
    return [rx.fullmatch(v) is not None for v in values]


def _matches_empty(m: Matcher) -> bool:
    if m.op == "=":
        return m.value == ""
    if m.op == "!=":
        return m.value != ""
    hit = regex_full_matches(m.name, m.value, [""])[0]
    return hit if m.op == "=~" else not hit


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
            # RE2 (linear time) per distinct value (few), then a vectorised membership test.
            values = df.select(col.unique().alias("v")).get_column("v").to_list()
            ok = regex_full_matches(m.name, m.value, values)
            hits = pl.Series([v for v, hit in zip(values, ok, strict=True) if hit], dtype=pl.String)
            expr = col.is_in(hits.implode())
            if m.op == "!~":
                expr = ~expr
        df = df.filter(expr)
    return df
