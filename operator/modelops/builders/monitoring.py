"""The drift CronJob of a ModelMonitor: ``modelops-runtime drift`` on the monitor's schedule."""

from __future__ import annotations

from typing import Any

from ..api.common import ResourceList, Resources
from ..api.modelmonitor import ModelMonitorSpec
from ..contract import CMD_DRIFT, ENV_JOB_CONFIG, ENV_PREDICTION_LOG_URI, RUNTIME_ENTRYPOINT, DriftJobConfig
from ..settings import Settings
from .common import (
    COMPONENT_MONITORING,
    PREDICTION_LOG_VOLUME,
    ObjectRef,
    base_env,
    container_security_context,
    data_volume,
    drift_cronjob_name,
    job_pod_spec,
    local_path,
    mlflow_env,
    owner_reference,
    resources_dict,
    scratch_mounts,
    scratch_volumes,
    standard_labels,
    with_desired_hash,
)
from .training import pod_failure_policy

#: Container name inside drift pods.
DRIFT_CONTAINER = "drift"
#: A run that could not start within this many seconds of its scheduled time is skipped
#: (e.g. after a control-plane outage) instead of piling up late runs.
STARTING_DEADLINE_SECONDS = 300
SUCCESSFUL_JOBS_HISTORY = 3
FAILED_JOBS_HISTORY = 3
#: Retries of one drift run; the next scheduled run comes soon anyway.
DRIFT_BACKOFF_LIMIT = 1
#: Schedules are interpreted in UTC, whatever the controller manager's local time zone.
TIME_ZONE = "Etc/UTC"
#: A rollout window's drift check: time it may take, and how long its finished Job is kept.
ROLLOUT_DRIFT_DEADLINE_SECONDS = 900
ROLLOUT_DRIFT_TTL_SECONDS = 3600
DEFAULT_DRIFT_RESOURCES = Resources(
    requests=ResourceList(cpu="250m", memory="512Mi"),
    limits=ResourceList(memory="2Gi"),
)


def build_drift_cronjob(owner: ObjectRef, spec: ModelMonitorSpec, settings: Settings) -> dict[str, Any]:
    """The ``batch/v1`` CronJob running the drift and health check of ``spec.model``'s ``spec.stage``.

    - name :func:`~modelops.builders.common.drift_cronjob_name` ``(owner.name)`` (at most 52
      characters, as the CronJob controller requires), namespace ``owner.namespace``, one
      controller ownerReference to the ModelMonitor, standard labels with component ``monitoring``;
    - ``spec.schedule`` (UTC), ``spec.suspend``, ``concurrencyPolicy: Forbid`` (a slow run is
      never overlapped), ``startingDeadlineSeconds``, history limits;
    - each Job: ``activeDeadlineSeconds`` from ``spec.active_deadline_seconds``, a small
      ``backoffLimit``, the shared podFailurePolicy (invalid input fails at once), command
      ``modelops-runtime drift`` with a :class:`~modelops.contract.DriftJobConfig` in
      ``MODELOPS_JOB_CONFIG`` (experiment ``settings.experiment_monitoring``, prediction log
      from settings, reference/current/drift/health from the spec), MLflow env from settings
      (credentials via secretKeyRef only), the restricted Pod Security profile;
    - the prediction-log PVC mounted **read-only** at the log's path when
      ``settings.prediction_log_volume_claim`` is set and the log URI is a local path, and the
      data volume (:func:`~modelops.builders.common.data_volume`) for reference/current files;
    - the data URI policy from settings in the config (the job enforces it when it reads).

    Raises ``ValueError`` when ``owner`` is not a ModelMonitor.
    """
    if owner.kind != "ModelMonitor":
        raise ValueError(f"drift CronJobs are owned by a ModelMonitor, not a {owner.kind}")
    name = drift_cronjob_name(owner.name)
    labels = standard_labels(component=COMPONENT_MONITORING, instance=name, model=spec.model, stage=spec.stage)
    config = DriftJobConfig(
        owner=owner.to_owner(),
        model=spec.model,
        stage=spec.stage,
        experiment=settings.experiment_monitoring,
        reference_uri=spec.reference.uri,
        reference_format=spec.reference.format,
        current_uri=spec.current.uri,
        current_format=spec.current.format,
        window=spec.current.window,
        prediction_log_uri=settings.prediction_log_uri,
        data_policy=settings.data_policy,
        drift=spec.drift,
        health=spec.health,
    )
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "schedule": spec.schedule,
            "timeZone": TIME_ZONE,
            "suspend": spec.suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": SUCCESSFUL_JOBS_HISTORY,
            "failedJobsHistoryLimit": FAILED_JOBS_HISTORY,
            "jobTemplate": {
                "metadata": {"labels": dict(labels)},
                "spec": _job_spec(config, settings, spec.image, spec.resources, spec.active_deadline_seconds, labels),
            },
        },
    }
    return with_desired_hash(cronjob)


def build_rollout_drift_job(
    owner: ObjectRef, name: str, config: DriftJobConfig, settings: Settings, labels: dict[str, str]
) -> dict[str, Any]:
    """A ``batch/v1`` Job running one side's drift check of a rollout window (docs/rollout.md).

    ``config`` pins the registry version, the prediction-log partition and the window; the pod is
    the drift CronJob's (same image, env, volumes, security, failure policy), owned by the
    candidate ModelVersion ``owner`` (garbage-collected with it) and removed
    ``ROLLOUT_DRIFT_TTL_SECONDS`` after it finished (its result stays in the MLflow run).
    Raises ``ValueError`` when ``owner`` is not a ModelVersion.
    """
    if owner.kind != "ModelVersion":
        raise ValueError(f"rollout drift Jobs are owned by a ModelVersion, not a {owner.kind}")
    spec = _job_spec(config, settings, None, None, ROLLOUT_DRIFT_DEADLINE_SECONDS, labels)
    spec["ttlSecondsAfterFinished"] = ROLLOUT_DRIFT_TTL_SECONDS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }


def _job_spec(
    config: DriftJobConfig,
    settings: Settings,
    image: str | None,
    resources: Resources | None,
    deadline_seconds: int | None,
    labels: dict[str, str],
) -> dict[str, Any]:
    """The spec of a Job running ``modelops-runtime drift`` with ``config`` (see build_drift_cronjob)."""
    data_volumes, data_mounts = data_volume(settings)
    volumes = [*scratch_volumes(), *data_volumes]
    mounts = [*scratch_mounts(), *data_mounts]
    log_path = local_path(settings.prediction_log_uri)
    if log_path is not None and settings.prediction_log_volume_claim:
        volumes.append(
            {
                "name": PREDICTION_LOG_VOLUME,
                "persistentVolumeClaim": {"claimName": settings.prediction_log_volume_claim, "readOnly": True},
            }
        )
        mounts.append({"name": PREDICTION_LOG_VOLUME, "mountPath": log_path, "readOnly": True})
    container = {
        "name": DRIFT_CONTAINER,
        "image": image or settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [RUNTIME_ENTRYPOINT, CMD_DRIFT],
        "env": [
            {"name": ENV_JOB_CONFIG, "value": config.to_env()},
            {"name": ENV_PREDICTION_LOG_URI, "value": settings.prediction_log_uri},
            *mlflow_env(settings),
            *base_env(),
        ],
        "resources": resources_dict(resources, DEFAULT_DRIFT_RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "backoffLimit": DRIFT_BACKOFF_LIMIT,
        "activeDeadlineSeconds": deadline_seconds,
        "podFailurePolicy": pod_failure_policy(DRIFT_CONTAINER),
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": job_pod_spec(container, volumes),
        },
    }
