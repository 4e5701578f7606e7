"""The Grafana dashboard and the alert rules query only metrics and labels the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from modelops import contract
from modelops.builders import common as builders
from modelops.telemetry import OperatorMetrics, ZeroFirstCounter
from tests.install.helpers import ALL_FEATURES, CHART, one, render

# Metrics from other exporters the rules rely on, with their labels (kube-state-metrics v2 and
# Prometheus itself). "label_*" stands for the labels kube-state-metrics copies from objects.
EXTERNAL: dict[str, set[str]] = {
    "kube_deployment_spec_replicas": {"namespace", "deployment"},
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    "kube_deployment_labels": {"namespace", "deployment", "label_*"},
    "kube_job_failed": {"namespace", "job_name", "condition", "reason"},
    "kube_job_labels": {"namespace", "job_name", "label_*"},
    "up": {"job", "instance"},
}
# Labels Prometheus adds to every scraped series (ServiceMonitor/PodMonitor targets), plus the
# pod labels the PodMonitor copies (podTargetLabels).
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "service", "endpoint"}
KEYWORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "absent",
    "by", "without", "on", "ignoring", "group_left", "group_right", "or", "and", "unless", "bool",
    "offset", "topk", "bottomk", "clamp_min", "clamp_max", "vector", "scalar", "label_values",
}  # fmt: skip
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _families(obj: object) -> Iterator[MetricWrapperBase]:
    for value in vars(obj).values():
        if isinstance(value, MetricWrapperBase):
            yield value


def exported() -> dict[str, set[str]]:
    """``{series name: label names}`` of every metric the operator and the model server export."""
    from modelops_runtime.serve.metrics import ServerMetrics
    from modelops_runtime.serve.router import Router

    router = Router(
        contract.RouterConfig(mode="shadow", url="http://c", version="2.0.0", registry_version="2"),
        CollectorRegistry(),
        None,
    )
    out: dict[str, set[str]] = {}
    for owner in (OperatorMetrics(CollectorRegistry()), ServerMetrics("m", "1.0.0"), router):
        for family in _families(owner):
            labels = set(family._labelnames)
            for suffix in SUFFIXES[str(family._type)]:
                out[family._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        for counter in (v for v in vars(owner).values() if isinstance(v, ZeroFirstCounter)):
            (described,) = counter.describe()
            out[described.name + "_total"] = set(counter.labelnames)
    return out


EXPORTED = exported()
POD_LABELS = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in builders.standard_labels(
    component=builders.COMPONENT_SERVING, instance="x", model="m", stage="Production", version="1.0.0"
).items()}  # fmt: skip
KNOWN: dict[str, set[str]] = {**EXTERNAL, **EXPORTED}


def test_the_contract_metrics_are_exported() -> None:
    for name in (contract.PROM_PREDICTIONS, contract.PROM_ERRORS, contract.PROM_ACCURACY, contract.PROM_DRIFT):
        assert name in EXPORTED, name
    assert f"{contract.PROM_LATENCY}_bucket" in EXPORTED
    assert EXPORTED[contract.PROM_PREDICTIONS] == {"model_name", "model_version", "prediction_class"}


def _strip(expr: str) -> str:
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    return re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?", " ", s)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (labels, strings, durations and functions removed)."""
    return {t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", _strip(expr)) if t not in KEYWORDS}


def _allowed_labels(names: set[str]) -> set[str]:
    labels = set(TARGET_LABELS) | {f"ml_smarthr360_io_{k}" for k in ("model", "stage")}
    for name in names:
        labels |= KNOWN.get(name, set())
    return labels


def _label_ok(label: str, allowed: set[str]) -> bool:
    if label in allowed:
        return True
    # kube-state-metrics object labels must be labels our builders put on the children
    return label.startswith("label_") and "label_*" in allowed and label.removeprefix("label_") in POD_LABELS


def problems(expr: str, legend: str = "") -> list[str]:
    """Unknown metrics, labels that the selected metrics do not carry, and wrong label values."""
    names = metric_names(expr)
    out = [f"unknown metric {n}" for n in sorted(names - KNOWN.keys())]
    allowed = _allowed_labels(names)
    for metric, matchers in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}", expr):
        for label, value in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', matchers):
            if not _label_ok(label, KNOWN.get(metric, set()) | TARGET_LABELS):
                out.append(f"{metric} has no label {label}")
            key = label.removeprefix("label_")
            if label.startswith("label_") and key in POD_LABELS and key != "app_kubernetes_io_component":
                if value != POD_LABELS[key]:
                    out.append(f"{label}={value!r} but the operator sets {POD_LABELS[key]!r}")
            if key == "app_kubernetes_io_component" and value not in (
                builders.COMPONENT_SERVING,
                builders.COMPONENT_TRAINING,
                builders.COMPONENT_MONITORING,
            ):
                out.append(f"unknown component {value}")
    grouped = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr)
    # Grafana legends ({{label}}) and alert annotations ({{ $labels.label }})
    legends = re.findall(r"\{\{\s*(\w+)\s*\}\}", legend) + re.findall(r"\$labels\.(\w+)", legend)
    for label in [*(x.strip() for g in grouped for x in g.split(",") if x.strip()), *legends]:
        if not _label_ok(label, allowed | {"le"}):
            out.append(f"label {label} is not on {sorted(names)}")
    return out


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(ml_prediction_total[5m]))", "unknown metric ml_prediction_total"),
        ('sum by (model_version) (rate(ml_prediction_errors_total{model_name="x"}[5m]))', "label model_version"),
        ('ml_prediction_errors_total{model_version="1"}', "has no label model_version"),
        ('kube_job_labels{label_app_kubernetes_io_part_of="ml"}', "but the operator sets 'modelops'"),
        ('kube_job_labels{label_team="ml"}', "has no label label_team"),
    ],
)
def test_the_checker_catches_mistakes(expr: str, expected: str) -> None:
    assert any(expected in p for p in problems(expr)), problems(expr)


def _dashboard() -> dict[str, Any]:
    return json.loads((CHART / "files" / "grafana-dashboard.json").read_text())


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_queries_use_exported_metrics() -> None:
    dashboard = _dashboard()
    exprs = 0
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            assert not problems(target["expr"], target.get("legendFormat", "")), (panel["title"], target["expr"])
            exprs += 1
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query).groups()  # type: ignore[union-attr]
            assert not problems(inner), query
            assert label in _allowed_labels(metric_names(inner)), query
    assert exprs >= 10


def test_dashboard_has_the_promised_panels() -> None:
    dashboard = _dashboard()
    text = json.dumps(dashboard)
    titles = " | ".join(p["title"] for p in _panels(dashboard)).lower()
    for word in ("predictions/s by class", "latency p50 / p95 / p99", "error rate", "accuracy", "drift"):
        assert word in titles, word
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in text
    assert "prediction_class" in text and "model_version" in text
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert set(re.findall(r"\$(\w+)", text)) - {"__rate_interval", "__range"} <= variables
    assert {"datasource", "namespace", "model", "version"} <= variables
    assert len({p["id"] for p in _panels(dashboard)}) == len(list(_panels(dashboard)))


def test_dashboard_configmap_carries_the_file() -> None:
    cm = one(render(ALL_FEATURES), "ConfigMap", "modelops-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["modelops-models.json"]) == _dashboard()


def test_alert_rules_use_exported_metrics() -> None:
    rule = one(render(ALL_FEATURES), "PrometheusRule")
    alerts = {}
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            text = r["annotations"]["summary"] + " " + r["annotations"]["description"]
            assert not problems(r["expr"], text), (r["alert"], problems(r["expr"], text))
            alerts[r["alert"]] = r
    assert {
        "ModelDriftDetected",
        "ModelUnhealthy",
        "ModelServingNotReady",
        "ModelTrainingFailed",
        "ModelHighErrorRate",
        "ModelHighLatencyP95",
    } <= set(alerts)
    assert contract.PROM_DRIFT in alerts["ModelDriftDetected"]["expr"]
    unhealthy = alerts["ModelUnhealthy"]["expr"]
    assert contract.PROM_ACCURACY in unhealthy and contract.PROM_ERRORS in unhealthy and "0.95" in unhealthy
    assert "kube_job_failed" in alerts["ModelTrainingFailed"]["expr"]


def test_dashboard_keeps_same_named_models_of_two_namespaces_apart() -> None:
    """The namespace variable selects all namespaces by default: every aggregation over a model's
    series keeps ``namespace`` (else two models named alike are summed, or a ratio of two sums
    matches nothing), and every legend naming a model names its namespace too."""
    for panel in _panels(_dashboard()):
        for target in panel.get("targets", []):
            expr, legend = target["expr"], target.get("legendFormat", "")
            for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
                labels = {label.strip() for label in grouping.split(",")}
                if "model_name" in labels:
                    assert "namespace" in labels, (panel["title"], expr)
            if "{{model_name}}" in legend:
                assert "{{namespace}}" in legend, (panel["title"], legend)
