"""The template parser: Go's ``text/template/parse/parse.go``, with Go's variable scoping (a
variable lives until the ``end`` of the structure that declares it) and its error texts."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from tasks.alerting.rules.templating.lex import Lexer, Token
from tasks.alerting.rules.templating.node import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    ElseNode,
    EndNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    go_unquote,
    parse_go_int,
)
from tasks.alerting.rules.templating.printf import go_quote

__all__ = ["Parser"]


class Parser:
    def __init__(self, src: str, funcs: Mapping[str, object], error: Callable[[int, str], Exception]) -> None:
        self.src = src
        self.funcs = funcs
        self.error = error
        self.toks = Lexer(src, error).run()
        self.i = 0
        self.vars: list[str] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
        self.range_depth = 0
        self.templates: dict[str, ListNode] = {}
        self.identifiers: list[IdentifierNode] = []

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.typ != "eof":
            self.i += 1
        return t

    def backup(self, k: int = 1) -> None:
        self.i -= k

    def peek(self) -> Token:
        return self.toks[self.i]

    def next_non_space(self) -> Token:
        t = self.next()
        while t.typ == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> Token:
        while self.toks[self.i].typ == "space":
            self.i += 1
        return self.toks[self.i]

    def fail(self, pos: int, msg: str) -> Exception:
        return self.error(pos, msg)

    def unexpected(self, tok: Token, context: str) -> Exception:
        if tok.typ == "eof":
            return self.fail(tok.pos, f"unexpected EOF in {context}")
        shown = {"right": "}}", "left": "{{", "text": "text"}.get(tok.typ, tok.val)
        return self.fail(tok.pos, f"unexpected {go_quote(shown) if tok.typ != 'text' else 'text'} in {context}")

    def expect(self, typ: str, context: str) -> Token:
        t = self.next_non_space()
        if t.typ != typ:
            raise self.unexpected(t, context)
        return t

    # top level
    def parse(self) -> ListNode:
        root = ListNode(0)
        while self.peek().typ != "eof":
            if self.peek().typ == "left":
                save = self.i
                delim = self.next()
                if self.next_non_space().typ == "define":
                    self.parse_definition(delim)
                    continue
                self.i = save
            n = self.text_or_action()
            if isinstance(n, EndNode | ElseNode):
                raise self.fail(n.pos, f"unexpected {{{{{'end' if isinstance(n, EndNode) else 'else'}}}}}")
            root.nodes.append(n)
        return root

    def add_template(self, name: str, body: ListNode, pos: int) -> None:
        old = self.templates.get(name)
        if (
            old is not None
            and old.nodes
            and any(not (isinstance(x, TextNode) and not x.text.strip()) for x in old.nodes)
        ):
            if body.nodes and any(not (isinstance(x, TextNode) and not x.text.strip()) for x in body.nodes):
                raise self.fail(pos, f"template: multiple definition of template {go_quote(name)}")
            return
        self.templates[name] = body

    def parse_definition(self, delim: Token) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.typ not in ("string", "rawstring"):
            raise self.unexpected(tok, context)
        name = self.unquote(tok)
        self.expect("right", context)
        saved_vars, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if not isinstance(end, EndNode):
            raise self.fail(end.pos, f"unexpected {{{{else}}}} in {context}")
        self.add_template(name, body, delim.pos)

    def unquote(self, tok: Token) -> str:
        try:
            return go_unquote(tok.val)
        except ValueError:
            raise self.fail(tok.pos, "invalid syntax") from None

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != "eof":
            n = self.text_or_action()
            if isinstance(n, EndNode | ElseNode):
                return lst, n
            lst.nodes.append(n)
        raise self.fail(len(self.src), "unexpected EOF")

    def text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.typ == "text":
            return TextNode(tok.pos, tok.val)
        if tok.typ == "left":
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> Node:
        tok = self.next_non_space()
        t = tok.typ
        if t == "block":
            return self.block_control(tok)
        if t == "break":
            return self.loop_control(tok, BreakNode)
        if t == "continue":
            return self.loop_control(tok, ContinueNode)
        if t == "else":
            if self.peek_non_space().typ == "if":
                return ElseNode(self.peek_non_space().pos)
            self.expect("right", "else")
            return ElseNode(tok.pos)
        if t == "end":
            self.expect("right", "end")
            return EndNode(tok.pos)
        if t in ("if", "range", "with"):
            return self.control(t)
        if t == "template":
            return self.template_control()
        if t == "define":
            raise self.fail(tok.pos, "unexpected <define> in command")
        self.backup()
        pos = self.peek_non_space().pos
        return ActionNode(pos, self.pipeline("command", "right"))

    def loop_control(self, tok: Token, cls: type[BreakNode] | type[ContinueNode]) -> Node:
        word = tok.val
        nxt = self.next_non_space()
        if nxt.typ != "right":
            raise self.unexpected(nxt, f"{{{{{word}}}}}")
        if self.range_depth == 0:
            raise self.fail(tok.pos, f"{{{{{word}}}}} outside {{{{range}}}}")
        return cls(tok.pos)

    def control(self, kind: str) -> Node:
        saved = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            else_body: ListNode | None = None
            if isinstance(nxt, ElseNode):
                if kind == "if" and self.peek().typ == "if":
                    self.next()
                    else_body = ListNode(nxt.pos, [self.control("if")])
                else:
                    else_body, nxt2 = self.item_list()
                    if not isinstance(nxt2, EndNode):
                        raise self.fail(nxt2.pos, "expected end; found {{else}}")
            return BranchNode(pipe.pos, kind, pipe, body, else_body)
        finally:
            del self.vars[saved:]

    def template_name(self, tok: Token, context: str) -> str:
        if tok.typ in ("string", "rawstring"):
            return self.unquote(tok)
        raise self.unexpected(tok, context)

    def template_control(self) -> Node:
        context = "template clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = None
        if self.next_non_space().typ != "right":
            self.backup()
            pipe = self.pipeline(context, "right")
        return TemplateNode(tok.pos, name, pipe)

    def block_control(self, block_tok: Token) -> Node:
        context = "block clause"
        tok = self.next_non_space()
        name = self.template_name(tok, context)
        pipe = self.pipeline(context, "right")
        saved_vars, self.vars = self.vars, ["$"]
        saved_depth, self.range_depth = self.range_depth, 0
        body, end = self.item_list()
        self.vars, self.range_depth = saved_vars, saved_depth
        if not isinstance(end, EndNode):
            raise self.fail(end.pos, f"unexpected {{{{else}}}} in {context}")
        self.add_template(name, body, block_tok.pos)
        return TemplateNode(tok.pos, name, pipe)

    def pipeline(self, context: str, end: str) -> PipeNode:
        pipe = PipeNode(self.peek_non_space().pos)
        while True:  # declarations
            v = self.peek_non_space()
            if v.typ != "var":
                break
            save = self.i
            self.next_non_space()
            after = self.peek()
            nxt = self.peek_non_space()
            if nxt.typ in ("assign", "declare"):
                pipe.is_assign = nxt.typ == "assign"
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
            elif nxt.typ == "charitem" and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in ("var", "right", "rparen"):
                        continue
                    raise self.fail(nxt.pos, "range can only initialize variables")
                raise self.fail(nxt.pos, f"too many declarations in {context}")
            else:
                del after
                self.i = save
            break
        while True:
            tok = self.next_non_space()
            if tok.typ == end:
                if not pipe.cmds:
                    raise self.fail(tok.pos, f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], BoolNode | DotNode | NilNode | NumberNode | StringNode):
                        raise self.fail(c.args[0].pos, f"non executable command in pipeline stage {k + 2}")
                return pipe
            if tok.typ in (
                "bool",
                "char",
                "complex",
                "dot",
                "field",
                "ident",
                "number",
                "nil",
                "rawstring",
                "string",
                "var",
                "lparen",
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos, [])
        while True:
            self.peek_non_space()
            while self.peek().typ == "space":
                self.next()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            tok = self.next()
            if tok.typ == "space":
                continue
            if tok.typ in ("right", "rparen"):
                self.backup()
            elif tok.typ == "pipe":
                pass
            else:
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.fail(cmd.pos, "empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == "field":
            chain_pos = self.peek().pos
            fields = []
            while self.peek().typ == "field":
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain_pos, node.idents + fields)
            if isinstance(node, VariableNode):
                return VariableNode(chain_pos, node.idents + fields)
            if isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
                raise self.fail(chain_pos, f"unexpected . after term {go_quote(str(node))}")
            return ChainNode(chain_pos, node, fields)
        return node

    def term(self) -> Node | None:
        tok = self.next_non_space()
        t = tok.typ
        if t == "ident":
            if tok.val not in self.funcs:
                raise self.fail(tok.pos, f"function {go_quote(tok.val)} not defined")
            ident = IdentifierNode(tok.pos, tok.val)
            self.identifiers.append(ident)
            return ident
        if t == "dot":
            return DotNode(tok.pos)
        if t == "nil":
            return NilNode(tok.pos)
        if t == "var":
            if tok.val not in self.vars:
                raise self.fail(tok.pos, f"undefined variable {go_quote(tok.val)}")
            return VariableNode(tok.pos, [tok.val])
        if t == "field":
            return FieldNode(tok.pos, [tok.val[1:]])
        if t == "bool":
            return BoolNode(tok.pos, tok.val == "true")
        if t in ("char", "number", "complex"):
            return self.number(tok)
        if t == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if t in ("string", "rawstring"):
            return StringNode(tok.pos, tok.val, self.unquote(tok))
        self.backup()
        return None

    def number(self, tok: Token) -> NumberNode:
        text = tok.val
        n = NumberNode(tok.pos, text)
        if tok.typ == "char":
            try:
                r = ord(go_unquote(text))
            except ValueError:
                raise self.fail(tok.pos, f"malformed character constant: {text}") from None
            n.is_int = n.is_float = True
            n.int_value, n.float_value = r, float(r)
            return n
        if tok.typ == "complex" or text.endswith("i"):
            raise self.fail(tok.pos, f"complex number {text} is not supported")
        iv = parse_go_int(text)
        if iv is not None:
            n.is_int = n.is_float = True
            n.int_value, n.float_value = iv, float(iv)
            return n
        decimal = re.fullmatch(r"[+-]?[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?[\d_]+)?", text)  # unambiguous: linear
        if text.lstrip("+-")[:2].lower() in ("0x",) or decimal:
            try:
                fv = _go_number_float(text)
            except ValueError:
                fv = None
            if fv is not None and not math.isinf(fv):
                if not any(ch in text for ch in ".eEpP"):
                    raise self.fail(tok.pos, f"integer overflow: {go_quote(text)}")
                n.is_float, n.float_value = True, fv
                if fv == int(fv) and -(2**63) <= fv < 2**63:
                    n.is_int, n.int_value = True, int(fv)
                return n
            if fv is not None and not any(ch in text for ch in ".eEpP"):
                raise self.fail(tok.pos, f"integer overflow: {go_quote(text)}")
        raise self.fail(tok.pos, f"illegal number syntax: {go_quote(text)}")


def _go_number_float(text: str) -> float:
    """``strconv.ParseFloat`` for a template number literal (underscores only between digits)."""
    t = text
    if "_" in t:
        if re.search(r"__|_$|^[+-]?_|_\.|\._|_[eEpP]|[eEpP][+-]?_", t):
            raise ValueError(text)
        if t.lstrip("+-")[:2].lower() not in ("0x", "0b", "0o"):
            raise ValueError(text)
        t = t.replace("_", "")
    if t.lstrip("+-")[:2].lower() == "0x":
        sign = -1.0 if t.startswith("-") else 1.0
        body = t.lstrip("+-")
        if "p" not in body.lower():
            raise ValueError(text)
        return sign * float.fromhex(body)
    return float(t)
