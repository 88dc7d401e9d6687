"""What every params section shares: the `Section` base (unknown keys refused, frozen), the
`ConfigError` a user can fix, and `is_uri` for storage settings. Imported by every other
module of aigc.config, and importing none of them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from aigc.errors import UserError


class ConfigError(UserError, ValueError):
    """A params file or override that cannot be used; the message says which key and why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_uri(location: str) -> bool:
    """Whether a storage setting is a URI (s3://bucket/…), not a folder."""
    return "://" in location
