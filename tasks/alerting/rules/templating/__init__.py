"""Go ``text/template`` as Prometheus 2.42 runs it, for alert label and annotation templates.

The package's public surface: rule files check templates with :func:`check_template`, the rule
manager expands them with :class:`Template`/:func:`expand`, and promtool is the oracle of both.
"""

from tasks.alerting.rules.templating.template import (
    FUNCTIONS,
    HTML,
    PREAMBLE,
    UNSUPPORTED_FUNCTIONS,
    Template,
    TemplateError,
    check_template,
    expand,
    expansion_error,
    go_g4,
    go_sprintf,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
    render,
)

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
