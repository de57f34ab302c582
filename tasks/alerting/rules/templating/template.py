"""The engine's entry points (Go's ``template.go``): parse a label or annotation template once
(:class:`Template`), check it as ``promtool check rules`` does (:func:`check_template`), and expand
it for one alert as Prometheus does (:func:`render`, :func:`expand`, :func:`expansion_error`).

Prometheus expands each label and annotation value of a firing alert as a Go template named
``__alert_<rule>``, with :data:`PREAMBLE` before it and ``missingkey=zero``; its errors carry Go's
text with the template's name, which :func:`expansion_error` fills in.
"""

from __future__ import annotations

from collections.abc import Mapping

from tasks.alerting.rules.templating.errors import TemplateError
from tasks.alerting.rules.templating.exec import BreakSignal, ContinueSignal, ExecError, ExecState
from tasks.alerting.rules.templating.node import Node
from tasks.alerting.rules.templating.parse import Parser
from tasks.alerting.rules.templating.prometheus import DEFAULT_FUNCS, UNSUPPORTED_FUNCTIONS, build_functions
from tasks.alerting.rules.templating.values import AlertData

__all__ = ["PREAMBLE", "Template", "check_template", "expand", "expansion_error", "render"]


#: What Prometheus puts before every label/annotation template (rules/alerting.go).
PREAMBLE = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


_NAME = "\x00NAME\x00"  # stands for the template's name in TemplateError.go_message


def _byte_col(src: str, pos: int) -> tuple[int, int]:
    """Go's location of ``pos`` in PREAMBLE + src: (line, 0-based byte column; on line 1 the
    preamble's bytes count)."""
    before = src[:pos]
    line = before.count("\n") + 1
    if line == 1:
        return 1, len((PREAMBLE + before).encode("utf-8", "surrogateescape"))
    return line, len(before[before.rfind("\n") + 1 :].encode("utf-8", "surrogateescape"))


def _go_context(node: Node) -> str:
    """The node as Go's error context prints it (Go 1.19 does not shorten it)."""
    return str(node)


class Template:
    """A parsed template; :meth:`render` expands it for one alert."""

    def __init__(self, src: str) -> None:
        self.src = src

        def error(pos: int, msg: str) -> TemplateError:
            line, col = _line_col(src, pos)
            gline = src[:pos].count("\n") + 1
            go = f"error parsing template {_NAME}: template: {_NAME}:{gline}: {msg}"
            return TemplateError(msg, line, col, go)

        parser = Parser(src, DEFAULT_FUNCS, error)
        self.root = parser.parse()
        self.templates = parser.templates
        self.identifiers = parser.identifiers

    def render(
        self,
        labels: Mapping[str, str],
        value: float,
        *,
        external_labels: Mapping[str, str] | None = None,
        external_url: str | None = "",
    ) -> str:
        """Expand for one alert; ``external_url=None`` behaves like promtool (no external URL: the
        ``externalURL``/``pathPrefix`` functions fail, ``$externalURL`` is empty)."""
        data = AlertData(dict(labels), dict(external_labels or {}), external_url or "", float(value))
        funcs = DEFAULT_FUNCS if external_url == "" else build_functions(external_url)
        out: list[str] = []
        st = ExecState(self.templates, funcs, out)
        st.push("$", data)
        st.push("$labels", data.Labels)
        st.push("$externalLabels", data.ExternalLabels)
        st.push("$externalURL", data.ExternalURL)
        st.push("$value", data.Value)
        try:
            st.walk(data, self.root)
        except ExecError as exc:
            pos = exc.node.pos if exc.node is not None else 0
            line, col = _line_col(self.src, pos)
            gline, gcol = _byte_col(self.src, pos)
            ctx = _go_context(exc.node) if exc.node is not None else ""
            go = (
                f"error executing template {_NAME}: template: {_NAME}:{gline}:{gcol}: "
                f'executing "{_NAME}" at <{ctx}>: {exc.message}'
            )
            raise TemplateError(exc.message, line, col, go) from None
        except (BreakSignal, ContinueSignal):  # pragma: no cover - the parser confines them to range
            raise TemplateError("break/continue outside range", 1, 1) from None
        except RecursionError:
            raise TemplateError("template recursion too deep", 1, 1) from None
        return "".join(out)

    def unsupported(self) -> list[tuple[int, str]]:
        """(position, message) of every use of a function this implementation cannot run."""
        return [
            (i.pos, f'function "{i.name}" is not supported: it needs PromQL queries from templates')
            for i in self.identifiers
            if i.name in UNSUPPORTED_FUNCTIONS
        ]


def _line_col(src: str, pos: int) -> tuple[int, int]:
    line = src.count("\n", 0, pos) + 1
    return line, pos - (src.rfind("\n", 0, pos) + 1) + 1


def check_template(src: str) -> None:
    """Parse ``src`` as promtool does, and also reject what we cannot execute (``query`` and its
    helpers); raises :class:`TemplateError` with the position."""
    tmpl = Template(src)
    for pos, msg in tmpl.unsupported():
        line, col = _line_col(src, pos)
        raise TemplateError(msg, line, col)


def render(
    src: str,
    labels: Mapping[str, str],
    value: float,
    *,
    external_labels: Mapping[str, str] | None = None,
    external_url: str | None = "",
) -> str:
    """Expand one template string for an alert with ``labels`` and ``value``; raises TemplateError."""
    return Template(src).render(labels, value, external_labels=external_labels, external_url=external_url)


def expand(
    src: str,
    labels: Mapping[str, str],
    value: float,
    *,
    name: str,
    external_labels: Mapping[str, str] | None = None,
    external_url: str | None = "",
) -> str:
    """What Prometheus writes for a label/annotation template of alerting rule ``name``: the
    expansion, or ``<error expanding template: …>`` with Go's error text (template ``__alert_NAME``)."""
    try:
        return render(src, labels, value, external_labels=external_labels, external_url=external_url)
    except TemplateError as exc:
        return expansion_error(exc, name)


def expansion_error(exc: TemplateError, name: str) -> str:
    """``<error expanding template: …>`` with Go's error text for alerting rule ``name``, as Prometheus
    writes it in place of a label or annotation whose template failed."""
    msg = exc.go_message or str(exc)
    return f"<error expanding template: {msg.replace(_NAME, '__alert_' + name)}>"
