"""Child manifests built from the sample CRs: schema-valid, restricted, deterministic, wired to the contract."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import ValidationError

from modelops.api.modelmonitor import ModelMonitorSpec
from modelops.api.modelversion import AutoscalingSpec, MlflowOverrides, ModelVersionSpec, ServingSpec
from modelops.builders import (
    ObjectRef,
    ServedVersion,
    build_drift_cronjob,
    build_hpa,
    build_pdb,
    build_serving_children,
    build_serving_deployment,
    build_serving_service,
    build_training_job,
    desired_differs,
    service_url,
)
from modelops.builders.common import LABEL_VERSION, RUNTIME_UID
from modelops.contract import (
    ENV_JOB_CONFIG,
    ENV_POD_NAME,
    ENV_PREDICTION_LOG_URI,
    ENV_TRACKING_SECRETS,
    EXIT_INVALID_INPUT,
    SERVING_PORT,
    SERVING_PORT_NAME,
    DriftJobConfig,
    ServeConfig,
    TrainJobConfig,
)
from modelops.settings import Settings
from tests.conftest import ROOT, load_yaml_docs

K8S_VERSION = "1.37.0"
SAMPLES = ROOT / "manifests" / "samples"
NAMESPACE = "team-ml"
#: Volume types the restricted Pod Security profile allows.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def validate(obj: dict[str, Any]) -> None:
    """Validate against the Kubernetes 1.37 schemas, strict (unknown fields rejected)."""
    problem = None
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except ValidationError as exc:  # its str() embeds the whole schema: report the message only
        problem = f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {list(exc.path)}"
    if problem:
        pytest.fail(problem)


def sample(path: Path, uid: str) -> tuple[ObjectRef, dict[str, Any]]:
    """A sample CR with the identity the API server would give it, and its spec dict."""
    (body,) = load_yaml_docs(path)
    body["metadata"].update(namespace=NAMESPACE, uid=uid)
    return ObjectRef.from_body(body), body["spec"]


MV_SAMPLES = sorted(SAMPLES.glob("modelversion-*.yaml"))


@pytest.fixture
def settings() -> Settings:
    return Settings(mlflow_credentials_secret="mlflow-credentials", prediction_log_volume_claim="prediction-logs")


@pytest.fixture
def mv() -> tuple[ObjectRef, ModelVersionSpec]:
    ref, spec = sample(SAMPLES / "modelversion-1.0.0.yaml", "uid-mv-100")
    return ref, ModelVersionSpec.model_validate(spec)


@pytest.fixture
def mm() -> tuple[ObjectRef, ModelMonitorSpec]:
    ref, spec = sample(SAMPLES / "modelmonitor.yaml", "uid-mm-1")
    return ref, ModelMonitorSpec.model_validate(spec)


SERVED = ServedVersion(namespace=NAMESPACE, version="1.0.0", registry_version="3", cr_name="breast-cancer-1-0-0")


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Pod specs inside a Job, Deployment or CronJob."""
    if obj["kind"] in ("Job", "Deployment"):
        yield obj["spec"]["template"]["spec"]
    elif obj["kind"] == "CronJob":
        yield obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container_env(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (pod,) = pod_specs(obj)
    (container,) = pod["containers"]
    return {e["name"]: e for e in container["env"]}


def assert_restricted(obj: dict[str, Any]) -> None:
    """The Pod Security Standards 'restricted' profile, plus a read-only root filesystem."""
    pods = list(pod_specs(obj))
    assert pods, f"{obj['kind']} has no pod template"
    for pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] > 0 and psc["runAsGroup"] > 0 and psc["fsGroup"] > 0
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key)
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"volume {volume['name']} uses {kinds}"
        mounted = {v["name"] for v in pod.get("volumes", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            csc = container["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False
            assert csc.get("privileged") is not True
            assert csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add")
            assert csc["readOnlyRootFilesystem"] is True
            assert csc.get("runAsUser", psc["runAsUser"]) != 0
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "scratch space must be an emptyDir on a read-only root fs"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["HOME"] in mounts, "HOME must be writable"
            assert set(mounts.values()) <= mounted


def assert_no_literal_secrets(obj: dict[str, Any]) -> None:
    env = container_env(obj)
    for name in ENV_TRACKING_SECRETS:
        entry = env.get(name)
        if entry is not None:
            assert "value" not in entry
            assert entry["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "password" not in json.dumps(obj).lower().replace("mlflow_tracking_password", "")


# ------------------------------------------------------------------------------------------
# Training Job
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MV_SAMPLES, ids=lambda p: p.stem)
def test_training_job_from_every_sample_is_valid_and_restricted(path: Path, settings: Settings) -> None:
    ref, raw = sample(path, "uid-" + path.stem)
    spec = ModelVersionSpec.model_validate(raw)
    job = build_training_job(ref, spec, "2.1.0", "2.0.0", settings)
    validate(job)
    assert_restricted(job)
    assert_no_literal_secrets(job)
    assert job == build_training_job(ref, spec, "2.1.0", "2.0.0", settings)  # deterministic


def test_training_job_shape(mv: tuple[ObjectRef, ModelVersionSpec], settings: Settings) -> None:
    ref, spec = mv
    job = build_training_job(ref, spec, "1.0.0", None, settings)
    meta, jspec = job["metadata"], job["spec"]
    assert meta["name"] == "breast-cancer-1-0-0-v1-0-0"
    assert meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "ml.smarthr360.io/v1alpha1",
            "kind": "ModelVersion",
            "name": "breast-cancer-1-0-0",
            "uid": "uid-mv-100",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["app.kubernetes.io/component"] == "training"
    assert meta["labels"]["ml.smarthr360.io/model"] == "breast-cancer"
    assert meta["labels"][LABEL_VERSION] == "1.0.0"
    assert jspec["backoffLimit"] == spec.training.backoff_limit
    assert jspec["activeDeadlineSeconds"] == spec.training.active_deadline_seconds
    assert jspec["ttlSecondsAfterFinished"] == settings.job_ttl_seconds
    rule = jspec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [EXIT_INVALID_INPUT]
    pod = jspec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["modelops-runtime", "train"]
    assert container["image"] == settings.runtime_image
    assert container["imagePullPolicy"] == settings.image_pull_policy
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    env = container_env(job)
    assert env["MLFLOW_TRACKING_URI"]["value"] == settings.mlflow_tracking_uri
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-credentials"


def test_training_job_config_parses_back(mv: tuple[ObjectRef, ModelVersionSpec]) -> None:
    ref, spec = mv
    settings = Settings(allowed_estimator_modules=["sklearn.", "xgboost."])
    job = build_training_job(ref, spec, "1.3.0", "1.2.0", settings)
    config = TrainJobConfig.from_env(container_env(job)[ENV_JOB_CONFIG]["value"])
    assert config.owner.model_dump() == {
        "kind": "ModelVersion",
        "namespace": NAMESPACE,
        "name": "breast-cancer-1-0-0",
        "uid": "uid-mv-100",
    }
    assert (config.model, config.version, config.parent_version) == ("breast-cancer", "1.3.0", "1.2.0")
    assert config.data == spec.training.data
    assert config.estimator == "sklearn.linear_model.LogisticRegression"
    assert config.hyperparameters == {"C": 0.05, "max_iter": 500}
    assert (config.test_size, config.random_state) == (0.25, 42)
    assert config.experiment == "model-training"
    assert config.allowed_estimator_modules == ["sklearn.", "xgboost."]
    assert config.data_policy == settings.data_policy  # the pod enforces the operator's policy again
    pod = job["spec"]["template"]["spec"]
    assert "data" not in {v["name"] for v in pod["volumes"]}  # no data volume claim configured


def test_training_and_drift_jobs_mount_the_data_volume_read_only(
    mv: tuple[ObjectRef, ModelVersionSpec], mm: tuple[ObjectRef, ModelMonitorSpec]
) -> None:
    ref, spec = mv
    settings = Settings(data_volume_claim="training-data", data_allowed_networks="10.20.0.0/16")
    cron = build_drift_cronjob(*mm, settings)
    drift_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "training-data", "readOnly": True}} in drift_pod[
        "volumes"
    ]
    drift_env = {e["name"]: e for e in drift_pod["containers"][0]["env"]}
    assert DriftJobConfig.from_env(drift_env[ENV_JOB_CONFIG]["value"]).data_policy == settings.data_policy
    job = build_training_job(ref, spec, "1.3.0", "1.2.0", settings)
    validate(job)
    assert_restricted(job)
    pod = job["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "data")
    assert volume["persistentVolumeClaim"] == {"claimName": "training-data", "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert mount == {"name": "data", "mountPath": "/var/lib/modelops/data", "readOnly": True}
    config = TrainJobConfig.from_env(container_env(job)[ENV_JOB_CONFIG]["value"])
    assert config.data_policy.allowed_networks == ["10.20.0.0/16"]
    assert config.data_policy.local_path_prefixes == ["/var/lib/modelops/data"]


def test_training_job_overrides(mv: tuple[ObjectRef, ModelVersionSpec]) -> None:
    ref, spec = mv
    spec = spec.model_copy(
        update={
            "training": spec.training.model_copy(update={"image": "registry.example/runtime:9", "resources": None}),
            "mlflow": MlflowOverrides(
                tracking_uri="https://mlflow.team", experiment="team-exp", credentials_secret="team-creds"
            ),
        }
    )
    job = build_training_job(ref, spec, "1.0.0", None, Settings())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/runtime:9"
    assert container["resources"]["limits"]["memory"]  # defaults when the CR sets none
    env = container_env(job)
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.team"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "team-creds"
    assert TrainJobConfig.from_env(env[ENV_JOB_CONFIG]["value"]).experiment == "team-exp"
    validate(job)


def test_new_version_is_a_new_job(mv: tuple[ObjectRef, ModelVersionSpec], settings: Settings) -> None:
    ref, spec = mv
    a = build_training_job(ref, spec, "1.0.0", None, settings)
    b = build_training_job(ref, spec, "1.0.1", "1.0.0", settings)
    assert a["metadata"]["name"] != b["metadata"]["name"]


def test_training_job_long_names(settings: Settings) -> None:
    ref, raw = sample(SAMPLES / "modelversion-1.0.0.yaml", "uid-long")
    long_ref = ObjectRef(ref.api_version, ref.kind, "very-long-model-version-name-" * 8 + "end", NAMESPACE, "u")
    job = build_training_job(long_ref, ModelVersionSpec.model_validate(raw), "10.20.30-rc.1+build.5", None, settings)
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["labels"][LABEL_VERSION] == "10.20.30-rc.1_build.5"
    assert job["metadata"]["annotations"]["ml.smarthr360.io/version"] == "10.20.30-rc.1+build.5"
    validate(job)


def test_training_job_rejects_wrong_owner_kind(
    mv: tuple[ObjectRef, ModelVersionSpec], mm: tuple[ObjectRef, ModelMonitorSpec], settings: Settings
) -> None:
    with pytest.raises(ValueError, match="owned by a ModelVersion"):
        build_training_job(mm[0], mv[1], "1.0.0", None, settings)


# ------------------------------------------------------------------------------------------
# Serving: Deployment, Service, PDB, HPA
# ------------------------------------------------------------------------------------------


def _owners() -> list[ObjectRef]:
    return [
        ObjectRef("ml.smarthr360.io/v1alpha1", "ModelVersion", "breast-cancer-1-1-0", NAMESPACE, "uid-mv-110"),
        ObjectRef("ml.smarthr360.io/v1alpha1", "ModelVersion", "breast-cancer-1-0-0", NAMESPACE, "uid-mv-100"),
    ]


def test_serving_limits_reach_the_server_as_its_own_settings(settings: Settings) -> None:
    """spec.serving.limits → MODELOPS_SERVE_* env that the server's ServeLimits reads back unchanged."""
    from modelops_runtime.serve.limits import ServeLimits

    serving = ServingSpec.model_validate({"limits": {"maxRows": 500, "maxBodyBytes": 1048576,
                                                    "requestTimeoutSeconds": 7.5}})
    dep = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), serving, settings)
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    limits_env = {k: v for k, v in env.items() if k.startswith("MODELOPS_SERVE_")}
    assert limits_env == {"MODELOPS_SERVE_MAX_ROWS": "500", "MODELOPS_SERVE_MAX_BODY_BYTES": "1048576",
                          "MODELOPS_SERVE_REQUEST_TIMEOUT_SECONDS": "7.5"}
    read = ServeLimits(**{k.removeprefix("MODELOPS_SERVE_").lower(): v for k, v in limits_env.items()})
    assert (read.max_rows, read.max_body_bytes, read.request_timeout_seconds) == (500, 1048576, 7.5)
    # Every limit the CRD offers is one the server knows.
    assert set(type(serving.limits).model_fields) <= set(ServeLimits.model_fields)
    unset = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), ServingSpec(), settings)
    assert not [e for e in unset["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"].startswith("MODELOPS_SERVE_")]


def test_serving_workers_and_batching_reach_the_server_config(settings: Settings) -> None:
    """spec.serving.workers/batching → the pods' serve config (what the server reads); default memory per worker."""
    from modelops_runtime.serve.main import parse_options

    serving = ServingSpec.model_validate({"workers": 2, "batching": {"maxBatchSize": 16, "maxWaitMilliseconds": 2.5}})
    dep = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), serving, settings)
    validate(dep)
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    config = ServeConfig.from_env(container_env(dep)[ENV_JOB_CONFIG]["value"])
    assert config.workers == 2
    assert config.batching is not None
    assert (config.batching.max_batch_size, config.batching.max_wait_milliseconds) == (16, 2.5)
    assert container["resources"]["limits"]["memory"] == "2Gi"  # each worker loads its own model
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_JOB_CONFIG, config.to_env())
        options = parse_options(["--port", "8080"])
    assert not isinstance(options, int) and options.workers == 2
    default = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), ServingSpec(), settings)
    config = ServeConfig.from_env(container_env(default)[ENV_JOB_CONFIG]["value"])
    assert (config.workers, config.batching) == (1, None)
    assert default["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
    with pytest.raises(ValueError, match=r"max_?[bB]atch_?[sS]ize"):
        ServingSpec.model_validate({"batching": {"maxBatchSize": 1}})
    with pytest.raises(ValueError, match="workers"):
        ServingSpec.model_validate({"workers": 0})


def test_serving_deployment_valid_restricted_and_wired(
    mv: tuple[ObjectRef, ModelVersionSpec], settings: Settings
) -> None:
    _, spec = mv
    dep = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), spec.serving, settings)
    validate(dep)
    assert_restricted(dep)
    assert_no_literal_secrets(dep)
    meta, dspec = dep["metadata"], dep["spec"]
    assert meta["name"] == "breast-cancer-production" and meta["namespace"] == NAMESPACE
    refs = meta["ownerReferences"]
    assert [r["uid"] for r in refs] == ["uid-mv-100", "uid-mv-110"]  # sorted, all owners
    assert all(r["controller"] is False for r in refs)
    assert dspec["replicas"] == 1
    assert dspec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert dspec["progressDeadlineSeconds"] > 0 and dspec["revisionHistoryLimit"] > 0
    template = dspec["template"]
    assert dspec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(SERVING_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["ml.smarthr360.io/model-uri"] == "models:/breast-cancer/3"
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["modelops-runtime", "serve"]
    assert container["ports"] == [{"name": SERVING_PORT_NAME, "containerPort": SERVING_PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": SERVING_PORT_NAME}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": SERVING_PORT_NAME}
    assert container["resources"] == spec.serving.resources.to_wire()  # type: ignore[union-attr]
    env = container_env(dep)
    assert env[ENV_POD_NAME]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env[ENV_PREDICTION_LOG_URI]["value"] == settings.prediction_log_uri
    config = ServeConfig.from_env(env[ENV_JOB_CONFIG]["value"])
    assert config.model_uri == "models:/breast-cancer/3"
    assert (config.version, config.stage, config.port) == ("1.0.0", "Production", SERVING_PORT)
    assert config.prediction_log_uri == settings.prediction_log_uri
    assert config.framework_version_match == settings.framework_version_match == "exact"
    # The prediction-log PVC is mounted where the log's local path is.
    pod = template["spec"]
    pvc = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in pvc] == ["prediction-logs"]
    assert {"name": pvc[0]["name"], "mountPath": settings.prediction_log_uri} in container["volumeMounts"]


def test_promotion_changes_only_the_pod_template(mv: tuple[ObjectRef, ModelVersionSpec], settings: Settings) -> None:
    _, spec = mv
    old = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), spec.serving, settings)
    newer = ServedVersion(NAMESPACE, "1.1.0", "4", "breast-cancer-1-1-0")
    new = build_serving_deployment("breast-cancer", "Production", newer, _owners(), spec.serving, settings)
    assert old["spec"]["template"] != new["spec"]["template"]
    assert old["spec"]["selector"] == new["spec"]["selector"]
    without_template = [{k: v for k, v in d["spec"].items() if k != "template"} for d in (old, new)]
    assert without_template[0] == without_template[1]
    assert new["spec"]["template"]["metadata"]["labels"][LABEL_VERSION] == "1.1.0"
    assert ServeConfig.from_env(container_env(new)[ENV_JOB_CONFIG]["value"]).model_uri == "models:/breast-cancer/4"
    assert desired_differs(new, old) is True
    # Rollback is the same change back.
    rollback = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), spec.serving, settings)
    assert rollback == old


def test_service_and_url(settings: Settings) -> None:
    svc = build_serving_service("breast-cancer", "Production", NAMESPACE, _owners())
    validate(svc)
    assert svc["metadata"]["name"] == "breast-cancer-production"
    assert svc["spec"]["type"] == "ClusterIP"
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, SERVING_PORT_NAME)
    dep = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), ServingSpec(), settings)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert LABEL_VERSION not in svc["spec"]["selector"]
    assert all(r["controller"] is False for r in svc["metadata"]["ownerReferences"])
    assert (
        service_url("breast-cancer", "Production", NAMESPACE, settings)
        == "http://breast-cancer-production.team-ml.svc.cluster.local"
    )
    assert service_url("m", "Staging", "ns", Settings(cluster_domain="corp.internal")) == (
        "http://m-staging.ns.svc.corp.internal"
    )


@pytest.mark.parametrize(("replicas", "expected"), [(0, False), (1, False), (2, True), (5, True)])
def test_pdb_only_with_more_than_one_replica(replicas: int, expected: bool) -> None:
    pdb = build_pdb("breast-cancer", "Production", NAMESPACE, _owners(), ServingSpec(replicas=replicas))
    assert (pdb is not None) is expected
    if pdb is not None:
        validate(pdb)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"]["ml.smarthr360.io/stage"] == "Production"


def test_autoscaling(settings: Settings) -> None:
    plain = ServingSpec(replicas=3)
    assert build_hpa("breast-cancer", "Production", NAMESPACE, _owners(), plain) is None
    scaled = ServingSpec(
        replicas=3, autoscaling=AutoscalingSpec(min_replicas=2, max_replicas=6, target_cpu_utilization=70)
    )
    hpa = build_hpa("breast-cancer", "Production", NAMESPACE, _owners(), scaled)
    assert hpa is not None
    validate(hpa)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "breast-cancer-production",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    dep = build_serving_deployment("breast-cancer", "Production", SERVED, _owners(), scaled, settings)
    validate(dep)
    assert "replicas" not in dep["spec"]  # the HPA owns the replica count
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]  # utilisation needs a CPU request
    pdb = build_pdb("breast-cancer", "Production", NAMESPACE, _owners(), scaled)
    assert pdb is not None
    with pytest.raises(ValueError, match="maxReplicas"):
        build_hpa(
            "m",
            "Staging",
            NAMESPACE,
            _owners(),
            ServingSpec(autoscaling=AutoscalingSpec(min_replicas=4, max_replicas=2)),
        )


def test_serving_children_bundle(settings: Settings) -> None:
    children = build_serving_children("breast-cancer", "Staging", SERVED, _owners(), ServingSpec(replicas=2), settings)
    kinds = [m["kind"] for m in children.present()]
    assert kinds == ["Deployment", "Service", "PodDisruptionBudget"]
    names = {m["metadata"]["name"] for m in children.present()}
    assert names == {"breast-cancer-staging"}
    for manifest in children.present():
        validate(manifest)


def test_serving_owners_must_share_the_namespace(settings: Settings) -> None:
    stranger = ObjectRef("ml.smarthr360.io/v1alpha1", "ModelVersion", "x", "other-ns", "uid-x")
    with pytest.raises(ValueError):
        build_serving_deployment("m", "Production", SERVED, [stranger], ServingSpec(), settings)
    with pytest.raises(ValueError, match="at least one owner"):
        build_serving_service("m", "Production", NAMESPACE, [])


@pytest.mark.parametrize(
    ("uri", "claim", "volume_kind"),
    [
        ("/var/lib/modelops/predictions", "logs", "persistentVolumeClaim"),
        ("file:///data/predictions", "logs", "persistentVolumeClaim"),
        ("/var/lib/modelops/predictions", None, "emptyDir"),  # writable, but per pod
        ("s3://bucket/predictions", "logs", None),  # remote: no volume at all
    ],
)
def test_prediction_log_storage(uri: str, claim: str | None, volume_kind: str | None) -> None:
    settings = Settings(prediction_log_uri=uri, prediction_log_volume_claim=claim)
    dep = build_serving_deployment("m", "Production", SERVED, _owners(), ServingSpec(), settings)
    validate(dep)
    pod = dep["spec"]["template"]["spec"]
    log_volumes = [v for v in pod["volumes"] if v["name"] == "prediction-log"]
    if volume_kind is None:
        assert log_volumes == []
    else:
        assert volume_kind in log_volumes[0]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": "prediction-log", "mountPath": uri.removeprefix("file://")} in mounts
    assert container_env(dep)[ENV_PREDICTION_LOG_URI]["value"] == uri


def test_model_name_starting_with_a_digit(settings: Settings) -> None:
    owners = _owners()
    for manifest in build_serving_children("3d-scan", "Production", SERVED, owners, ServingSpec(), settings).present():
        validate(manifest)
        assert manifest["metadata"]["name"] == "m-3d-scan-production"


def test_serving_mlflow_override(settings: Settings) -> None:
    override = MlflowOverrides(tracking_uri="https://mlflow.team", credentials_secret="team-creds")
    dep = build_serving_deployment("m", "Production", SERVED, _owners(), ServingSpec(), settings, mlflow=override)
    env = container_env(dep)
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.team"
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "team-creds"


# ------------------------------------------------------------------------------------------
# Drift CronJob
# ------------------------------------------------------------------------------------------


def test_drift_cronjob_valid_restricted_and_wired(mm: tuple[ObjectRef, ModelMonitorSpec], settings: Settings) -> None:
    ref, spec = mm
    cron = build_drift_cronjob(ref, spec, settings)
    validate(cron)
    assert_restricted(cron)
    assert_no_literal_secrets(cron)
    assert cron == build_drift_cronjob(ref, spec, settings)
    meta, cspec = cron["metadata"], cron["spec"]
    assert meta["name"] == "breast-cancer-production-drift"
    assert meta["ownerReferences"][0]["kind"] == "ModelMonitor"
    assert meta["ownerReferences"][0]["controller"] is True
    assert (cspec["schedule"], cspec["suspend"]) == ("0 * * * *", False)
    assert cspec["concurrencyPolicy"] == "Forbid"
    assert cspec["startingDeadlineSeconds"] > 0
    assert cspec["successfulJobsHistoryLimit"] >= 1 and cspec["failedJobsHistoryLimit"] >= 1
    job = cspec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == spec.active_deadline_seconds
    assert job["backoffLimit"] <= 2
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"] == ["modelops-runtime", "drift"]
    config = DriftJobConfig.from_env(container_env(cron)[ENV_JOB_CONFIG]["value"])
    assert config.owner.uid == "uid-mm-1" and config.owner.kind == "ModelMonitor"
    assert (config.model, config.stage, config.window) == ("breast-cancer", "Production", "24h")
    assert config.experiment == "production-monitoring"
    assert config.prediction_log_uri == settings.prediction_log_uri
    assert config.drift.drift_share == 0.3 and config.health.min_accuracy == 0.9
    # The shared prediction log is mounted read-only: drift jobs only read it.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "prediction-log")
    assert mount == {"name": "prediction-log", "mountPath": settings.prediction_log_uri, "readOnly": True}


def test_drift_cronjob_spec_changes(mm: tuple[ObjectRef, ModelMonitorSpec], settings: Settings) -> None:
    ref, spec = mm
    base = build_drift_cronjob(ref, spec, settings)
    changed = spec.model_copy(update={"schedule": "*/5 * * * *", "suspend": True, "image": "runtime:2"})
    cron = build_drift_cronjob(ref, changed, settings)
    validate(cron)
    assert (cron["spec"]["schedule"], cron["spec"]["suspend"]) == ("*/5 * * * *", True)
    assert desired_differs(cron, base) is True
    assert desired_differs(base, copy.deepcopy(base)) is False
    no_pvc = build_drift_cronjob(ref, spec, Settings())
    pod = no_pvc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert all(v["name"] != "prediction-log" for v in pod["volumes"])


def test_drift_cronjob_name_bounded_and_owner_kind(
    mm: tuple[ObjectRef, ModelMonitorSpec], mv: tuple[ObjectRef, ModelVersionSpec], settings: Settings
) -> None:
    ref, spec = mm
    long_ref = ObjectRef(ref.api_version, ref.kind, "monitor-" * 30, NAMESPACE, ref.uid)
    cron = build_drift_cronjob(long_ref, spec, settings)
    assert len(cron["metadata"]["name"]) <= 52
    validate(cron)
    with pytest.raises(ValueError, match="owned by a ModelMonitor"):
        build_drift_cronjob(mv[0], spec, settings)


def test_runtime_uid_is_not_root() -> None:
    assert RUNTIME_UID >= 1000
