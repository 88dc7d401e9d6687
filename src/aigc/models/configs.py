"""Each model family's config: the schema of `train.model` in params.yaml and of checkpoints.

    config = GPTConfig(n_layer=4)                       # defaults are the product's defaults
    config = parse_model_config({"family": "lstm", "hidden_size": 256})

Pydantic models, frozen and closed (an unknown key or a wrong type fails at load with the key
named), discriminated by `family`. They live apart from the `nn.Module`s so that reading the
configuration never imports torch. `vocab_size` is not configured: the tokenizer sets it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

DEFAULT_FAMILY = "gpt"


class ModelConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int | None = Field(default=None, ge=1)  # set from the tokenizer
    block_size: int = Field(default=128, ge=1)  # longest context, in tokens
    dropout: float = Field(default=0.0, ge=0, lt=1)  # short CPU budgets learn faster without

    def with_vocab(self, vocab_size: int):
        return self.model_copy(update={"vocab_size": vocab_size})


class GPTConfig(ModelConfigBase):
    family: Literal["gpt"] = "gpt"
    n_layer: int = Field(default=3, ge=1)
    n_head: int = Field(default=4, ge=1)
    n_embd: int = Field(default=96, ge=1)
    bias: bool = True  # biases in Linear layers and LayerNorms; False is a little faster

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        return self


class LSTMConfig(ModelConfigBase):
    family: Literal["lstm"] = "lstm"
    n_embd: int = Field(default=96, ge=1)
    hidden_size: int = Field(default=256, ge=1)
    n_layer: int = Field(default=2, ge=1)
    tie_weights: bool = True


ModelConfig = Annotated[GPTConfig | LSTMConfig, Field(discriminator="family")]
FAMILY_CONFIGS: dict[str, type[ModelConfigBase]] = {"gpt": GPTConfig, "lstm": LSTMConfig}
_ADAPTER = TypeAdapter(ModelConfig)


def with_default_family(value: object) -> object:
    """A config mapping without `family` means the default family."""
    if isinstance(value, dict) and "family" not in value:
        return {"family": DEFAULT_FAMILY, **value}
    return value


def parse_model_config(values: dict) -> GPTConfig | LSTMConfig:
    return _ADAPTER.validate_python(with_default_family(values))
