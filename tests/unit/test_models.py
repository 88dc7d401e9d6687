"""aigc.models: the family registry, the GPT and LSTM families, generate and checkpoints."""

from __future__ import annotations

import math
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from aigc.models import (
    ModelFamily,
    build_model,
    generate,
    get_family,
    load_model,
    register_family,
    save_checkpoint,
)
from aigc.models.configs import ModelConfigBase

VOCAB = 64
BLOCK = 32
CONFIGS = {
    "gpt": {"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": 2, "n_head": 2, "n_embd": 32},
    "lstm": {
        "vocab_size": VOCAB,
        "block_size": BLOCK,
        "n_layer": 2,
        "n_embd": 32,
        "hidden_size": 32,
    },
}
FAMILIES = sorted(CONFIGS)


def tiny(family: str, seed: int = 0, **overrides) -> nn.Module:
    return build_model({"family": family, **CONFIGS[family], **overrides}, seed=seed)


def repetitive_batch(batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A period-7 token pattern at random phases: trivially learnable."""
    pattern = torch.tensor([3, 14, 15, 9, 26, 5, 35])
    phases = torch.arange(batch_size) % len(pattern)
    positions = phases[:, None] + torch.arange(BLOCK + 1)[None, :]  # (B, T+1)
    tokens = pattern[positions % len(pattern)]
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes_and_initial_loss_is_about_log_vocab(family: str) -> None:
    model = tiny(family)
    x, y = repetitive_batch(4)
    logits, loss = model(x)
    assert logits.shape == (4, BLOCK, VOCAB)
    assert loss is None
    logits, loss = model(x, y)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(math.log(VOCAB), abs=0.1)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_falls_on_a_repetitive_corpus(family: str) -> None:
    model = tiny(family)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = repetitive_batch()
    first = model(x, y)[1].item()
    for _ in range(30):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model(x, y)[1].item() < 0.25 * first


@pytest.mark.parametrize("family", FAMILIES)
def test_changing_a_future_token_leaves_earlier_logits_alone(family: str) -> None:
    model = tiny(family).eval()
    x, _ = repetitive_batch(2)
    changed = x.clone()
    changed[:, 20] = (changed[:, 20] + 1) % VOCAB
    before, after = model(x)[0], model(changed)[0]
    torch.testing.assert_close(before[:, :20], after[:, :20], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 20:], after[:, 20:])


def test_padding_targets_are_left_out_of_the_loss() -> None:
    model = tiny("gpt").eval()
    x, y = repetitive_batch(2)
    padded = y.clone()
    padded[:, 16:] = -100
    logits, loss = model(x, padded)
    expected = F.cross_entropy(logits[:, :16].reshape(-1, VOCAB), y[:, :16].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_gpt_ties_embeddings_and_counts_parameters_as_the_architecture_says() -> None:
    model = tiny("gpt")
    assert model.transformer.wte.weight is model.lm_head.weight
    # Counted by hand from the architecture (biases on); the tied output matrix counts once.
    C, L = 32, 2  # noqa: N806 (the usual names)
    per_block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C)
    per_block += 4 * C * C + C
    expected = VOCAB * C + BLOCK * C + L * per_block + 2 * C
    assert model.num_parameters(non_embedding=False) == expected
    assert model.num_parameters() == expected - BLOCK * C, "position embeddings left out"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_weights(family: str) -> None:
    first, second, other = tiny(family, seed=1), tiny(family, seed=1), tiny(family, seed=2)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )
    assert not all(
        torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters(), strict=True)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_is_determined_by_the_generator_seed(family: str) -> None:
    model = tiny(family)
    prompt = torch.tensor([[1, 2, 3]])

    def sample(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return generate(model, prompt, 40, temperature=1.5, top_k=20, generator=generator)

    first = sample(7)
    assert first.shape == (1, 43)
    assert torch.equal(first[:, :3], prompt)
    assert torch.equal(sample(7), first)
    assert not torch.equal(sample(8), first)
    assert model.training  # generate restores the mode it found


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("prompt_length", [3, BLOCK + 5])
def test_cached_sampling_gives_the_tokens_of_rerunning_the_whole_context(
    family: str, prompt_length: int
) -> None:
    """The KV cache (GPT) / carried state (LSTM) samples what the full re-run samples, across
    the point where the context outgrows block_size and is cropped, for several seeds."""
    model = tiny(family).train()  # generate switches to eval itself; dropout must not matter
    prompt = torch.randint(
        0, VOCAB, (3, prompt_length), generator=torch.Generator().manual_seed(1)
    )
    for seed in range(4):
        runs = [
            generate(
                model,
                prompt,
                BLOCK + 8,  # past block_size: the cropped re-start is exercised too
                temperature=0.9,
                top_k=20,
                generator=torch.Generator().manual_seed(seed),
                use_cache=use_cache,
            )
            for use_cache in (True, False)
        ]
        assert torch.equal(runs[0], runs[1]), f"seed {seed}"
    greedy = [generate(model, prompt, 12, temperature=0, use_cache=flag) for flag in (True, False)]
    assert torch.equal(greedy[0], greedy[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_step_gives_the_last_positions_logits_of_forward(family: str) -> None:
    model = tiny(family).eval()
    idx = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(2))
    full = model(idx)[0]  # (B, T, V)
    logits, state = model.step(idx[:, :6])
    torch.testing.assert_close(logits, full[:, 5], rtol=1e-4, atol=1e-5)
    for position in range(6, 10):
        logits, state = model.step(idx[:, position : position + 1], state)
        torch.testing.assert_close(logits, full[:, position], rtol=1e-4, atol=1e-5)


def test_generate_crops_context_to_block_size_and_stops_at_eos() -> None:
    model = tiny("gpt")
    prompt = torch.randint(0, VOCAB, (2, BLOCK), generator=torch.Generator().manual_seed(0))
    greedy = generate(model, prompt, 5, temperature=0)
    assert greedy.shape == (2, BLOCK + 5)
    assert torch.equal(generate(model, prompt, 5, temperature=1.0, top_k=1), greedy)
    # Call the first greedy token the end of text: sampling stops right after it.
    eos = int(greedy[0, BLOCK])
    stopped = generate(model, prompt[:1], 5, temperature=0, eos_id=eos)
    assert stopped.shape == (1, BLOCK + 1)


def test_registry_checks_config_at_the_edge() -> None:
    with pytest.raises(KeyError, match="known: .*'gpt'"):
        get_family("diffusion")
    with pytest.raises(ValidationError, match="n_embed"):
        build_model({"family": "gpt", **CONFIGS["gpt"], "n_embed": 32})
    with pytest.raises(ValidationError, match=r"n_layer\n.*valid integer"):
        build_model({"family": "gpt", **CONFIGS["gpt"], "n_layer": "two"})
    with pytest.raises(ValueError, match="multiple of n_head"):
        build_model({"family": "gpt", **CONFIGS["gpt"], "n_head": 3})


class BigramConfig(ModelConfigBase):
    family: Literal["test-bigram"] = "test-bigram"
    block_size: int = 8


class Bigram(nn.Module):
    def __init__(self, config: BigramConfig) -> None:
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, idx, targets=None):
        logits = self.table(idx)  # (B, T, V)
        loss = (
            None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        )
        return logits, loss


def test_a_new_family_plugs_in_without_touching_shared_code(tmp_path) -> None:
    register_family(ModelFamily("test-bigram", BigramConfig, Bigram))
    model = build_model({"family": "test-bigram", "vocab_size": 16}, seed=0)
    out = generate(model, torch.tensor([[1]]), 4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 5)
    save_checkpoint(tmp_path / "bigram.pt", model, model.config)
    loaded, family, config, _ = load_model(tmp_path / "bigram.pt")
    assert (family, config) == ("test-bigram", BigramConfig(vocab_size=16))
    assert torch.equal(loaded.table.weight, model.table.weight)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_round_trip_gives_identical_outputs(family: str, tmp_path) -> None:
    model = tiny(family, dropout=0.1)
    extra = {"step": 12, "tokenizer": '{"labels": ["networking"]}', "scores": [1.5, 2.0]}
    path = tmp_path / "nested" / "model.pt"
    save_checkpoint(path, model, model.config, extra)
    loaded, loaded_family, config, loaded_extra = load_model(path)
    assert (loaded_family, config, loaded_extra) == (family, model.config, extra)
    assert type(loaded) is type(model)
    assert not loaded.training
    x, _ = repetitive_batch(2)
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])
    if family == "gpt":  # tying survives the round trip
        assert loaded.transformer.wte.weight is loaded.lm_head.weight


def test_loading_something_else_says_what_went_wrong(tmp_path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="save_checkpoint"):
        load_model(path)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
