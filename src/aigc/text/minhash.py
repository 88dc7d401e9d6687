"""MinHash signatures and LSH banding: the clean stage's `near_duplicate` rule.

`aigc.text.clean.clean_records` calls `minhash_signatures` on the live texts, then
`near_duplicate_matches` to find each record's most similar kept record; both are pure numpy
(bench/clean_throughput.py measures them against datasketch).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

LSH_FALSE_NEGATIVE_WEIGHT = 0.95
_BLOCK_WINDOWS = 8192  # shingles hashed per numpy block: (num_perm, 8192) uint64 stays in cache
_SPLITMIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the whole uint64 (wraps mod 2**64)."""
    values = values + np.uint64(_SPLITMIX[0])
    values = (values ^ (values >> np.uint64(30))) * np.uint64(_SPLITMIX[1])
    values = (values ^ (values >> np.uint64(27))) * np.uint64(_SPLITMIX[2])
    return values ^ (values >> np.uint64(31))


def minhash_signatures(
    texts: pd.Series, num_perm: int, shingle_words: int, seed: int
) -> np.ndarray:
    """(N, num_perm) uint64 MinHash signatures of word shingles; all-max rows for no words.

    A shingle is `shingle_words` consecutive lower-cased words (the whole text when it is
    shorter). Words are hashed with pandas' keyed SipHash, shingles by a mixed polynomial of
    their word hashes, and the permutations are h -> a*h + b mod 2**64 with odd seeded a.
    """
    words = texts.astype(object).str.lower().str.findall(r"\w+")
    counts = words.str.len().to_numpy(dtype=np.int64)
    signatures = np.full((len(texts), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    if counts.sum() == 0:
        return signatures
    flat = np.fromiter((word for text in words for word in text), dtype=object, count=counts.sum())
    word_hashes = np.concatenate([pd.util.hash_array(flat), np.zeros(shingle_words, np.uint64)])
    ends = np.cumsum(counts)
    starts = ends - counts
    windows = np.maximum(counts - shingle_words + 1, 1) * (counts > 0)
    window_doc = np.repeat(np.arange(len(texts)), windows)
    window_start = (
        starts[window_doc]
        + np.arange(windows.sum())
        - np.repeat(np.cumsum(windows) - windows, windows)
    )
    shingles = np.zeros(len(window_start), dtype=np.uint64)
    for offset in range(shingle_words):
        inside = window_start + offset < ends[window_doc]
        term = _mix(word_hashes[window_start + offset] + np.uint64(offset))
        shingles += np.where(inside, term, np.uint64(0))
    shingles = _mix(shingles)
    generator = np.random.default_rng(seed)
    multipliers = generator.integers(0, 2**63, (num_perm, 1), dtype=np.uint64) * np.uint64(2) + 1
    increments = generator.integers(0, 2**63, (num_perm, 1), dtype=np.uint64)
    with_words = np.flatnonzero(windows)
    window_offsets = np.concatenate([[0], np.cumsum(windows[with_words])])
    first = 0
    while first < len(with_words):  # blocks of whole texts, about _BLOCK_WINDOWS windows each
        last = int(np.searchsorted(window_offsets, window_offsets[first] + _BLOCK_WINDOWS))
        last = min(max(last, first + 1), len(with_words))
        low, high = window_offsets[first], window_offsets[last]
        values = multipliers * shingles[low:high] + increments  # (P, W): min runs along rows
        block = np.minimum.reduceat(values, window_offsets[first:last] - low, axis=1)
        signatures[with_words[first:last]] = block.T
        first = last
    return signatures


@functools.lru_cache
def lsh_bands(
    threshold: float, num_perm: int, false_negative_weight: float = LSH_FALSE_NEGATIVE_WEIGHT
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative probability mass.

    The same choice as datasketch's MinHashLSH, which weighs both halves 0.5. Here a false
    positive only costs one signature comparison while a false negative keeps a duplicate, so
    the default weighs misses 0.95: at the default threshold (0.85, 128 permutations) this
    gives 12 bands of 10 rows, which proposes a pair at the threshold 93% of the time (46%
    with equal weights) and a pair at Jaccard 0.5 about 1% of the time.
    """
    low, high = np.linspace(0.0, threshold, 200), np.linspace(threshold, 1.0, 200)
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = np.trapezoid(1 - (1 - low**rows) ** bands, low)
            false_negative = np.trapezoid((1 - high**rows) ** bands, high)
            error = false_positive * (1 - false_negative_weight)
            error += false_negative * false_negative_weight
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def near_duplicate_matches(
    signatures: np.ndarray, threshold: float
) -> dict[int, tuple[int, float]]:
    """{row: (kept row, estimated Jaccard)} for rows near an earlier kept row, in row order.

    Rows are visited in order; a row is compared (whole signature) with the kept rows that
    share an LSH band with it and is a duplicate of the most similar one if that reaches the
    threshold; otherwise it is kept. Rows without any shingle are never duplicates.
    """
    rows_count, num_perm = signatures.shape
    bands, rows_per_band = lsh_bands(threshold, num_perm)
    position = np.arange(rows_per_band, dtype=np.uint64)  # so a band's key depends on order
    band_keys = np.stack(
        [
            _mix(signatures[:, band * rows_per_band : (band + 1) * rows_per_band] + position).sum(
                axis=1
            )
            for band in range(bands)
        ],
        axis=1,
    ).tolist()  # (N, bands) python ints: dict keys for the buckets
    empty = (signatures == np.iinfo(np.uint64).max).all(axis=1).tolist()
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    matches: dict[int, tuple[int, float]] = {}
    for row in range(rows_count):
        if empty[row]:
            continue
        keys = band_keys[row]
        candidates = {kept for band, key in enumerate(keys) for kept in buckets[band].get(key, ())}
        if candidates:
            ordered = np.array(sorted(candidates))
            similarity = (signatures[ordered] == signatures[row]).mean(axis=1)
            best = int(np.argmax(similarity))  # the earliest among equally similar rows
            if similarity[best] >= threshold:
                matches[row] = (int(ordered[best]), float(similarity[best]))
                continue
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(row)
    return matches
