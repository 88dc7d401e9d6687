"""How varied generated text is: distinct-n, the share of n-grams that are not repeats.

    distinct_n(["the cat sat", "the cat ran"], 1)   # 4 unique words / 6 words = 0.667
    distinct_n(samples, 2)                          # unique bigrams / all bigrams

Words are whitespace-separated tokens (`str.split()`), so the figure does not depend on the
model's tokenizer. n-grams are taken inside each text, never across two texts, and pooled over
the whole list: a model that writes the same sample every time scores low even when each
sample on its own has no repeats. A value depends on how much text is pooled, so compare
models on the same number and length of samples.

More is not better: near-random text scores higher than real text. The evaluation reports
real test text's own value beside a model's (`real_distinct_n`, `aigc.text.evaluate.report.
real_distinct`), and the promotion gate judges a model by its distance from it.
"""

from __future__ import annotations

from collections.abc import Iterable


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of one list of words, in order; none when it has fewer than n words."""
    return [tuple(words[start : start + n]) for start in range(len(words) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams / total n-grams over all `texts` (whitespace words).

    0.0 when the texts hold no n-gram at all (empty input, or every text shorter than n
    words): producing nothing is not diversity, and a gate reading this must not reward it."""
    if n < 1:
        raise ValueError(f"n={n} must be at least 1 (1 = distinct words, 2 = bigrams, ...)")
    unique: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = ngrams(text.split(), n)
        unique.update(grams)
        total += len(grams)
    return len(unique) / total if total else 0.0
