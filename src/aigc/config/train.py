"""The text training and evaluation sections: tokenizer, loop, Ray cluster, model (one of
aigc.models.configs' families), evaluate. The image modality reuses LoopParams and the
cluster of `train.ray`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from aigc.config.base import Section
from aigc.models.configs import DEFAULT_FAMILY, FAMILY_CONFIGS, ModelConfig, with_default_family

# --- train / evaluate -----------------------------------------------------------------


class TokenizerParams(Section):
    vocab_size: int = Field(default=1024, ge=300)  # byte-level BPE, trained on the train split
    min_frequency: int = Field(default=2, ge=1)


class LoopParams(Section):
    """The training loop (aigc.train.loop): optimizer, schedule, budgets, checkpoints.

    Budgets: training stops at the first of max_steps, max_tokens, max_minutes reached."""

    lr: float = Field(default=3e-3, gt=0)
    min_lr: float = Field(default=3e-4, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = Field(default=50, ge=0)
    lr_decay_steps: int | None = Field(default=None, gt=0)  # None: max_steps
    grad_clip: float = Field(default=1.0, ge=0)  # max global grad norm; 0 disables clipping
    grad_accumulation: int = Field(default=1, ge=1)  # micro-batches per optimizer step
    max_steps: int | None = Field(default=2000, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=1.6, gt=0)
    eval_every: int = Field(default=100, ge=0)  # steps between validations; 0: at the end
    eval_batches: int = Field(default=10, ge=1)
    checkpoint_every: int = Field(default=200, ge=0)  # steps between checkpoints; 0: at the end
    bf16: bool = True  # CUDA only
    compile: bool = False  # CUDA only

    @model_validator(mode="after")
    def _consistent(self) -> LoopParams:
        if self.max_steps is None and self.max_tokens is None and self.max_minutes is None:
            raise ValueError("a budget is needed: set max_steps, max_tokens or max_minutes")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas={self.betas} must be two numbers in [0, 1)")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        return self


class RayParams(Section):
    address: str | None = None  # None: start a local Ray; "auto" or ray://host:port: join
    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool | Literal["auto"] = "auto"  # auto: GPUs when the cluster has them
    cpus_per_worker: float = Field(default=1.0, gt=0)
    max_failures: int = Field(default=2, ge=-1)  # worker crashes survived (resume)
    storage_path: str = ".aigc/ray"  # checkpoints; shared storage on a real cluster
    checkpoints_to_keep: int = Field(default=2, ge=1)  # the newest; older ones are deleted


class TrainParams(Section):
    model: ModelConfig = Field(default_factory=lambda: FAMILY_CONFIGS[DEFAULT_FAMILY]())
    tokenizer: TokenizerParams = TokenizerParams()
    batch_size: int = Field(default=16, ge=1)  # per worker
    seed: int = 1337
    loop: LoopParams = LoopParams()
    ray: RayParams = RayParams()

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, value: Any) -> Any:
        return with_default_family(value)


class EvaluateParams(Section):
    """Evaluation on the test split; the same settings and seed give the same report."""

    batch_size: int = Field(default=16, ge=1)  # windows scored per forward pass
    continuation_documents: int = Field(default=24, ge=0)  # 0 switches continuation off
    prompt_fraction: float = Field(default=0.5, gt=0, lt=1)  # share of a document as prompt
    max_new_tokens: int = Field(default=64, ge=1)  # cap on a continuation's length
    samples_per_label: int = Field(default=10, ge=0)  # label control; 0 switches it off
    sample_tokens: int = Field(default=96, ge=1)  # length of a label-control sample
    temperature: float = Field(default=0.8, ge=0)  # 0: greedy
    top_k: int | None = Field(default=50, ge=1)
    seed: int = 0  # the root of every sampling seed
    shards: int = Field(default=2, ge=1)  # Ray tasks the evaluation is spread over
