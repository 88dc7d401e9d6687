"""`aigc export` of a registered champion (a built-in GPT trained by the real pipeline, from
`trained_project`) gives a folder that transformers' text-generation pipeline loads offline,
and continues each label token greedily exactly as the aigc generator of that version does.

Slow only for `trained_project` (trained once per test process); the export takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aigc.tracking import load_generator
from tests.conftest import aigc_in_process

pytestmark = pytest.mark.slow

CHAMPION_URI = "models:/aigc-text@champion"


def test_the_exported_champion_generates_as_aigc_generate(trained_project, tmp_path: Path):
    from transformers import pipeline

    root, settings, _ = trained_project
    out = tmp_path / "champion-hf"
    result = aigc_in_process(root, "export", CHAMPION_URI, str(out))
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        path.name for path in out.iterdir()
    }
    generator = load_generator(CHAMPION_URI, settings)
    assert generator.family == "gpt"
    generate = pipeline("text-generation", model=str(out))
    new_tokens = generator.config.block_size - 2  # the prompt: end of text, label
    tokenizer = generator.tokenizer
    continuations = []
    for label, token in zip(tokenizer.labels, tokenizer.label_tokens(), strict=True):
        ours = generator.generate([""], [label], temperature=0, max_new_tokens=new_tokens)[0]
        theirs = generate(
            tokenizer.eos_token + token,
            do_sample=False,
            max_new_tokens=new_tokens,
            return_full_text=False,
        )[0]["generated_text"]
        assert theirs == ours, label
        continuations.append(ours)
    assert any(continuations), "some label says something: the comparison is not vacuous"
    again = aigc_in_process(root, "export", CHAMPION_URI, str(out))
    assert again.exit_code == 2 and "not an empty folder" in again.output, again.output
