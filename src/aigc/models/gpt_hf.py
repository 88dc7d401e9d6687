"""The built-in GPT as a Hugging Face `GPT2LMHeadModel`, for `aigc export`.

    hf_model = to_gpt2(model)   # model: aigc.models.gpt.GPT; same logits on the same ids

aigc's GPT is GPT-2's layout: the same module names, pre-norm blocks, learned positions, an
output layer tied to the token embedding. Two differences are bridged here: GPT-2's `Conv1D`
stores its weight as (in, out) where `nn.Linear` stores (out, in), so the four projections
are transposed; and aigc uses the exact GELU, which GPT-2 calls "gelu" (its own default is
"gelu_new", the tanh approximation). A config with `bias=False` has no biases; GPT-2 always
has them, so they are zero. transformers is imported here only, never by aigc.models.gpt.
"""

from __future__ import annotations

import torch
from torch import nn

# The Linear layers that are Conv1D in GPT-2: their weights are transposed.
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def to_gpt2(model: nn.Module) -> nn.Module:
    """A `transformers.GPT2LMHeadModel` with `model`'s weights (a copy, on the CPU, float32),
    in eval mode; its logits equal `model`'s on the same token ids."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = model.config
    layer_norm = model.transformer.ln_f
    hf_config = GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=4 * config.n_embd,
        activation_function="gelu",  # exact GELU, as nn.GELU(); not GPT-2's "gelu_new"
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=layer_norm.eps,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf_model = GPT2LMHeadModel(hf_config)
    hf_model.load_state_dict(_gpt2_state(model, hf_model.state_dict()), strict=True)
    return hf_model.eval()


def _gpt2_state(model: nn.Module, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`target` (a GPT2LMHeadModel's state dict) filled from `model`'s: the same names, the
    Conv1D weights transposed, and zeros for every bias `model` does not have."""
    source = {
        name: tensor.detach().to("cpu", torch.float32)
        for name, tensor in model.state_dict().items()
    }
    state = {}
    for name, tensor in target.items():
        if name not in source:
            # A bias aigc's bias=False config leaves out (GPT-2 always has one), or a buffer of
            # GPT-2's own that the state dict carries.
            if not name.endswith(".bias"):
                raise ValueError(f"no weight for {name} in the aigc model")
            state[name] = torch.zeros_like(tensor)
            continue
        value = source[name]
        if name.endswith(".weight") and any(f".{layer}." in name for layer in _CONV1D):
            value = value.t()  # nn.Linear (out, in) -> Conv1D (in, out)
        if value.shape != tensor.shape:
            raise ValueError(
                f"{name}: aigc's {tuple(value.shape)} vs GPT-2's {tuple(tensor.shape)}"
            )
        state[name] = value.contiguous()
    return state
