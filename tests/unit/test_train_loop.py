"""aigc.train.loop: budgets, determinism, resume, and the learning-rate schedule."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from aigc.config import LoopParams
from aigc.models import build_model, load_model, save_checkpoint
from aigc.text.dataset import BlockDataset, EpochShuffleSampler
from aigc.train.loop import LoopHooks, learning_rate, make_optimizer, rates, train_loop

VOCAB = 32
BLOCK = 16
BATCH = 4
SEED = 0
# Dropout on, so the tests also cover the RNG stream the loop must save and restore.
GPT = {
    "family": "gpt",
    "vocab_size": VOCAB,
    "block_size": BLOCK,
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "dropout": 0.1,
}
LSTM = {
    "family": "lstm",
    "vocab_size": VOCAB,
    "block_size": BLOCK,
    "n_layer": 2,
    "n_embd": 32,
    "hidden_size": 32,
    "dropout": 0.1,
}


def token_stream(length: int, seed: int = 0) -> torch.Tensor:
    """A noisy counting sequence: mostly predictable, a little random."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.arange(length) % 11
    noise = torch.rand(length, generator=generator) < 0.1
    return torch.where(noise, torch.randint(0, VOCAB, (length,), generator=generator), tokens)


def loaders(blocks: int = 10) -> tuple[DataLoader, DataLoader]:
    train = BlockDataset(token_stream(blocks * BLOCK + 1), BLOCK)
    val = BlockDataset(token_stream(3 * BLOCK + 1, seed=1), BLOCK)
    train_loader = DataLoader(train, batch_size=BATCH, sampler=EpochShuffleSampler(len(train)))
    return train_loader, DataLoader(val, batch_size=BATCH)


def config(**overrides) -> LoopParams:
    # Explicit where the product defaults differ: no time budget (runs must be deterministic),
    # evaluation over the whole (3-batch) validation set, checkpoints only at the end.
    values = {
        "lr": 3e-3,
        "min_lr": 3e-4,
        "warmup_steps": 2,
        "max_steps": 6,
        "max_minutes": None,
        "eval_every": 2,
        "eval_batches": 20,
        "checkpoint_every": 0,
    }
    return LoopParams(**{**values, **overrides})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_two_runs_end_with_identical_weights() -> None:
    results = []
    for _ in range(2):
        model = build_model(GPT, seed=0)
        train_loader, val_loader = loaders()
        result = train_loop(
            model, train_loader, val_loader, config(grad_accumulation=2), seed=SEED
        )
        results.append((weights(model), result))
    (first, result), (second, again) = results
    assert_same_weights(first, second)
    assert result.steps == 6 and result.stop_reason == "max_steps"
    assert [e["val_loss"] for e in result.evaluations] == [
        e["val_loss"] for e in again.evaluations
    ]
    assert [e["step"] for e in result.evaluations] == [2.0, 4.0, 6.0]


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_resuming_from_step_k_equals_never_stopping(family: str) -> None:
    model_config = GPT if family == "gpt" else LSTM
    # 10 blocks in batches of 4: 3 batches an epoch; with 2 micro-batches a step, the state
    # saved at step 2 is one batch into the second epoch.
    loop_config = config(grad_accumulation=2, checkpoint_every=2)

    uninterrupted = build_model(model_config, seed=0)
    train_loop(uninterrupted, *loaders(), loop_config, seed=SEED)

    saved: list[dict] = []
    hooks = LoopHooks(save_checkpoint=lambda state: saved.append(copy.deepcopy(state)))
    checkpointed = build_model(model_config, seed=0)
    train_loop(checkpointed, *loaders(), loop_config, hooks, seed=SEED)
    assert [state["step"] for state in saved] == [2, 4, 6]
    assert (saved[0]["epoch"], saved[0]["batches_done_in_epoch"]) == (1, 1)
    assert_same_weights(weights(checkpointed), weights(uninterrupted))

    # A fresh process would build the model with other weights; resume must overwrite them.
    resumed = build_model(model_config, seed=123)
    result = train_loop(resumed, *loaders(), loop_config, resume_state=saved[0], seed=SEED)
    assert result.steps == 6
    assert_same_weights(weights(resumed), weights(uninterrupted))


def test_token_budget_stops_at_the_first_step_that_reaches_it() -> None:
    tokens_per_step = BATCH * BLOCK  # 12 blocks in batches of 4: every batch is full
    for budget, expected_steps in ((5 * tokens_per_step, 5), (5 * tokens_per_step + 1, 6)):
        model = build_model(GPT, seed=0)
        train_loader, _ = loaders(blocks=12)
        loop = config(max_steps=None, max_tokens=budget)
        result = train_loop(model, train_loader, None, loop, seed=SEED)
        assert (result.steps, result.stop_reason) == (expected_steps, "max_tokens")
        assert result.tokens_seen == expected_steps * tokens_per_step
        assert result.final_val_loss is None


def test_hooks_are_called_once_per_step_and_evaluation_and_loss_falls() -> None:
    seen: dict[str, list] = {"step": [], "eval": [], "saved": []}
    hooks = LoopHooks(
        on_step=seen["step"].append,
        on_eval=seen["eval"].append,
        save_checkpoint=lambda state: seen["saved"].append(state["step"]),
    )
    model = build_model({**GPT, "dropout": 0.0}, seed=0)
    loop = config(max_steps=30, eval_every=10, lr=1e-2)
    result = train_loop(model, *loaders(), loop, hooks, seed=SEED)
    assert [metrics["step"] for metrics in seen["step"]] == list(range(1, 31))
    assert [metrics["step"] for metrics in seen["eval"]] == [10.0, 20.0, 30.0]
    assert seen["saved"] == [30]  # checkpoint_every=0: only the final state
    assert seen["step"][0]["lr"] == pytest.approx(1e-2 / 2)  # first warmup step
    assert result.final_val_loss < 0.6 * math.log(VOCAB)
    assert result.final_train_loss < seen["step"][0]["loss"]


def test_agree_to_stop_overrides_the_local_decision() -> None:
    model = build_model(GPT, seed=0)
    hooks = LoopHooks(agree_to_stop=lambda wants_to_stop: True)
    result = train_loop(model, *loaders(), config(max_steps=50), hooks, seed=SEED)
    assert (result.steps, result.stop_reason) == (1, "agreed")


def test_learning_rate_warms_up_then_decays_to_min_lr() -> None:
    schedule = LoopParams(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert learning_rate(0, schedule) == pytest.approx(0.1)
    assert learning_rate(9, schedule) == pytest.approx(1.0)
    assert learning_rate(60, schedule) == pytest.approx(0.55)  # half-way: the mean
    assert learning_rate(110, schedule) == pytest.approx(0.1)
    assert learning_rate(500, schedule) == pytest.approx(0.1)
    rates = [learning_rate(step, schedule) for step in range(10, 111)]
    assert rates == sorted(rates, reverse=True)


def test_weight_decay_applies_to_matrices_only() -> None:
    model = build_model(GPT, seed=0)
    decay, no_decay = make_optimizer(model, rates(config(weight_decay=0.1))).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(parameter.dim() >= 2 for parameter in decay["params"])
    assert all(parameter.dim() == 1 for parameter in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_config_is_checked_at_the_edge() -> None:
    with pytest.raises(ValidationError, match="budget"):
        LoopParams(max_steps=None, max_tokens=None, max_minutes=None)
    with pytest.raises(ValidationError, match="min_lr"):
        LoopParams(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValidationError, match="learning_rate"):
        LoopParams.model_validate({"max_steps": 1, "learning_rate": 0.1})
    assert LoopParams.model_validate({"max_steps": 1, "betas": [0.9, 0.99]}).betas == (0.9, 0.99)
    with pytest.raises(ValidationError, match=r"max_steps\n.*valid integer"):
        LoopParams.model_validate({"max_steps": "ten"})


def test_a_trained_model_survives_a_checkpoint(tmp_path) -> None:
    lstm = {"family": "lstm", "vocab_size": VOCAB, "block_size": BLOCK, "n_embd": 16}
    model = build_model(lstm, seed=0)
    train_loop(model, *loaders(), config(max_steps=3), seed=SEED)
    save_checkpoint(tmp_path / "model.pt", model, model.config, {"steps": 3})
    loaded, _, _, extra = load_model(tmp_path / "model.pt")
    x = token_stream(BLOCK)[None, :]
    assert extra == {"steps": 3}
    assert torch.equal(loaded(x)[0], model.eval()(x)[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_and_compile_on_cuda() -> None:
    model = build_model({**GPT, "dropout": 0.0}, seed=0)
    steps: list[dict] = []
    loop_config = config(bf16=True, compile=True, max_steps=20, lr=1e-2)
    hooks = LoopHooks(on_step=steps.append)
    result = train_loop(model, *loaders(), loop_config, hooks, seed=SEED, device="cuda")
    assert all(math.isfinite(metrics["loss"]) for metrics in steps)
    assert result.final_train_loss < steps[0]["loss"]
    # Autocast computes in bfloat16 but the weights the optimizer updates stay float32.
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert next(model.parameters()).device.type == "cuda"
