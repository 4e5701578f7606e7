"""The operator reads a model server's refusal from its not-ready pods over HTTP (reconcile.refusal):
the runtime's own app, refusing its model, answers /v2/health/ready on a loopback address that the
pod IP maps to (MODELOPS_POD_NETWORK_MAP), and the reason reaches the Serving condition's message."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelops.builders.common import COMPONENT_SERVING, LABEL_VERSION, selector_labels
from modelops.clients.kube import PODS
from modelops.clients.scrape import ScrapeError
from modelops.contract import REFUSAL_FRAMEWORK_VERSION, SERVING_PORT_NAME, ServeConfig, not_ready_body
from modelops.reconcile.context import Context
from modelops.reconcile.model import observe_refusal
from modelops.reconcile.refusal import ready_refusal
from modelops.settings import Settings
from tests.operator.fake_kube import FakeKube

uvicorn = pytest.importorskip("uvicorn")
serve_app = pytest.importorskip("modelops_runtime.serve.app")
serve_model = pytest.importorskip("modelops_runtime.serve.model")
serve_metrics = pytest.importorskip("modelops_runtime.serve.metrics")
serve_service = pytest.importorskip("modelops_runtime.serve.service")

NS, MODEL, STAGE, VERSION = "team-a", "churn", "Production", "1.1.0"
MISMATCH = "scikit-learn version mismatch: the model was saved with 1.7.3, the server runs 1.7.2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app(refuse: bool) -> Any:
    """The runtime's app for a model whose load was refused (or is still loading)."""
    config = ServeConfig(model=MODEL, registry_version="2", version=VERSION, stage=STAGE)
    state = serve_model.ModelState(config.model_uri)
    if refuse:

        def load(uri: str) -> Any:
            raise serve_model.IncompatibleModel(MISMATCH, REFUSAL_FRAMEWORK_VERSION)

        serve_model.ModelLoader(state, load=load).run()
        assert state.phase == "refused"
    service = serve_service.InferenceService(config, state, serve_metrics.ServerMetrics(MODEL, VERSION), None)
    return serve_app.create_app(service)


@pytest.fixture
async def servers() -> AsyncIterator[int]:
    """At one port: a refusing server on 127.0.0.2 and a loading one on 127.0.0.3 (pod IPs 10.9.0.2, 10.9.0.3)."""
    port = _free_port()
    running = []
    for address, refuse in (("127.0.0.2", True), ("127.0.0.3", False)):
        server = uvicorn.Server(uvicorn.Config(_app(refuse), host=address, port=port, log_level="warning"))
        running.append((server, asyncio.create_task(server.serve())))
        while not server.started:
            await asyncio.sleep(0.01)
    yield port
    for server, task in running:
        server.should_exit = True
        await task


def _pod(name: str, port: int, ip: str | None, ready: bool = False, phase: str = "Running") -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "server", "state": {"running": {}}, "restartCount": 0}],
    }
    if ip is not None:
        status["podIP"] = ip
    labels = {**selector_labels(COMPONENT_SERVING, MODEL, STAGE), LABEL_VERSION: VERSION}
    return {
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "server", "ports": [{"name": SERVING_PORT_NAME, "containerPort": port}]}]},
        "status": status,
    }


def _ctx(kube: FakeKube) -> Context:
    settings = Settings(pod_network_map="10.9.0.0/24=127.0.0.0/24", metrics_scrape_timeout_seconds=5)
    return Context(settings=settings, kube=kube, registry=None)  # type: ignore[arg-type]


async def test_the_reason_is_read_from_a_running_pod_that_is_not_ready(servers: int) -> None:
    port = servers
    kube = FakeKube()
    for pod in (
        _pod("churn-production-a", port, "10.9.0.2"),  # refuses its model
        _pod("churn-production-b", port, "10.9.0.3"),  # still loading: no refusal
        _pod("churn-production-c", port, "10.9.0.4"),  # nothing listens
        _pod("churn-production-d", port, None, phase="Pending"),  # no IP yet
    ):
        kube.put(PODS, pod)
    found = await observe_refusal(_ctx(kube), NS, MODEL, STAGE, VERSION, "2")
    assert found == (
        "FrameworkVersionMismatch",
        f"the model server refused models:/{MODEL}/2 (pod churn-production-a): {MISMATCH}; "
        "the previous version keeps serving",
    )


async def test_ready_pods_and_loading_servers_are_no_refusal(servers: int) -> None:
    port = servers
    kube = FakeKube()
    kube.put(PODS, _pod("churn-production-a", port, "10.9.0.2", ready=True))  # Ready: not asked
    kube.put(PODS, _pod("churn-production-b", port, "10.9.0.3"))
    assert await observe_refusal(_ctx(kube), NS, MODEL, STAGE, VERSION, "2") is None


def test_ready_refusal_parses_the_first_refusing_pod_by_name() -> None:
    refusing = not_ready_body("model cannot be served", ("UntrustedModel", "needs types outside the policy"))
    answers: dict[str, str | ScrapeError] = {
        "p-c": json.dumps(refusing),
        "p-b": json.dumps(not_ready_body("loading models:/m/1")),
        "p-a": ScrapeError("connection refused"),
        "p-d": "not json",
    }
    assert ready_refusal(answers) == ("UntrustedModel", "needs types outside the policy", "p-c")
    assert ready_refusal({"p-b": answers["p-b"], "p-a": answers["p-a"], "p-d": "[]"}) is None
