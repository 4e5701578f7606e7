"""Serving children of a model stage: Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler.

One set per (model, stage), named ``<model>-<stage>``, whichever ModelVersion currently wins the
stage. Ownership is shared: every child carries a *non-controller* ownerReference to each
ModelVersion the reconciler passes as an owner (all ModelVersions of the model in the
namespace). The garbage collector deletes an object only when all of its owners are gone, so

- deleting the winning CR (a rollback by deletion) does not delete the Deployment that the
  next winner is about to roll back to: the other owners keep it alive;
- deleting the *last* ModelVersion of the model removes the Deployment, Service, PDB and HPA.

None of them is a controller reference: no single version controls a stage's Deployment, and
``kopf.adopt`` (which sets ``controller: true``) must not be used on these children. When a
stage loses its last candidate, the reconciler deletes its children explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..api.common import ResourceList, Resources
from ..api.modelversion import MlflowOverrides, ServingSpec
from ..contract import (
    CMD_SERVE,
    ENV_JOB_CONFIG,
    ENV_POD_NAME,
    ENV_PREDICTION_LOG_URI,
    ENV_ROUTER,
    ENV_SERVE_LIMIT_PREFIX,
    READY_PATH,
    RUNTIME_ENTRYPOINT,
    SERVING_PORT,
    SERVING_PORT_NAME,
    RouterConfig,
    ServeConfig,
)
from ..settings import Settings
from .common import (
    ANNOTATION_MODEL_URI,
    ANNOTATION_REGISTRY_VERSION,
    ANNOTATION_SERVED_BY,
    ANNOTATION_VERSION,
    COMPONENT_SERVING,
    PREDICTION_LOG_VOLUME,
    ObjectRef,
    base_env,
    container_security_context,
    local_path,
    mlflow_env,
    owner_references,
    pod_security_context,
    resources_dict,
    scratch_mounts,
    scratch_volumes,
    selector_labels,
    serving_name,
    standard_labels,
    with_desired_hash,
)

#: Component label of a rollout candidate's pods: the stage's Service (component ``serving``) never selects them.
COMPONENT_CANDIDATE = "serving-candidate"
#: Container name inside serving pods.
SERVER_CONTAINER = "server"
#: Service port (clients use ``http://<model>-<stage>.<ns>.svc.<domain>`` without a port).
SERVICE_PORT = 80
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
#: Seconds a rollout may make no progress before the Deployment reports ProgressDeadlineExceeded.
PROGRESS_DEADLINE_SECONDS = 600
REVISION_HISTORY_LIMIT = 5
#: Seconds a serving pod gets after SIGTERM (flushes its prediction log batch).
TERMINATION_GRACE_SECONDS = 30
#: Seconds the kubelet waits between marking a serving pod Terminating and sending SIGTERM: the
#: pod leaves the Service's EndpointSlice and kube-proxy's rules first, so no new connection reaches
#: a server that has closed its socket (measured: without it, a request that connects in the last
#: instant is reset). SIGTERM then drains what is in flight (up to 20 s), within the grace period.
PRE_STOP_SLEEP_SECONDS = 5
#: Used when the serving spec sets no resources.
DEFAULT_SERVING_RESOURCES = Resources(
    requests=ResourceList(cpu="100m", memory="256Mi"),
    limits=ResourceList(memory="1Gi"),
)
#: CPU request added when autoscaling is on but the CR requests no CPU (utilisation needs one).
DEFAULT_AUTOSCALING_CPU_REQUEST = "100m"


@dataclass(frozen=True)
class ServedVersion:
    """The version a stage serves, as the reconciler resolved it.

    ``namespace``: namespace of the ModelVersion (and of the serving children);
    ``version``: semantic version, e.g. ``1.2.0``; ``registry_version``: MLflow registry version
    number as a string of digits (the pod loads ``models:/<model>/<registry_version>``);
    ``cr_name``: name of the winning ModelVersion (recorded in an annotation).
    """

    namespace: str
    version: str
    registry_version: str
    cr_name: str

    def model_uri(self, model: str) -> str:
        """The pinned MLflow model URI ``models:/<model>/<registry_version>``."""
        return f"models:/{model}/{self.registry_version}"


def _owners_in(namespace: str, owners: Sequence[ObjectRef]) -> list[dict[str, Any]]:
    refs = owner_references(owners, controller=False)
    stray = sorted({o.namespace for o in owners} - {namespace})
    if stray:
        raise ValueError(f"owners in namespace(s) {stray} cannot own objects in namespace {namespace!r}")
    return refs


def _metadata(name: str, namespace: str, labels: dict[str, str], owners: Sequence[ObjectRef]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": _owners_in(namespace, owners)}


def _stage_metadata(model: str, stage: str, namespace: str, owners: Sequence[ObjectRef]) -> dict[str, Any]:
    """Metadata of the version-independent stage children (Service, PDB, HPA)."""
    name = serving_name(model, stage)
    labels = standard_labels(component=COMPONENT_SERVING, instance=name, model=model, stage=stage)
    return _metadata(name, namespace, labels, owners)


def _default_resources(workers: int) -> Resources:
    """:data:`DEFAULT_SERVING_RESOURCES` for one server process, memory times ``workers`` for more
    (each worker loads its own copy of the model: about 350 MiB for a breast-cancer pipeline)."""
    if workers == 1:
        return DEFAULT_SERVING_RESOURCES
    return Resources(
        requests=ResourceList(cpu="100m", memory=f"{256 * workers}Mi"),
        limits=ResourceList(memory=f"{workers}Gi"),
    )


def _serving_resources(serving: ServingSpec) -> dict[str, Any]:
    resources = resources_dict(serving.resources, _default_resources(serving.workers))
    if serving.autoscaling is not None:
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if "cpu" not in requests and "cpu" not in limits:  # a CPU limit alone defaults the request
            resources["requests"] = {**requests, "cpu": DEFAULT_AUTOSCALING_CPU_REQUEST}
    return resources


def _prediction_log_storage(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts that make a local prediction-log path writable on a read-only root fs.

    With ``settings.prediction_log_volume_claim``: that PVC (ReadWriteMany, shared with the drift
    Jobs) at the path. Without one: an emptyDir, so the server can still write, but the log is
    per pod and lost on restart, and drift Jobs cannot read it. Remote URIs (``s3://``) need no volume.
    """
    path = local_path(settings.prediction_log_uri)
    if path is None:
        return [], []
    if settings.prediction_log_volume_claim:
        volume: dict[str, Any] = {
            "name": PREDICTION_LOG_VOLUME,
            "persistentVolumeClaim": {"claimName": settings.prediction_log_volume_claim},
        }
    else:
        volume = {"name": PREDICTION_LOG_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}
    return [volume], [{"name": PREDICTION_LOG_VOLUME, "mountPath": path}]


def limits_env(serving: ServingSpec) -> list[dict[str, str]]:
    """``spec.serving.limits`` as the server's ``MODELOPS_SERVE_<FIELD>`` variables (set fields only)."""
    if serving.limits is None:
        return []
    return [
        {"name": f"{ENV_SERVE_LIMIT_PREFIX}{field.upper()}", "value": str(value)}
        for field, value in serving.limits.model_dump(exclude_none=True).items()
    ]


def build_serving_deployment(
    model: str,
    stage: str,
    served: ServedVersion,
    owners: Sequence[ObjectRef],
    serving: ServingSpec,
    settings: Settings,
    *,
    mlflow: MlflowOverrides | None = None,
    router: RouterConfig | None = None,
    candidate: bool = False,
) -> dict[str, Any]:
    """The ``apps/v1`` Deployment ``<model>-<stage>`` serving ``served`` for ``model``'s ``stage``.

    The pod template pins ``models:/<model>/<served.registry_version>`` through a
    :class:`~modelops.contract.ServeConfig` in ``MODELOPS_JOB_CONFIG`` and carries the semantic
    version as a label and the model URI as an annotation, so a promotion or a rollback is a
    change of the pod template (a rolling update) while the selector (component, model, stage)
    never changes. Rolling updates surge one pod and never take one away (maxUnavailable 0), so
    a new version that cannot become ready leaves the old one serving.

    ``owners``: the ModelVersions that share ownership (see the module docstring), all in
    ``served.namespace``. ``serving``: the winning version's serving spec (replicas, resources,
    autoscaling, image, limits; ``workers`` and ``batching`` go into the pods' serve config, and
    without ``resources`` the default memory scales with ``workers``). ``spec.replicas`` is
    omitted when autoscaling is set (the HPA owns it).
    ``mlflow``: the winning version's ``spec.mlflow`` (tracking URI and credentials Secret the
    pods load the model with); settings are used when None.

    ``router``: the rollout router setting of the incumbent's pods (``MODELOPS_ROUTER``), if any.
    ``candidate``: build a rollout candidate's Deployment instead (:func:`candidate_name`, component
    ``serving-candidate``, no prediction log of its own: the incumbent's router logs its answers).

    Raises ``ValueError`` when ``owners`` is empty or spans namespaces other than ``served.namespace``.
    """
    name = candidate_name(model, stage) if candidate else serving_name(model, stage)
    component = COMPONENT_CANDIDATE if candidate else COMPONENT_SERVING
    labels = standard_labels(component=component, instance=name, model=model, stage=stage, version=served.version)
    log_uri = None if candidate else settings.prediction_log_uri
    model_uri = served.model_uri(model)
    version_annotations = {
        ANNOTATION_VERSION: served.version,
        ANNOTATION_REGISTRY_VERSION: served.registry_version,
        ANNOTATION_MODEL_URI: model_uri,
    }
    config = ServeConfig(
        model=model,
        registry_version=served.registry_version,
        version=served.version,
        stage=stage,
        port=SERVING_PORT,
        prediction_log_uri=log_uri,
        framework_version_match=settings.framework_version_match,
        workers=serving.workers,
        batching=serving.batching,
    )
    log_volumes, log_mounts = _prediction_log_storage(settings) if not candidate else ([], [])
    port = {"name": SERVING_PORT_NAME, "containerPort": SERVING_PORT, "protocol": "TCP"}
    container = {
        "name": SERVER_CONTAINER,
        "image": serving.image or settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [RUNTIME_ENTRYPOINT, CMD_SERVE],
        "env": [
            {"name": ENV_JOB_CONFIG, "value": config.to_env()},
            {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": ENV_PREDICTION_LOG_URI, "value": log_uri or ""},
            *mlflow_env(settings, mlflow),
            *base_env(),
            *limits_env(serving),
            *([{"name": ENV_ROUTER, "value": router.to_env()}] if router is not None else []),
        ],
        "ports": [port],
        # Loading the model from MLflow can take a while: liveness only starts once the server is up.
        "startupProbe": {
            "httpGet": {"path": LIVE_PATH, "port": SERVING_PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": SERVING_PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": SERVING_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "resources": _serving_resources(serving),
        "securityContext": container_security_context(),
        "volumeMounts": [*scratch_mounts(), *log_mounts],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(component, model, stage)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "template": {
            "metadata": {
                "labels": dict(labels),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(SERVING_PORT),
                    "prometheus.io/path": METRICS_PATH,
                    **version_annotations,
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                "securityContext": pod_security_context(),
                "containers": [container],
                "volumes": [*scratch_volumes(), *log_volumes],
            },
        },
    }
    if candidate:
        spec = {"replicas": max(1, serving.replicas), **spec}
    elif serving.autoscaling is None:
        spec = {"replicas": serving.replicas, **spec}
    metadata = _metadata(name, served.namespace, labels, owners)
    metadata["annotations"] = {**version_annotations, ANNOTATION_SERVED_BY: served.cr_name}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}
    return with_desired_hash(deployment)


def build_serving_service(
    model: str, stage: str, namespace: str, owners: Sequence[ObjectRef], *, candidate: bool = False
) -> dict[str, Any]:
    """The ClusterIP ``v1`` Service ``<model>-<stage>``: port 80 to the pods' ``http-metrics`` port.

    Selects pods by component, model and stage only (not version), so it follows rollouts.
    Owned like the Deployment. ``candidate``: the rollout candidate's Service (:func:`candidate_name`,
    selecting the ``serving-candidate`` pods), which only the incumbent's router calls.
    Raises ``ValueError`` for empty or cross-namespace ``owners``.
    """
    component = COMPONENT_CANDIDATE if candidate else COMPONENT_SERVING
    metadata = _stage_metadata(model, stage, namespace, owners)
    if candidate:
        name = candidate_name(model, stage)
        labels = standard_labels(component=component, instance=name, model=model, stage=stage)
        metadata = _metadata(name, namespace, labels, owners)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(component, model, stage),
            "ports": [
                {
                    "name": SERVING_PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": SERVING_PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }
    return with_desired_hash(service)


def _max_replicas(serving: ServingSpec) -> int:
    return serving.autoscaling.max_replicas if serving.autoscaling is not None else serving.replicas


def build_pdb(
    model: str, stage: str, namespace: str, owners: Sequence[ObjectRef], serving: ServingSpec
) -> dict[str, Any] | None:
    """The ``policy/v1`` PodDisruptionBudget ``<model>-<stage>``, or None when it would not help.

    Present only when the stage can run more than one pod: ``serving.replicas > 1``, or with
    autoscaling ``maxReplicas > 1``. ``maxUnavailable: 1`` lets voluntary disruptions (node
    drains) take one pod at a time whatever the HPA's current scale, and
    ``unhealthyPodEvictionPolicy: AlwaysAllow`` keeps crash-looping pods from blocking drains.
    Raises ``ValueError`` for empty or cross-namespace ``owners``.
    """
    if _max_replicas(serving) <= 1:
        return None
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _stage_metadata(model, stage, namespace, owners),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(COMPONENT_SERVING, model, stage)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    return with_desired_hash(pdb)


def build_hpa(
    model: str, stage: str, namespace: str, owners: Sequence[ObjectRef], serving: ServingSpec
) -> dict[str, Any] | None:
    """The ``autoscaling/v2`` HorizontalPodAutoscaler ``<model>-<stage>``; None without autoscaling.

    Scales the Deployment between ``minReplicas`` and ``maxReplicas`` on average CPU utilisation
    (percent of the CPU request; the Deployment always requests CPU when autoscaling is on).
    Raises ``ValueError`` when ``maxReplicas < minReplicas`` (the API server would reject it) or
    for empty or cross-namespace ``owners``.
    """
    scaling = serving.autoscaling
    if scaling is None:
        return None
    if scaling.max_replicas < scaling.min_replicas:
        raise ValueError(
            f"serving.autoscaling.maxReplicas ({scaling.max_replicas}) is below minReplicas ({scaling.min_replicas})"
        )
    name = serving_name(model, stage)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _stage_metadata(model, stage, namespace, owners),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
                    },
                }
            ],
        },
    }
    return with_desired_hash(hpa)


@dataclass(frozen=True)
class ServingChildren:
    """All serving children of one model stage; ``pdb``/``hpa`` are None when they must not exist."""

    deployment: dict[str, Any]
    service: dict[str, Any]
    pdb: dict[str, Any] | None
    hpa: dict[str, Any] | None

    def present(self) -> list[dict[str, Any]]:
        """The manifests that should exist, in apply order (Deployment, Service, PDB, HPA)."""
        return [m for m in (self.deployment, self.service, self.pdb, self.hpa) if m is not None]


def build_serving_children(
    model: str,
    stage: str,
    served: ServedVersion,
    owners: Sequence[ObjectRef],
    serving: ServingSpec,
    settings: Settings,
    *,
    mlflow: MlflowOverrides | None = None,
) -> ServingChildren:
    """Deployment, Service, PDB and HPA of a model stage together (see each builder).

    Raises ``ValueError`` as those builders do.
    """
    ns = served.namespace
    return ServingChildren(
        deployment=build_serving_deployment(model, stage, served, owners, serving, settings, mlflow=mlflow),
        service=build_serving_service(model, stage, ns, owners),
        pdb=build_pdb(model, stage, ns, owners, serving),
        hpa=build_hpa(model, stage, ns, owners, serving),
    )


def service_url(model: str, stage: str, namespace: str, settings: Settings, *, candidate: bool = False) -> str:
    """In-cluster URL of a model stage's server: ``http://<model>-<stage>.<ns>.svc.<cluster_domain>``
    (``candidate``: of its rollout candidate's Service)."""
    name = candidate_name(model, stage) if candidate else serving_name(model, stage)
    return f"http://{name}.{namespace}.svc.{settings.cluster_domain}"


def candidate_name(model: str, stage: str) -> str:
    """Name of a rollout candidate's Deployment and Service: ``<model>-<stage lower>-candidate``
    (at most 63 characters: the model name is at most 40)."""
    return f"{serving_name(model, stage)}-candidate"
