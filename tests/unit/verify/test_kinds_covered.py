"""Every problem kind of docs/FORMAT.md section 9 comes out of a real run.

Not a grep of test sources: the kinds are read from the documentation's
table, and each must be produced by running something: a test vector (the
real CLI on the case folder, with the case's own arguments) or a scenario of
``tests/adversarial/scenarios.py`` (moto's S3 server, or two ``--state``
runs). Each run must also give exactly the verdict stated by hand for it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.adversarial import kit
from tests.adversarial.scenarios import SCENARIOS as ADVERSARIAL_SCENARIOS
from tests.adversarial.scenarios import found_problems
from tests.tsa import timestamp_scenarios
from tests.vectors.generate import CASES
from tests.vectors.generate import HERE as VECTORS

FORMAT = Path(__file__).parents[3] / "docs" / "FORMAT.md"
SCENARIOS = {**ADVERSARIAL_SCENARIOS, **timestamp_scenarios()}  # a real local TSA (openssl)


def documented_kinds() -> list[str]:
    """The kinds in the table of section 9 ("Problem kinds") of FORMAT.md."""
    text = FORMAT.read_text()
    section = re.search(r"^## 9\. Problem kinds\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "FORMAT.md has no section 9"
    kinds = re.findall(r"^\| `([a-z_]+)` \|", section.group(1), re.M)
    assert kinds, "section 9 has no table of kinds"
    return kinds


def _vector_kinds() -> dict[str, str]:
    """kind -> a vector case whose stated verdict lists it."""
    owner: dict[str, str] = {}
    for name, case in sorted(CASES.items()):
        for kind, _ in case.problems:
            owner.setdefault(kind, name)
    return owner


def _scenario_kinds() -> dict[str, str]:
    owner: dict[str, str] = {}
    for name, scenario in sorted(SCENARIOS.items()):
        for kind, _ in scenario.problems:
            owner.setdefault(kind, name)
    return owner


def test_every_documented_kind_has_a_case_or_scenario() -> None:
    stated = set(_vector_kinds()) | set(_scenario_kinds())
    assert [kind for kind in documented_kinds() if kind not in stated] == []


@pytest.mark.parametrize("kind", sorted(_vector_kinds()))
def test_vector_produces_its_kind(kind: str) -> None:
    name = _vector_kinds()[kind]
    folder = VECTORS / "cases" / name
    expected = json.loads((folder / "expected.json").read_text())
    verdict = kit.verify(*expected["verify"], "--json", cwd=folder)
    assert [list(p) for p in verdict.problems] == expected["problems"]
    assert kind in {k for k, _ in verdict.problems}


@pytest.mark.parametrize(
    "name", sorted({n for k, n in _scenario_kinds().items() if k not in _vector_kinds()})
)
def test_scenario_produces_its_kinds(name: str, moto_endpoint: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    verdict = scenario.run(moto_endpoint, tmp_path)
    assert verdict.code == 1
    assert found_problems(verdict) == sorted(scenario.problems)
