"""Mistakes a user can fix end in one message that names the input and the fix, exit code 2.

Each case runs the `aigc` command line in this process (`cli.main.main`, what the console
script runs) in a project folder whose params.yaml points at a temporary MLflow sqlite store
holding one registered, untrained generator (no Ray, no training), or, for the data cases, in
a real git + DVC project. A traceback means a bug: in process it is an exception that fails
the test. One case runs the real console script in a fresh process, to check what the user
sees there: exit code 2, one line, no traceback.

Slow because the data case builds two data versions through DVC, and the lock case starts a
fresh `aigc` process (Prefect's temporary API included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aigc.config import TrackingParams, load_params, write_effective_params
from aigc.models import build_model
from aigc.paths import ProjectPaths
from aigc.registry.registry import CHAMPION, by_alias, promote_manually
from aigc.retrain import PipelineLock
from aigc.stages import clean, collect, label
from aigc.stages.version import current_dataset, version
from aigc.text.generator import TextGenerator
from aigc.text.modality import TEXT
from aigc.text.tokenizer import TextTokenizer
from aigc.tracking import TrackingSettings, TrainingRun, log_generator_model, register_model
from tests.conftest import REPO, CliResult, aigc_in_process, make_documents, write_documents

pytestmark = pytest.mark.slow

AIGC = str(Path(sys.executable).parent / "aigc")
LABELS = ["concurrency", "networking"]


def aigc(cwd: Path, *args: str) -> CliResult:
    return aigc_in_process(cwd, *args)


def console_script(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The `aigc` console script in a fresh process, importing this checkout's code."""
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    environment.pop("AIGC_TRACEBACK", None)
    return subprocess.run(
        [AIGC, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def refused(result: CliResult) -> str:
    """The output of a command that refused its input: exit code 2, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    return result.output


def error_line(output: str) -> str:
    """The one line the CLI prints for a UserError."""
    (line,) = [line for line in output.splitlines() if line.startswith("error: ")]
    return line


def project_at(root: Path, store: Path) -> Path:
    """A project folder whose params.yaml points tracking at `store`."""
    root.mkdir(parents=True)
    tracking = {"tracking_uri": f"sqlite:///{store}/mlflow.db", "artifact_root": str(store)}
    (root / "params.yaml").write_text(yaml.safe_dump({"tracking": tracking}))
    return root


def settings_of(root: Path) -> TrackingSettings:
    tracking = yaml.safe_load((root / "params.yaml").read_text())["tracking"]
    return TrackingSettings.of(TrackingParams(**tracking), root)


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Path:
    """A project whose store holds one untrained generator: version 1 of `aigc-text`
    (alias challenger, and champion by a manual promotion, so it replaced no champion), and
    the same model as version 1 of `unchampioned`, which has no alias."""
    tmp = tmp_path_factory.mktemp("registered")
    root = project_at(tmp / "project", tmp / "store")
    texts = [
        f"The {word} waits for the lock in case {index}."
        for index, word in enumerate(["thread", "socket", "queue", "server"] * 10)
    ]
    tokenizer = TextTokenizer.train(texts, labels=LABELS, vocab_size=300, min_frequency=1)
    config = {"vocab_size": 300, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 16}
    model = build_model({"family": "gpt", **config}, seed=0).eval()
    TextGenerator(model=model, tokenizer=tokenizer, config=model.config).save(tmp / "bundle")
    settings = settings_of(root)
    with TrainingRun.start(settings, "untrained") as run:
        model_uri = log_generator_model(run, tmp / "bundle")
    register_model(settings, model_uri, "aigc-text", alias="challenger")
    register_model(settings, model_uri, "unchampioned")
    promote_manually(settings, "aigc-text", "1", "a first champion for these tests")
    return root


@pytest.fixture(scope="module")
def unregistered(tmp_path_factory) -> Path:
    """A project whose store holds nothing."""
    tmp = tmp_path_factory.mktemp("unregistered")
    return project_at(tmp / "project", tmp / "store")


def champion(root: Path) -> str | None:
    return getattr(by_alias(settings_of(root), "aigc-text", CHAMPION), "version", None)


# --- the registry ------------------------------------------------------------------------


def test_promoting_a_version_that_does_not_exist(registered: Path) -> None:
    line = error_line(refused(aigc(registered, "registry", "promote", "999", "--reason", "x")))
    assert "registered model 'aigc-text' has no version '999' (versions: 1)" in line
    assert "aigc registry show" in line
    assert champion(registered) == "1"


def test_rollback_of_a_champion_that_replaced_none(registered: Path) -> None:
    line = error_line(refused(aigc(registered, "registry", "rollback", "--reason", "x")))
    assert "champion aigc-text version 1 replaced no earlier champion" in line
    assert "aigc registry promote VERSION --reason" in line
    assert champion(registered) == "1"


def test_rollback_without_a_champion(registered: Path) -> None:
    result = aigc(registered, "registry", "rollback", "--set", "registry.model_name=unchampioned")
    line = error_line(refused(result))
    assert "registered model 'unchampioned' has no champion to roll back (versions: 1)" in line
    assert "aigc registry promote VERSION --reason" in line


def test_registry_show_on_a_store_with_no_model(unregistered: Path) -> None:
    line = error_line(refused(aigc(unregistered, "registry", "show")))
    assert "no registered model 'aigc-text' in the tracking store sqlite:///" in line
    assert "`aigc run` trains and registers a first version" in line


# --- reproduce ---------------------------------------------------------------------------


def test_reproducing_a_model_that_is_not_registered(registered: Path) -> None:
    result = aigc(registered, "reproduce", "nosuch/9")
    line = error_line(refused(result))
    assert "no registered model 'nosuch'" in line
    assert "the registered models are ['aigc-text', 'unchampioned']" in line
    assert result.output.splitlines() == [line], "nothing before the message: no progress bar"


def test_reproducing_a_run_that_does_not_exist(registered: Path) -> None:
    line = error_line(refused(aigc(registered, "reproduce", "--run-id", "bogus")))
    assert "no run 'bogus' in the tracking store sqlite:///" in line
    assert "aigc registry show" in line


# --- generate and evaluate ---------------------------------------------------------------


def test_generating_for_a_label_the_model_does_not_know(registered: Path) -> None:
    result = aigc(
        registered, "generate", "--model-uri", "models:/aigc-text@champion", "--label", "nosuch"
    )
    line = error_line(refused(result))
    assert "unknown label 'nosuch': this model knows concurrency, networking" in line


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/nope@champion", "no registered model 'nope' in the tracking store"),
        (
            "models:/aigc-text@nope",
            "registered model 'aigc-text' has no alias 'nope' (its "
            "aliases: challenger → version 1, champion → version 1",
        ),
        ("models:/aigc-text/7", "registered model 'aigc-text' has no version '7' (versions: 1)"),
        ("runs:/deadbeef/model", "no run 'deadbeef' in the tracking store"),
    ],
)
def test_generating_from_a_model_uri_that_names_nothing(registered: Path, uri, expected) -> None:
    line = error_line(refused(aigc(registered, "generate", "--model-uri", uri)))
    assert line.startswith(f"error: model URI {uri!r}: ") and expected in line, line


@pytest.mark.parametrize(
    ("option", "value"), [("--temperature", "-1"), ("--max-new-tokens", "-1"), ("-n", "-2")]
)
def test_generating_with_an_impossible_setting(registered: Path, option, value) -> None:
    result = aigc(
        registered, "generate", "--model-uri", "models:/aigc-text@champion", option, value
    )
    output = refused(result)
    assert f"Invalid value for '{option}'" in output and "greater than or equal" in output
    assert "sample" not in result.output


def test_evaluating_a_run_that_does_not_exist(registered: Path) -> None:
    """Checked before the data and before Ray start."""
    result = aigc(registered, "evaluate", "--model-uri", "runs:/deadbeef/model")
    line = error_line(refused(result))
    assert "model URI 'runs:/deadbeef/model': no run 'deadbeef'" in line


# --- data and lock: a real git + DVC project ---------------------------------------------


def build_data_version(root: Path) -> str:
    """collect → clean → label (both through `dvc repro`) → version, without Prefect."""
    paths = ProjectPaths.at(root)
    params = load_params(paths.params)
    write_effective_params(params, paths.effective_params)
    collected = collect.collect(paths, params, TEXT)
    clean.run_in_dvc(paths, TEXT)
    labeled, _ = label.run_in_dvc(paths, TEXT)
    outcome = version(paths, params, TEXT, collected.snapshot.path.name, labeled.counts)
    return outcome.dataset.version


def test_training_after_checking_out_an_older_data_version(project: Path) -> None:
    older = build_data_version(project)
    write_documents(project / "data" / "inbox", make_documents(20, seed=5, prefix="new"))
    newer = build_data_version(project)
    assert older != newer
    checkout = aigc(project, "data", "checkout", older[:12])
    assert checkout.exit_code == 0, checkout.output

    line = error_line(refused(aigc(project, "train")))
    assert f"data/labeled holds data version {older[:12]}" in line
    assert f"dvc.lock names data version {newer[:12]}" in line
    assert f"`aigc data checkout {newer[:12]} --modality text`" in line
    assert "`dvc checkout data/labeled`" in line and "`aigc data refresh`" in line

    restored = aigc(project, "data", "checkout", newer[:12])  # the fix the message gives
    assert restored.exit_code == 0, restored.output
    assert current_dataset(ProjectPaths.at(project), TEXT).version == newer


def test_a_second_run_that_times_out_on_the_lock(project: Path) -> None:
    """The real console script: what a user sees is one line, exit code 2, no traceback."""
    with PipelineLock(project, timeout_seconds=0):  # the only holder: it never waits
        result = console_script(project, "run", "--set", "run.lock_timeout_minutes=0.01")
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    line = error_line(output)
    assert "another aigc run holds" in line and "run.lock_timeout_minutes" in line
    assert "Encountered exception" not in output, "Prefect's record of the error is dropped"
    assert len(output.splitlines()) < 12, output
    assert not (project / "data" / "raw").exists(), "the waiting run must not touch data/"
