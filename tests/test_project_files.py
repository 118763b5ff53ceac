"""environment.yml (conda-forge) and pyproject.toml describe the same environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
#: conda-forge's name for a PyPI package, where the two differ.
CONDA_NAMES = {"pytorch": "torch"}
#: conda-only entries that are tooling, not packages of the environment.
CONDA_TOOLING = {"python", "pip"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> tuple[dict[str, SpecifierSet], SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return _by_name(lines), SpecifierSet(project["requires-python"])


def _by_name(lines: list[str]) -> dict[str, SpecifierSet]:
    """PEP 508 requirement lines as {normalized name: version specifier}."""
    return {_normalize(requirement.name): requirement.specifier for requirement in map(Requirement, lines)}


def _conda_requirement(entry: str) -> tuple[str, SpecifierSet]:
    """``name=1.2`` (conda's exact pin) or ``name>=1.2`` as a (PyPI name, specifier) pair."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry.strip())
    assert match, f"environment.yml: cannot read the dependency {entry!r}"
    name, spec = match.groups()
    if re.fullmatch(r"=[^=].*", spec):
        spec = "=" + spec
    return CONDA_NAMES.get(_normalize(name), _normalize(name)), SpecifierSet(spec)


def _environment_requirements() -> tuple[dict[str, SpecifierSet], str]:
    entries = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    by_name: dict[str, SpecifierSet] = {}
    python_version = ""
    for entry in entries:
        if isinstance(entry, dict):  # the pip: section
            by_name.update(_by_name([line for line in entry["pip"] if not line.startswith("-e")]))
            continue
        name, spec = _conda_requirement(entry)
        if name == "python":
            python_version = str(spec).removeprefix("==")
        elif name not in CONDA_TOOLING:
            by_name[name] = spec
    return by_name, python_version


def test_environment_yml_and_pyproject_list_the_same_packages_and_versions():
    pyproject, requires_python = _pyproject_requirements()
    environment, python_version = _environment_requirements()
    assert sorted(set(pyproject) ^ set(environment)) == [], "packages listed in only one of the two files"
    differing = {name: (str(pyproject[name]), str(environment[name]))
                 for name in pyproject if pyproject[name] != environment[name]}
    assert differing == {}, "version specifiers differ (pyproject.toml, environment.yml)"
    assert python_version in requires_python, f"environment.yml's python={python_version} is outside {requires_python}"


def test_torch_and_torchvision_are_pinned_as_the_pair_that_installs_here():
    pyproject, _ = _pyproject_requirements()
    assert str(pyproject["torch"]) == "==2.14.1" and str(pyproject["torchvision"]) == "==0.29.1"
