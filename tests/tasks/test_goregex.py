"""The Go RE2 → Python translator, construct by construct.

Expected answers are Go's: each row was checked against ``regexp`` through promtool's template
functions (``match``/``reReplaceAll``), and ``test_promtool_agrees_on_the_table`` re-checks the
whole table against promtool on every run, so a row cannot drift from Go unnoticed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import re2
import yaml

from tasks.alerting.rules.templating import expand
from tasks.goregex import GoRegexError, compile_go_regex, translate_go_regex

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# (pattern, text, does Go's regexp.MatchString find a match)
MATCHES: list[tuple[str, str, bool]] = [
    # anchors: $ and \z are the end of the text; ^ and \A its start; (?m) makes them per line
    ("a$", "a\n", False),
    ("a$", "a", True),
    (r"a\z", "a", True),
    (r"a\z", "a\n", False),
    ("^b$", "a\nb", False),
    ("(?m)^b$", "a\nb", True),
    ("(?m:^a)", "b\na", True),
    (r"\A^a", "a", True),
    # flags anywhere, scoped to the group; - clears; U swaps greediness
    ("(?i)abc", "ABC", True),
    ("x(?i)yz", "xYZ", True),
    ("x(?i)yz", "XYZ", False),
    ("(x|(?i)Y)z", "yZ", False),
    ("(?i)(?-i)A", "a", False),
    ("(?im-s:a.)", "A\n", False),
    ("(?s).", "\n", True),
    (".", "\n", False),
    ("(?i)k", "\u212a", True),  # Kelvin sign folds to k, as in Go
    ("(?i)[^k]", "K", False),
    # Perl classes and \b are ASCII in RE2
    (r"\d+", "١٢", False),
    (r"\w+", "é", False),
    (r"\s", "\u00a0", False),
    (r"\bé", "é", False),
    (r"[\d]", "5", True),
    (r"[\D]", "a", True),
    # POSIX classes, negated too
    ("[[:digit:]]+", "123", True),
    ("[[:^alpha:]]", "1", True),
    ("[^[:alpha:]]", "a", False),
    ("[[:punct:]]+", "[]\\", True),
    ("[[:word:]]", "_", True),
    ("[a[:digit:]b]", "5", True),
    # \Q…\E quotes; an unterminated \Q runs to the end
    (r"\Qa.b\E", "a.b", True),
    (r"\Qa.b\E", "axb", False),
    (r"\Qa.b", "a.b", True),
    (r"\Q(\Ea", "(a", True),
    # escapes: \x{…}, octal, C escapes, escaped punctuation
    (r"\x{41}", "A", True),
    (r"\x41", "A", True),
    (r"\101", "A", True),
    (r"\n\t\r\f\v\a", "\n\t\r\f\v\a", True),
    (r"\_", "_", True),
    # braces that are not a repeat are literals; classes: leading ] and trailing - are literals
    ("a{,3}", "a{,3}", True),
    ("a{,3}", "aaa", False),
    ("a{01}", "a{01}", True),
    ("[]a]", "]", True),
    ("[a-]", "-", True),
    ("(?P<1>a)", "a", True),
    ("(?P<name>a)|(?P<name>b)", "b", True),  # Go allows a repeated name
    ("a(?i)*", "aa", True),  # a repeat after a flag group repeats what came before it
    ("(a{100}){10}", "x", False),
]

# (pattern, Go's error text, 0-based position we report)
ERRORS: list[tuple[str, str, int]] = [
    ("(", "missing closing ): `(`", 0),
    ("a(b(c)", "missing closing ): `a(b(c)`", 1),
    ("a)", "unexpected ): `a)`", 1),
    ("[a", "missing closing ]: `[a`", 0),
    ("[z-a]", "invalid character class range: `z-a`", 1),
    ("[[:foo:]]", "invalid character class range: `[:foo:]`", 1),
    (r"[a-\d]", r"invalid escape sequence: `\d`", 3),
    ("\\", "trailing backslash at end of expression: ``", 0),
    (r"(a)\1", r"invalid escape sequence: `\1`", 3),
    (r"\8", r"invalid escape sequence: `\8`", 0),
    (r"\Z", r"invalid escape sequence: `\Z`", 0),
    (r"\e", r"invalid escape sequence: `\e`", 0),
    (r"\C", r"invalid escape sequence: `\C`", 0),
    (r"[\Q]\E]", r"invalid escape sequence: `\Q`", 1),
    (r"\x{110000}", r"invalid escape sequence: `\x{110000`", 0),
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`", 0),
    ("(?!a)", "invalid or unsupported Perl syntax: `(?!`", 0),
    ("(?<=a)b", "invalid or unsupported Perl syntax: `(?<`", 0),
    ("(?<n>a)", "invalid or unsupported Perl syntax: `(?<`", 0),
    ("(?P=n)", "invalid or unsupported Perl syntax: `(?P`", 0),
    ("(?x) a", "invalid or unsupported Perl syntax: `(?x`", 0),
    ("(?i", "invalid or unsupported Perl syntax: `(?i`", 0),
    ("(?-)a", "invalid or unsupported Perl syntax: `(?-)`", 0),
    ("(?P<x", "invalid named capture: `(?P<x`", 0),
    ("(?P<a-b>x)", "invalid named capture: `(?P<a-b>`", 0),
    ("a**", "invalid nested repetition operator: `**`", 1),
    ("a++", "invalid nested repetition operator: `++`", 1),
    ("a{2}{3}", "invalid nested repetition operator: `{2}{3}`", 1),
    ("*", "missing argument to repetition operator: `*`", 0),
    ("a|*", "missing argument to repetition operator: `*`", 2),
    ("(?i)*", "missing argument to repetition operator: `*`", 4),
    ("a{2,1}", "invalid repeat count: `{2,1}`", 1),
    ("x{1001}", "invalid repeat count: `{1001}`", 1),
    ("(a{100}){11}", "invalid repeat count: `{11}`", 8),
]


@pytest.mark.parametrize(("pattern", "text", "want"), MATCHES)
def test_matches_like_go(pattern: str, text: str, want: bool) -> None:
    assert (compile_go_regex(pattern).search(text) is not None) is want


@pytest.mark.parametrize(("pattern", "message", "position"), ERRORS)
def test_rejects_like_go_with_position(pattern: str, message: str, position: int) -> None:
    with pytest.raises(GoRegexError) as exc:
        compile_go_regex(pattern)
    assert str(exc.value) == f"error parsing regexp: {message}"
    assert exc.value.position == position
    assert exc.value.pattern == pattern


def test_unicode_classes_are_refused_not_misread() -> None:
    # Go accepts \pL; Go's and RE2's Unicode tables differ in version: a clear error, never a guess.
    for pattern, expr in ((r"\pL", r"\pL"), (r"x\p{Greek}", r"\p{Greek}"), (r"[\PN]", r"\PN")):
        with pytest.raises(GoRegexError, match="unsupported Unicode class") as exc:
            compile_go_regex(pattern)
        assert exc.value.expr == expr and pattern[exc.value.position :].startswith(expr)


def test_fullmatch_is_prometheus_anchoring() -> None:
    rx = compile_go_regex("a|ab")
    assert rx.fullmatch("ab") and rx.fullmatch("a") and not rx.fullmatch("abc")
    assert compile_go_regex("").fullmatch("") and not compile_go_regex("").fullmatch("x")


def test_groups_keep_go_numbering_and_names() -> None:
    rx = compile_go_regex(r"(?P<host>[^:]+):(\d+)(?i)(?:X)")
    m = rx.fullmatch("db:9100x")
    assert m is not None and m.group(1, 2) == ("db", "9100") and m.group("host") == "db"
    assert rx.groups == 2


def test_translation_is_plain_re2_and_type_checked() -> None:
    assert re2.compile(translate_go_regex("(?i)a[[:digit:]]$")).fullmatch("A1")
    # every non-alphanumeric literal is a \x{…} escape: nothing in user text is special to RE2
    assert translate_go_regex("a.b\\.$") == "a[^\\n]b\\x{2e}\\z"
    with pytest.raises(TypeError, match="pattern: expected a str"):
        translate_go_regex(b"a")  # type: ignore[arg-type]


def _promtool_cases() -> list[tuple[str, str]]:
    return [(p, t) for p, t, _ in MATCHES] + [(p, "x") for p, _, _ in ERRORS]


@pytest.mark.timeout(60)
def test_promtool_agrees_on_the_table(tmp_path: Path) -> None:
    """Go itself (promtool's ``match``) answers every row: match results and error texts."""
    assert Path(PROMTOOL).exists(), "promtool (Debian package prometheus) is required: see .ci/run"
    rules, series, tests = [], [], []
    for i, (pattern, text) in enumerate(_promtool_cases()):
        template = f"{{{{ match {json.dumps(pattern)} {json.dumps(text)} }}}}"
        try:
            want = "true" if compile_go_regex(pattern).search(text) else "false"
        except GoRegexError as e:
            # Prometheus wraps the error (template name, column after its prelude): our templating
            # renders that frame; the test is that Go's error text inside it is ours.
            want = expand(template, {"case": str(i)}, 1.0, name=f"C{i}", external_url=None)
            assert want.endswith(f"error calling match: {e}>"), want
        rules.append({"alert": f"C{i}", "expr": f'm{{case="{i}"}}', "annotations": {"m": template}})
        series.append({"series": f'm{{case="{i}"}}', "values": "1"})
        tests.append(
            {
                "eval_time": "0s",
                "alertname": f"C{i}",
                "exp_alerts": [{"exp_labels": {"case": str(i)}, "exp_annotations": {"m": want}}],
            }
        )
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, allow_unicode=True, width=100_000))
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[:4000]


#: Patterns that backtracking engines (Python's ``re``) take exponential time on, against a text of
#: 40+ characters: ``(a*)*c`` alone would run for days there. RE2 answers each in linear time.
CATASTROPHIC: list[tuple[str, str]] = [
    ("(a*)*c", "a" * 40),
    ("(a|aa)+c", "a" * 60),
    ("(x+x+)+y", "x" * 40),
    ("(?:a?){40}a{40}", "a" * 39 + "b"),
    ("^(\\w+\\s?)*$", "an alert label value that goes on and on and on!"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_catastrophic_patterns_run_in_linear_time(pattern: str, text: str) -> None:
    rx = compile_go_regex(pattern)
    assert rx.search(text) is None and rx.fullmatch(text) is None


@pytest.mark.timeout(30)
def test_catastrophic_pattern_still_finds_its_matches() -> None:
    rx = compile_go_regex("(a*)*c")
    assert rx.fullmatch("a" * 40 + "c") is not None
    m = rx.search("b" + "a" * 40 + "cd")
    assert m is not None and m.span() == (1, 42)


def test_text_without_a_utf8_form_is_matched_not_raised() -> None:
    # RE2 takes UTF-8; a lone surrogate (possible in a str, never in UTF-8) must not crash a tick
    assert compile_go_regex("a.+b").fullmatch("a\ud800b") is not None
    assert compile_go_regex("(x)").replace_all("x\ud800x", "[$1]") == "[x]\ufffd\ufffd\ufffd[x]"


@pytest.mark.parametrize(
    ("template", "expected"),
    [("$1-${2}", "a-b"), ("$$1", "$1"), ("${1", "${1"), ("$x$1x", "b"), ("$01", ""), ("$name!", "a!"), ("$9", "")],
)
def test_expand_is_gos(template: str, expected: str) -> None:
    rx = compile_go_regex("(?P<name>a)(?P<x>b)")
    m = rx.fullmatch("ab")
    assert m is not None and rx.expand(template, m) == expected
