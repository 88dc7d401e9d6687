"""The label stage's voters: labeling functions (LFs) and the vote matrix they fill.

`aigc.text.label.label_records` builds the LFs with `build_labeling_functions`, gives them
`labeling_frame(clean)` and turns `vote_matrix`'s votes into labels; nothing here reads files.

Labeling functions (LFs) are built from `params.label.topics`, three per topic at most:
    keyword:<topic>  votes when the text holds at least `min_keyword_hits` whole-word,
                     case-insensitive occurrences of the topic's keywords (all counted together;
                     a phrase such as "event loop" matches across any whitespace)
    regex:<topic>    votes when any of the topic's patterns matches (case-sensitive; write
                     `(?i)` at the start of a pattern to ignore case)
    module:<topic>   votes when meta's "module" is one of the topic's modules or inside one
                     ("email" matches "email" and "email.parser", not "emailx")
Patterns run on Arrow's RE2 engine when their syntax allows (about 20x faster than Python's
`re`), else on `re`; RE2's `\\w` and `\\b` are ASCII-only.

Adding a labeling function in Python, when params cannot express the rule: define it in
aigc/text/labeling_functions.py (the label stage imports it) with the decorator:

    @labeling_function("concurrency")
    def mentions_lock_objects(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].str.contains(r"\\b(?:RLock|Semaphore|Condition)\\b")

It receives the whole frame (the clean columns plus `module`, meta's "module" or "") and
returns one bool per record, True meaning "this record is about the topic". Work on whole
columns; a Python loop over rows is what makes labeling slow. It is named `python:<function
name>` and votes only when its topic is one of params' topics; otherwise the report lists it
under `skipped_functions`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from aigc.config import ConfigError, LabelParams

ABSTAIN = -1
_ARROW_TEXT = pd.ArrowDtype(pa.large_string())


@dataclass(frozen=True)
class LabelingFunction:
    """One voter: `vote(frame)` gives a bool per record, True meaning "this is `topic`"."""

    name: str
    topic: str
    kind: str  # keyword | regex | module | python
    vote: Callable[[pd.DataFrame], Any]


# --- the registry of Python labeling functions ----------------------------------------------

VoteFunction = TypeVar("VoteFunction", bound=Callable[[pd.DataFrame], Any])


class LabelingFunctionRegistry:
    """Python LFs by name; `REGISTRY` is the one labeling uses unless told otherwise."""

    def __init__(self) -> None:
        self._functions: dict[str, LabelingFunction] = {}

    def labeling_function(
        self, topic: str, *, name: str | None = None
    ) -> Callable[[VoteFunction], VoteFunction]:
        def register(function: VoteFunction) -> VoteFunction:
            full_name = f"python:{name or function.__name__}"
            known = self._functions.get(full_name)
            if known is not None and _origin(known.vote) != _origin(function):
                raise ValueError(
                    f"labeling function {full_name!r} is already registered by "
                    f"{_origin(known.vote)}; give the new one another name (name=...)"
                )
            self._functions[full_name] = LabelingFunction(full_name, topic, "python", function)
            return function

        return register

    def functions(self) -> tuple[LabelingFunction, ...]:
        return tuple(self._functions.values())


def _origin(function: Callable) -> str:
    return f"{function.__module__}.{function.__qualname__}"


REGISTRY = LabelingFunctionRegistry()
labeling_function = REGISTRY.labeling_function


# --- labeling functions from params ---------------------------------------------------------


def keyword_pattern(keywords: Sequence[str]) -> str:
    """One case-insensitive regex matching any keyword as a whole word (longest first)."""
    alternatives = []
    for keyword in sorted({k.strip() for k in keywords}, key=lambda text: (-len(text), text)):
        body = r"\s+".join(re.escape(word) for word in keyword.split())
        start = r"\b" if re.match(r"\w", keyword[0]) else ""
        end = r"\b" if re.match(r"\w", keyword[-1]) else ""
        alternatives.append(start + body + end)
    return "(?i)(?:" + "|".join(alternatives) + ")"


def match_counts(text: pd.Series, pattern: str) -> np.ndarray:
    """Occurrences of `pattern` in every text: one pass over the column (RE2, else `re`)."""
    try:
        counts = text.astype(_ARROW_TEXT).str.count(pattern)
    except pa.ArrowInvalid:  # lookarounds, backreferences: outside RE2's syntax
        counts = text.astype(object).str.count(pattern)
    return counts.fillna(0).to_numpy(dtype=np.int64)


def build_labeling_functions(
    params: LabelParams, registry: LabelingFunctionRegistry = REGISTRY
) -> tuple[list[LabelingFunction], list[str]]:
    """The LFs in vote-matrix order (topic order, then registration), and the skipped names."""
    functions: list[LabelingFunction] = []
    for topic, rules in params.topics.items():
        where = f"label.topics.{topic}"
        if any(not keyword.strip() for keyword in rules.keywords):
            raise ConfigError(f"{where}.keywords holds an empty keyword; remove it")
        for index, pattern in enumerate(rules.patterns):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(
                    f"{where}.patterns[{index}] {pattern!r} is not a valid regular expression "
                    f"({error}); fix it in the params file"
                ) from None
        if rules.keywords:
            functions.append(_keyword_function(topic, rules.keywords, rules.min_keyword_hits))
        if rules.patterns:
            functions.append(_regex_function(topic, rules.patterns))
        if rules.modules:
            functions.append(_module_function(topic, rules.modules))
    skipped = []
    for function in registry.functions():
        if function.topic in params.topics:
            functions.append(function)
        else:
            skipped.append(function.name)
    return functions, skipped


def _keyword_function(topic: str, keywords: Sequence[str], min_hits: int) -> LabelingFunction:
    pattern = keyword_pattern(keywords)

    def vote(frame: pd.DataFrame) -> np.ndarray:
        return match_counts(frame["text"], pattern) >= min_hits

    return LabelingFunction(f"keyword:{topic}", topic, "keyword", vote)


def _regex_function(topic: str, patterns: Sequence[str]) -> LabelingFunction:
    # One alternation tests every pattern in a single pass; a leading global flag such as
    # `(?i)` becomes a scoped one, `(?i:...)`, as flags are only legal at the very start.
    combined = "|".join(_scoped(pattern) for pattern in patterns)
    try:
        re.compile(combined)
    except re.error:
        combined = ""

    def vote(frame: pd.DataFrame) -> np.ndarray:
        if combined:
            return match_counts(frame["text"], combined) > 0
        return np.logical_or.reduce([match_counts(frame["text"], p) > 0 for p in patterns])

    return LabelingFunction(f"regex:{topic}", topic, "regex", vote)


def _scoped(pattern: str) -> str:
    flags = re.match(r"\(\?([aiLmsux]+)\)", pattern)
    if flags:
        return f"(?{flags.group(1)}:{pattern[flags.end() :]})"
    return f"(?:{pattern})"


def _module_function(topic: str, modules: Sequence[str]) -> LabelingFunction:
    exact = list(modules)
    inside = tuple(f"{module}." for module in modules)

    def vote(frame: pd.DataFrame) -> np.ndarray:
        module = frame["module"]
        return (module.isin(exact) | module.str.startswith(inside)).to_numpy(dtype=bool)

    return LabelingFunction(f"module:{topic}", topic, "module", vote)


def labeling_frame(clean: pd.DataFrame) -> pd.DataFrame:
    """The frame LFs see: the clean columns plus `module` (meta's "module", "" when absent)."""
    # One object a line for read_json: a newline in JSON is whitespace between tokens.
    meta = clean["meta"].str.replace(r"[\r\n]+", " ", regex=True).astype(object)
    meta = meta.where(meta.str.strip() != "", "{}")
    not_object = ~meta.str.lstrip().str.startswith("{")
    if not_object.any():
        ids = clean.loc[not_object, "id"].head(5).tolist()
        raise ValueError(
            f"label: meta must be a JSON object in every record; it is not in "
            f"{int(not_object.sum())} (ids {ids}); fix the source that wrote them, then rerun "
            "collect"
        )
    if clean.empty:
        return clean.assign(module=pd.Series(dtype=str))
    try:
        parsed = pd.read_json(
            io.StringIO("\n".join(meta)),
            lines=True,
            dtype=False,
            convert_dates=False,
            keep_default_dates=False,
        )
    except ValueError as error:
        raise ValueError(
            f"label: meta holds invalid JSON ({error}); fix the source and rerun collect"
        ) from None
    if "module" in parsed.columns:
        module = parsed["module"].fillna("").astype(str).to_numpy()
    else:
        module = np.full(len(clean), "", dtype=object)
    frame = clean.copy()
    frame["module"] = pd.Series(module, index=clean.index, dtype=str)
    return frame


def vote_matrix(
    frame: pd.DataFrame, functions: Sequence[LabelingFunction], topics: Sequence[str]
) -> pd.DataFrame:
    """Records × LFs of topic codes (position in `topics`), ABSTAIN (-1) where an LF is silent.

    `frame` is a `labeling_frame`."""
    codes = {topic: code for code, topic in enumerate(topics)}
    votes = np.full((len(frame), len(functions)), ABSTAIN, dtype=np.int16)
    for column, function in enumerate(functions):
        votes[_as_mask(function.vote(frame), len(frame), function.name), column] = codes[
            function.topic
        ]
    return pd.DataFrame(votes, index=frame.index, columns=[f.name for f in functions])


def _as_mask(result: Any, length: int, name: str) -> np.ndarray:
    if isinstance(result, pd.Series):
        result = result.to_numpy(dtype=bool, na_value=False)
    mask = np.asarray(result)
    if mask.shape != (length,) or mask.dtype != bool:
        raise ValueError(
            f"labeling function {name} returned {mask.dtype} of shape {mask.shape} for "
            f"{length} records; return one bool per record (a Series aligned with the frame)"
        )
    return mask
