"""A recurrent language-model baseline (an LSTM), family name "lstm".

Usage:

    model = build_model(LSTMConfig(vocab_size=4096, n_embd=256, hidden_size=512, n_layer=2))
    logits, loss = model(idx, targets)   # same contract as the GPT

It is here to tell us whether the transformer earns its cost: same tokens, same loop, same
forward signature. Each forward starts from a zero state (no state carried between batches),
so a block is modelled exactly as the GPT models it and `generate` works unchanged.
`block_size` does not limit the recurrence; it is kept so both families crop context alike.

With `tie_weights`, the output layer shares the embedding matrix (Press & Wolf, 2017); when
`hidden_size != n_embd` a linear projection brings the LSTM output down to `n_embd` first.
Embeddings are scaled by sqrt(n_embd) on the way in; `_init_weights` says why.
"""

from __future__ import annotations

import torch
from torch import nn

from aigc.models.base import ModelFamily, next_token_loss
from aigc.models.configs import LSTMConfig


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.input_scale = config.n_embd**0.5
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            input_size=config.n_embd,
            hidden_size=config.hidden_size,
            num_layers=config.n_layer,
            batch_first=True,
            # nn.LSTM applies this between layers only; the outer dropouts cover the ends.
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        output_size = config.hidden_size
        self.projection: nn.Module = nn.Identity()
        if config.tie_weights and config.hidden_size != config.n_embd:
            self.projection = nn.Linear(config.hidden_size, config.n_embd, bias=False)
            output_size = config.n_embd
        self.decoder = nn.Linear(output_size, config.vocab_size, bias=False)
        self._init_weights()
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def _init_weights(self) -> None:
        # Embeddings N(0, 1/n_embd), multiplied by sqrt(n_embd) on the way in (as in
        # "Attention Is All You Need", section 3.4): the LSTM sees unit-scale inputs, which it
        # needs to learn quickly (with N(0, 0.02) inputs it sits on the unigram plateau for
        # hundreds of steps), while the tied output layer still starts with logits near zero,
        # so the initial loss is about ln(vocab_size). The LSTM keeps PyTorch's initialisation.
        std = self.config.n_embd**-0.5
        nn.init.normal_(self.embedding.weight, mean=0.0, std=std)
        nn.init.normal_(self.decoder.weight, mean=0.0, std=self.decoder.in_features**-0.5)

    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.size()  # (B, T)
        if idx.size(1) > self.config.block_size:
            raise ValueError(
                f"sequence length {T} exceeds block_size {self.config.block_size}; crop the input"
            )
        x = self.dropout(self.embedding(idx) * self.input_scale)  # (B, T, E)
        hidden, _ = self.lstm(x)  # (B, T, H)
        hidden = self.projection(self.dropout(hidden))  # (B, T, E) when tied, else (B, T, H)
        logits = self.decoder(hidden)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = next_token_loss(logits, targets)  # scalar
        return logits, loss

    def step(self, idx: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        """Logits of the LAST position only, (B, V), carrying the hidden state: `idx` (B, T) are
        the new tokens, `state` the (h, c) after the tokens before them (None: a zero state)."""
        x = self.embedding(idx) * self.input_scale  # (B, T, E)
        hidden, state = self.lstm(x, state)  # (B, T, H)
        return self.decoder(self.projection(hidden[:, -1, :])), state  # (B, V)


FAMILY = ModelFamily(name="lstm", config_class=LSTMConfig, model_class=LSTMLanguageModel)
