"""aigc.references: a Catalog imports its built-ins when first asked for, holds registered
values beside them, and refuses a second, different value under a taken name."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from aigc.references import Catalog, resolve


@dataclass(frozen=True)
class Thing:
    name: str
    size: int = 0


def test_a_built_in_is_imported_only_when_asked_for():
    sys.modules.pop("json.tool", None)
    catalog = Catalog("thing", {"main": "json.tool:main"}, lambda value: value.__name__)
    assert catalog.names() == ("main",) and "json.tool" not in sys.modules
    assert catalog.find("main") is resolve("json.tool:main")
    assert catalog.find("missing") is None


def test_registered_values_come_after_the_built_ins_and_a_clash_is_refused():
    catalog = Catalog("thing", {"tool": "json.tool:main"}, lambda value: value.name)
    first = catalog.register(Thing("b", 1))
    catalog.register(Thing("a", 2))
    assert catalog.names() == ("tool", "b", "a")
    assert catalog.register(Thing("b", 1)) == first  # the same again: harmless
    with pytest.raises(ValueError, match="a different thing is already registered as 'b'"):
        catalog.register(Thing("b", 3))
    catalog.unregister("b")
    assert catalog.find("b") is None and catalog.names() == ("tool", "a")
