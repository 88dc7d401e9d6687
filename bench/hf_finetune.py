"""A pretrained start pays: the exported built-in GPT fine-tuned (family hf) on topics it never
saw, against the same architecture from scratch, at an equal wall-clock budget.

    .venv/bin/python bench/hf_finetune.py [--minutes 1] [--lr 6e-3] [--scratch-lr 6e-3]

The corpus is the data stages' labeled output: data/labeled/*.parquet when this checkout has
it, else made in a temporary project by the stages `aigc data refresh --only text` runs
(collect, clean, label; the DVC versioning left out), so the user's data/ is never written.
(a) The built-in GPT is trained as params.yaml's train section says, at its default budget, in
one process, on every topic but the held-out ones (`--held-out`), then exported with
`export_generator` to a temporary GPT2LMHeadModel folder. (b) The shifted corpus is the
held-out topics' documents in the train/validation/test split the label stage gave them. On
it the export is fine-tuned with family hf, and the same folder with its weights re-drawn at
random (GPT-2's initialisation; tokenizer and architecture identical) is trained from scratch:
each for `--minutes` of wall clock (max_steps none), side by side in two processes so that
both share whatever else the machine runs, each at its own learning rate: the best of a sweep
by validation loss (nats per token) after 400 steps, one run each, on this corpus:

    fine-tune   3e-4: 3.78   1e-3: 3.69   3e-3: 3.59   6e-3: 3.57
    scratch     1e-3: 4.25   3e-3: 3.97   6e-3: 3.94   1e-2: 4.10

The export is a small model pretrained for 1.6 minutes, so its fine-tune wants the rate of
continued training, not the 3e-4 to 1e-3 usual for large pretrained models. Both are
evaluated on the same test split by aigc's own `evaluate_generator` (bits per character; label
control graded by the topic classifier the evaluate stage fits on the train split) and
compared by the promotion gate `decide` (fine-tune as challenger, scratch as champion; its
paired bootstrap over test documents). The export without fine-tuning is evaluated too.
Threads: one per process (`--threads`); on a machine busy with other work, intra-op threads
slowed a step down two- to four-fold (measured here).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from aigc.config import Params, TrainParams, load_params
from aigc.export import export_generator
from aigc.registry.decide import Scorecard, decide
from aigc.settings import apply_offline_defaults
from aigc.text.evaluate import EvaluationReport, evaluate_generator
from aigc.text.evaluate.topic_classifier import TopicClassifier, fit_topic_classifier
from aigc.text.training import prepare_job
from aigc.train.job import build_model_for, train_single_process, with_loop

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "validation", "test")
HELD_OUT = "data_formats,email_mime,gui_graphics,numbers_math"


def labeled_corpus(params: Params, scratch: Path) -> tuple[dict[str, pd.DataFrame], str]:
    """The labeled splits, and where they came from."""
    labeled = REPO / "data" / "labeled"
    if all((labeled / f"{split}.parquet").exists() for split in SPLITS):
        frames = {split: pd.read_parquet(labeled / f"{split}.parquet") for split in SPLITS}
        return frames, "data/labeled (this checkout's current data version)"
    from aigc.paths import ProjectPaths
    from aigc.stages.clean import clean
    from aigc.stages.collect import collect
    from aigc.stages.label import label
    from aigc.text.modality import TEXT

    paths = ProjectPaths.at(scratch / "project")
    (paths.root / "data" / "inbox").mkdir(parents=True)
    shutil.copytree(REPO / "data" / "labels", paths.root / "data" / "labels")
    collect(paths, params, TEXT)
    clean(paths, params, TEXT)
    labeled = label(paths, params, TEXT).path
    frames = {split: pd.read_parquet(labeled / f"{split}.parquet") for split in SPLITS}
    return frames, "collect + clean + label of params.yaml's sources, in a temporary project"


def scratch_copy(export: Path, folder: Path, seed: int) -> Path:
    """`export` with its weights drawn afresh (transformers' own initialisation for the
    architecture); config and tokenizer files are the export's."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    shutil.copytree(export, folder)
    config = AutoConfig.from_pretrained(export, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    return folder


def hf_train_params(params: Params, folder: Path) -> TrainParams:
    """The project's train section with family hf on `folder` (block size and batch kept)."""
    model = {"family": "hf", "path": str(folder), "block_size": params.train.model.block_size}
    return TrainParams.model_validate(params.train.model_dump() | {"model": model})


@dataclass(frozen=True)
class Row:
    name: str
    lr: float | None
    steps: int
    seconds: float
    val_loss: float
    report: EvaluationReport | None


def train_and_evaluate(
    name: str,
    folder: Path,
    lr: float | None,
    budget: dict,
    shifted: dict[str, pd.DataFrame],
    params: Params,
    classifier: TopicClassifier | None,
    threads: int,
) -> Row:
    """Family hf on `folder`, trained on the shifted corpus at `lr` within `budget` (loop
    settings; no training when `lr` is None), then evaluated on its test split as the evaluate
    stage does (skipped without `classifier`). Runs in a worker process of its own."""
    torch.set_num_threads(threads)
    train, validation, test = shifted["train"], shifted["validation"], shifted["test"]
    job = prepare_job(train, validation, hf_train_params(params, folder))
    if lr is None:
        model, steps, seconds, val_loss = build_model_for(job), 0, 0.0, math.nan
    else:
        job = with_loop(job, lr=lr, min_lr=min(lr, job.loop.min_lr), **budget)
        model, result = train_single_process(job)
        steps, seconds, val_loss = result.steps, result.elapsed_seconds, result.final_val_loss
    report = None
    if classifier is not None:
        report = evaluate_generator(
            job.bundle(model),
            test,
            params.label,
            params.evaluate,
            train_texts=train["text"].tolist(),
            classifier=classifier,
        )
    return Row(name, lr, steps, seconds, val_loss, report)


def side_by_side(calls: list[tuple]) -> list[Row]:
    """`train_and_evaluate(*call)` for each call, all at once, one process each: runs that
    share the same minutes share whatever else the machine is doing, so an equal wall-clock
    budget is an equal budget even when the machine is busy."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(calls), mp_context=spawn) as pool:
        return list(pool.map(train_and_evaluate, *zip(*calls, strict=True)))


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="budget of each (b) run")
    parser.add_argument("--lr", type=float, default=6e-3, help="fine-tuning learning rate")
    parser.add_argument("--scratch-lr", type=float, default=6e-3)
    parser.add_argument("--held-out", default=HELD_OUT, help="comma-separated topics")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    held_out = sorted(args.held_out.split(","))
    unknown = sorted(set(held_out) - set(params.label.topics))
    if unknown:
        parser.error(f"--held-out names {unknown}, which are not topics in label.topics")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="aigc-bench-hf-") as directory:
        work = Path(directory)
        frames, origin = labeled_corpus(params, work)
        base = {split: f[~f["label"].isin(held_out)] for split, f in frames.items()}
        shifted = {split: f[f["label"].isin(held_out)] for split, f in frames.items()}

        # (a) the default run's model on the other topics, exported
        job = prepare_job(base["train"], base["validation"], params.train)
        model, base_result = train_single_process(job)
        base_parameters = sum(p.numel() for p in model.parameters())
        export = export_generator(job.bundle(model), work / "export")
        scratch = scratch_copy(export, work / "scratch", seed=params.train.seed)

        # (b) the shifted corpus: fine-tune against scratch, same minutes and test split
        classifier = fit_topic_classifier(shifted["train"], sorted(params.label.topics))
        budget = {"max_steps": None, "max_minutes": args.minutes}
        common = (budget, shifted, params, classifier, args.threads)
        rows = side_by_side(
            [
                ("fine-tune of the export", export, args.lr, *common),
                ("same architecture, scratch", scratch, args.scratch_lr, *common),
            ]
        )
        rows.append(train_and_evaluate("export, no fine-tuning", export, None, *common))

    tuned, fresh = rows[0].report, rows[1].report
    decision = decide(
        Scorecard(name="fine-tune", metrics=tuned.metrics, per_document=tuned.per_document),
        Scorecard(name="scratch", metrics=fresh.metrics, per_document=fresh.per_document),
        params.registry.policy,
    )
    boot = decision.bootstrap
    train, validation, test = (shifted[split] for split in SPLITS)

    print(f"hf fine-tune vs scratch (bench/hf_finetune.py), {args.threads} thread(s) per process")
    print(f"corpus: {origin}")
    print(f"held out: {', '.join(held_out)}")
    print(
        f"(a) built-in GPT on the other topics ({len(base['train'])} train documents): "
        f"{base_result.steps} steps in {base_result.elapsed_seconds:.0f} s "
        f"({base_result.stop_reason}), validation loss {base_result.final_val_loss:.3f}; "
        f"exported as GPT2LMHeadModel, {base_parameters:,} parameters"
    )
    print(
        f"(b) shifted corpus: {len(train)} train, {len(validation)} validation, {len(test)} test "
        f"documents; {args.minutes:g} min of training each, side by side"
    )
    header = f"  {'model':<28}{'lr':>8}{'steps':>7}{'train s':>9}{'val loss':>10}"
    print(header + f"{'test bpc':>10}{'label ctl':>11}{'uncond.':>9}")
    for row in rows:
        metrics = row.report.metrics
        print(
            f"  {row.name:<28}{'-' if row.lr is None else f'{row.lr:g}':>8}{row.steps:>7}"
            f"{row.seconds:>9.0f}{row.val_loss:>10.3f}{metrics['test_bits_per_character']:>10.3f}"
            f"{metrics['label_control_accuracy']:>11.3f}"
            f"{metrics['label_control_unconditioned_accuracy']:>9.3f}"
        )
    metrics = tuned.metrics
    print(f"  {'unigram baseline':<62}{metrics['unigram_bits_per_character']:>10.3f}")
    print(f"  {'label control ceiling (real test text cut)':<72}", end="")
    print(f"{metrics['label_control_ceiling']:>11.3f}")
    print(
        f"gate, fine-tune as challenger vs scratch as champion: test bpc improvement "
        f"{boot['observed_improvement']:.3f} (5%-95% of {boot['samples']} paired resamples of "
        f"{boot['documents']} documents: {boot['improvement_lower']:.3f} to "
        f"{boot['improvement_upper']:.3f}); fine-tune better in "
        f"{boot['probability_better']:.0%} of resamples"
    )
    failed = [name for name, passed in decision.checks.items() if not passed]
    verdict = "promote" if decision.promote else f"keep scratch (failed: {', '.join(failed)})"
    print(f"gate decision: {verdict}; whole bench {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
