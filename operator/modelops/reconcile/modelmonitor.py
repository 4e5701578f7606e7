"""ModelMonitor flow: keep the drift CronJob in shape, then fold the newest monitoring run from
MLflow into status, Events, metrics and (with ``onDrift: Retrain``) a retraining ModelVersion."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from ..api.common import ConditionStatus, get_condition, now, set_condition
from ..api.modelmonitor import (
    ColumnDrift,
    DriftStatus,
    HealthStatus,
    LastRun,
    ModelMonitorSpec,
    ModelMonitorStatus,
    MonitorRecord,
    RetrainingStatus,
)
from ..api.modelversion import STAGE_ALIASES
from ..builders.common import (
    COMPONENT_MONITORING,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    ObjectRef,
    drift_cronjob_name,
    owner_reference,
)
from ..builders.monitoring import build_drift_cronjob
from ..clients.kube import JOBS, MODELMONITORS, MODELVERSIONS, Conflict
from ..contract import (
    ARTIFACT_DRIFT_SUMMARY,
    METRIC_ACCURACY,
    METRIC_CURRENT_ROWS,
    METRIC_DRIFT_SHARE,
    METRIC_ERROR_RATE,
    METRIC_LATENCY_P50,
    METRIC_LATENCY_P95,
    METRIC_PREDICTIONS,
    TAG_FAILURE,
    TAG_RESULT,
    TAG_SEMVER,
    TAG_UID,
)
from ..datapolicy import first_refusal
from ..registry import operations as ops
from ..registry.errors import ModelOwnedElsewhere, RegistryUnavailable, is_not_found, translate_errors
from . import children
from .context import Context
from .status import (
    mark_invalid_field,
    mark_invalid_spec,
    mark_registry_reachable,
    mark_registry_unavailable,
    parse_status,
    post_transitions,
    write_status,
)

HISTORY_LIMIT = 50
RETRAINED_BY = "ml.smarthr360.io/retrained-by"


def latest_runs(client: MlflowClient, experiment: str, uid: str, limit: int = 1) -> list[Run]:
    """Newest finished monitoring runs of a monitor (by owner uid tag), newest first; [] without
    the experiment. Raises RegistryUnavailable when MLflow cannot be reached."""
    with translate_errors("search of monitoring runs"):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        return list(
            client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`{TAG_UID}` = '{uid}' and attributes.status != 'RUNNING'",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        )


def load_summary(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The drift job's JSON summary artifact of a run ({} when it has none).

    Raises RegistryUnavailable when MLflow cannot be reached."""
    with tempfile.TemporaryDirectory() as tmp, translate_errors("download of the drift summary"):
        try:
            path = client.download_artifacts(run_id, ARTIFACT_DRIFT_SUMMARY, tmp)
        except (MlflowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or is_not_found(exc):
                return {}
            raise
        return dict(json.loads(Path(path).read_text()))


def _drift_status(run: Run, summary: Mapping[str, Any]) -> DriftStatus:
    drift = summary.get("drift") or {}
    columns = []
    for col in drift.get("columns") or []:
        try:
            columns.append(
                ColumnDrift.model_validate({k: col.get(k) for k in ColumnDrift.model_fields if col.get(k) is not None})
            )
        except ValidationError:
            continue
    share = run.data.metrics.get(METRIC_DRIFT_SHARE, drift.get("share"))
    return DriftStatus(
        detected=bool(drift.get("detected", False)),
        share=None if share is None else float(share),
        drifted_columns=list(drift.get("drifted_columns") or [c.name for c in columns if c.drifted]),
        columns=columns,
        ignored_columns=list(drift.get("ignored_columns") or []),
        missing_columns=list(drift.get("missing_columns") or []),
        report_uri=f"{run.info.artifact_uri}/drift/report.html",
    )


def _health_status(run: Run, summary: Mapping[str, Any]) -> HealthStatus:
    health = summary.get("health") or {}
    m = run.data.metrics

    def pick(metric: str, key: str) -> float | None:
        value = m.get(metric, health.get(key))
        return None if value is None else float(value)

    predictions = pick(METRIC_PREDICTIONS, "predictions")
    return HealthStatus(
        status=health.get("status", "unknown"),
        issues=[str(i) for i in health.get("issues") or []][:50],
        predictions=None if predictions is None else int(predictions),
        latency_p50_ms=pick(METRIC_LATENCY_P50, "latency_p50_ms"),
        latency_p95_ms=pick(METRIC_LATENCY_P95, "latency_p95_ms"),
        error_rate=pick(METRIC_ERROR_RATE, "error_rate"),
        accuracy=pick(METRIC_ACCURACY, "accuracy"),
        trend=health.get("trend", "unknown"),
    )


@dataclass(frozen=True)
class JobFailure:
    """The newest finished Job of a drift CronJob, when it failed."""

    job: str
    reason: str
    message: str
    started: datetime | None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def last_job_failure(jobs: Sequence[Mapping[str, Any]], cronjob: str) -> JobFailure | None:
    """The newest finished Job the CronJob ``cronjob`` created, if it failed (pure).

    Finished: a ``Complete`` or ``Failed`` condition is True; newest by ``status.startTime`` (else
    creation time). Jobs not controlled by the CronJob are ignored.
    """
    finished = []
    for job in jobs:
        meta, status = job.get("metadata") or {}, job.get("status") or {}
        owners = meta.get("ownerReferences") or []
        if not any(o.get("kind") == "CronJob" and o.get("name") == cronjob and o.get("controller") for o in owners):
            continue
        conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Complete" in conds or "Failed" in conds:
            started = _time(status.get("startTime")) or _time(meta.get("creationTimestamp"))
            finished.append((started or datetime.min.replace(tzinfo=UTC), meta.get("name", ""), started, conds))
    if not finished:
        return None
    _, name, started, conds = max(finished, key=lambda f: (f[0], f[1]))
    failed = conds.get("Failed")
    if failed is None:
        return None
    return JobFailure(name, failed.get("reason") or "Failed", failed.get("message") or "", started)


def serving_version(client: MlflowClient, model: str, stage: str) -> tuple[str, str] | None:
    """(registry version, semantic version) serving a stage, from the stage alias; None if unset.

    Raises RegistryUnavailable when MLflow cannot be reached."""
    registry_version = ops.get_alias(client, model, STAGE_ALIASES[stage])
    if registry_version is None:
        return None
    version = ops.get_version(client, model, registry_version)
    tags = (version.tags if version is not None else None) or {}
    return registry_version, tags.get(TAG_SEMVER, registry_version)


async def reconcile(ctx: Context, body: Mapping[str, Any]) -> ModelMonitorStatus:
    """Reconcile one ModelMonitor; returns the status written (or kept).

    Serialised per object and re-read under the lock, so the timer and change handlers never
    fold the same monitoring run twice (the drift counter counts each run once).
    """
    async with ctx.object_lock(body["metadata"]["uid"]):
        current = await ctx.kube.get(MODELMONITORS, body["metadata"]["namespace"], body["metadata"]["name"])
        if current is None or current["metadata"].get("uid") != body["metadata"]["uid"]:
            return parse_status(ModelMonitorStatus, body.get("status"))
        return await _reconcile(ctx, current)


async def _reconcile(ctx: Context, body: Mapping[str, Any]) -> ModelMonitorStatus:
    meta = body["metadata"]
    gen = meta.get("generation")
    status: ModelMonitorStatus = parse_status(ModelMonitorStatus, body.get("status"))
    old_conditions = list(status.conditions)
    status.observed_generation = gen  # every path below reports on this generation
    try:
        spec = ModelMonitorSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        mark_invalid_spec(status.conditions, exc, gen)
        if await write_status(ctx.kube, MODELMONITORS, body, status):
            post_transitions(ctx.post_event, body, old_conditions, status.conditions)
        return status
    if ctx.metrics is not None:  # its drift series exists at 0 before any run can count
        ctx.metrics.monitor_known(meta["namespace"], spec.model)
    status.observed_generation = gen
    uris = {"spec.reference.uri": spec.reference.uri, "spec.current.uri": spec.current.uri}
    refused = first_refusal(uris, ctx.settings.data_policy)
    if refused is not None:  # no drift Job may read it: none is scheduled
        drift_cronjob = drift_cronjob_name(meta["name"])
        await children.remove(ctx.kube, "CronJob", meta["namespace"], drift_cronjob, {str(meta["uid"])})
        status.cron_job = None
        set_condition(status.conditions, "Scheduled", "False", "InvalidSpec", f"no drift CronJob: {refused[0]}", gen)
        mark_invalid_field(status.conditions, *refused, gen)
        if await write_status(ctx.kube, MODELMONITORS, body, status):
            post_transitions(ctx.post_event, body, old_conditions, status.conditions)
        return status
    try:
        owner_namespace = await ctx.registry.run(ops.model_namespace, spec.model)
    except RegistryUnavailable as exc:
        mark_registry_unavailable(status.conditions, exc, gen)
        await write_status(ctx.kube, MODELMONITORS, body, status)
        raise
    if owner_namespace not in (None, meta["namespace"]):  # another namespace's model: nothing to read
        message = str(ModelOwnedElsewhere(spec.model, owner_namespace, meta["namespace"]))
        drift_cronjob = drift_cronjob_name(meta["name"])
        await children.remove(ctx.kube, "CronJob", meta["namespace"], drift_cronjob, {str(meta["uid"])})
        status.cron_job = None
        status.model_version = None
        set_condition(status.conditions, "Scheduled", "False", "ModelOwnedElsewhere", f"no drift CronJob: {message}",
                      gen)
        set_condition(status.conditions, "Ready", "False", "ModelOwnedElsewhere", message, gen)
        if await write_status(ctx.kube, MODELMONITORS, body, status):
            post_transitions(ctx.post_event, body, old_conditions, status.conditions)
        return status
    owner = ObjectRef.from_body(body)
    desired = build_drift_cronjob(owner, spec, ctx.settings)
    job_failure: JobFailure | None = None
    try:
        cronjob, _ = await children.apply(ctx.kube, desired)
    except children.ChildNameConflict as exc:  # someone else's CronJob has our name: hands off
        status.cron_job = None
        set_condition(status.conditions, "Scheduled", "False", children.CHILD_NAME_CONFLICT, str(exc), gen)
    else:
        status.cron_job = cronjob["metadata"]["name"]
        jobs = await ctx.kube.list(
            JOBS, meta["namespace"], {LABEL_INSTANCE: status.cron_job, LABEL_COMPONENT: COMPONENT_MONITORING}
        )
        job_failure = last_job_failure(jobs, status.cron_job)
        set_condition(
            status.conditions,
            "Scheduled",
            "True",
            "Suspended" if spec.suspend else "Scheduled",
            f"CronJob {status.cron_job} runs on '{spec.schedule}'" + (" (suspended)" if spec.suspend else ""),
            gen,
        )
    try:
        served = await ctx.registry.run(serving_version, spec.model, spec.stage)
        status.model_version = served[1] if served else None
        runs = await ctx.registry.run(latest_runs, ctx.settings.experiment_monitoring, meta["uid"], 1)
        if runs and (status.last_run is None or status.last_run.run_id != runs[0].info.run_id):
            await fold_run(ctx, body, spec, status, runs[0])
    except RegistryUnavailable as exc:
        mark_registry_unavailable(status.conditions, exc, gen)
        await write_status(ctx.kube, MODELMONITORS, body, status)
        raise
    mark_registry_reachable(status.conditions, gen)
    if ctx.metrics is not None and status.health and status.health.accuracy is not None and status.model_version:
        # From status at every reconcile, not only when a run is folded: a restarted operator
        # exposes the last accuracy again at once (ModelUnhealthy reads it).
        ctx.metrics.accuracy.labels(meta["namespace"], spec.model, status.model_version).set(status.health.accuracy)
    if job_failure is not None and status.last_run is not None and job_failure.started is not None:
        if status.last_run.time >= job_failure.started:
            job_failure = None  # that Job wrote a run: its result speaks for it (RunFailed)
    _conditions(spec, status, served is not None, gen, job_failure)
    if await write_status(ctx.kube, MODELMONITORS, body, status):
        post_transitions(ctx.post_event, body, old_conditions, status.conditions)
    return status


async def fold_run(
    ctx: Context, body: Mapping[str, Any], spec: ModelMonitorSpec, status: ModelMonitorStatus, run: Run
) -> None:
    """Fold one new monitoring run into status; count drift once; retrain if asked."""
    summary = await ctx.registry.run(load_summary, run.info.run_id)
    tags = run.data.tags
    result = tags.get(TAG_RESULT) or ("Failed" if run.info.status == "FAILED" else "Completed")
    if result not in ("Completed", "InsufficientData", "Failed"):
        result = "Failed"
    end = datetime.fromtimestamp((run.info.end_time or run.info.start_time) / 1000, tz=UTC).replace(microsecond=0)
    rows = run.data.metrics.get(METRIC_CURRENT_ROWS)
    status.last_run = LastRun(
        run_id=run.info.run_id,
        time=end,
        result=result,
        model_version=tags.get(TAG_SEMVER),
        current_rows=None if rows is None else int(rows),
        message=tags.get(TAG_FAILURE) or (summary.get("drift") or {}).get("message"),
    )
    if result == "Completed" or (result == "InsufficientData" and (summary.get("drift") or {}).get("columns")):
        # An InsufficientData run that got as far as the columns (none comparable, e.g. every
        # feature missing) is the latest drift result too: its data quality must show.
        status.drift = _drift_status(run, summary)
    if result in ("Completed", "InsufficientData"):
        status.health = _health_status(run, summary)
    record = MonitorRecord(
        run_id=run.info.run_id,
        time=end,
        result=result,
        drift_detected=status.drift.detected if status.drift and result == "Completed" else None,
        drift_share=status.drift.share if status.drift and result == "Completed" else None,
        health=status.health.status if status.health else None,
        accuracy=status.health.accuracy if status.health else None,
        latency_p95_ms=status.health.latency_p95_ms if status.health else None,
    )
    status.history = [*status.history, record][-HISTORY_LIMIT:]
    metrics, ns = ctx.metrics, body["metadata"]["namespace"]
    if result == "Completed" and status.drift and status.drift.detected:
        if metrics is not None:
            metrics.drift_detected(ns, spec.model)
        if spec.on_drift != "None":
            ctx.post_event(
                body,
                "Warning",
                "DriftDetected",
                f"drift share {status.drift.share:.2f} >= {spec.drift.drift_share}: "
                f"{', '.join(status.drift.drifted_columns) or 'no column named'}",
            )
        if spec.on_drift == "Retrain":
            await retrain(ctx, body, spec, status, run.info.run_id)


async def retrain(
    ctx: Context, body: Mapping[str, Any], spec: ModelMonitorSpec, status: ModelMonitorStatus, run_id: str
) -> None:
    """Create one retraining ModelVersion for drift seen in ``run_id``, within the daily budget."""
    meta = body["metadata"]
    ns = meta["namespace"]
    today = now().date().isoformat()
    book = status.retraining or RetrainingStatus()
    if book.day != today:
        book = RetrainingStatus(day=today, count=0, last_model_version=book.last_model_version)
    status.retraining = book
    if book.count >= spec.retrain.max_per_day:
        ctx.post_event(
            body, "Normal", "RetrainSkipped", f"retrain.maxPerDay={spec.retrain.max_per_day} reached for {today}"
        )
        return
    versions = await ctx.kube.list(MODELVERSIONS, ns)
    training = [
        v
        for v in versions
        if (v["metadata"].get("labels") or {}).get(RETRAINED_BY) == meta["name"]
        and (v.get("status") or {}).get("phase") in (None, "Pending", "Training", "Registering")
    ]
    if training:
        ctx.post_event(
            body, "Normal", "RetrainSkipped", f"retraining version {training[0]['metadata']['name']} is still training"
        )
        return
    source = next(
        (
            v
            for v in versions
            if (v.get("spec") or {}).get("model") == spec.model and (v.get("status") or {}).get("stage") == spec.stage
        ),
        None,
    )
    if source is None:
        ctx.post_event(body, "Warning", "RetrainSkipped", f"no ModelVersion serves {spec.model} {spec.stage}")
        return
    new_spec = {k: v for k, v in source["spec"].items() if k not in ("version", "versionBump", "stage")}
    new_spec.update(versionBump=spec.retrain.version_bump, stage=spec.retrain.stage)
    name = f"{spec.model}-retrain-{run_id[:8]}"
    manifest = {
        "apiVersion": source["apiVersion"],
        "kind": "ModelVersion",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {RETRAINED_BY: meta["name"], "ml.smarthr360.io/model": spec.model},
            "annotations": {
                "ml.smarthr360.io/retrain-run": run_id,
                "ml.smarthr360.io/retrained-from": source["metadata"]["name"],
            },
            "ownerReferences": [owner_reference(ObjectRef.from_body(body), controller=False)],
        },
        "spec": new_spec,
    }
    try:
        await ctx.kube.create(MODELVERSIONS, ns, manifest)
    except Conflict:
        return  # created by an earlier pass for the same run
    status.retraining = RetrainingStatus(day=today, count=book.count + 1, last_model_version=name, last_run_id=run_id)
    ctx.post_event(body, "Normal", "RetrainingTriggered", f"created ModelVersion {name} after drift in run {run_id}")


def _data_quality(spec: ModelMonitorSpec, status: ModelMonitorStatus, gen: int | None) -> None:
    """``DataQuality`` from the latest drift result: False naming the features absent from the
    current data or missing above ``drift.maxMissingShare`` (they were not compared)."""
    conds, drift = status.conditions, status.drift
    if drift is None or not drift.columns:
        set_condition(conds, "DataQuality", "Unknown", "NoRunYet", "no monitoring run has compared columns yet", gen)
        return
    if drift.missing_columns:
        shares = {c.name: c.current_missing_share for c in drift.columns}
        named = ", ".join(
            f"{name} ({shares[name]:.0%} missing)" if shares.get(name) is not None else name
            for name in drift.missing_columns
        )
        set_condition(
            conds,
            "DataQuality",
            "False",
            "MissingValues",
            f"current data lacks {named} (drift.maxMissingShare {spec.drift.max_missing_share:g}); "
            "these features were not compared for drift",
            gen,
        )
        return
    set_condition(conds, "DataQuality", "True", "Complete", "every feature has values in the current data", gen)


def _conditions(
    spec: ModelMonitorSpec,
    status: ModelMonitorStatus,
    has_model: bool,
    gen: int | None,
    job_failure: JobFailure | None = None,
) -> None:
    conds = status.conditions
    last = status.last_run
    if last is None:
        set_condition(conds, "DriftDetected", "Unknown", "NoRunYet", "no monitoring run has finished yet", gen)
        set_condition(conds, "Healthy", "Unknown", "NoRunYet", "no monitoring run has finished yet", gen)
    elif last.result == "Completed" and status.drift is not None:
        share = f"{status.drift.share:.2f}" if status.drift.share is not None else "n/a"
        if status.drift.detected:
            set_condition(
                conds,
                "DriftDetected",
                "True",
                "DriftDetected",
                f"drift share {share}; drifted: {', '.join(status.drift.drifted_columns)}",
                gen,
            )
        else:
            set_condition(conds, "DriftDetected", "False", "NoDrift", f"drift share {share}", gen)
    else:
        set_condition(conds, "DriftDetected", "Unknown", last.result, last.message or last.result, gen)
    _data_quality(spec, status, gen)
    if status.health is not None and last is not None:
        verdict = status.health.status
        state: ConditionStatus = {"healthy": "True", "degraded": "False", "unhealthy": "False"}.get(verdict, "Unknown")  # type: ignore[assignment]
        reason = {"healthy": "Healthy", "degraded": "Degraded", "unhealthy": "Unhealthy"}.get(verdict, "Unknown")
        set_condition(conds, "Healthy", state, reason, "; ".join(status.health.issues) or verdict, gen)
    scheduled = get_condition(conds, "Scheduled")
    if scheduled is not None and scheduled.status == "False":
        set_condition(conds, "Ready", "False", scheduled.reason, scheduled.message, gen)
    elif job_failure is not None:
        set_condition(
            conds,
            "Ready",
            "False",
            "JobFailed",
            f"Job {job_failure.job} failed before writing a monitoring run: {job_failure.reason}"
            + (f" ({job_failure.message})" if job_failure.message else "")
            + "; see the logs of its pods",
            gen,
        )
    elif not has_model:
        set_condition(
            conds,
            "Ready",
            "False",
            "WaitingForModel",
            f"no version of {spec.model} serves {spec.stage} yet; the CronJob is scheduled and will "
            "report InsufficientData until one does",
            gen,
        )
    elif last is not None and last.result == "Failed":
        set_condition(conds, "Ready", "False", "RunFailed", last.message or "the last monitoring run failed", gen)
    else:
        set_condition(conds, "Ready", "True", "Monitoring", scheduled.message if scheduled else "monitoring", gen)
