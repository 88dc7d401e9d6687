"""A generator bundle logged as an MLflow pyfunc model, and registered under a name."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aigc.tracking.runs import TrainingRun
from aigc.tracking.settings import TrackingSettings, _global_tracking_uri

if TYPE_CHECKING:
    import pandas as pd

    from aigc.image.generator import ImageGenerator
    from aigc.text.generator import TextGenerator


def _pip_requirements(image: bool) -> list[str]:
    """What the pyfunc needs besides the aigc code logged with it, pinned to what is here:
    a text model its tokenizer library and transformers (the hf family's module), an image
    model Pillow for the PNGs it returns."""
    from importlib.metadata import version

    modality = ("pillow",) if image else ("tokenizers", "transformers", "kernels")
    packages = ("mlflow", "torch", *modality, "pandas", "numpy")
    # "2.13.0+cpu" names a build on PyTorch's own index; the requirement is the version.
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def _generator_class(bundle_dir: Path) -> type[TextGenerator] | type[ImageGenerator]:
    """Which generator a bundle folder holds: a text bundle has its tokenizer beside the model,
    an image bundle the model alone (its class names are inside the checkpoint)."""
    from aigc.image.generator import ImageGenerator
    from aigc.text.generator import TOKENIZER_FILE, TextGenerator

    return TextGenerator if (bundle_dir / TOKENIZER_FILE).is_file() else ImageGenerator


def _example_input(generator_class: type, bundle_dir: Path) -> pd.DataFrame:
    """One request, in the columns of the pyfunc that serves `generator_class`."""
    import pandas as pd

    from aigc.image.generator import ImageGenerator
    from aigc.text.generator import TOKENIZER_FILE
    from aigc.text.tokenizer import TextTokenizer

    if generator_class is ImageGenerator:
        classes = ImageGenerator.load(bundle_dir).classes
        return pd.DataFrame({"label": [classes[0]], "n": [1], "seed": [0]})
    labels = TextTokenizer.load(bundle_dir / TOKENIZER_FILE).labels
    return pd.DataFrame(
        {
            "prompt": ["The"],
            "label": [labels[0] if labels else None],
            "max_new_tokens": [8],
            "temperature": [0.8],
            "seed": [0],
        }
    )


def log_generator_model(
    run: TrainingRun,
    bundle_dir: str | Path,
    name: str = "model",
    input_example: bool = True,
    step: int = 0,
) -> str:
    """Log a generator bundle folder (a TextGenerator's or an ImageGenerator's) as a pyfunc
    model of `run`; returns "models:/m-…".

    The model is a models-from-code pyfunc (aigc.serving.pyfunc: GeneratorPyfunc for text,
    ImageGeneratorPyfunc for images, as the bundle holds) with the bundle as artifact
    "bundle", the aigc package as code, pinned pip requirements and a signature. The URI
    returned is the LoggedModel's (MLflow 3); `runs:/<run_id>/<name>` names the same model.
    `input_example` logs a one-row example, which MLflow also runs once to check serving."""
    import mlflow
    from mlflow.models import Model

    import aigc
    from aigc.image.generator import ImageGenerator
    from aigc.serving import pyfunc

    bundle_dir = Path(bundle_dir)
    generator_class = _generator_class(bundle_dir)
    image = generator_class is ImageGenerator
    example = _example_input(generator_class, bundle_dir) if input_example else None
    params = run.client.get_run(run.run_id).data.params
    # Created here, in the run's experiment: left to itself, Model.log would create it in the
    # process-wide "current" experiment instead.
    logged = run.client.create_logged_model(
        run.experiment_id, name=name, source_run_id=run.run_id, params=params
    )
    pyfunc_class = "ImageGeneratorPyfunc" if image else "GeneratorPyfunc"
    with tempfile.TemporaryDirectory() as scratch, _global_tracking_uri(run.settings.tracking_uri):
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run.run_id,
            model_id=logged.model_id,
            step=step,
            python_model=str(pyfunc.write_model_code(scratch, pyfunc_class)),
            artifacts={pyfunc.BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(Path(aigc.__file__).parent)],
            pip_requirements=_pip_requirements(image),
            signature=pyfunc.image_model_signature() if image else pyfunc.model_signature(),
            input_example=example,
        )
    return info.model_uri


def register_model(
    settings: TrackingSettings,
    model_uri: str,
    name: str,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> int:
    """Register `model_uri` as a new version of registered model `name` (created if missing),
    with `tags` set at creation, and with `alias`, point `models:/<name>@<alias>` at it.
    Returns the version number."""
    import mlflow

    client = settings.client()
    # The registry resolves models:/m-… sources with the process-wide tracking URI.
    with _global_tracking_uri(settings.tracking_uri):
        registered = mlflow.register_model(
            model_uri, name, await_registration_for=0, tags=dict(tags or {})
        )
        version = int(registered.version)
    if alias is not None:
        client.set_registered_model_alias(name, alias, str(version))
    return version
