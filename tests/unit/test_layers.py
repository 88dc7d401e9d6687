"""The import graph runs one way: cli → flows → tasks → src/aigc (STYLE.md, "The layers")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = {
    "src/aigc": {"prefect", "flows", "tasks", "cli"},
    "tasks": {"flows", "cli"},
    "flows": {"cli"},
}
# Inside the library, one home each may import these (a module, or a package ending in "/").
ONLY_IN = {
    "ray": {"ray/"},
    "mlflow": {"tracking/", "registry/registry.py", "serving/pyfunc.py"},
}


def _inside(relative: Path, home: str) -> bool:
    """A home is a module ("registry/registry.py") or a package ("ray/", "tracking/")."""
    return str(relative) == home or (home.endswith("/") and str(relative).startswith(home))


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
        if package in imported_roots(path)
        and not any(_inside(path.relative_to(library), home) for home in homes)
    ]
    assert stray == []


LIGHT_COMMAND = """
import sys
sys.argv = ["aigc", *sys.argv[1:]]
import cli.main
try:
    cli.main.main()
except SystemExit:
    pass
print("heavy:", sorted(name for name in ("torch", "ray") if name in sys.modules))
"""


def test_help_and_registry_show_import_neither_torch_nor_ray(tmp_path):
    (tmp_path / "params.yaml").write_text("")  # a project: `registry show` reads its store
    for args in (["--help"], ["registry", "show"]):
        result = subprocess.run(
            [sys.executable, "-c", LIGHT_COMMAND, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert result.stdout.strip().splitlines()[-1] == "heavy: []", result.stdout + result.stderr
