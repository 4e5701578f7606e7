"""Objects with a child's name that are not ours (no ownerReference to the CR) are never adopted,
read as ours, patched or deleted: a ChildNameConflict condition and a Warning Event say so, and
the operator carries on once the object is gone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelops.api.common import API_VERSION
from modelops.builders.common import train_job_name
from modelops.clients.kube import CRONJOBS, DEPLOYMENTS, HPAS, JOBS, MODELMONITORS, MODELVERSIONS, PDBS, SERVICES
from modelops.reconcile import modelmonitor, modelversion
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube
from tests.operator.test_reconcile import NS, _completed_job, _ctx, _mv

FOREIGN = {"app": "someone-else"}


def _events(ctx: Any) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    ctx.post_event = lambda body, type_, reason, message: seen.append((type_, reason, message))
    return seen


def _foreign(kube: FakeKube, res: Any, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return kube.put(
        res,
        {
            "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
            "kind": kind,
            "metadata": {"name": name, "namespace": NS, "labels": FOREIGN},
            "spec": spec,
        },
    )


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def _writes_to(kube: FakeKube, plural: str, name: str) -> list[tuple[str, str, str]]:
    return [c for c in kube.calls if c[1] == plural and c[2] == name and c[0] != "create"]


async def test_a_foreign_job_with_the_training_jobs_name_is_not_our_training_run(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    events = _events(ctx)
    _mv(kube, "uid-mine", "5.0.0", stage="Development")
    job_name = train_job_name("iris", "5.0.0")
    # Completed, as if it had trained: before the fix it was read as ours (RunNotFound).
    foreign = _foreign(kube, JOBS, "Job", job_name, {"template": {}})
    kube.objects[("jobs", NS, job_name)]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    foreign = copy.deepcopy(kube.objects[("jobs", NS, job_name)])

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    trained = _condition(status, "Trained")
    assert trained["status"] == "False" and trained["reason"] == "ChildNameConflict"
    assert f"Job {NS}/{job_name}" in trained["message"]
    assert _condition(status, "Ready")["reason"] == "ChildNameConflict"
    assert ("Warning", "ChildNameConflict") in [(t, r) for t, r, _ in events]
    assert kube.objects[("jobs", NS, job_name)] == foreign and not _writes_to(kube, "jobs", job_name)
    assert not modelversion.is_settled(await kube.get(MODELVERSIONS, NS, "iris") or {})

    # Once it is gone, the operator carries on: our own Job is created.
    del kube.objects[("jobs", NS, job_name)]
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert _condition(status, "Trained")["reason"] == "JobCreated"
    assert ("jobs", job_name) in kube.reads  # the create met the foreign Job: read and judged
    job = await kube.get(JOBS, NS, job_name) or {}
    assert [o["uid"] for o in job["metadata"]["ownerReferences"]] == ["uid-mine"]


async def test_foreign_serving_children_are_reported_and_left_alone(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    events = _events(ctx)
    _mv(kube, "uid-2", "1.2.0")  # Staging: served
    _completed_job(kube, "1.2.0", "uid-2")
    service = _foreign(kube, SERVICES, "Service", "iris-model-staging", {"ports": [{"port": 1234}]})

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    serving = _condition(status, "Serving")
    assert serving["status"] == "False" and serving["reason"] == "ChildNameConflict"
    assert f"Service {NS}/iris-model-staging" in serving["message"]
    assert status["phase"] != "Ready" and _condition(status, "Ready")["reason"] == "ChildNameConflict"
    assert ("Warning", "ChildNameConflict") in [(t, r) for t, r, _ in events]
    assert (await kube.get(SERVICES, NS, "iris-model-staging")) == service  # not adopted, not patched
    assert not _writes_to(kube, "services", "iris-model-staging")
    assert kube.count("deployments") == 1  # the children that are free are ours as usual

    # The stage is released: the foreign Service is not ours to delete.
    mv = await kube.get(MODELVERSIONS, NS, "iris") or {}
    kube.objects[("modelversions", NS, "iris")]["spec"]["stage"] = "Archived"
    kube.objects[("modelversions", NS, "iris")]["metadata"]["generation"] = 2
    await modelversion.reconcile(ctx, mv)
    assert (await kube.get(SERVICES, NS, "iris-model-staging")) == service
    assert kube.count("deployments") == 0  # ours was removed

    # Back to Staging once the foreign Service is gone: ours is created and the version serves.
    del kube.objects[("services", NS, "iris-model-staging")]
    kube.objects[("modelversions", NS, "iris")]["spec"]["stage"] = "Staging"
    kube.objects[("modelversions", NS, "iris")]["metadata"]["generation"] = 3
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert _condition(status, "Serving")["reason"] != "ChildNameConflict"
    ours = await kube.get(SERVICES, NS, "iris-model-staging") or {}
    assert [o["uid"] for o in ours["metadata"]["ownerReferences"]] == ["uid-2"]


async def test_a_foreign_cronjob_with_the_drift_cronjobs_name_blocks_the_monitor(mlflow_store) -> None:  # noqa: F811
    ctx, kube = _ctx(mlflow_store)
    events = _events(ctx)
    kube.put(
        MODELMONITORS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelMonitor",
            "metadata": {"name": "watch", "namespace": NS, "uid": "uid-monitor"},
            "spec": {"model": "iris-model", "stage": "Production", "schedule": "*/5 * * * *"},
        },
    )
    cronjob = _foreign(kube, CRONJOBS, "CronJob", "watch-drift", {"schedule": "0 0 * * *", "jobTemplate": {}})

    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "watch")) or {})
    status = (await kube.get(MODELMONITORS, NS, "watch") or {})["status"]
    assert _condition(status, "Scheduled")["reason"] == "ChildNameConflict"
    ready = _condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ChildNameConflict"
    assert f"CronJob {NS}/watch-drift" in ready["message"]
    assert ("Warning", "ChildNameConflict") in [(t, r) for t, r, _ in events]
    assert (await kube.get(CRONJOBS, NS, "watch-drift")) == cronjob and not _writes_to(kube, "cronjobs", "watch-drift")

    del kube.objects[("cronjobs", NS, "watch-drift")]
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "watch")) or {})
    status = (await kube.get(MODELMONITORS, NS, "watch") or {})["status"]
    assert _condition(status, "Scheduled")["status"] == "True" and status["cronJob"] == "watch-drift"


async def test_a_foreign_deployment_is_not_read_as_ours_while_mlflow_is_unreachable(
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The serving Deployment is deleted and someone's ready Deployment takes its name while MLflow
    is down (the pass only observes then): its replicas are not reported as ours."""
    from modelops.registry import operations as ops
    from modelops.registry.errors import RegistryUnavailable
    from tests.operator.test_reconcile import _serving_in_staging

    ctx, kube = await _serving_in_staging(logged_runs.store)
    events = _events(ctx)
    del kube.objects[("deployments", NS, "iris-model-staging")]
    ready = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
    foreign = _foreign(kube, DEPLOYMENTS, "Deployment", "iris-model-staging", {"replicas": 1, "template": {}})
    kube.objects[("deployments", NS, "iris-model-staging")]["status"] = {
        **ready,
        "conditions": [{"type": "Available", "status": "True"}],
    }

    def down(*args: Any, **kwargs: Any) -> Any:
        raise RegistryUnavailable("MLflow unreachable during get_aliases_and_tags: connection refused")

    monkeypatch.setattr(ops, "get_aliases_and_tags", down)
    with pytest.raises(RegistryUnavailable):
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    serving = _condition(status, "Serving")
    assert serving["status"] == "False" and serving["reason"] == "ChildNameConflict", serving
    assert f"Deployment {NS}/iris-model-staging" in serving["message"]
    assert status["phase"] != "Ready" and status["serving"]["readyReplicas"] == 0
    assert ("Warning", "ChildNameConflict") in [(t, r) for t, r, _ in events]
    assert not _writes_to(kube, "deployments", foreign["metadata"]["name"])


@pytest.mark.parametrize(
    ("res", "kind", "serving"),
    [
        (DEPLOYMENTS, "Deployment", {}),
        (PDBS, "PodDisruptionBudget", {"replicas": 2}),
        (HPAS, "HorizontalPodAutoscaler", {"autoscaling": {"minReplicas": 2, "maxReplicas": 3}}),
    ],
)
async def test_every_foreign_serving_child_is_reported_and_left_alone(
    logged_runs,  # noqa: F811
    res: Any,
    kind: str,
    serving: dict[str, Any],
) -> None:
    """Someone's ready Deployment, PDB or HPA with a serving child's name: never adopted, patched or
    read as ours (a foreign Deployment's replicas are not the model's), reported until it is gone."""
    ctx, kube = _ctx(logged_runs.store)
    events = _events(ctx)
    mv = _mv(kube, "uid-2", "1.2.0")  # Staging: served
    kube.put(MODELVERSIONS, {**mv, "spec": {**mv["spec"], "serving": serving}})
    _completed_job(kube, "1.2.0", "uid-2")
    name = "iris-model-staging"
    foreign = _foreign(kube, res, kind, name, {"replicas": 2})
    foreign["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}
    foreign = copy.deepcopy(kube.put(res, foreign))

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    condition = _condition(status, "Serving")
    assert (condition["status"], condition["reason"]) == ("False", "ChildNameConflict"), condition
    assert f"{kind} {NS}/{name}" in condition["message"] and status["phase"] != "Ready"
    assert status["serving"]["readyReplicas"] == 0
    assert ("Warning", "ChildNameConflict") in [(t, r) for t, r, _ in events]
    assert (await kube.get(res, NS, name)) == foreign and not _writes_to(kube, res.plural, name)
