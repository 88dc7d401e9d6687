"""The import graph runs one way: cli → flows → tasks → src/aigc (STYLE.md, "The layers")."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = {
    "src/aigc": {"prefect", "flows", "tasks", "cli"},
    "tasks": {"flows", "cli"},
    "flows": {"cli"},
}
# Inside the library, one module each may import these (nothing else does).
ONLY_IN = {
    "ray": {"train/ray_runner.py"},
    "mlflow": {"tracking.py", "registry/registry.py", "serving/pyfunc.py"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_layers_import_only_downwards():
    crossing = [
        f"{path.relative_to(REPO)} imports {sorted(imported_roots(path) & banned)}"
        for layer, banned in FORBIDDEN.items()
        for path in (REPO / layer).rglob("*.py")
        if imported_roots(path) & banned
    ]
    assert crossing == []


def test_ray_and_mlflow_each_have_one_home_in_the_library():
    library = REPO / "src" / "aigc"
    stray = [
        f"{path.relative_to(library)} imports {package}"
        for path in library.rglob("*.py")
        for package, homes in ONLY_IN.items()
        if package in imported_roots(path) and str(path.relative_to(library)) not in homes
    ]
    assert stray == []
