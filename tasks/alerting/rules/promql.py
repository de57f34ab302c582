"""A PromQL subset: lexer and recursive-descent parser into a typed AST.

Supported (Prometheus 2.x syntax): number literals (``1``, ``1.5e3``, ``0x1f``, ``Inf``, ``NaN``),
instant selectors ``m{l="v", l!="v", l=~"re", l!~"re"}``, range selectors ``m[1h30m]``, calls of the
functions in ``FUNCTIONS`` (fixed or variadic arity, as 2.42's ``parser/functions.go``),
aggregations ``sum avg min max count group stddev stdvar topk bottomk quantile count_values`` with
``by (…)`` / ``without (…)`` (before or after the arguments), unary ``+``/``-``, binary
``^ * / % + - == != > < >= <= and unless or`` with Prometheus's precedence (``or`` lowest, then
``and``/``unless``, comparisons, ``+ -``, ``* / %``, ``^`` right-associative), the ``bool`` modifier,
vector matching ``on (…)`` / ``ignoring (…)`` with ``group_left (…)`` / ``group_right (…)``, the
``offset`` modifier (negative offsets too: stable since Prometheus 2.33, no feature flag in 2.42),
and parentheses. Keywords are case-insensitive, as Prometheus's lexer makes them. ``@`` and
subqueries are refused with a clear error.

Every error is a ``PromQLError`` whose message starts with ``line:column`` (1-based) of the problem.
Vector selectors are handed to ``tasks.lake.selector.parse_selector`` so that there is one selector
grammar in the project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tasks.lake.selector import Selector, SelectorError, parse_selector
from tasks.timeparse import parse_prometheus_duration

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
    offset_s: float = 0.0  # ``offset``: read as of ``t - offset_s`` (negative: later)
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

    @property
    def type(self) -> ValueType:
        return "scalar" if self.func in SCALAR_FUNCTIONS else "vector"


@dataclass(frozen=True, slots=True)
class Aggregate:
    op: str
    expr: Expr
    grouping: tuple[str, ...] = ()
    without: bool = False
    param: Expr | None = None  # topk/bottomk k, quantile q (scalars), count_values's label (string)
    type: ValueType = field(default="vector", init=False)


Cardinality = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """How a vector–vector operation pairs its sides (Prometheus's ``parser.VectorMatching``).

    ``on``: match on ``labels`` only (else on every label but ``labels`` and ``__name__``);
    ``include``: the labels ``group_left``/``group_right`` copy from the "one" side."""

    card: Cardinality = "one-to-one"
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()


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
    # None: one-to-one on all labels but __name__ (the default, and always for scalar operands);
    # set operators always carry a many-to-many matching
    matching: VectorMatching | None = None

    @property
    def type(self) -> ValueType:
        return "scalar" if self.lhs.type == "scalar" and self.rhs.type == "scalar" else "vector"


Expr = NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | Call | Aggregate | Unary | Binary

# name → argument types (2.42 parser/functions.go); a result is an instant vector unless the name
# is in SCALAR_FUNCTIONS. VARIADIC: how many trailing arguments may be left out (-1: the last type
# repeats without limit, at least one fewer than listed), as 2.42's ``Variadic``.
FUNCTIONS: dict[str, tuple[ValueType, ...]] = {
    "avg_over_time": ("matrix",),
    "min_over_time": ("matrix",),
    "max_over_time": ("matrix",),
    "sum_over_time": ("matrix",),
    "count_over_time": ("matrix",),
    "last_over_time": ("matrix",),
    "stddev_over_time": ("matrix",),
    "stdvar_over_time": ("matrix",),
    "present_over_time": ("matrix",),
    "absent_over_time": ("matrix",),
    "quantile_over_time": ("scalar", "matrix"),
    "rate": ("matrix",),
    "increase": ("matrix",),
    "delta": ("matrix",),
    "irate": ("matrix",),
    "idelta": ("matrix",),
    "changes": ("matrix",),
    "resets": ("matrix",),
    "deriv": ("matrix",),
    "predict_linear": ("matrix", "scalar"),
    "absent": ("vector",),
    "abs": ("vector",),
    "ceil": ("vector",),
    "floor": ("vector",),
    "exp": ("vector",),
    "ln": ("vector",),
    "log2": ("vector",),
    "log10": ("vector",),
    "sqrt": ("vector",),
    "sgn": ("vector",),
    "round": ("vector", "scalar"),
    "clamp": ("vector", "scalar", "scalar"),
    "clamp_min": ("vector", "scalar"),
    "clamp_max": ("vector", "scalar"),
    "scalar": ("vector",),
    "vector": ("scalar",),
    "time": (),
    "timestamp": ("vector",),
    "label_replace": ("vector", "string", "string", "string", "string"),
    "label_join": ("vector", "string", "string", "string"),
    "sort": ("vector",),
    "sort_desc": ("vector",),
    "histogram_quantile": ("scalar", "vector"),
    # ours (cortex-perf, not Prometheus): read what the anomaly and forecast stages wrote to the lake
    "anomaly": ("matrix",),
    "forecast": ("vector", "scalar"),
    "forecast_quantile": ("scalar", "vector", "scalar"),
}
VARIADIC: dict[str, int] = {"round": 1, "label_join": -1}
SCALAR_FUNCTIONS = frozenset({"scalar", "time"})
#: Functions whose scalar arguments may be written as durations (``forecast(m, 30m)``): the
#: duration becomes its number of seconds. Prometheus has no duration literals outside ranges.
DURATION_ARGS = {"forecast": 1, "forecast_quantile": 2}
AGGREGATIONS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar")
#: Aggregations with a parameter before the vector, and its type.
PARAM_AGGREGATIONS: dict[str, ValueType] = {
    "topk": "scalar",
    "bottomk": "scalar",
    "quantile": "scalar",
    "count_values": "string",
}
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
ARITHMETIC = ("+", "-", "*", "/", "%", "^")
SET_OPERATORS = ("and", "or", "unless")
# binary precedence, lowest first (Prometheus: or < and/unless < comparisons < +- < */% < ^)
PRECEDENCE: tuple[tuple[str, ...], ...] = (("or",), ("and", "unless"), COMPARISONS, ("+", "-"), ("*", "/", "%"), ("^",))
KEYWORDS = ("offset", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "by", "without")
KEYWORDS_UNSUPPORTED = ("atan2",)
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


# ---- parser ---------------------------------------------------------------------------------------


#: How deeply an expression may nest (parentheses, unary signs, function calls, aggregations).
#: Why a bound: the parser and both evaluators recurse once per level, and Python's stack is far
#: smaller than Go's: ~150 nested calls overflowed it (``RecursionError`` crashed ``rules check``).
#: No real rule nests a third as deep.
MAX_NESTING = 32
#: How deep the parsed tree may be: a long chain ``a + b + c + …`` nests no parentheses but builds
#: one tree level per operator, and the evaluators recurse once per level.
MAX_TREE_DEPTH = 128


def tree_depth(expr: Expr) -> int:
    """The depth of ``expr``'s tree, counted without recursion (the point is to bound recursion)."""
    deepest, stack = 0, [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Binary):
            kids: tuple[Expr | None, ...] = (node.lhs, node.rhs)
        elif isinstance(node, Unary):
            kids = (node.expr,)
        elif isinstance(node, Aggregate):
            kids = (node.expr, node.param)
        elif isinstance(node, Call):
            kids = node.args
        elif isinstance(node, MatrixSelector):
            kids = (node.vector,)
        else:
            kids = ()
        stack.extend((k, depth + 1) for k in kids if k is not None)
    return deepest


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0
        self.depth = 0
        self.depths: dict[int, int] = {}  # id(Binary) → its tree depth, so a chain is measured once

    def depth_of(self, e: Expr) -> int:
        """``tree_depth`` of a node, remembered for Binary nodes (a long chain stays linear)."""
        known = self.depths.get(id(e))
        if known is None:
            known = tree_depth(e)
            if isinstance(e, Binary):
                self.depths[id(e)] = known
        return known

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

    def is_keyword(self, *words: str) -> bool:
        """Keywords are case-insensitive (Prometheus's lexer lower-cases them)."""
        return self.tok.kind == "IDENT" and self.tok.text.lower() in words

    def is_binop(self, ops: tuple[str, ...]) -> bool:
        return self.is_op(*ops) or self.is_keyword(*ops)

    # grammar
    def parse(self) -> Expr:
        if self.tok.kind == "EOF":
            raise self.error("empty expression")
        start = self.tok
        expr = self.expr(0)
        if tree_depth(expr) > MAX_TREE_DEPTH:
            raise self.error(f"expression too deep (more than {MAX_TREE_DEPTH} levels of operators and calls)", start)
        if self.tok.kind != "EOF":
            t = self.tok
            if self.is_keyword(*KEYWORDS_UNSUPPORTED):
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
                bool_mod, matching = self.modifiers(op_tok)
                self.depth += 1  # right-associative: each ``^`` recurses, like a level of nesting
                try:
                    if self.depth > MAX_TREE_DEPTH:
                        raise self.error(
                            f"expression too deep (more than {MAX_TREE_DEPTH} levels of operators and calls)", op_tok
                        )
                    rhs = self.expr(level)
                finally:
                    self.depth -= 1
                return self.binary(op_tok, lhs, rhs, bool_mod, matching)
            return lhs
        lhs = self.expr(level + 1)
        while self.is_binop(ops):
            op_tok = self.advance()
            bool_mod, matching = self.modifiers(op_tok)
            rhs = self.expr(level + 1)
            lhs = self.binary(op_tok, lhs, rhs, bool_mod, matching)
        return lhs

    def modifiers(self, op_tok: Token) -> tuple[bool, VectorMatching | None]:
        """``bool``, ``on``/``ignoring (…)`` and ``group_left``/``group_right [(…)]`` after an operator."""
        bool_mod = False
        if self.is_keyword("bool"):
            if op_tok.text not in COMPARISONS:
                raise self.error("bool modifier can only be used on comparison operators")
            self.advance()
            bool_mod = True
        if self.is_keyword("group_left", "group_right"):
            raise self.error(f"{self.tok.text!r} must follow on (…) or ignoring (…)")
        if not self.is_keyword("on", "ignoring"):
            return bool_mod, None
        on = self.advance().text.lower() == "on"
        labels = self.grouping()
        card: Cardinality = "one-to-one"
        include: tuple[str, ...] = ()
        if self.is_keyword("group_left", "group_right"):
            card = "many-to-one" if self.advance().text.lower() == "group_left" else "one-to-many"
            if self.tok.kind == "(":
                include = self.grouping()
        return bool_mod, VectorMatching(card, on, labels, include)

    def binary(
        self, op_tok: Token, lhs: Expr, rhs: Expr, bool_mod: bool, matching: VectorMatching | None = None
    ) -> Binary:
        """The checks of 2.42's ``checkAST`` for a binary expression, with its messages."""
        op = op_tok.text.lower()
        depth = 1 + max(self.depth_of(lhs), self.depth_of(rhs))
        if depth > MAX_TREE_DEPTH:  # before ``.type``, which recurses down the chain
            raise self.error(f"expression too deep (more than {MAX_TREE_DEPTH} levels of operators and calls)", op_tok)
        for side in (lhs, rhs):
            if side.type not in ("scalar", "vector"):
                raise self.error(
                    f"binary expression must contain only scalar and instant vector types, "
                    f"got {_TYPE_NAMES[side.type]}",
                    op_tok,
                )
        if op in COMPARISONS and lhs.type == "scalar" and rhs.type == "scalar" and not bool_mod:
            raise self.error("comparisons between scalars must use BOOL modifier", op_tok)
        if matching is not None and matching.on:
            for label in matching.include:
                if label in matching.labels:
                    raise self.error(f"label {label!r} must not occur in ON and GROUP clause at once", op_tok)
        if op in SET_OPERATORS and "scalar" in (lhs.type, rhs.type):
            raise self.error(f"set operator {op!r} not allowed in binary scalar expression", op_tok)
        if "scalar" in (lhs.type, rhs.type):
            if matching is not None and matching.labels:
                raise self.error("vector matching only allowed between instant vectors", op_tok)
            matching = None
        elif op in SET_OPERATORS:
            matching = matching or VectorMatching()
            if matching.card != "one-to-one":
                raise self.error(f"no grouping allowed for {op!r} operation", op_tok)
            matching = VectorMatching("many-to-many", matching.on, matching.labels)
        node = Binary(op, lhs, rhs, bool_mod, matching)
        self.depths[id(node)] = depth
        return node

    def unary(self) -> Expr:
        return self.expr(len(PRECEDENCE) - 1)

    def unary_operand(self) -> Expr:
        """Every level of nesting passes here once, so this is where its depth is bounded."""
        self.depth += 1
        try:
            if self.depth > MAX_NESTING + 1:  # the innermost operand is a level of its own
                raise self.error(f"expression nested too deeply (more than {MAX_NESTING} levels)")
            return self._unary_operand()
        finally:
            self.depth -= 1

    def _unary_operand(self) -> Expr:
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
        parenthesised = self.tok.kind == "("
        expr = self.primary()
        if self.tok.kind == "[":
            if not isinstance(expr, VectorSelector) or parenthesised:
                raise self.error(
                    "ranges only allowed for vector selectors (subqueries are not supported)"
                    if isinstance(expr, Call | Aggregate | Binary | Unary) or parenthesised
                    else "ranges only allowed for vector selectors"
                )
            self.advance()
            dur = self.tok
            if dur.kind == "NUMBER" and dur.text.isdigit():
                raise self.error(f"bad duration {dur.text!r}: missing unit (e.g. 5m)")
            self.expect("DURATION", "a duration like 5m or 1h30m")
            try:
                range_s = parse_prometheus_duration(dur.text)
            except ValueError as e:
                raise self.error(str(e), dur) from None
            if range_s <= 0:
                raise self.error("range must be positive", dur)
            if self.tok.kind == "IDENT" and self.tok.text.startswith(":"):
                raise self.error("subqueries are not supported")
            self.expect("]", "']'")
            expr = MatrixSelector(expr, range_s)
        if self.is_keyword("offset"):
            off_tok = self.advance()
            if parenthesised or not isinstance(expr, VectorSelector | MatrixSelector):
                raise self.error(
                    "offset modifier must be preceded by an instant vector selector or range vector selector",
                    off_tok,
                )
            sign = 1.0
            if self.is_op("-"):
                self.advance()
                sign = -1.0
            dur = self.tok
            self.expect("DURATION", "a duration like 5m after offset")
            try:
                offset_s = sign * parse_prometheus_duration(dur.text)
            except ValueError as e:
                raise self.error(str(e), dur) from None
            if isinstance(expr, MatrixSelector):
                expr = MatrixSelector(VectorSelector(expr.vector.selector, offset_s), expr.range_s)
            else:
                expr = VectorSelector(expr.selector, offset_s)
            if self.is_keyword("offset"):
                raise self.error("offset may not be set multiple times")
            if self.tok.kind == "[":
                raise self.error("no offset modifiers allowed before range")
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
            if (low in AGGREGATIONS or low in PARAM_AGGREGATIONS) and (
                nxt.kind == "(" or (nxt.kind == "IDENT" and nxt.text.lower() in ("by", "without"))
            ):
                return self.aggregation()
            if nxt.kind == "(":
                return self.call()
            if low in ("inf", "nan") and nxt.kind not in ("{", "["):
                self.advance()
                return NumberLiteral(float(low))
            if low in KEYWORDS or low in KEYWORDS_UNSUPPORTED:
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
        self.expect("(", "'(' before a list of label names")
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
        op = op_tok.text.lower()
        grouping: tuple[str, ...] | None = None
        without = False
        if self.is_keyword("by", "without"):
            without = self.advance().text.lower() == "without"
            grouping = self.grouping()
        self.expect("(", f"'(' after {op_tok.text!r}")
        if self.tok.kind == ")":
            raise self.error(f"no arguments for aggregate expression {op!r} provided")
        want = 2 if op in PARAM_AGGREGATIONS else 1
        arg_toks: list[Token] = []
        args: list[Expr] = []
        while True:
            arg_toks.append(self.tok)
            args.append(self.expr(0))
            if self.tok.kind != ",":
                break
            self.advance()
        if len(args) != want:
            raise self.error(
                f"wrong number of arguments for aggregate expression {op!r}: expected {want}, got {len(args)}",
                arg_toks[min(len(args), want) - 1] if len(args) > want else self.tok,
            )
        self.expect(")", "')'")
        if self.is_keyword("by", "without"):
            if grouping is not None:
                raise self.error("grouping given twice")
            without = self.advance().text.lower() == "without"
            grouping = self.grouping()
        arg, arg_tok = args[-1], arg_toks[-1]
        if arg.type != "vector":
            raise self.error(
                f"expected type instant vector in aggregation expression, got {_TYPE_NAMES[arg.type]}", arg_tok
            )
        param: Expr | None = None
        if op in PARAM_AGGREGATIONS:
            param, want_type = args[0], PARAM_AGGREGATIONS[op]
            if param.type != want_type:
                raise self.error(
                    f"expected type {_TYPE_NAMES[want_type]} in aggregation parameter, got {_TYPE_NAMES[param.type]}",
                    arg_toks[0],
                )
        return Aggregate(op, arg, grouping or (), without, param)

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
                    args.append(NumberLiteral(parse_prometheus_duration(dur.text)))
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
        variadic = VARIADIC.get(name, 0)
        where = arg_toks[0] if args else close
        if variadic == 0 and len(args) != len(want):
            raise self.error(f"expected {len(want)} argument(s) in call to {name!r}, got {len(args)}", where)
        if variadic != 0 and len(args) < len(want) - 1:
            raise self.error(
                f"expected at least {len(want) - 1} argument(s) in call to {name!r}, got {len(args)}", where
            )
        if variadic > 0 and len(args) > len(want) - 1 + variadic:
            raise self.error(
                f"expected at most {len(want) - 1 + variadic} argument(s) in call to {name!r}, got {len(args)}", where
            )
        for k, (arg, tok) in enumerate(zip(args, arg_toks, strict=True)):
            typ = want[min(k, len(want) - 1)]
            if arg.type != typ:
                raise self.error(
                    f"expected type {_TYPE_NAMES[typ]} in call to function {name!r}, got {_TYPE_NAMES[arg.type]}", tok
                )
        if name in DURATION_ARGS:
            i = DURATION_ARGS[name] - 1
            if not isinstance(args[i], VectorSelector) or args[i].offset_s:  # type: ignore[union-attr]
                raise self.error(
                    f'{name}() reads stored forecasts: its argument must be a metric selector like m{{l="v"}}',
                    arg_toks[i],
                )
        if name == "anomaly" and isinstance(args[0], MatrixSelector) and args[0].vector.offset_s:
            raise self.error("anomaly() reads stored scores: offset is not supported in its argument", arg_toks[0])
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
