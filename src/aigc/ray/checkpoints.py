"""A training run's storage folder: its checkpoints and the record of its worker-group starts.

The storage is a folder or a URI (s3://…, `storage_location`); a run's folder is
`storage/run name`. Every rank reports the same checkpoints: rank 0 writes the shared state
(model, optimizer, step) and the run's summary; every rank adds its own RNG state, so a
resumed run draws the same dropout masks as an uninterrupted one and ends with the same
weights. States hold only tensors and plain values and load with `weights_only=True`: a
checkpoint on shared storage cannot run code in the driver or a worker.

Rank 0 writes a file in the run's attempts folder at every start (object stores cannot
append), so restarts are counted whether or not a checkpoint was written before.
"""

from __future__ import annotations

import os
import pickle
import secrets
import time
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
BUNDLE_DIR = "bundle"
ATTEMPTS_FILE = "aigc-attempts"


def storage_location(storage: str | Path):
    """(pyarrow filesystem, path in it) of `train.ray.storage_path`: a folder, or a URI.

    An s3:// URI is reached through the endpoint that AWS_ENDPOINT_URL_S3 (or
    AWS_ENDPOINT_URL) names, with the key from the environment (the stack's profile, or a
    team's). The filesystem holds no key when pickled: every Ray node reads its own."""
    import pyarrow.fs

    text = str(storage)
    if "://" not in text:
        return pyarrow.fs.LocalFileSystem(), str(Path(text).resolve())
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if text.startswith("s3://") and endpoint:
        scheme, _, host = endpoint.rpartition("://")
        filesystem = pyarrow.fs.S3FileSystem(
            endpoint_override=host,
            scheme=scheme or "https",
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        return filesystem, text.removeprefix("s3://").rstrip("/")
    return pyarrow.fs.FileSystem.from_uri(text)


def write_checkpoint(
    directory: Path, state: dict[str, Any], rank: int, summary: dict | None
) -> None:
    """A rank's part of a checkpoint: its RNG state; rank 0 (`summary` given) also the shared
    state (model, every optimizer, scheduler, step, data position) and the run's summary."""
    torch.save(state["rng"], directory / f"rng-rank{rank}.pt")
    if summary is not None:
        shared = {key: value for key, value in state.items() if key != "rng"}
        torch.save({**shared, "summary": summary}, directory / STATE_FILE)


def resume_state(checkpoint, rank: int) -> dict | None:
    """The loop state `rank` resumes from: what `write_checkpoint` wrote, weights only."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = load_training_state(Path(directory) / STATE_FILE)
        rng_file = Path(directory) / f"rng-rank{rank}.pt"
        if rng_file.exists():
            state["rng"] = load_training_state(rng_file)
    state.pop("summary", None)
    return state


def load_training_state(path: Path) -> dict[str, Any]:
    """A state file of a checkpoint, loaded with `weights_only=True`: tensors and plain values.

    A checkpoint folder may sit on storage that other machines write; a file that holds
    anything else (a pickled object runs code when loaded) is refused, not loaded."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next(
            (line.strip() for line in str(error).splitlines() if "GLOBAL" in line),
            str(error).splitlines()[0],
        )
        raise ValueError(
            f"refused to load the training state {path}: it holds more than tensors and plain "
            f"values ({reason}), which no state written by aigc does, so the file was altered "
            "or put there by someone else; find out who can write the checkpoint storage "
            "(train.ray.storage_path), delete this run's folder and train again"
        ) from None


def record_attempt(run_dir) -> int:
    """Record this start of the worker group in the run's folder; the starts before it."""
    filesystem, path = run_dir
    before = len(attempts(run_dir))
    filesystem.create_dir(f"{path}/{ATTEMPTS_FILE}", recursive=True)
    name = f"{path}/{ATTEMPTS_FILE}/{time.time_ns()}-{secrets.token_hex(4)}"
    with filesystem.open_output_stream(name) as stream:
        stream.write(f"started at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    return before


def attempts(run_dir) -> list[str]:
    """The starts of the worker group, one file each in the run's folder (any filesystem:
    object stores cannot append). `run_dir` is (pyarrow filesystem, path in it)."""
    import pyarrow.fs

    filesystem, path = run_dir
    selector = pyarrow.fs.FileSelector(f"{path}/{ATTEMPTS_FILE}", allow_not_found=True)
    return sorted(info.base_name for info in filesystem.get_file_info(selector))
