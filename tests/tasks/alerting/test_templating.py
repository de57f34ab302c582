"""Alert templates: Prometheus's exact output for ``$labels``, ``$value`` and the humanize family.

Expected strings are hand-checked against Prometheus's ``template`` package (its tests and Go's
``fmt``): ``%.4g`` formatting, ``u`` for micro, ``+Inf``/``NaN``, floats printed like ``1e+06``."""

from __future__ import annotations

import math

import pytest

from tasks.alerting.templating import (
    Template,
    TemplateError,
    check_template,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
    render,
)

LABELS = {"instance": "db-1:9100", "job": "node", "code": "1234567", "word": "abc"}


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("{{ $value }}", 1e6, "1e+06"),
        ("{{ $value }}", 0.5, "0.5"),
        ("{{ $value }}", 100.0, "100"),
        ("{{ $value }}", 1234567.5, "1.2345675e+06"),
        ("{{ $value }}", 1e-05, "1e-05"),
        ("{{ $value }}", math.inf, "+Inf"),
        ("{{ $value }}", math.nan, "NaN"),
        ("{{ .Value }}", 3.0, "3"),
        ("{{ $labels.instance }} is down", 0.0, "db-1:9100 is down"),
        ("{{ .Labels.job }}/{{$labels.instance}}", 0.0, "node/db-1:9100"),
        ("[{{ $labels.missing }}]", 0.0, "[]"),
        ("$labels.instance stays literal outside actions", 0.0, "$labels.instance stays literal outside actions"),
        ("{{ humanize $value }}", 1234567.0, "1.235M"),
        ("{{ humanize $value }}", 0.001234, "1.234m"),
        ("{{ $value | humanize }}", 1234567.0, "1.235M"),
        ("{{ $value | humanizePercentage }}", 0.1234, "12.34%"),
        ("{{ humanizePercentage $value }}", 0.5, "50%"),
        ("{{ humanize $labels.code }}", 0.0, "1.235M"),
        ("{{ $labels.code | humanize }}", 0.0, "1.235M"),
        ("{{ $value | humanize1024 }}", 1048576.0, "1Mi"),
        ("{{ humanizeDuration $value }}", 3725.0, "1h 2m 5s"),
        ("{{ $labels.job | toUpper }}", 0.0, "NODE"),
        ('{{ "a b" | title }}', 0.0, "A B"),
        ('{{ `raw` }}-{{ "q\\"" }}-{{ 42 }}-{{ 1.5 }}', 0.0, 'raw-q"-42-1.5'),
        ("a  {{- $value -}}  b", 1.0, "a1b"),
        ("x{{/* a comment */}}y", 0.0, "xy"),
        ("{{ $externalURL }}", 0.0, ""),
    ],
)
def test_render_matches_prometheus(template: str, value: float, expected: str) -> None:
    assert render(template, LABELS, value) == expected


def test_multiline_annotation() -> None:
    tpl = "Instance {{ $labels.instance }}\n  value {{ $value | humanize }}\n"
    assert render(tpl, LABELS, 2500.0) == "Instance db-1:9100\n  value 2.5k\n"
    assert Template(tpl).render({"instance": "x"}, 0.25) == "Instance x\n  value 250m\n"


# Prometheus template_test.go: {{ range . }}{{ humanize . }}:{{ end }} and friends.
def test_humanize_family_like_prometheus_tests() -> None:
    assert ":".join(humanize(v) for v in (0.0, 1.0, 1234567.0, 0.12)) == "0:1:1.235M:120m"
    assert ":".join(humanize1024(v) for v in (0.0, 1.0, 1048576.0, 0.12)) == "0:1:1Mi:0.12"
    assert (
        ":".join(
            humanize_duration(v)
            for v in (0, 1, 60, 3600, 86400, 86400 + 3600, -(86400 * 2 + 3600 * 3 + 60 * 4 + 5), 899.99)
        )
        == "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s"
    )
    assert ":".join(humanize_duration(v) for v in (0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345)) == (
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s"
    )
    assert (
        ":".join(humanize_percentage(v) for v in (0.0, 0.1, 1.0, 0.0005, 1234567.0)) == "0%:10%:100%:0.05%:1.235e+08%"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1000.0, "1k"),
        (999.0, "999"),
        (-1234.0, "-1.234k"),
        (123456789000.0, "123.5G"),
        (1e18, "1E"),
        (1e-6, "1u"),
        (1.5e-5, "15u"),
        (2e-9, "2n"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_humanize_values(value: float, expected: str) -> None:
    assert humanize(value) == expected


@pytest.mark.parametrize(
    ("template", "pos", "message"),
    [
        ("{{ nope $value }}", (1, 4), 'function "nope" not defined'),
        ("ok\n  {{ $value", (2, 3), "unclosed action"),
        ("{{ $bogus }}", (1, 4), 'undefined variable "$bogus"'),
        ("{{ if $value }}x{{ end }}", (1, 4), "{{if}} actions are not supported"),
        ("{{ $x := 1 }}", (1, 7), "variable declarations are not supported"),
        ("{{ }}", (1, 3), "missing value for command"),
        ("{{ $value | }}", (1, 3), "missing value for command"),
        ("{{ $value $value }}", (1, 11), "can't give argument to non-function $value"),
        ("{{ humanize | $value }}", (1, 15), "non executable command in pipeline stage 2"),
    ],
)
def test_parse_errors_carry_line_and_column(template: str, pos: tuple[int, int], message: str) -> None:
    with pytest.raises(TemplateError) as ei:
        check_template(template)
    assert (ei.value.line, ei.value.column) == pos
    assert ei.value.message == message


def test_execution_errors() -> None:
    with pytest.raises(TemplateError, match=r'error calling humanize: strconv.ParseFloat: parsing "abc"'):
        render("{{ humanize $labels.word }}", LABELS, 0.0)
    with pytest.raises(TemplateError, match="can't evaluate field x in type float64"):
        render("{{ $value.x }}", LABELS, 0.0)
    with pytest.raises(TemplateError, match="wrong number of args for humanize: want 1 got 2"):
        render("{{ humanize 1 2 }}", LABELS, 0.0)
    check_template("{{ humanize $labels.word }}")  # parsing only, like promtool
