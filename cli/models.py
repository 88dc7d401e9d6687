"""The model verbs: `aigc train`, `evaluate`, `generate` (text, or a grid of images) and
`export` (a Hugging Face folder)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aigc import runtime
from aigc.errors import UserError
from cli.app import (
    ModalityOption,
    ParamsOption,
    SetOption,
    _check_inputs,
    _existing_folder,
    _modality_project,
    _model_store,
    _params,
    _root,
    app,
)
from cli.output import _print_evaluation, _print_trained, _training_progress, console

if TYPE_CHECKING:
    from aigc.config import ImageEvaluateParams
    from aigc.image.generator import ImageGenerator


@app.command("train")
def train(
    evaluate: Annotated[
        bool, typer.Option(help="then run the evaluate stage into the same MLflow run")
    ] = True,
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Train a generator on the current data version (Ray), tracked in MLflow; then evaluate."""
    chosen, paths, params = _modality_project(modality, params_file, overrides)
    _check_inputs(paths, params, [chosen.name])
    runtime.start(paths.work)  # first ends what a killed run left running
    from aigc.stages.evaluate import evaluate as evaluate_stage
    from aigc.stages.train import train as train_stage
    from aigc.stages.version import current_dataset

    dataset = current_dataset(paths, chosen)
    with _training_progress(chosen.train_section(params)) as on_progress:
        trained = train_stage(paths, params, dataset, on_progress=on_progress)
    _print_trained(trained)
    if evaluate:
        evaluation = evaluate_stage(
            paths, params, trained.model_uri, dataset, trained.run_id, trained.bundle_dir
        )
        _print_evaluation(evaluation, chosen)


@app.command("evaluate")
def evaluate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    out: Annotated[Path | None, typer.Option(help="write the report JSON here")] = None,
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Evaluate a logged model on the test split of the current data version."""
    from aigc.stages.evaluate import evaluate as evaluate_stage
    from aigc.stages.version import current_dataset
    from aigc.tracking import check_model_uri

    chosen, paths, params = _modality_project(modality, params_file, overrides)
    _existing_folder("--out", out)
    store = _model_store(model_uri, chosen.view(params).tracking, paths.root)
    check_model_uri(model_uri, store)  # before Ray
    evaluation = evaluate_stage(paths, params, model_uri, current_dataset(paths, chosen))
    _print_evaluation(evaluation, chosen)
    if out:
        shutil.copytree(evaluation.folder, out, dirs_exist_ok=True)
        console.print(f"metrics and per-sample scores written to {out}/")


@app.command("generate")
def generate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="topic to condition on; for an image model a class, repeatable: one grid row "
            "each [default: every class]"
        ),
    ] = None,
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    count: Annotated[
        int | None,
        typer.Option("-n", min=1, help="how many samples (per label for images) [default: 3]"),
    ] = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="length of each sample [default: evaluate.sample_tokens]"),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, help="0: greedy [default: evaluate.temperature]")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(min=0.0, help="image ddpm: classifier-free guidance [default: the model's]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="image models: the grid PNG to write")] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Generate text, or a grid of images (one row per label), with a logged model."""
    from aigc.image.generator import ImageGenerator
    from aigc.tracking import load_generator

    _existing_folder("--out", out)
    params = _params(params_file, overrides)
    generator = load_generator(model_uri, _model_store(model_uri, params.tracking, _root()))
    count = 3 if count is None else count
    if isinstance(generator, ImageGenerator):
        _refuse_options(
            "an image model", prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature
        )
        labels = label or list(generator.classes)
        _generate_grid(generator, labels, count, seed, guidance, out, params.image.evaluate)
        return
    _refuse_options("a text model", guidance=guidance, out=out)
    if label and len(label) > 1:
        raise UserError(f"--label given {len(label)} times: a text model takes one topic")
    topic = label[0] if label else None
    texts = generator.generate(
        [prompt] * count,
        [topic] * count,
        max_new_tokens=params.evaluate.sample_tokens if max_new_tokens is None else max_new_tokens,
        temperature=params.evaluate.temperature if temperature is None else temperature,
        top_k=params.evaluate.top_k,
        seed=seed,
    )
    for index, text in enumerate(texts):
        console.rule(f"sample {index} · {topic or 'unconditioned'} · seed {seed}")
        console.print(prompt + text, highlight=False, markup=False)


def _refuse_options(kind: str, **options: object) -> None:
    """A UserError naming the options given that `kind` of model has no use for."""
    given = [
        f"--{name.replace('_', '-')}" for name, value in options.items() if value not in (None, "")
    ]
    if given:
        raise UserError(f"{', '.join(given)}: not an option for {kind}; leave it out")


def _generate_grid(
    generator: ImageGenerator,
    labels: list[str],
    count: int,
    seed: int,
    guidance: float | None,
    out: Path | None,
    look: ImageEvaluateParams,
) -> None:
    """Write a grid PNG of `count` samples of each label, one row per label, in their order,
    with the tile scale and gap of the evaluation's grid (`look`)."""
    import numpy as np

    from aigc.image.evaluate.grid import write_sample_grid
    from aigc.image.generator import UnknownClass
    from aigc.serving.pyfunc import sample_request

    if out is None:
        raise UserError("--out: an image model writes a grid of samples; name the PNG to write")
    for label in labels:
        try:
            generator.class_index(label)
        except UnknownClass as error:
            raise UserError(f"--label {label!r}: {error}") from None
    # A row is the same request whatever the other rows are: `--label 7` alone gives row 0 here
    # and the pyfunc's answer to (label 7, n, seed).
    samples = np.concatenate(
        [sample_request(generator, label, count, seed, guidance) for label in labels]
    )  # (rows * count, H, W, C)
    write_sample_grid(
        samples,
        np.repeat(np.arange(len(labels)), count),  # (rows * count,) the row of each sample
        out,
        classes=len(labels),
        per_class=count,
        scale=look.grid_scale,
        gap=look.grid_gap,
    )
    console.print(f"wrote {out}: {count} samples of each of {', '.join(labels)}, seed {seed}")


@app.command("export")
def export(
    model_uri: Annotated[
        str, typer.Argument(help="runs:/…, models:/NAME@ALIAS or a model folder")
    ],
    out_dir: Annotated[Path, typer.Argument(help="the folder to write: new, or empty")],
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Write a text model as a Hugging Face folder: model, tokenizer, generation config, card."""
    from aigc.export import check_out_dir, export_generator
    from aigc.tracking import load_generator

    check_out_dir(out_dir)  # before the model is fetched
    params = _params(params_file, overrides)
    generator = load_generator(model_uri, _model_store(model_uri, params.tracking, _root()))
    export_generator(generator, out_dir)
    console.print(
        f"wrote {out_dir}: a Hugging Face model folder; its README.md says how to load and "
        "prompt it",
        highlight=False,
        soft_wrap=True,
    )
