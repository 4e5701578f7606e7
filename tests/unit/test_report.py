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


def _monitor(status: dict[str, object]) -> dict[str, object]:
    return {"spec": {"model": "breast-cancer", "stage": "Production"}, "status": status}


def _ready(status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip


INVALID = _monitor({"conditions": [_ready("False", "InvalidSpec", "'61 * * * *' is not a valid cron schedule")]})
STALE = _monitor({
    "modelVersion": "1.4.0",
    "conditions": [_ready("True", "Monitoring", "every hour")],
    "lastRun": {"runId": "r9", "time": "2026-01-01T01:00:00Z", "result": "Completed", "modelVersion": "1.1.0"},
    "health": {"status": "healthy", "predictions": 143},
    "drift": {"detected": True, "share": 0.5, "driftedColumns": ["a"]},
})  # fmt: skip


def test_report_says_why_a_monitor_is_not_ready() -> None:
    ready = monitoring_report(INVALID)["ready"]
    assert ready == {"status": "False", "reason": "InvalidSpec", "message": "'61 * * * *' is not a valid cron schedule"}
    unwritten = monitoring_report(_monitor({}))["ready"]  # the operator has not reconciled it yet
    assert unwritten["status"] == "Unknown" and unwritten["reason"] == "NoStatus"


def test_report_attributes_numbers_to_the_version_they_were_computed_for() -> None:
    report = monitoring_report(STALE)
    assert report["model_version"] == "1.4.0"
    assert report["computed_for"] == {"model_version": "1.1.0", "run_time": "2026-01-01T01:00:00Z", "current": False}
    fresh = monitoring_report({**STALE, "status": {**STALE["status"], "modelVersion": "1.1.0"}})  # type: ignore[dict-item]
    assert fresh["computed_for"]["current"] is True


def _status_cli(monkeypatch, body: dict[str, object], *args: str):  # type: ignore[no-untyped-def]
    import kubernetes
    from typer.testing import CliRunner

    from modelops.cli import app

    class Api:
        def get_namespaced_custom_object(self, *_: object) -> dict[str, object]:
            return body

    monkeypatch.setattr(kubernetes.config, "load_kube_config", lambda **_: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", Api)
    return CliRunner().invoke(app, ["status", "breast-cancer-production", "--kubeconfig", "/dev/null", *args])


def test_status_prints_the_ready_reason_and_exits_3_when_not_ready(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    table = _status_cli(monkeypatch, INVALID)
    assert table.exit_code == 3, table.output
    assert "False InvalidSpec: '61 * * * *' is not a valid cron schedule" in table.output
    as_json = _status_cli(monkeypatch, INVALID, "-o", "json")
    assert as_json.exit_code == 3 and json.loads(as_json.output)["ready"]["reason"] == "InvalidSpec"
    ok = _status_cli(monkeypatch, STALE)
    assert ok.exit_code == 0, ok.output
    # The numbers name the version they were computed for, not the one serving now.
    assert "breast-cancer Production (version 1.4.0)" in ok.output
    assert "version 1.1.0, not the serving 1.4.0" in ok.output
