"""The test tree's own rule: no two test files share a basename.

Why: the tests have no ``__init__.py`` files (rootdir-based module names), so two ``test_service.py``
in different folders pass alone and fail as an import error when collected together — which only
the full run does."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_two_test_files_share_a_basename() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
