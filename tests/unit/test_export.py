"""`aigc export`: a text model as a Hugging Face folder that transformers loads offline.

The built-in GPT becomes a GPT2LMHeadModel with identical logits; the folder's pipeline
continues a label token greedily exactly as aigc's generator does (stopping at the end of the
document); what cannot be exported (an LSTM, an image model, an occupied OUT_DIR) is refused
in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aigc.config import TokenizerParams
from aigc.export import ExportError, export_generator
from aigc.models.base import build_model, get_family
from aigc.models.configs import GPTConfig, LSTMConfig
from aigc.text.generator import TextGenerator
from aigc.text.tokenizer import TextTokenizer
from tests.conftest import aigc_in_process

TOPICS = {
    "networking": ["The socket listens on a port.", "A client sends a request to the server."],
    "security": ["The firewall blocks a packet.", "A password protects the account."],
    "storage": ["The file is written to disk.", "A directory holds the files."],
}
BLOCK_SIZE = 32


def documents() -> tuple[list[str], list[str]]:
    texts = [text for examples in TOPICS.values() for text in examples]
    labels = [label for label, examples in TOPICS.items() for _ in examples]
    return texts, labels


def trained_gpt(tokenizer: TextTokenizer, config: GPTConfig, steps: int = 150) -> torch.nn.Module:
    """A tiny GPT fitted to the documents, so that greedy decoding says something and ends."""
    texts, labels = documents()
    stream = [tokenizer.eos_id]
    for text, label in zip(texts * 4, labels * 4, strict=True):
        stream += tokenizer.encode_document(text, label)
    data = torch.tensor(stream)  # (N,)
    model = build_model(config, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - BLOCK_SIZE - 1, (16,), generator=generator)
        windows = torch.stack([data[start : start + BLOCK_SIZE + 1] for start in starts])
        _, loss = model(windows[:, :-1], windows[:, 1:])  # (16, T) each
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def generator() -> TextGenerator:
    texts, _ = documents()
    tokenizer = TextTokenizer.train(
        texts * 5, list(TOPICS), vocab_size=300, min_frequency=TokenizerParams().min_frequency
    )
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=2, n_head=2, n_embd=32
    )
    return TextGenerator(trained_gpt(tokenizer, config), tokenizer, config)


@pytest.fixture(scope="module")
def exported(generator: TextGenerator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator saved as a bundle, loaded back (as `aigc export` gets it) and exported."""
    folder = tmp_path_factory.mktemp("export")
    bundle = generator.save(folder / "bundle")
    return export_generator(TextGenerator.load(bundle), folder / "hf")


@pytest.mark.parametrize("bias", [True, False])
def test_the_built_in_gpt_is_gpt2_with_identical_logits(bias: bool) -> None:
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=32, bias=bias)
    model = build_model(config, seed=0).eval()
    with torch.no_grad():  # away from the initialisation: zero biases would hide a mix-up
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    hf_model = get_family("gpt").to_hugging_face(model)
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    assert hf_model.config.activation_function == "gelu"
    assert hf_model.lm_head.weight.data_ptr() == hf_model.transformer.wte.weight.data_ptr()
    ids = torch.randint(0, 300, (3, 32), generator=torch.Generator().manual_seed(1))  # (B, T)
    with torch.no_grad():
        ours, theirs = model(ids)[0], hf_model(ids).logits  # (B, T, V) each
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    if not bias:
        assert all(
            torch.count_nonzero(tensor) == 0
            for name, tensor in hf_model.state_dict().items()
            if name.endswith(".bias")
        )


def test_pipeline_continues_a_label_token_as_aigc_generate_does(
    generator: TextGenerator, exported: Path
) -> None:
    from transformers import pipeline

    generate = pipeline("text-generation", model=str(exported))
    tokenizer = generator.tokenizer
    new_tokens = 24  # with the 2 prompt tokens (eos, label): within block_size
    continuations = {}
    for label, token in zip(tokenizer.labels, tokenizer.label_tokens(), strict=True):
        for prompt in ("", "The"):
            ours = generator.generate([prompt], [label], temperature=0, max_new_tokens=new_tokens)
            theirs = generate(
                tokenizer.eos_token + token + prompt,
                do_sample=False,
                max_new_tokens=new_tokens,
                return_full_text=False,
            )[0]["generated_text"]
            assert theirs == ours[0], (label, prompt)
            continuations[label, prompt] = ours[0]
    # Not a degenerate model: each label says something of its own, and stops at the end of
    # its document (the generation config's end-of-text token) before the length runs out.
    assert len({continuations[label, ""] for label in TOPICS}) == len(TOPICS), continuations
    assert all(len(tokenizer.encode(text)) < new_tokens for text in continuations.values())


def test_the_folder_holds_tokenizer_generation_config_and_card(
    generator: TextGenerator, exported: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = generator.tokenizer
    hf_tokenizer = AutoTokenizer.from_pretrained(exported, local_files_only=True)
    assert (hf_tokenizer.eos_token, hf_tokenizer.pad_token) == (
        tokenizer.eos_token,
        tokenizer.pad_token,
    )
    assert hf_tokenizer.eos_token_id == tokenizer.eos_id
    assert hf_tokenizer.pad_token_id == tokenizer.pad_id
    assert [hf_tokenizer.convert_tokens_to_ids(token) for token in tokenizer.label_tokens()] == [
        tokenizer.label_token_id(label) for label in tokenizer.labels
    ]
    text = "The socket writes a file.  Twice!"
    assert hf_tokenizer(text)["input_ids"] == tokenizer.encode(text)
    assert hf_tokenizer.decode(tokenizer.encode(text)) == text
    config = GenerationConfig.from_pretrained(exported, local_files_only=True)
    assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_id, tokenizer.pad_id)
    model = AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
    assert model.config.n_positions == BLOCK_SIZE
    card = (exported / "README.md").read_text()
    assert all(token in card for token in tokenizer.label_tokens())
    assert "aigc 0." in card and tokenizer.eos_token in card
    assert sorted(path.name for path in exported.parent.iterdir()) == ["bundle", "hf"]


def test_a_pretrained_tokenizer_is_exported_without_its_beginning_of_text_token(
    tmp_path: Path,
) -> None:
    """A Llama-style tokenizer adds <s> to every encoding; aigc encodes without it, so the
    exported tokenizer must too, or the pipeline's prompt would not be aigc's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    texts, _ = documents()
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 0)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>"
    ).save_pretrained(tmp_path / "base")
    tokenizer = TextTokenizer.from_pretrained(tmp_path / "base", list(TOPICS))
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=BLOCK_SIZE, n_layer=1, n_head=2, n_embd=32
    )
    generator = TextGenerator(build_model(config, seed=0), tokenizer, config)
    export_generator(generator, tmp_path / "hf")
    exported = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    prompt = tokenizer.eos_token + tokenizer.label_tokens()[0] + "The file"
    assert exported(prompt)["input_ids"] == generator.prompt_ids("The file", "networking")


def test_an_lstm_is_refused_in_one_line(generator: TextGenerator, tmp_path: Path) -> None:
    config = LSTMConfig(vocab_size=generator.tokenizer.vocab_size, block_size=BLOCK_SIZE)
    lstm = TextGenerator(build_model(config, seed=0), generator.tokenizer, config)
    with pytest.raises(ExportError) as refused:
        export_generator(lstm, tmp_path / "out")
    message = str(refused.value)
    assert "'lstm'" in message and "gpt" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_an_image_model_is_refused(tmp_path: Path) -> None:
    from aigc.image.generator import ImageGenerator
    from aigc.models.configs import VAEConfig

    config = VAEConfig(image_size=8, channels=1, num_classes=2, width=8, latent_size=2)
    images = ImageGenerator(model=build_model(config, seed=0), classes=["0", "1"])
    with pytest.raises(ExportError, match="image model .*vae.* text models"):
        export_generator(images, tmp_path / "out")


def test_an_occupied_or_misplaced_out_dir_is_refused(
    generator: TextGenerator, tmp_path: Path
) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an empty folder"):
        export_generator(generator, occupied)
    assert [path.name for path in occupied.iterdir()] == ["keep.txt"]
    with pytest.raises(ExportError, match="does not exist"):
        export_generator(generator, tmp_path / "no" / "such" / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    export_generator(generator, empty)  # an empty folder is filled
    assert (empty / "config.json").is_file()


def test_cli_refuses_an_lstm_version_in_one_line_exit_2(
    generator: TextGenerator, tmp_path: Path
) -> None:
    from aigc.config import TrackingParams
    from aigc.tracking import TrackingSettings, TrainingRun, log_generator_model

    config = LSTMConfig(vocab_size=generator.tokenizer.vocab_size, block_size=BLOCK_SIZE)
    lstm = TextGenerator(build_model(config, seed=0), generator.tokenizer, config)
    settings = TrackingSettings.of(TrackingParams(), tmp_path)
    with TrainingRun.start(settings, "tiny-lstm", {"model": {"family": "lstm"}}) as run:
        model_uri = log_generator_model(run, lstm.save(tmp_path / "bundle"), input_example=False)
    folder = settings.client().get_logged_model(model_uri.removeprefix("models:/"))
    result = aigc_in_process(
        tmp_path, "export", folder.artifact_location.removeprefix("file://"), "out"
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'lstm'" in lines[0] and "gpt" in lines[0], result.output
    assert not (tmp_path / "out").exists()
