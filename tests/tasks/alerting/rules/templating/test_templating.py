"""Alert templates: Prometheus's exact output for ``$labels``, ``$value`` and the humanize family.

Expected strings are hand-checked against Prometheus's ``template`` package (its tests and Go's
``fmt``): ``%.4g`` formatting, ``u`` for micro, ``+Inf``/``NaN``, floats printed like ``1e+06``."""

from __future__ import annotations

import math

import pytest

from tasks.alerting.rules.templating import (
    HTML,
    Template,
    TemplateError,
    check_template,
    expand,
    go_sprintf,
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
        ("{{ if $value }}x", (1, 17), "unexpected EOF"),
        ("{{ $x }}", (1, 4), 'undefined variable "$x"'),
        ("{{ if 1 }}{{ $x := 1 }}{{ end }}{{ $x }}", (1, 36), 'undefined variable "$x"'),
        ("{{ end }}", (1, 4), "unexpected {{end}}"),
        ("{{ break }}", (1, 4), "{{break}} outside {{range}}"),
        ('{{ if 1 }}{{ define "x" }}{{ end }}{{ end }}', (1, 14), "unexpected <define> in command"),
        ("{{ (1 }}", (1, 7), "unclosed left paren"),
        ("{{ 1.2.3 }}", (1, 7), 'unexpected ".3" in operand'),  # promtool: the same words
        ("{{ }}", (1, 4), "missing value for command"),
        ("{{ humanize | 3 }}", (1, 15), "non executable command in pipeline stage 2"),
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
    with pytest.raises(TemplateError, match=r"can't give argument to non-function \$value"):
        render("{{ $value $value }}", LABELS, 0.0)
    check_template("{{ humanize $labels.word }}")  # parsing only, like promtool
    check_template("{{ $value $value }}")
    assert render("{{ $value | }}", LABELS, 2.0) == "2"  # Go accepts an empty last stage


# Expected strings below were produced by promtool 2.42 (Go 1.19) for the same template, labels and value.
GO = {"instance": "db-1:9100", "job": "node", "__name__": "m"}


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("{{ if gt $value 2.0 }}critical{{ else if gt $value 1.0 }}warning{{ else }}info{{ end }}", 1.5, "warning"),
        ("{{ if gt $value 2.0 }}critical{{ else if gt $value 1.0 }}warning{{ else }}info{{ end }}", 0.5, "info"),
        ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", 0.0, "__name__=m;instance=db-1:9100;job=node;"),
        ("{{ range $labels }}{{ . }},{{ end }}", 0.0, "m,db-1:9100,node,"),
        ("{{ range .ExternalLabels }}X{{ else }}empty{{ end }}", 0.0, "empty"),
        (
            '{{ range $k, $v := $labels }}{{ if eq $k "__name__" }}{{ continue }}{{ end }}'
            '{{ if eq $k "job" }}{{ break }}{{ end }}{{ $k }} {{ end }}',
            0.0,
            "instance ",
        ),
        ("{{ with $labels.instance }}on {{ . }}{{ else }}nowhere{{ end }}", 0.0, "on db-1:9100"),
        ("{{ with $labels.nothing }}on {{ . }}{{ else }}nowhere{{ end }}", 0.0, "nowhere"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", 0.0, "2"),
        ("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", 0.0, "21"),
        (
            '{{ define "t" }}T{{ .Labels.job }}{{ end }}{{ template "t" . }}|{{ template "t" }}',
            0.0,
            "Tnode|T<no value>",
        ),
        ('{{ block "b" $labels }}{{ .job }}{{ end }}', 0.0, "node"),
        ('{{ if and (gt $value 1.0) (ne $labels.job "dev") }}Y{{ end }}', 1.5, "Y"),
        (
            "{{ if $value }}T{{ end }}{{ if 0.0 }}T{{ else }}F{{ end }}{{ if .Labels.nope }}{{ else }}E{{ end }}",
            1.0,
            "TFE",
        ),
        ('{{ and 1 0 }}|{{ or "" "x" }}|{{ not 0 }}|{{ and 1 2 }}', 0.0, "0|x|true|2"),
        ('{{ eq $labels.job "a" "b" "node" }}|{{ eq nil nil }}|{{ lt "a" "b" }}', 0.0, "true|true|true"),
        (
            '{{ len $labels }}|{{ index $labels "job" }}|[{{ index $labels "zzz" }}]|{{ len "h\u00e9llo" }}',
            0.0,
            "3|node|[]|6",
        ),
        (
            '{{ printf "%.2f" $value }}|{{ $value | printf "%5.1f" }}|{{ printf "%d" $value }}',
            1.5,
            "1.50|  1.5|%!d(float64=1.5)",
        ),
        (
            '{{ printf "%d %d" 1 }}|{{ printf "%d" 1 2 }}|{{ printf "%s" nil }}|{{ printf "%T" $labels }}',
            0.0,
            "1 %!d(MISSING)|1%!(EXTRA int=2)|%!s(<nil>)|map[string]string",
        ),
        (
            '{{ printf "%q|%x|%-6s|%06.2f|%+d|%e|%c|%U" "q\\"" "hi" "ab" 3.14159 5 1234567.0 65 65 }}',
            0.0,
            '"q\\""|6869|ab    |003.14|+5|1.234567e+06|A|U+0041',
        ),
        ('{{ print 1 2 "a" 3 "b" "c" 4.5 nil }}|{{ println 1 "a" }}', 0.0, "1 2a3bc4.5 <nil>|1 a\n"),
        ("{{ 0x1F }} {{ 1e3 }} {{ 'a' }} {{ 1_000 }} {{ -0.0 }} {{ 1.50 }}", 0.0, "31 1000 97 1000 -0 1.5"),
        ('{{ reReplaceAll "(.*):.*" "$1" $labels.instance }}|{{ reReplaceAll "x*" "-" "abxd" }}', 0.0, "db-1|-a-b-d-"),
        (
            '{{ $labels.instance | stripPort }}|{{ stripDomain "foo.bar.com:80" }}|{{ stripPort "[::1]:80" }}',
            0.0,
            "db-1|foo:80|::1",
        ),
        (
            '{{ match "n.*" $labels.job }}|{{ title "o\'neil wORLD" }}|{{ toUpper "\u00dfa" }}',
            0.0,
            "true|O'Neil WORLD|\u00dfA",
        ),
        (
            '{{ safeHtml "<b>" }}|{{ html "<a&\'\\"" }}|{{ js "a&b=c<>" }}|{{ urlquery "a b&c/\u00e9" }}',
            0.0,
            "<b>|&lt;a&amp;&#39;&#34;|a\\u0026b\\u003Dc\\u003C\\u003E|a+b%26c%2F%C3%A9",
        ),
        (
            "{{ toTime $value }}|{{ humanizeTimestamp 1234567890.123 }}|{{ (toTime $value).Unix }}",
            1.5,
            "1970-01-01 00:00:01.5 +0000 UTC|2009-02-13 23:31:30.122 +0000 UTC|1",
        ),
        (
            '{{ parseDuration "1h30m" }}|{{ args 1 "a" }}|{{ (args 1).missing }}|{{ humanizeDuration 1e21 }}',
            0.0,
            "5400|map[arg0:1 arg1:a]|<no value>|-106751991167300d -15h -30m -8s",
        ),
        ('{{ graphLink "up{a=\\"b\\"}" }}', 0.0, "/graph?g0.expr=up%7Ba%3D%22b%22%7D&g0.tab=0"),
        ("{{ . }}", 1.5, "{map[__name__:m instance:db-1:9100 job:node] map[]  1.5}"),
    ],
)
def test_go_semantics_match_promtool(template: str, value: float, expected: str) -> None:
    assert render(template, GO, value) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ if gt $value 1 }}big{{ end }}",
            "<error expanding template: error executing template __alert_A1: template: __alert_A1:1:118: "
            'executing "__alert_A1" at <gt $value 1>: error calling gt: incompatible types for comparison>',
        ),
        (
            '{{ safeHtml "x" | toUpper }}',
            "<error expanding template: error executing template __alert_A1: template: __alert_A1:1:130: "
            'executing "__alert_A1" at <toUpper>: wrong type for value; expected string; got template.HTML>',
        ),
        (
            "x\n  {{ .Nope }}",
            "<error expanding template: error executing template __alert_A1: template: __alert_A1:2:5: "
            'executing "__alert_A1" at <.Nope>: can\'t evaluate field Nope in type struct { Labels '
            "map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }>",
        ),
        (
            "{{ externalURL }}",
            "<error expanding template: error executing template __alert_A1: template: __alert_A1:1:115: "
            'executing "__alert_A1" at <externalURL>: error calling externalURL: runtime error: invalid memory '
            "address or nil pointer dereference>",
        ),
    ],
)
def test_expand_reproduces_prometheus_error_text(template: str, expected: str) -> None:
    assert expand(template, GO, 1.5, name="A1", external_url=None) == expected


def test_external_url_and_path_prefix() -> None:
    assert render("{{ externalURL }}|{{ pathPrefix }}", GO, 0.0, external_url="https://prom.example/sub") == (
        "https://prom.example/sub|/sub"
    )


def test_query_is_rejected_at_check_time_and_run_time() -> None:
    with pytest.raises(TemplateError) as ei:
        check_template('{{ with query "up" }}{{ . | first | value }}{{ end }}')
    assert (ei.value.line, ei.value.column) == (1, 9)
    assert "not supported" in ei.value.message
    with pytest.raises(TemplateError, match="error calling query: query is not supported"):
        render('{{ query "up" }}', GO, 0.0)
    with pytest.raises(TemplateError) as ei:
        check_template("{{ tmpl }}")  # only Prometheus's HTML console templates have tmpl
    assert ei.value.message == 'function "tmpl" not defined'


def test_template_value_types_in_printf() -> None:
    assert go_sprintf("%v|%s|%.3v|%10v|%-4v|", [1.5, HTML("x"), 1.23456, 2.5, True]) == "1.5|x|1.23|       2.5|true|"
    assert go_sprintf("%[2]d %[1]d", [1, 2]) == "2 1"
    assert go_sprintf("%*d|%.*f|%-*d|", [5, 7, 2, 3.14159, 3, 1]) == "    7|3.14|1  |"
    assert go_sprintf("%d%%|%!|%z", [1, 2]) == "1%|%!!(int=2)|%!z(MISSING)"


# Produced by promtool 2.42 (Go's fmt): widths and precisions beyond 1e6 are refused, never allocated.
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ printf "%*d" 1000001 7 }}', "%!(BADWIDTH)7"),
        ('{{ printf "%*d" 100000000 7 }}', "%!(BADWIDTH)7"),
        ('{{ printf "%-*d|" -1000001 7 }}', "%!(BADWIDTH)7|"),
        ('{{ printf "%[2]*[1]d|" 7 1000001 }}', "%!(BADWIDTH)7|"),
        ('{{ printf "%.*f" 1000001 1.5 }}', "%!(BADPREC)1.500000"),
        ('{{ printf "%*d" 1000000 7 | len }}', "1000000"),
        ('{{ printf "%10000000d" 7 | len }}', "10000000"),  # Go's parsenum stops only past 1e6 *before* a digit
        ('{{ printf "%100000000d" 7 }}', "%!(NOVERB)%!(EXTRA int=7)"),
        ('{{ printf "%.100000000f" 1.5 }}', "%!(NOVERB)%!(EXTRA float64=1.5)"),
        ('{{ printf "%[1000000000]d" 7 }}', "%!d(BADINDEX)"),
        ('{{ printf "%5." 1 }}', "%!.(int=    1)"),
        ('{{ printf "%.5" 1 }}', "%!(NOVERB)%!(EXTRA int=1)"),
        ('{{ printf "%[d" 1 }}', "%!d(BADINDEX)"),
        ('{{ printf "%[1d" 1 }}', "%!d(BADINDEX)"),
        ('{{ printf "%[]d" 1 }}', "%!d(BADINDEX)"),
        ('{{ printf "%.[2]d" 1 2 }}', "2"),
        ('{{ printf "%[1]5d" 1 }}', "%!d(BADINDEX)"),
    ],
)
def test_printf_width_and_precision_bounded_like_go(template: str, expected: str) -> None:
    assert render(template, GO, 0.0) == expected


@pytest.mark.timeout(30)
def test_regex_functions_run_in_linear_time() -> None:
    """``reReplaceAll``/``match`` with ``(a*)*c`` over a 40-character label backtracked for hours."""
    labels = {**GO, "host": "a" * 40}
    got = render('{{ reReplaceAll "(a*)*c" "x" $labels.host }}|{{ match "(a|aa)+c" $labels.host }}', labels, 0.0)
    assert got == "a" * 40 + "|false"


# Produced by promtool 2.42: Go's leftmost-first submatches and ReplaceAll's empty-match rule.
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{ reReplaceAll "(a*)*c" "[$1]" "baaacd" }}', "b[aaa]d"),
        ('{{ reReplaceAll "(a|ab)(c|bcd)(d*)" "[$1|$2|$3]" "abcd" }}', "[a|bcd|]"),
        ('{{ reReplaceAll "a*" "-" "baaac" }}', "-b-c-"),
        ('{{ reReplaceAll "(?P<x>b)|a" "<${x}>" "abba" }}', "<><b><b><>"),
    ],
)
def test_re_replace_all_submatches_like_go(template: str, expected: str) -> None:
    assert render(template, GO, 0.0) == expected


@pytest.mark.timeout(30)
def test_number_parsing_of_long_label_values_is_linear() -> None:
    """``humanize`` parses a label value with Go's ``ParseFloat``; the syntax check backtracked
    quadratically over a long digit run (``\\d+\\.?\\d*``), minutes for 200 000 digits."""
    digits = "1" * 200_000
    for bad in (digits + "x", "0x" + digits + "x"):
        got = expand("{{ humanize $labels.v }}", {"v": bad}, 0.0, name="A", external_url=None)
        assert got.endswith(": invalid syntax>"), got[-80:]
    assert render('{{ humanize "0x1_0p0" }}|{{ humanize "1.5e3" }}', GO, 0.0) == "16|1.5k"
    for bad in ("0x1_p0", "0xp1", "0x_.1p0"):  # Go: underscores only between digits; a digit is needed
        assert expand(f'{{{{ humanize "{bad}" }}}}', GO, 0.0, name="A", external_url=None).endswith("invalid syntax>")
