"""The code version: a hash of aigc's own source files, so uncommitted edits count too."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aigc


def code_version() -> str:
    """sha256 (16 hex digits) over every .py file of the aigc package, paths included."""
    package = Path(aigc.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
