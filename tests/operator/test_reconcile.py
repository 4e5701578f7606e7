"""The ModelVersion reconcile against an in-memory API and a real (sqlite) MLflow registry:
registration survives MLflow outages without registering twice, and repeats create nothing."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.api.common import API_VERSION
from modelops.builders.common import train_job_name
from modelops.clients.kube import JOBS, MODELVERSIONS
from modelops.clients.mlflow import Registry
from modelops.reconcile import modelversion
from modelops.reconcile.context import Context
from modelops.registry import operations as ops
from modelops.registry.errors import RegistryUnavailable
from modelops.settings import Settings
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube

NS = "team-a"


def _ctx(store: Any) -> tuple[Context, FakeKube]:
    kube = FakeKube()
    registry = Registry(store.uri)
    registry.client = store.client
    settings = Settings(experiment_training="registry-tests", mlflow_tracking_uri=store.uri)
    return Context(settings=settings, kube=kube, registry=registry), kube  # type: ignore[arg-type]


def _mv(kube: FakeKube, uid: str, version: str, stage: str = "Staging") -> dict[str, Any]:
    return kube.put(
        MODELVERSIONS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelVersion",
            "metadata": {"name": "iris", "namespace": NS, "uid": uid},
            "spec": {
                "model": "iris-model",
                "version": version,
                "stage": stage,
                "training": {
                    "data": {"uri": "sklearn://iris", "target": "target"},
                    "estimator": "sklearn.linear_model.LogisticRegression",
                },
                "promotion": {"metric": "accuracy", "minValue": 0.5},
            },
        },
    )


def _completed_job(kube: FakeKube, version: str) -> None:
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": train_job_name("iris", version), "namespace": NS},
            "spec": {},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        },
    )


async def test_mlflow_down_during_registration_recovers_without_a_second_version(
    logged_runs,
    monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-2", "1.2.0")
    _completed_job(kube, "1.2.0")
    real = ops.register_run_model
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RegistryUnavailable("MLflow unreachable during register_run_model: connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(ops, "register_run_model", flaky)
    with pytest.raises(RegistryUnavailable):
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    reachable = next(c for c in status["conditions"] if c["type"] == "RegistryReachable")
    assert reachable["status"] == "False" and "connection refused" in reachable["message"]
    assert status["version"] == "1.2.0" and "registry" not in status

    for _ in range(3):  # MLflow is back; further reconciles (timer, restarts) change nothing
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["registry"]["version"] == "1" and status["phase"] == "Promoted"  # no kubelet: not ready
    assert next(c for c in status["conditions"] if c["type"] == "RegistryReachable")["status"] == "True"
    assert len(logged_runs.store.client.search_model_versions("name='iris-model'")) == 1
    assert kube.count("jobs") == 1  # the completed Job was observed, never recreated
    assert str(ctx.registry.client.get_model_version_by_alias("iris-model", "staging").version) == "1"
    assert kube.count("deployments") == 1 and kube.count("services") == 1


async def test_job_created_once_and_finished_run_found_without_a_job(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-new", "2.0.0", stage="Development")
    for _ in range(2):
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert [c for c in kube.calls if c[0] == "create" and c[1] == "jobs"] == [("create", "jobs", "iris-v2-0-0")]
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["phase"] == "Training"

    # A version whose run finished but whose Job is gone (ttlSecondsAfterFinished) registers, no new Job.
    ctx2, kube2 = _ctx(logged_runs.store)
    _mv(kube2, "uid-1", "1.1.0", stage="Development")
    await modelversion.reconcile(ctx2, (await kube2.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube2.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["registry"]["runId"] == logged_runs.run_ids[1]
    assert kube2.count("jobs") == 0 and kube2.count("deployments") == 0  # Development is not served
