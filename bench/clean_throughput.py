"""Throughput of the clean stage on the default corpus (CPython's pydoc topics and docstrings).

    .venv/bin/python bench/clean_throughput.py [--repeats 3]

Builds the raw frame the way collect does for the `builtin` source, runs `clean_records` with
the default params `--repeats` times and prints the best time per rule and records per second.
Then it times the near-duplicate rule alone, on the texts that reach it, with this project's
numpy MinHash and with datasketch (MinHash.bulk + MinHashLSH), and says how often they agree.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from datasketch import MinHash, MinHashLSH

from aigc.config import BuiltinSource, CleanParams, NearDuplicateRule
from aigc.text.clean import (
    LSH_FALSE_NEGATIVE_WEIGHT,
    clean_records,
    minhash_signatures,
    near_duplicate_matches,
)
from aigc.text.collect import collect_sources

COLLECTED_AT = datetime(2026, 11, 23, tzinfo=UTC)


def builtin_raw_frame() -> pd.DataFrame:
    """The default corpus as the collect stage builds it."""
    return collect_sources([BuiltinSource(name="stdlib")], Path("."), now=COLLECTED_AT).frame


def numpy_near_duplicates(texts: pd.Series, rule: NearDuplicateRule) -> set[int]:
    signatures = minhash_signatures(texts, rule.num_perm, rule.shingle_words, rule.seed)
    return set(near_duplicate_matches(signatures, rule.threshold))


def datasketch_near_duplicates(texts: pd.Series, rule: NearDuplicateRule) -> set[int]:
    """The same greedy rule written the way datasketch's documentation does it."""
    shingle_sets = []
    for words in texts.str.lower().str.findall(r"\w+"):
        width = min(rule.shingle_words, len(words))
        shingle_sets.append(
            [
                " ".join(words[start : start + width]).encode()
                for start in range(len(words) - width + 1 if words else 0)
            ]
        )
    minhashes = MinHash.bulk(shingle_sets, num_perm=rule.num_perm, seed=rule.seed)
    weights = (1 - LSH_FALSE_NEGATIVE_WEIGHT, LSH_FALSE_NEGATIVE_WEIGHT)  # as the numpy version
    index = MinHashLSH(threshold=rule.threshold, num_perm=rule.num_perm, weights=weights)
    duplicates = set()
    for row, (shingles, minhash) in enumerate(zip(shingle_sets, minhashes, strict=True)):
        if not shingles:
            continue
        candidates = index.query(minhash)
        if candidates and max(minhash.jaccard(minhashes[c]) for c in candidates) >= rule.threshold:
            duplicates.add(row)
            continue
        index.insert(row, minhash)
    return duplicates


def best_of(repeats: int, function, *args):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats

    start = time.perf_counter()
    raw = builtin_raw_frame()
    print(
        f"built raw frame: {len(raw)} records, {raw['text'].str.len().sum():,} chars "
        f"in {time.perf_counter() - start:.2f} s\n"
    )

    params = CleanParams()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = clean_records(raw, params)
        runs.append((time.perf_counter() - start, result.timings))
    total, timings = min(runs, key=lambda run: run[0])
    counts = result.report["quarantined_by_rule"]
    print(f"clean_records, best of {repeats}:")
    print(f"  {'rule':<16} {'seconds':>8} {'quarantined':>12}")
    for rule, seconds in timings.items():
        print(f"  {rule:<16} {seconds:8.3f} {counts.get(rule, ''):>12}")
    print(f"  {'(other)':<16} {total - sum(timings.values()):8.3f}")
    print(
        f"  {'total':<16} {total:8.3f}   {len(raw) / total:,.0f} records/s, "
        f"{result.report['output_records']} kept\n"
    )

    survivors = (
        clean_records(
            raw, params.model_copy(update={"near_duplicate": NearDuplicateRule(enabled=False)})
        )
        .records["text"]
        .astype(object)
    )
    rule = params.near_duplicate
    numpy_seconds, numpy_rows = best_of(repeats, numpy_near_duplicates, survivors, rule)
    sketch_seconds, sketch_rows = best_of(repeats, datasketch_near_duplicates, survivors, rule)
    print(
        f"near_duplicate alone on {len(survivors)} texts (threshold {rule.threshold}, "
        f"{rule.num_perm} permutations, {rule.shingle_words}-word shingles):"
    )
    print(f"  {'implementation':<16} {'seconds':>8} {'duplicates':>11}")
    print(f"  {'numpy (used)':<16} {numpy_seconds:8.3f} {len(numpy_rows):>11}")
    print(f"  {'datasketch':<16} {sketch_seconds:8.3f} {len(sketch_rows):>11}")
    print(
        f"  datasketch / numpy time: {sketch_seconds / numpy_seconds:.1f}x; "
        f"flagged by both: {len(numpy_rows & sketch_rows)}, only numpy: "
        f"{len(numpy_rows - sketch_rows)}, only datasketch: {len(sketch_rows - numpy_rows)}"
    )
    np.testing.assert_equal(
        len(survivors), result.report["output_records"] + counts["near_duplicate"]
    )


if __name__ == "__main__":
    main()
