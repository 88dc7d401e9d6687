"""A byte-level BPE tokenizer for labeled documents, trained with Hugging Face `tokenizers`.

Usage:

    settings = params.train.tokenizer  # vocab_size, min_frequency
    tokenizer = TextTokenizer.train(texts, labels=["networking", "security"],
                                    vocab_size=settings.vocab_size,
                                    min_frequency=settings.min_frequency)
    ids = tokenizer.encode_document(text, "networking")
    # ids == [<|label:networking|>, ...the text's tokens..., <|endoftext|>]
    tokenizer.save("tokenizer.json"); TextTokenizer.load("tokenizer.json")

Byte-level means every string can be encoded (no unknown token) and `decode(encode(text))`
returns `text` exactly. Special tokens come first in the vocabulary, always in the same order:
`<|pad|>` = 0, `<|endoftext|>` = 1, then one `<|label:NAME|>` per label in sorted order; the
256 byte symbols and the learned merges follow. Special tokens are only ever inserted by id:
a document that happens to contain the text `<|endoftext|>` is encoded as ordinary bytes, so
training data cannot forge a label or an end of document.

Training is deterministic: the same texts, labels and sizes give the same vocabulary and merges
(checked across processes, with and without the library's thread pool).

A pretrained Hugging Face model brings its own tokenizer (`from_pretrained`): its vocabulary is
kept, its end-of-text token names the end of a document, and one `<|label:NAME|>` special token
per label is added after its vocabulary (`train.model.family: hf`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
FILE_FORMAT = "aigc-text-tokenizer"
FILE_VERSION = 2  # 2: the end-of-text and padding tokens are named in the file
_BYTE_ALPHABET_SIZE = 256


def label_token(label: str) -> str:
    """The special token that starts a document with this label: `<|label:NAME|>`."""
    return f"<|label:{label}|>"


def _check_labels(labels: Iterable[str]) -> list[str]:
    unique = sorted(set(labels))
    for label in unique:
        if not isinstance(label, str) or not label or "|" in label or label != label.strip():
            raise ValueError(
                f"label {label!r} cannot be a token: use a non-empty string without '|' "
                "or surrounding spaces"
            )
    return unique


class TextTokenizer:
    """A trained byte-level BPE tokenizer plus the labels it has a start token for."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        labels: Iterable[str],
        eos_token: str = EOS_TOKEN,
        pad_token: str = PAD_TOKEN,
    ) -> None:
        self._tokenizer = tokenizer
        # Not part of the saved JSON in `tokenizers`, so it is set on every construction:
        # text that looks like a special token is encoded as plain bytes.
        self._tokenizer.encode_special_tokens = True
        self._labels = tuple(_check_labels(labels))
        self._label_ids: dict[str, int] = {}
        for label in self._labels:
            token_id = tokenizer.token_to_id(label_token(label))
            if token_id is None:
                raise ValueError(f"tokenizer has no token {label_token(label)!r}; retrain it")
            self._label_ids[label] = token_id
        pad_id, eos_id = tokenizer.token_to_id(pad_token), tokenizer.token_to_id(eos_token)
        if pad_id is None or eos_id is None:
            raise ValueError(f"tokenizer lacks {pad_token} or {eos_token}; retrain it")
        self._pad_id, self._eos_id = pad_id, eos_id
        self._eos_token, self._pad_token = eos_token, pad_token

    # --- training --------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        labels: Iterable[str],
        *,
        vocab_size: int,
        min_frequency: int,
    ) -> TextTokenizer:
        """Learn merges from `texts` until the vocabulary (special tokens included) has
        `vocab_size` entries or no pair occurs `min_frequency` times."""
        labels = _check_labels(labels)
        special_tokens = [PAD_TOKEN, EOS_TOKEN, *(label_token(label) for label in labels)]
        smallest = len(special_tokens) + _BYTE_ALPHABET_SIZE
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: {len(special_tokens)} special tokens "
                f"and {_BYTE_ALPHABET_SIZE} byte symbols need at least {smallest}"
            )
        if min_frequency < 1:
            raise ValueError(f"min_frequency={min_frequency} must be at least 1")
        tokenizer = Tokenizer(models.BPE())
        # No prefix space: decode(encode(text)) must give back `text` exactly.
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=special_tokens,
            # All 256 bytes, seen or not, so no input ever needs an unknown token.
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer, labels)

    @classmethod
    def from_pretrained(cls, folder: str | Path, labels: Iterable[str]) -> TextTokenizer:
        """A Hugging Face model folder's own (fast) tokenizer, with one special token per label
        added after its vocabulary. Its end-of-text token ends documents (`<|endoftext|>` is
        added if it has none); padding is its pad token, else the end-of-text token."""
        from tokenizers import AddedToken
        from transformers import AutoTokenizer

        labels = _check_labels(labels)
        pretrained = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        backend = getattr(pretrained, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(
                f"the tokenizer in {folder} has no fast version (tokenizer.json); save it with "
                "a fast tokenizer (AutoTokenizer.from_pretrained(...).save_pretrained(folder))"
            )
        tokenizer = Tokenizer.from_str(backend.to_str())  # a copy: the model's stays as it is
        eos_token = pretrained.eos_token or EOS_TOKEN
        pad_token = pretrained.pad_token or eos_token
        added = [eos_token] if tokenizer.token_to_id(eos_token) is None else []
        added += [label_token(label) for label in labels]
        tokenizer.add_special_tokens([AddedToken(token, special=True) for token in added])
        return cls(tokenizer, labels, eos_token=eos_token, pad_token=pad_token)

    # --- encoding --------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The token ids of `text`, without any special token (nor a pretrained tokenizer's
        own beginning-of-text token)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; special tokens (labels, end of text, padding) are skipped."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def encode_document(self, text: str, label: str) -> list[int]:
        """`[label token] + encode(text) + [end of text]`: one training document."""
        return [self.label_token_id(label), *self.encode(text), self._eos_id]

    def label_token_id(self, label: str) -> int:
        try:
            return self._label_ids[label]
        except KeyError:
            raise KeyError(
                f"unknown label {label!r}; this tokenizer knows {list(self._labels)}. "
                "Retrain the tokenizer with the new label."
            ) from None

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def eos_token(self) -> str:
        return self._eos_token

    @property
    def pad_token(self) -> str:
        return self._pad_token

    def label_tokens(self) -> list[str]:
        return [label_token(label) for label in self._labels]

    def backend(self) -> Tokenizer:
        """A copy of the `tokenizers` definition (export wraps it for `transformers`)."""
        return Tokenizer.from_str(self._tokenizer.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    # --- persistence -----------------------------------------------------------------

    def to_json(self) -> str:
        """One JSON document: our labels beside the `tokenizers` definition."""
        document = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "labels": list(self._labels),
            "eos_token": self._eos_token,
            "pad_token": self._pad_token,
            "tokenizer": json.loads(self._tokenizer.to_str()),
        }
        return json.dumps(document, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"tokenizer JSON is not valid JSON: {error}") from error
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise ValueError(f"not an {FILE_FORMAT} document; was it written by save()?")
        if document.get("version") not in (1, FILE_VERSION):  # 1: the built-in token names
            raise ValueError(
                f"tokenizer file version {document.get('version')!r} is not {FILE_VERSION}"
            )
        tokenizer = Tokenizer.from_str(json.dumps(document["tokenizer"]))
        return cls(
            tokenizer,
            document["labels"],
            eos_token=document.get("eos_token", EOS_TOKEN),
            pad_token=document.get("pad_token", PAD_TOKEN),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} does not exist; train one first")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={self.vocab_size}, labels={list(self._labels)})"
