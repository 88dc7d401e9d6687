"""Process-wide settings every aigc entry point applies before it touches a tool.

aigc is offline by design: Prefect, Ray, DVC and MLflow must never phone home. The
defaults below are set (without overriding what the user exported) by the CLI and by the
test suite; `.dvc/config` and `prefect.toml` carry the same choices for the tools' own CLIs.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

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
    # Ray Train's controller acts once per health-check interval (2 s by default): each state
    # change of starting and ending a worker group waits for one. 0.5 s cuts about 5 s from
    # every training's start and end (bench/pipeline.py); polling two workers costs nothing.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    # Ray Train's preemption watcher is a process per training that watches for cloud spot
    # nodes being drained; aigc's clusters (local, the stack, a fixed cluster) have none, and
    # starting it cost about 1.5 s of every training's start (set it to 1 where they do).
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}

# Prefect's client talks to its temporary API server on 127.0.0.1 (as it would to a local
# Prefect or MLflow server); a proxy from HTTP_PROXY/HTTPS_PROXY cannot reach this machine's
# loopback, so loopback always bypasses it.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def apply_offline_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the no-telemetry defaults and loopback's proxy bypass in `environ` (os.environ)."""
    target = os.environ if environ is None else environ
    for key, value in OFFLINE_ENVIRONMENT.items():
        target.setdefault(key, value)
    bypass_proxy_for_loopback(target)


def bypass_proxy_for_loopback(environ: MutableMapping[str, str]) -> None:
    """Add the loopback hosts to both `no_proxy` and `NO_PROXY`, keeping every user entry.

    Both spellings get the same list (the user's entries from either, then loopback's):
    urllib and requests prefer the lowercase one, gRPC reads only it, httpx takes either, so
    a list set in only one spelling must not be hidden by loopback's list in the other. A
    `*` (bypass everything) is left alone: urllib honours it only as the whole value."""
    entries: list[str] = []
    for name in NO_PROXY_VARIABLES:
        for entry in environ.get(name, "").split(","):
            if entry.strip() and entry.strip() not in entries:
                entries.append(entry.strip())
    if "*" in entries:
        return
    merged = ",".join(entries + [host for host in LOOPBACK_HOSTS if host not in entries])
    for name in NO_PROXY_VARIABLES:
        environ[name] = merged
