"""Ray checkpoint states load with weights_only=True: a state that would run code is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from aigc.config import LoopParams
from aigc.models import build_model
from aigc.ray.checkpoints import load_training_state
from aigc.text.dataset import BlockDataset
from aigc.train.loop import LoopHooks, train_loop

MODEL = {"family": "gpt", "vocab_size": 32, "block_size": 8, "n_layer": 1, "n_head": 2}


class CodeOnLoad:
    """Unpickling this runs `os.system`: what a tampered checkpoint would carry."""

    def __init__(self, evidence: Path) -> None:
        self.evidence = evidence

    def __reduce__(self):
        return (os.system, (f"touch {self.evidence}",))


def saved_state() -> dict:
    """A state as the loop hands it to the Ray worker, plus what rank 0 adds."""
    tokens = torch.randint(0, 32, (400,), generator=torch.Generator().manual_seed(0))
    loader = DataLoader(BlockDataset(tokens, 8), batch_size=4)
    states: list[dict] = []
    train_loop(
        build_model({**MODEL, "n_embd": 16}, seed=0),
        loader,
        None,
        LoopParams(max_steps=2, max_minutes=None, warmup_steps=1, checkpoint_every=2),
        LoopHooks(save_checkpoint=states.append),
        seed=0,
    )
    shared = {key: value for key, value in states[-1].items() if key != "rng"}
    return {**shared, "summary": {"step": 2.0, "train_loss": 3.0}}


def test_a_real_training_state_loads_with_weights_only(tmp_path):
    state = saved_state()
    torch.save(state, tmp_path / "state.pt")
    loaded = load_training_state(tmp_path / "state.pt")
    assert loaded["step"] == 2 and loaded["summary"] == state["summary"]
    assert all(torch.equal(loaded["model"][key], state["model"][key]) for key in state["model"])
    assert (
        loaded["optimizers"]["model"]["param_groups"]
        == state["optimizers"]["model"]["param_groups"]
    )


def test_a_state_that_runs_code_on_load_is_refused(tmp_path):
    evidence = tmp_path / "code-ran"
    tampered = tmp_path / "state.pt"
    torch.save({**saved_state(), "extra": CodeOnLoad(evidence)}, tampered)

    with pytest.raises(ValueError, match="refused to load the training state") as refused:
        load_training_state(tampered)
    assert str(tampered) in str(refused.value) and "posix.system" in str(refused.value)
    assert not evidence.exists(), "nothing in the file may have run"

    torch.load(tampered, weights_only=False)  # what the runner did before: the code runs
    assert evidence.exists()
