"""A text model version as a Hugging Face folder (`aigc export MODEL_URI OUT_DIR`).

    export_generator(load_generator("models:/aigc-text@champion"), Path("gpt-export"))
    # then, anywhere with transformers:
    pipeline("text-generation", model="gpt-export")("<|endoftext|><|label:networking|>")

The folder holds the model (`save_pretrained`: config.json, model.safetensors), its tokenizer
as a `PreTrainedTokenizerFast` (the same vocabulary, the end-of-text token, and one special
token per label), a generation_config.json that stops at the end-of-text token as aigc does,
and a README.md model card. The family converts its model (`ModelFamily.to_hugging_face`:
the built-in GPT as GPT-2, an hf version as its merged model); a family with no Hugging Face
equivalent (LSTM) and image models are refused. The folder is written beside OUT_DIR under a
temporary name and renamed when complete, so OUT_DIR is either absent or whole.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from aigc import __version__
from aigc.errors import UserError
from aigc.models.base import family_names, get_family, unwrap_model
from aigc.text.generator import TextGenerator


class ExportError(UserError):
    """A model or an output folder that `aigc export` cannot write: the message says why."""


def exportable_families() -> list[str]:
    """The text families that have a Hugging Face equivalent (image families have none)."""
    names = []
    for name in family_names():
        try:
            family = get_family(name)
        except ImportError:  # a family whose module is not there (yet)
            continue
        if family.to_hugging_face is not None:
            names.append(name)
    return names


def export_generator(generator: TextGenerator, out_dir: Path) -> Path:
    """Write `generator` to `out_dir` as a Hugging Face model folder; returns `out_dir`.

    `out_dir` must not exist, or be an empty folder, and the folder it goes in must exist."""
    out_dir = Path(out_dir)
    if not isinstance(generator, TextGenerator):
        family = getattr(generator, "family", "?")
        raise ExportError(
            f"an image model (family {family}) has no Hugging Face export; `aigc export` "
            "writes text models: export a version of aigc-text"
        )
    family = get_family(generator.family)
    if family.to_hugging_face is None:
        raise ExportError(
            f"family {family.name!r} has no Hugging Face equivalent, so it cannot be exported; "
            f"families that can: {', '.join(exportable_families())}"
        )
    check_out_dir(out_dir)
    with _quiet_transformers():
        hf_model = family.to_hugging_face(unwrap_model(generator.model))
        tokenizer = hf_tokenizer(generator)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
        try:
            hf_model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            # Written after the model's own: generation stops where an aigc document ends.
            _generation_config(hf_model, tokenizer).save_pretrained(staging)
            (staging / "README.md").write_text(model_card(generator), encoding="utf-8")
            if out_dir.is_dir():
                out_dir.rmdir()  # empty (checked above); rename needs the name free
            staging.rename(out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return out_dir


def hf_tokenizer(generator: TextGenerator):
    """The generator's tokenizer as a `transformers.PreTrainedTokenizerFast`."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = generator.tokenizer
    backend = tokenizer.backend()
    processor = backend.post_processor
    if processor is not None and processor.num_special_tokens_to_add(False) > 0:
        # A pretrained tokenizer's beginning-of-text token (Llama's <s>): aigc encodes without
        # it, and its documents start with a label token, so the prompt ids must match aigc's.
        backend.post_processor = None
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        extra_special_tokens=tokenizer.label_tokens(),
        model_max_length=generator.config.block_size,
        # decode(encode(text)) == text, as aigc's own decode: no space clean-up.
        clean_up_tokenization_spaces=False,
    )


def model_card(generator: TextGenerator) -> str:
    """README.md of an exported folder: where it comes from, its labels, how to prompt it."""
    tokenizer = generator.tokenizer
    eos, first = tokenizer.eos_token, (tokenizer.label_tokens() or [""])[0]
    labels = "\n".join(
        f"- `{label}`: `{token}`"
        for label, token in zip(tokenizer.labels, tokenizer.label_tokens(), strict=True)
    )
    return f"""---
library_name: transformers
pipeline_tag: text-generation
---
# aigc text model ({generator.family})

Exported by aigc {__version__} (`aigc export`) from a model of family `{generator.family}`.
Context: {generator.config.block_size} tokens, prompt and continuation together.

## Labels

Each document the model was trained on starts with its label's token and ends with `{eos}`:

{labels}

## How to prompt it

Start with the end-of-text token, then a label token, then any text to continue (aigc's own
prompt); generation stops at `{eos}`:

```python
from transformers import pipeline

generate = pipeline("text-generation", model="PATH/TO/THIS/FOLDER")
generate("{eos}{first}The", max_new_tokens=50, do_sample=False)
```

Without a label token the model chooses the label itself, as its first token.
"""


def check_out_dir(out_dir: Path) -> None:
    """An ExportError unless `out_dir` can be exported into: absent or empty, in a folder that
    exists."""
    if not out_dir.absolute().parent.is_dir():
        raise ExportError(
            f"OUT_DIR {out_dir}: the folder {out_dir.absolute().parent} does not exist; create "
            "it first or choose another path"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(
            f"OUT_DIR {out_dir} exists and is not an empty folder; export into a new folder, "
            "or remove it first"
        )


def _generation_config(hf_model, tokenizer):
    """The model's generation config, ending at the tokenizer's end-of-text token and padding
    with its pad token."""
    import copy

    config = copy.deepcopy(hf_model.generation_config)
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    # The file is the authority: transformers may otherwise rebuild a config marked as derived
    # from the model's config.json, which names no end-of-text token.
    config._from_model_config = False
    return config


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' progress bars off while exporting (they are on again afterwards, if they
    were on): a CLI command prints its own result."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
