"""docs/bad-inputs.md stays current: every test it names exists, and every test in a
``test_bad_*.py`` / ``test_fuzz_*.py`` file is named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "bad-inputs.md"
_REF = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_named_in_the_catalogue_exists():
    refs = _REF.findall(CATALOGUE.read_text(encoding="utf-8"))
    assert refs, "the catalogue names no tests"
    missing = [f"{f}::{t}" for f, t in refs if not (REPO / f).is_file() or t not in _tests_in(REPO / f)]
    assert not missing, f"docs/bad-inputs.md names tests that do not exist: {missing}"


def test_every_bad_input_and_fuzz_test_is_in_the_catalogue():
    named = set(_REF.findall(CATALOGUE.read_text(encoding="utf-8")))
    files = sorted(REPO.glob("tests/**/test_bad_*.py")) + sorted(REPO.glob("tests/**/test_fuzz_*.py"))
    assert files
    absent = [f"{f.relative_to(REPO).as_posix()}::{t}" for f in files for t in sorted(_tests_in(f))
              if (f.relative_to(REPO).as_posix(), t) not in named]
    assert not absent, f"add these tests to docs/bad-inputs.md (input, before, now): {absent}"
