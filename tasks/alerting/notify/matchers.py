"""Alertmanager label matchers: ``alertname="X"``, ``severity=~"crit|page"``, ``a!=b``, ``b!~"x.*"``.

Why a faithful copy of Alertmanager 0.25's parser (``pkg/labels/parse.go``) rather than a grammar of our
own: people paste matchers from their Alertmanager configs and ``amtool silence add`` habits, so the
same text must mean the same thing here — a list in optional ``{…}``, commas outside quotes separating
matchers, unquoted values, OpenMetrics escapes (``\\"``, ``\\n``, ``\\\\``; any other ``\\x`` stays a
literal backslash), a missing label compared as the empty string, regexes fully anchored.

Regexes are Go RE2 in Alertmanager; ``compile_go_regex`` translates them with ``tasks.goregex`` (the one
translator the templates and the lake's selectors use too), which rejects what RE2 rejects (look-around,
back-references) with Go's message instead of silently accepting more.

Config errors elsewhere in the alerting package carry a *path* into the config (``route.routes[1]``);
``ConfigPathError`` is that shared error type, so the file loader can turn a path into ``file:line:col``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tasks import goregex

__all__ = [
    "ConfigPathError",
    "MatchOp",
    "Matcher",
    "MatcherError",
    "compile_go_regex",
    "format_path",
    "matchers_from_legacy",
    "matchers_match",
    "matchers_text",
    "new_matcher",
    "parse_matcher",
    "parse_matchers",
]

MatchOp = Literal["=", "!=", "=~", "!~"]
_OP_ORDER: dict[str, int] = {"=": 0, "!=": 1, "=~": 2, "!~": 3}

#: Alertmanager's classic matcher name (note: it allows ``:``, like metric names).
_MATCHER_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
#: Prometheus label names (``match:`` keys, ``group_by``, ``equal``).
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_WS_CHARS = " \t\n\f\r"  # Go's \s: ASCII only
_WS = "[ \t\n\f\r]"
#: Matched against the token with its trailing blanks stripped first: a lazy ``(.*?)\s*\Z`` here
#: backtracked quadratically over a long inner run of spaces. As written it is linear.
_MATCHER_RE = re.compile(rf"{_WS}*([a-zA-Z_:][a-zA-Z0-9_:]*){_WS}*(=~|=|!=|!~){_WS}*(.*)\Z", re.S)


PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """``("route", "routes", 1, "receiver")`` → ``route.routes[1].receiver``."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


class ConfigPathError(ValueError):
    """A config problem at ``path`` (keys and list indices from the document root).

    ``at_key`` says the problem is the key itself (an unknown field), so a loader points at the key;
    ``offset`` points inside a string value (a matcher's bad character)."""

    def __init__(
        self, path: Sequence[PathPart], message: str, *, at_key: bool = False, offset: int | None = None
    ) -> None:
        self.path = tuple(path)
        self.message = message
        self.at_key = at_key
        self.offset = offset  # 0-based offset inside the string value at ``path``, when known
        where = format_path(self.path)
        super().__init__(f"{where}: {message}" if where else message)


class MatcherError(ValueError):
    """A matcher that cannot be parsed; ``position`` is the 0-based offset in the text parsed."""

    def __init__(self, message: str, text: str = "", position: int = 0) -> None:
        self.message = message
        self.text = text
        self.position = position
        super().__init__(f"{message} (at column {position + 1} of {text!r})" if text else message)


# ---- Go RE2 → Python re ----------------------------------------------------------------------------------

#: Go's wording stops at "invalid or unsupported Perl syntax"; say what RE2 lacks.
_PERL_HINTS = {
    "(?=": "RE2 has no look-around",
    "(?!": "RE2 has no look-around",
    "(?<": "RE2 has no look-behind; name a group with (?P<name>...)",
}


def compile_go_regex(pattern: str) -> goregex.GoRegexp:
    """Compile an RE2 pattern (``tasks.goregex``) so that ``fullmatch`` behaves as Go's ``^(?:pattern)$``.

    Raises ``MatcherError`` with Go's message and the offset for syntax RE2 rejects."""
    try:
        return goregex.compile_go_regex(pattern)
    except goregex.GoRegexError as exc:
        hint = _PERL_HINTS.get(exc.expr[:3]) if exc.code == goregex.ERR_INVALID_PERL_OP else None
        extra = f" ({hint})" if hint else ""
        raise MatcherError(f"invalid regular expression: {exc}{extra}", pattern, exc.position) from None


# ---- matcher ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """One label matcher; ``matches`` follows Alertmanager: a missing label is the empty string."""

    name: str
    op: MatchOp
    value: str
    _regex: goregex.GoRegexp | None = field(default=None, compare=False, repr=False)

    def matches_value(self, s: str) -> bool:
        if self.op == "=":
            return s == self.value
        if self.op == "!=":
            return s != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(s) is not None
        return hit if self.op == "=~" else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))

    @property
    def matches_empty(self) -> bool:
        """Alertmanager's silence rule: only ``=""`` and regexes matching ``""`` count (negatives never)."""
        if self.op == "=":
            return self.value == ""
        if self.op == "=~":
            return self.matches_value("")
        return False

    @property
    def sort_key(self) -> tuple[str, str, int]:
        """Alertmanager's ``Matchers.Less``: name, then value, then type."""
        return (self.name, self.value, _OP_ORDER[self.op])

    def __str__(self) -> str:
        v = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{v}"'

    def to_list(self) -> list[str]:
        return [self.name, self.op, self.value]


def new_matcher(name: str, op: str, value: str) -> Matcher:
    """Build a matcher, compiling its regex; raises ``MatcherError`` naming the bad part."""
    if op not in _OP_ORDER:
        raise MatcherError(f"unknown match operator {op!r} (use =, !=, =~ or !~)")
    if not _MATCHER_NAME_RE.match(name):
        raise MatcherError(f"invalid label name {name!r}")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_go_regex(value)
        except MatcherError as exc:
            raise MatcherError(f"label {name!r}: {exc.message}", exc.text, exc.position) from None
    return Matcher(name, op, value, regex)  # type: ignore[arg-type]


def _unescape(raw: str, text: str, offset: int) -> str:
    """parse.go's unescaping of the value token (``raw`` starts at ``offset`` in ``text``)."""
    expect_quote = False
    start = 0
    if raw.startswith('"'):
        expect_quote = True
        start = 1
    value: list[str] = []
    escaped = False
    body = raw[start:]
    last = len(body) - 1
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
            if ch == "n":
                value.append("\n")
            elif ch in '"\\':
                value.append(ch)
            else:
                value.append("\\" + ch)
            continue
        if ch == "\\":
            if i < last:
                escaped = True
                continue
            value.append("\\")
        elif ch == '"':
            if not expect_quote or i < last:
                raise MatcherError("matcher value contains unescaped double quote", text, offset + start + i)
            expect_quote = False
        else:
            value.append(ch)
    if expect_quote:
        raise MatcherError("matcher value is missing its closing double quote", text, offset + len(raw))
    return "".join(value)


def _parse_one(token: str, text: str, offset: int) -> Matcher:
    m = _MATCHER_RE.match(token.rstrip(_WS_CHARS))
    if m is None:
        stripped = token.lstrip(" \t\n\f\r")
        pos = offset + len(token) - len(stripped)
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped)
        if name is None:
            raise MatcherError("bad matcher format: expected a label name", text, pos)
        raise MatcherError(
            f"bad matcher format: expected =, !=, =~ or !~ after label {name.group(0)!r}", text, pos + name.end()
        )
    value = _unescape(m.group(3), text, offset + m.start(3))
    try:
        return new_matcher(m.group(1), m.group(2), value)
    except MatcherError as exc:
        pos = offset + m.start(3) + (1 if m.group(3).startswith('"') else 0) + exc.position
        raise MatcherError(exc.message, text, pos) from None


def parse_matchers(text: str) -> list[Matcher]:
    """A comma-separated list, optionally in ``{…}``, as Alertmanager's ``ParseMatchers`` reads it."""
    s = text
    offset = 0
    if s.startswith("{"):
        s = s[1:]
        offset = 1
    if s.endswith("}"):
        s = s[:-1]
    tokens: list[tuple[str, int]] = []
    inside = escaped = False
    start = 0
    for i, ch in enumerate(s):
        if ch == "," and not inside:
            tokens.append((s[start:i], offset + start))
            start = i + 1
            continue
        if ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
    last = s[start:]
    if last.strip(" \t\n\f\r\v"):
        tokens.append((last, offset + start))
    return [_parse_one(tok, text, off) for tok, off in tokens]


def parse_matcher(text: str) -> Matcher:
    """Exactly one matcher (``name op value``); a list is an error here."""
    return _parse_one(text, text, 0)


def matchers_from_legacy(match: Mapping[str, object] | None, match_re: Mapping[str, object] | None) -> list[Matcher]:
    """Alertmanager's deprecated ``match:`` (equality) and ``match_re:`` (anchored regex) maps."""
    out: list[Matcher] = []
    for name, value in (match or {}).items():
        if not LABEL_NAME_RE.match(str(name)):
            raise MatcherError(f"invalid label name {name!r}")
        out.append(new_matcher(str(name), "=", _scalar_text(value)))
    for name, value in (match_re or {}).items():
        if not LABEL_NAME_RE.match(str(name)):
            raise MatcherError(f"invalid label name {name!r}")
        out.append(new_matcher(str(name), "=~", _scalar_text(value)))
    return out


def _scalar_text(value: object) -> str:
    """A YAML scalar as Go's yaml.v2 would decode it into a string (``true``, ``500``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float | str):
        return str(value)
    raise MatcherError(f"expected a string, got {type(value).__name__}")


def matchers_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """All matchers hold for ``labels`` (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def matchers_text(matchers: Iterable[Matcher]) -> str:
    """``{a="1",b=~"x"}`` as Alertmanager prints a matcher list (route keys use this)."""
    return "{" + ",".join(str(m) for m in matchers) + "}"
