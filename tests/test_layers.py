"""The package's layers (see ``breadcrumbs_lib/__init__.py``): each subpackage imports only the
ones listed before it, so the paper's math never depends on the models, the study or the
notebooks."""

from __future__ import annotations

import ast
from pathlib import Path

#: The layers in order; a module may import its own layer and the ones before it.
LAYERS = ("core", "checkpoints", "modeling", "worlds", "study", "workbook", "cli")
#: Importable from every layer: the package's version and its folders.
SHARED = ("__init__", "paths")
PACKAGE = Path(__file__).resolve().parents[1] / "breadcrumbs_lib"


def _imported_subpackages(file: Path) -> set[str]:
    """The top-level parts of ``breadcrumbs_lib`` that ``file`` imports."""
    here = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]  # the module's package
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.ImportFrom):
            parts = (here[: len(here) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            parts = [part for part in parts if part]
            names = [parts] if len(parts) > 1 else [parts + [alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        for name in names:
            if name[0] == "breadcrumbs_lib":
                found.add(name[1] if len(name) > 1 and (PACKAGE / name[1]).is_dir() or name[1:2] == ["paths"] else "__init__")
    return found


def test_every_module_belongs_to_a_layer():
    tops = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()}
    assert tops == set(LAYERS)


def test_each_layer_imports_only_the_layers_before_it():
    wrong = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE).parts
        if len(parts) == 1:
            continue
        allowed = set(LAYERS[: LAYERS.index(parts[0]) + 1]) | set(SHARED)
        wrong += [f"{file.relative_to(PACKAGE)} imports {name}" for name in sorted(_imported_subpackages(file) - allowed)]
    assert wrong == []
