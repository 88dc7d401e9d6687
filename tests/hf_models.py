"""Tiny Hugging Face model folders for tests: made here with transformers, never downloaded.

folder = tiny_gpt2(tmp_path / "gpt2")      # GPT2LMHeadModel + a byte-level BPE tokenizer
folder = tiny_llama(tmp_path / "llama")    # LlamaForCausalLM, same tokenizer
"""

from __future__ import annotations

from pathlib import Path

import torch

_CORPUS = [
    "The socket accepts a connection and the server reads the request.",
    "A firewall drops packets that match no rule; the router forwards the rest.",
    "Encryption keys are rotated every month and old keys are revoked.",
    "The team trained a model on the corpus and measured its loss.",
] * 8


def _tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def tiny_gpt2(folder: Path, seed: int = 0, n_embd: int = 32, n_positions: int = 64) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _tokenizer()
    config = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=n_embd,
        n_positions=n_positions,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return _saved(GPT2LMHeadModel, config, tokenizer, folder, seed)


def tiny_llama(folder: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return _saved(LlamaForCausalLM, config, tokenizer, folder, seed)


def _saved(model_class, config, tokenizer, folder: Path, seed: int) -> Path:
    """A model of `model_class` initialised from `seed`, saved with its tokenizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
