"""Speed and memory of the hf family's training step: aigc's loop against a plain PyTorch loop.

    .venv/bin/python bench/hf_step.py [--steps 30] [--warmup 5] [--threads 1] [--repeats 3]
    .venv/bin/python bench/hf_step.py --device cuda --bf16 --peak-tflops 989    # GPT-2 124M

The model is a GPT-2 made here with transformers and saved with save_pretrained into a
temporary folder, with a byte-level BPE tokenizer trained on a synthetic labeled corpus: on the
CPU GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=128), on CUDA the GPT-2 124M shape
(GPT2Config(), random weights). One hf job (`prepare_job`, family hf on that folder) gives the
batches. Each path runs in a subprocess of its own, with the same torch threads (`--threads`,
1 by default: on a machine busy with other work, intra-op threads slow a step down severalfold):

    aigc   `train_single_process` on the job (max_steps, no evaluation or checkpoint between
           steps), timed by the loop's `on_step` hook
    plain  the folder loaded with AutoModelForCausalLM.from_pretrained (embeddings resized to
           the job's vocabulary, label tokens included), AdamW with the loop's lr, betas and
           weight decay (matrices only), cross-entropy on the job's (x, y) batches from the
           same DataLoader, clip_grad_norm_ at the loop's grad_clip, nothing else

Tokens/s are measured in steady state, after step `--warmup`: on the CPU from the median step
(steps another process preempts do not count), the two paths running at the same time, one
core each, so that both share whatever else the machine runs; on CUDA from the mean step
between two synchronized step ends (the aigc loop synchronizes every step when it reads the
loss, the plain loop only there), one path after the other. Each path runs `--repeats` times
and keeps its best. Peak memory, CPU: the subprocess's ru_maxrss (resource.getrusage) at the
end, and its growth from just before the model is built, the model's code already imported
(weights, gradients, optimizer state, activations, and what the runtime allocates on a first
forward and backward pass); CUDA: torch.cuda.max_memory_allocated. With --peak-tflops,
MFU = 6 * parameters * tokens/s / peak. Target: aigc/plain >= 0.9. The CUDA path (--device
cuda, --bf16 autocast, --compile for both) has not been run: the machines this project's
results come from have no GPU.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

WORDS = "socket thread file number string list lock path server integer window widget".split()  # noqa: SIM905


def corpus() -> pd.DataFrame:
    texts = [
        " ".join(WORDS[(i * 7 + j * (1 + i % 5)) % len(WORDS)] for j in range(200))
        for i in range(400)
    ]
    labels = ["networking" if i % 2 else "concurrency" for i in range(400)]
    return pd.DataFrame({"text": texts, "label": labels})


def model_folder(folder: Path, device: str, texts: list[str]) -> Path:
    """A random-weight GPT-2 and a byte-level BPE tokenizer, saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    if device == "cpu":
        config = GPT2Config(n_layer=4, n_embd=128, n_head=4, n_positions=128)
        config.vocab_size = len(tokenizer)
    else:  # GPT-2 124M: its own 50,257-token vocabulary, whatever ids the batches hold
        config = GPT2Config()
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_aigc(job, warmup: int) -> dict:
    from aigc.train.job import train_single_process
    from aigc.train.loop import LoopHooks

    ends: list[float] = []  # when each step ended (its on_step hook)
    before = max_rss_mb()
    model, _ = train_single_process(
        job, LoopHooks(on_step=lambda _: ends.append(time.perf_counter()))
    )
    return {
        "ends": ends,
        "rss_before": before,
        "parameters": sum(p.numel() for p in model.parameters()),
        "attention": model.hf_model.config._attn_implementation,
    }


def run_plain(job, warmup: int) -> dict:
    """The same model, batches and optimizer in the loop a user would write by hand."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    device, loop = torch.device(job.device), job.loop
    before = max_rss_mb()
    torch.manual_seed(job.seed)
    model = AutoModelForCausalLM.from_pretrained(job.model.path, local_files_only=True)
    model.resize_token_embeddings(job.model.vocab_size, mean_resizing=False)
    model.to(device).train()
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": loop.weight_decay},
            {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=loop.lr,
        betas=loop.betas,
    )
    forward = torch.compile(model) if loop.compile and device.type == "cuda" else model
    autocast = device.type == "cuda" and loop.bf16
    train_loader, _ = job.loaders(0, 1)
    batches = iter(train_loader)
    ends: list[float] = []  # when each step ended; on CUDA only those of steps synchronized
    for step in range(1, loop.max_steps + 1):
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(train_loader)
            x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(input_ids=x, use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, loop.grad_clip)
        optimizer.step()
        if device.type == "cuda" and step in (warmup, loop.max_steps):
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return {
        "ends": ends,
        "rss_before": before,
        "parameters": sum(p.numel() for p in model.parameters()),
        "attention": model.config._attn_implementation,
    }


def worker(path: str, job_file: str, warmup: int, threads: int) -> None:
    """One path in this process; prints its figures as one JSON line."""
    import transformers
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.set_num_threads(threads)
    job = pickle.loads(Path(job_file).read_bytes())
    # The model's code imported before memory is first read, so neither path's growth holds it.
    getattr(transformers, job.model.architecture["architectures"][0])
    if job.device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    result = (run_aigc if path == "aigc" else run_plain)(job, warmup)
    result["rss_peak"] = max_rss_mb()
    if job.device != "cpu":
        result["cuda_peak"] = torch.cuda.max_memory_allocated() / 2**20
    ends = result.pop("ends")
    if job.device == "cpu":  # the median step: robust to the moments another process preempts
        step_seconds = statistics.median(b - a for a, b in itertools.pairwise(ends[warmup - 1 :]))
    else:  # the mean step between two synchronized ends
        step_seconds = (ends[-1] - ends[warmup - 1]) / (len(ends) - warmup)
    result["tokens_per_second"] = job.batch_size * job.block_size / step_seconds
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both paths")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=None, help="default 128; 1024 on CUDA")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both (CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU")
    parser.add_argument("--worker", choices=("aigc", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.job, args.warmup, args.threads)
        return
    if not 1 <= args.warmup < args.steps:
        parser.error(f"--warmup {args.warmup} must be at least 1 and below --steps {args.steps}")

    from aigc.config import TrainParams
    from aigc.settings import apply_offline_defaults
    from aigc.text.training import prepare_job
    from aigc.train.job import with_loop

    apply_offline_defaults()
    block_size = args.block_size or (128 if args.device == "cpu" else 1024)
    frame = corpus()
    with tempfile.TemporaryDirectory(prefix="aigc-bench-step-") as directory:
        folder = model_folder(Path(directory) / "gpt2", args.device, frame["text"].tolist())
        params = TrainParams.model_validate(
            {
                "model": {"family": "hf", "path": str(folder), "block_size": block_size},
                "batch_size": args.batch_size,
            }
        )
        job = with_loop(
            prepare_job(frame.iloc[:360], frame.iloc[360:], params, device=args.device),
            lr=args.lr,
            min_lr=args.lr / 10,
            warmup_steps=args.warmup,
            max_steps=args.steps,
            max_minutes=None,
            eval_every=0,
            eval_batches=1,
            checkpoint_every=0,
            bf16=args.bf16,
            compile=args.compile,
        )
        job_file = Path(directory) / "job.pkl"
        job_file.write_bytes(pickle.dumps(job))
        runs: dict[str, list[dict]] = {"aigc": [], "plain": []}
        # On the CPU both paths run at once (a core each by default), so that they share
        # whatever else the machine is doing; on a GPU one after the other.
        together = args.device == "cpu"
        for _ in range(args.repeats):
            started = {}
            for path in runs:
                command = [sys.executable, __file__, "--worker", path, "--job", str(job_file)]
                command += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
                started[path] = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                if not together:
                    started[path].wait()
            for path, process in started.items():
                stdout, _ = process.communicate()
                if process.returncode != 0:
                    sys.exit(f"the {path} run failed (its error is above)")
                runs[path].append(json.loads(stdout.strip().splitlines()[-1]))

    best = {
        path: max(results, key=lambda r: r["tokens_per_second"]) for path, results in runs.items()
    }
    plain = best["plain"]["tokens_per_second"]
    print(
        f"hf training step (bench/hf_step.py): {args.device}, {args.threads} threads, "
        f"{args.steps} steps ({args.warmup} warm-up), batch {args.batch_size} x block "
        f"{block_size}, {best['aigc']['parameters']:,} parameters, attention "
        f"{best['aigc']['attention']} (aigc) / {best['plain']['attention']} (plain), "
        f"best of {args.repeats} runs each"
    )
    memory = "cuda peak MB" if args.device != "cpu" else "peak RSS MB"
    header = f"  {'path':<8}{'tokens/s':>11}{'vs plain':>10}{'ms/step':>9}{memory:>14}"
    print(header + ("" if args.device != "cpu" else f"{'growth MB':>11}") + f"{'MFU':>7}")
    for path, result in best.items():
        tokens_per_second = result["tokens_per_second"]
        line = (
            f"  {path:<8}{tokens_per_second:>11,.0f}{tokens_per_second / plain:>9.2f}x"
            f"{1000 * args.batch_size * block_size / tokens_per_second:>9.1f}"
        )
        if args.device != "cpu":
            line += f"{result['cuda_peak']:>14,.0f}"
        else:
            line += (
                f"{result['rss_peak']:>14,.0f}{result['rss_peak'] - result['rss_before']:>11,.0f}"
            )
        if args.peak_tflops:
            mfu = 6 * result["parameters"] * tokens_per_second / (args.peak_tflops * 1e12)
            line += f"{mfu:>7.1%}"
        else:
            line += f"{'-':>7}"
        print(line)
    speeds = {path: [r["tokens_per_second"] for r in rs] for path, rs in runs.items()}
    every = {path: ", ".join(f"{value:,.0f}" for value in rows) for path, rows in speeds.items()}
    print(f"  every run, tokens/s: aigc {every['aigc']}; plain {every['plain']}")
    if together:
        pairs = [new / old for new, old in zip(speeds["aigc"], speeds["plain"], strict=True)]
        listed = ", ".join(f"{ratio:.2f}" for ratio in pairs)
        print(
            f"  aigc / plain, run by run (each pair at the same time): {listed}; "
            f"median {statistics.median(pairs):.2f}"
        )


if __name__ == "__main__":
    main()
