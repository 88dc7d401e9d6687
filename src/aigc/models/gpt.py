"""A GPT-2-style decoder-only transformer (after nanoGPT's model.py), family name "gpt".

Usage:

    model = build_model(GPTConfig(vocab_size=4096, block_size=256, n_layer=6, n_head=6,
                                  n_embd=384))
    logits, loss = model(idx, targets)   # idx, targets: (B, T) token ids

Pre-norm residual blocks (LayerNorm → attention / MLP → add), causal self-attention through
`scaled_dot_product_attention(is_causal=True)` (which picks a fused kernel when there is one),
learned position embeddings, and an output projection that shares its weight with the token
embedding. Initialisation follows GPT-2: N(0, 0.02) everywhere, with the projections that write
into the residual stream scaled down by 1/sqrt(2 * n_layer) so the stream's variance does not
grow with depth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aigc.models.base import ModelFamily, next_token_loss
from aigc.models.configs import GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # Query, key and value projections for all heads in one matmul.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # (B, T, C)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        # (B, T, C) -> (B, nh, T, hs): heads become a batch dimension.
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)

    def step(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attention of the new positions `x` (B, T, C) over the cached keys and values too."""
        B, T, C = x.size()  # (B, T, C)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if past is not None:  # (B, nh, L, hs) each: the positions already seen
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # A prompt attends causally; one new token attends to everything before it.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)

    def step(self, x: torch.Tensor, past: tuple | None) -> tuple[torch.Tensor, tuple]:
        attended, present = self.attn.step(self.ln_1(x), past)
        x = x + attended  # (B, T, C)
        return x + self.mlp(self.ln_2(x)), present  # (B, T, C)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: one matrix both reads tokens in and scores tokens out.
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (token embeddings count,
        as they are also the output layer), the convention of the scaling-law papers."""
        total = sum(parameter.numel() for parameter in self.parameters())
        if non_embedding:
            total -= self.transformer.wpe.weight.numel()
        return total

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.size()  # (B, T)
        if idx.size(1) > self.config.block_size:
            raise ValueError(
                f"sequence length {T} exceeds block_size {self.config.block_size}; crop the input"
            )
        position = torch.arange(T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(position)  # (B, T, C)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)  # (B, T, C)
        x = self.transformer.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = next_token_loss(logits, targets)  # scalar
        return logits, loss

    def step(
        self, idx: torch.Tensor, cache: list[tuple] | None = None
    ) -> tuple[torch.Tensor, list[tuple]]:
        """Logits of the LAST position only, (B, V), for sampling: `idx` (B, T) are the new
        tokens, `cache` the keys and values of the positions before them (None: none). The
        positions so far may not exceed block_size; the caller re-starts from a cropped
        context when they would (aigc.models.base.generate does)."""
        B, T = idx.size()  # (B, T)
        start = 0 if cache is None else cache[0][0].size(2)
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed block_size {self.config.block_size}")
        position = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(position)  # (B, T, C)
        present = []
        for index, block in enumerate(self.transformer.h):
            x, layer_cache = block.step(x, None if cache is None else cache[index])
            present.append(layer_cache)
        x = self.transformer.ln_f(x[:, -1, :])  # (B, C)
        return self.lm_head(x), present  # (B, V)


def _to_gpt2(model: nn.Module) -> nn.Module:
    """`aigc export`: the same model as a transformers GPT2LMHeadModel (aigc.models.gpt_hf,
    imported only when asked for, so that this module never imports transformers)."""
    from aigc.models.gpt_hf import to_gpt2

    return to_gpt2(model)


FAMILY = ModelFamily(name="gpt", config_class=GPTConfig, model_class=GPT, to_hugging_face=_to_gpt2)
