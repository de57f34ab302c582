"""Template execution: Go's ``text/template/exec.go`` over the parse tree, with Go's truthiness,
``range`` over maps in sorted key order, ``break``/``continue``, ``missingkey=zero`` and Go's
error texts (the node they happened at is kept for the message)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.alerting.rules.templating.errors import FuncError
from tasks.alerting.rules.templating.funcs import Func
from tasks.alerting.rules.templating.gotime import TIME_METHODS, GoTime
from tasks.alerting.rules.templating.node import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
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
)
from tasks.alerting.rules.templating.printf import Flags, Unsupported, fmt_arg, go_quote, print_value
from tasks.alerting.rules.templating.values import AlertData, ArgsMap, QueryResult, is_true, type_name

__all__ = ["BreakSignal", "ContinueSignal", "ExecError", "ExecState"]


_MISSING: Any = object()
_MAX_DEPTH = 1000


class ExecError(Exception):
    def __init__(self, node: Node | None, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class BreakSignal(Exception):
    pass


class ContinueSignal(Exception):
    pass


class ExecState:
    def __init__(self, templates: Mapping[str, ListNode], funcs: Mapping[str, Func], out: list[str]) -> None:
        self.templates = templates
        self.funcs = funcs
        self.out = out
        self.node: Node | None = None
        self.vars: list[list[Any]] = []
        self.depth = 0

    def at(self, node: Node) -> None:
        self.node = node

    def errorf(self, msg: str) -> ExecError:
        return ExecError(self.node, msg)

    def push(self, name: str, value: Any) -> None:
        self.vars.append([name, value])

    def mark(self) -> int:
        return len(self.vars)

    def pop(self, mark: int) -> None:
        del self.vars[mark:]

    def set_var(self, name: str, value: Any) -> None:
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                return
        raise self.errorf(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        self.vars[len(self.vars) - n][1] = value

    def var_value(self, name: str) -> Any:
        for v in reversed(self.vars):
            if v[0] == name:
                return v[1]
        raise self.errorf(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.at(node)
                try:
                    self.out.append(print_value(val))
                except Unsupported as exc:
                    raise self.errorf(f"not supported: {exc}") from None
        elif isinstance(node, BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                mark = self.mark()
                try:
                    val = self.eval_pipeline(dot, node.pipe)
                    if is_true(val):
                        self.walk(val if node.kind == "with" else dot, node.body)
                    elif node.else_body is not None:
                        self.walk(dot, node.else_body)
                finally:
                    self.pop(mark)
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise BreakSignal
        elif isinstance(node, ContinueNode):
            raise ContinueSignal
        else:  # pragma: no cover - the parser makes no other nodes
            raise self.errorf(f"unknown node: {node}")

    def walk_range(self, dot: Any, r: BranchNode) -> None:
        self.at(r)
        outer = self.mark()
        try:
            val = self.eval_pipeline(dot, r.pipe)
            mark = self.mark()
            if isinstance(val, Mapping | list):
                items: list[tuple[Any, Any]] = sorted(val.items()) if isinstance(val, Mapping) else list(enumerate(val))
                if items:
                    for key, elem in items:
                        if r.pipe.decl:
                            self.set_top_var(1, elem)
                        if len(r.pipe.decl) > 1:
                            self.set_top_var(2, key)
                        try:
                            self.walk(elem, r.body)
                        except ContinueSignal:
                            pass
                        except BreakSignal:
                            break
                        finally:
                            self.pop(mark)
                    return
            elif val is not None:
                raise self.errorf(f"range can't iterate over {fmt_arg(val, 'v', Flags())}")
            if r.else_body is not None:
                self.walk(dot, r.else_body)
        finally:
            self.pop(outer)

    def walk_template(self, dot: Any, t: TemplateNode) -> None:
        self.at(t)
        body = self.templates.get(t.name)
        if body is None:
            raise self.errorf(f"template {go_quote(t.name)} not defined")
        if self.depth >= _MAX_DEPTH:
            raise self.errorf(f"exceeded maximum template depth ({_MAX_DEPTH})")
        dot = None if t.pipe is None else self.eval_pipeline(dot, t.pipe)  # no pipeline: dot is nil
        saved_vars, saved_depth = self.vars, self.depth
        self.vars = [["$", dot]]
        self.depth += 1
        try:
            self.walk(dot, body)
        finally:
            self.vars, self.depth = saved_vars, saved_depth

    # evaluation
    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.at(pipe)
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.idents[0], value)
            else:
                self.push(v.idents[0], value)
        return value

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        raise self.errorf(f"can't evaluate command {first}")

    def ideal_constant(self, n: NumberNode) -> Any:
        self.at(n)
        t = n.text
        is_hex_int = len(t) > 2 and t[0] == "0" and t[1] in "xX" and not any(c in t for c in "pP")
        if n.is_float and not is_hex_int and not t.startswith("'") and any(c in t for c in ".eEpP"):
            return n.float_value
        if n.is_int:
            return n.int_value
        raise self.errorf(f"{t} overflows int")

    def eval_field_node(self, dot: Any, f: FieldNode, args: list[Node], final: Any) -> Any:
        self.at(f)
        return self.eval_field_chain(dot, dot, f, f.idents, args, final)

    def eval_chain_node(self, dot: Any, chain: ChainNode, args: list[Node], final: Any) -> Any:
        self.at(chain)
        if not chain.fields:
            raise self.errorf("internal error: no fields in evalChainNode")
        if isinstance(chain.node, NilNode):
            raise self.errorf(f"indirection through explicit nil in {chain}")
        pipe = self.eval_arg(dot, "any", chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final)

    def eval_variable_node(self, dot: Any, v: VariableNode, args: list[Node] | None, final: Any) -> Any:
        self.at(v)
        value = self.var_value(v.idents[0])
        if len(v.idents) == 1:
            self.not_a_function(args or [v], final)
            return value
        return self.eval_field_chain(dot, value, v, v.idents[1:], args, final)

    def eval_field_chain(
        self, dot: Any, receiver: Any, node: Node, idents: list[str], args: list[Node] | None, final: Any
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, None, _MISSING, receiver)
        return self.eval_field(dot, idents[-1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: Node, args: list[Node] | None, final: Any, receiver: Any) -> Any:
        if receiver is None:
            return None
        if isinstance(receiver, GoTime) and name in TIME_METHODS:
            params, impl = TIME_METHODS[name]
            return self.eval_call(dot, Func(params, None, impl), False, node, name, (args or [])[1:], final, receiver)
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, AlertData):
            if name in ("Labels", "ExternalLabels", "ExternalURL", "Value"):
                if has_args:
                    raise self.errorf(f"{name} has arguments but cannot be invoked as function")
                return getattr(receiver, name)
        elif isinstance(receiver, Mapping):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            return receiver.get(name, None if isinstance(receiver, ArgsMap) else "")
        raise self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: Node, args: list[Node] | None, final: Any) -> Any:
        self.at(node)
        fn = self.funcs.get(node.name)
        if fn is None:
            raise self.errorf(f"{go_quote(node.name)} is not a defined function")
        arg_nodes = args[1:] if args is not None else []
        return self.eval_call(dot, fn, node.name in _BUILTINS, cmd, node.name, arg_nodes, final)

    def eval_call(
        self,
        dot: Any,
        fn: Func,
        is_builtin: bool,
        node: Node,
        name: str,
        arg_nodes: list[Node],
        final: Any,
        receiver: Any = _MISSING,
    ) -> Any:
        params = fn.params
        num_in = len(arg_nodes) + (0 if final is _MISSING else 1)
        if fn.variadic is not None:
            if num_in < len(params):
                raise self.errorf(f"wrong number of args for {name}: want at least {len(params)} got {len(arg_nodes)}")
        elif num_in != len(params):
            raise self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            v: Any = None
            for a in arg_nodes:
                v = self.eval_arg(dot, "any", a)
                if is_true(v) == (name == "or"):
                    return v
            if final is not _MISSING:
                v = final
            return v
        argv: list[Any] = []
        for k, a in enumerate(arg_nodes):
            typ = params[k] if k < len(params) else (fn.variadic or "any")
            argv.append(self.eval_arg(dot, typ, a))
        if final is not _MISSING:
            k = num_in - 1
            typ = params[k] if k < len(params) else (fn.variadic or "any")
            argv.append(self.validate_type(final, typ))
        try:
            if receiver is not _MISSING:
                return fn.impl(receiver, *argv)
            return fn.impl(*argv)
        except FuncError as exc:
            self.at(node)
            raise self.errorf(f"error calling {name}: {exc}") from None
        except Unsupported as exc:
            self.at(node)
            raise self.errorf(f"error calling {name}: not supported: {exc}") from None

    def validate_type(self, value: Any, typ: str) -> Any:
        if value is None:
            if typ in ("any", "sample", "result"):
                return None
            raise self.errorf(f"invalid value; expected {_GO_TYPES[typ]}")
        if typ == "any":
            return value
        ok = {
            "string": type(value) is str,
            "sample": False,
            "result": isinstance(value, QueryResult),
            "time": isinstance(value, GoTime),
        }[typ]
        if not ok:
            raise self.errorf(f"wrong type for value; expected {_GO_TYPES[typ]}; got {type_name(value)}")
        return value

    def eval_arg(self, dot: Any, typ: str, n: Node) -> Any:
        self.at(n)
        if isinstance(n, DotNode):
            return self.validate_type(dot, typ)
        if isinstance(n, NilNode):
            if typ in ("any", "sample", "result"):
                return None
            raise self.errorf(f"cannot assign nil to {_GO_TYPES[typ]}")
        if isinstance(n, FieldNode):
            return self.validate_type(self.eval_field_node(dot, n, [n], _MISSING), typ)
        if isinstance(n, VariableNode):
            return self.validate_type(self.eval_variable_node(dot, n, None, _MISSING), typ)
        if isinstance(n, PipeNode):
            return self.validate_type(self.eval_pipeline(dot, n), typ)
        if isinstance(n, IdentifierNode):
            return self.validate_type(self.eval_function(dot, n, n, None, _MISSING), typ)
        if isinstance(n, ChainNode):
            return self.validate_type(self.eval_chain_node(dot, n, [n], _MISSING), typ)
        if typ == "string":
            if isinstance(n, StringNode):
                return n.text
            raise self.errorf(f"expected string; found {n}")
        if typ == "any":
            if isinstance(n, BoolNode):
                return n.value
            if isinstance(n, NumberNode):
                return self.ideal_constant(n)
            if isinstance(n, StringNode):
                return n.text
        raise self.errorf(f"can't handle {n} for arg of type {_GO_TYPES[typ]}")


_GO_TYPES = {
    "any": "interface {}",
    "string": "string",
    "sample": "*template.sample",
    "result": "template.queryResult",
    "time": "*time.Time",
}
_BUILTINS = frozenset(
    [
        "and",
        "call",
        "html",
        "index",
        "slice",
        "js",
        "len",
        "not",
        "or",
        "print",
        "printf",
        "println",
        "urlquery",
        "eq",
        "ge",
        "gt",
        "le",
        "lt",
        "ne",
    ]
)
