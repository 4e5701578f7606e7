"""The monitoring report of the original system document, built from a ModelMonitor's status.

``generate_monitoring_report`` in the document returns ``model_name``, ``model_version``,
``health`` (status, issues), ``performance`` (average, trend) and ``prediction_stats``
(total predictions, average and p95 latency); the average is given here as the median
(``p50_prediction_time_ms``), which is what the drift job records. Here every number comes from the CR status the
operator wrote from the drift jobs' MLflow runs: nothing is recomputed.

Beyond the document: ``ready`` (the monitor's ``Ready`` condition: status, reason, message, so a
monitor that does not work says why) and ``computed_for`` (the version the newest run measured:
health and drift belong to it, which after a promotion is not the version serving now).
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from .api.common import get_condition
from .api.modelmonitor import ModelMonitorStatus


def monitoring_report(body: dict[str, Any]) -> dict[str, Any]:
    """The report (a JSON-ready dict) for one ModelMonitor object (``spec`` + ``status``)."""
    spec = body.get("spec") or {}
    status = ModelMonitorStatus.model_validate(body.get("status") or {})
    health = status.health
    accuracies = [r.accuracy for r in status.history if r.accuracy is not None]
    latencies = [r.latency_p95_ms for r in status.history if r.latency_p95_ms is not None]
    drift = status.drift
    ready = get_condition(status.conditions, "Ready")
    last = status.last_run
    return {
        "model_name": spec.get("model"),
        "stage": spec.get("stage"),
        "model_version": status.model_version,
        "ready": (
            {"status": ready.status, "reason": ready.reason, "message": ready.message}
            if ready is not None
            else {"status": "Unknown", "reason": "NoStatus", "message": "the operator has not reported on it yet"}
        ),
        "computed_for": (
            {
                "model_version": last.model_version,
                "run_time": last.time.isoformat().replace("+00:00", "Z"),
                "current": last.model_version == status.model_version,
            }
            if last is not None
            else None
        ),
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


def report_table(report: dict[str, Any]) -> list[str]:
    """The report as aligned ``key  value`` lines (``modelops status``'s table); ``-`` where unknown."""
    stats, health, drift, ready = report["prediction_stats"], report["health"], report["drift"], report["ready"]

    def num(value: object, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    computed, serving = report["computed_for"], report["model_version"] or "-"
    measured = "-"
    if computed is not None:
        measured = f"version {computed['model_version'] or '-'}"
        measured += "" if computed["current"] else f", not the serving {serving}"
    rows = [
        ("model", f"{report['model_name']} {report['stage']} (version {serving})"),
        ("ready", f"{ready['status']} {ready['reason']}" + (f": {ready['message']}" if ready["message"] else "")),
        ("numbers for", measured),
        ("health", f"{health['status']}" + (f": {'; '.join(health['issues'])}" if health["issues"] else "")),
        ("accuracy (avg over runs)", num(report["performance"]["average"].get("accuracy"), 4)),
        ("trend", report["performance"]["trend"]["accuracy"]["direction"]),
        ("predictions", num(stats["total_predictions"])),
        ("latency p50 / p95 ms", f"{num(stats['p50_prediction_time_ms'])} / {num(stats['p95_prediction_time_ms'])}"),
        ("error rate", num(stats["error_rate"], 4)),
        (
            "drift",
            "-"
            if drift["detected"] is None
            else f"{drift['detected']} (share {num(drift['share'])}): {', '.join(drift['drifted_columns']) or '-'}",
        ),
        ("last run", str((report["last_run"] or {}).get("time", "-"))),
    ]
    width = max(len(k) for k, _ in rows)
    return [f"{key:<{width}}  {value}" for key, value in rows]
