"""The kustomize install (manifests/) renders, validates and installs the same operator as the chart."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from modelops.api.crdgen import build_crds
from modelops.api.openapi import crd_schema, validate
from modelops.settings import Settings
from tests.install.helpers import KUBE_VERSION, ROOT, container, find, kustomize, one, pod_specs, render

MANIFESTS = ROOT / "manifests"


@pytest.mark.parametrize("path", ["default", "base", "mlflow", "samples", "gitops/models"])
def test_kustomizations_render_and_validate(path: str) -> None:
    objs = kustomize(MANIFESTS / path)
    assert objs
    crds = build_crds()
    schemas = {crd["spec"]["names"]["kind"]: crd_schema(crd) for crd in crds.values()}
    for obj in objs:
        if obj["apiVersion"].startswith("ml.smarthr360.io/"):
            errors = validate(schemas[obj["kind"]], obj)
            assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_default_installs_into_its_namespace() -> None:
    objs = kustomize(MANIFESTS / "default")
    one(objs, "Namespace", "modelops-system")
    for obj in objs:
        if obj["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == "modelops-system", obj["metadata"]["name"]
    kinds = sorted(o["kind"] for o in objs)
    assert kinds.count("CustomResourceDefinition") == 2 and kinds.count("Deployment") == 2


def test_base_crds_are_the_generated_crds() -> None:
    generated = sorted((ROOT / "crds").glob("*.yaml"))
    copies = sorted((MANIFESTS / "base" / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in generated]
    for path in generated:
        assert (MANIFESTS / "base" / "crds" / path.name).read_text() == path.read_text(), "run `make generate`"


def _operator_env(objs: list[dict[str, Any]]) -> dict[str, str]:
    op = container(objs, "Deployment", "modelops-operator", "operator")
    env = {e["name"]: e["value"] for e in op.get("env", [])}
    for source in op.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(one(objs, "ConfigMap", name)["data"])
    return env


def test_settings_configmap_holds_only_settings() -> None:
    env = _operator_env(kustomize(MANIFESTS / "default"))
    fields = {f"MODELOPS_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("MODELOPS_")} <= fields
    assert env["MODELOPS_MLFLOW_TRACKING_URI"] == "http://modelops-mlflow.modelops-system.svc.cluster.local:5000"
    mlflow = one(kustomize(MANIFESTS / "default"), "Service", "modelops-mlflow")
    assert mlflow["metadata"]["namespace"] == "modelops-system" and mlflow["spec"]["ports"][0]["port"] == 5000


def test_kustomize_and_chart_install_the_same_operator() -> None:
    """The two installers are written separately; their operator containers must agree."""
    k_objs = kustomize(MANIFESTS / "default")
    h_objs = render()
    k_op = container(k_objs, "Deployment", "modelops-operator", "operator")
    h_op = container(h_objs, "Deployment", "modelops", "operator")
    for key in ("image", "ports", "startupProbe", "livenessProbe", "readinessProbe", "securityContext", "volumeMounts"):
        assert k_op[key] == h_op[key], key
    assert k_op["resources"] == h_op["resources"]
    h_env = {e["name"]: e["value"] for e in h_op["env"]}
    assert _operator_env(k_objs) == h_env
    k_pod = dict(pod_specs(k_objs))["Deployment/modelops-operator"]
    h_pod = dict(pod_specs(h_objs))["Deployment/modelops"]
    assert k_pod["securityContext"] == h_pod["securityContext"]
    k_ml = container(k_objs, "Deployment", "modelops-mlflow", "mlflow")
    h_ml = container(h_objs, "Deployment", "modelops-mlflow", "mlflow")
    for key in ("image", "command", "ports", "securityContext", "volumeMounts", "resources"):
        assert k_ml[key] == h_ml[key], key
    assert {e["name"]: e.get("value") for e in k_ml["env"]} == {e["name"]: e.get("value") for e in h_ml["env"]}


def test_kustomize_pods_are_restricted() -> None:
    objs = kustomize(MANIFESTS / "default")
    specs = dict(pod_specs(objs))
    assert set(specs) == {"Deployment/modelops-operator", "Deployment/modelops-mlflow"}
    for where, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not c["image"].endswith(":latest") and ":" in c["image"], where


def test_gitops_models_are_the_samples_model() -> None:
    models = {o["metadata"]["name"]: o for o in kustomize(MANIFESTS / "gitops" / "models")}
    stages = {name: o["spec"].get("stage") for name, o in models.items() if o["kind"] == "ModelVersion"}
    assert stages == {"breast-cancer-1-0-0": "Production", "breast-cancer-1-1-0": "Staging"}
    assert find(list(models.values()), "ModelMonitor")[0]["spec"]["stage"] == "Production"
