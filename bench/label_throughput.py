"""Throughput of the label stage on the default corpus (CPython's pydoc topics and docstrings).

    .venv/bin/python bench/label_throughput.py [--params params.yaml] [--input FILE] [--repeats 3]

Builds the clean frame the way the pipeline does (the `builtin` source, then `clean_records`
with default params), or reads a raw or clean parquet file given with --input (duplicate ids
dropped). Labels it with the `label` section of --params, `--repeats` times per label model,
and prints the best time and records per second for "majority" and "weighted", then the time
each kind of labeling function takes (best of the repeats, all LFs of that kind together).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from aigc.config import BuiltinSource, CleanParams, load_params
from aigc.data.overrides import read_overrides
from aigc.data.records import CLEAN_SCHEMA, check
from aigc.text.clean import clean_records
from aigc.text.collect import collect_sources
from aigc.text.label import (
    LabelingFunction,
    accuracy_weights,
    build_labeling_functions,
    combine_votes,
    estimate_accuracies,
    label_records,
    labeling_frame,
    vote_matrix,
)

COLLECTED_AT = datetime(2026, 11, 23, tzinfo=UTC)


def builtin_clean_frame() -> pd.DataFrame:
    """The default corpus as the collect and clean stages build it."""
    raw = collect_sources([BuiltinSource(name="stdlib")], Path("."), now=COLLECTED_AT).frame
    return clean_records(raw, CleanParams()).records


def best_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def kind_times(
    frame: pd.DataFrame, functions: list[LabelingFunction], repeats: int
) -> list[tuple[str, float, int]]:
    """(kind, best seconds for all LFs of that kind, how many) per LF kind."""
    prepared = labeling_frame(frame)
    rows = []
    for kind in sorted({function.kind for function in functions}):
        chosen = [function for function in functions if function.kind == kind]
        seconds = best_time(lambda chosen=chosen: [f.vote(prepared) for f in chosen], repeats)
        rows.append((f"{kind} LFs ({len(chosen)})", seconds, len(chosen)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--input", help="a raw or clean parquet file instead of the builtin corpus"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    params = load_params(args.params).label
    if not params.topics:
        raise SystemExit(f"{args.params} defines no label.topics; pass --params FILE with them")
    if args.input:
        frame = pd.read_parquet(args.input).drop_duplicates("id", ignore_index=True)
    else:
        frame = builtin_clean_frame()
    overrides = read_overrides(params.overrides_file)
    functions, _ = build_labeling_functions(params)
    topics = list(params.topics)
    records = len(frame)
    repeats = args.repeats

    print(f"records: {records}   topics: {len(topics)}   labeling functions: {len(functions)}")
    print(f"\n{'label model':<14}{'seconds':>10}{'records/s':>12}")
    for model in ("majority", "weighted"):
        chosen = params.model_copy(update={"label_model": model})
        seconds = best_time(lambda chosen=chosen: label_records(frame, chosen, overrides), repeats)
        print(f"{model:<14}{seconds:>10.3f}{records / seconds:>12,.0f}")

    votes = vote_matrix(labeling_frame(frame), functions, topics).to_numpy()
    weights = accuracy_weights(np.full(len(functions), 0.7), len(topics))
    steps = [  # (step, seconds, labeling functions involved)
        (
            "entry check (pandera)",
            best_time(lambda: check(frame, CLEAN_SCHEMA, "label"), repeats),
            0,
        ),
        ("meta parse (labeling_frame)", best_time(lambda: labeling_frame(frame), repeats), 0),
        *kind_times(frame, functions, repeats),
        (
            "label model: accuracies",
            best_time(
                lambda: estimate_accuracies(votes, len(topics), params.label_model_iterations),
                repeats,
            ),
            0,
        ),
        (
            "label model: combine",
            best_time(lambda: combine_votes(votes, weights, len(topics), "weighted"), repeats),
            0,
        ),
    ]
    print(f"\n{'step':<32}{'seconds':>10}{'per LF':>10}")
    for step, seconds, count in steps:
        per = f"{seconds / count:>10.4f}" if count else ""
        print(f"{step:<32}{seconds:>10.4f}{per}")


if __name__ == "__main__":
    main()
