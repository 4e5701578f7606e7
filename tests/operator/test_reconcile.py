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
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
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
    _completed_job(kube, "1.2.0")
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
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": train_job_name("iris", "3.0.0"), "namespace": NS},
            "spec": {},
            "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimit"}]},
        },
    )
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
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name, "namespace": NS},
            "spec": {},
            "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimit"}]},
        },
    )
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
    kube2.objects[("jobs", NS, job_name)]["status"] = {
        "failed": 3,
        "conditions": [{"type": "Failed", "status": "True"}],
    }
    await modelversion.reconcile(ctx2, (await kube2.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube2.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["phase"] == "Failed" and kube2.count("jobs") == 1
    assert not [c for c in kube2.calls if c[0] == "delete" and c[1] == "jobs"]


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
        assert status["phase"] == "Failed" and "trainingJob" not in status and "version" not in status
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
