"""The rollout analysis scrapes the serving pods' /metrics over HTTP (reconcile.rollout._analyse): pods
found through the Deployments' selectors, pod IPs mapped (MODELOPS_POD_NETWORK_MAP), the window's
counters kept in status.rollout across passes, and no prediction log read (the operator here is told a
log path that does not exist, as in a cluster where the log is a volume of the model's namespace)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from modelops.api.modelversion import ModelVersionStatus, RolloutStatus
from modelops.builders.common import serving_name
from modelops.builders.serving import candidate_name
from modelops.clients.kube import DEPLOYMENTS, PODS
from modelops.contract import SERVING_PORT_NAME, RouterConfig
from modelops.reconcile.context import Context
from modelops.reconcile.rollout import StageRollout, _analyse
from modelops.rollout.decision import Step
from modelops.settings import Settings
from tests.operator.fake_kube import FakeKube

serve_metrics = pytest.importorskip("modelops_runtime.serve.metrics")
router_module = pytest.importorskip("modelops_runtime.serve.router")

NS, MODEL, STAGE = "team-a", "churn", "Production"
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pod:
    """A serving pod's metrics (the runtime's own ServerMetrics, plus its router on the incumbent)."""

    def __init__(self, version: str, router: bool) -> None:
        self.server = serve_metrics.ServerMetrics(MODEL, version)
        self.server.set_classes([0, 1])
        self.router = None
        if router:
            config = RouterConfig(mode="shadow", url="http://candidate", version="1.1.0", registry_version="2")
            self.router = router_module.Router(config, self.server.registry, None)


@pytest.fixture
async def pods() -> AsyncIterator[tuple[dict[str, Pod], int]]:
    """Two incumbent pods on 127.0.0.2 and 127.0.0.3 at one port (their pod IPs 10.9.0.2, 10.9.0.3)."""
    port = _free_port()
    served = {
        "127.0.0.2": Pod("1.0.0", router=True),
        "127.0.0.3": Pod("1.0.0", router=True),
        "127.0.0.5": Pod("1.1.0", router=False),  # the candidate's pod
    }
    runners: dict[str, web.AppRunner] = {}

    async def start(address: str) -> None:
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=served[address].server.render(), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        runners[address] = runner

    for address in served:
        await start(address)
    yield served, port
    for runner in runners.values():
        await runner.cleanup()


def _objects(kube: FakeKube, port: int, names: dict[str, str], component: str = "serving") -> None:
    """A Deployment (the stage's, or with ``component`` serving-candidate the candidate's) and its pods."""
    selector = {"app.kubernetes.io/component": component, "m": MODEL}
    name = serving_name(MODEL, STAGE) if component == "serving" else candidate_name(MODEL, STAGE)
    kube.put(
        DEPLOYMENTS,
        {
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": selector}},
        },
    )
    for name, ip in names.items():
        kube.put(
            PODS,
            {
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": selector,
                    "creationTimestamp": "2025-12-31T00:00:00Z",
                },
                "spec": {
                    "containers": [{"name": "server", "ports": [{"name": SERVING_PORT_NAME, "containerPort": port}]}]
                },
                "status": {"phase": "Running", "podIP": ip},
            },
        )


async def test_the_window_is_read_from_the_pods_metrics_without_the_prediction_log(
    pods: tuple[dict[str, Pod], int], tmp_path: Any
) -> None:
    served, port = pods
    kube = FakeKube()
    _objects(kube, port, {"inc-a": "10.9.0.2", "inc-b": "10.9.0.3", "inc-c": "10.9.0.4"})  # c: nothing listens
    _objects(kube, port, {"cand-a": "10.9.0.5"}, component="serving-candidate")
    settings = Settings(
        prediction_log_uri=str(tmp_path / "not-the-operators"), pod_network_map="10.9.0.0/24=127.0.0.0/24"
    )
    ctx = Context(settings=settings, kube=kube, registry=None)  # type: ignore[arg-type]
    roll = StageRollout(STAGE, "v2", "v1", [Step("shadow", 0, 1.0, 60)])
    candidate = ModelVersionStatus(version="1.1.0")
    candidate.rollout = RolloutStatus(phase="Shadow", stage=STAGE, spec_hash="x", step_started=STARTED)
    incumbent = ModelVersionStatus(version="1.0.0")
    a, b = served["127.0.0.2"], served["127.0.0.3"]
    a.server.observe(np.array([1]), 0.002, classifier=True)  # before the window: not counted

    numbers, problems = await _analyse(ctx, NS, MODEL, STAGE, roll, candidate, incumbent, STARTED)
    assert numbers.incumbent.requests == 0 and numbers.candidate.requests == 0
    assert len(problems) == 1 and problems[0].startswith("pod inc-c:")
    counters = candidate.rollout.counters
    assert counters is not None and set(counters.incumbent.pods) == {"inc-a", "inc-b"}
    assert set(counters.candidate.pods) == {"cand-a"}

    for pod in (a, b):
        for _ in range(30):
            pod.server.observe(np.array([1]), 0.002, classifier=True)
        assert pod.router is not None
        pod.router.requests.labels("shadow", "sent").inc(30)
        pod.router.latency.labels("shadow").observe(0.004)
        pod.router.rows.labels("agree").inc(27)
        pod.router.rows.labels("disagree").inc(3)
    b.server.error("internal")
    for _ in range(60):  # the copies as the candidate's own server timed them
        served["127.0.0.5"].server.observe(np.array([1]), 0.008, classifier=True)
    # The status goes through the API (as the wire form) between passes, as after an operator restart.
    candidate = ModelVersionStatus.model_validate(candidate.model_dump(mode="json", by_alias=True, exclude_none=True))
    numbers, _ = await _analyse(ctx, NS, MODEL, STAGE, roll, candidate, incumbent, STARTED + timedelta(seconds=30))
    assert (numbers.incumbent.requests, numbers.incumbent.errors) == (61, 1)
    assert (numbers.candidate.requests, numbers.candidate.errors) == (60, 0)
    assert (numbers.agreement, numbers.compared) == (pytest.approx(0.9), 60)
    assert numbers.incumbent.latency_p95_ms is not None and 1.0 < numbers.incumbent.latency_p95_ms <= 2.5
    assert numbers.candidate.latency_p95_ms is not None and 5.0 < numbers.candidate.latency_p95_ms <= 10.0
    assert numbers.candidate.round_trip_p95_ms is not None and 2.5 < numbers.candidate.round_trip_p95_ms <= 5.0
    assert numbers.candidate.accuracy is None  # no log read: no feedback accuracy
    assert not (tmp_path / "not-the-operators").exists()


def test_pod_network_map() -> None:
    settings = Settings(pod_network_map="10.244.0.0/16=127.244.0.0/16")
    assert settings.pod_address("10.244.1.7") == "127.244.1.7"
    assert settings.pod_address("10.1.2.3") == "10.1.2.3"
    assert Settings().pod_address("10.244.1.7") == "10.244.1.7"
    with pytest.raises(ValueError, match="differ in size"):
        Settings(pod_network_map="10.244.0.0/16=127.0.0.0/8")
