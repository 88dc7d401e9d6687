"""Objects named by "module:attribute" strings, imported when first asked for.

    family = resolve("aigc.models.gpt:FAMILY")

How the built-in model families and modalities are listed without importing them (each in a
`Catalog`): importing aigc (for `aigc --help`, say) must not pull in torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def resolve(reference: str) -> Any:
    """The attribute `reference` ("package.module:name") names, its module imported now."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


class Catalog(Generic[T]):
    """Named values of one kind: built-ins listed as "module:attribute" references, imported
    when first asked for, and values registered at run time (a plug-in's, a test's).

        FAMILIES = Catalog("model family", {"gpt": "aigc.models.gpt:FAMILY"}, lambda f: f.name)
        FAMILIES.find("gpt")        # imports aigc.models.gpt now; None for an unknown name
    """

    def __init__(self, kind: str, builtins: dict[str, str], name_of: Callable[[T], str]):
        self.kind = kind
        self._builtins = dict(builtins)
        self._name_of = name_of
        self._registered: dict[str, T] = {}

    def register(self, value: T) -> T:
        """Make `value` available by its name; re-registering the same one is harmless."""
        name = self._name_of(value)
        existing = self._registered.get(name)
        if existing is not None and existing != value:
            raise ValueError(f"a different {self.kind} is already registered as {name!r}")
        self._registered[name] = value
        return value

    def unregister(self, name: str) -> None:
        """Forget a registered value; a built-in comes back when next asked for."""
        self._registered.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The built-ins first, in their listed order, then the registered ones."""
        extra = (name for name in self._registered if name not in self._builtins)
        return (*self._builtins, *extra)

    def find(self, name: str) -> T | None:
        """The value named `name` (a built-in imported now), or None when there is none."""
        if name not in self._registered and name in self._builtins:
            self.register(resolve(self._builtins[name]))
        return self._registered.get(name)
