"""The ModelMonitor reconcile against an in-memory API: every path records the generation it handled."""

from __future__ import annotations

from typing import Any

from modelops.api.common import API_VERSION
from modelops.clients.kube import MODELMONITORS
from modelops.reconcile import modelmonitor
from modelops.reconcile.context import Context
from modelops.settings import Settings
from tests.mlflow_testing import mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube

NS = "team-a"


def _monitor(kube: FakeKube, spec: dict[str, Any], generation: int, status: dict[str, Any]) -> dict[str, Any]:
    return kube.put(
        MODELMONITORS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelMonitor",
            "metadata": {"name": "mon", "namespace": NS, "uid": "uid-mon", "generation": generation},
            "spec": spec,
            "status": status,
        },
    )


async def test_an_invalid_spec_records_the_generation_it_judged() -> None:
    """Generation 2 is invalid: Ready=False InvalidSpec *for generation 2*, so GitOps tools do not
    wait for the operator forever (Argo CD shows Degraded, not Progressing)."""
    kube = FakeKube()
    ctx = Context(settings=Settings(), kube=kube, registry=None)  # type: ignore[arg-type]  # never reached
    _monitor(
        kube,
        {"model": "iris-model", "stage": "Production", "schedule": "61 * * * *"},
        generation=2,
        status={"observedGeneration": 1},
    )
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    status = (await kube.get(MODELMONITORS, NS, "mon") or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec") and "spec.schedule" in ready["message"]
    assert status["observedGeneration"] == 2 and ready["observedGeneration"] == 2


async def test_a_monitor_announces_its_drift_series_at_zero(mlflow_store) -> None:  # noqa: F811
    """Before any monitoring run, the monitor's drift counter exists at 0 with its namespace, so
    the first detection is an increase Prometheus can see (ModelDriftDetected fires on it)."""
    from prometheus_client import CollectorRegistry

    from modelops.clients.mlflow import Registry
    from modelops.telemetry import OperatorMetrics

    kube = FakeKube()
    registry = Registry(mlflow_store.uri)
    registry.client = mlflow_store.client
    metrics = OperatorMetrics(CollectorRegistry())
    ctx = Context(
        settings=Settings(mlflow_tracking_uri=mlflow_store.uri), kube=kube, registry=registry, metrics=metrics
    )
    _monitor(kube, {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *"}, generation=1, status={})
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    sample = metrics.registry.get_sample_value(
        "ml_drift_detections_total", {"namespace": NS, "model_name": "iris-model", "drift_type": "data"}
    )
    assert sample == 0
    assert kube.count("cronjobs") == 1
