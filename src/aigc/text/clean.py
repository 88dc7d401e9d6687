"""The `clean` stage core: raw records in, clean records plus quarantine out, nothing lost.

    result = clean_records(raw, params.clean)   # no file I/O; the task and CLI edges save it
    result.records      # RAW_COLUMNS, cleaned text, collection ids (unique), unique uris
    result.quarantine   # QUARANTINE_COLUMNS: the original raw record + rule, detail, duplicate_of
    result.report       # JSON-serialisable counts, length stats and the rules' params

Every raw record ends up in exactly one of the two frames (`check_accounting` proves it before
returning). Rows are processed and returned in one deterministic order, (collected_at, source,
uri), so the first of a group of duplicates is the one kept and reruns are byte-identical.
Regular expressions run with Python's `re` (text is handled as object dtype) so `\\w` means
Unicode word characters whatever string dtype the frame arrived with.
Each rule can be switched off with `enabled: false`; they run in this order:

1. flagged          quarantine records whose `flags` hold any of HARD_FLAGS (binary,
                    invalid_utf8, malformed_json, missing_field, not_text); the detail
                    names the flags. Invalid UTF-8 is quarantined however little of it
                    there is: its U+FFFD would otherwise pass `garbled` and be trained on.
2. normalize        Unicode NFC (or NFKC); \\r\\n and \\r become \\n; trailing spaces go; runs
                    of blank lines fold into one; with fold_whitespace, runs of spaces and tabs
                    after a line's first non-blank character become one space (leading
                    indentation is kept: it carries code structure); the text is stripped.
3. strip_markup     rewrite the reST of the default corpus (CPython docstrings and pydoc
                    topics) to plain text, in four groups switched by StripMarkupRule fields:
   rest_roles           inline markup keeps its text: roles (:func:`open` -> open,
                        :class:`~a.b.C` -> C, :meth:`!x` -> x, :ref:`title <target>` -> title),
                        hyperlink references (`title <url>`_ -> title), inline literals
                        (``x`` -> x) and default-role interpreted text (`x` -> x).
   rest_directives      admonition markers (.. note::, .. warning::, .. seealso:: ...) are
                        removed keeping any text after them on the line; every other directive
                        line (.. versionadded:: 3.2, .. versionchanged::, .. deprecated::,
                        .. code-block:: python ...) is removed whole. Indented content stays.
   doctest_prompts      a `>>> ` line and the `... ` lines that continue it lose their prompt
                        and keep their code and indentation. A lone `...` that does not follow
                        a prompt is Python's Ellipsis (abstract method bodies) and stays.
   heading_underlines   unindented lines of >= 3 of one of = - ~ ^ * + # _ are removed
                        (heading over- and underlines, numpydoc section rules); `...` is not
                        in the set for the same Ellipsis reason.
4. garbled          quarantine texts whose printable ratio (control characters other than \\n
                    and \\t, U+FFFD, surrogates, private-use characters and noncharacters are
                    not printable) or letter ratio (letters / characters) is below its minimum.
5. length           quarantine texts shorter than min_chars or longer than max_chars.
6. exact_duplicate  identical cleaned texts: keep the first, quarantine the rest.
   duplicate_id     always on: a record whose collection id is already kept (raw may hold one
                    id under two uris) is quarantined, so the clean ids are unique.
7. near_duplicate   MinHash over lower-cased word shingles, LSH banding for candidates, then
                    the full-signature estimate: a record whose estimated Jaccard similarity
                    with an already kept record reaches `threshold` is quarantined. Signatures
                    are computed with numpy for all records at once: 3-4x faster than datasketch's
                    MinHash.bulk + MinHashLSH here (bench/clean_throughput.py measures both).

Quarantined records keep their original raw text; clean records keep their collection id.
The near_duplicate rule's MinHash signatures and LSH banding live in aigc.text.minhash.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aigc.config import CleanParams, NearDuplicateRule, NormalizeRule, StripMarkupRule
from aigc.data.records import (
    HARD_FLAGS,
    QUARANTINE_COLUMNS,
    RAW_COLUMNS,
    RAW_SCHEMA,
    check_accounting,
    in_collection_order,
)
from aigc.text.clean_report import build_report, write_length_histogram
from aigc.text.minhash import (
    LSH_FALSE_NEGATIVE_WEIGHT,
    minhash_signatures,
    near_duplicate_matches,
)

__all__ = [
    "CleanResult",
    "LSH_FALSE_NEGATIVE_WEIGHT",  # minhash's; re-exported with its functions
    "clean_records",
    "minhash_signatures",
    "near_duplicate_matches",
    "normalize",
    "strip_markup",
    "write_length_histogram",  # lives in clean_report; re-exported for the stage edges
]

QUARANTINE_RULES = (
    "flagged",
    "garbled",
    "length",
    "exact_duplicate",
    "duplicate_id",
    "near_duplicate",
)

_SPACE = r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
_TRAILING_SPACE = re.compile(_SPACE + r"+$", re.MULTILINE)
_INNER_SPACE_RUN = re.compile(
    r"(?<=\S)(?<!>>>)(?<!\.\.\.)(?:" + _SPACE + r"{2,}|(?! )" + _SPACE + ")"
)
_BLANK_LINES = re.compile(r"\n{3,}")

_UNDERLINE = r"^(?:={3,}|-{3,}|~{3,}|\^{3,}|\*{3,}|\+{3,}|#{3,}|_{3,})"
_ROLE = r":[\w.+-]+(?::[\w.+-]+)*:"
_MARKUP_RULES: dict[str, list[tuple[re.Pattern, str | Callable[[re.Match], str]]]] = {
    "rest_roles": [
        (re.compile(_ROLE + r"`([^`<>]*?)\s*<[^`<>]*>`"), r"\1"),  # :ref:`title <target>`
        (re.compile(_ROLE + r"`~(?:[^`]*\.)?([^`.]+)`"), r"\1"),  # :class:`~a.b.C` -> C
        (re.compile(_ROLE + r"`!?([^`]+)`"), r"\1"),
        (re.compile(r"`([^`<>]+?)\s*<[^`<>]+>`__?"), r"\1"),  # `title <url>`_
        (re.compile(r"``([^`]+)``"), r"\1"),
        (re.compile(r"(?<![`\w])`([^`\n]+)`(?![`\w])"), r"\1"),
    ],
    "rest_directives": [
        (
            re.compile(
                r"^([ \t]*)\.\. (?:admonition|attention|caution|danger|error|hint|important"
                r"|note|seealso|tip|todo|warning)::[ \t]*",
                re.MULTILINE,
            ),
            r"\1",
        ),
        (re.compile(r"^[ \t]*\.\. [\w:-]+::.*(?:\n|$)", re.MULTILINE), ""),
    ],
    "doctest_prompts": [
        (
            re.compile(r"^[ \t]*>>>(?: .*)?$(?:\n[ \t]*\.\.\.(?: .*)?$)*", re.MULTILINE),
            lambda match: _TRAILING_SPACE.sub("", _DOCTEST_PROMPT.sub(r"\1", match.group())),
        ),
    ],
    "heading_underlines": [
        (re.compile(_UNDERLINE + r"[ \t]*(?:\n|$)", re.MULTILINE), ""),
    ],
}
_DOCTEST_PROMPT = re.compile(r"^([ \t]*)(?:>>>|\.\.\.)(?: |$)", re.MULTILINE)

# Characters that are not printable text: C0/C1 controls except \t and \n, U+FFFD (what a
# decoder puts where bytes were not UTF-8), surrogates, private use, the two noncharacters.
_NOT_PRINTABLE = r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\uf8ff\ufffd-\uffff]"
_NOT_LETTERS = r"[\W\d_]+"


@dataclass(frozen=True, eq=False)
class CleanResult:
    """What clean_records returns; `timings` is for benchmarks and logs, not for the report."""

    records: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict
    timings: dict[str, float] = field(default_factory=dict, repr=False)  # seconds per rule


def clean_records(raw: pd.DataFrame, params: CleanParams) -> CleanResult:
    """Apply the clean rules to `raw`; every raw record is returned clean or quarantined."""
    fix = "Rerun collect or fix the file the input was read from."
    frame = in_collection_order(raw, RAW_COLUMNS, "clean", fix, RAW_SCHEMA)
    run = _Run(frame)

    if params.flagged.enabled:
        with run.timed("flagged"):
            _flagged(run)
    if params.normalize.enabled:
        with run.timed("normalize"):
            run.text = normalize(run.text, params.normalize)
    if params.strip_markup.enabled:
        with run.timed("strip_markup"):
            run.text = strip_markup(run.text, params.strip_markup)
    if params.garbled.enabled:
        with run.timed("garbled"):
            _garbled(run, params.garbled.min_printable_ratio, params.garbled.min_letter_ratio)
    if params.length.enabled:
        with run.timed("length"):
            lengths = run.text.str.len()
            low, high = params.length.min_chars, params.length.max_chars
            run.quarantine(lengths < low, "length", "too_short: " + _str(lengths) + f" < {low}")
            run.quarantine(lengths > high, "length", "too_long: " + _str(lengths) + f" > {high}")
    if params.exact_duplicate.enabled:
        with run.timed("exact_duplicate"):
            _duplicates(run, run.text, "exact_duplicate", "identical cleaned text")
    with run.timed("duplicate_id"):
        ids = run.column("id")
        _duplicates(run, ids, "duplicate_id", "same collection id " + ids.astype(object))
    if params.near_duplicate.enabled:
        with run.timed("near_duplicate"):
            _near_duplicates(run, params.near_duplicate)

    records = frame.loc[run.text.index].copy()
    records["text"] = pd.Series(run.text, dtype=frame["text"].dtype)
    records = records.reset_index(drop=True)
    quarantined = np.flatnonzero(run.rule != "")
    quarantine = frame.iloc[quarantined].reset_index(drop=True)  # the original raw text
    for name, values in (
        ("rule", run.rule),
        ("detail", run.detail),
        ("duplicate_of", run.duplicate_of),
    ):
        quarantine[name] = pd.Series(values[quarantined], dtype=frame["uri"].dtype)
    quarantine = quarantine[QUARANTINE_COLUMNS]
    check_accounting(raw, records, quarantine)
    report = build_report(raw, records, quarantine, params, QUARANTINE_RULES, run.changed)
    return CleanResult(records, quarantine, report, run.timings)


def normalize(text: pd.Series, rule: NormalizeRule) -> pd.Series:
    """The normalize transform on a column of texts (see the module docstring)."""
    text = text.str.normalize(rule.unicode_form)
    text = text.str.replace("\r\n", "\n", regex=False).str.replace("\r", "\n", regex=False)
    text = text.str.replace(_TRAILING_SPACE, "", regex=True)
    if rule.fold_whitespace:
        text = text.str.replace(_INNER_SPACE_RUN, " ", regex=True)
    return text.str.replace(_BLANK_LINES, "\n\n", regex=True).str.strip()


def strip_markup(text: pd.Series, rule: StripMarkupRule) -> pd.Series:
    """The strip_markup transform on a column of texts (see the module docstring)."""
    for group, replacements in _MARKUP_RULES.items():
        if getattr(rule, group):
            for pattern, replacement in replacements:
                text = text.str.replace(pattern, replacement, regex=True)
    return text.str.replace(_BLANK_LINES, "\n\n", regex=True).str.strip()


class _Run:
    """The mutable state of one clean_records call: live texts and per-row verdicts."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.text = frame["text"].astype(object)  # the live rows only, indexed by position
        self.rule = np.full(len(frame), "", dtype=object)
        self.detail = np.full(len(frame), "", dtype=object)
        self.duplicate_of = np.full(len(frame), "", dtype=object)
        self.timings: dict[str, float] = {}
        self.changed: dict[str, int] = {}

    def column(self, name: str) -> pd.Series:
        return self.frame[name].astype(object).loc[self.text.index]

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time one rule; for a transform, also count the texts it changed."""
        before, start = self.text, time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        if name in ("normalize", "strip_markup"):
            self.changed[name] = int((self.text != before.loc[self.text.index]).sum())

    def quarantine(
        self,
        mask: pd.Series,
        rule: str,
        detail: pd.Series | str,
        duplicate_of: pd.Series | str = "",
    ) -> None:
        rows = mask.index[mask.to_numpy(dtype=bool)].intersection(self.text.index)
        for values, given in ((self.detail, detail), (self.duplicate_of, duplicate_of)):
            values[rows] = given.loc[rows].to_numpy() if isinstance(given, pd.Series) else given
        self.rule[rows] = rule
        self.text = self.text.drop(rows)


def _flagged(run: _Run) -> None:
    flags = "," + run.column("flags").str.replace(" ", "", regex=False) + ","
    hard = pd.Series("", index=flags.index, dtype=object)
    for name in sorted(HARD_FLAGS):
        hard += np.where(flags.str.contains(f",{name},", regex=False), name + ",", "")
    run.quarantine(hard != "", "flagged", hard.str.rstrip(","))


def _str(values: pd.Series) -> pd.Series:
    return values.astype(str).astype(object)


def _garbled(run: _Run, min_printable_ratio: float, min_letter_ratio: float) -> None:
    lengths = run.text.str.len().clip(lower=1)  # an empty text is the length rule's business
    printable = 1 - run.text.str.count(_NOT_PRINTABLE) / lengths
    letters = run.text.str.replace(_NOT_LETTERS, "", regex=True).str.len() / lengths
    printable_detail = "printable_ratio: " + _str(printable.round(3)) + f" < {min_printable_ratio}"
    run.quarantine(printable < min_printable_ratio, "garbled", printable_detail)
    letters = letters.loc[run.text.index]
    letter_detail = "letter_ratio: " + _str(letters.round(3)) + f" < {min_letter_ratio}"
    has_text = run.text.str.len() > 0
    run.quarantine((letters < min_letter_ratio) & has_text, "garbled", letter_detail)


def _duplicates(run: _Run, keys: pd.Series, rule: str, detail: pd.Series | str) -> None:
    """Quarantine every row whose key an earlier live row has, pointing at that row's uri."""
    first = pd.Series(keys.index, index=keys.index).groupby(keys.to_numpy(), sort=False)
    first_position = first.transform("first")
    kept_uri = pd.Series(run.frame["uri"].to_numpy(object)[first_position], index=keys.index)
    run.quarantine(first_position != keys.index, rule, detail, kept_uri)


def _near_duplicates(run: _Run, rule: NearDuplicateRule) -> None:
    signatures = minhash_signatures(run.text, rule.num_perm, rule.shingle_words, rule.seed)
    matches = near_duplicate_matches(signatures, rule.threshold)
    rows, kept_rows = list(matches), [kept for kept, _ in matches.values()]
    labels = run.text.index  # matches count live rows; labels are positions in run.frame
    mask = pd.Series(False, index=labels)
    mask.iloc[rows] = True
    detail = pd.Series("", index=labels, dtype=object)
    detail.iloc[rows] = [
        f"estimated_jaccard: {similarity:.3f} >= {rule.threshold}"
        for _, similarity in matches.values()
    ]
    kept_uri = pd.Series("", index=labels, dtype=object)
    kept_uri.iloc[rows] = run.frame["uri"].to_numpy(object)[labels[kept_rows]]
    run.quarantine(mask, "near_duplicate", detail, kept_uri)
