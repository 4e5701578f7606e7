"""Counters an alert or panel uses exist at 0 before their first event, so Prometheus sees it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelops.contract import PROM_DRIFT
from modelops.telemetry import OperatorMetrics


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape: ``{(sample name, sorted labels): value}``."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _drift(namespace: str, model: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return PROM_DRIFT, (("drift_type", "data"), ("model_name", model), ("namespace", namespace))


def test_a_known_monitor_is_exposed_at_zero_then_counts() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.monitor_known("team-a", "iris")
    assert _scrape(metrics.registry)[_drift("team-a", "iris")] == 0
    metrics.drift_detected("team-a", "iris")
    assert _scrape(metrics.registry)[_drift("team-a", "iris")] == 1


def test_a_first_detection_is_shown_at_zero_by_one_scrape_first() -> None:
    """An operator restarts and folds a drifting run at once: the first scrape still sees 0."""
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.monitor_known("team-a", "iris")
    metrics.drift_detected("team-a", "iris")
    metrics.drift_detected("team-b", "iris")  # never announced: created by the increment
    first = _scrape(metrics.registry)
    assert first[_drift("team-a", "iris")] == 0 and first[_drift("team-b", "iris")] == 0
    second = _scrape(metrics.registry)
    assert second[_drift("team-a", "iris")] == 1 and second[_drift("team-b", "iris")] == 1  # namespaces apart
    assert metrics.drift.value("team-a", "iris", "data") == 1


def test_the_counter_refuses_what_a_counter_cannot_do() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    with pytest.raises(ValueError, match="labels"):
        metrics.drift.inc("iris", "data")
    with pytest.raises(ValueError, match="only go up"):
        metrics.drift.inc("ns", "iris", "data", amount=-1)


def test_reconcile_series_exist_before_the_first_reconcile() -> None:
    scraped = _scrape(OperatorMetrics(CollectorRegistry()).registry)
    for kind in ("ModelVersion", "ModelMonitor"):
        for reason in ("RegistryUnavailable", "KubernetesUnavailable"):
            assert scraped[("modelops_reconcile_errors_total", (("kind", kind), ("reason", reason)))] == 0
        assert scraped[("modelops_reconcile_total", (("kind", kind), ("result", "error")))] == 0


def test_every_prediction_error_type_exists_at_zero_from_the_start() -> None:
    from modelops_runtime.serve.errors import error_types
    from modelops_runtime.serve.metrics import ServerMetrics

    metrics = ServerMetrics("iris", "1.0.0")
    metrics.set_classes(None)  # a regressor: its one unlabelled prediction counter
    scraped = _scrape(metrics.registry)
    assert {"internal", "not_ready", "malformed_request"} <= set(error_types())
    for error_type in error_types():
        key = ("ml_prediction_errors_total", (("error_type", error_type), ("model_name", "iris")))
        assert scraped[key] == 0, error_type
    labels = (("model_name", "iris"), ("model_version", "1.0.0"), ("prediction_class", ""))
    assert scraped[("ml_predictions_total", labels)] == 0


def test_a_stages_first_rollout_decision_is_shown_at_zero_first() -> None:
    """The dashboard's decisions panel reads increase(): a stage's first decision, and every other
    action of that stage, appear at 0 before they count (an Abort after a Wait included)."""
    from modelops.api.modelversion import RolloutStatus

    metrics = OperatorMetrics(CollectorRegistry())
    state = RolloutStatus.model_validate({"phase": "Shadow", "stage": "Production", "specHash": "h"})

    def decisions(scraped: dict, action: str) -> float:
        labels = (("action", action), ("model_name", "iris"), ("namespace", "team-a"), ("stage", "Production"))
        return scraped[("modelops_rollout_decisions_total", labels)]

    metrics.rollout_decided("team-a", "iris", "Production", "Wait", state)
    first = _scrape(metrics.registry)
    assert decisions(first, "Wait") == 0 and decisions(first, "Abort") == 0
    metrics.rollout_decided("team-a", "iris", "Production", "Abort", state)
    second = _scrape(metrics.registry)
    assert decisions(second, "Wait") == 1 and decisions(second, "Abort") == 1


def test_a_windows_drift_check_is_exported_per_side() -> None:
    from modelops.api.modelversion import RolloutStatus

    metrics = OperatorMetrics(CollectorRegistry())
    state = RolloutStatus.model_validate(
        {
            "phase": "Aborted",
            "stage": "Production",
            "specHash": "h",
            "drift": {"state": "Completed", "candidateShare": 0.75, "incumbentShare": 0.0},
        }
    )
    metrics.rollout_decided("team-a", "iris", "Production", "Abort", state)
    scraped = _scrape(metrics.registry)
    for side, share in (("candidate", 0.75), ("incumbent", 0.0)):
        labels = (
            ("model_name", "iris"),
            ("namespace", "team-a"),
            ("quantity", "drift_share"),
            ("side", side),
            ("stage", "Production"),
        )
        assert scraped[("modelops_rollout_window", labels)] == share
