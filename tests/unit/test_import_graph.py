"""The library's import graph: no circles, and no arrow up from the model families.

Module-level imports count, those under `if TYPE_CHECKING:` too (a type-only circle is still
two modules that cannot be read apart); imports inside functions do not (they are the lazy
imports that keep `aigc --help` light, and run after both modules exist).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LIBRARY = REPO / "src"
# The model families are the bottom layer: a module, its config, its objective. They take
# the numbers they need (an optimizer's lr, betas, weight decay) and import nothing above.
BOTTOM = {"aigc.models": {"aigc.models", "aigc.errors", "aigc.references"}}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(LIBRARY).with_suffix("").parts)
    return name.removesuffix(".__init__")


def module_imports(path: Path, known: set[str]) -> set[str]:
    """The aigc modules `path` imports at module level (TYPE_CHECKING blocks included)."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text(), str(path)).body)
    return {name for name in found if name in known} - {module_name(path)}


def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in (LIBRARY / "aigc").rglob("*.py")}
    return {name: module_imports(path, set(paths)) for name, path in paths.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_in_the_library():
    assert circles(graph()) == []


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_model_families_import_nothing_above_them():
    upward = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        for layer, allowed in BOTTOM.items()
        if name == layer or name.startswith(f"{layer}.")
        for target in sorted(targets)
        if not any(target == ok or target.startswith(f"{ok}.") for ok in allowed)
    ]
    assert upward == []
