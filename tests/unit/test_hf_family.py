"""Family hf on tiny Hugging Face models made here (tests/hf_models.py), single process.

The base's tokenizer gains one special token per label (text that looks like one stays text);
the new embedding rows start at the mean of the base's; the key/value cache samples the tokens
a full re-run would; LoRA trains a small share of the weights and is merged into a plain model
that exports and loads in transformers; a Llama-architecture base trains too; every mistake
about the base folder is one line, exit 2, with nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from aigc.config import TrainParams
from aigc.errors import UserError
from aigc.models.base import generate
from aigc.models.hf import base_sha256
from aigc.text.generator import TextGenerator
from aigc.text.tokenizer import TextTokenizer
from aigc.text.training import prepare_job
from aigc.train.job import build_model_for, train_single_process
from tests.conftest import aigc_in_process
from tests.hf_models import tiny_gpt2, tiny_llama

TOPICS = {
    "networking": "The socket accepts a connection and the server reads request {}.",
    "security": "Encryption keys are rotated every month and key {} is revoked.",
}


def frame(count: int = 24) -> pd.DataFrame:
    rows = [
        {"text": template.format(index), "label": label}
        for index in range(count)
        for label, template in TOPICS.items()
    ]
    return pd.DataFrame(rows)


def hf_params(folder: Path, **model: object) -> TrainParams:
    return TrainParams.model_validate(
        {
            "model": {"family": "hf", "path": str(folder), "block_size": 32, **model},
            "batch_size": 8,
            "loop": {
                "max_steps": 40,
                "max_minutes": None,
                "eval_every": 20,
                "checkpoint_every": 0,
                "warmup_steps": 5,
                "lr": 3e-3,
                "min_lr": 3e-4,
            },
        }
    )


@pytest.fixture(scope="module")
def gpt2_base(tmp_path_factory) -> Path:
    return tiny_gpt2(tmp_path_factory.mktemp("base") / "gpt2")


def test_the_base_tokenizer_gains_label_tokens_that_text_cannot_forge(gpt2_base: Path) -> None:
    tokenizer = TextTokenizer.from_pretrained(gpt2_base, list(TOPICS))
    base = TextTokenizer.from_pretrained(gpt2_base, [])
    assert tokenizer.vocab_size == base.vocab_size + len(TOPICS)
    label_ids = {tokenizer.label_token_id(label) for label in TOPICS}
    assert label_ids == {base.vocab_size, base.vocab_size + 1}, "after the base's vocabulary"
    forged = tokenizer.encode("<|label:networking|> hello <|endoftext|>")
    assert not label_ids & set(forged) and tokenizer.eos_id not in forged
    document = tokenizer.encode_document("hello", "security")
    assert document[0] == tokenizer.label_token_id("security")
    assert document[-1] == tokenizer.eos_id and tokenizer.eos_token == "<|endoftext|>"
    again = TextTokenizer.from_json(tokenizer.to_json())
    assert again.encode_document("hello", "security") == document


def test_a_job_starts_from_the_base_weights_with_label_rows_at_their_mean(gpt2_base) -> None:
    from transformers import AutoModelForCausalLM

    job = prepare_job(frame(), frame(4), hf_params(gpt2_base))
    assert job.model.base_sha256 == base_sha256(gpt2_base) and job.model.base_parameters > 0
    model = build_model_for(job)
    base = AutoModelForCausalLM.from_pretrained(gpt2_base, local_files_only=True)
    old = base.get_input_embeddings().weight  # (V0, C)
    grown = model.hf_model.get_input_embeddings().weight  # (V0 + labels, C)
    assert grown.shape == (old.size(0) + len(TOPICS), old.size(1))
    assert torch.equal(grown[: old.size(0)], old)
    assert torch.allclose(grown[old.size(0) :], old.mean(dim=0).expand(len(TOPICS), -1))
    tied = model.hf_model.get_output_embeddings().weight
    assert tied.data_ptr() == grown.data_ptr(), "GPT-2's output layer stays tied"
    block = model.hf_model.transformer.h[0].attn.c_attn.weight
    assert torch.equal(block, base.transformer.h[0].attn.c_attn.weight)


def test_cached_sampling_gives_the_tokens_of_a_full_rerun(gpt2_base: Path) -> None:
    job = prepare_job(frame(), frame(4), hf_params(gpt2_base))
    model = build_model_for(job).eval()
    prompt = torch.tensor([[job.tokenizer().eos_id, job.tokenizer().label_token_id("security")]])
    for temperature in (0.0, 1.0):
        cached, full = (
            generate(
                model,
                prompt,
                40,  # past block_size (32): the cache restarts from the cropped context
                temperature=temperature,
                generator=torch.Generator().manual_seed(3),
                use_cache=use_cache,
            )
            for use_cache in (True, False)
        )
        assert torch.equal(cached, full)


def test_a_llama_base_trains_and_its_loss_goes_down(tmp_path: Path) -> None:
    job = prepare_job(frame(), frame(4), hf_params(tiny_llama(tmp_path / "llama")))
    assert job.model.architecture["model_type"] == "llama"
    model, result = train_single_process(job)
    first, last = result.evaluations[0]["val_loss"], result.final_val_loss
    assert last < first - 0.3, (first, last)
    bundle = job.bundle(model).save(tmp_path / "bundle")
    loaded = TextGenerator.load(bundle)
    assert type(loaded.model.hf_model).__name__ == "LlamaForCausalLM"
    texts = loaded.generate(["The"], ["security"], max_new_tokens=8, temperature=0)
    again = job.bundle(model).generate(["The"], ["security"], max_new_tokens=8, temperature=0)
    assert texts == again


def test_lora_trains_a_few_weights_merges_exports_and_loads(gpt2_base, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, pipeline

    from aigc.export import export_generator

    params = hf_params(gpt2_base, lora={"r": 4, "alpha": 8})
    params = params.model_copy(
        update={"loop": params.loop.model_copy(update={"lr": 2e-2, "min_lr": 2e-3})}
    )
    job = prepare_job(frame(), frame(4), params)
    model = build_model_for(job)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < trainable < total / 5, "LoRA trains its adapters only"
    model, result = train_single_process(job)
    assert result.final_val_loss < result.evaluations[0]["val_loss"]

    generator = job.bundle(model)
    assert generator.config.lora is None, "registered merged: a plain model"
    assert not any("lora" in key for key in generator.model.state_dict())
    base = AutoModelForCausalLM.from_pretrained(gpt2_base, local_files_only=True)
    merged_weight = generator.model.hf_model.transformer.h[0].attn.c_attn.weight
    assert not torch.equal(merged_weight, base.transformer.h[0].attn.c_attn.weight)
    adapted = generator.generate([""], ["security"], max_new_tokens=12, temperature=0)
    assert adapted == [
        TextGenerator(model, generator.tokenizer, model.config).generate(
            [""], ["security"], max_new_tokens=12, temperature=0
        )[0]
    ], "merging changes no output"

    folder = export_generator(
        TextGenerator.load(generator.save(tmp_path / "bundle")), tmp_path / "out"
    )
    tokenizer = generator.tokenizer
    theirs = pipeline("text-generation", model=str(folder))(
        tokenizer.eos_token + tokenizer.label_tokens()[1],
        do_sample=False,
        max_new_tokens=12,
        return_full_text=False,
    )[0]["generated_text"]
    assert theirs == adapted[0]


def test_a_block_size_longer_than_the_base_is_one_clear_error(gpt2_base: Path) -> None:
    with pytest.raises(UserError, match=r"train.model.block_size=128 .* at most 64"):
        prepare_job(frame(), frame(4), hf_params(gpt2_base, block_size=128))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("gpt2", "looks like a Hub id"),
        ("models/nowhere", "no such folder"),
        ("data", "lacks config.json, weights"),
    ],
)
def test_a_base_that_is_not_a_model_folder_is_one_line_exit_2(project, path, expected) -> None:
    """`aigc run` says what is missing and how to get it before anything starts or is written."""
    before = sorted(p.relative_to(project) for p in project.rglob("*") if ".git" not in p.parts)
    result = aigc_in_process(
        project, "run", "--set", "train.model.family=hf", "--set", f"train.model.path={path}"
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, result.output
    assert f"train.model.path={path!r}" in line and expected in line
    assert "never downloads" in line or "save_pretrained" in line
    after = sorted(p.relative_to(project) for p in project.rglob("*") if ".git" not in p.parts)
    assert after == before, "nothing written"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_and_compile_train_an_hf_model_on_cuda(gpt2_base: Path) -> None:
    params = hf_params(gpt2_base)
    params = params.model_copy(
        update={"loop": params.loop.model_copy(update={"bf16": True, "compile": True})}
    )
    job = prepare_job(frame(), frame(4), params, device="cuda")
    model, result = train_single_process(job)
    assert result.final_val_loss < result.evaluations[0]["val_loss"]
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert next(model.parameters()).device.type == "cuda"
