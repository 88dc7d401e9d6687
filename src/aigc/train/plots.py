"""The loss curve of a training run, drawn from the metrics its run recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_loss_curve(client: Any, run_id: str, path: Path) -> Path:
    """Train and validation loss against step, as a PNG; `client` is an MlflowClient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        history = sorted(client.get_metric_history(run_id, key), key=lambda item: item.step)
        if history:
            axis.plot(
                [item.step for item in history],
                [item.value for item in history],
                style,
                label=key.replace("_", " "),
                markersize=4,
                linewidth=1.2,
            )
    axis.set_xlabel("step")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.set_title("training loss")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path
