"""The monitoring report of the original system document, built from a ModelMonitor's status.

``generate_monitoring_report`` in the document returns ``model_name``, ``model_version``,
``health`` (status, issues), ``performance`` (average, trend) and ``prediction_stats``
(total predictions, average and p95 latency); the average is given here as the median
(``p50_prediction_time_ms``), which is what the drift job records. Here every number comes from the CR status the
operator wrote from the drift jobs' MLflow runs: nothing is recomputed.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from .api.modelmonitor import ModelMonitorStatus


def monitoring_report(body: dict[str, Any]) -> dict[str, Any]:
    """The report (a JSON-ready dict) for one ModelMonitor object (``spec`` + ``status``)."""
    spec = body.get("spec") or {}
    status = ModelMonitorStatus.model_validate(body.get("status") or {})
    health = status.health
    accuracies = [r.accuracy for r in status.history if r.accuracy is not None]
    latencies = [r.latency_p95_ms for r in status.history if r.latency_p95_ms is not None]
    drift = status.drift
    return {
        "model_name": spec.get("model"),
        "stage": spec.get("stage"),
        "model_version": status.model_version,
        "health": {"status": health.status if health else "unknown", "issues": health.issues if health else []},
        "performance": {
            "average": {"accuracy": fmean(accuracies)} if accuracies else {},
            "trend": {"accuracy": {"direction": health.trend if health else "unknown"}},
        },
        "prediction_stats": {
            "total_predictions": health.predictions if health else None,
            # The drift job records percentiles, not the mean: the median is reported as such.
            "p50_prediction_time_ms": health.latency_p50_ms if health else None,
            "p95_prediction_time_ms": health.latency_p95_ms if health else None,
            "error_rate": health.error_rate if health else None,
            "p95_prediction_time_ms_average": fmean(latencies) if latencies else None,
        },
        "drift": {
            "detected": drift.detected if drift else None,
            "share": drift.share if drift else None,
            "drifted_columns": drift.drifted_columns if drift else [],
            "report_uri": drift.report_uri if drift else None,
        },
        "last_run": status.last_run.model_dump(mode="json", exclude_none=True) if status.last_run else None,
        "runs": len(status.history),
    }
