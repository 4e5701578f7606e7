"""The training Job of a ModelVersion: one ``modelops-runtime train`` run per resolved version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..api.common import ResourceList, Resources
from ..api.modelversion import ModelVersionSpec
from ..contract import CMD_TRAIN, ENV_JOB_CONFIG, EXIT_INVALID_INPUT, RUNTIME_ENTRYPOINT, TrainJobConfig
from ..settings import Settings
from .common import (
    ANNOTATION_PARENT_VERSION,
    ANNOTATION_TRAINING_HASH,
    ANNOTATION_VERSION,
    COMPONENT_TRAINING,
    ObjectRef,
    base_env,
    container_security_context,
    data_volume,
    job_pod_spec,
    mlflow_env,
    owner_reference,
    resources_dict,
    scratch_mounts,
    scratch_volumes,
    standard_labels,
    train_job_name,
    with_desired_hash,
)

#: Container name inside training pods (podFailurePolicy rules refer to it).
TRAIN_CONTAINER = "train"
#: Used when the CR sets no ``training.resources``: a memory limit (OOM is a clear failure) and
#: no CPU limit (throttling only slows training down).
DEFAULT_TRAINING_RESOURCES = Resources(
    requests=ResourceList(cpu="500m", memory="1Gi"),
    limits=ResourceList(memory="4Gi"),
)


def training_hash(spec: ModelVersionSpec) -> str:
    """Short, stable hash (16 hex digits) of ``spec.training``: what a Job trains, what a
    registered version was trained from."""
    text = json.dumps(spec.training.to_wire(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_hash(job: Mapping[str, Any]) -> str | None:
    """The :func:`training_hash` a training Job was created for (its annotation), or None for a
    Job made before the annotation existed."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_TRAINING_HASH)
    return str(value) if value else None


def pod_failure_policy(container: str) -> dict[str, Any]:
    """podFailurePolicy shared by training and drift Jobs.

    Exit code :data:`~modelops.contract.EXIT_INVALID_INPUT` (bad dataset, unknown estimator, bad
    hyperparameter) fails the Job at once: retrying cannot help. A pod killed by a disruption
    (eviction, preemption, node drain) is retried without counting against ``backoffLimit``.
    """
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_INVALID_INPUT]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def build_training_job(
    owner: ObjectRef,
    spec: ModelVersionSpec,
    version: str,
    parent_version: str | None,
    settings: Settings,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that trains ``spec.model`` at semantic ``version`` for CR ``owner``.

    - name :func:`~modelops.builders.common.train_job_name` ``(owner.name, version)``, namespace
      ``owner.namespace``, one controller ownerReference to the ModelVersion (garbage-collected
      with it), standard labels with component ``training``, the exact version (and parent
      version, when given) and the :func:`training_hash` of ``spec.training`` in annotations;
    - image ``spec.training.image`` or ``settings.runtime_image``; command
      ``modelops-runtime train``; env ``MODELOPS_JOB_CONFIG`` = a
      :class:`~modelops.contract.TrainJobConfig` JSON (experiment from ``spec.mlflow.experiment``
      or ``settings.experiment_training``, estimator allowlist and data URI policy from
      settings), MLflow URI and credentials (secretKeyRef only);
    - with ``settings.data_volume_claim``: that PVC mounted read-only at the first
      ``settings.data_path_prefixes`` entry (the data volume, default /var/lib/modelops/data);
    - ``backoffLimit`` and ``activeDeadlineSeconds`` (seconds) from ``spec.training``,
      ``ttlSecondsAfterFinished`` from ``settings.job_ttl_seconds``, restartPolicy Never, the
      :func:`pod_failure_policy`, the restricted Pod Security profile with emptyDirs for /tmp
      and $HOME, no service account token, no service links.

    The pod template of a Job is immutable: the reconciler must never patch it. A registered
    version is immutable anyway; a changed ``training`` spec is reported, not re-run.

    Raises ``ValueError`` when ``owner`` is not a ModelVersion (the runtime tags its MLflow run
    with the owner) and ``pydantic.ValidationError`` if the config cannot be built.
    """
    if owner.kind != "ModelVersion":
        raise ValueError(f"training Jobs are owned by a ModelVersion, not a {owner.kind}")
    name = train_job_name(owner.name, version)
    labels = standard_labels(component=COMPONENT_TRAINING, instance=name, model=spec.model, version=version)
    annotations = {ANNOTATION_VERSION: version, ANNOTATION_TRAINING_HASH: training_hash(spec)}
    if parent_version:
        annotations[ANNOTATION_PARENT_VERSION] = parent_version
    training = spec.training
    config = TrainJobConfig(
        owner=owner.to_owner(),
        model=spec.model,
        version=version,
        parent_version=parent_version,
        data=training.data,
        estimator=training.estimator,
        hyperparameters=training.hyperparameters,
        test_size=training.test_size,
        random_state=training.random_state,
        experiment=(spec.mlflow.experiment if spec.mlflow else None) or settings.experiment_training,
        allowed_estimator_modules=list(settings.allowed_estimator_modules),
        data_policy=settings.data_policy,
    )
    data_volumes, data_mounts = data_volume(settings)
    volumes, mounts = [*scratch_volumes(), *data_volumes], [*scratch_mounts(), *data_mounts]
    container = {
        "name": TRAIN_CONTAINER,
        "image": training.image or settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [RUNTIME_ENTRYPOINT, CMD_TRAIN],
        "env": [
            {"name": ENV_JOB_CONFIG, "value": config.to_env()},
            *mlflow_env(settings, spec.mlflow),
            *base_env(),
        ],
        "resources": resources_dict(training.resources, DEFAULT_TRAINING_RESOURCES),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
        # The runtime prints a one-line reason on stderr when it fails: surface it in the pod status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": training.backoff_limit,
            "activeDeadlineSeconds": training.active_deadline_seconds,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "completions": 1,
            "parallelism": 1,
            "podFailurePolicy": pod_failure_policy(TRAIN_CONTAINER),
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": job_pod_spec(container, volumes),
            },
        },
    }
    return with_desired_hash(job)
