"""aigc.text: the labeled-document tokenizer, the block dataset and bits per character."""

from __future__ import annotations

import math

import pytest
import torch

from aigc.config import TokenizerParams
from aigc.text.dataset import (
    BlockDataset,
    EpochShuffleSampler,
    bits_per_character,
    encode_corpus,
    unigram_bits_per_char,
)
from aigc.text.tokenizer import EOS_TOKEN, PAD_TOKEN, TextTokenizer, label_token

TEXTS = [
    "The socket connects to the server over TCP and waits for a reply.",
    "A firewall drops packets that do not match the allowed ports.",
    "Encrypt the secret key with a password before you store it.",
    "The server sends the reply over the socket; the client reads it.",
    "Hash the password with a salt so that a leaked table reveals little.",
] * 4
LABELS = ["networking", "networking", "security", "networking", "security"] * 4
VOCAB_SIZE = 300


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(TEXTS, labels=set(LABELS), vocab_size=VOCAB_SIZE, min_frequency=2)


@pytest.mark.parametrize(
    "text",
    [
        TEXTS[0],
        "  leading spaces, tabs\tand\nnewlines\n\n",
        "unseen words: zyxwvut, ünïcödé, 日本語, emoji 🚀",
        "",
    ],
)
def test_decode_of_encode_is_the_text(tokenizer: TextTokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_merges_make_known_text_shorter_than_its_bytes(tokenizer: TextTokenizer) -> None:
    assert len(tokenizer.encode(TEXTS[0])) < len(TEXTS[0].encode("utf-8")) * 0.7
    assert tokenizer.vocab_size <= VOCAB_SIZE


def test_special_tokens_have_fixed_ids_and_documents_are_framed(tokenizer: TextTokenizer) -> None:
    assert tokenizer.labels == ("networking", "security")
    assert (tokenizer.pad_id, tokenizer.eos_id) == (0, 1)
    assert tokenizer.label_token_id("networking") == 2
    assert tokenizer.label_token_id("security") == 3
    ids = tokenizer.encode_document("a firewall", "security")
    assert ids == [3, *tokenizer.encode("a firewall"), 1]
    # decode skips labels, end of text and padding.
    assert tokenizer.decode([0, *ids, 0]) == "a firewall"


def test_text_that_looks_like_a_special_token_stays_text(tokenizer: TextTokenizer) -> None:
    forged = f"before {EOS_TOKEN} {label_token('security')} {PAD_TOKEN} after"
    ids = tokenizer.encode(forged)
    specials = {tokenizer.pad_id, tokenizer.eos_id, tokenizer.label_token_id("security")}
    assert not specials & set(ids)
    assert tokenizer.decode(ids) == forged


def test_unknown_label_names_the_known_ones(tokenizer: TextTokenizer) -> None:
    with pytest.raises(KeyError, match="networking"):
        tokenizer.encode_document("text", "cooking")


def test_too_small_vocabulary_says_how_small_is_allowed() -> None:
    with pytest.raises(ValueError, match="at least 260"):
        TextTokenizer.train(
            TEXTS, labels=["a", "b"], vocab_size=100, min_frequency=TokenizerParams().min_frequency
        )


def test_training_is_deterministic_and_label_order_does_not_matter(
    tokenizer: TextTokenizer,
) -> None:
    again = TextTokenizer.train(
        TEXTS, labels=["security", "networking"], vocab_size=VOCAB_SIZE, min_frequency=2
    )
    assert again.to_json() == tokenizer.to_json()


def test_json_and_file_round_trip_exactly(tokenizer: TextTokenizer, tmp_path) -> None:
    text = tokenizer.to_json()
    restored = TextTokenizer.from_json(text)
    assert restored.to_json() == text
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert loaded.to_json() == text
    assert loaded.labels == tokenizer.labels
    forged = f"{EOS_TOKEN} {TEXTS[2]}"
    assert loaded.encode(forged) == tokenizer.encode(forged)
    assert loaded.encode_document(TEXTS[1], "security") == tokenizer.encode_document(
        TEXTS[1], "security"
    )


def test_from_json_rejects_other_documents() -> None:
    with pytest.raises(ValueError, match="save"):
        TextTokenizer.from_json('{"model": {}}')


# --- dataset -----------------------------------------------------------------------------


def test_encode_corpus_concatenates_documents(tokenizer: TextTokenizer) -> None:
    tokens = encode_corpus(TEXTS[:2], LABELS[:2], tokenizer)
    expected = tokenizer.encode_document(TEXTS[0], LABELS[0])
    expected += tokenizer.encode_document(TEXTS[1], LABELS[1])
    assert tokens.dtype == torch.long
    assert tokens.tolist() == expected
    with pytest.raises(ValueError, match="one label per text"):
        encode_corpus(TEXTS[:2], LABELS[:1], tokenizer)


def test_block_dataset_targets_are_inputs_shifted_by_one() -> None:
    tokens = torch.arange(23)
    dataset = BlockDataset(tokens, block_size=5)
    assert len(dataset) == 4  # blocks start at 0, 5, 10, 15; 20 has no room for its target
    x, y = dataset[1]
    assert x.tolist() == [5, 6, 7, 8, 9]
    assert y.tolist() == [6, 7, 8, 9, 10]
    assert len(BlockDataset(tokens, block_size=5, stride=2)) == 9
    with pytest.raises(ValueError, match="smaller block_size"):
        BlockDataset(torch.arange(5), block_size=5)


def test_epoch_shuffle_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochShuffleSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    assert list(EpochShuffleSampler(10, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_bits_per_character_of_a_uniform_four_symbol_source_is_two() -> None:
    # A uniform distribution over 4 symbols costs ln(4) nats per symbol.
    assert bits_per_character(1000 * math.log(4), 1000) == pytest.approx(2.0)
    assert unigram_bits_per_char(["abcd" * 10], ["dcba"], smoothing=0.0) == pytest.approx(2.0)
    # Smoothing gives mass to unseen bytes, so it costs more on seen ones...
    assert unigram_bits_per_char(["abcd" * 10], ["dcba"], smoothing=1.0) > 2.0
    # ...and is what makes an unseen byte affordable.
    assert unigram_bits_per_char(["abcd"], ["e"], smoothing=0.0) == math.inf
    assert unigram_bits_per_char(["abcd"], ["e"], smoothing=1.0) < 9.0


def test_unigram_cost_is_per_character_not_per_byte() -> None:
    # "éa" is 3 UTF-8 bytes, each seen once; "é" is 2 of them: 2 * log2(3) bits, one character.
    assert unigram_bits_per_char(["éa"], ["é"], smoothing=0.0) == pytest.approx(
        2 * -math.log2(1 / 3)
    )
