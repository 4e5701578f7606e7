"""The monitoring report (original document's generate_monitoring_report) from a status."""

from __future__ import annotations

from modelops.report import monitoring_report


def test_report_from_status() -> None:
    body = {
        "spec": {"model": "bc", "stage": "Production"},
        "status": {
            "modelVersion": "1.1.0",
            "health": {"status": "degraded", "issues": ["p95 latency 120 ms > 100 ms"], "predictions": 500,
                       "latencyP50Ms": 3.5, "latencyP95Ms": 120.0, "errorRate": 0.0, "accuracy": 0.9,
                       "trend": "degrading"},
            "drift": {"detected": True, "share": 0.4, "driftedColumns": ["a", "b"]},
            "history": [
                {"runId": "r1", "time": "2026-01-01T00:00:00Z", "result": "Completed", "accuracy": 0.96,
                 "latencyP95Ms": 80.0},
                {"runId": "r2", "time": "2026-01-01T01:00:00Z", "result": "Completed", "accuracy": 0.90,
                 "latencyP95Ms": 120.0},
            ],
        },
    }
    report = monitoring_report(body)
    assert report["model_name"] == "bc" and report["model_version"] == "1.1.0"
    assert report["health"] == {"status": "degraded", "issues": ["p95 latency 120 ms > 100 ms"]}
    assert abs(report["performance"]["average"]["accuracy"] - 0.93) < 1e-9
    assert report["performance"]["trend"]["accuracy"]["direction"] == "degrading"
    assert report["prediction_stats"]["total_predictions"] == 500
    assert report["prediction_stats"]["p95_prediction_time_ms"] == 120.0
    assert report["drift"]["drifted_columns"] == ["a", "b"] and report["runs"] == 2


def test_report_without_runs() -> None:
    report = monitoring_report({"spec": {"model": "bc", "stage": "Staging"}, "status": {}})
    assert report["health"]["status"] == "unknown" and report["performance"]["average"] == {}
    assert report["last_run"] is None
