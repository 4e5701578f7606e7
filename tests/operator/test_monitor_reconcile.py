"""The ModelMonitor reconcile against an in-memory API: every path records the generation it handled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelops.api.common import API_VERSION
from modelops.clients.kube import JOBS, MODELMONITORS
from modelops.reconcile import modelmonitor
from modelops.reconcile.context import Context
from modelops.settings import Settings
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
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


def _mlflow_ctx(store: Any) -> tuple[Context, FakeKube, list[tuple[str, str, str]]]:
    """A context on ``store``'s MLflow and an in-memory API; Events land in the returned list."""
    from modelops.clients.mlflow import Registry

    kube, events = FakeKube(), []
    registry = Registry(store.uri)
    registry.client = store.client
    ctx = Context(
        settings=Settings(mlflow_tracking_uri=store.uri),
        kube=kube,
        registry=registry,
        post_event=lambda body, kind, reason, message: events.append((kind, reason, message)),
    )
    return ctx, kube, events


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


def _drift_job(kube: FakeKube, name: str, started: str, outcome: dict[str, str]) -> None:
    """A Job the monitor's CronJob created (its labels and controller reference), finished as ``outcome``."""
    from modelops.builders.common import COMPONENT_MONITORING, standard_labels

    labels = standard_labels(
        component=COMPONENT_MONITORING, instance="mon-drift", model="iris-model", stage="Production"
    )
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": labels,
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "CronJob", "name": "mon-drift", "uid": "u", "controller": True}
                ],
            },
            "spec": {},
            "status": {"startTime": started, "conditions": [{**outcome, "status": "True"}]},
        },
    )


async def test_a_monitor_job_that_fails_before_writing_a_run_is_reported(logged_runs) -> None:  # noqa: F811
    """An image that cannot start, a crash or a deadline leaves no MLflow run: the monitor reads its
    CronJob's Jobs, says Ready=False JobFailed with the Job's reason (Warning Event), and clears it
    when the next Job succeeds."""
    from modelops.registry import operations as ops

    client = logged_runs.store.client
    version = ops.register_run_model(client, "iris-model", client.get_run(logged_runs.run_ids[0]), {"semver": "1.0.0"})
    client.set_registered_model_alias("iris-model", "production", str(version.version))
    ctx, kube, events = _mlflow_ctx(logged_runs.store)
    _monitor(kube, {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *"}, generation=1, status={})
    _drift_job(kube, "mon-drift-1", "2026-01-01T10:00:00Z", {"type": "Complete"})
    deadline = {"type": "Failed", "reason": "DeadlineExceeded", "message": "active longer than specified deadline"}
    _drift_job(kube, "mon-drift-2", "2026-01-01T11:00:00Z", deadline)

    async def ready() -> dict[str, Any]:
        await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
        status = (await kube.get(MODELMONITORS, NS, "mon") or {})["status"]
        return next(c for c in status["conditions"] if c["type"] == "Ready")

    cond = await ready()
    assert (cond["status"], cond["reason"]) == ("False", "JobFailed"), cond
    assert "mon-drift-2" in cond["message"] and "DeadlineExceeded" in cond["message"]
    assert ("Warning", "JobFailed") in [(k, r) for k, r, _ in events]
    _drift_job(kube, "mon-drift-3", "2026-01-01T12:00:00Z", {"type": "Complete"})
    cond = await ready()
    assert (cond["status"], cond["reason"]) == ("True", "Monitoring"), cond


def test_the_newest_finished_job_of_the_cronjob_decides() -> None:
    from modelops.reconcile.modelmonitor import last_job_failure

    def job(name: str, start: str, kind: str | None, owner: str = "mon-drift") -> dict[str, Any]:
        conds = [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded"}] if kind else []
        owners = [{"kind": "CronJob", "name": owner, "controller": True}]
        return {
            "metadata": {"name": name, "ownerReferences": owners},
            "status": {"startTime": start, "conditions": conds},
        }

    failed = job("a", "2026-01-01T10:00:00Z", "Failed")
    assert last_job_failure([failed], "mon-drift") is not None
    assert last_job_failure([failed, job("b", "2026-01-01T11:00:00Z", "Complete")], "mon-drift") is None
    assert last_job_failure([failed, job("c", "2026-01-01T11:00:00Z", None)], "mon-drift") is not None  # running
    assert last_job_failure([failed], "other-drift") is None  # not that CronJob's


async def test_features_missing_from_the_current_data_fail_data_quality(logged_runs) -> None:  # noqa: F811
    """A run whose current data lacks a feature (or has it mostly missing): status.drift carries each
    column's missing shares and DataQuality=False names the columns, with a Warning Event."""
    import json

    from modelops.contract import ARTIFACT_DRIFT_SUMMARY, TAG_RESULT, TAG_UID
    from modelops.monitoring.drift import detect_drift

    client = logged_runs.store.client
    reference = pd.DataFrame({"a": np.arange(200.0), "b": np.arange(200.0) % 7, "c": np.arange(200.0) % 3})
    current = reference.drop(columns=["c"]).copy()
    current.loc[:179, "b"] = np.nan  # 90 % missing
    result = detect_drift(reference, current, max_missing_share=0.5)
    experiment = logged_runs.store.experiment(Settings().experiment_monitoring)
    run = client.create_run(experiment, tags={TAG_UID: "uid-mon", TAG_RESULT: result.result})
    client.log_text(run.info.run_id, json.dumps({"drift": result.model_dump(mode="json")}), ARTIFACT_DRIFT_SUMMARY)
    client.set_terminated(run.info.run_id)
    ctx, kube, events = _mlflow_ctx(logged_runs.store)
    spec = {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *", "drift": {"maxMissingShare": 0.5}}
    _monitor(kube, spec, generation=1, status={})
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    status = (await kube.get(MODELMONITORS, NS, "mon") or {})["status"]
    quality = next(c for c in status["conditions"] if c["type"] == "DataQuality")
    assert (quality["status"], quality["reason"]) == ("False", "MissingValues"), quality
    assert "b (90% missing)" in quality["message"] and "c (100% missing)" in quality["message"]
    assert status["drift"]["missingColumns"] == ["b", "c"]
    shares = {
        c["name"]: (c.get("referenceMissingShare"), c.get("currentMissingShare")) for c in status["drift"]["columns"]
    }
    assert shares == {"a": (0, 0), "b": (0, 0.9), "c": (None, 1.0)}
    assert ("Warning", "MissingValues") in [(k, r) for k, r, _ in events]


async def test_a_restarted_operator_exposes_the_last_accuracy_at_once(logged_runs) -> None:  # noqa: F811
    """The accuracy gauge comes back from the monitor's status on the first reconcile after a
    restart, not only when the next monitoring run is folded."""
    from prometheus_client import CollectorRegistry

    from modelops.registry import operations as ops
    from modelops.telemetry import OperatorMetrics

    client = logged_runs.store.client
    version = ops.register_run_model(client, "iris-model", client.get_run(logged_runs.run_ids[0]), {"semver": "1.0.0"})
    client.set_registered_model_alias("iris-model", "production", str(version.version))
    ctx, kube, _ = _mlflow_ctx(logged_runs.store)
    ctx.metrics = OperatorMetrics(CollectorRegistry())  # a fresh process
    spec = {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *"}
    _monitor(kube, spec, generation=1, status={"health": {"status": "unhealthy", "accuracy": 0.7}})
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    labels = {"namespace": NS, "model_name": "iris-model", "model_version": "1.0.0"}
    assert ctx.metrics.registry.get_sample_value("ml_model_accuracy", labels) == 0.7


async def test_a_monitor_of_another_namespaces_model_reads_nothing(mlflow_store) -> None:  # noqa: F811
    """Registered model names belong to one namespace (as for ModelVersions): a ModelMonitor in
    another namespace gets Ready=False ModelOwnedElsewhere and no drift CronJob, so no Job of it
    reads that namespace's prediction log or reference data."""
    from modelops.registry import operations as ops

    ops.ensure_registered_model(mlflow_store.client, "iris-model", "team-b")
    ctx, kube, events = _mlflow_ctx(mlflow_store)
    _monitor(kube, {"model": "iris-model", "stage": "Production", "schedule": "0 * * * *"}, generation=1, status={})
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    status = (await kube.get(MODELMONITORS, NS, "mon") or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelOwnedElsewhere"), ready
    assert "belongs to namespace 'team-b'" in ready["message"]
    assert kube.count("cronjobs") == 0 and not status.get("cronJob")
    assert ("Warning", "ModelOwnedElsewhere") in [(kind, reason) for kind, reason, _ in events]
    # The owning namespace's own monitor is scheduled as usual.
    mlflow_store.client.set_registered_model_tag("iris-model", "modelops.namespace", NS)
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    assert kube.count("cronjobs") == 1
