"""aigc.settings: the offline defaults, and loopback's bypass of any configured proxy.

The proxy is a closed port on this machine, so a request that goes through it fails: real
HTTP clients (httpx, which Prefect's client uses, and urllib) must reach a server on
127.0.0.1 past it, and MLflow on sqlite must not notice it at all.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import httpx
import pytest

from aigc.settings import LOOPBACK_HOSTS, apply_offline_defaults, bypass_proxy_for_loopback
from tests.http_fixture import PROXY_VARIABLES, ScriptedServer, closed_port


@pytest.fixture
def dead_proxy(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every proxy variable points at a closed port; no bypass list is set."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return proxy


def test_loopback_is_added_to_both_spellings():
    environ: dict[str, str] = {}
    apply_offline_defaults(environ)
    assert environ["NO_PROXY"] == environ["no_proxy"] == ",".join(LOOPBACK_HOSTS)
    assert environ["DVC_NO_ANALYTICS"] == "1", "the offline defaults still apply"


def test_the_users_entries_are_kept_from_either_spelling_and_come_first():
    environ = {"NO_PROXY": "internal.example.com, localhost", "no_proxy": ".corp"}
    bypass_proxy_for_loopback(environ)
    expected = ".corp,internal.example.com,localhost,127.0.0.1,::1"  # lowercase wins in urllib
    assert environ["NO_PROXY"] == environ["no_proxy"] == expected
    bypass_proxy_for_loopback(environ)
    assert environ["NO_PROXY"] == environ["no_proxy"] == expected, "idempotent"


def test_bypass_everything_is_left_alone():
    environ = {"NO_PROXY": "*"}
    bypass_proxy_for_loopback(environ)
    assert environ == {"NO_PROXY": "*"}, "urllib honours '*' only as the whole value"


def test_http_clients_reach_loopback_past_a_dead_proxy(dead_proxy: str):
    with ScriptedServer() as server:
        server.route("/health", (200, b"ok"))
        with pytest.raises(httpx.ConnectError):  # the dead proxy is really in the way
            httpx.get(server.url + "/health")

        apply_offline_defaults()  # restored by the fixture's monkeypatch afterwards
        assert httpx.get(server.url + "/health").text == "ok"
        for host in ("127.0.0.1", "localhost"):
            url = server.url.replace("127.0.0.1", host) + "/health"
            assert httpx.get(url).text == "ok"
            assert urllib.request.urlopen(url, timeout=10).read() == b"ok"
    assert os.environ["HTTP_PROXY"] == dead_proxy, "the proxy itself is kept for other hosts"
    proxies = urllib.request.getproxies()
    assert proxies["http"] == dead_proxy and not urllib.request.proxy_bypass("example.org")


def test_mlflow_on_sqlite_ignores_the_proxy(dead_proxy: str, tmp_path: Path):
    from aigc.config import TrackingParams
    from aigc.tracking import TrackingSettings, TrainingRun

    apply_offline_defaults()
    settings = TrackingSettings.of(
        TrackingParams(
            tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "art")
        ),
        tmp_path,
    )
    with TrainingRun.start(settings, "behind-a-proxy", params={"lr": 0.1}) as run:
        run.log_metrics({"loss": 1.5}, step=1)
    recorded = settings.client().get_run(run.run_id).data
    assert recorded.metrics == {"loss": 1.5} and recorded.params == {"lr": "0.1"}
