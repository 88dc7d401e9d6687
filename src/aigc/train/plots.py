"""The loss curves of a training run, drawn from the metrics its run recorded.

    write_loss_curve(client, run_id, path)    # every train_loss* and val_loss* metric, PNG
    write_loss_curves({"generator": [(step, loss), ...], "discriminator": [...]}, path)

Text records `train_loss` and `val_loss`; a GAN one train loss per optimizer
(`train_loss_generator`, `train_loss_discriminator`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def write_loss_curve(client: Any, run_id: str, path: Path) -> Path:
    """Every train and validation loss of the run against step, as a PNG; `client` is an
    MlflowClient."""
    keys = sorted(
        key
        for key in client.get_run(run_id).data.metrics
        if key.startswith(("train_loss", "val_loss"))
    )
    curves = {
        key.replace("_", " "): [
            (item.step, item.value) for item in client.get_metric_history(run_id, key)
        ]
        for key in keys
    }
    return write_loss_curves(curves, path)


def write_loss_curves(curves: Mapping[str, Sequence[tuple[int, float]]], path: Path) -> Path:
    """One line per named loss against step (e.g. a GAN's generator and discriminator), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    for name, points in curves.items():
        if points:
            steps, values = zip(*sorted(points), strict=True)
            axis.plot(steps, values, "-", label=name, linewidth=1.2)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("training losses")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path
