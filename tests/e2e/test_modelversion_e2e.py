"""ModelVersion end to end in the sandbox, with the real operator, kubelet, runtime and MLflow.

Train → register → promote → serve → supersede → gate failure → rollback → alias drift →
deletion, and the counts that must not change across an operator restart.
"""

from __future__ import annotations

import httpx
import pytest
from mlflow.tracking import MlflowClient

from modelops.api.crdgen import build_crds
from modelops.api.openapi import crd_schema, validate
from modelops.builders.common import COMPONENT_SERVING, LABEL_VERSION, selector_labels
from modelops.sandbox.client import Resource
from modelops.sandbox.testing import Sandbox, condition
from tests.e2e.conftest import modelversion, phase

pytestmark = pytest.mark.e2e
MV_STATUS_SCHEMA = crd_schema(build_crds()["modelversions.yaml"])["properties"]["status"]
TIMEOUT = 240.0
PDBS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")


def _status(sb: Sandbox, name: str, ns: str) -> dict:
    return sb.get("modelversions", name, ns).get("status") or {}


def _served_registry_version(sb: Sandbox, model: str, stage: str, ns: str) -> str | None:
    dep = sb.find("deployments", f"{model}-{stage.lower()}", ns)
    if dep is None:
        return None
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    config = next(e["value"] for e in env if e["name"] == "MODELOPS_JOB_CONFIG")
    import json

    return str(json.loads(config)["registry_version"])


def test_promotion_rollback_and_registry(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient, events
) -> None:
    sb, ns, model = operated, namespace, model_name
    # 1.0.0 → Production: trained, registered, promoted, serving.
    sb.create(modelversion("v100", model, "1.0.0"), ns)
    obj = sb.wait_for_object("modelversions", "v100", ns, phase("v100", "Ready"), TIMEOUT)
    st = obj["status"]
    assert validate(MV_STATUS_SCHEMA, st, prefix="status") == []
    assert st["metrics"]["accuracy"] > 0.9 and st["registry"]["version"] == "1"
    assert st["model"]["algorithm"] == "LogisticRegression" and len(st["model"]["features"]) == 30
    assert condition(obj, "Serving") and condition(obj, "Promoted")
    mv = mlflow_client.get_model_version_by_alias(model, "production")
    assert mv.version == "1" and mv.tags["semver"] == "1.0.0" and mv.tags["stage"] == "Production"
    assert mv.tags["modelops.namespace"] == ns
    url = sb.service_url(f"{model}-production", ns)
    rows = {"dataframe_split": {"columns": st["model"]["features"], "data": [[14.0] * 30]}}
    assert httpx.post(f"{url}/invocations", json=rows, timeout=30).status_code == 200
    assert any(e.get("reason") == "Promoted" for e in events("v100"))

    # 1.1.0 with a better metric takes over with a rolling update; 1.0.0 is Superseded.
    sb.create(
        modelversion(
            "v110",
            model,
            "1.1.0",
            hyperparameters={"C": 1.0, "max_iter": 1000},
            promotion={"metric": "accuracy", "minValue": 0.9, "minImprovement": 0.01},
        ),
        ns,
    )
    sb.wait_for_object("modelversions", "v110", ns, phase("v110", "Ready"), TIMEOUT)
    old = sb.wait_for_object("modelversions", "v100", ns, phase("v100", "Superseded"), 60)
    assert "1.1.0" in condition(old, "Promoted", "False")["message"]
    assert _served_registry_version(sb, model, "Production", ns) == "2"
    assert mlflow_client.get_model_version_by_alias(model, "production").version == "2"

    # 1.2.0 (RandomForest, lower accuracy here) fails its gate and never serves.
    sb.create(
        modelversion(
            "v120",
            model,
            "1.2.0",
            estimator="sklearn.ensemble.RandomForestClassifier",
            hyperparameters={"n_estimators": 50, "max_depth": 4},
            # must beat the holder by 0.01: it fails against 1.1.0 now and against 1.0.0 after the rollback
            promotion={"metric": "accuracy", "minValue": 0.9, "minImprovement": 0.01},
        ),
        ns,
    )
    failed = sb.wait_for_object(
        "modelversions",
        "v120",
        ns,
        lambda o: (o.get("status") or {}).get("promotion", {}).get("decision") == "GateFailed",
        TIMEOUT,
    )
    promo = failed["status"]["promotion"]
    assert promo["comparedTo"] == "1.1.0" and f"{promo['value']:.6f}"[:6] in promo["reason"]
    assert _served_registry_version(sb, model, "Production", ns) == "2"

    # GitOps rollback: 1.1.0 back to Staging → Production returns to 1.0.0; 1.1.0 serves Staging.
    sb.patch("modelversions", "v110", {"spec": {"stage": "Staging"}}, ns)
    sb.wait_for_object("modelversions", "v100", ns, phase("v100", "Ready"), TIMEOUT)
    sb.wait_for(lambda: _served_registry_version(sb, model, "Production", ns) == "1", 60)
    assert mlflow_client.get_model_version_by_alias(model, "production").version == "1"
    assert mlflow_client.get_model_version_by_alias(model, "staging").version == "2"
    sb.wait_for_object("modelversions", "v110", ns, lambda o: (o.get("status") or {}).get("stage") == "Staging", 60)
    # The operator's own alias and tag moves were never reported as changes by hand.
    assert [e["message"] for n in ("v100", "v110", "v120") for e in events(n) if e["reason"].endswith("ByHand")] == []

    # An alias moved by hand is reported and set back.
    mlflow_client.set_registered_model_alias(model, "production", "3")
    drifted = sb.wait_for_object("modelversions", "v100", ns, lambda o: condition(o, "RegistryDrift"), 60)
    assert "pointed to version 3" in condition(drifted, "RegistryDrift")["message"]
    sb.wait_for(lambda: mlflow_client.get_model_version_by_alias(model, "production").version == "1", 30)

    # Deleting 1.1.0 releases Staging: alias removed, tagged Archived, Staging children removed.
    sb.delete("modelversions", "v110", ns)
    sb.wait_for(lambda: sb.find("modelversions", "v110", ns) is None, 60)
    assert mlflow_client.get_model_version(model, "2").tags["stage"] == "Archived"
    assert "staging" not in (mlflow_client.get_registered_model(model).aliases or {})
    sb.wait_for(lambda: sb.find("deployments", f"{model}-staging", ns) is None, 60)
    # Never more registered versions than CRs that trained.
    assert len(mlflow_client.search_model_versions(f"name='{model}'")) == 3


def test_workers_and_batching_from_the_crd(operated: Sandbox, namespace: str, model_name: str) -> None:
    """``serving.workers: 2`` and ``serving.batching`` reach the pod: two server processes behind one port
    (the pod's log), one scrape with the pod's sums (no per-process collectors), merged predict calls."""
    sb, ns, model = operated, namespace, model_name
    serving = {"workers": 2, "batching": {"maxBatchSize": 8, "maxWaitMilliseconds": 20}}
    sb.create(modelversion("w100", model, "1.0.0", serving=serving), ns)
    obj = sb.wait_for_object("modelversions", "w100", ns, phase("w100", "Ready"), TIMEOUT)
    features = obj["status"]["model"]["features"]
    deployment = f"{model}-production"
    assert "serving with 2 workers" in sb.pod_logs(deployment, ns)
    url = sb.service_url(deployment, ns)
    rows = [[14.0 + i / 10] * 30 for i in range(24)]

    def send(row: list[float]) -> int:
        body = {"dataframe_split": {"columns": features, "data": [row]}}
        response = httpx.post(f"{url}/invocations", json=body, headers={"connection": "close"}, timeout=60)
        return response.status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(send, rows)) == {200}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    samples = {line.split(" ")[0]: float(line.split(" ")[-1]) for line in text.splitlines() if not line.startswith("#")}
    assert sum(v for k, v in samples.items() if k.startswith("ml_prediction_latency_seconds_count")) == len(rows)
    assert sum(v for k, v in samples.items() if k.startswith("modelops_batch_rows_sum")) == len(rows)
    assert not any(k.startswith("process_cpu_seconds_total") for k in samples)


def test_categorical_dataset_with_version_bump(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient
) -> None:
    sb, ns, model = operated, namespace, model_name
    sb.create(
        modelversion(
            "p1",
            model,
            stage="Development",
            uri="penguins://",
            target="species",
            estimator="sklearn.ensemble.RandomForestClassifier",
            hyperparameters={"n_estimators": 50},
            versionBump="minor",
        ),
        ns,
    )
    obj = sb.wait_for_object("modelversions", "p1", ns, phase("p1", "Ready"), TIMEOUT)
    st = obj["status"]
    assert st["version"] == "0.1.0" and "parentVersion" not in st
    assert st["metrics"]["accuracy"] > 0.9 and "island" in st["model"]["features"]
    sb.create(
        modelversion(
            "p2",
            model,
            stage="Development",
            uri="penguins://",
            target="species",
            estimator="sklearn.ensemble.RandomForestClassifier",
            hyperparameters={"n_estimators": 60},
            versionBump="major",
        ),
        ns,
    )
    st2 = sb.wait_for_object("modelversions", "p2", ns, phase("p2", ("Ready", "Superseded", "Registered")), TIMEOUT)[
        "status"
    ]
    assert st2["version"] == "1.0.0" and st2["parentVersion"] == "0.1.0"
    # Development is not a served stage: no Deployment, but the alias exists.
    assert sb.find("deployments", f"{model}-development", ns) is None
    assert mlflow_client.get_model_version_by_alias(model, "development").tags["semver"] in ("0.1.0", "1.0.0")


def test_bad_estimator_and_conflicts(operated: Sandbox, namespace: str, model_name: str) -> None:
    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("bad", model, "1.0.0", estimator="sklearn.nonexistent.Thing"), ns)
    obj = sb.wait_for_object("modelversions", "bad", ns, phase("bad", "Failed"), TIMEOUT)
    trained = condition(obj, "Trained", "False")
    assert trained and trained["reason"] == "TrainingFailed" and "sklearn.nonexistent" in trained["message"]
    sb.create(modelversion("badparam", model, "1.0.1", hyperparameters={"not_a_param": 1}), ns)
    obj = sb.wait_for_object("modelversions", "badparam", ns, phase("badparam", "Failed"), TIMEOUT)
    assert "not_a_param" in condition(obj, "Trained", "False")["message"]
    # Same version claimed twice: the newer CR gets VersionConflict.
    sb.create(modelversion("dup", model, "1.0.0"), ns)
    obj = sb.wait_for_object("modelversions", "dup", ns, phase("dup", "Failed"), 60)
    assert condition(obj, "Registered", "False")["reason"] == "VersionConflict"


def test_invalid_modelversion_rejected_at_admission(operated: Sandbox, namespace: str) -> None:
    bad = modelversion("x", "m-invalid", "1.0")
    result = operated.kubectl(
        "apply", "--validate=false", "-n", namespace, "-f", "-", input=__import__("json").dumps(bad), check=False
    )
    assert result.returncode != 0 and "spec.version" in result.stderr
    both = modelversion("y", "m-invalid", "1.0.0", versionBump="minor")
    result = operated.kubectl(
        "apply", "--validate=false", "-n", namespace, "-f", "-", input=__import__("json").dumps(both), check=False
    )
    assert result.returncode != 0 and "exactly one of spec.version and spec.versionBump" in result.stderr


def test_operator_restart_creates_nothing_twice(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient
) -> None:
    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("r1", model, "1.0.0", stage="Staging"), ns)
    sb.wait_for(lambda: sb.list("jobs", ns), 60)
    sb.supervisor.restart_operator()
    sb.wait_for_object("modelversions", "r1", ns, phase("r1", "Ready"), TIMEOUT)
    sb.supervisor.restart_operator()
    sb.patch("modelversions", "r1", {"metadata": {"labels": {"poke": "1"}}}, ns)
    sb.wait_for_object("modelversions", "r1", ns, phase("r1", "Ready"), 60)
    assert len(sb.list("jobs", ns)) == 1
    assert len(sb.list("deployments", ns)) == 1
    assert len(mlflow_client.search_model_versions(f"name='{model}'")) == 1
    # A deleted child is restored by the next reconcile.
    sb.delete("deployments", f"{model}-staging", ns)
    sb.wait_for(lambda: sb.find("deployments", f"{model}-staging", ns), 60)


def test_a_version_that_cannot_serve_leaves_the_previous_one_serving(
    operated: Sandbox, namespace: str, model_name: str
) -> None:
    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("good", model, "1.0.0"), ns)
    sb.wait_for_object("modelversions", "good", ns, phase("good", "Ready"), TIMEOUT)
    url = sb.service_url(f"{model}-production", ns)
    # 1.1.0 passes its gate, but its serving image does not exist: its pods never become ready.
    sb.create(
        modelversion(
            "broken",
            model,
            "1.1.0",
            hyperparameters={"C": 1.0, "max_iter": 1000},
            serving={"image": "no-such-image:1"},
        ),
        ns,
    )
    obj = sb.wait_for_object(
        "modelversions", "broken", ns, lambda o: (o.get("status") or {}).get("stage") == "Production", TIMEOUT
    )
    assert obj["status"]["phase"] == "Promoted" and not condition(obj, "Serving")
    for _ in range(3):
        answer = httpx.get(f"{url}/v2/models/{model}", timeout=10).json()
        assert answer["versions"] == ["1.0.0"], answer  # the old replica still serves
        obj = sb.get("modelversions", "broken", ns)
        assert obj["status"]["phase"] == "Promoted" and not condition(obj, "Ready")


def _reason(obj: dict, ctype: str) -> str | None:
    return next((c["reason"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def test_children_and_registry_edited_by_hand(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient, events
) -> None:
    sb, ns, model = operated, namespace, model_name
    name = f"{model}-production"
    # Someone's Service already has the serving Service's name: reported, never taken over.
    foreign = sb.create(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 4242}]}}, ns
    )
    sb.create(modelversion("h1", model, "1.0.0", serving={"replicas": 2}), ns)
    blocked = sb.wait_for_object(
        "modelversions", "h1", ns, lambda o: _reason(o, "Serving") == "ChildNameConflict", TIMEOUT
    )
    assert f"Service {ns}/{name}" in condition(blocked, "Serving", "False")["message"]
    sb.wait_for(lambda: any(e["type"] == "Warning" and e["reason"] == "ChildNameConflict" for e in events("h1")), 30)
    kept = sb.get("services", name, ns)
    assert kept["metadata"]["uid"] == foreign["metadata"]["uid"] and not kept["metadata"].get("ownerReferences")
    assert [p["port"] for p in kept["spec"]["ports"]] == [4242]
    sb.delete("services", name, ns)  # gone: the operator carries on
    sb.wait_for_object("modelversions", "h1", ns, phase("h1", "Ready"), TIMEOUT)

    # Our Service and PDB deleted by hand come back from their watch events, not a resync.
    for kind in ("services", PDBS):
        before = sb.get(kind, name, ns)["metadata"]["uid"]
        sb.delete(kind, name, ns)
        sb.wait_for(
            lambda k=kind, b=before: (sb.find(k, name, ns) or {}).get("metadata", {}).get("uid") not in (None, b), 20
        )

    # Registry edits: a forged stage tag and a deleted alias are set back and reported.
    mlflow_client.set_model_version_tag(model, "1", "stage", "Archived")
    sb.wait_for(lambda: mlflow_client.get_model_version(model, "1").tags.get("stage") == "Production", 30)
    mlflow_client.delete_registered_model_alias(model, "production")
    sb.wait_for(lambda: "production" in (mlflow_client.get_registered_model(model).aliases or {}), 30)
    sb.wait_for(lambda: {"TagChangedByHand", "AliasDeletedByHand"} <= {e["reason"] for e in events("h1")}, 30)

    # The serving version deleted in MLflow: reported, the stage released, no retry loop.
    mlflow_client.delete_model_version(model, "1")
    gone = sb.wait_for_object("modelversions", "h1", ns, phase("h1", "Failed"), 60)
    assert (
        _reason(gone, "Registered") == "VersionDeleted"
        and "version 1 of registered model" in condition(gone, "Registered", "False")["message"]
    )
    sb.wait_for(lambda: sb.find("deployments", name, ns) is None, 60)
def test_a_model_the_server_refuses_reports_the_servers_reason_and_the_previous_version_serves(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient, events
) -> None:
    """A model saved with another scikit-learn patch release (the default policy is an exact
    match): Serving=False with the server's FrameworkVersionMismatch, not a rollout timeout."""
    import mlflow
    import sklearn
    import yaml
    from packaging.version import Version

    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("incumbent", model, "1.0.0"), ns)
    sb.wait_for_object("modelversions", "incumbent", ns, phase("incumbent", "Ready"), TIMEOUT)
    url = sb.service_url(f"{model}-production", ns)
    # 1.1.0 registers in Development (not served); its MLmodel is then made to record the next
    # patch release, as if another image had saved it.
    better = {"C": 1.0, "max_iter": 1000}  # passes its gate against 1.0.0
    sb.create(modelversion("other-patch", model, "1.1.0", stage="Development", hyperparameters=better), ns)
    obj = sb.wait_for_object(
        "modelversions", "other-patch", ns, lambda o: (o.get("status") or {}).get("registry"), TIMEOUT
    )
    installed = Version(sklearn.__version__)
    saved_with = f"{installed.major}.{installed.minor}.{installed.micro + 1}"
    run = mlflow_client.get_run(obj["status"]["registry"]["runId"])
    model_id = run.outputs.model_outputs[0].model_id
    location = mlflow_client.get_logged_model(model_id).artifact_location
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/MLmodel", tracking_uri=operated.mlflow_url
    )
    doc = yaml.safe_load(open(local).read())
    doc["flavors"]["sklearn"]["sklearn_version"] = saved_with
    with open(local, "w") as handle:
        handle.write(yaml.safe_dump(doc))
    mlflow_client.log_model_artifact(model_id, local)

    sb.patch("modelversions", "other-patch", {"spec": {"stage": "Production"}}, ns)

    def refused(o: dict) -> bool:
        serving = condition(o, "Serving", "False")
        return bool(serving and serving["reason"] == "FrameworkVersionMismatch")

    obj = sb.wait_for_object("modelversions", "other-patch", ns, refused, TIMEOUT)
    message = condition(obj, "Serving", "False")["message"]
    assert f"saved with {saved_with}, the server runs {sklearn.__version__}" in message, message
    assert "the previous version keeps serving" in message
    assert obj["status"]["stage"] == "Production" and obj["status"]["phase"] == "Promoted"
    assert condition(obj, "Ready", "False")["reason"] == "FrameworkVersionMismatch"
    # The refusing server stays up, not ready: no restart, no crash loop (the reason came from its
    # /v2/health/ready, not from a termination message).
    pods = sb.list("pods", ns, {**selector_labels(COMPONENT_SERVING, model, "Production"), LABEL_VERSION: "1.1.0"})
    assert pods, "the refusing version's pod is gone"
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        assert statuses and all(cs.get("restartCount") == 0 and "running" in (cs.get("state") or {})
                                and not cs.get("ready") for cs in statuses), statuses
    for _ in range(3):
        answer = httpx.get(f"{url}/v2/models/{model}", timeout=10).json()
        assert answer["versions"] == ["1.0.0"], answer  # the incumbent's replica still serves
    posted = [e for e in events("other-patch") if e.get("reason") == "FrameworkVersionMismatch"]
    assert posted and {e["type"] for e in posted} == {"Warning"}  # Serving=False and Ready=False


def test_data_uris_outside_the_policy_are_invalid_spec_without_content(
    operated: Sandbox, namespace: str, model_name: str, events, tmp_path
) -> None:
    """The sandbox runs the production data URI policy: an internal URL answering fake
    credentials, a system file and a CSV outside the data folder are InvalidSpec naming the
    field, nothing is fetched or trained, and no content reaches status or Events."""
    from tests.runtime.test_data_policy import CREDENTIALS, SECRET, serving

    sb, ns = operated, namespace
    outside = tmp_path / "train.csv"
    outside.write_text(f"x,target\n{SECRET},1\n2,0\n3,1\n4,0\n")
    with serving("127.0.0.1", {"/latest": (200, {}, CREDENTIALS.encode())}) as (port, seen):
        uris = {
            "internal-url": f"http://127.0.0.1:{port}/latest",
            "system-file": "/etc/os-release",
            "outside-folder": str(outside),
        }
        for name, uri in uris.items():
            sb.create(modelversion(name, f"{model_name}-{name}"[:40].rstrip("-"), "1.0.0", uri=uri), ns)
        for name in uris:
            obj = sb.wait_for_object("modelversions", name, ns, phase(name, "Failed"), TIMEOUT)
            ready = condition(obj, "Ready", "False")
            assert ready["reason"] == "InvalidSpec" and ready["message"].startswith("spec.training.data.uri: ")
            # Events are posted after the status write: wait for the Warning, do not race it.
            sb.wait_for(lambda name=name: any(e["reason"] == "InvalidSpec" and e["type"] == "Warning"
                                              for e in events(name)), timeout=60, message=f"{name}'s InvalidSpec Event")
    assert seen == [] and sb.list("jobs", ns) == []
    posted = str([events(name) for name in uris]) + str([sb.get("modelversions", n, ns)["status"] for n in uris])
    assert SECRET not in posted and "PRETTY_NAME" not in posted
