"""Each model family's config: the schema of `train.model` in params.yaml and of checkpoints.

    config = GPTConfig(n_layer=4)                       # defaults are the product's defaults
    config = parse_model_config({"family": "lstm", "hidden_size": 256})

Pydantic models, frozen and closed (an unknown key or a wrong type fails at load with the key
named), discriminated by `family`. They live apart from the `nn.Module`s so that reading the
configuration never imports torch. What the data decides is not configured: the tokenizer
sets a text model's `vocab_size`; the image data sets an image model's `image_size`,
`channels` and `num_classes` (`with_data`).

Image families (`image.train.model`): `dcgan`, `vae`, `ddpm`; each carries its own optimizer
settings (`lr`, `betas`), since a GAN, a VAE and a diffusion model want different ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

DEFAULT_FAMILY = "gpt"
HF_FAMILY = "hf"
DEFAULT_IMAGE_FAMILY = "vae"  # measured best on the 8x8 digits at the default budget
# Fields the training data sets, per kind of family; a model is built only once they are set.
_DATA_FIELDS = ("vocab_size", "image_size", "channels", "num_classes", "architecture")


class FamilyConfig(BaseModel):
    """The root of every family's config: closed, frozen, named by `family`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str

    def unset_data_fields(self) -> list[str]:
        return [
            name
            for name in _DATA_FIELDS
            if name in type(self).model_fields and getattr(self, name) is None
        ]


class ModelConfigBase(FamilyConfig):
    """Text families: token ids in, next-token logits out."""

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


class LoraConfig(BaseModel):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the weights when the
    model is registered, so what is registered, served and exported is a plain model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(default=8, ge=1)  # rank of each adapter
    alpha: float = Field(default=16.0, gt=0)  # scale: the update is alpha / r * B @ A
    dropout: float = Field(default=0.0, ge=0, lt=1)
    # Module names to adapt; None: peft's default for the architecture (attention projections).
    target_modules: tuple[str, ...] | None = None


class HFConfig(ModelConfigBase):
    """Any local Hugging Face causal LM (`AutoModelForCausalLM`), fine-tuned from its weights.

    `path` is the model's folder (config.json, weights, tokenizer files), relative to the
    project or absolute; nothing is downloaded. What the base decides is filled in when a job
    is prepared: `architecture` (its config.json, the vocabulary grown by the label tokens),
    `base_sha256` (its weights and tokenizer files) and `base_parameters`.
    """

    family: Literal["hf"] = "hf"
    path: str = Field(min_length=1)
    dropout: float | None = Field(default=None, ge=0, lt=1)  # None: the base's own dropout
    lora: LoraConfig | None = None
    architecture: dict | None = None  # set from the base
    base_sha256: str | None = None  # set from the base
    base_parameters: int | None = None  # set from the base


ModelConfig = Annotated[GPTConfig | LSTMConfig | HFConfig, Field(discriminator="family")]
FAMILY_CONFIGS: dict[str, type[ModelConfigBase]] = {
    "gpt": GPTConfig,
    "lstm": LSTMConfig,
    HF_FAMILY: HFConfig,
}
_ADAPTER = TypeAdapter(ModelConfig)


def with_default_family(value: object, default: str = DEFAULT_FAMILY) -> object:
    """A config mapping without `family` means the default family."""
    if isinstance(value, dict) and "family" not in value:
        return {"family": default, **value}
    return value


def parse_model_config(values: dict) -> GPTConfig | LSTMConfig | HFConfig:
    return _ADAPTER.validate_python(with_default_family(values))


# --- image families ------------------------------------------------------------------------


class ImageConfigBase(FamilyConfig):
    """Image families: (pixels (B, C, H, W) in [-1, 1], class labels (B,)) in, images out."""

    image_size: int | None = Field(default=None, ge=4)  # H = W; set from the data
    channels: int | None = Field(default=None, ge=1)  # 1 grey, 3 RGB; set from the data
    num_classes: int | None = Field(default=None, ge=1)  # set from the data
    lr: float = Field(default=1e-3, gt=0)  # peak rate of every optimizer (the loop's schedule)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(default=0.0, ge=0)

    def with_data(self, image_size: int, channels: int, num_classes: int):
        return self.model_copy(
            update={"image_size": image_size, "channels": channels, "num_classes": num_classes}
        )

    @model_validator(mode="after")
    def _power_of_two(self) -> ImageConfigBase:
        size = self.image_size
        if size is not None and (size & (size - 1) or size < 8):
            raise ValueError(
                f"image_size={size}: the models halve and double the resolution down to 4x4, "
                "so it must be a power of two of at least 8 (8, 16, 32, ...)"
            )
        return self


class DCGANConfig(ImageConfigBase):
    """Class-conditional DCGAN; defaults measured on the 8x8 digits (README)."""

    family: Literal["dcgan"] = "dcgan"
    latent_size: int = Field(default=64, ge=1)  # noise z per image
    generator_width: int = Field(default=64, ge=8)  # channels at full resolution (ngf)
    discriminator_width: int = Field(default=64, ge=8)  # channels after the first conv (ndf)
    lr: float = Field(default=2e-4, gt=0)  # Adam at 2e-4, beta1 0.5: as in the DCGAN paper
    betas: tuple[float, float] = (0.5, 0.999)


class VAEConfig(ImageConfigBase):
    """Conditional VAE with a discretized logistic decoder, so the ELBO is in bits per dim."""

    family: Literal["vae"] = "vae"
    latent_size: int = Field(default=16, ge=1)
    width: int = Field(default=64, ge=8)  # channels at full resolution
    kl_warmup_steps: int = Field(default=200, ge=0)  # KL weight rises 0 -> 1 over these steps
    lr: float = Field(default=2e-3, gt=0)


class DDPMConfig(ImageConfigBase):
    """Class-conditional denoising diffusion (epsilon prediction) with a small U-Net."""

    family: Literal["ddpm"] = "ddpm"
    width: int = Field(default=64, ge=8)  # channels at full resolution
    timesteps: int = Field(default=200, ge=2)
    # Linear betas from beta_start to beta_end, given for 1000 steps and scaled by 1000/T,
    # so a short chain still ends near pure noise (the unscaled 1e-4..0.02 over 200 steps
    # leaves 36% of the signal at the last step).
    beta_start: float = Field(default=1e-4, gt=0, lt=1)
    beta_end: float = Field(default=0.02, gt=0, lt=1)
    label_dropout: float = Field(default=0.1, ge=0, lt=1)  # unconditional share (guidance)
    sample_steps: int = Field(default=20, ge=1)  # DDIM steps when sampling
    guidance: float = Field(default=1.0, ge=0)  # classifier-free guidance weight when sampling
    lr: float = Field(default=2e-3, gt=0)


ImageModelConfig = Annotated[DCGANConfig | VAEConfig | DDPMConfig, Field(discriminator="family")]
IMAGE_FAMILY_CONFIGS: dict[str, type[ImageConfigBase]] = {
    "dcgan": DCGANConfig,
    "vae": VAEConfig,
    "ddpm": DDPMConfig,
}
_IMAGE_ADAPTER = TypeAdapter(ImageModelConfig)


def parse_image_model_config(values: dict) -> DCGANConfig | VAEConfig | DDPMConfig:
    return _IMAGE_ADAPTER.validate_python(with_default_family(values, DEFAULT_IMAGE_FAMILY))
