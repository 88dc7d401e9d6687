"""What a source reader yields, and the error it raises.

A reader is a generator of `SourceRecord`s for one configured source. It never drops a
record silently: a document it cannot read as text is still yielded, with a flag saying
why (the clean stage quarantines it); a problem that makes the whole source or file
unusable raises `SourceError`, which names the source, the location and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aigc.errors import UserError


@dataclass(frozen=True)
class SourceRecord:
    text: str
    uri: str
    meta: dict = field(default_factory=dict)
    flags: tuple[str, ...] = ()


class SourceError(UserError):
    """A source (or one file or URL of it) could not be collected."""

    def __init__(self, source: str, location: str, problem: str, fix: str = "") -> None:
        self.source = source
        self.location = location
        self.problem = problem
        message = f"source {source!r}: {location}: {problem}"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)
