from __future__ import annotations

import pytest

from tasks.alerting.notify.matchers import (
    MatcherError,
    compile_go_regex,
    matchers_from_legacy,
    matchers_match,
    matchers_text,
    parse_matcher,
    parse_matchers,
)


def test_list_forms_as_alertmanager_documents_them():
    ms = parse_matchers('{foo = "bar", dings != "bums", }')
    assert [(m.name, m.op, m.value) for m in ms] == [("foo", "=", "bar"), ("dings", "!=", "bums")]
    assert [str(m) for m in parse_matchers("foo=bar,dings!=bums")] == ['foo="bar"', 'dings!="bums"']
    assert parse_matchers('statuscode=~"5.."')[0].op == "=~"
    assert parse_matchers("b!~x.*")[0] == parse_matcher('b!~"x.*"')


def test_quoted_commas_and_escapes():
    (m,) = parse_matchers(r'{quote="She said: \"Hi, ladies!\""}')
    assert m.value == 'She said: "Hi, ladies!"'
    assert parse_matcher(r'a="x\ny"').value == "x\ny"
    assert parse_matcher(r'a="back\\slash"').value == "back\\slash"
    assert parse_matcher(r'a="keep\d"').value == "keep\\d"  # spurious escape stays literal
    assert parse_matcher("a=").value == ""


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("foo", "expected =, !=, =~ or !~ after label 'foo'", 4),
        ("9a=b", "expected a label name", 1),
        ('a="b', "missing its closing double quote", 5),
        ('a="x"y"', "unescaped double quote", 5),
        ('job=~"(unclosed"', "invalid regular expression", 7),
        ('x=~"(?=look)"', "look-around", 5),
    ],
)
def test_errors_name_the_position(text, message, column):
    with pytest.raises(MatcherError) as exc:
        parse_matchers(text)
    assert message in str(exc.value)
    assert exc.value.position + 1 == column


def test_match_semantics_missing_label_is_empty():
    labels = {"alertname": "X", "severity": "page"}
    assert parse_matcher('severity=~"crit|page"').matches(labels)
    assert not parse_matcher('severity=~"pag"').matches(labels)  # fully anchored
    assert parse_matcher('team=""').matches(labels)
    assert parse_matcher('team!="db"').matches(labels)
    assert parse_matcher('team=~".*"').matches(labels)
    assert not parse_matcher('team=~".+"').matches(labels)
    assert parse_matcher('team!~".+"').matches(labels)
    assert matchers_match(parse_matchers('alertname="X",severity!="warn"'), labels)
    assert not matchers_match(parse_matchers('alertname="X",severity="warn"'), labels)


def test_go_regex_translation():
    assert compile_go_regex("a$").fullmatch("a\n") is None  # Go's $ is end of text
    assert compile_go_regex("(?i)abc").fullmatch("ABC")
    assert compile_go_regex("x(?i)yz").fullmatch("xYZ")
    assert not compile_go_regex("x(?i)yz").fullmatch("XYZ")
    assert compile_go_regex("[[:digit:]]+").fullmatch("123")
    assert compile_go_regex(r"\d+").fullmatch("١٢") is None  # \d is ASCII in RE2
    assert compile_go_regex(r"\Qa.b\E").fullmatch("a.b") and not compile_go_regex(r"\Qa.b\E").fullmatch("axb")
    for bad in (r"(a)\1", r"\pL", "(?<=a)b", r"\Z"):
        with pytest.raises(MatcherError):
            compile_go_regex(bad)


def test_legacy_maps_and_text():
    ms = matchers_from_legacy({"team": "db", "code": 500}, {"env": "prod.*"})
    assert matchers_text(ms) == '{team="db",code="500",env=~"prod.*"}'
    assert matchers_match(ms, {"team": "db", "code": "500", "env": "production"})
    with pytest.raises(MatcherError, match="invalid label name"):
        matchers_from_legacy({"bad-name": "x"}, None)


def test_matches_empty_follows_silence_rule():
    assert parse_matcher('a=""').matches_empty
    assert parse_matcher('a=~".*"').matches_empty
    assert not parse_matcher('a=~".+"').matches_empty
    assert not parse_matcher('a!="x"').matches_empty  # negative matchers never count


@pytest.mark.timeout(30)
def test_long_matcher_text_parses_in_linear_time():
    """The matcher splitter's ``(.*?)\\s*\\Z`` was quadratic on a value with a long inner run of spaces
    (a 300 000-character silence matcher took minutes); Alertmanager's Go regexp is linear."""
    value = "x" + " " * 300_000 + "y"
    (m,) = parse_matchers(f"  host =~ {value}  \t")
    assert (m.name, m.op, m.value) == ("host", "=~", value)
    assert m.matches({"host": value}) and not m.matches({"host": value + "z"})
