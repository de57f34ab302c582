"""Lake selectors read label regexes as Go RE2, exactly as the alert rules' matchers do.

Before ``tasks.goregex`` the lake validated with Python's ``re`` (rejecting ``\\z``, ``\\Q…\\E``,
``x(?i)y``) and matched with polars' Rust regex (Unicode ``\\d``), so a regex pasted from an alert rule
could select different series, or none, in a lake query.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tasks.alerting.notify.matchers import new_matcher
from tasks.lake import Sample
from tasks.lake.selector import SelectorError, parse_selector

JOBS = ["api", "API", "api\n", "db-1", "db-١", "a.b", "axb", "x1", ""]


@pytest.fixture
def jobs_lake(lake, now):
    lake.write_samples([Sample("up", 1.0, now - timedelta(minutes=1), {"job": j} if j else {}) for j in JOBS], now=now)
    return lake


def _selected(lake, now, regex: str) -> list[str]:
    promql_string = regex.replace("\\", "\\\\").replace('"', '\\"')
    df = lake.raw(f'up{{job=~"{promql_string}"}}', now - timedelta(hours=1), now)
    return sorted(str(s) for s in df.get_column("series").unique())


@pytest.mark.parametrize(
    ("regex", "expected_jobs"),
    [
        (r"api\z", ["api"]),  # \z: end of text; Python's re rejects it
        ("api$", ["api"]),  # $ is the end of the text, not before a final newline
        (r"db-\d", ["db-1"]),  # \d is ASCII in RE2 (polars' Rust regex also took the Arabic digit)
        (r"db-[[:digit:]]", ["db-1"]),
        (r"\Qa.b\E", ["a.b"]),  # quoted: the dot is literal
        ("x(?i)1|(?i)api", ["API", "api", "x1"]),  # flags mid-pattern, scoped as in Go
        ("(?i)ap", []),  # fully anchored
    ],
)
def test_go_only_constructs_select_what_alert_matchers_match(jobs_lake, now, regex, expected_jobs):
    selected = _selected(jobs_lake, now, regex)
    assert selected == sorted(f'up{{job="{j}"}}' for j in expected_jobs)
    # the alert rules' (Alertmanager) matcher agrees, value by value
    matcher = new_matcher("job", "=~", regex)
    assert sorted(j for j in JOBS if j and matcher.matches({"job": j})) == sorted(expected_jobs)


def test_not_match_and_empty_label_follow_go(jobs_lake, now):
    df = jobs_lake.raw(r'up{job!~"[[:alpha:]]+\\z"}', now - timedelta(hours=1), now)
    got = sorted(str(s) for s in df.get_column("series").unique())
    assert got == sorted(
        ['up{job="api\\n"}', 'up{job="db-1"}', 'up{job="db-١"}', 'up{job="a.b"}', 'up{job="x1"}', "up"]
    )


def test_rejected_regex_names_the_label_with_gos_error():
    with pytest.raises(SelectorError) as exc:
        parse_selector('up{job=~"(?=api)a"}')
    assert (
        "label job: invalid regex '(?=api)a': error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
        in str(exc.value)
    )
    # a regex that matches "" for every matcher is still refused, judged with Go's semantics
    with pytest.raises(SelectorError, match="at least one non-empty matcher"):
        parse_selector(r'{job=~"\Q\E"}')


@pytest.mark.timeout(30)
def test_catastrophic_regex_against_long_label_value_finishes(lake, now):
    """``(a*)*c`` against a 40-character value took exponential time on Python's backtracking ``re``."""
    long = "a" * 40
    lake.write_samples([Sample("up", 1.0, now - timedelta(minutes=1), {"host": long})], now=now)
    assert lake.raw('up{host=~"(a*)*c"}', now - timedelta(hours=1), now).height == 0
    df = lake.raw('up{host!~"(a*)*c"}', now - timedelta(hours=1), now)
    assert [str(s) for s in df.get_column("series").unique()] == [f'up{{host="{long}"}}']
