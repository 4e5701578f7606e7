"""The Helm chart renders, lints, validates against Kubernetes schemas and is secure by default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from modelops.builders import common as builders
from modelops.builders.common import COMPONENT_SERVING, standard_labels
from modelops.builders.serving import COMPONENT_CANDIDATE
from modelops.contract import SERVING_PORT, SERVING_PORT_NAME
from modelops.settings import DEFAULT_RUNTIME_IMAGE, Settings
from tests.install.helpers import (
    ALL_FEATURES,
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    ROOT,
    container,
    find,
    is_custom,
    one,
    pod_specs,
    render,
    render_files,
)

CASES = {"default": None, "all-features": ALL_FEATURES}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(CASES[request.param])


def test_chart_metadata_matches_the_package() -> None:
    import modelops

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == modelops.__version__
    assert DEFAULT_RUNTIME_IMAGE == f"modelops-runtime:{chart['appVersion']}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_strict(name: str) -> None:
    report = helm.lint(CHART, CASES[name], strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_rendered_objects_validate_strictly(case: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = case
    assert objs
    for obj in objs:
        if is_custom(obj):
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_custom_kinds_are_well_formed() -> None:
    objs = render(ALL_FEATURES)
    custom = [o for o in objs if is_custom(o)]
    assert {o["kind"] for o in custom} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    for obj in custom:
        assert obj["metadata"]["name"] and set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
    service = one(objs, "Service", "modelops-metrics")
    monitor = one(objs, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    for group in one(objs, "PrometheusRule")["spec"]["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["labels"]["team"] == "ml"
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert rule["expr"].count("(") == rule["expr"].count(")")


def test_pod_monitor_selects_the_serving_pods_the_operator_builds() -> None:
    monitor = one(render(ALL_FEATURES), "PodMonitor")["spec"]
    labels = builders.standard_labels(component=builders.COMPONENT_SERVING, instance="m-production", model="m")
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in monitor["podMetricsEndpoints"]] == [SERVING_PORT_NAME]
    assert set(monitor["podTargetLabels"]) <= set(labels) | {builders.LABEL_STAGE}
    assert monitor["namespaceSelector"] == {"matchNames": ALL_FEATURES["watchNamespaces"]}
    assert one(render({"metrics": {"podMonitor": {"enabled": True}}}), "PodMonitor")["spec"]["namespaceSelector"] == {
        "any": True
    }


def test_every_pod_is_restricted(case: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = case
    specs = list(pod_specs(objs))
    assert len(specs) == 2  # the operator and the embedded MLflow
    for where, spec in specs:
        pod_sc = spec.get("securityContext") or {}
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser", 0) != 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") is not True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert (sc.get("seccompProfile") or pod_sc["seccompProfile"])["type"] == "RuntimeDefault", where
            assert c["resources"].get("requests") and c["resources"].get("limits", {}).get("memory"), where
            tag = c["image"].rsplit(":", 1)
            assert len(tag) == 2 and tag[1] not in ("", "latest"), f"{where}: {c['image']}"
            assert c.get("livenessProbe") and c.get("readinessProbe"), where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_operator_deployment_probes_env_and_settings() -> None:
    objs = render()
    op = container(objs, "Deployment", "modelops", "operator")
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    settings = Settings()
    assert ports == {"metrics": settings.metrics_port, "health": settings.health_port}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert op[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e.get("value") for e in op["env"]}
    fields = {f"MODELOPS_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("MODELOPS_")} - fields
    assert not unknown, f"env vars that are no setting: {unknown}"
    # the chart's defaults are the operator's defaults, except the MLflow URI (the embedded server)
    parsed = Settings.model_validate({k.removeprefix("MODELOPS_").lower(): v for k, v in env.items() if v is not None})
    for field in Settings.model_fields:
        if field != "mlflow_tracking_uri":
            assert getattr(parsed, field) == getattr(settings, field), field
    mlflow = one(objs, "Service", "modelops-mlflow")
    assert env["MODELOPS_MLFLOW_TRACKING_URI"] == (
        f"http://modelops-mlflow.{NAMESPACE}.svc.cluster.local:{mlflow['spec']['ports'][0]['port']}"
    )
    assert "args" not in op, "no kopf peering: replicas elect a leader through a Lease"
    assert "MODELOPS_LEASE_NAMESPACE" not in env  # the pod's own namespace (where the Role grants it)


def test_all_features_map_values_to_settings() -> None:
    objs = render(ALL_FEATURES)
    op = container(objs, "Deployment", "modelops", "operator")
    env = {e["name"]: e.get("value") for e in op["env"]}
    assert "args" not in op
    assert one(objs, "PodDisruptionBudget", "modelops")["spec"]["minAvailable"] == 1  # replicas > 1
    assert env["MODELOPS_NAMESPACES"] == "ml-a,ml-b"
    assert Settings(namespaces=env["MODELOPS_NAMESPACES"]).namespaces == ["ml-a", "ml-b"]
    assert env["MODELOPS_MLFLOW_CREDENTIALS_SECRET"] == "mlflow-credentials"
    assert env["MODELOPS_PREDICTION_LOG_VOLUME_CLAIM"] == "modelops-prediction-log"
    claims = find(objs, "PersistentVolumeClaim", "modelops-prediction-log")
    assert sorted(c["metadata"]["namespace"] for c in claims) == ["ml-a", "ml-b"]
    assert claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert env["MODELOPS_FINALIZER"] == "ml.smarthr360.io/finalizer"
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "strategy" not in one(objs, "Deployment", "modelops")["spec"]


def test_external_mlflow_needs_a_uri() -> None:
    with pytest.raises(helm.HelmError, match="mlflowTrackingUri"):
        render({"mlflow": {"enabled": False}})
    objs = render({"mlflow": {"enabled": False}, "config": {"mlflowTrackingUri": "https://mlflow.example.com"}})
    assert not find(objs, "Deployment", "modelops-mlflow")
    env = {e["name"]: e.get("value") for e in container(objs, "Deployment", "modelops", "operator")["env"]}
    assert env["MODELOPS_MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"


def test_embedded_mlflow_defaults_to_sqlite_on_a_volume() -> None:
    objs = render()
    pvc = one(objs, "PersistentVolumeClaim", "modelops-mlflow")
    mlflow = one(objs, "Deployment", "modelops-mlflow")["spec"]
    pod = mlflow["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["command"] == ["mlflow", "server"]
    assert env["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////mlflow/mlflow.db"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("/mlflow/")
    assert {"name": "data", "mountPath": "/mlflow"} in c["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}} in pod["volumes"]
    assert mlflow["strategy"] == {"type": "Recreate"} and mlflow["replicas"] == 1
    assert c["image"] == DEFAULT_RUNTIME_IMAGE, "the runtime image ships the mlflow CLI"
    hosts = next(a for a in c["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert f"modelops-mlflow.{NAMESPACE}.svc.cluster.local:*" in hosts and "localhost:*" in hosts
    assert pod["automountServiceAccountToken"] is False


def test_external_mlflow_stores_come_from_secrets() -> None:
    c = container(render(ALL_FEATURES), "Deployment", "modelops-mlflow", "mlflow")
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-db"
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"] == "s3://models/mlflow"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.minio:9000"
    assert not any("value" in e and "postgres" in str(e["value"]) for e in env.values())


def test_network_policies_reference_real_ports_and_pods() -> None:
    objs = render(ALL_FEATURES)
    policies = find(objs, "NetworkPolicy")
    assert len(policies) == 2
    workloads = {d["metadata"]["name"]: d["spec"]["template"] for d in find(objs, "Deployment")}
    for policy in policies:
        selected = [
            t
            for t in workloads.values()
            if policy["spec"]["podSelector"]["matchLabels"].items() <= t["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, policy["metadata"]["name"]
        named = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                assert isinstance(port["port"], int) or port["port"] in named
    operator = one(objs, "NetworkPolicy", "modelops")["spec"]
    assert {"ipBlock": {"cidr": "10.96.0.1/32"}} in operator["egress"][1]["to"]
    # The rollout analysis scrapes serving pods (stage and candidate) at their serving port.
    scrape = operator["egress"][2]
    assert scrape["ports"] == [{"port": SERVING_PORT, "protocol": "TCP"}]
    expressions = {e["key"]: e["values"] for e in scrape["to"][0]["podSelector"]["matchExpressions"]}
    for component in (COMPONENT_SERVING, COMPONENT_CANDIDATE):
        pod_labels = standard_labels(component=component, instance="x", model="m", stage="Production")
        assert all(pod_labels[key] in values for key, values in expressions.items())


def test_values_schema_rejects_mistakes() -> None:
    bad: list[dict[str, Any]] = [
        {"operatr": {}},
        {"operator": {"replicas": 0}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"config": {"promotionHistoryLimit": 50}},
        {"config": {"servedStages": ["Prod"]}},
        {"prometheusRule": {"thresholds": {"errorRate": 2}}},
        {"mlflow": {"persistence": {"accessModes": ["ReadWriteSometimes"]}}},
    ]
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(None)
        chart.validate_schema(ALL_FEATURES)
        for values in bad:
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(values)


def test_every_value_is_documented_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, sch: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in sch:
            return
        for key, value in node.items():
            assert key in sch["properties"], f"{path}{key} missing from values.schema.json"
            walk(value, sch["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


def test_chart_crds_are_the_generated_crds() -> None:
    generated = sorted((ROOT / "crds").glob("*.yaml"))
    assert generated
    for path in generated:
        copy = CHART / "crds" / path.name
        assert copy.read_text() == path.read_text(), f"{copy} differs: run `make generate`"
    with helm.Chart.load(CHART) as chart:
        names = {c["filename"].rsplit("/", 1)[-1] for c in chart.crds}
    assert names == {p.name for p in generated}


def test_notes_tell_what_to_do_next() -> None:
    notes = render_files()["modelops/templates/NOTES.txt"]
    assert "kubectl wait --for=condition=Ready mv/" in notes
    assert "port-forward svc/modelops-mlflow" in notes
    notes = render_files(ALL_FEATURES)["modelops/templates/NOTES.txt"]
    assert "metric-labels-allowlist" in notes and "ml-a, ml-b" in notes


def test_values_reference_in_docs_lists_every_leaf() -> None:
    doc = (ROOT / "docs" / "install.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, path: str) -> list[str]:
        if isinstance(node, dict) and node and not path.endswith(("resources", "SecurityContext", "securityContext")):
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
        return [path]

    missing = [leaf for leaf in leaves(values, "") if f"`{leaf}`" not in doc]
    assert not missing, f"docs/install.md lacks values: {missing}"


def test_chart_files_exist() -> None:
    for rel in ("templates/NOTES.txt", "templates/_helpers.tpl", "values.schema.json", "files/grafana-dashboard.json"):
        assert Path(CHART / rel).is_file(), rel


def _patterns(schema: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield path, schema["pattern"]
        for key, value in schema.items():
            yield from _patterns(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _patterns(value, f"{path}/{i}")


def _fully_anchored(pattern: str) -> bool:
    """``^…$`` around the whole pattern, with no ``|`` outside parentheses (``^a|b$`` is not)."""
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        return False
    depth, escaped = 0, False
    for char in pattern[1:-1]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
    return True


def test_every_values_schema_pattern_is_anchored() -> None:
    """JSON Schema patterns match anywhere unless anchored: "Bad Secret!x" passed "[a-z0-9]…$"."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = [f"{path}: {pattern}" for path, pattern in _patterns(schema) if not _fully_anchored(pattern)]
    assert not loose, loose
    assert not _fully_anchored("^$|[a-z]$") and _fully_anchored("^(|[a-z])$")
    good = [
        {"config": {"mlflowCredentialsSecret": ""}},
        {"config": {"mlflowCredentialsSecret": "mlflow-credentials"}},
        {"config": {"mlflowCredentialsSecret": "team.mlflow-credentials"}},
        {"config": {"mlflowTrackingUri": "https://mlflow.example.com:5000"}},
        {"config": {"mlflowTrackingUri": "databricks://profile"}},
    ]
    bad = [
        {"config": {"mlflowCredentialsSecret": "Bad Secret!x"}},
        {"config": {"mlflowCredentialsSecret": "-secret"}},
        {"config": {"mlflowTrackingUri": "http://mlflow example"}},
        {"config": {"mlflowTrackingUri": "see http://mlflow"}},
    ]
    with helm.Chart.load(CHART) as chart:
        for values in good:
            chart.validate_schema(values)
        for values in bad:
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(values)
