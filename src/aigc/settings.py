"""Process-wide settings every aigc entry point applies before it touches a tool.

aigc is offline by design: Prefect, Ray, DVC and MLflow must never phone home. The
defaults below are set (without overriding what the user exported) by the CLI and by the
test suite; `.dvc/config` and `prefect.toml` carry the same choices for the tools' own CLIs.
"""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "DVC_NO_ANALYTICS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_TRAIN_V2_ENABLED": "1",
}


def apply_offline_defaults(environ: os._Environ | dict | None = None) -> None:
    """Set the no-telemetry defaults in `environ` (the process environment by default)."""
    target = os.environ if environ is None else environ
    for key, value in OFFLINE_ENVIRONMENT.items():
        target.setdefault(key, value)
