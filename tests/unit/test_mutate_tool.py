"""`make mutate` itself (tests/tools/mutate.py): what it measures, when it fails, and the
rules by which it picks the tests a mutant runs (docs/testing.md, "Mutation testing")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools import mutate
from tests.tools.mutants import Mutant

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted(
    p.stem for p in (ROOT / "app" / "cds" / "rules").glob("*.py") if p.stem != "__init__"
)


@pytest.mark.parametrize("rule", RULES)
def test_every_cds_rule_module_is_a_target_held_to_90_percent(rule: str) -> None:
    """A new rule is mutated from the day it lands (the list is read from the directory)."""
    [target] = [t for t in mutate.TARGETS if t.module == f"app.cds.rules.{rule}"]
    assert target.threshold is not None and target.threshold >= 0.90
    assert target.tests


@pytest.mark.parametrize("rule", RULES)
def test_every_cds_rule_module_has_its_row_in_the_mutation_table(rule: str) -> None:
    text = (ROOT / "docs" / "testing.md").read_text()
    assert f"| `app/cds/rules/{rule}.py` |" in text


def test_the_safety_modules_are_targets_with_the_issues_thresholds() -> None:
    need = {t.module: t.threshold for t in mutate.TARGETS}
    assert need["app.domain.lifecycle"] == need["app.domain.access"] == 0.95
    assert need["app.services.idempotency"] == 0.90
    assert "app.services.orders" in need


def test_every_targets_tests_exist() -> None:
    for target in mutate.TARGETS:
        assert target.path.exists(), target
        for test in target.tests:
            assert (ROOT / test.split("::")[0]).exists(), (target.name, test)


def _result(threshold: float | None, total: int, killed: int) -> mutate.Result:
    target = mutate.Target(
        "t", "app.domain.lifecycle", ("tests/unit/test_lifecycle.py",), threshold
    )
    result = mutate.Result(target, total=total, killed=killed)
    result.survivors = [Mutant(i, 1, "x") for i in range(total - killed)]
    return result


@pytest.mark.parametrize(
    ("threshold", "killed", "status"),
    [(0.90, 8, 1), (0.90, 9, 0), (0.90, 10, 0), (None, 0, 0)],
    ids=["below", "exactly at", "above", "reported only"],
)
def test_make_mutate_fails_when_a_module_is_below_its_threshold(
    capsys: pytest.CaptureFixture[str], threshold: float | None, killed: int, status: int
) -> None:
    assert mutate._report([_result(threshold, 10, killed)], 60.0) == status
    out = capsys.readouterr().out
    assert f"| 10 | {killed} | {killed / 10:.1%}" in out
    assert ("**below**" in out) is (status == 1)


SOURCE = """
TABLE = {"a": 1}


def top(x):
    def inner(y):
        return y + 1
    return inner(x) > 2


class Service:
    LIMIT = 3

    def method(self):
        return self.LIMIT == 3
"""


@pytest.mark.parametrize(
    ("line", "function"),
    [(2, None), (6, "top"), (7, "top"), (8, "top"), (12, None), (15, "Service.method")],
    ids=["table", "nested def", "nested body", "body", "class attribute", "method"],
)
def test_a_mutant_is_placed_in_the_outermost_function_whose_body_holds_it(
    line: int, function: str | None
) -> None:
    assert mutate.function_of(SOURCE, line) == function


COVERAGE = {
    "nodeids": ["t::a", "t::b", "t::c", "t::d"],
    "called": {"t::a": ["top"], "t::b": ["other"], "t::c": ["top.<locals>.inner"]},
    "shared": ["loaded_at_import"],
}


@pytest.mark.parametrize(
    ("function", "tests"),
    [
        (None, None),  # module level: runs at import, for every test
        ("loaded_at_import", None),  # called outside a test body: its result is shared
        ("top", ["t::a", "t::c"]),  # callers, and tests reaching code nested in it
        ("never_called", []),  # no test reaches it: it survives without a run
    ],
)
def test_a_mutant_runs_every_test_that_can_reach_it(
    function: str | None, tests: list[str] | None
) -> None:
    assert mutate.tests_for(COVERAGE, function) == tests
    assert mutate.tests_for(None, function) is None  # --all-tests
