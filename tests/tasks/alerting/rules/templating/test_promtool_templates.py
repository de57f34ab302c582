"""Differential test of alert templates against Prometheus 2.42 itself (``promtool test rules``).

A seeded generator builds templates that combine the Go ``text/template`` features rule authors use
(``if``/``else if``/``else``, ``range`` over ``$labels`` with ``$k, $v :=``, ``break``/``continue``,
``with``/``else``, ``:=``/``=`` scoping, ``define``/``template``/``block``, parenthesised pipelines,
``and or not eq ne lt le gt ge len index print printf println html js urlquery`` and Prometheus's
``humanize* humanizeTimestamp toTime title toUpper toLower match reReplaceAll safeHtml stripPort
stripDomain parseDuration args graphLink tableLink``) over random label sets (quotes, backslashes,
unicode, ports) and values (0, NaN, ±Inf, huge and tiny numbers). Some templates are *meant* to
fail (``gt $value 1`` compares float64 with int; ``toUpper`` of a number …): Prometheus then writes
``<error expanding template: …>`` with Go's error text, and so must we.

Each case is one series and one alerting rule whose annotations are the generated templates; OUR
rendering (:func:`tasks.alerting.rules.templating.expand`, as promtool runs: no external URL) becomes the
``exp_annotations`` of a promtool test file, and one ``promtool test rules`` run must pass them all.
``TEMPLATE_DIFF_SEED`` / ``TEMPLATE_DIFF_CASES`` pick the seed and the number of cases (default
150); a failure prints the seed, the failing cases and promtool's words (``got`` vs ``exp``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tasks.alerting.rules.templating import check_template, expand

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SEED = int(os.environ.get("TEMPLATE_DIFF_SEED", "20260611"))
CASES = int(os.environ.get("TEMPLATE_DIFF_CASES", "150"))

_VALUES = [
    "0",
    "1",
    "1.5",
    "-2.25",
    "0.1",
    "0.000123",
    "1e-09",
    "123456",
    "1234567.5",
    "1e+21",
    "-7e+15",
    "86461",
    "0.95",
    "NaN",
    "Inf",
    "-Inf",
]
_LABEL_VALUES = [
    "node",
    "db-1.example.com:9100",
    "10.0.0.1:80",
    "[::1]:9090",
    "café ünïcode",
    'say "hi"',
    "back\\slash",
    "it's <b>&</b>",
    "x y=z",
    "ǆemo ß",
    "",
    "UPPER lower",
    "a.b.c",
    "0.75",
    "42",
]
_LABEL_NAMES = ["instance", "job", "env", "team", "path", "code", "zone"]

# Building blocks: each a function of the rng returning a template fragment.
_VALUE_EXPRS = [
    "$value",
    ".Value",
    '(parseDuration "1m30s")',
    "1.5",
    "0.0",
]


def _label_ref(rng: random.Random) -> str:
    name = rng.choice([*_LABEL_NAMES, "missing"])
    return rng.choice([f"$labels.{name}", f".Labels.{name}", f'(index $labels "{name}")'])


def _number_fn(rng: random.Random) -> str:
    v = rng.choice(_VALUE_EXPRS)
    f = rng.choice(
        [
            "humanize",
            "humanize1024",
            "humanizeDuration",
            "humanizePercentage",
            "humanizeTimestamp",
            "toTime",
        ]
    )
    return rng.choice([f"{{{{ {f} {v} }}}}", f"{{{{ {v} | {f} }}}}"])


def _printf(rng: random.Random) -> str:
    fmt, args = rng.choice(
        [
            ("%.2f", "$value"),
            ("%5.1f|", "$value"),
            ("%-8.3f|", "$value"),
            ("%g", "$value"),
            ("%e", "$value"),
            ("%.3g", "$value"),
            ("%v", "$value"),
            ("%d", "$value"),
            ("%s", "$value"),
            ("%08.2f", "$value"),
            ("%+.1e", "$value"),
            ("%6.2f%%", "$value"),
            ("%s=%q", '"k" $labels.job'),
            ("%x", "$labels.instance"),
            ("%10s|%-10s|", "$labels.job $labels.env"),
            ("%.3s", "$labels.instance"),
            ("%d items", "(len $labels)"),
            ("%05d", "(len $labels)"),
            ("%t", "(gt $value 1.0)"),
            ("%T %T", "$value $labels"),
            ("%v", "$labels"),
            ("%d %d", "1"),
            ("%d", "1 2"),
            ("%c%c", "72 105"),
            ("%q", '(index $labels "instance")'),
            ("%v", "(toTime $value)"),
        ]
    )
    if " " in args or rng.random() < 0.5:
        return f'{{{{ printf "{fmt}" {args} }}}}'
    return f'{{{{ {args} | printf "{fmt}" }}}}'


def _string_fn(rng: random.Random) -> str:
    ref = _label_ref(rng)
    return rng.choice(
        [
            f"{{{{ {ref} | toUpper }}}}",
            f"{{{{ toLower {ref} }}}}",
            f"{{{{ title {ref} }}}}",
            f"{{{{ {ref} | stripPort }}}}",
            f"{{{{ stripDomain {ref} }}}}",
            f'{{{{ reReplaceAll "(.*):.*" "$1" {ref} }}}}',
            f'{{{{ reReplaceAll "[aeiou]" "<$0>" {ref} }}}}',
            f'{{{{ reReplaceAll "x*" "-" {ref} }}}}',
            f'{{{{ match "^[a-z]+" {ref} }}}}',
            f"{{{{ safeHtml {ref} }}}}",
            f"{{{{ html {ref} }}}}",
            f"{{{{ js {ref} }}}}",
            f"{{{{ urlquery {ref} }}}}",
            f"{{{{ len {ref} }}}}",
            f'{{{{ graphLink (printf "up{{job=%q}}" {ref}) }}}}',
            '{{ tableLink "rate(x[5m])" }}',
            f"{{{{ print {ref} 1 2 }}}}",
            f"{{{{ println {ref} }}}}",
            f"{{{{ slice {ref} 0 1 }}}}",
            f"{{{{ index {ref} 0 }}}}",
        ]
    )


def _condition(rng: random.Random) -> str:
    ref = _label_ref(rng)
    lv = json.dumps(rng.choice(_LABEL_VALUES), ensure_ascii=False)
    return rng.choice(
        [
            "gt $value 0.9",
            "lt $value 100.0",
            "ge .Value 1.5",
            "le $value 0.0",
            f"eq {ref} {lv}",
            f'eq {ref} "node" "10.0.0.1:80" ""',
            f"ne {ref} {lv}",
            "$value",
            ref,
            f'and (gt $value 1.0) (ne {ref} "dev")',
            f"or {ref} $value",
            f"not {ref}",
            f"lt {ref} {lv}",
            "eq (len $labels) 4",
            f'match "^[0-9.]+$" {ref}',
            "gt $value 1",  # float64 vs int: an error in Go
        ]
    )


def _fragment(rng: random.Random, depth: int = 0) -> str:
    kinds = ["text", "value", "label", "number", "printf", "string"]
    if depth < 2:
        kinds += ["if", "if", "range", "with", "var", "block"]
    if depth == 0:
        kinds.append("define")  # Go allows {{define}} only at the top level
    kind = rng.choice(kinds)
    if kind == "text":
        return rng.choice([" ", " is ", "\n", " — ", "; ", "%", "{ }"])
    if kind == "value":
        return rng.choice(["{{ $value }}", "{{ .Value }}", "{{$value}}", "{{- $value -}}"])
    if kind == "label":
        return f"{{{{ {_label_ref(rng)} }}}}"
    if kind == "number":
        return _number_fn(rng)
    if kind == "printf":
        return _printf(rng)
    if kind == "string":
        return _string_fn(rng)
    inner = _fragment(rng, depth + 1)
    other = _fragment(rng, depth + 1)
    if kind == "if":
        shape = rng.randrange(3)
        if shape == 0:
            return f"{{{{ if {_condition(rng)} }}}}{inner}{{{{ end }}}}"
        if shape == 1:
            return f"{{{{ if {_condition(rng)} }}}}{inner}{{{{ else }}}}{other}{{{{ end }}}}"
        return (
            f"{{{{ if {_condition(rng)} }}}}critical{{{{ else if {_condition(rng)} }}}}{inner}"
            f"{{{{ else }}}}{other}{{{{ end }}}}"
        )
    if kind == "range":
        body = rng.choice(
            [
                "{{ $k }}={{ $v }} ",
                '{{ if eq $k "case" }}{{ continue }}{{ end }}{{ $k }},',
                '{{ $k }}{{ if eq $k "instance" }}{{ break }}{{ end }};',
                "{{ $k | toUpper }}:{{ len $v }} ",
                "{{ . }}|",
            ]
        )
        head = "$k, $v := $labels" if "$" in body else "$labels"
        els = rng.choice(["", "{{ else }}none"])
        src = rng.choice([head, head.replace("$labels", ".ExternalLabels")]) if rng.random() < 0.2 else head
        return f"{{{{ range {src} }}}}{body}{els}{{{{ end }}}}"
    if kind == "with":
        return f"{{{{ with {_label_ref(rng)} }}}}on {{{{ . }}}}{inner}{{{{ else }}}}{other}{{{{ end }}}}"
    if kind == "var":
        return (
            f'{{{{ $x := {_label_ref(rng)} }}}}{{{{ if {_condition(rng)} }}}}{{{{ $x = "changed" }}}}'
            f"{{{{ $y := 1 }}}}{{{{ end }}}}[{{{{ $x }}}}]{inner}"
        )
    if kind == "define":
        name = f"t{rng.randrange(1000)}"
        return (
            f'{{{{ define "{name}" }}}}<{{{{ . }}}}>{{{{ end }}}}{{{{ template "{name}" {_label_ref(rng)} }}}}{inner}'
        )
    name = f"b{rng.randrange(1000)}"
    return f'{{{{ block "{name}" .Labels }}}}{{{{ .job }}}}/{{{{ len . }}}}{{{{ end }}}}{inner}'


def make_case(seed: int, index: int) -> tuple[dict[str, str], str, list[str]]:
    """(labels, value as written in the series, templates) of case ``index``."""
    rng = random.Random(seed * 1_000_003 + index)
    labels = {
        name: rng.choice(_LABEL_VALUES) for name in rng.sample(_LABEL_NAMES, rng.randint(0, 4)) if rng.random() < 0.9
    }
    labels = {k: v for k, v in labels.items() if v != ""}  # an empty label value is no label
    value = rng.choice(_VALUES)
    templates = ["".join(_fragment(rng) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
    return labels, value, templates


def _series_value(text: str) -> float:
    return {"Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


def _metric(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def write_files(root: Path, seed: int, indexes: list[int]) -> Path:
    """One rule file and one promtool test file covering all cases, with OUR renderings expected."""
    rules: list[dict[str, object]] = []
    series: list[dict[str, str]] = []
    tests: list[dict[str, object]] = []
    for i in indexes:
        labels, value, templates = make_case(seed, i)
        for t in templates:
            check_template(t)  # the generator stays within what `rules check` accepts
        full = {**labels, "case": str(i)}
        series.append({"series": _metric("m", full), "values": value})
        name = f"Case{i}"
        annotations = {f"a{k}": t for k, t in enumerate(templates)}
        rules.append({"alert": name, "expr": f'm{{case="{i}"}}', "annotations": annotations})
        tmpl_labels = {**full, "__name__": "m"}
        v = _series_value(value)
        expected = {k: expand(t, tmpl_labels, v, name=name, external_url=None) for k, t in annotations.items()}
        tests.append(
            {
                "eval_time": "0s",
                "alertname": name,
                "exp_alerts": [{"exp_labels": full, "exp_annotations": expected}],
            }
        )
    (root / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}, sort_keys=False, allow_unicode=True)
    )
    path = root / "test.yml"
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"name": f"seed {seed}", "interval": "1m", "input_series": series, "alert_rule_test": tests}],
    }
    path.write_text(yaml.safe_dump(test, sort_keys=False, allow_unicode=True, width=100_000))
    return path


def failing_cases(output: str) -> list[int]:
    return sorted({int(part.split(",")[0]) for part in output.split("alertname: Case")[1:]})


@pytest.mark.timeout(120)
def test_promtool_renders_our_templates(tmp_path: Path) -> None:
    assert Path(PROMTOOL).exists(), "promtool (Debian package prometheus) is required: see .ci/run"
    print(f"\nTEMPLATE_DIFF_SEED={SEED} TEMPLATE_DIFF_CASES={CASES}")
    started = time.perf_counter()
    path = write_files(tmp_path, SEED, list(range(CASES)))
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=100,
        check=False,
    )
    promtool_s = time.perf_counter() - started
    bad = failing_cases(proc.stdout)
    print(f"{CASES - len(bad)}/{CASES} cases agree (ours {ours_s:.2f}s, promtool {promtool_s:.2f}s)")
    if proc.returncode != 0:
        labels, value, templates = make_case(SEED, bad[0]) if bad else ({}, "", [])
        pytest.fail(
            f"promtool disagrees (TEMPLATE_DIFF_SEED={SEED}) on cases {bad}; first: labels={labels} "
            f"value={value} templates={templates}\npromtool says:\n{proc.stdout[:4000]}"
        )


def test_generator_covers_control_structures_and_errors(tmp_path: Path) -> None:
    """The oracle is only as good as its inputs: the default run must exercise every feature,
    including templates that fail the way Go fails."""
    texts = [t for i in range(CASES) for t in make_case(SEED, i)[2]]
    joined = "\n".join(texts)
    for needle in (
        "{{ if ",
        "{{ else if ",
        "{{ range ",
        "{{ with ",
        "{{ define ",
        "{{ block ",
        ":= ",
        "{{ break }}",
        "{{ continue }}",
        "printf",
        "reReplaceAll",
        "humanizeTimestamp",
        "toTime",
        "and (",
        "eq ",
    ):
        assert needle in joined, needle
    rendered = []
    for i in range(CASES):
        labels, value, templates = make_case(SEED, i)
        for t in templates:
            rendered.append(expand(t, {**labels, "case": str(i), "__name__": "m"}, _series_value(value), name="X"))
    errors = [r for r in rendered if r.startswith("<error expanding template")]
    assert 0 < len(errors) < len(rendered) // 2, (len(errors), len(rendered))
    assert any("incompatible types for comparison" in e for e in errors)
    values = {make_case(SEED, i)[1] for i in range(CASES)}
    assert {"NaN", "Inf", "-Inf", "0"} <= values
