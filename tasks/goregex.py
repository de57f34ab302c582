"""Go RE2 regular expressions (``regexp/syntax``, Perl flags), checked as Go does and run by RE2.

Why one translator: Prometheus label matchers (``=~``), Alertmanager matchers, PromQL's
``label_replace`` and the template functions ``match``/``reReplaceAll`` all take Go RE2 syntax, and
people paste the same regexes into each. So this module parses the pattern the way Go's
``regexp/syntax`` parser does (same grammar, same order of checks): a pattern Go rejects raises
``GoRegexError`` with Go's error code and fragment, so ``str(error)`` is Go's ``error parsing regexp:
CODE: `EXPR``` text, and with ``position``, the 0-based offset of the problem in the pattern. It emits
an equivalent pattern in which every atom carries its own flags, and compiles that with RE2
(``google-re2``): the C++ library Go's ``regexp`` was ported from.

Why RE2 and not Python's ``re``: ``re`` backtracks, so ``(a*)*c`` against 40 ``a`` runs for days, and a
regex is user input here (a lake query, an alert rule, a silence, a template). RE2 runs in time linear
in the text, as Go's ``regexp`` does, and with Go's semantics: leftmost-first matching and submatches,
``$`` only at the end of the text, ASCII ``\\d \\s \\w \\b``, Unicode simple case folding.

``compile_go_regex`` hands back a ``GoRegexp``: ``search`` is Go's ``MatchString``/``FindStringSubmatch``,
``fullmatch`` is Go's ``^(?:pattern)$`` (Prometheus's and Alertmanager's label match), ``expand`` is
``Regexp.ExpandString`` and ``replace_all`` is ``ReplaceAllString``. Targets Go ≤ 1.21 as shipped in
Prometheus 2.42 / Alertmanager 0.25 (``(?<name>…)`` is an error there). Not supported: Unicode classes
``\\pL``/``\\p{Greek}`` (Go accepts them; here they raise ``GoRegexError`` with code ``unsupported Unicode
class``: Go's and RE2's Unicode tables are of different versions, so we refuse rather than guess). A
program larger than RE2's memory budget fails with Go's ``expression too large``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import re2

__all__ = ["GoMatch", "GoRegexError", "GoRegexp", "compile_go_regex", "translate_go_regex"]

# Go's regexp/syntax ErrorCode texts.
ERR_INVALID_CHAR_RANGE = "invalid character class range"
ERR_INVALID_ESCAPE = "invalid escape sequence"
ERR_INVALID_NAMED_CAPTURE = "invalid named capture"
ERR_INVALID_PERL_OP = "invalid or unsupported Perl syntax"
ERR_INVALID_REPEAT_OP = "invalid nested repetition operator"
ERR_INVALID_REPEAT_SIZE = "invalid repeat count"
ERR_MISSING_BRACKET = "missing closing ]"
ERR_MISSING_PAREN = "missing closing )"
ERR_MISSING_REPEAT_ARGUMENT = "missing argument to repetition operator"
ERR_TRAILING_BACKSLASH = "trailing backslash at end of expression"
ERR_UNEXPECTED_PAREN = "unexpected )"
ERR_LARGE = "expression too large"
#: Not a Go code: Go accepts ``\\p`` classes, Python's ``re`` has none, and we do not build the tables.
ERR_UNSUPPORTED_UNICODE_CLASS = "unsupported Unicode class"


class GoRegexError(ValueError):
    """A pattern Go's ``regexp.Compile`` rejects (or, for ``\\p`` classes, that we do not support).

    ``code`` and ``expr`` are Go's ``syntax.Error`` fields; ``str()`` is Go's ``Error()`` text;
    ``position`` is the 0-based offset in ``pattern`` where the offending part starts."""

    def __init__(self, code: str, expr: str, pattern: str, position: int) -> None:
        self.code = code
        self.expr = expr
        self.pattern = pattern
        self.position = position
        super().__init__(f"error parsing regexp: {code}: `{expr}`")


_MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000

#: Go's ``perlGroup``: ASCII-only ``\\d \\s \\w`` (RE2 does not follow Unicode here).
_PERL_GROUPS: dict[str, tuple[bool, tuple[tuple[int, int], ...]]] = {
    "d": (False, ((0x30, 0x39),)),
    "D": (True, ((0x30, 0x39),)),
    "s": (False, ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))),
    "S": (True, ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))),
    "w": (False, ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))),
    "W": (True, ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))),
}

#: Go's ``posixGroup`` (``[:^name:]`` is the negation).
_POSIX_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}

_SIMPLE_ESCAPES = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_FLAG_LETTERS = frozenset("imsU")


@dataclass
class _Atom:
    """One item of Go's parse stack, already in Python syntax (with its flags baked in).

    ``reps`` is the largest product of ``{n,m}`` counts along any nesting path inside it: Go rejects
    a counted repeat whose nested product exceeds 1000 (``repeatIsValid``)."""

    py: str
    reps: int = 1


@dataclass
class _Group:
    """An open ``(``: the alternatives parsed so far and the flags to restore at its ``)``."""

    open_py: str  # "(", "(?:" or "(?P<name>"
    flags: frozenset[str]
    start: int
    alts: list[list[_Atom]] = field(default_factory=list)
    cur: list[_Atom] = field(default_factory=list)


def _cp(c: int) -> str:
    """One code point as an RE2 escape: nothing in it is special, inside a class or out."""
    return f"\\x{{{c:x}}}"


def _ranges_py(ranges: list[tuple[int, int]]) -> str:
    """RE2 class body for code-point ranges, every code point escaped so nothing is special."""
    return "".join(_cp(lo) if lo == hi else f"{_cp(lo)}-{_cp(hi)}" for lo, hi in ranges)


def _normalise(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in _normalise(list(ranges)):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _class_py(ranges: list[tuple[int, int]], negated: bool, fold: bool) -> str:
    """An RE2 class; negation is left to RE2 so that, under ``(?i)``, it folds then negates as Go."""
    norm = _normalise(ranges)
    if not norm:  # cannot come from Go syntax (a class has an item), but stay total
        norm, negated = [(0, _MAX_RUNE)], not negated
    py = f"[{'^' if negated else ''}{_ranges_py(norm)}]"
    return f"(?i:{py})" if fold else py


def _literal_py(c: str, fold: bool) -> str:
    esc = c if c.isascii() and c.isalnum() else _cp(ord(c))
    if fold and (c.lower() != c or c.upper() != c):
        return f"(?i:{esc})"
    return esc


class _Parser:
    """Go's ``regexp/syntax`` parser (Perl flags), emitting RE2 text instead of a syntax tree."""

    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.flags: frozenset[str] = frozenset()  # "i" fold, "m" multi-line, "s" dot-NL, "U" ungreedy
        self.stack: list[_Group] = [_Group("", frozenset(), 0)]
        self.names: set[str] = set()

    def error(self, code: str, expr: str, position: int) -> GoRegexError:
        return GoRegexError(code, expr, self.s, position)

    @property
    def fold(self) -> bool:
        return "i" in self.flags

    def push(self, py: str, reps: int = 1) -> None:
        self.stack[-1].cur.append(_Atom(py, reps))

    # ---- escapes -------------------------------------------------------------------------------------

    def parse_escape(self, i: int) -> tuple[int, int]:
        """Go's ``parseEscape`` at ``s[i] == '\\\\'``: (code point, index after it)."""
        s = self.s
        j = i + 1
        if j >= len(s):
            raise self.error(ERR_TRAILING_BACKSLASH, "", i)
        c = s[j]
        j += 1
        if c in "1234567" and (j >= len(s) or not "0" <= s[j] <= "7"):
            pass  # a single non-zero digit is a back-reference: unsupported
        elif c in "01234567":
            r = ord(c) - 0x30
            for _ in range(2):
                if j >= len(s) or not "0" <= s[j] <= "7":
                    break
                r = r * 8 + ord(s[j]) - 0x30
                j += 1
            return r, j
        elif c == "x":
            if j < len(s):
                if s[j] == "{":
                    j += 1
                    r, nhex = 0, 0
                    while j < len(s):
                        d = s[j]
                        j += 1
                        if d == "}":
                            if nhex:
                                return r, j
                            break
                        if d not in "0123456789abcdefABCDEF":
                            break
                        r = r * 16 + int(d, 16)
                        if r > _MAX_RUNE:
                            break
                        nhex += 1
                else:
                    x = s[j]
                    j += 1
                    y = s[j] if j < len(s) else ""
                    j = min(j + 1, len(s))
                    hexd = "0123456789abcdefABCDEF"
                    if x in hexd and y and y in hexd:
                        return int(x + y, 16), j
        elif c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c], j
        elif ord(c) < 0x80 and not c.isalnum():
            return ord(c), j  # escaped punctuation (and \_) is itself
        raise self.error(ERR_INVALID_ESCAPE, s[i:j], i)

    def unicode_class(self, i: int) -> None:
        """``\\p``/``\\P`` at ``i``: Go checks the name against its tables; we do not support them."""
        s = self.s
        if i + 2 < len(s) and s[i + 2] == "{":
            end = s.find("}", i)
            if end < 0:
                raise self.error(ERR_INVALID_CHAR_RANGE, s[i:], i)
            seq = s[i : end + 1]
        else:
            seq = s[i : i + 3]
        raise self.error(ERR_UNSUPPORTED_UNICODE_CLASS, seq, i)

    # ---- classes -------------------------------------------------------------------------------------

    def parse_class(self, i: int) -> int:
        """Go's ``parseClass`` at ``s[i] == '['``; pushes the class, returns the index after ``]``."""
        s = self.s
        whole = s[i:]
        j = i + 1
        negated = False
        if j < len(s) and s[j] == "^":
            negated = True
            j += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while j >= len(s) or s[j] != "]" or first:
            first = False
            if j + 2 < len(s) and s.startswith("[:", j):
                end = s.find(":]", j + 2)
                if end >= 0:
                    name = s[j : end + 2]
                    inner = name[2:-2]
                    neg = inner.startswith("^")
                    group = _POSIX_GROUPS.get(inner[1:] if neg else inner)
                    if group is None:
                        raise self.error(ERR_INVALID_CHAR_RANGE, name, j)
                    ranges += _negate(group) if neg else group
                    j = end + 2
                    continue
            if j + 1 < len(s) and s[j] == "\\" and s[j + 1] in "pP":
                self.unicode_class(j)
            if j + 1 < len(s) and s[j] == "\\" and s[j + 1] in _PERL_GROUPS:
                neg, group = _PERL_GROUPS[s[j + 1]]
                ranges += _negate(group) if neg else group
                j += 2
                continue
            rng_start = j
            lo, j = self.parse_class_char(j, whole, i)
            hi = lo
            if j + 1 < len(s) and s[j] == "-" and s[j + 1] != "]":
                hi, j = self.parse_class_char(j + 1, whole, i)
                if hi < lo:
                    raise self.error(ERR_INVALID_CHAR_RANGE, s[rng_start:j], rng_start)
            ranges.append((lo, hi))
        self.push(_class_py(ranges, negated, self.fold))
        return j + 1

    def parse_class_char(self, j: int, whole: str, class_start: int) -> tuple[int, int]:
        if j >= len(self.s):
            raise self.error(ERR_MISSING_BRACKET, whole, class_start)
        if self.s[j] == "\\":
            return self.parse_escape(j)
        return ord(self.s[j]), j + 1

    # ---- groups and flags ----------------------------------------------------------------------------

    def parse_perl_flags(self, i: int) -> int:
        """Go's ``parsePerlFlags`` at ``s[i:].startswith('(?')``; returns the index after it."""
        s = self.s
        if len(s) - i > 4 and s[i + 2] == "P" and s[i + 3] == "<":
            end = s.find(">", i)
            if end < 0:
                raise self.error(ERR_INVALID_NAMED_CAPTURE, s[i:], i)
            name = s[i + 4 : end]
            if not name or not all(ch == "_" or (ch.isascii() and ch.isalnum()) for ch in name):
                raise self.error(ERR_INVALID_NAMED_CAPTURE, s[i : end + 1], i)
            # RE2 refuses a repeated name, which Go allows (its first use wins): number the repeats.
            if name not in self.names:
                self.names.add(name)
                self.open_group(f"(?P<{name}>", i)
            else:
                self.open_group("(", i)
            return end + 1
        j = i + 2
        on: set[str] = set()
        off: set[str] = set()
        negative = saw_flag = False
        while j < len(s):
            c = s[j]
            j += 1
            if c in _FLAG_LETTERS:
                (off if negative else on).add(c)
                saw_flag = True
            elif c == "-" and not negative:
                negative, saw_flag = True, False
            elif c in ":)":
                if negative and not saw_flag:
                    break
                new_flags = frozenset((self.flags | on) - off)
                if c == ":":
                    self.open_group("(?:", i)
                self.flags = new_flags
                return j
            else:
                break
        raise self.error(ERR_INVALID_PERL_OP, s[i:j], i)

    def open_group(self, open_py: str, start: int) -> None:
        self.stack.append(_Group(open_py, self.flags, start))

    def close_group(self, i: int) -> None:
        if len(self.stack) < 2:
            raise self.error(ERR_UNEXPECTED_PAREN, self.s, i)
        g = self.stack.pop()
        self.flags = g.flags
        py, reps = self.join(g)
        self.push(f"{g.open_py}{py})", reps)

    @staticmethod
    def join(g: _Group) -> tuple[str, int]:
        alts = [*g.alts, g.cur]
        py = "|".join("".join(a.py for a in alt) for alt in alts)
        reps = max((a.reps for alt in alts for a in alt), default=1)
        return py, reps

    # ---- repetition ----------------------------------------------------------------------------------

    def repeat(self, lo: int, hi: int | None, op_start: int, after: int, last_repeat: int | None) -> int:
        """Go's ``repeat``: apply ``{lo,hi}`` (``hi`` None = unbounded) to the last atom."""
        s = self.s
        greedy = "U" not in self.flags
        if after < len(s) and s[after] == "?":
            after += 1
            greedy = not greedy
        if last_repeat is not None:
            raise self.error(ERR_INVALID_REPEAT_OP, s[last_repeat:after], last_repeat)
        cur = self.stack[-1].cur
        if not cur:
            raise self.error(ERR_MISSING_REPEAT_ARGUMENT, s[op_start:after], op_start)
        sub = cur[-1]
        counted = s[op_start] == "{"
        reps = sub.reps
        if counted:
            # Go's repeatIsValid: a {0} repeat hides what it repeats; {n,} counts as n.
            m = hi if hi is not None else lo
            reps = max(m, 1) * sub.reps if hi != 0 else 1
            if (lo >= 2 or (hi is not None and hi >= 2)) and reps > _MAX_REPEAT:
                raise self.error(ERR_INVALID_REPEAT_SIZE, s[op_start:after], op_start)
        if (lo, hi) == (0, None):
            q = "*"
        elif (lo, hi) == (1, None):
            q = "+"
        elif (lo, hi) == (0, 1) and not counted:
            q = "?"
        elif hi is None:
            q = f"{{{lo},}}"
        elif lo == hi:
            q = f"{{{lo}}}"
        else:
            q = f"{{{lo},{hi}}}"
        cur[-1] = _Atom(f"(?:{sub.py}){q}{'' if greedy else '?'}", reps)
        return after

    def parse_repeat(self, i: int) -> tuple[int, int | None, int] | None:
        """Go's ``parseRepeat`` at ``s[i] == '{'``: (min, max or None, index after) or None (literal)."""
        m = re.compile(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}").match(self.s, i)
        if m is None:
            return None

        def num(t: str) -> int:
            return -1 if len(t) > 8 else int(t)  # Go stops counting at 1e8

        lo = num(m.group(1))
        if m.group(2) is None:
            hi: int | None = lo
        elif m.group(3) is None:
            hi = None
        else:
            hi = num(m.group(3))
            if hi < 0:
                lo = -1
        return lo, hi, m.end()

    # ---- main loop -----------------------------------------------------------------------------------

    def parse(self) -> str:
        s = self.s
        i = 0
        last_repeat: int | None = None
        while i < len(s):
            c = s[i]
            repeat_at: int | None = None
            if c == "(":
                if s.startswith("(?", i):
                    i = self.parse_perl_flags(i)
                else:
                    self.open_group("(", i)
                    i += 1
            elif c == "|":
                g = self.stack[-1]
                g.alts.append(g.cur)
                g.cur = []
                i += 1
            elif c == ")":
                self.close_group(i)
                i += 1
            elif c == "^":
                self.push("(?m:^)" if "m" in self.flags else "\\A")
                i += 1
            elif c == "$":
                self.push("(?m:$)" if "m" in self.flags else "\\z")
                i += 1
            elif c == ".":
                self.push("(?s:.)" if "s" in self.flags else "[^\\n]")
                i += 1
            elif c == "[":
                i = self.parse_class(i)
            elif c in "*+?":
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
                repeat_at = i
                i = self.repeat(lo, hi, i, i + 1, last_repeat)
            elif c == "{":
                parsed = self.parse_repeat(i)
                if parsed is None:
                    self.push(_literal_py("{", False))
                    i += 1
                else:
                    lo, hi, after = parsed
                    if lo < 0 or lo > _MAX_REPEAT or (hi is not None and (hi > _MAX_REPEAT or lo > hi)):
                        raise self.error(ERR_INVALID_REPEAT_SIZE, s[i:after], i)
                    repeat_at = i
                    i = self.repeat(lo, hi, i, after, last_repeat)
            elif c == "\\":
                i = self.parse_backslash(i)
            else:
                self.push(_literal_py(c, self.fold))
                i += 1
            last_repeat = repeat_at
        if len(self.stack) != 1:
            raise self.error(ERR_MISSING_PAREN, s, self.stack[-1].start)
        return self.join(self.stack[0])[0]

    def parse_backslash(self, i: int) -> int:
        s = self.s
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if nxt == "A":
            self.push("\\A")
        elif nxt == "z":
            self.push("\\z")
        elif nxt == "b":
            self.push("\\b")  # ASCII in RE2, as in Go
        elif nxt == "B":
            self.push("\\B")
        elif nxt == "C":
            raise self.error(ERR_INVALID_ESCAPE, s[i : i + 2], i)
        elif nxt == "Q":
            end = s.find("\\E", i + 2)
            lit = s[i + 2 :] if end < 0 else s[i + 2 : end]
            for ch in lit:
                self.push(_literal_py(ch, self.fold))
            return len(s) if end < 0 else end + 2
        elif nxt in ("p", "P"):
            self.unicode_class(i)
        elif nxt and nxt in _PERL_GROUPS:
            neg, group = _PERL_GROUPS[nxt]
            self.push(_class_py(_negate(group) if neg else list(group), False, self.fold))
        else:
            r, j = self.parse_escape(i)
            self.push(_literal_py(chr(r), self.fold))
            return j
        return i + 2


def translate_go_regex(pattern: str) -> str:
    """The RE2 source equivalent to Go RE2 ``pattern`` (unanchored, flags inline, literals escaped).

    Raises ``GoRegexError`` (Go's message, and the position) for what ``regexp.Compile`` rejects."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern: expected a str, got {type(pattern).__name__}")
    return _Parser(pattern).parse()


#: RE2's memory budget per compiled pattern (its default): the program and the DFA's state cache.
#: A pattern whose program does not fit fails with Go's ``expression too large``; a DFA that runs
#: out falls back to RE2's NFA, still linear in the text.
MAX_MEM_BYTES = 8 << 20


def _options() -> Any:
    opts = re2.Options()
    opts.max_mem = MAX_MEM_BYTES
    opts.log_errors = False  # RE2 would print every refused pattern to stderr
    return opts


_OPTIONS = _options()


class GoMatch(Protocol):
    """One match (``re2``'s match object, the ``re.Match`` API): offsets count code points."""

    def group(self, *groups: int | str) -> Any: ...

    def span(self, group: int = 0) -> tuple[int, int]: ...

    def start(self, group: int = 0) -> int: ...

    def end(self, group: int = 0) -> int: ...


def _utf8(text: str) -> str:
    """``text`` as RE2 can take it: a lone surrogate (no UTF-8 form) becomes U+FFFD, as Go reads a
    bad byte. Why: a crash on one odd label value must not stop an alert tick."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


class GoRegexp:
    """A compiled Go regexp run by RE2 (linear time in the text): the one API every caller uses."""

    __slots__ = ("_names", "_rx", "pattern")

    def __init__(self, pattern: str, rx: Any) -> None:
        self.pattern = pattern  # the Go source, for messages
        self._rx = rx
        self._names: dict[str, int] = dict(rx.groupindex)

    def __repr__(self) -> str:
        return f"GoRegexp({self.pattern!r})"

    @property
    def groups(self) -> int:
        """Number of capturing groups (Go's ``NumSubexp``)."""
        return int(self._rx.groups)

    @property
    def groupindex(self) -> Mapping[str, int]:
        """Named groups and their numbers (the first use of a name Go allows twice)."""
        return self._names

    def search(self, text: str, pos: int = 0) -> GoMatch | None:
        """The leftmost-first match at or after ``pos`` (Go's ``FindStringSubmatch``), or None."""
        return self._rx.search(_utf8(text), pos)

    def fullmatch(self, text: str) -> GoMatch | None:
        """A match of the whole text: Go's ``^(?:pattern)$``, Prometheus's label match."""
        return self._rx.fullmatch(_utf8(text))

    def finditer(self, text: str) -> Iterator[GoMatch]:
        """Successive matches as Go's ``FindAll`` loop meets them (an empty match advances one
        character), including an empty match right after a match: ``replace_all`` drops those."""
        return self._rx.finditer(_utf8(text))

    def expand(self, template: str, m: GoMatch) -> str:
        """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; a group that
        does not exist or did not take part expands to ""; a malformed ``$`` is literal text."""
        out: list[str] = []
        while template:
            before, sep, after = template.partition("$")
            if not sep:
                break
            out.append(before)
            template = after
            if template.startswith("$"):
                out.append("$")
                template = template[1:]
                continue
            got = _extract(template)
            if got is None:
                out.append("$")
                continue
            name, num, template = got
            group = num if num >= 0 else self._names.get(name, -1)
            if 0 <= group <= self.groups:
                text = m.group(group)
                if text is not None:
                    out.append(text)
        out.append(template)
        return "".join(out)

    def replace_all(self, text: str, repl: str) -> str:
        """Go's ``ReplaceAllString(text, repl)`` (``repl`` expanded as ``expand``): no replacement for
        an empty match right after a previous match, so ``a*`` on ``baaac`` gives ``-b-c-``."""
        text = _utf8(text)
        out: list[str] = []
        last_end = 0
        for m in self.finditer(text):
            a0, a1 = m.span()
            out.append(text[last_end:a0])
            if a1 > last_end or a0 == 0:
                out.append(self.expand(repl, m))
            last_end = a1
        out.append(text[last_end:])
        return "".join(out)


def _extract(s: str) -> tuple[str, int, str] | None:
    """Go's ``regexp.extract``: the name after a ``$`` (braced or not), its number (-1 if not a
    number: leading zero, non-ASCII digits or ≥ 1e9), and the rest; None when malformed."""
    brace = s.startswith("{")
    if brace:
        s = s[1:]
    i = 0
    while i < len(s) and (s[i].isalpha() or s[i].isdecimal() or s[i] == "_"):  # unicode.IsLetter/IsDigit
        i += 1
    if i == 0:
        return None
    name = s[:i]
    if brace:
        if i >= len(s) or s[i] != "}":
            return None
        i += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(ch) - 0x30
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, s[i:]


@lru_cache(maxsize=2048)
def compile_go_regex(pattern: str) -> GoRegexp:
    """``regexp.Compile(pattern)``, run by RE2; raises ``GoRegexError`` as Go's ``Compile`` would.

    Cached: rule evaluation and routing compile the same few patterns over and over."""
    source = translate_go_regex(pattern)
    try:
        rx = re2.compile(source, _OPTIONS)
    except re2.error as exc:
        if "too large" in str(exc):  # RE2's "pattern too large - compile failed"
            raise GoRegexError(ERR_LARGE, pattern, pattern, 0) from None
        # a translation bug, not user error: say so with Go's shape
        raise GoRegexError(f"cannot translate to RE2 ({exc})", pattern, pattern, 0) from None
    return GoRegexp(pattern, rx)
