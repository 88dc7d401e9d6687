"""The `label` stage core: labeling functions vote on each record's topic, a label model decides.

Weak supervision in the style of Snorkel. Nothing here reads or writes files except
`read_overrides`; the task and the CLI verb load the clean frame, call `label_records`, then
`aigc.data.split.assign_splits`, and save.

    result = label_records(clean, params.label, read_overrides(params.label.overrides_file))
    result.frame    # clean columns + label, label_confidence, labeling_functions
    result.report   # coverage, overlaps, conflicts, accuracies, distribution (JSON-ready)

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
aigc/data/labeling_functions.py (the label stage imports it) with the decorator:

    @labeling_function("concurrency")
    def mentions_lock_objects(frame: pd.DataFrame) -> pd.Series:
        return frame["text"].str.contains(r"\\b(?:RLock|Semaphore|Condition)\\b")

It receives the whole frame (the clean columns plus `module`, meta's "module" or "") and
returns one bool per record, True meaning "this record is about the topic". Work on whole
columns; a Python loop over rows is what makes labeling slow. It is named `python:<function
name>` and votes only when its topic is one of params' topics; otherwise the report lists it
under `skipped_functions`.

The label model ("weighted" by default, or "majority") turns the votes into one label per
record; see `estimate_accuracies` and `combine_votes`. A record no LF votes for gets
`fallback_label` with confidence 0.0 and no labeling functions. `labeling_functions` names the
LFs that voted for the chosen label (the dissenters show up in the report's conflicts).
Manual overrides (a CSV of id,label) win over everything: confidence 1.0, labeling_functions
"override".
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from aigc.config import ConfigError, LabelParams
from aigc.data.records import CLEAN_SCHEMA, check

ABSTAIN = -1
OVERRIDE = "override"
# Before any evidence every LF is assumed right 70% of the time; the prior counts as this many
# records of evidence, so an LF that rarely overlaps with others keeps close to it.
PRIOR_ACCURACY = 0.7
PRIOR_STRENGTH = 5.0
_TIE = 1e-9
_ARROW_TEXT = pd.ArrowDtype(pa.large_string())


@dataclass(frozen=True)
class LabelingFunction:
    """One voter: `vote(frame)` gives a bool per record, True meaning "this is `topic`"."""

    name: str
    topic: str
    kind: str  # keyword | regex | module | python
    vote: Callable[[pd.DataFrame], Any]


@dataclass(frozen=True)
class LabelResult:
    frame: pd.DataFrame
    report: dict


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


# --- the label model ------------------------------------------------------------------------


def accuracy_weights(accuracies: np.ndarray, n_topics: int) -> np.ndarray:
    """Vote weights: log-odds of being right against being one particular wrong topic.

    With errors spread evenly over the other topics, a vote from an LF of accuracy a multiplies
    the odds of its topic by a·(K-1)/(1-a). An LF no better than chance gets weight 0."""
    log_odds = np.log(accuracies / (1 - accuracies)) + np.log(max(n_topics - 1, 1))
    return np.maximum(log_odds, 0.0)


def topic_scores(votes: np.ndarray, weights: np.ndarray, n_topics: int) -> np.ndarray:
    """Records × topics: the summed weight of the votes for each topic."""
    scores = np.zeros((votes.shape[0], n_topics))
    for column in range(votes.shape[1]):
        rows = np.flatnonzero(votes[:, column] != ABSTAIN)
        scores[rows, votes[rows, column]] += weights[column]
    return scores


def estimate_accuracies(votes: np.ndarray, n_topics: int, iterations: int) -> np.ndarray:
    """Each LF's accuracy, estimated as its agreement with the consensus of the other LFs.

    A Dawid–Skene-lite: start every LF at PRIOR_ACCURACY; then, `iterations` times, weight
    the votes by the current accuracies and count, for each LF, on the records where some
    other LF voted, how often the others' weighted winner is its own vote (ties share the
    credit). Leaving the LF out of its own consensus keeps it from grading itself; the prior
    (PRIOR_STRENGTH records' worth) smooths LFs with little overlap."""
    accuracies = np.full(votes.shape[1], PRIOR_ACCURACY)
    for _ in range(iterations):
        weights = accuracy_weights(accuracies, n_topics)
        scores = topic_scores(votes, weights, n_topics)
        agreement = np.zeros(votes.shape[1])
        evidence = np.zeros(votes.shape[1])
        for column in range(votes.shape[1]):
            rows = np.flatnonzero(votes[:, column] != ABSTAIN)
            own = votes[rows, column].astype(np.intp)
            others = scores[rows]
            others[np.arange(len(rows)), own] -= weights[column]
            best = others.max(axis=1)
            informed = best > _TIE
            tied = others[informed] >= best[informed, None] - _TIE
            share = tied[np.arange(int(informed.sum())), own[informed]] / tied.sum(axis=1)
            agreement[column] = share.sum()
            evidence[column] = informed.sum()
        accuracies = (agreement + PRIOR_STRENGTH * PRIOR_ACCURACY) / (evidence + PRIOR_STRENGTH)
    return np.clip(accuracies, 1e-3, 1 - 1e-3)


def combine_votes(
    votes: np.ndarray, weights: np.ndarray, n_topics: int, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """(topic code or ABSTAIN, confidence) per record.

    The winner is the topic with the largest summed weight, ties going to the earlier topic.
    Confidence: for "majority", the winner's share of the votes; for "weighted", its posterior
    probability under the same model as `accuracy_weights` (one vote from an LF of accuracy a
    gives confidence a). Records without a (positively weighted) vote get ABSTAIN and 0."""
    scores = topic_scores(votes, weights, n_topics).round(9)  # exact ties break by topic order
    best = scores.max(axis=1, initial=0.0)
    covered = best > 0
    codes = np.where(covered, scores.argmax(axis=1) if n_topics else ABSTAIN, ABSTAIN)
    if model == "majority":
        total = scores.sum(axis=1)
        confidence = np.divide(best, total, out=np.zeros_like(best), where=covered)
    else:
        normaliser = np.exp(scores - best[:, None]).sum(axis=1)
        confidence = np.where(covered, 1.0 / np.maximum(normaliser, 1.0), 0.0)
    return codes, confidence


# --- overrides ------------------------------------------------------------------------------


def read_overrides(path: Path | str) -> pd.DataFrame:
    """The manual labels in a CSV with an `id,label` header; a missing file means none."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(
            f"overrides file {path} is not a readable UTF-8 CSV ({error}); "
            "write it as lines of `<record id>,<label>` under an `id,label` header"
        ) from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in ("id", "label") if column not in table.columns]
    if missing:
        raise ValueError(
            f"overrides file {path} lacks the column(s) {missing} (found {list(table.columns)}); "
            "its first line must be the header `id,label`, then one `<record id>,<label>` a line"
        )
    table = table[["id", "label"]].apply(lambda column: column.str.strip())
    _check_override_rows(table, f"overrides file {path}")
    return table.reset_index(drop=True)


def _check_override_rows(overrides: pd.DataFrame, origin: str) -> None:
    empty = (overrides["id"] == "") | (overrides["label"] == "")
    if empty.any():
        rows = [
            f"row {position + 1} (id {identifier!r}, label {label!r})"
            for position, (identifier, label) in enumerate(
                zip(overrides["id"], overrides["label"], strict=True)
            )
            if empty.iloc[position]
        ]
        raise ValueError(
            f"{origin}: empty id or label in {', '.join(rows[:5])}; give each row a record id "
            "and a label, or delete the row"
        )
    labels_per_id = overrides.groupby("id")["label"].nunique()
    contradictory = sorted(labels_per_id.index[labels_per_id > 1])
    if contradictory:
        raise ValueError(
            f"{origin}: ids {contradictory[:5]} are given different labels; keep one row per id"
        )


def _checked_overrides(overrides: pd.DataFrame, allowed: Sequence[str]) -> pd.Series:
    """label by id, after checking every row names a known label."""
    missing = [column for column in ("id", "label") if column not in overrides.columns]
    if missing:
        raise ValueError(f"overrides lack the column(s) {missing}; pass a frame of id,label")
    table = (
        overrides[["id", "label"]].fillna("").astype(str).apply(lambda column: column.str.strip())
    )
    _check_override_rows(table, "overrides")
    unknown = ~table["label"].isin(list(allowed))
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ValueError(
            f"overrides row {position + 1} (id {table['id'].iloc[position]!r}): label "
            f"{table['label'].iloc[position]!r} is neither a topic in label.topics nor the "
            f"fallback; use one of {list(allowed)} or add the topic to params"
        )
    return table.drop_duplicates("id").set_index("id")["label"]


# --- the stage ------------------------------------------------------------------------------


def label_records(
    clean: pd.DataFrame,
    params: LabelParams,
    overrides: pd.DataFrame,
    *,
    registry: LabelingFunctionRegistry = REGISTRY,
) -> LabelResult:
    """Label every clean record with a topic, a confidence and the LFs behind it."""
    clean = check(clean, CLEAN_SCHEMA, "label")
    topics = list(params.topics)
    functions, skipped = build_labeling_functions(params, registry)
    override_labels = _checked_overrides(overrides, [*topics, params.fallback_label])

    votes = vote_matrix(labeling_frame(clean), functions, topics).to_numpy()
    accuracies = estimate_accuracies(votes, len(topics), params.label_model_iterations)
    if params.label_model == "weighted":
        weights = accuracy_weights(accuracies, len(topics))
    else:
        weights = np.ones(len(functions))
    codes, confidence = combine_votes(votes, weights, len(topics), params.label_model)

    names = np.array([*topics, params.fallback_label], dtype=object)
    labels = pd.Series(names[np.where(codes == ABSTAIN, len(topics), codes)], index=clean.index)
    supporters = _supporter_names(votes, codes, [function.name for function in functions])

    manual = clean["id"].map(override_labels)
    overridden = manual.notna().to_numpy()
    frame = clean.copy()
    frame["label"] = labels.where(~overridden, manual).astype(str)
    frame["label_confidence"] = np.where(overridden, 1.0, confidence.round(4)).astype(float)
    frame["labeling_functions"] = np.where(overridden, OVERRIDE, supporters)
    frame["labeling_functions"] = frame["labeling_functions"].astype(str)

    unknown_ids = sorted(set(override_labels.index) - set(clean["id"]))
    report = _report(votes, functions, accuracies, frame, params, skipped)
    report["overrides"] = {
        "applied": int(overridden.sum()),
        "unknown": len(unknown_ids),
        "unknown_ids": unknown_ids[:20],
    }
    return LabelResult(frame=frame, report=report)


def _supporter_names(votes: np.ndarray, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Per record, the comma-joined names of the LFs that voted for its label."""
    supports = (votes == codes[:, None]) & (codes[:, None] != ABSTAIN)
    if not names:
        return np.full(len(codes), "", dtype=object)
    patterns, which = np.unique(supports, axis=0, return_inverse=True)
    joined = np.array(
        [",".join(name for name, on in zip(names, row, strict=True) if on) for row in patterns],
        dtype=object,
    )
    return joined[which.reshape(-1)]


def _share(count: int | np.integer, total: int) -> float:
    return round(float(count) / total, 4) if total else 0.0


def _report(
    votes: np.ndarray,
    functions: Sequence[LabelingFunction],
    accuracies: np.ndarray,
    frame: pd.DataFrame,
    params: LabelParams,
    skipped: list[str],
) -> dict:
    records = len(votes)
    fired = votes != ABSTAIN
    voters = fired.sum(axis=1)
    # Votes per record per topic, to tell agreeing from disagreeing neighbours.
    per_topic = np.zeros((records, len(params.topics)), dtype=np.int64)
    for code in range(len(params.topics)):
        per_topic[:, code] = (votes == code).sum(axis=1)
    topics_voted = (per_topic > 0).sum(axis=1)
    per_function = {}
    for column, function in enumerate(functions):
        mine = fired[:, column]
        own = per_topic[mine, votes[mine, column]]
        per_function[function.name] = {
            "topic": function.topic,
            "kind": function.kind,
            "coverage": _share(mine.sum(), records),
            "overlaps": _share((voters[mine] > 1).sum(), records),
            "conflicts": _share((voters[mine] > own).sum(), records),
            "estimated_accuracy": round(float(accuracies[column]), 4),
        }
    counts = frame["label"].value_counts()
    order = [*params.topics, params.fallback_label]
    order += sorted(set(counts.index) - set(order))
    return {
        "records": records,
        "label_model": params.label_model,
        "iterations": params.label_model_iterations,
        "coverage": _share((voters > 0).sum(), records),
        "overlap": _share((voters > 1).sum(), records),
        "conflict": _share((topics_voted > 1).sum(), records),
        "mean_confidence": round(float(frame["label_confidence"].mean()), 4) if records else 0.0,
        "label_distribution": {
            label: {
                "count": int(counts.get(label, 0)),
                "share": _share(counts.get(label, 0), records),
            }
            for label in order
        },
        "labeling_functions": per_function,
        "skipped_functions": skipped,
    }


# --- Python labeling functions --------------------------------------------------------------
# Register project-specific labeling functions here with @labeling_function("<topic>").
