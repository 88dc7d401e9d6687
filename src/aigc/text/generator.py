"""A trained text generator: model + tokenizer, saved together as one self-contained folder.

    generator = TextGenerator.load("path/to/bundle")
    texts = generator.generate(["The socket"], ["networking"], max_new_tokens=64, seed=0)

A bundle folder holds `model.pt` (checkpoint with family and config inside) and
`tokenizer.json`; nothing else is needed to load it, no params file. Conditioning mirrors
training, where documents are concatenated as `<label> text <eos> <label> text <eos> …`: a
prompt is `<eos> <label> prompt…`, and an unconditioned prompt is `<eos> prompt…` (the model
then picks the label itself, as its first sampled token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from aigc.config import EvaluateParams
from aigc.errors import UserError
from aigc.models.base import generate as sample_tokens
from aigc.models.checkpoint import MODEL_FILE, load_model, save_checkpoint
from aigc.models.configs import ModelConfigBase
from aigc.text.tokenizer import TextTokenizer

_SAMPLING = EvaluateParams()  # sampling defaults: the evaluate section's, defined there once
TOKENIZER_FILE = "tokenizer.json"


class GenerationError(UserError, ValueError):
    """A sampling request this model cannot serve (an unknown label, a negative length).

    Also a ValueError, which is what callers of a library function expect for a bad argument."""


@dataclass
class TextGenerator:
    model: nn.Module
    tokenizer: TextTokenizer
    config: ModelConfigBase
    extra: dict = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.config.family

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> TextGenerator:
        directory = Path(directory)
        model, _, config, extra = load_model(directory / MODEL_FILE, map_location=device)
        tokenizer = TextTokenizer.load(directory / TOKENIZER_FILE)
        return cls(model=model.eval(), tokenizer=tokenizer, config=config, extra=extra)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_checkpoint(directory / MODEL_FILE, self.model, self.config, self.extra)
        self.tokenizer.save(directory / TOKENIZER_FILE)
        return directory

    @property
    def labels(self) -> tuple[str, ...]:
        return self.tokenizer.labels

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_ids(self, prompt: str, label: str | None) -> list[int]:
        """`<eos> [<label>] prompt`: the context a document starts in during training."""
        if label is not None and label not in self.tokenizer.labels:
            raise GenerationError(
                f"unknown label {label!r}: this model knows {', '.join(self.labels)}; "
                "give one of them, or no label for an unconditioned text"
            )
        head = [self.tokenizer.eos_id]
        if label is not None:
            head.append(self.tokenizer.label_token_id(label))
        return head + self.tokenizer.encode(prompt)

    def generate(
        self,
        prompts: list[str],
        labels: list[str | None],
        max_new_tokens: int = _SAMPLING.max_new_tokens,
        temperature: float = _SAMPLING.temperature,
        top_k: int | None = _SAMPLING.top_k,
        seed: int = _SAMPLING.seed,
        seeds: list[int] | None = None,
    ) -> list[str]:
        """The continuation of each prompt (without the prompt), stopped at end of document.

        Rows with the same prompt and label are sampled as one batch from `seed`'s stream.
        With `seeds` (one per row) every row draws from its own, so rows of any prompts of one
        length are batched together and a row's text does not depend on the other rows."""
        if len(prompts) != len(labels):
            raise ValueError(f"{len(prompts)} prompts but {len(labels)} labels")
        if max_new_tokens < 0:
            raise GenerationError(f"max_new_tokens={max_new_tokens}: give a length >= 0")
        if temperature < 0:
            raise GenerationError(f"temperature={temperature}: give a number >= 0 (0 is greedy)")
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        ids = [
            self.prompt_ids(prompt, label) for prompt, label in zip(prompts, labels, strict=True)
        ]
        groups: dict[tuple[int, ...], list[int]] = {}
        for row, row_ids in enumerate(ids):  # by prompt, or by length with a seed per row
            groups.setdefault((len(row_ids),) if seeds else tuple(row_ids), []).append(row)
        results = [""] * len(prompts)
        for rows in groups.values():
            batch = torch.tensor([ids[row] for row in rows], dtype=torch.long)  # (B, T)
            out = sample_tokens(
                self.model,
                batch,
                max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                generator=generator,
                eos_id=self.tokenizer.eos_id,
                row_seeds=[seeds[row] for row in rows] if seeds else None,
            )
            for row, sequence in zip(rows, out[:, batch.size(1) :].tolist(), strict=True):
                if self.tokenizer.eos_id in sequence:
                    sequence = sequence[: sequence.index(self.tokenizer.eos_id)]
                results[row] = self.tokenizer.decode(sequence)
        return results
