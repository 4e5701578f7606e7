"""The ModelVersion reconcile against an in-memory API and a real (sqlite) MLflow registry:
registration survives MLflow outages without registering twice, and repeats create nothing."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.api.common import API_VERSION
from modelops.builders.common import train_job_name
from modelops.clients.kube import DEPLOYMENTS, JOBS, MODELVERSIONS
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


def _mv(
    kube: FakeKube, uid: str, version: str, stage: str = "Staging", name: str = "iris", **meta: Any
) -> dict[str, Any]:
    return kube.put(
        MODELVERSIONS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": NS, "uid": uid, **meta},
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


def owned_by(uid: str, name: str = "iris") -> list[dict[str, Any]]:
    """The controller ownerReference of a child of the ModelVersion ``name`` with ``uid``."""
    return [{"apiVersion": API_VERSION, "kind": "ModelVersion", "name": name, "uid": uid, "controller": True}]


def _completed_job(kube: FakeKube, version: str, uid: str) -> None:
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": train_job_name("iris", version), "namespace": NS, "ownerReferences": owned_by(uid)},
            "spec": {},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        },
    )


def _failed_job(kube: FakeKube, name: str, failed: int, owner_uid: str) -> None:
    """A training Job of the CR with uid ``owner_uid`` that reached its backoff limit after ``failed`` pods."""
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "ownerReferences": owned_by(owner_uid)},
            "spec": {},
            "status": {
                "failed": failed,
                "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimit"}],
            },
        },
    )


async def test_mlflow_down_during_registration_recovers_without_a_second_version(
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-2", "1.2.0")
    _completed_job(kube, "1.2.0", "uid-2")
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
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert not [r for r in kube.reads if r[0] == "jobs"]  # no Job recorded yet: created without a GET first
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert ("jobs", "iris-v2-0-0") in kube.reads  # recorded: observed
    assert [c for c in kube.calls if c[0] == "create" and c[1] == "jobs"] == [("create", "jobs", "iris-v2-0-0")]
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["phase"] == "Training"

    # A version whose run finished but whose Job is gone (ttlSecondsAfterFinished) registers, no new Job.
    ctx2, kube2 = _ctx(logged_runs.store)
    mv = _mv(kube2, "uid-1", "1.1.0", stage="Development")
    mv["status"] = {"version": "1.1.0", "trainingJob": {"name": train_job_name("iris", "1.1.0")}}
    kube2.put(MODELVERSIONS, mv)
    await modelversion.reconcile(ctx2, (await kube2.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube2.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["registry"]["runId"] == logged_runs.run_ids[1]
    assert kube2.count("jobs") == 0 and kube2.count("deployments") == 0  # Development is not served


async def test_concurrent_version_bumps_get_distinct_versions(logged_runs) -> None:  # noqa: F811
    import asyncio

    ctx, kube = _ctx(logged_runs.store)
    for i in range(4):
        mv = _mv(kube, f"uid-bump-{i}", "1.0.0")
        del kube.objects[("modelversions", NS, "iris")]
        del mv["spec"]["version"]
        mv["spec"]["versionBump"] = "minor"
        mv["metadata"].update(name=f"bump-{i}", creationTimestamp=f"2026-01-01T00:00:0{i}Z")
        kube.put(MODELVERSIONS, mv)
    bodies = [await kube.get(MODELVERSIONS, NS, f"bump-{i}") or {} for i in range(4)]
    await asyncio.gather(*(modelversion.reconcile(ctx, b) for b in bodies))
    stored = [await kube.get(MODELVERSIONS, NS, f"bump-{i}") or {} for i in range(4)]
    versions = sorted(obj["status"]["version"] for obj in stored)
    assert len(set(versions)) == 4, versions  # no two bumps resolved to the same number
    assert kube.count("jobs") == 4


def test_overlay_keeps_both_flows_fields() -> None:
    from modelops.api.common import Condition, now
    from modelops.api.modelversion import ModelVersionStatus, PromotionStatus, RegistryStatus
    from modelops.reconcile.model import overlay_version_fields

    t = now()
    stored = ModelVersionStatus(
        stage="Production",
        promotion=PromotionStatus(decision="Promoted"),
        conditions=[
            Condition(type="Promoted", status="True", reason="Promoted", last_transition_time=t),
            Condition(type="Trained", status="Unknown", reason="Training", last_transition_time=t),
        ],
    )
    mine = ModelVersionStatus(
        version="1.0.0",
        registry=RegistryStatus(model="m", version="1", run_id="r", model_uri="models:/m/1"),
        conditions=[
            Condition(type="Trained", status="True", reason="TrainingSucceeded", last_transition_time=t),
            Condition(type="Registered", status="True", reason="Registered", last_transition_time=t),
        ],
    )
    merged = overlay_version_fields(stored, mine)
    assert merged.stage == "Production" and merged.promotion is not None and merged.registry is not None
    kinds = {c.type: c.reason for c in merged.conditions}
    assert kinds == {"Promoted": "Promoted", "Trained": "TrainingSucceeded", "Registered": "Registered"}


async def test_a_status_computed_from_a_stale_body_never_overwrites_a_newer_one(logged_runs) -> None:  # noqa: F811
    """Another writer changes the status between the reconcile's read and its write: the write is
    refused (resourceVersion precondition), the reconcile re-reads, and both changes survive."""
    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-new", "2.0.0", stage="Development")
    real_get = kube.get
    meddled = {"done": False}

    async def get_then_meddle(res: Any, namespace: str, name: str) -> Any:
        body = await real_get(res, namespace, name)
        if res == MODELVERSIONS and not meddled["done"]:
            meddled["done"] = True  # a sibling's model-level pass writes this status right after our read
            await kube.patch(
                MODELVERSIONS, namespace, name, {"status": {"metricSummary": "written meanwhile"}}, "status"
            )
        return body

    kube.get = get_then_meddle  # type: ignore[method-assign]
    await modelversion.reconcile(ctx, (await real_get(MODELVERSIONS, NS, "iris")) or {})
    status = (await real_get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["metricSummary"] == "written meanwhile"  # not overwritten by the stale computation
    assert status["phase"] == "Training" and status["version"] == "2.0.0"  # and the reconcile's own result landed
    # the meddling write, the refused one, the repeated one; the repeat found the Job it had created
    assert [c[0] for c in kube.calls] == ["patch/status", "create", "patch/status", "patch/status"]


async def test_a_version_registered_by_someone_else_during_training_is_a_conflict(logged_runs) -> None:  # noqa: F811
    """The semver owner check runs before the Job is created and again before registering."""
    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-2", "1.2.0", stage="Development")
    mv["status"] = {"version": "1.2.0", "trainingJob": {"name": train_job_name("iris", "1.2.0")}}
    kube.put(MODELVERSIONS, mv)
    _completed_job(kube, "1.2.0", "uid-2")
    client = logged_runs.store.client
    other = client.get_run(logged_runs.run_ids[0])  # registered by hand meanwhile, as 1.2.0, by another owner
    ops.register_run_model(client, "iris-model", other, {"semver": "1.2.0", "modelops.uid": "someone-else"})

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    registered = next(c for c in status["conditions"] if c["type"] == "Registered")
    assert registered["reason"] == "VersionConflict" and "someone-else" in registered["message"]
    assert status["phase"] == "Failed" and "registry" not in status
    assert len(client.search_model_versions("name='iris-model'")) == 1  # ours was not registered


async def test_a_recreated_modelversion_adopts_its_registered_version(logged_runs) -> None:  # noqa: F811
    """Deleted and applied again (new uid, same namespace, name and version): no retraining, no
    VersionConflict; the registered version is re-tagged with the new owner."""
    client = logged_runs.store.client
    earlier = client.get_run(logged_runs.run_ids[1])
    ops.register_run_model(
        client,
        "iris-model",
        earlier,
        {"semver": "1.2.0", "modelops.uid": "uid-of-the-deleted-cr", "modelops.namespace": NS, "modelops.name": "iris"},
    )
    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-recreated", "1.2.0", stage="Development")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["registry"]["version"] == "1" and status["registry"]["runId"] == earlier.info.run_id
    assert status["phase"] == "Registered" or status["phase"] == "Ready"
    assert kube.count("jobs") == 0  # adopted, not retrained
    assert client.get_model_version("iris-model", "1").tags["modelops.uid"] == "uid-recreated"
    assert len(client.search_model_versions("name='iris-model'")) == 1


async def test_a_failed_version_stops_saying_mlflow_is_unreachable(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-failed", "3.0.0", stage="Development")
    mv["status"] = {
        "version": "3.0.0",
        "trainingJob": {"name": train_job_name("iris", "3.0.0")},
        "conditions": [
            {
                "type": "RegistryReachable",
                "status": "False",
                "reason": "RegistryUnavailable",
                "message": "MLflow unreachable, retrying with backoff: connection refused",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    kube.put(MODELVERSIONS, mv)
    _failed_job(kube, train_job_name("iris", "3.0.0"), 3, "uid-failed")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Failed" and conditions["Trained"]["reason"] == "TrainingFailed"
    assert conditions["RegistryReachable"]["status"] == "True"


async def test_a_failed_training_retrains_when_spec_training_changes(logged_runs) -> None:  # noqa: F811
    from modelops.api.modelversion import ModelVersionSpec

    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-retrain", "4.0.0", stage="Development")
    failed_spec = {
        **mv["spec"],
        "training": {**mv["spec"]["training"], "data": {"uri": "sklearn://iris", "target": "nosuchcol"}},
    }
    old_hash = modelversion.training_hash(ModelVersionSpec.model_validate(failed_spec))
    job_name = train_job_name("iris", "4.0.0")
    mv["status"] = {
        "version": "4.0.0",
        "trainingJob": {"name": job_name},
        "trainingHash": old_hash,
        "conditions": [
            {
                "type": "Trained",
                "status": "False",
                "reason": "TrainingFailed",
                "message": "target column 'nosuchcol' not in dataset",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    kube.put(MODELVERSIONS, mv)  # spec.training now has target "target": the user fixed it
    _failed_job(kube, job_name, 3, "uid-retrain")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    trained = next(c for c in status["conditions"] if c["type"] == "Trained")
    assert trained["reason"] == "Retraining" and status["phase"] == "Training"
    assert kube.count("jobs") == 0  # the failed Job was deleted

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Trained")["reason"] == "JobCreated"
    assert kube.count("jobs") == 1 and status["trainingHash"] != old_hash

    # The same failure with an unchanged spec stays final: no Job deleted, no new one.
    ctx2, kube2 = _ctx(logged_runs.store)
    same = _mv(kube2, "uid-final", "4.0.0", stage="Development")
    same["status"] = {
        **mv["status"],
        "trainingHash": modelversion.training_hash(ModelVersionSpec.model_validate(same["spec"])),
    }
    kube2.put(MODELVERSIONS, same)
    kube2.put(JOBS, (await kube.get(JOBS, NS, job_name)) or {})
    kube2.objects[("jobs", NS, job_name)]["metadata"]["ownerReferences"] = owned_by("uid-final")
    kube2.objects[("jobs", NS, job_name)]["status"] = {
        "failed": 3,
        "conditions": [{"type": "Failed", "status": "True"}],
    }
    await modelversion.reconcile(ctx2, (await kube2.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube2.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["phase"] == "Failed" and kube2.count("jobs") == 1
    assert not [c for c in kube2.calls if c[0] == "delete" and c[1] == "jobs"]


def _ready_deployment(kube: FakeKube, name: str) -> None:
    """What the Deployment controller reports once every pod of the current template is available."""
    key = ("deployments", NS, name)
    obj = kube.objects[key]
    want = obj["spec"].get("replicas", 1)
    obj["status"] = {
        "observedGeneration": obj["metadata"]["generation"],
        "replicas": want,
        "updatedReplicas": want,
        "readyReplicas": want,
        "availableReplicas": want,
        "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}],
    }


async def test_a_failed_version_fixed_in_place_ends_ready_not_failed(logged_runs) -> None:  # noqa: F811
    """Training failed (Ready=False TrainingFailed written), the spec is fixed: the version retrains,
    registers, is promoted and serves, and its status says Ready, not the old failure."""
    from modelops.api.modelversion import ModelVersionSpec

    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-1", "1.1.0", stage="Staging")  # logged_runs holds a finished run of uid-1
    failed_spec = {**mv["spec"], "training": {**mv["spec"]["training"], "hyperparameters": {"Cc": 1.0}}}
    job_name = train_job_name("iris", "1.1.0")
    failure = "LogisticRegression has no hyperparameter 'Cc'"
    mv["status"] = {
        "version": "1.1.0",
        "phase": "Failed",
        "trainingJob": {"name": job_name, "failedPods": 1, "failureReason": failure},
        "trainingHash": modelversion.training_hash(ModelVersionSpec.model_validate(failed_spec)),
        "observedGeneration": 1,
        "conditions": [
            {"type": t, "status": "False", "reason": "TrainingFailed", "message": f"Job {job_name}: {failure}",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t in ("Trained", "Ready")
        ],
    }  # fmt: skip
    mv["metadata"]["generation"] = 2  # the corrected spec was applied
    kube.put(MODELVERSIONS, mv)
    _failed_job(kube, job_name, 1, "uid-1")

    async def step() -> dict[str, Any]:
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
        return (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]

    status = await step()  # the failed Job is deleted
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Training", "Retraining"), status
    status = await step()  # a new Job
    assert status["phase"] == "Training" and "failureReason" not in status["trainingJob"], status
    _completed_job(kube, "1.1.0", "uid-1")
    status = await step()  # registered, promoted to Staging, rolling out
    assert status["phase"] == "Promoted" and status["registry"]["runId"] == logged_runs.run_ids[1], status
    _ready_deployment(kube, "iris-model-staging")
    status = await step()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Ready", status
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("True", "Serving")
    assert conditions["Trained"]["reason"] == "TrainingSucceeded"
    assert "failureReason" not in status["trainingJob"] and status["observedGeneration"] == 2


async def test_a_version_conflict_that_goes_away_ends_ready(logged_runs) -> None:  # noqa: F811
    """Ready=False VersionConflict was written; the older CR holding the version is deleted: this one
    trains, registers and serves, and its status no longer says VersionConflict."""
    ctx, kube = _ctx(logged_runs.store)
    older = _mv(kube, "uid-older", "1.1.0", stage="Staging")
    older["metadata"].update(name="iris-older", creationTimestamp="2025-12-31T00:00:00Z")
    del kube.objects[("modelversions", NS, "iris")]
    kube.put(MODELVERSIONS, older)
    _mv(kube, "uid-1", "1.1.0", stage="Staging")

    async def step() -> dict[str, Any]:
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
        return (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]

    status = await step()
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Failed", "VersionConflict"), status
    del kube.objects[("modelversions", NS, "iris-older")]  # the conflicting object is removed
    status = await step()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Training" and conditions["Ready"]["reason"] == "JobCreated", status
    assert "Registered" not in conditions, conditions  # set again when it registers
    _completed_job(kube, "1.1.0", "uid-1")
    await step()
    _ready_deployment(kube, "iris-model-staging")
    status = await step()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Ready" and conditions["Ready"]["status"] == "True", status
    assert conditions["Registered"]["reason"] == "Registered"


async def _serving_in_staging(store: Any) -> tuple[Context, FakeKube]:
    """A context whose ModelVersion ``iris`` (1.1.0, uid-1) is registered, holds Staging and is Ready."""
    ctx, kube = _ctx(store)
    _mv(kube, "uid-1", "1.1.0", stage="Staging")
    _completed_job(kube, "1.1.0", "uid-1")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    _ready_deployment(kube, "iris-model-staging")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]["phase"] == "Ready"
    return ctx, kube


def _break_deployment(kube: FakeKube, name: str) -> int:
    """What the Deployment controller reports once a pod is lost and the rollout's deadline passed:
    one replica fewer than wanted, Available=False, ProgressDeadlineExceeded. Returns the replicas wanted."""
    deployment = kube.objects[("deployments", NS, name)]
    want = int(deployment["spec"].get("replicas", 1))
    deployment["status"].update(
        availableReplicas=want - 1,
        readyReplicas=want - 1,
        conditions=[
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"},
        ],
    )
    return want


async def test_serving_status_follows_the_deployment_when_the_registry_step_fails(logged_runs) -> None:  # noqa: F811
    """The serving version is deleted from MLflow by hand and its Deployment breaks: whatever the
    registry step does about the deletion, Serving and Ready come from the observed Deployment."""
    from mlflow.exceptions import MlflowException

    ctx, kube = await _serving_in_staging(logged_runs.store)

    logged_runs.store.client.delete_model_version("iris-model", "1")
    _break_deployment(kube, "iris-model-staging")
    try:
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    except MlflowException:
        pass  # the registry step may fail and be retried; the status must be written before
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    # The version deleted by hand takes no stage (VersionDeleted), so nothing claims it serves.
    assert conditions["Serving"]["status"] == "False", conditions["Serving"]
    assert conditions["Registered"]["reason"] == "VersionDeleted", conditions["Registered"]
    assert conditions["Ready"]["status"] == "False" and status["phase"] != "Ready", status


async def test_serving_status_follows_the_deployment_while_mlflow_is_unreachable(
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow stops answering while the serving Deployment breaks: the model-level pass cannot read
    the registry, yet Serving and Ready come from the observed Deployment (written before the error
    is raised for kopf's retry), and the Deployment is left as it is."""
    ctx, kube = await _serving_in_staging(logged_runs.store)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise RegistryUnavailable("MLflow unreachable during get_aliases_and_tags: connection refused")

    monkeypatch.setattr(ops, "get_aliases_and_tags", down)
    template = kube.objects[("deployments", NS, "iris-model-staging")]["spec"]["template"]
    want = _break_deployment(kube, "iris-model-staging")
    with pytest.raises(RegistryUnavailable):
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Serving"]["status"], conditions["Serving"]["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert conditions["Ready"]["status"] == "False" and status["phase"] != "Ready", status
    assert status["serving"]["readyReplicas"] == want - 1
    assert conditions["RegistryReachable"]["status"] == "False"
    assert kube.objects[("deployments", NS, "iris-model-staging")]["spec"]["template"] == template


async def test_a_finished_rollout_is_reported_on_the_deployments_event(logged_runs) -> None:  # noqa: F811
    """The Deployment's event re-runs the model-level flow through a registered version, also when
    the model's first version by name is still training: Ready follows the event, not a timer."""
    from types import SimpleNamespace

    from modelops.handlers import _on_child
    from modelops.telemetry import OperatorMetrics

    ctx, kube = _ctx(logged_runs.store)
    first = _mv(kube, "uid-training", "2.0.0", stage="Staging")
    del kube.objects[("modelversions", NS, "iris")]
    first["metadata"]["name"] = "a-training"  # sorts before "iris"
    kube.put(MODELVERSIONS, first)
    _mv(kube, "uid-1", "1.1.0", stage="Staging")
    _completed_job(kube, "1.1.0", "uid-1")
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "a-training")) or {})
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]["phase"] == "Promoted"  # rolling out

    _ready_deployment(kube, "iris-model-staging")
    memo = SimpleNamespace(ctx=ctx, metrics=OperatorMetrics())
    await _on_child(ctx, memo, (await kube.get(DEPLOYMENTS, NS, "iris-model-staging")) or {}, "MODIFIED")
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["phase"] == "Ready", status


async def _registered_versions(ctx: Context, kube: FakeKube, versions: list[str]) -> None:
    """ModelVersions ``v<i>`` of iris-model (uids uid-<i>, whose finished runs logged_runs holds), registered."""
    for i, version in enumerate(versions):
        mv = _mv(kube, f"uid-{i}", version, stage="Staging")
        del kube.objects[("modelversions", NS, "iris")]
        mv["metadata"]["name"] = f"v{i}"
        kube.put(MODELVERSIONS, mv)
        job = {
            "metadata": {
                "name": train_job_name(f"v{i}", version),
                "namespace": NS,
                "ownerReferences": owned_by(f"uid-{i}"),
            }
        }
        kube.put(JOBS, {**job, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})
    for i in range(len(versions)):
        await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, f"v{i}")) or {})


async def test_a_superseded_version_names_the_version_that_holds_the_stage_now(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    await _registered_versions(ctx, kube, ["1.0.0", "1.1.0", "1.2.0"])
    oldest = (await kube.get(MODELVERSIONS, NS, "v0") or {})["status"]
    promoted = next(c for c in oldest["conditions"] if c["type"] == "Promoted")
    assert oldest["phase"] == "Superseded" and (await kube.get(MODELVERSIONS, NS, "v2") or {})["status"]["stage"]
    assert "Staging is held by 1.2.0" in promoted["message"], promoted  # not by 1.1.0, which it lost to
    assert oldest["promotion"]["comparedTo"] == "1.1.0"  # the comparison that decided it stays recorded


async def test_a_spec_version_added_to_a_registered_version_is_reported_as_ignored(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    await _registered_versions(ctx, kube, ["1.0.0"])
    kube.objects[("modelversions", NS, "v0")]["spec"]["version"] = "2.0.0"  # edited after registration
    kube.objects[("modelversions", NS, "v0")]["metadata"]["generation"] = 2
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "v0")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "v0") or {})["status"]
    registered = next(c for c in status["conditions"] if c["type"] == "Registered")
    assert registered["reason"] == "ImmutableVersion", registered
    assert "spec.version 2.0.0" in registered["message"] and "1.0.0" in registered["message"]
    assert status["version"] == "1.0.0" and status["observedGeneration"] == 2


async def test_an_estimator_outside_the_allowlist_is_refused_before_any_job_or_mlflow_call(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-x", "9.0.0", stage="Staging")
    mv["spec"]["training"]["estimator"] = "xgboost.XGBClassifier"  # a valid dotted path, not allowlisted
    kube.put(MODELVERSIONS, mv)
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Failed", "InvalidSpec"), status
    assert "spec.training.estimator: 'xgboost.XGBClassifier' is outside the allowed modules" in ready["message"]
    assert kube.count("jobs") == 0
    assert status["version"] == "9.0.0"  # the version it asks for, shown by kubectl get mv's VERSION column
    assert logged_runs.store.client.search_registered_models() == []  # MLflow was not even asked

    # Fixed, with another version: a refused spec resolved nothing, so the new version is taken.
    mv = kube.objects[("modelversions", NS, "iris")]
    mv["spec"]["training"]["estimator"] = "sklearn.linear_model.LogisticRegression"
    mv["spec"]["version"] = "9.0.1"
    mv["metadata"]["generation"] = 2
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["version"] == "9.0.1" and status["phase"] == "Training", status
    assert [c for c in kube.calls if c[0] == "create"] == [("create", "jobs", train_job_name("iris", "9.0.1"))]


async def test_data_uris_outside_the_policy_are_invalid_spec_before_any_job_or_mlflow_call(
    mlflow_store,  # noqa: F811
    tmp_path: Any,
) -> None:
    """The reported reproductions: an internal URL answering fake credentials, a system file and
    a CSV outside the data folder end as InvalidSpec naming the field; nothing is fetched, no Job
    or MLflow run exists, and neither status nor Events carry the files' content."""
    from tests.runtime.test_data_policy import CREDENTIALS, SECRET, serving

    kube = FakeKube()
    registry = Registry(mlflow_store.uri)
    registry.client = mlflow_store.client
    events: list[tuple[str, str, str]] = []
    ctx = Context(
        # The production data URI policy (the settings' default).
        settings=Settings(experiment_training="registry-tests", mlflow_tracking_uri=mlflow_store.uri),
        kube=kube,  # type: ignore[arg-type]
        registry=registry,
        post_event=lambda body, kind, reason, message: events.append((kind, reason, message)),
    )
    outside = tmp_path / "creds.csv"
    outside.write_text(f"x,y\n{SECRET},1\n2,0\n")
    os_release = open("/etc/os-release").read()
    with serving("127.0.0.1", {"/latest": (200, {}, CREDENTIALS.encode())}) as (port, seen):
        uris = {
            "internal-url": (f"http://127.0.0.1:{port}/latest", "address 127.0.0.1 is loopback"),
            "system-file": ("/etc/os-release", "local path '/etc/os-release' is outside the allowed data folders"),
            "outside-folder": (str(outside), "is outside the allowed data folders (/var/lib/modelops/data)"),
        }
        for name, (uri, _) in uris.items():
            mv = _mv(kube, f"uid-{name}", "1.0.0")
            del kube.objects[("modelversions", NS, "iris")]
            mv["metadata"]["name"] = name
            mv["spec"]["model"] = name
            mv["spec"]["training"]["data"] = {"uri": uri, "target": "y", "format": "csv"}
            kube.put(MODELVERSIONS, mv)
            for _ in range(2):  # a second pass changes nothing and posts nothing
                await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, name)) or {})
    assert seen == []
    for name, (_, why) in uris.items():
        status = (await kube.get(MODELVERSIONS, NS, name) or {})["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
        assert ready["message"].startswith("spec.training.data.uri: ") and why in ready["message"]
        assert status["phase"] == "Failed" and "trainingJob" not in status and status["version"] == "1.0.0"
    assert kube.count("jobs") == 0
    assert mlflow_store.client.search_registered_models() == []
    assert mlflow_store.client.search_experiments(filter_string="name = 'registry-tests'") == []
    assert [(kind, reason) for kind, reason, _ in events] == [("Warning", "InvalidSpec")] * 3
    everything = str(events) + str([o.get("status") for o in kube.objects.values()])
    assert SECRET not in everything and "PRETTY_NAME" in os_release and "PRETTY_NAME" not in everything


async def test_a_monitor_reading_outside_the_data_policy_is_invalid_spec_and_has_no_cronjob(
    mlflow_store,  # noqa: F811
) -> None:
    from modelops.builders.common import drift_cronjob_name
    from modelops.clients.kube import CRONJOBS, MODELMONITORS
    from modelops.reconcile import modelmonitor

    ctx, kube = _ctx(mlflow_store)
    monitor = {
        "apiVersion": API_VERSION,
        "kind": "ModelMonitor",
        "metadata": {"name": "watch", "namespace": NS, "uid": "uid-mm"},
        "spec": {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *"},
    }
    kube.put(MODELMONITORS, monitor)
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "watch")) or {})
    assert kube.count("cronjobs") == 1  # allowed: scheduled

    monitor["spec"]["current"] = {"uri": "http://169.254.169.254/latest/meta-data/iam", "format": "csv"}
    kube.put(MODELMONITORS, monitor)  # the URI of the current data now points at cloud metadata
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "watch")) or {})
    status = (await kube.get(MODELMONITORS, NS, "watch") or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == (
        "spec.current.uri: address 169.254.169.254 is link-local and not in the allowed networks (none)"
    )
    assert await kube.get(CRONJOBS, NS, drift_cronjob_name("watch")) is None and "cronJob" not in status


async def test_a_bump_whose_job_exists_but_whose_claim_was_lost_keeps_its_version(logged_runs) -> None:  # noqa: F811
    """An operator killed between creating a bumped version's Job and writing its claim: the next
    operator (the new leader) finds the Job of this CR and keeps its version instead of bumping
    again into a second Job (seen in the failover test: v3-v1-2-0 and v3-v1-3-0)."""
    from modelops.builders.common import COMPONENT_TRAINING, LABEL_COMPONENT, LABEL_VERSION

    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-bump", "1.0.0", stage="Development")
    del mv["spec"]["version"]
    mv["spec"]["versionBump"] = "minor"
    kube.put(MODELVERSIONS, mv)
    orphan = train_job_name("iris", "1.3.0")
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {},
            "status": {"active": 1},
            "metadata": {
                "name": orphan,
                "namespace": NS,
                "ownerReferences": owned_by("uid-bump"),
                "labels": {LABEL_COMPONENT: COMPONENT_TRAINING, LABEL_VERSION: "1.3.0"},
            },
        },
    )
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["version"] == "1.3.0", status
    assert [j["metadata"]["name"] for j in await kube.list(JOBS, NS)] == [orphan]


async def test_a_promoted_rollout_is_applied_in_the_pass_that_decided_it(
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The analysis promotes the candidate: the same reconcile moves the stage to it (Promoted, the
    stage's Deployment pinned to its registry version), not the next resync a whole interval later."""
    from modelops.reconcile import rollout

    ctx, kube = _ctx(logged_runs.store)
    await _registered_versions(ctx, kube, ["1.0.0"])
    candidate = _mv(kube, "uid-1", "1.1.0", stage="Staging")
    del kube.objects[("modelversions", NS, "iris")]
    candidate["metadata"]["name"] = "v1"
    candidate["spec"]["rollout"] = {"strategy": "Canary", "steps": [{"weight": 50, "pauseSeconds": 5}]}
    kube.put(MODELVERSIONS, candidate)
    job = {"metadata": {"name": train_job_name("v1", "1.1.0"), "namespace": NS, "ownerReferences": owned_by("uid-1")}}
    kube.put(JOBS, {**job, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "v1")) or {})
    started = (await kube.get(MODELVERSIONS, NS, "v1") or {})["status"]
    assert started["rollout"]["phase"] == "Waiting" and started.get("stage") is None, started

    original = rollout.advance

    async def promote(ctx_: Any, namespace: str, model: str, the_plan: Any, bodies: Any, statuses: Any, specs: Any):
        await original(ctx_, namespace, model, the_plan, bodies, statuses, specs)
        for roll in the_plan.rollouts.values():  # what the analysis decides once every window passed
            rs = statuses[roll.candidate].rollout
            rs.phase, rs.weight, rs.action, rs.reason = "Promoted", 100, "Promote", "step 1/1 (canary 50%) passed"

    monkeypatch.setattr(rollout, "advance", promote)
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "v1")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "v1") or {})["status"]
    assert status["stage"] == "Staging" and status["promotion"]["decision"] == "Promoted", status
    pinned = kube.objects[("deployments", NS, "iris-model-staging")]["spec"]["template"]
    assert status["registry"]["modelUri"] in str(pinned), pinned


async def test_one_fix_of_a_failed_training_trains_once_even_when_its_status_write_is_lost(
    logged_runs,  # noqa: F811
) -> None:
    """spec.training fixed after a failed training: the failed Job is deleted and one new Job
    trains. The status write recording the new Job is refused (409: kopf wrote the object
    meanwhile) and the repeated pass finds that Job running: when it fails too, its failure is
    final for the new spec (TrainingFailed), not taken for the old Job's (a second Retraining)."""
    from modelops.api.modelversion import ModelVersionSpec

    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-fix", "4.1.0", stage="Development")
    failed_spec = {**mv["spec"], "training": {**mv["spec"]["training"], "hyperparameters": {"C": "lots"}}}
    job_name = train_job_name("iris", "4.1.0")
    mv["status"] = {
        "version": "4.1.0",
        "trainingJob": {"name": job_name},
        "trainingHash": modelversion.training_hash(ModelVersionSpec.model_validate(failed_spec)),
        "conditions": [
            {"type": "Trained", "status": "False", "reason": "TrainingFailed", "message": "C: 'lots'",
             "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
    }  # fmt: skip
    kube.put(MODELVERSIONS, mv)  # the user fixed spec.training
    _failed_job(kube, job_name, 1, "uid-fix")
    real_get = kube.get
    meddle = {"armed": False}

    async def get_then_meddle(res: Any, namespace: str, name: str) -> Any:
        body = await real_get(res, namespace, name)
        if res == MODELVERSIONS and meddle["armed"]:
            meddle["armed"] = False  # kopf records its handler state on the object right after our read
            await kube.patch(MODELVERSIONS, namespace, name, {"metadata": {"annotations": {"kopf": "done"}}})
        return body

    kube.get = get_then_meddle  # type: ignore[method-assign]

    async def step() -> dict[str, Any]:
        await modelversion.reconcile(ctx, (await real_get(MODELVERSIONS, NS, "iris")) or {})
        return (await real_get(MODELVERSIONS, NS, "iris") or {})["status"]

    def trained(status: dict[str, Any]) -> str:
        return str(next(c for c in status["conditions"] if c["type"] == "Trained")["reason"])

    assert trained(await step()) == "Retraining" and kube.count("jobs") == 0  # the failed Job is deleted
    meddle["armed"] = True
    status = await step()  # one new Job; the write recording it lost to kopf's, the repeat observed the Job
    assert kube.count("jobs") == 1 and trained(status) == "Training", status
    kube.objects[("jobs", NS, job_name)]["status"] = {
        "failed": 1,
        "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimit"}],
    }  # the new spec fails as well (a pod of the new Job ran)
    assert trained(await step()) == "TrainingFailed"
    status = await step()
    assert trained(status) == "TrainingFailed" and status["phase"] == "Failed", status
    assert [c for c in kube.calls if c[1] == "jobs"] == [("delete", "jobs", job_name), ("create", "jobs", job_name)]
