"""Objects named by "module:attribute" strings, imported when first asked for.

    family = resolve("aigc.models.gpt:FAMILY")

How the built-in model families and modalities are listed without importing them: importing
aigc (for `aigc --help`, say) must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolve(reference: str) -> Any:
    """The attribute `reference` ("package.module:name") names, its module imported now."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)
