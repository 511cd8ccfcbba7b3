"""The mutation catalogue (tools/mutants.py) follows the code: every mutant's
original text is still found exactly once in its file, its mutated text differs,
the tests named for it exist, and docs/testing.md reports every mutant by id.
(Running the mutants is `python tools/mutants.py`, minutes, not part of the suite.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[2]


def _catalogue() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "tools" / "mutants.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutants", module)
    spec.loader.exec_module(module)
    return module


MUTANTS = _catalogue().MUTANTS


def test_mutant_ids_are_unique() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_each_mutant_still_applies_to_the_code(mutant: object) -> None:
    text = (ROOT / mutant.path).read_text()  # type: ignore[attr-defined]
    assert text.count(mutant.before) == 1, mutant  # type: ignore[attr-defined]
    assert mutant.after != mutant.before  # type: ignore[attr-defined]
    for test in mutant.tests:  # type: ignore[attr-defined]
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), test
        if name:
            assert f"def {name}(" in (ROOT / path).read_text(), test


def test_docs_report_every_mutant() -> None:
    report = (ROOT / "docs" / "testing.md").read_text()
    missing = [m.id for m in MUTANTS if f"`{m.id}`" not in report]
    assert missing == []
