"""The README's *Layout* section matches the package tree: every module and subpackage it names
exists, and every module and subpackage of ``breadcrumbs_lib`` is named there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "breadcrumbs_lib"


def _layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n+```\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```-fenced block under '## Layout'"
    return match.group(1)


def _package_block(block: str) -> str:
    """The lines of the block that describe ``breadcrumbs_lib/`` (up to the next top-level entry)."""
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("breadcrumbs_lib/"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    return "\n".join(lines[start:end])


#: A module or a folder named in the block (a path such as ``tests/test_layers.py`` is neither).
MODULE = re.compile(r"(?<![/\w])(\w+\.py)\b")
FOLDER = re.compile(r"(?<![/\w])([a-z_][a-z0-9_]*)/(?!\w+\.py)")


def _tree() -> tuple[set[str], set[str]]:
    """File names of the package's modules (``__init__.py`` aside) and names of its subpackages."""
    modules = {path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    packages = {path.parent.name for path in PACKAGE.rglob("__init__.py") if path.parent != PACKAGE}
    return modules, packages


def test_the_layout_names_every_module_and_subpackage_of_the_package():
    described = _package_block(_layout_block())
    modules, packages = _tree()
    named = set(MODULE.findall(described))
    named_folders = set(FOLDER.findall(described))
    assert not modules - named, f"modules missing from the README's layout: {sorted(modules - named)}"
    assert not packages - named_folders, f"subpackages missing from the README's layout: {sorted(packages - named_folders)}"


def test_every_module_and_folder_the_layout_names_exists():
    block = _layout_block()
    described = _package_block(block)
    modules, _ = _tree()
    top_level = {path.name for path in ROOT.iterdir()}
    named = set(MODULE.findall(described))
    assert not named - modules, f"the README's layout names modules that do not exist: {sorted(named - modules)}"
    folders = set(FOLDER.findall(described)) - {"breadcrumbs_lib"}
    existing = {path.name for path in PACKAGE.rglob("*") if path.is_dir()}
    assert not folders - existing, f"the README's layout names folders that do not exist: {sorted(folders - existing)}"
    for line in block.splitlines():
        entry = line.split()[0] if line and not line.startswith(" ") else None
        if entry and "<" not in entry:
            assert entry.rstrip("/").split("/")[0] in top_level, f"the README's layout names {entry!r}, not in the repository"
