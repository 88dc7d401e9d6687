"""The text data stages' sections: collect (its sources), clean (its rules), label, split
and version. The image modality's sections (aigc.config.image) build on these."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from aigc.config.base import Section

# --- collect ---------------------------------------------------------------------------


class SourceBase(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    on_error: Literal["fail", "skip"] = "fail"


class BuiltinSource(SourceBase):
    """English technical prose that ships with CPython: pydoc topics and stdlib docstrings."""

    type: Literal["builtin"] = "builtin"
    include: tuple[Literal["topics", "docstrings"], ...] = ("topics", "docstrings")
    exclude_packages: tuple[str, ...] = (
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "dist-packages",
    )


class FolderSource(SourceBase):
    """A directory of .txt, .md, .jsonl and .csv files, read recursively."""

    type: Literal["folder"] = "folder"
    path: str
    extensions: tuple[str, ...] = (".txt", ".md", ".jsonl", ".csv")
    jsonl_field: str = "text"
    csv_column: str = "text"
    missing_ok: bool = True
    # A file with several hard links may be the same file as one outside the folder: refused
    # unless this is set (the folder must then be trusted like the files it can reach).
    allow_hard_links: bool = False


HTTP_SCHEMES = ("http", "https")


def http_origin(url: str) -> str:
    """`scheme://host:port` of an http(s) URL, the port always written; ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    port = parts.port or (443 if scheme == "https" else 80)  # .port: ValueError if not a number
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port}"


def _is_origin(text: str) -> bool:
    try:
        http_origin(text)
    except ValueError:
        return False
    parts = urllib.parse.urlsplit(text)
    return parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)


class HttpSource(SourceBase):
    """A paginated JSON or JSON-lines HTTP API."""

    type: Literal["http"] = "http"
    url: str
    format: Literal["json", "jsonl"] = "json"
    records_field: str = "items"
    text_field: str = "text"
    pagination: Literal["page", "cursor", "none"] = "page"
    page_param: str = "page"
    first_page: int = 1
    cursor_param: str = "cursor"
    next_cursor_field: str = "next_cursor"
    max_pages: int = Field(default=1000, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=1, ge=0)  # for transient failures only; see sources/http.py
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)  # caps Retry-After too
    headers: dict[str, str] = Field(default_factory=dict)  # sent only to the url's origin
    max_response_bytes: int = Field(default=50 * 1024 * 1024, ge=1)  # per page
    # Origins ("https://cdn.example.com:443") a redirect may lead to besides the url's own.
    allow_redirects_to: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _http_only(self) -> HttpSource:
        try:
            http_origin(self.url)
        except ValueError:
            raise ValueError(
                f"source {self.name!r}: url {self.url!r} is not an http:// or https:// URL; "
                "an http source reads only those (put local files in a `folder` source)"
            ) from None
        for origin in self.allow_redirects_to:
            if not _is_origin(origin):
                raise ValueError(
                    f"source {self.name!r}: allow_redirects_to entry {origin!r} is not an "
                    'origin; write scheme, host and port only, e.g. "https://cdn.example.com:443"'
                )
        return self


Source = Annotated[BuiltinSource | FolderSource | HttpSource, Field(discriminator="type")]


class CollectParams(Section):
    sources: tuple[Source, ...] = (BuiltinSource(name="stdlib"),)

    @model_validator(mode="after")
    def _unique_names(self) -> CollectParams:
        return unique_source_names(self)


def unique_source_names(section: Any) -> Any:
    """`section` (whose sources have names) if no two sources share a name."""
    names = [source.name for source in section.sources]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"source names must be unique; repeated: {duplicated}")
    return section


# --- clean -----------------------------------------------------------------------------


class Rule(Section):
    enabled: bool = True


class NormalizeRule(Rule):
    unicode_form: Literal["NFC", "NFKC"] = "NFC"
    fold_whitespace: bool = True


class StripMarkupRule(Rule):
    rest_roles: bool = True
    rest_directives: bool = True
    doctest_prompts: bool = True
    heading_underlines: bool = True


class LengthRule(Rule):
    min_chars: int = Field(default=64, ge=0)
    max_chars: int = Field(default=20_000, ge=1)


class GarbledRule(Rule):
    min_printable_ratio: float = Field(default=0.95, ge=0, le=1)
    min_letter_ratio: float = Field(default=0.4, ge=0, le=1)


class NearDuplicateRule(Rule):
    threshold: float = Field(default=0.85, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1)
    seed: int = 1


class CleanParams(Section):
    normalize: NormalizeRule = NormalizeRule()
    strip_markup: StripMarkupRule = StripMarkupRule()
    flagged: Rule = Rule()
    garbled: GarbledRule = GarbledRule()
    length: LengthRule = LengthRule()
    exact_duplicate: Rule = Rule()
    near_duplicate: NearDuplicateRule = NearDuplicateRule()


# --- label -----------------------------------------------------------------------------


class TopicRules(Section):
    """How one topic is recognised: keywords, regular expressions, module prefixes."""

    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    min_keyword_hits: int = Field(default=2, ge=1)


class LabelParams(Section):
    topics: dict[str, TopicRules] = Field(default_factory=dict)
    fallback_label: str = "other"
    label_model: Literal["majority", "weighted"] = "weighted"
    label_model_iterations: int = Field(default=5, ge=1)
    overrides_file: str = "data/labels/overrides.csv"

    @model_validator(mode="after")
    def _fallback_is_not_a_topic(self) -> LabelParams:
        if self.fallback_label in self.topics:
            raise ValueError(f"fallback_label {self.fallback_label!r} is also a topic name")
        return self


# A split's share of the rows; a section that derives from SplitParams gives other defaults
# with this type, so the bounds are written once.
SplitFraction = Annotated[float, Field(ge=0, lt=0.5)]


class SplitParams(Section):
    validation_fraction: SplitFraction = 0.05
    test_fraction: SplitFraction = 0.05
    salt: str = "aigc-split-v1"


# --- version ---------------------------------------------------------------------------


class VersionParams(Section):
    remote_name: str = "storage"
    remote_url: str = "dvc-remote"
    push: bool = True
