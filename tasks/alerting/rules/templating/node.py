"""The parse tree: Go's ``text/template/parse/node.go``. Each node prints as Go's ``String()``
does, because Go's execution errors quote the node they happened at (``executing "x" at <.Foo>``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tasks.alerting.rules.templating.printf import go_quote

__all__ = [
    "ActionNode",
    "BoolNode",
    "BranchNode",
    "BreakNode",
    "ChainNode",
    "CommandNode",
    "ContinueNode",
    "DotNode",
    "ElseNode",
    "EndNode",
    "FieldNode",
    "IdentifierNode",
    "ListNode",
    "NilNode",
    "Node",
    "NumberNode",
    "PipeNode",
    "StringNode",
    "TemplateNode",
    "TextNode",
    "VariableNode",
    "go_unquote",
    "parse_go_int",
]


@dataclass
class Node:
    pos: int


@dataclass
class TextNode(Node):
    text: str

    def __str__(self) -> str:
        return go_quote(self.text)


@dataclass
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class NumberNode(Node):
    text: str
    is_int: bool = False
    is_float: bool = False
    int_value: int = 0
    float_value: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass
class StringNode(Node):
    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class FieldNode(Node):
    idents: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class VariableNode(Node):
    idents: list[str]

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class ChainNode(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        s = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return s + "".join("." + f for f in self.fields)


@dataclass
class CommandNode(Node):
    args: list[Node]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass
class PipeNode(Node):
    decl: list[VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass
class ActionNode(Node):
    pipe: PipeNode

    def __str__(self) -> str:
        return f"{{{{{self.pipe}}}}}"


@dataclass
class BranchNode(Node):
    kind: str  # if range with
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None

    def __str__(self) -> str:
        s = f"{{{{{self.kind} {self.pipe}}}}}{self.body}"
        if self.else_body is not None:
            s += f"{{{{else}}}}{self.else_body}"
        return s + "{{end}}"


@dataclass
class TemplateNode(Node):
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        if self.pipe is None:
            return f"{{{{template {go_quote(self.name)}}}}}"
        return f"{{{{template {go_quote(self.name)} {self.pipe}}}}}"


@dataclass
class BreakNode(Node):
    def __str__(self) -> str:
        return "{{break}}"


@dataclass
class ContinueNode(Node):
    def __str__(self) -> str:
        return "{{continue}}"


@dataclass
class EndNode(Node):
    pass


@dataclass
class ElseNode(Node):
    pass


_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def go_unquote(text: str) -> str:
    """``strconv.Unquote`` of a Go string or char literal; raises ``ValueError`` ("invalid syntax")."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    quote = text[0]
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote or c == "\n":
            raise ValueError("invalid syntax")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("invalid syntax")
        e = body[i + 1]
        if e in _GO_ESCAPES:
            out.append(_GO_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(e)
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            hexs = body[i + 2 : i + 2 + width]
            if len(hexs) != width or not all(h in "0123456789abcdefABCDEF" for h in hexs):
                raise ValueError("invalid syntax")
            v = int(hexs, 16)
            if e == "x":
                out.append(chr(v) if v < 0x80 else chr(0xDC00 + v))  # a raw byte
            else:
                if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                    raise ValueError("invalid syntax")
                out.append(chr(v))
            i += 2 + width
        elif e in "01234567":
            octs = body[i + 1 : i + 4]
            if len(octs) != 3 or not all(o in "01234567" for o in octs) or int(octs, 8) > 255:
                raise ValueError("invalid syntax")
            v = int(octs, 8)
            out.append(chr(v) if v < 0x80 else chr(0xDC00 + v))
            i += 4
        else:
            raise ValueError("invalid syntax")
    s = "".join(out)
    # bytes given by \x / octal escapes form UTF-8 sequences
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in s):
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    if quote == "'" and len(s) != 1:
        raise ValueError("invalid syntax")
    return s


def parse_go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``; None when it fails (syntax or range)."""
    t = text
    sign = 1
    if t[:1] in "+-":
        sign = -1 if t[0] == "-" else 1
        t = t[1:]
    base = 10
    body = t
    if len(t) > 1 and t[0] == "0":
        p = t[1].lower()
        if p in "xob":
            base = {"x": 16, "o": 8, "b": 2}[p]
            body = t[2:]
        else:
            base = 8
            body = t[1:]
    if "_" in body or (base != 10 and "_" in t):
        # underscores are only allowed between digits, with base 0 syntax
        if not re.fullmatch(r"_?[0-9a-fA-F]+(?:_[0-9a-fA-F]+)*", body):
            return None
        body = body.replace("_", "")
    if not body:
        return None
    try:
        v = sign * int(body, base)
    except ValueError:
        return None
    if not -(2**63) <= v < 2**63:
        return None
    return v
