"""Rendering and inspection helpers for the install tests (Helm via helm-python-sdk, kustomize via kubectl)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

CHART = ROOT / "helm" / "modelops"
RELEASE = "modelops"
NAMESPACE = "modelops-system"
KUBE_VERSION = "1.37.0"
KUBECTL = Path(sys.executable).with_name("kubectl")

#: Values that turn every optional feature of the chart on.
ALL_FEATURES: dict[str, Any] = {
    "operator": {"replicas": 2, "extraEnv": [{"name": "MODELOPS_FINALIZER", "value": "ml.smarthr360.io/finalizer"}]},
    "watchNamespaces": ["ml-a", "ml-b"],
    "config": {"mlflowCredentialsSecret": "mlflow-credentials"},
    "predictionLog": {"persistence": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True, "additionalAlertLabels": {"team": "ml"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "MLOps"}},
    "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.96.0.1/32"]},
    "imagePullSecrets": [{"name": "registry"}],
    "mlflow": {
        "enabled": True,
        "backendStore": {"existingSecret": "mlflow-db"},
        "artifacts": {
            "destination": "s3://models/mlflow",
            "existingSecret": "mlflow-s3",
            "s3EndpointUrl": "http://minio.minio:9000",
        },
        "allowedHosts": ["mlflow.example.com"],
    },
}

#: Kinds kubernetes-validate has no schema for; the tests check them structurally.
CUSTOM_KINDS = {
    "monitoring.coreos.com/v1": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
}

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def is_custom(obj: dict[str, Any]) -> bool:
    """Whether kubernetes-validate cannot know this object's kind."""
    return obj.get("kind") in CUSTOM_KINDS.get(obj.get("apiVersion", ""), set())


@functools.lru_cache(maxsize=32)
def _render(values_json: str) -> tuple[tuple[str, str], ...]:
    import helm_python as helm

    values = json.loads(values_json)
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values=values or None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return tuple(sorted(out.items()))


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """``{template path: rendered text}`` of the chart, NOTES.txt included."""
    return dict(_render(json.dumps(values or {}, sort_keys=True)))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders (templates only; CRDs come from crds/)."""
    objs: list[dict[str, Any]] = []
    for path, text in render_files(values).items():
        if path.endswith(".txt"):
            continue
        objs.extend(d for d in yaml.safe_load_all(text) if d)
    return objs


@functools.lru_cache(maxsize=8)
def _kustomize(path: str) -> str:
    result = subprocess.run([str(KUBECTL), "kustomize", path], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed: {result.stderr}")
    return result.stdout


def kustomize(path: Path) -> list[dict[str, Any]]:
    """Objects ``kubectl kustomize <path>`` renders."""
    return [d for d in yaml.safe_load_all(_kustomize(str(path))) if d]


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of a kind (and name)."""
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of a kind (and name)."""
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(kind/name, pod spec)`` of every object with a pod template."""
    for obj in objs:
        if obj["kind"] in POD_TEMPLATE_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield f"CronJob/{obj['metadata']['name']}", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(objs: list[dict[str, Any]], kind: str, name: str, container_name: str) -> dict[str, Any]:
    """One container of a workload."""
    spec = one(objs, kind, name)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == container_name)


def policy_rules(objs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """All rules of the ClusterRoles (or Roles in ``namespace``) rendered."""
    rules: list[dict[str, Any]] = []
    for obj in find(objs, kind):
        if namespace is None or obj["metadata"].get("namespace") == namespace:
            rules.extend(obj.get("rules") or [])
    return rules


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    """Whether the rules grant ``verb`` on ``group/resource`` (exact names: no wildcard support needed)."""
    return any(
        group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", [])
        for r in rules
    )
