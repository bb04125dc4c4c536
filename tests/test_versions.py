"""The version policy: every floor pyproject.toml declares is a version CI installs and tests (constraints/floor.txt),
and every dependency has an upper bound at its next major release where a major release can break us."""

import re
from pathlib import Path

import tomllib
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> dict[str, str]:
    """Every dependency of the core install and of every extra but dev -> its requirement string."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [req for name, reqs in project["optional-dependencies"].items() if name != "dev" for req in reqs]
    found = {}
    for requirement in [*project["dependencies"], *extras]:
        found[_name(requirement)] = requirement
    return found


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints" / "floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_every_declared_floor_is_pinned_in_the_floor_constraints():
    declared, pins = _declared(), _pins()
    assert set(pins) == set(declared), sorted(set(pins) ^ set(declared))
    for name, requirement in declared.items():
        floor = re.search(r">=\s*([0-9][^,;\s]*)", requirement)
        assert floor, f"{requirement}: every dependency declares a tested floor"
        if name == "torch":  # the one exception, documented in floor.txt: only the 2.13.0 CPU wheel is tested
            continue
        assert Version(pins[name]) == Version(floor.group(1)), (
            f"{name}: floor.txt pins {pins[name]}, pyproject declares {requirement}"
        )


def test_the_libraries_whose_majors_break_us_are_capped():
    declared = _declared()
    for name in ("transformers", "sentence-transformers", "mteb", "huggingface-hub", "accelerate"):
        assert re.search(r"<\s*\d", declared[name]), f"{declared[name]}: cap at the next major"
