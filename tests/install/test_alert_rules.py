"""Every shipped alert, unit-tested with promtool against series our own exporters produce.

The chart's PrometheusRule (every feature on) is checked with ``promtool check rules`` and run by
``promtool test rules``. The operator's and the model server's series are not written by hand:
each test step scrapes the real ``OperatorMetrics`` / ``ServerMetrics`` registries after driving
them (a monitor seen, drift detected, requests served or refused), so every series starts where
Prometheus first sees it. A counter that appeared at its first increment would start at 1 and
show no increase: the drift alert would never fire on a first detection (the control case below
is such a series). kube-state-metrics and ``up`` series are written by hand with the labels our
builders put on the children.

Annotations are compared exactly for ``summary`` (label templates only); ``description`` texts
print ``$value`` and are left out of the copy promtool tests (``check rules`` still parses them).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelops.builders import common as builders
from modelops.telemetry import OperatorMetrics
from tests.install.helpers import ALL_FEATURES, NAMESPACE, RELEASE, one, render
from tests.install.promtool import promtool

#: Seconds between two scrapes (and rule evaluations) in every test group.
STEP = 15
#: Labels Prometheus adds to the operator's series (ServiceMonitor with honorLabels: its namespace
#: label yields to the series' own) and to a serving pod's (PodMonitor, the pod's namespace).
OPERATOR_TARGET = {"job": f"{RELEASE}-metrics", "namespace": NAMESPACE, "pod": "modelops-7d9f-a", "endpoint": "metrics"}
EXTRA_ALERT_LABELS = ALL_FEATURES["prometheusRule"]["additionalAlertLabels"]


class Timeline:
    """Series scraped step by step from exporters, as promtool ``input_series``."""

    def __init__(self) -> None:
        self.series: dict[str, list[str]] = {}
        self.steps = 0

    def scrape(self, *targets: tuple[CollectorRegistry, Mapping[str, str], bool]) -> None:
        """One scrape of each ``(registry, target labels, honor_labels)``; only ml_*/modelops_* series."""
        for registry, target, honor in targets:
            text = generate_latest(registry).decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if not sample.name.startswith(("ml_", "modelops_")) or sample.name.endswith("_created"):
                        continue
                    labels = {**target, **sample.labels} if honor else {**sample.labels, **target}
                    key = sample.name + "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"
                    self.series.setdefault(key, ["_"] * self.steps).append(repr(float(sample.value)))
        self.steps += 1
        for values in self.series.values():  # a series missing from a scrape has no sample there
            values.extend(["_"] * (self.steps - len(values)))

    def run(
        self, steps: int, before_each: Callable[[int], Any], *targets: tuple[CollectorRegistry, Mapping[str, str], bool]
    ) -> None:
        """``steps`` scrapes, calling ``before_each(step)`` before each."""
        for _ in range(steps):
            before_each(self.steps)
            self.scrape(*targets)

    def input_series(self) -> list[dict[str, str]]:
        return [{"series": k, "values": " ".join(v)} for k, v in sorted(self.series.items())]


def _alert(labels: Mapping[str, str], summary: str, severity: str = "warning") -> dict[str, Any]:
    return {
        "exp_labels": {**labels, "severity": severity, **EXTRA_ALERT_LABELS},
        "exp_annotations": {"summary": summary},
    }


def _pod(namespace: str, model: str, stage: str = "Production") -> dict[str, str]:
    """Target labels of a serving pod scraped through the chart's PodMonitor."""
    name = builders.serving_name(model, stage)
    return {
        "namespace": namespace,
        "pod": f"{name}-5c7d-x",
        "container": "model",
        "job": f"{namespace}/{RELEASE}-serving",
        "ml_smarthr360_io_model": model,
        "ml_smarthr360_io_stage": stage,
    }


def drift_group() -> tuple[dict[str, Any], set[str]]:
    """A first detection fires, also when it is the first thing a restarted operator does; a
    same-named model in another namespace stays quiet; a series born at 1 would not fire."""
    tl = Timeline()
    before = OperatorMetrics(CollectorRegistry())
    before.monitor_known("team-a", "iris")  # the ModelMonitors are reconciled when created
    before.monitor_known("team-b", "iris")

    def first_life(step: int) -> None:
        if step == 4:
            before.drift_detected("team-a", "iris")

    tl.run(8, first_life, (before.registry, OPERATOR_TARGET, True))
    # The operator restarts (new pod); its resume reconcile folds a drifting run of team-b at once.
    after = OperatorMetrics(CollectorRegistry())
    after.monitor_known("team-b", "iris")
    after.drift_detected("team-b", "iris")
    tl.run(8, lambda step: None, (after.registry, {**OPERATOR_TARGET, "pod": "modelops-7d9f-b"}, True))
    series = tl.input_series()
    series.append(  # control: what a counter created by its first increment shows
        {
            "series": 'ml_drift_detections_total{drift_type="data", model_name="born-at-one", namespace="team-c"}',
            "values": " ".join(["_"] * 10 + ["1"] * 6),
        }
    )
    summary = "Data drift detected for model {}/iris"
    alert = "ModelDriftDetected"
    labels = {"model_name": "iris", "drift_type": "data"}
    group = {
        "name": "drift counted from 0: first detection, restart, namespaces apart",
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [
            {"alertname": alert, "eval_time": f"{3 * STEP}s", "exp_alerts": []},
            {
                "alertname": alert,
                "eval_time": f"{6 * STEP}s",
                "exp_alerts": [_alert({**labels, "namespace": "team-a"}, summary.format("team-a"))],
            },
            {
                "alertname": alert,
                "eval_time": f"{15 * STEP}s",
                "exp_alerts": [_alert({**labels, "namespace": ns}, summary.format(ns)) for ns in ("team-a", "team-b")],
            },
        ],
    }
    return group, {alert}


def serving_group() -> tuple[dict[str, Any], set[str]]:
    """Two models named iris in two namespaces: server faults in team-a page (ModelUnhealthy),
    client errors in team-b only warn (ModelHighErrorRate); slow answers in team-c warn."""
    from modelops_runtime.serve.metrics import ServerMetrics

    tl = Timeline()
    pods = {ns: ServerMetrics("iris", "1.0.0") for ns in ("team-a", "team-b", "team-c")}
    for metrics in pods.values():
        metrics.set_classes([0, 1])
    ok = np.zeros(1, dtype=int)  # one request predicting class 0

    def traffic(step: int) -> None:
        for ns, metrics in pods.items():
            for _ in range(20):
                metrics.observe(ok, 1.0 if ns == "team-c" else 0.01, classifier=True)
            if step >= 4 and ns != "team-c":
                for _ in range(20):
                    metrics.error("internal" if ns == "team-a" else "malformed_request")

    tl.run(80, traffic, *((m.registry, _pod(ns, "iris"), False) for ns, m in pods.items()))
    iris = {"model_name": "iris"}
    group = {
        "name": "server faults page, client errors warn, per namespace",
        "interval": f"{STEP}s",
        "input_series": tl.input_series(),
        "alert_rule_test": [
            {"alertname": "ModelUnhealthy", "eval_time": f"{4 * STEP + 240}s", "exp_alerts": []},
            {
                "alertname": "ModelUnhealthy",
                "eval_time": f"{4 * STEP + 660}s",
                "exp_alerts": [_alert({**iris, "namespace": "team-a"}, "Model team-a/iris is unhealthy", "critical")],
            },
            {
                "alertname": "ModelHighErrorRate",
                "eval_time": f"{4 * STEP + 960}s",
                "exp_alerts": [
                    _alert({**iris, "namespace": ns}, f"High prediction error rate for iris in {ns}")
                    for ns in ("team-a", "team-b")
                ],
            },
            {
                "alertname": "ModelHighLatencyP95",
                "eval_time": f"{79 * STEP}s",
                "exp_alerts": [
                    _alert(
                        {**iris, "namespace": "team-c", "model_version": "1.0.0"},
                        "High p95 latency for team-c/iris 1.0.0",
                    )
                ],
            },
        ],
    }
    return group, {"ModelUnhealthy", "ModelHighErrorRate", "ModelHighLatencyP95"}


def accuracy_group() -> tuple[dict[str, Any], set[str]]:
    """Accuracy below the bound pages for its namespace only (same model name elsewhere is fine)."""
    tl = Timeline()
    metrics = OperatorMetrics(CollectorRegistry())

    def monitor_runs(step: int) -> None:
        metrics.accuracy.labels("team-a", "iris", "1.0.0").set(0.7)
        metrics.accuracy.labels("team-b", "iris", "1.0.0").set(0.95)

    tl.run(30, monitor_runs, (metrics.registry, OPERATOR_TARGET, True))
    labels = {"namespace": "team-a", "model_name": "iris", "model_version": "1.0.0"}
    group = {
        "name": "accuracy per namespace",
        "interval": f"{STEP}s",
        "input_series": tl.input_series(),
        "alert_rule_test": [
            {
                "alertname": "ModelUnhealthy",
                "eval_time": f"{25 * STEP}s",
                "exp_alerts": [_alert(labels, "Model team-a/iris is unhealthy", "critical")],
            }
        ],
    }
    return group, {"ModelUnhealthy"}


def operator_group() -> tuple[dict[str, Any], set[str]]:
    """Reconcile errors that persist, and an operator that is not scraped any more."""
    tl = Timeline()
    metrics = OperatorMetrics(CollectorRegistry())

    def outage(step: int) -> None:
        if step >= 2:
            metrics.reconcile_error("ModelVersion", "RegistryUnavailable")

    tl.run(90, outage, (metrics.registry, OPERATOR_TARGET, True))
    series = tl.input_series()
    series.append({"series": f'up{{job="{RELEASE}-metrics", namespace="{NAMESPACE}"}}', "values": "1x20 0x69"})
    group = {
        "name": "operator",
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [
            {
                "alertname": "ModelOpsReconcileErrors",
                "eval_time": f"{2 * STEP + 600}s",
                "exp_alerts": [],
            },
            {
                "alertname": "ModelOpsReconcileErrors",
                "eval_time": f"{2 * STEP + 1020}s",
                "exp_alerts": [
                    _alert(
                        {"kind": "ModelVersion", "reason": "RegistryUnavailable"},
                        "modelops reconciles of ModelVersion keep failing (RegistryUnavailable)",
                    )
                ],
            },
            {"alertname": "ModelOpsOperatorDown", "eval_time": f"{21 * STEP + 540}s", "exp_alerts": []},
            {
                "alertname": "ModelOpsOperatorDown",
                "eval_time": f"{21 * STEP + 660}s",
                "exp_alerts": [
                    _alert(
                        {"job": f"{RELEASE}-metrics", "namespace": NAMESPACE},
                        "modelops operator is down",
                        "critical",
                    )
                ],
            },
        ],
    }
    return group, {"ModelOpsReconcileErrors", "ModelOpsOperatorDown"}


def _ksm_labels(component: str, name: str, **extra: str) -> str:
    """kube-state-metrics ``label_*`` labels of a child our builders made (the chart's allowlist)."""
    std = builders.standard_labels(
        component=component, instance=name, model="iris", stage="Production", version="1.0.0"
    )
    keep = (
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/component",
        "ml.smarthr360.io/model",
        "ml.smarthr360.io/stage",
    )
    labels = {"label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in std.items() if k in keep}
    if component == builders.COMPONENT_TRAINING:
        labels.pop("label_ml_smarthr360_io_stage", None)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted({**labels, **extra}.items()))


def kube_state_group() -> tuple[dict[str, Any], set[str]]:
    """A serving Deployment short of replicas for 15 minutes, and a failed training Job."""
    deploy = builders.serving_name("iris", "Production")
    job = "iris-1-0-0-v1-0-0"
    ref = f'namespace="team-a", deployment="{deploy}"'
    series = [
        {"series": f"kube_deployment_spec_replicas{{{ref}}}", "values": "2x80"},
        {"series": f"kube_deployment_status_replicas_available{{{ref}}}", "values": "2x10 1x70"},
        {"series": f"kube_deployment_labels{{{ref}, {_ksm_labels('serving', deploy)}}}", "values": "1x80"},
        {"series": f'kube_job_failed{{namespace="team-a", job_name="{job}", condition="true"}}', "values": "0x10 1x70"},
        {
            "series": f'kube_job_labels{{namespace="team-a", job_name="{job}", {_ksm_labels("training", job)}}}',
            "values": "1x80",
        },
    ]
    serving = {
        "namespace": "team-a",
        "deployment": deploy,
        "label_ml_smarthr360_io_model": "iris",
        "label_ml_smarthr360_io_stage": "Production",
    }
    group = {
        "name": "kube-state-metrics",
        "interval": f"{STEP}s",
        "input_series": series,
        "alert_rule_test": [
            {"alertname": "ModelServingNotReady", "eval_time": f"{10 * STEP + 840}s", "exp_alerts": []},
            {
                "alertname": "ModelServingNotReady",
                "eval_time": f"{10 * STEP + 960}s",
                "exp_alerts": [_alert(serving, f"Serving Deployment team-a/{deploy} is not ready")],
            },
            {
                "alertname": "ModelTrainingFailed",
                "eval_time": f"{11 * STEP}s",
                "exp_alerts": [
                    _alert(
                        {
                            "namespace": "team-a",
                            "job_name": job,
                            "condition": "true",
                            "label_ml_smarthr360_io_model": "iris",
                        },
                        f"Training Job team-a/{job} failed",
                    )
                ],
            },
        ],
    }
    return group, {"ModelServingNotReady", "ModelTrainingFailed"}


def _rule_groups() -> list[dict[str, Any]]:
    return one(render(ALL_FEATURES), "PrometheusRule")["spec"]["groups"]


def test_every_shipped_alert_fires_from_the_series_our_exporters_produce(tmp_path: Path) -> None:
    tool = promtool()
    groups = _rule_groups()
    full = tmp_path / "rules.yaml"
    full.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    checked = subprocess.run([str(tool), "check", "rules", str(full)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    for group in groups:
        for rule in group["rules"]:
            rule["annotations"].pop("description", None)
    tested = tmp_path / "rules-under-test.yaml"
    tested.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    test_groups, covered = [], set()
    for build in (drift_group, serving_group, accuracy_group, operator_group, kube_state_group):
        group, alerts = build()
        test_groups.append(group)
        covered |= alerts
    shipped = {r["alert"] for g in groups for r in g["rules"]}
    assert covered == shipped, f"alerts without a promtool test: {sorted(shipped - covered)}"
    spec = tmp_path / "alerts-test.yaml"
    spec.write_text(
        yaml.safe_dump({"rule_files": [tested.name], "evaluation_interval": f"{STEP}s", "tests": test_groups})
    )
    result = subprocess.run(
        [str(tool), "test", "rules", spec.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]


def test_the_unhealthy_alert_counts_server_faults_only() -> None:
    """The 5xx error types in ModelUnhealthy's selector are exactly the server's 5xx errors."""
    from modelops_runtime.serve.errors import error_types

    rule = next(r for g in _rule_groups() for r in g["rules"] if r["alert"] == "ModelUnhealthy")
    selectors = re.findall(r'error_type=~"([^"]*)"', rule["expr"])
    assert len(selectors) == 1
    assert set(selectors[0].split("|")) == {t for t, status in error_types().items() if status >= 500}
