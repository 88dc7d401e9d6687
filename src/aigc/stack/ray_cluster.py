"""The stack's Ray cluster: a head node and a second node, two `ray start --block` processes.

Both run with token authentication (RAY_AUTH_MODE=token) and the stack's own token,
`.aigc/stack/ray-token` (mode 0600), which the profile hands to aigc as RAY_AUTH_TOKEN_PATH.
Ray rewrites 127.0.0.1 to the machine's address wherever clusters are on (`ray start` on
Linux), so the nodes register, and clients connect, at that address; the GCS, raylets, object
managers and every worker's gRPC server bind every interface, the runtime-env agents the
machine's address, and each refuses a call without the token. The head runs without Ray's
autoscaler monitor (`--no-monitor`): a fixed cluster has nothing to scale, and the monitor
serves its metrics on 0.0.0.0:44217 to anyone, token or not. Each node has one CPU, so two
training workers (or two evaluation shards) land one on each node. The head's ports are
fixed by the stack; a node's dashboard agent gets its own port too, since two nodes on one
machine would both want Ray's fixed default.

`ray start --block` answers SIGTERM by stopping the processes it started; what a killed node
leaves behind (log_monitor.py, workers, actors) carries the stack's marker in its environment
(processes.py), so `down` stops that too, by pid.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
from pathlib import Path

from aigc.stack.base import HOST, Health, Service, StackConfig, executable, log_tail
from aigc.stack.processes import ProcessRecord, StopPlan, spawn

TOKEN_FILE = "ray-token"
CPUS_PER_NODE = 1


def token_path(config: StackConfig) -> Path:
    """The cluster's token file: created once (mode 0600), then reused."""
    path = config.home / TOKEN_FILE
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    return path


def address(config: StackConfig) -> str:
    return f"{HOST}:{config.ports['ray']}"


def _ray_environment(config: StackConfig, environment: dict[str, str]) -> dict[str, str]:
    environment = {
        **environment,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_path(config)),
        "RAY_USAGE_STATS_ENABLED": "0",
        # A process that ran a local single-machine Ray (aigc.ray.cluster) switched
        # clusters off in its environment; the stack's nodes are a cluster.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
        # On SIGTERM a node first drains, up to 30 s, for Serve's sake; the head, holding
        # Ray Train's actors, never finishes, so `down` waited out its SIGKILL. No draining.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    environment.pop("RAY_AUTH_TOKEN", None)  # it would win over the stack's token file
    return environment


class _RayNode(Service):
    # SIGTERM: `ray start --block` stops its processes; what is left is stopped by pid.
    stop_plan = StopPlan(((signal.SIGTERM, 15.0),))
    start_timeout = 120.0

    def url(self, config: StackConfig) -> str:
        return (
            f"ray://{address(config)}" if self.name == "ray-head" else f"node of {address(config)}"
        )

    def arguments(self, config: StackConfig) -> list[str]:
        raise NotImplementedError

    def start(self, config: StackConfig, environment: dict[str, str]) -> ProcessRecord:
        argv = [
            executable("ray"),
            "start",
            "--block",
            f"--node-ip-address={HOST}",
            f"--num-cpus={CPUS_PER_NODE}",
            "--num-gpus=0",
            "--disable-usage-stats",
            *self.arguments(config),
        ]
        log = config.log(self.name)
        if log.exists():  # health reads this start's log only; the last one stays beside it
            log.replace(log.with_suffix(".log.1"))
        return spawn(
            self.name,
            argv,
            _ray_environment(config, environment),
            config.home,
            config.log(self.name),
        )

    def health(self, config: StackConfig) -> Health:
        """Healthy once `ray start` says the node started (and, on the head, GCS answers)."""
        if "Ray runtime started" not in log_tail(config.log(self.name), 60):
            return Health(False, f"{self.name} has not started yet")
        if self.name == "ray-head":
            try:
                socket.create_connection((HOST, config.ports["ray"]), timeout=3).close()
            except OSError as error:
                return Health(False, f"GCS at {address(config)}: {error}")
        return Health(True, f"started, {CPUS_PER_NODE} CPU (cluster {address(config)})")


class RayHead(_RayNode):
    name = "ray-head"
    ports = ("ray", "ray-head-agent")

    def arguments(self, config: StackConfig) -> list[str]:
        return [
            "--head",
            f"--port={config.ports['ray']}",
            f"--dashboard-agent-listen-port={config.ports['ray-head-agent']}",
            "--include-dashboard=false",
            "--no-monitor",
        ]


class RayNode(_RayNode):
    name = "ray-node"
    ports = ("ray-node-agent",)

    def arguments(self, config: StackConfig) -> list[str]:
        return [
            f"--address={address(config)}",
            f"--dashboard-agent-listen-port={config.ports['ray-node-agent']}",
        ]
