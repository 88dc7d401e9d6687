"""Family "hf": any local Hugging Face causal LM, fine-tuned through aigc's own stages.

    base = describe_base("models/gpt2", root)            # path, architecture, sha256, size
    config = base.config(HFConfig(path="models/gpt2"), tokenizer)  # the job's config
    model = build_model(config, seed=0, initialize=True) # the base's weights, label rows added
    logits, loss = model(idx, targets)                   # the contract every family keeps

The module wraps `AutoModelForCausalLM` (`model.hf_model`). It is built from the recorded
architecture alone (`from_config`), so a registered model loads without the base folder; the
base's weights are read only when a training run starts (`initialize`), from `config.path`,
which must be readable at that path on every Ray node. The tokenizer is the base's own with
one special token per label added (`TextTokenizer.from_pretrained`); the embedding rows of
those new tokens start at the mean of the existing rows, the usual choice for added tokens:
their first logits are then the average token's, not a random direction's.

LoRA (`config.lora`, peft) wraps the model in `initialize`; `merged` folds the adapters into
the weights when the model is registered, so what is registered is a plain model again.
Nothing downloads: every transformers call passes `local_files_only=True`.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aigc.errors import UserError
from aigc.models.base import ModelFamily, next_token_loss
from aigc.models.configs import HFConfig

# The files of a model folder that decide its weights and tokens: hashed for the change key.
_HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".tiktoken")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# Keys of Hugging Face configs that hold a dropout rate (GPT-2, Llama, OPT, GPT-NeoX, ...).
_DROPOUT_KEYS = (
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "attention_dropout",
    "hidden_dropout",
    "dropout",
    "activation_dropout",
)


class BaseModelMissing(UserError):
    """`train.model.path` is not a Hugging Face model folder on this machine."""


def _quiet_transformers() -> None:
    """Loading prints progress bars and notices to the console; a pipeline's log has no use
    for them. Called when a model is loaded, never at import."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def resolve_base(path: str, root: Path) -> Path:
    """The base's folder (relative paths are the project's), or one line on what is missing."""
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        folder = Path(root) / folder
    how = (
        "download it on a connected machine (for example `hf download gpt2 --local-dir DIR`), "
        "copy DIR here and set train.model.path to it"
    )
    if not folder.is_dir():
        hub_id = not Path(path).is_absolute() and path.count("/") <= 1
        what = f"; {path!r} looks like a Hub id, and no such model is on disk" if hub_id else ""
        raise BaseModelMissing(
            f"train.model.path={path!r}: no such folder ({folder}){what}. "
            f"aigc never downloads: {how}"
        )
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file()):
        missing.append("weights (*.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        missing.append("tokenizer files (tokenizer.json)")
    if missing:
        raise BaseModelMissing(
            f"train.model.path={path!r}: {folder} is not a Hugging Face model folder, it lacks "
            f"{', '.join(missing)}; save one with save_pretrained, or {how}"
        )
    return folder.resolve()


def base_sha256(folder: Path) -> str:
    """sha256 over the names and bytes of the folder's weight, config and tokenizer files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        if file.suffix not in _HASHED_SUFFIXES:
            continue
        digest.update(f"{file.name}\0".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BaseModel:
    """A base model folder as the lineage records it."""

    path: str  # as configured
    folder: Path  # resolved on this machine
    architecture: dict  # its config.json, as transformers reads it
    sha256: str
    parameters: int

    def config(self, config: HFConfig, vocab_size: int) -> HFConfig:
        """The job's config: this base's architecture with room for `vocab_size` tokens."""
        architecture = dict(self.architecture)
        architecture["vocab_size"] = max(vocab_size, int(architecture.get("vocab_size") or 0))
        if config.dropout is not None:
            for key in _DROPOUT_KEYS:
                if key in architecture:
                    architecture[key] = config.dropout
        longest = _max_positions(architecture)
        if longest is not None and config.block_size > longest:
            raise UserError(
                f"train.model.block_size={config.block_size} is longer than {self.path}'s "
                f"{longest} positions; set train.model.block_size to at most {longest}"
            )
        return config.model_copy(
            update={
                "path": str(self.folder),
                "vocab_size": architecture["vocab_size"],
                "architecture": architecture,
                "base_sha256": self.sha256,
                "base_parameters": self.parameters,
            }
        )


def lineage_tags(config: HFConfig) -> dict[str, str]:
    """The base model as a run's tags record it: folder, architecture, size, content hash."""
    architecture = config.architecture or {}
    names = architecture.get("architectures") or [architecture.get("model_type")]
    return {
        "aigc.base_model.path": config.path,
        "aigc.base_model.architecture": str(names[0]),
        "aigc.base_model.parameters": str(config.base_parameters),
        "aigc.base_model.sha256": str(config.base_sha256),
    }


def _max_positions(architecture: dict) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(architecture.get(key), int):
            return architecture[key]
    return None


def describe_base(path: str, root: Path) -> BaseModel:
    """The base at `path`: checked, hashed and measured (on the meta device: no weights read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _quiet_transformers()
    folder = resolve_base(path, root)
    try:
        hf_config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise BaseModelMissing(
            f"train.model.path={path!r}: transformers cannot read {folder / 'config.json'} "
            f"({str(error).splitlines()[0]}); save the model with save_pretrained"
        ) from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(hf_config)
    parameters = sum(p.numel() for p in skeleton.parameters())
    return BaseModel(
        path=path,
        folder=folder,
        architecture=hf_config.to_dict(),
        sha256=base_sha256(folder),
        parameters=parameters,
    )


class HFCausalLM(nn.Module):
    """A transformers causal LM behind aigc's `forward(idx, targets) -> (logits, loss)`."""

    def __init__(self, config: HFConfig) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        _quiet_transformers()
        self.config = config
        architecture = dict(config.architecture or {})
        hf_config = AutoConfig.for_model(architecture.pop("model_type"), **architecture)
        self.hf_model = AutoModelForCausalLM.from_config(hf_config)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.hf_model(input_ids=idx, use_cache=False).logits  # (B, T, V)
        loss = None if targets is None else next_token_loss(logits, targets)
        return logits, loss

    def step(self, idx: torch.Tensor, state: object = None) -> tuple[torch.Tensor, object]:
        """(last logits (B, V), key/value cache) for the new positions `idx` (B, T)."""
        out = self.hf_model(input_ids=idx, cache=state, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :], out.cache


def initialize(model: HFCausalLM, config: HFConfig) -> HFCausalLM:
    """The base's pretrained weights, the added tokens' rows at the mean of the others, then
    LoRA adapters if configured (their random halves drawn from the caller's seed)."""
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    base = AutoModelForCausalLM.from_pretrained(
        config.path, local_files_only=True, dtype=torch.float32
    )
    _grow_vocabulary(base, int(config.vocab_size))
    missing, unexpected = model.hf_model.load_state_dict(base.state_dict(), strict=False)
    # Tied output weights are not separate tensors in some state dicts; nothing else may differ.
    if unexpected or [key for key in missing if not key.endswith("lm_head.weight")]:
        raise ValueError(f"{config.path}: weights do not fit its config ({missing, unexpected})")
    if model.hf_model.config.tie_word_embeddings:
        model.hf_model.tie_weights()
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        # peft notices GPT-2's Conv1D layers and transposes for them itself, with a warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="fan_in_fan_out", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*checkpointing", category=FutureWarning)
            model.hf_model = get_peft_model(
                model.hf_model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=list(lora.target_modules) if lora.target_modules else None,
                    task_type="CAUSAL_LM",
                ),
            )
    return model


@torch.no_grad()
def _grow_vocabulary(model: nn.Module, vocab_size: int) -> None:
    """Resize the embeddings (and an untied output layer) to `vocab_size` rows; new rows are
    the mean of the old ones."""
    old = model.get_input_embeddings().weight.size(0)
    if vocab_size == old:
        return
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    layers = [model.get_input_embeddings()]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not layers[0].weight:
        layers.append(output)
    for layer in layers:
        weight = layer.weight  # (V, C)
        weight[old:] = weight[:old].mean(dim=0, keepdim=True)
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias[old:] = bias[:old].mean()


def merged(model: nn.Module) -> nn.Module:
    """The model as it is registered: LoRA adapters folded into the weights (config without
    `lora`), so the registry, serving and export see a plain transformers model."""
    if model.config.lora is None:
        return model
    plain = HFCausalLM(model.config.model_copy(update={"lora": None}))
    adapted = copy.deepcopy(model.hf_model)  # merging unloads in place; the caller keeps its own
    plain.hf_model.load_state_dict(adapted.merge_and_unload().state_dict())
    return plain


def parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters: LoRA trains a small share of them."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _to_hugging_face(model: nn.Module) -> nn.Module:
    return merged(model).hf_model


FAMILY = ModelFamily(
    name="hf",
    config_class=HFConfig,
    model_class=HFCausalLM,
    initialize=initialize,
    finalize=merged,
    to_hugging_face=_to_hugging_face,
)
