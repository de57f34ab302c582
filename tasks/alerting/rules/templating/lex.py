"""The template lexer: Go's ``text/template/parse/lex.go`` (Go 1.19, which built Debian's
Prometheus 2.42), with its ``{{-``/``-}}`` trimming, comments and Go literals, and its error texts."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from tasks.alerting.rules.templating.printf import go_quote

__all__ = ["Lexer", "Token"]


_SPACE = " \t\r\n"
_KEYWORDS = {
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "nil",
    "template",
    "with",
}


@dataclass(frozen=True)
class Token:
    typ: str  # text left right space eof ident field var dot nil bool number char string rawstring
    #           pipe lparen rparen declare assign charitem complex, or a keyword
    val: str
    pos: int


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd" if c else False


class Lexer:
    def __init__(self, src: str, error: Callable[[int, str], Exception]) -> None:
        self.src = src
        self.error = error
        self.toks: list[Token] = []

    def run(self) -> list[Token]:
        src, n = self.src, len(self.src)
        i = 0
        trim_left = False
        while True:
            j = src.find("{{", i)
            text = src[i:] if j < 0 else src[i:j]
            start = i
            if trim_left:
                stripped = text.lstrip(_SPACE)
                start += len(text) - len(stripped)
                text = stripped
            trim = j >= 0 and src.startswith("-", j + 2) and j + 3 < n and src[j + 3] in _SPACE
            if trim:
                text = text.rstrip(_SPACE)
            if text:
                self.toks.append(Token("text", text, start))
            if j < 0:
                self.toks.append(Token("eof", "", n))
                return self.toks
            pos = j + 2 + (2 if trim else 0)
            if src.startswith("/*", pos):
                k = src.find("*/", pos + 2)
                if k < 0:
                    raise self.error(j, "unclosed comment")
                k += 2
                if src.startswith("}}", k):
                    i, trim_left = k + 2, False
                elif k + 1 < n and src[k] in _SPACE and src.startswith("-}}", k + 1):
                    i, trim_left = k + 4, True
                else:
                    raise self.error(j, "comment ends before closing delimiter")
                continue
            self.toks.append(Token("left", "{{", j))
            i, trim_left = self.inside(pos, j)

    def at_right(self, i: int) -> tuple[bool, bool]:
        src = self.src
        if i + 1 < len(src) and src[i] in _SPACE and src[i + 1] == "-" and src.startswith("}}", i + 2):
            return True, True
        return src.startswith("}}", i), False

    def at_terminator(self, i: int) -> bool:
        if i >= len(self.src):
            return True
        c = self.src[i]
        return c in _SPACE or c in ".,|:()" or self.src.startswith("}}", i)

    def inside(self, i: int, left: int) -> tuple[int, bool]:
        """Lex one action starting at ``i`` (its ``{{`` at ``left``); returns the index after ``}}``
        and whether it trims the following text."""
        src, n = self.src, len(self.src)
        paren = 0
        while True:
            delim, trim = self.at_right(i)
            if delim:
                if paren:
                    raise self.error(i, "unclosed left paren")
                if trim:
                    i += 2
                self.toks.append(Token("right", "}}", i))
                return i + 2, trim
            if i >= n:
                raise self.error(left, "unclosed action")
            c = src[i]
            if c in _SPACE:
                k = i
                while k < n and src[k] in _SPACE:
                    k += 1
                # a space right before "-}}" belongs to the trim marker
                if src.startswith("-}}", k) and k - 1 >= i:
                    if k - 1 > i:
                        self.toks.append(Token("space", src[i : k - 1], i))
                    i = k - 1
                    continue
                self.toks.append(Token("space", src[i:k], i))
                i = k
            elif c == "=":
                self.toks.append(Token("assign", "=", i))
                i += 1
            elif c == ":":
                if not src.startswith(":=", i):
                    raise self.error(i, "expected :=")
                self.toks.append(Token("declare", ":=", i))
                i += 2
            elif c == "|":
                self.toks.append(Token("pipe", "|", i))
                i += 1
            elif c == '"':
                k = i + 1
                while True:
                    if k >= n or src[k] == "\n":
                        raise self.error(i, "unterminated quoted string")
                    if src[k] == "\\":
                        k += 2
                        continue
                    if src[k] == '"':
                        break
                    k += 1
                self.toks.append(Token("string", src[i : k + 1], i))
                i = k + 1
            elif c == "`":
                k = src.find("`", i + 1)
                if k < 0:
                    raise self.error(i, "unterminated raw quoted string")
                self.toks.append(Token("rawstring", src[i : k + 1], i))
                i = k + 1
            elif c == "'":
                k = i + 1
                while True:
                    if k >= n or src[k] == "\n":
                        raise self.error(i, "unterminated character constant")
                    if src[k] == "\\":
                        k += 2
                        continue
                    if src[k] == "'":
                        break
                    k += 1
                self.toks.append(Token("char", src[i : k + 1], i))
                i = k + 1
            elif c == "$":
                k = i + 1
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                self.toks.append(Token("var", src[i:k], i))
                i = k
            elif c == "." and not (i + 1 < n and src[i + 1].isdigit()):
                if self.at_terminator(i + 1):
                    self.toks.append(Token("dot", ".", i))
                    i += 1
                    continue
                k = i + 1
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                self.toks.append(Token("field", src[i:k], i))
                i = k
            elif c in "+-.0123456789":
                k = self.scan_number(i)
                if k < n and src[k] in "+-":
                    k2 = self.scan_number(k)
                    if not src[k2 - 1 : k2] == "i":
                        raise self.error(i, f"bad number syntax: {go_quote(src[i:k2])}")
                    self.toks.append(Token("complex", src[i:k2], i))
                    i = k2
                    continue
                self.toks.append(Token("number", src[i:k], i))
                i = k
            elif _is_alnum(c):
                k = i
                while k < n and _is_alnum(src[k]):
                    k += 1
                if not self.at_terminator(k):
                    raise self.error(k, f"bad character {_go_rune(src[k])}")
                word = src[i:k]
                if word in _KEYWORDS:
                    self.toks.append(Token(word, word, i))
                elif word in ("true", "false"):
                    self.toks.append(Token("bool", word, i))
                else:
                    self.toks.append(Token("ident", word, i))
                i = k
            elif c == "(":
                self.toks.append(Token("lparen", "(", i))
                paren += 1
                i += 1
            elif c == ")":
                self.toks.append(Token("rparen", ")", i))
                paren -= 1
                if paren < 0:
                    raise self.error(i, "unexpected right paren U+0029 ')'")
                i += 1
            elif ord(c) <= 0x7F and c.isprintable():
                self.toks.append(Token("charitem", c, i))
                i += 1
            else:
                raise self.error(i, f"unrecognized character in action: {_go_rune(c)}")

    def scan_number(self, i: int) -> int:
        src, n = self.src, len(self.src)
        start = i
        if i < n and src[i] in "+-":
            i += 1
        digits = "0123456789_"
        if i < n and src[i] == "0":
            i += 1
            if i < n and src[i] in "xX":
                i += 1
                digits = "0123456789abcdefABCDEF_"
            elif i < n and src[i] in "oO":
                i += 1
                digits = "01234567_"
            elif i < n and src[i] in "bB":
                i += 1
                digits = "01_"
        while i < n and src[i] in digits:
            i += 1
        if i < n and src[i] == ".":
            i += 1
            while i < n and src[i] in digits:
                i += 1
        if len(digits) == 11 and i < n and src[i] in "eE":
            i += 1
            if i < n and src[i] in "+-":
                i += 1
            while i < n and src[i] in "0123456789_":
                i += 1
        if len(digits) == 23 and i < n and src[i] in "pP":
            i += 1
            if i < n and src[i] in "+-":
                i += 1
            while i < n and src[i] in "0123456789_":
                i += 1
        if i < n and src[i] == "i":
            i += 1
        if i < n and _is_alnum(src[i]):
            raise self.error(start, f"bad number syntax: {go_quote(src[start : i + 1])}")
        return i


def _go_rune(c: str) -> str:
    """Go's ``%#U`` of a rune: ``U+0021 '!'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"
