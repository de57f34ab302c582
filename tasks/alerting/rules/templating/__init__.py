"""Alert label and annotation templates: Go ``text/template`` as Prometheus 2.42 runs it.

Prometheus expands each label and annotation value of a firing alert as a Go template named
``__alert_<rule>``, with the preamble ``{{$labels := .Labels}}{{$externalLabels :=
.ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`` and ``missingkey=zero``.
Rule authors use the whole language, so this package implements it rather than a look-alike, one
module per Go source file it follows:

* ``lex``, ``node``, ``parse``: the lexer and parser of Go's ``text/template/parse`` (Go 1.19, which
  built Debian's Prometheus 2.42): ``{{-``/``-}}`` trimming, comments, pipelines ``a | f | g``,
  parenthesised pipelines, ``(x).Field`` chains, Go number/char/string literals, ``$x := …`` and
  ``$x = …``;
* ``exec``: control structures ``if``/``else if``/``else``, ``range`` (maps in sorted key order,
  ``$k, $v :=``, ``else``, ``break``, ``continue``), ``with``/``else``, ``define``/``template``/
  ``block``, with Go's variable scoping (a variable lives until the ``end`` of the structure that
  declares it; an invoked template sees only ``$``) and Go's truthiness (``""``, ``0``, ``nil``,
  empty map are false);
* ``funcs``: Go's builtins ``and or not len index slice print printf println html js urlquery eq ne
  lt le gt ge`` with Go's rules — notably ``gt $value 1`` is an *error* ("incompatible types for
  comparison": ``$value`` is a float64 and ``1`` an int constant);
* ``printf``: Go's ``fmt`` (``%!d(float64=1.5)``, ``%!d(MISSING)``, ``%!(EXTRA …)``, widths, flags,
  ``%q``, ``%x`` …);
* ``prometheus``: Prometheus 2.42's functions (``template/template.go``): ``humanize*``,
  ``humanizeTimestamp``, ``toTime``, ``title toUpper toLower match reReplaceAll safeHtml stripPort
  stripDomain parseDuration args graphLink tableLink externalURL pathPrefix``. ``query`` (and
  ``first label value strvalue sortByLabel``, which only make sense on its results) need a PromQL
  engine in the template and are reported by :func:`check_template` as unsupported; executing them
  is an error, never a silently wrong string;
* ``gotime``: Go's ``*time.Time`` (what ``toTime`` returns), its layouts and methods;
* ``values``, ``errors``: Go's value types and how they print (``1e+06``, ``+Inf``, ``map[a:b]``,
  ``<no value>`` for nil); :class:`TemplateError`;
* ``template``: the entry points.

Errors are :class:`TemplateError` with a 1-based ``line``/``column`` (characters) in the template
text; :func:`expand` returns exactly what Prometheus writes into the alert instead, including its
``<error expanding template: …>`` text with Go's error message, so promtool can be the oracle.

This module is the engine's public surface: callers import from ``tasks.alerting.rules.templating``,
not from its submodules, so the split inside can change without touching them.
"""

from tasks.alerting.rules.templating.errors import TemplateError
from tasks.alerting.rules.templating.printf import go_g4, go_sprintf
from tasks.alerting.rules.templating.prometheus import (
    FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
)
from tasks.alerting.rules.templating.template import (
    PREAMBLE,
    Template,
    check_template,
    expand,
    expansion_error,
    render,
)
from tasks.alerting.rules.templating.values import HTML

__all__ = [
    "FUNCTIONS",
    "HTML",
    "PREAMBLE",
    "UNSUPPORTED_FUNCTIONS",
    "Template",
    "TemplateError",
    "check_template",
    "expand",
    "expansion_error",
    "go_g4",
    "go_sprintf",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
    "render",
]
