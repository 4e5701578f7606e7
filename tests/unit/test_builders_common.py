"""Builders' shared pieces: owner references, names, labels, MLflow env, hashing and diffing."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from modelops.api.modelversion import MlflowOverrides
from modelops.builders.common import (
    ANNOTATION_DESIRED_HASH,
    ObjectRef,
    desired_differs,
    dns_name,
    drift_cronjob_name,
    label_value,
    local_path,
    mlflow_env,
    owner_reference,
    owner_references,
    serving_name,
    spec_hash,
    train_job_name,
    with_desired_hash,
)
from modelops.contract import ENV_TRACKING_SECRETS
from modelops.settings import Settings

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: also valid as a Service name
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _body(**meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ml.smarthr360.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "mv", "namespace": "ns", "uid": "uid-1", **meta},
    }


def test_object_ref_from_body() -> None:
    ref = ObjectRef.from_body(_body())
    assert ref == ObjectRef("ml.smarthr360.io/v1alpha1", "ModelVersion", "mv", "ns", "uid-1")
    assert ref.to_owner().tags()["modelops.uid"] == "uid-1"


@pytest.mark.parametrize("missing", ["uid", "namespace", "name"])
def test_object_ref_requires_identity(missing: str) -> None:
    body = _body()
    del body["metadata"][missing]
    with pytest.raises(ValueError, match=f"metadata.{missing}"):
        ObjectRef.from_body(body)


def test_owner_reference_shape() -> None:
    ref = ObjectRef.from_body(_body())
    assert owner_reference(ref) == {
        "apiVersion": "ml.smarthr360.io/v1alpha1",
        "kind": "ModelVersion",
        "name": "mv",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert owner_reference(ref, controller=False)["controller"] is False


def test_owner_references_are_deduplicated_sorted_and_same_namespace() -> None:
    a = ObjectRef.from_body(_body(name="a", uid="u-a"))
    b = ObjectRef.from_body(_body(name="b", uid="u-b"))
    refs = owner_references([b, a, b])
    assert [r["name"] for r in refs] == ["a", "b"]
    assert owner_references([a, b]) == owner_references([b, a])
    assert all(r["controller"] is False for r in refs)
    with pytest.raises(ValueError, match="one owner can be the controller"):
        owner_references([a, b], controller=True)
    with pytest.raises(ValueError, match="at least one owner"):
        owner_references([])
    other = ObjectRef.from_body(_body(name="c", uid="u-c", namespace="other"))
    with pytest.raises(ValueError, match="several namespaces"):
        owner_references([a, other])


def test_names_are_deterministic_bounded_and_dns_safe() -> None:
    long_name = "a" * 120 + ".team.example"
    job = train_job_name(long_name, "1.2.3-rc.1+build.7")
    assert job == train_job_name(long_name, "1.2.3-rc.1+build.7")
    assert len(job) <= 63 and DNS_LABEL.match(job)
    # Distinct long inputs that share the kept prefix still get distinct names.
    assert train_job_name(long_name, "1.2.3") != train_job_name(long_name, "1.2.4")
    assert train_job_name("mv", "1.0.0") == "mv-v1-0-0"
    assert train_job_name("mv", "1.0.0") != train_job_name("mv", "1.1.0")
    cron = drift_cronjob_name("m" * 200)
    assert len(cron) <= 52 and DNS_LABEL.match(cron)
    assert drift_cronjob_name("breast-cancer-production") == "breast-cancer-production-drift"
    assert serving_name("breast-cancer", "Production") == "breast-cancer-production"
    long_model = serving_name("x" * 40, "Production")
    assert len(long_model) <= 63 and DNS_LABEL.match(long_model)


def test_dns_name_edge_cases() -> None:
    assert dns_name("3d-model", "staging") == "m-3d-model-staging"  # Services need a letter first
    assert dns_name("My_Model", "v1.0") == "my-model-v1-0"
    assert dns_name("a--b", "--c") == "a-b-c"
    with pytest.raises(ValueError, match="cannot derive"):
        dns_name("...", "__")
    truncated = dns_name("b" * 100)
    assert len(truncated) == 63 and truncated.startswith("b" * 54 + "-")


def test_label_value() -> None:
    assert label_value("1.0.0") == "1.0.0"
    assert label_value("1.0.0+build.7") == "1.0.0_build.7"
    long_value = label_value("1.0.0-" + "x" * 80)
    assert len(long_value) <= 63 and LABEL_VALUE.match(long_value)
    assert long_value != label_value("1.0.0-" + "x" * 79 + "y")


def test_local_path() -> None:
    assert local_path("/var/lib/x") == "/var/lib/x"
    assert local_path("file:///var/lib/x") == "/var/lib/x"
    assert local_path("s3://bucket/x") is None
    assert local_path("relative/dir") is None


def test_mlflow_env_credentials_only_through_secret_refs() -> None:
    plain = mlflow_env(Settings())
    assert plain == [{"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"}]

    env = mlflow_env(Settings(mlflow_credentials_secret="global-creds"))
    secret_env = {e["name"]: e for e in env if e["name"] in ENV_TRACKING_SECRETS}
    assert set(secret_env) == set(ENV_TRACKING_SECRETS)
    for name, entry in secret_env.items():
        assert "value" not in entry
        assert entry["valueFrom"]["secretKeyRef"] == {"name": "global-creds", "key": name, "optional": True}

    override = MlflowOverrides(tracking_uri="https://mlflow.team:443", credentials_secret="team-creds")
    env = mlflow_env(Settings(mlflow_credentials_secret="global-creds"), override)
    assert env[0] == {"name": "MLFLOW_TRACKING_URI", "value": "https://mlflow.team:443"}
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env[1:]} == {"team-creds"}


# ------------------------------------------------------------------------------------------
# spec_hash and desired_differs
# ------------------------------------------------------------------------------------------


def _desired() -> dict[str, Any]:
    return with_desired_hash(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "m-production", "namespace": "ns", "labels": {"a": "1"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"a": "1"}},
                "template": {
                    "metadata": {"labels": {"a": "1"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "runtime:1",
                                "env": [
                                    {"name": "X", "value": "1"},
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                ],
                                "ports": [{"name": "http-metrics", "containerPort": 8080}],
                                "resources": {
                                    "requests": {"cpu": "0.5", "memory": "1024Mi"},
                                    "limits": {"memory": "2Gi"},
                                },
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
                    },
                },
            },
        }
    )


def _server_echo(desired: dict[str, Any]) -> dict[str, Any]:
    """What a real API server returns after creating ``desired``: defaults, metadata, status."""
    obj = copy.deepcopy(desired)
    meta = obj["metadata"]
    meta.update(uid="1234", resourceVersion="77", generation=1, creationTimestamp="2025-01-01T00:00:00Z")
    meta["annotations"]["deployment.kubernetes.io/revision"] = "1"
    meta["labels"]["added-by-someone"] = "x"
    spec = obj["spec"]
    spec.update(progressDeadlineSeconds=600, revisionHistoryLimit=10)
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    pod = spec["template"]["spec"]
    pod.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler", restartPolicy="Always")
    container = pod["containers"][0]
    container.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
    container["ports"][0]["protocol"] = "TCP"
    container["env"][1]["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
    container["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    obj["status"] = {"replicas": 2, "readyReplicas": 2}
    return obj


def test_spec_hash_is_stable_and_content_sensitive() -> None:
    a = _desired()
    reordered = dict(reversed(list(a.items())))
    assert spec_hash(a) == spec_hash(reordered)
    assert spec_hash(a) == a["metadata"]["annotations"][ANNOTATION_DESIRED_HASH]  # the hash excludes itself
    b = copy.deepcopy(a)
    b["spec"]["replicas"] = 3
    assert spec_hash(a) != spec_hash(b)
    assert len(spec_hash(a)) == 16


def test_desired_differs_ignores_server_defaults() -> None:
    desired = _desired()
    assert desired_differs(desired, _server_echo(desired)) is False


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil:1"), id="image"),
        pytest.param(lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"][0].update(value="2"), id="env"),
        pytest.param(lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].pop(0), id="env-removed"),
        pytest.param(lambda o: o["spec"].update(replicas=5), id="replicas"),
        pytest.param(lambda o: o["metadata"]["labels"].update(a="2"), id="label"),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(memory="1Gi"),
            id="quantity",
        ),
        pytest.param(lambda o: o["metadata"]["annotations"].pop(ANNOTATION_DESIRED_HASH), id="hash-removed"),
    ],
)
def test_desired_differs_catches_edits(edit: Any) -> None:
    desired = _desired()
    observed = _server_echo(desired)
    edit(observed)
    assert desired_differs(desired, observed) is True


def test_desired_differs_catches_removed_fields_through_the_hash() -> None:
    old = _desired()
    observed = _server_echo(old)
    new = copy.deepcopy(old)
    del new["spec"]["replicas"]  # e.g. autoscaling switched on: the HPA owns replicas now
    new["metadata"]["annotations"].pop(ANNOTATION_DESIRED_HASH)
    new = with_desired_hash(new)
    assert desired_differs(new, observed) is True
    assert desired_differs(new, _server_echo(new)) is False


def test_desired_differs_when_missing() -> None:
    assert desired_differs(_desired(), None) is True
