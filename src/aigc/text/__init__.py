"""Text: the byte-level BPE tokenizer for labeled documents and the token datasets built on it.

`tokenizer.TextTokenizer` turns a labeled document into `[<|label:NAME|>, ..., <|endoftext|>]`;
`dataset` concatenates documents into a token stream, cuts it into (x, y) training blocks and
measures bits per character.
"""

from aigc.text.dataset import (
    BlockDataset,
    EpochShuffleSampler,
    bits_per_character,
    encode_corpus,
    unigram_bits_per_char,
)
from aigc.text.tokenizer import TextTokenizer

__all__ = [
    "BlockDataset",
    "EpochShuffleSampler",
    "TextTokenizer",
    "bits_per_character",
    "encode_corpus",
    "unigram_bits_per_char",
]
