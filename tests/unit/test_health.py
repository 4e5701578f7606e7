"""Health checks from the prediction log (modelops.monitoring.health): numbers, thresholds, verdict, trend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from modelops.api.modelmonitor import HealthSpec, HealthStatus
from modelops.contract import LOG_COLUMNS, LOG_STATUS_OK
from modelops.monitoring.health import (
    compute_health,
    judge_health,
    labels_match,
    measure_window,
    performance_trend,
    request_keys,
)
from modelops.monitoring.window import parse_duration


def log_window(
    n: int = 200, *, latency_ms: float | np.ndarray = 10.0, errors: int = 0, predictions: list | None = None
) -> pd.DataFrame:
    """Prediction log rows in the contract layout (LOG_COLUMNS plus one feature)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": [start + timedelta(seconds=i) for i in range(n)],
            "model_version": "1.0.0",
            "registry_version": "3",
            "latency_ms": latency_ms,
            "status": [LOG_STATUS_OK] * (n - errors) + ["error"] * errors,
            "prediction": predictions if predictions is not None else ["yes"] * n,
            "probability": 0.9,
            "feature.x": np.arange(n, dtype=float),
        }
    )
    assert set(LOG_COLUMNS) <= set(frame.columns)
    return frame


def feedback(ids: list[str], labels: list) -> pd.DataFrame:
    return pd.DataFrame({"request_id": ids, "label": labels, "timestamp": datetime(2025, 1, 2, tzinfo=UTC)})


def test_numbers_of_a_window() -> None:
    latency = np.arange(1, 101, dtype=float)  # 1..100 ms
    report = compute_health(log_window(100, latency_ms=latency, errors=4))
    assert report.predictions == 100 and report.errors == 4
    assert report.error_rate == pytest.approx(0.04)
    assert report.latency_p50_ms == pytest.approx(50.5)
    assert report.latency_p95_ms == pytest.approx(95.05)
    assert report.latency_mean_ms == pytest.approx(50.5)
    assert report.accuracy is None and report.trend == "unknown"
    assert report.status == "healthy" and report.issues == []  # defaults: p95 <= 100 ms, errors <= 5 %


def test_empty_window_is_unknown() -> None:
    report = compute_health(log_window(0))
    assert report.status == "unknown" and report.predictions == 0
    assert report.issues == ["no predictions in the window"]
    assert report.error_rate is None and report.latency_p95_ms is None


@pytest.mark.parametrize(
    ("p95_limit", "latency", "status"),
    [(100.0, 50.0, "healthy"), (40.0, 50.0, "degraded"), (20.0, 50.0, "unhealthy")],
)
def test_latency_threshold(p95_limit: float, latency: float, status: str) -> None:
    report = compute_health(log_window(latency_ms=latency), HealthSpec(max_latency_p95_ms=p95_limit))
    assert report.status == status
    assert any("latency" in issue for issue in report.issues) == (status != "healthy")


@pytest.mark.parametrize(
    ("max_rate", "errors", "status"),
    [(0.05, 10, "healthy"), (0.04, 10, "degraded"), (0.02, 10, "unhealthy"), (0.0, 1, "unhealthy")],
)
def test_error_rate_threshold(max_rate: float, errors: int, status: str) -> None:
    report = compute_health(log_window(200, errors=errors), HealthSpec(max_error_rate=max_rate))
    assert report.status == status
    if status != "healthy":
        assert report.issues[0].startswith("error rate spike")


def test_status_other_than_ok_is_an_error_case_insensitively() -> None:
    frame = log_window(4)
    frame["status"] = ["OK", "ok", "timeout", "500"]
    assert measure_window(frame).errors == 2


def test_accuracy_from_feedback_labels() -> None:
    window = log_window(10, predictions=["a"] * 5 + ["b"] * 5, errors=2)  # r8, r9 failed
    labels = feedback(["r0", "r1", "r2", "r5", "r6", "r8", "unknown", "r0"], ["a", "a", "b", "b", "a", "b", "a", "b"])
    report = compute_health(window, HealthSpec(min_accuracy=0.9, max_error_rate=0.5), feedback=labels)
    # newest label per request wins (r0 -> b); failed r8 and unknown ids are not joined
    # r0: a vs b no, r1: a vs a yes, r2: a vs b no, r5: b vs b yes, r6: b vs a no
    assert report.labelled == 5
    assert report.accuracy == pytest.approx(2 / 5)
    assert report.status == "unhealthy"  # 0.4 is more than 10 points below 0.9
    assert any(issue.startswith("accuracy decline") for issue in report.issues)
    lenient = HealthSpec(min_accuracy=0.45, max_error_rate=0.5)
    assert compute_health(window, lenient, feedback=labels).status == "degraded"


def test_accuracy_skipped_for_regression_and_without_feedback() -> None:
    window = log_window(10, predictions=[1.5] * 10)
    labels = feedback(["r0"], [1.5])
    assert compute_health(window, feedback=labels, task="regression").accuracy is None
    assert compute_health(window, feedback=labels.iloc[0:0]).accuracy is None
    assert compute_health(window, feedback=labels).accuracy == 1.0


def test_labels_match_numbers_and_strings() -> None:
    preds = pd.Series([1, "1", "1.0", "yes", None, 2.0])
    labels = pd.Series(["1", 1.0, 1, "yes ", "x", 3])
    assert labels_match(preds, labels).tolist() == [True, True, True, True, False, False]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.90, 0.91, 0.90, 0.95], "improving"),
        ([0.90, 0.91, 0.90, 0.91], "stable"),
        ([0.90, 0.91, 0.90, 0.85], "degrading"),
        ([0.90], "unknown"),
        ([], "unknown"),
        ([0.9, None], "unknown"),
        ([None, 0.9], "unknown"),
        ([0.8, None, 0.9], "improving"),
    ],
)
def test_trend_rule(values: list, expected: str) -> None:
    assert performance_trend(values) == expected


def test_trend_tolerance_and_direction() -> None:
    assert performance_trend([0.90, 0.915]) == "stable"
    assert performance_trend([0.90, 0.915], tolerance=0.01) == "improving"
    assert performance_trend([10.0, 20.0], higher_is_better=False) == "degrading"  # e.g. latency


def test_degrading_trend_degrades_health() -> None:
    window = log_window(20, predictions=["a"] * 20)
    labels = feedback([f"r{i}" for i in range(20)], ["a"] * 16 + ["b"] * 4)  # accuracy 0.8
    report = compute_health(window, feedback=labels, previous_accuracy=[0.95, 0.9, None, 0.97])
    assert report.accuracy == pytest.approx(0.8)
    assert report.trend == "degrading" and report.previous_accuracy == [0.95, 0.9, 0.97]
    assert report.status == "degraded"
    assert report.issues == ["performance degradation: accuracy 0.800 vs 0.940 before"]
    assert compute_health(window, feedback=labels, previous_accuracy=[0.79, 0.81]).trend == "stable"


def test_judge_without_predictions_but_with_accuracy() -> None:
    report = measure_window(log_window(0))
    report.accuracy = 0.5
    judged = judge_health(report, HealthSpec(min_accuracy=0.55), [0.5])
    assert judged.status == "degraded" and judged.trend == "stable"


def test_status_shape_validates() -> None:
    report = compute_health(log_window(10, errors=1))
    status = report.to_status()
    HealthStatus.model_validate(status.to_wire())
    assert status.predictions == 10 and status.error_rate == pytest.approx(0.1)


def test_missing_columns_raise_key_error() -> None:
    with pytest.raises(KeyError):
        compute_health(log_window(3).drop(columns=["status"]))


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("45s", 45)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "1w", "0m", "-5m", "5 m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_batch_requests_count_once_for_latency_and_errors() -> None:
    single = log_window(10, latency_ms=5.0)
    batch = log_window(100, latency_ms=500.0, errors=100)
    batch["request_id"] = [f"big:{i}" for i in range(100)]  # one 100-row request, failed
    report = measure_window(pd.concat([single, batch], ignore_index=True))
    assert report.predictions == 110 and report.requests == 11
    assert report.errors == 1 and report.error_rate == pytest.approx(1 / 11)
    assert report.latency_p50_ms == pytest.approx(5.0)  # per row it would be 500


def test_request_keys() -> None:
    assert request_keys(pd.Series(["a", "b"])) is None  # single-row requests: nothing to group
    keys = request_keys(pd.Series(["a:0", "a:1", "b", "c:x"]))
    assert keys is not None and keys.tolist() == ["a", "a", "b", "c:x"]
