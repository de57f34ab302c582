"""A PromQL subset: lexer and recursive-descent parser into a typed AST.

Supported (Prometheus 2.x syntax): number literals (``1``, ``1.5e3``, ``0x1f``, ``Inf``, ``NaN``),
instant selectors ``m{l="v", l!="v", l=~"re", l!~"re"}``, range selectors ``m[1h30m]``, calls of the
functions in ``FUNCTIONS``, aggregations ``sum avg min max count`` with ``by (…)`` / ``without (…)``
(before or after the argument), unary ``+``/``-``, binary ``^ * / % + - == != > < >= <=`` with the
``bool`` modifier, and parentheses. Everything else (``offset``, ``@``, subqueries, ``on``/
``ignoring``/``group_left``, ``and``/``or``/``unless``, ``topk``…) is refused with a clear error.

Every error is a ``PromQLError`` whose message starts with ``line:column`` (1-based) of the problem.
Vector selectors are handed to ``tasks.lake.selector.parse_selector`` so that there is one selector
grammar in the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tasks.lake.selector import Selector, SelectorError, parse_selector

ValueType = Literal["scalar", "vector", "matrix", "string"]


class PromQLError(ValueError):
    """A malformed expression; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.msg = message
        self.line = line
        self.column = column


# ---- AST ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberLiteral:
    value: float
    type: ValueType = field(default="scalar", init=False)


@dataclass(frozen=True, slots=True)
class StringLiteral:
    value: str
    type: ValueType = field(default="string", init=False)


@dataclass(frozen=True, slots=True)
class VectorSelector:
    selector: Selector
    type: ValueType = field(default="vector", init=False)


@dataclass(frozen=True, slots=True)
class MatrixSelector:
    vector: VectorSelector
    range_s: float  # the window, seconds
    type: ValueType = field(default="matrix", init=False)


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    type: ValueType = field(default="vector", init=False)


@dataclass(frozen=True, slots=True)
class Aggregate:
    op: str
    expr: Expr
    grouping: tuple[str, ...] = ()
    without: bool = False
    type: ValueType = field(default="vector", init=False)


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "+"
    expr: Expr

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    bool_modifier: bool = False

    @property
    def type(self) -> ValueType:
        return "scalar" if self.lhs.type == "scalar" and self.rhs.type == "scalar" else "vector"


Expr = NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | Call | Aggregate | Unary | Binary

# name → argument types; the result of every supported function is an instant vector.
FUNCTIONS: dict[str, tuple[ValueType, ...]] = {
    "avg_over_time": ("matrix",),
    "min_over_time": ("matrix",),
    "max_over_time": ("matrix",),
    "sum_over_time": ("matrix",),
    "count_over_time": ("matrix",),
    "last_over_time": ("matrix",),
    "quantile_over_time": ("scalar", "matrix"),
    "rate": ("matrix",),
    "increase": ("matrix",),
    "absent": ("vector",),
    # ours (cortex-perf, not Prometheus): read what the anomaly and forecast stages wrote to the lake
    "anomaly": ("matrix",),
    "forecast": ("vector", "scalar"),
    "forecast_quantile": ("scalar", "vector", "scalar"),
}
#: Functions whose scalar arguments may be written as durations (``forecast(m, 30m)``): the
#: duration becomes its number of seconds. Prometheus has no duration literals outside ranges.
DURATION_ARGS = {"forecast": 1, "forecast_quantile": 2}
AGGREGATIONS = ("sum", "avg", "min", "max", "count")
UNSUPPORTED_AGGREGATIONS = ("topk", "bottomk", "quantile", "count_values", "stddev", "stdvar", "group")
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
ARITHMETIC = ("+", "-", "*", "/", "%", "^")
# binary precedence, lowest first (Prometheus: or < and/unless < comparisons < +- < */% < ^)
PRECEDENCE: tuple[tuple[str, ...], ...] = (COMPARISONS, ("+", "-"), ("*", "/", "%"), ("^",))
KEYWORDS_UNSUPPORTED = ("offset", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "atan2")
_TYPE_NAMES = {"scalar": "scalar", "vector": "instant vector", "matrix": "range vector", "string": "string"}

# ---- lexer ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUMBER DURATION STRING IDENT OP ( ) { } [ ] , EOF
    text: str
    pos: int  # offset into the source
    end: int


_DURATION_RE = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_])")
_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_OPS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", ">", "<", "=")


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _err(src: str, pos: int, message: str) -> PromQLError:
    return PromQLError(message, *_line_col(src, pos))


def tokenize(src: str) -> list[Token]:
    toks: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":  # comment to end of line
            while i < n and src[i] != "\n":
                i += 1
            continue
        if c in "(){}[],":
            toks.append(Token(c, c, i, i + 1))
            i += 1
            continue
        if c in "\"'`":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\" and c != "`":
                    j += 1
                elif src[j] == "\n" and c != "`":
                    break
                j += 1
            if j >= n or src[j] != c:
                raise _err(src, i, "unterminated quoted string")
            toks.append(Token("STRING", src[i : j + 1], i, j + 1))
            i = j + 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
            m = _DURATION_RE.match(src, i)
            if m:
                toks.append(Token("DURATION", m.group(0), i, m.end()))
                i = m.end()
                continue
            m = _NUMBER_RE.match(src, i)
            assert m is not None
            if m.end() < n and (src[m.end()].isalnum() or src[m.end()] in "_:."):
                raise _err(src, i, f"bad number or duration syntax: {src[i : m.end() + 1]!r}")
            toks.append(Token("NUMBER", m.group(0), i, m.end()))
            i = m.end()
            continue
        m = _IDENT_RE.match(src, i)
        if m:
            toks.append(Token("IDENT", m.group(0), i, m.end()))
            i = m.end()
            continue
        op = next((o for o in _OPS if src.startswith(o, i)), None)
        if op is not None:
            toks.append(Token("OP", op, i, i + len(op)))
            i += len(op)
            continue
        if c == "@":
            raise _err(src, i, "the '@' modifier is not supported")
        raise _err(src, i, f"unexpected character {c!r}")
    toks.append(Token("EOF", "", n, n))
    return toks


#: Prometheus's common/model.ParseDuration: units in descending order, each at most once; "0" alone.
_FULL_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_ORDERED_UNITS = (31536000.0, 604800.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def parse_duration(text: str) -> float:
    """``1h30m`` → 5400.0 seconds, as Prometheus parses durations (range selectors and rule files
    alike): units ms s m h d w y, in descending order, each at most once; raises ``ValueError``."""
    if text == "0":
        return 0.0
    m = _FULL_DURATION_RE.match(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f'not a valid duration string: "{text}"')
    return sum(int(g) * u for g, u in zip(m.groups(), _ORDERED_UNITS, strict=True) if g)


# ---- parser ---------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, message: str, tok: Token | None = None) -> PromQLError:
        return _err(self.src, (tok or self.tok).pos, message)

    def describe(self, tok: Token) -> str:
        return "end of input" if tok.kind == "EOF" else repr(tok.text)

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"unexpected {self.describe(self.tok)}, expected {what}")
        return self.advance()

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    # grammar
    def parse(self) -> Expr:
        if self.tok.kind == "EOF":
            raise self.error("empty expression")
        expr = self.expr(0)
        if self.tok.kind != "EOF":
            t = self.tok
            if t.kind == "IDENT" and t.text.lower() in KEYWORDS_UNSUPPORTED:
                raise self.error(f"{t.text!r} is not supported")
            raise self.error(f"unexpected {self.describe(t)} after the expression")
        return expr

    def expr(self, level: int) -> Expr:
        if level == len(PRECEDENCE):
            return self.unary()
        ops = PRECEDENCE[level]
        if ops == ("^",):  # right-associative, binds tighter than unary minus on its left
            lhs = self.unary_operand()
            if self.is_op("^"):
                op_tok = self.advance()
                rhs = self.expr(level)
                return self.binary(op_tok, lhs, rhs, False)
            return lhs
        lhs = self.expr(level + 1)
        while self.is_op(*ops):
            op_tok = self.advance()
            bool_mod = False
            if self.tok.kind == "IDENT" and self.tok.text == "bool":
                if op_tok.text not in COMPARISONS:
                    raise self.error("bool modifier can only be used on comparison operators")
                self.advance()
                bool_mod = True
            if self.tok.kind == "IDENT" and self.tok.text in ("on", "ignoring"):
                raise self.error(f"vector matching with {self.tok.text!r} is not supported")
            rhs = self.expr(level + 1)
            lhs = self.binary(op_tok, lhs, rhs, bool_mod)
        return lhs

    def binary(self, op_tok: Token, lhs: Expr, rhs: Expr, bool_mod: bool) -> Binary:
        for side in (lhs, rhs):
            if side.type not in ("scalar", "vector"):
                raise self.error(
                    f"binary expression must contain only scalar and instant vector types, "
                    f"got {_TYPE_NAMES[side.type]}",
                    op_tok,
                )
        if op_tok.text in COMPARISONS and lhs.type == "scalar" and rhs.type == "scalar" and not bool_mod:
            raise self.error("comparisons between scalars must use BOOL modifier", op_tok)
        return Binary(op_tok.text, lhs, rhs, bool_mod)

    def unary(self) -> Expr:
        return self.expr(len(PRECEDENCE) - 1)

    def unary_operand(self) -> Expr:
        if self.is_op("-", "+"):
            op_tok = self.advance()
            operand = self.unary()  # -a^b == -(a^b)
            if operand.type not in ("scalar", "vector"):
                raise self.error(
                    f"unary expression only allowed on expressions of type scalar or instant vector, "
                    f"got {_TYPE_NAMES[operand.type]}",
                    op_tok,
                )
            if op_tok.text == "+":
                return operand
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value)
            return Unary("-", operand)
        return self.postfix()

    def postfix(self) -> Expr:
        expr = self.primary()
        if self.tok.kind == "[":
            if not isinstance(expr, VectorSelector):
                raise self.error(
                    "ranges only allowed for vector selectors (subqueries are not supported)"
                    if isinstance(expr, Call | Aggregate | Binary | Unary)
                    else "ranges only allowed for vector selectors"
                )
            self.advance()
            dur = self.tok
            if dur.kind == "NUMBER" and dur.text.isdigit():
                raise self.error(f"bad duration {dur.text!r}: missing unit (e.g. 5m)")
            self.expect("DURATION", "a duration like 5m or 1h30m")
            try:
                range_s = parse_duration(dur.text)
            except ValueError as e:
                raise self.error(str(e), dur) from None
            if range_s <= 0:
                raise self.error("range must be positive", dur)
            if self.tok.kind == "IDENT" and self.tok.text.startswith(":"):
                raise self.error("subqueries are not supported")
            self.expect("]", "']'")
            expr = MatrixSelector(expr, range_s)
        if self.tok.kind == "IDENT" and self.tok.text == "offset":
            raise self.error("'offset' is not supported")
        return expr

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "NUMBER":
            self.advance()
            return NumberLiteral(float(int(t.text, 16)) if t.text[:2].lower() == "0x" else float(t.text))
        if t.kind == "DURATION":
            raise self.error(f"unexpected duration {t.text!r} (durations go in ranges like m[5m])")
        if t.kind == "STRING":
            self.advance()
            return StringLiteral(_unquote(t.text))
        if t.kind == "(":
            self.advance()
            if self.tok.kind == ")":
                raise self.error("empty parentheses")
            inner = self.expr(0)
            self.expect(")", "')'")
            return inner
        if t.kind == "{":
            return self.selector(t)
        if t.kind == "IDENT":
            name = t.text
            low = name.lower()
            nxt = self.peek()
            if name in AGGREGATIONS and (nxt.kind == "(" or (nxt.kind == "IDENT" and nxt.text in ("by", "without"))):
                return self.aggregation()
            if name in UNSUPPORTED_AGGREGATIONS and nxt.kind == "(":
                raise self.error(f"aggregation {name!r} is not supported")
            if nxt.kind == "(":
                return self.call()
            if low in ("inf", "nan") and nxt.kind not in ("{", "["):
                self.advance()
                return NumberLiteral(float(low))
            if low in KEYWORDS_UNSUPPORTED or name in ("by", "without", "bool"):
                raise self.error(f"unexpected keyword {name!r}")
            return self.selector(t)
        raise self.error(f"unexpected {self.describe(t)}, expected an expression")

    def selector(self, first: Token) -> VectorSelector:
        start = first.pos
        end = first.end
        if first.kind == "IDENT":
            self.advance()
        if self.tok.kind == "{":
            self.advance()
            while self.tok.kind not in ("}", "EOF"):
                if self.tok.kind in ("{", "(", ")", "[", "]"):
                    raise self.error(f"unexpected {self.describe(self.tok)} inside label matchers")
                self.advance()
            end = self.expect("}", "'}' to close the label matchers").end
        text = self.src[start:end]
        try:
            sel = parse_selector(text)
        except SelectorError as e:
            msg = str(e)
            m = re.match(r"column (\d+): (.*)", msg, re.S)
            if m:
                raise _err(self.src, start + int(m.group(1)) - 1, m.group(2)) from None
            raise _err(self.src, start, msg) from None
        return VectorSelector(sel)

    def grouping(self) -> tuple[str, ...]:
        self.expect("(", "'(' after by/without")
        labels: list[str] = []
        while self.tok.kind != ")":
            t = self.expect("IDENT", "a label name")
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", t.text):
                raise self.error(f"invalid label name {t.text!r}", t)
            labels.append(t.text)
            if self.tok.kind == ",":
                self.advance()
            elif self.tok.kind != ")":
                raise self.error(f"unexpected {self.describe(self.tok)} in grouping, expected ',' or ')'")
        self.advance()
        return tuple(labels)

    def aggregation(self) -> Aggregate:
        op_tok = self.advance()
        grouping: tuple[str, ...] | None = None
        without = False
        if self.tok.kind == "IDENT" and self.tok.text in ("by", "without"):
            without = self.advance().text == "without"
            grouping = self.grouping()
        self.expect("(", f"'(' after {op_tok.text!r}")
        if self.tok.kind == ")":
            raise self.error(f"no arguments for aggregate expression {op_tok.text!r} provided")
        arg_tok = self.tok
        arg = self.expr(0)
        if self.tok.kind == ",":
            raise self.error(f"wrong number of arguments for aggregate expression {op_tok.text!r}: expected 1")
        self.expect(")", "')'")
        if self.tok.kind == "IDENT" and self.tok.text in ("by", "without"):
            if grouping is not None:
                raise self.error("grouping given twice")
            without = self.advance().text == "without"
            grouping = self.grouping()
        if arg.type != "vector":
            raise self.error(
                f"expected type instant vector in aggregation expression, got {_TYPE_NAMES[arg.type]}", arg_tok
            )
        return Aggregate(op_tok.text, arg, grouping or (), without)

    def call(self) -> Call:
        name_tok = self.advance()
        name = name_tok.text
        if name not in FUNCTIONS:
            raise self.error(f"unknown function with name {name!r}", name_tok)
        self.expect("(", "'('")
        args: list[Expr] = []
        arg_toks: list[Token] = []
        while self.tok.kind != ")":
            arg_toks.append(self.tok)
            if self.tok.kind == "DURATION" and DURATION_ARGS.get(name) == len(args):
                dur = self.advance()
                try:
                    args.append(NumberLiteral(parse_duration(dur.text)))
                except ValueError as e:
                    raise self.error(str(e), dur) from None
            else:
                args.append(self.expr(0))
            if self.tok.kind == ",":
                self.advance()
                if self.tok.kind == ")":
                    raise self.error("expected an argument after ','")
            elif self.tok.kind != ")":
                raise self.error(f"unexpected {self.describe(self.tok)} in call to {name!r}, expected ',' or ')'")
        close = self.advance()
        want = FUNCTIONS[name]
        if len(args) != len(want):
            raise self.error(
                f"expected {len(want)} argument(s) in call to {name!r}, got {len(args)}", arg_toks[0] if args else close
            )
        for arg, tok, typ in zip(args, arg_toks, want, strict=True):
            if arg.type != typ:
                raise self.error(
                    f"expected type {_TYPE_NAMES[typ]} in call to function {name!r}, got {_TYPE_NAMES[arg.type]}", tok
                )
        if name in DURATION_ARGS:
            i = DURATION_ARGS[name] - 1
            if not isinstance(args[i], VectorSelector):
                raise self.error(
                    f'{name}() reads stored forecasts: its argument must be a metric selector like m{{l="v"}}',
                    arg_toks[i],
                )
        return Call(name, tuple(args))


def _unquote(text: str) -> str:
    q, body = text[0], text[1:-1]
    if q == "`":
        return body
    return re.sub(
        r"\\(.)", lambda m: {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(m.group(1), m.group(0)), body
    )


def parse(src: str) -> Expr:
    """Parse a rule expression; raises ``PromQLError`` (``line:column: message``)."""
    if not isinstance(src, str):
        raise TypeError("expression must be a string")
    return _Parser(src).parse()
