"""The original document's ModelMonitor API (modelops.monitoring.monitor), round trip without Kubernetes."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from modelops.api.modelmonitor import DriftSpec, HealthSpec
from modelops.contract import LOG_STATUS_OK, TAG_MODEL_NAME, TAG_SEMVER
from modelops.monitoring import ModelMonitor, strip_feature_prefix
from modelops.monitoring.monitor import score_predictions


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore", RuntimeWarning)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def predictions_frame(n: int, latency_ms: float, version: str = "1.0.0", errors: int = 0) -> pd.DataFrame:
    start = datetime.now(UTC) - timedelta(minutes=30)
    return pd.DataFrame(
        {
            "request_id": [f"{version}-{i}" for i in range(n)],
            "timestamp": [start + timedelta(seconds=i) for i in range(n)],
            "model_version": version,
            "registry_version": "1",
            "latency_ms": latency_ms,
            "status": [LOG_STATUS_OK] * (n - errors) + ["error"] * errors,
            "prediction": 1,
            "probability": 0.8,
        }
    )


def test_score_predictions_classification_and_regression() -> None:
    scores = score_predictions([0, 1, 1, 0], [0, 1, 0, 0])
    assert scores == {"accuracy": 0.75, "f1_score": pytest.approx(0.7333, abs=1e-4)}
    reg = score_predictions([1.5, 2.5, 3.0], [1.0, 2.5, 3.5])
    assert set(reg) == {"mae", "rmse", "r2"} and reg["mae"] == pytest.approx(1 / 3)
    assert score_predictions([], []) == {}
    with pytest.raises(ValueError, match="y_true has 2 values"):
        score_predictions([1, 2], [1])


def test_track_and_get_performance_metrics() -> None:
    monitor = ModelMonitor("future-skills-model")
    recorded = monitor.track_model_performance([1, 0, 1, 1], [1, 0, 1, 1], metrics={"accuracy": 0.92, "f1_score": 0.91})
    assert recorded == {"accuracy": 0.92, "f1_score": 0.91}  # given metrics override computed ones
    for acc in (0.91, 0.93, 0.92):
        monitor.track_model_performance([], [], metrics={"accuracy": acc, "log_loss": 0.3})
    metrics = monitor.get_performance_metrics(window_size=100)
    assert metrics["count"] == 4
    assert metrics["average"]["accuracy"] == pytest.approx(0.92)
    assert metrics["average"]["f1_score"] == pytest.approx(0.91)
    assert metrics["trend"]["accuracy"] == {"direction": "stable"}
    assert metrics["latest"]["accuracy"] == 0.92

    monitor.track_model_performance([], [], metrics={"accuracy": 0.80, "log_loss": 0.6})
    metrics = monitor.get_performance_metrics(window_size=3)
    assert metrics["count"] == 3
    assert metrics["trend"]["accuracy"]["direction"] == "degrading"
    assert metrics["trend"]["log_loss"]["direction"] == "degrading"  # lower is better for losses
    with pytest.raises(ValueError):
        monitor.get_performance_metrics(window_size=0)


def test_history_is_bounded() -> None:
    monitor = ModelMonitor("m", history_size=3)
    for i in range(5):
        monitor.track_model_performance([], [], metrics={"accuracy": i / 10})
    assert [r.metrics["accuracy"] for r in monitor.history] == [0.2, 0.3, 0.4]


def test_drift_round_trip_with_the_documents_report(cancer: pd.DataFrame) -> None:
    features = [c for c in cancer.columns if c != "target"]
    monitor = ModelMonitor("cancer")
    with pytest.raises(ValueError, match="set_reference_data"):
        monitor.detect_data_drift(cancer)
    train = cancer.sample(frac=0.5, random_state=0)
    monitor.set_reference_data(train, features=features)

    production = cancer.drop(train.index).copy()
    detected, report = monitor.detect_data_drift(production)
    assert not detected and report["drifted_features"] <= 3 and report["result"] == "Completed"
    assert "target" not in [c["name"] for c in report["columns"]]
    json.dumps(report)  # JSON-ready

    shifted = production.copy()
    for col in features[:20]:
        shifted[col] += 2 * cancer[col].std()
    logged = shifted[features].add_prefix("feature.").assign(request_id="r", latency_ms=3.0)
    detected, report = monitor.detect_data_drift(logged)  # prediction-log layout works too
    assert detected and report["drift_detected"]
    assert set(features[:20]) <= set(report["drifted_columns"])
    assert report["drifted_features"] == len(report["drifted_columns"])
    assert report["ignored_columns"] == []
    assert monitor.last_drift is not None and "modelops drift summary" in monitor.last_drift.report_html()


def test_drift_settings_come_from_the_spec(cancer: pd.DataFrame) -> None:
    monitor = ModelMonitor("cancer", drift=DriftSpec(method="psi", min_rows=500))
    monitor.set_reference_data(cancer, features=["mean radius", "mean area"])
    detected, report = monitor.detect_data_drift(cancer.iloc[:100])
    assert not detected and report["result"] == "InsufficientData"
    _, report = monitor.detect_data_drift(cancer)
    assert {c["stattest"] for c in report["columns"]} == {"psi"}
    with pytest.raises(ValueError, match="features not in the reference"):
        monitor.set_reference_data(cancer, features=["nope"])


def test_health_from_added_predictions_and_tracked_accuracy() -> None:
    monitor = ModelMonitor("m", health=HealthSpec(max_latency_p95_ms=50, min_accuracy=0.9))
    assert monitor.check_model_health()["status"] == "unknown"

    monitor.add_predictions(predictions_frame(100, latency_ms=10.0))
    health = monitor.check_model_health()
    assert health["status"] == "healthy" and health["issues"] == []

    for acc in (0.95, 0.96, 0.85):  # the newest tracked accuracy is judged, against the earlier ones
        monitor.track_model_performance([], [], metrics={"accuracy": acc})
    health = monitor.check_model_health()
    assert health["status"] == "degraded"
    assert health["trend"] == "degrading" and health["accuracy"] == 0.85
    assert [i.split(":")[0] for i in health["issues"]] == ["accuracy decline", "performance degradation"]

    monitor.add_predictions(predictions_frame(100, latency_ms=200.0, version="1.1.0"))
    health = monitor.check_model_health()
    assert health["status"] == "unhealthy"  # p95 200 ms > 2 x 50 ms
    assert health["issues"][0].startswith("high prediction latency")


def test_feedback_accuracy_wins_over_tracked() -> None:
    monitor = ModelMonitor("m")
    window = predictions_frame(10, latency_ms=1.0)
    labels = pd.DataFrame({"request_id": window["request_id"], "label": [1] * 7 + [0] * 3})
    monitor.add_predictions(window, feedback=labels)
    monitor.track_model_performance([], [], metrics={"accuracy": 0.99})
    health = monitor.check_model_health()
    assert health["accuracy"] == pytest.approx(0.7) and health["labelled"] == 10
    assert health["trend"] == "degrading"  # 0.7 against the tracked 0.99


def test_generate_monitoring_report_has_the_documents_shape(cancer: pd.DataFrame) -> None:
    monitor = ModelMonitor("future-skills-model")
    monitor.add_predictions(predictions_frame(50, latency_ms=10.0, version="1.0.0"))
    later = predictions_frame(50, latency_ms=30.0, version="1.1.0")
    later["timestamp"] += timedelta(minutes=5)
    monitor.add_predictions(later)
    monitor.track_model_performance([1, 0, 1, 1], [1, 0, 1, 0])
    monitor.set_reference_data(cancer, features=["mean radius"])
    monitor.detect_data_drift(cancer)

    report = monitor.generate_monitoring_report()
    assert set(report) == {
        "model_name",
        "model_version",
        "health",
        "performance",
        "prediction_stats",
        "drift",
        "generated_at",
    }
    assert report["model_name"] == "future-skills-model"
    assert report["model_version"] == "1.1.0"  # newest seen in the predictions
    assert report["health"] == {"status": "healthy", "issues": []}
    assert report["performance"]["average"] == {"accuracy": 0.75, "f1_score": pytest.approx(0.7333, abs=1e-4)}
    assert report["performance"]["trend"]["accuracy"] == {"direction": "unknown"}  # one record
    stats = report["prediction_stats"]
    assert stats["total_predictions"] == 100
    assert stats["avg_prediction_time_ms"] == pytest.approx(20.0)
    assert stats["p95_prediction_time_ms"] == pytest.approx(30.0)
    assert report["drift"] == {"result": "Completed", "detected": False, "share": 0.0, "drifted_columns": []}
    json.dumps(report)
    assert ModelMonitor("m", model_version="2.0.0").generate_monitoring_report()["model_version"] == "2.0.0"


def test_strip_feature_prefix() -> None:
    frame = pd.DataFrame({"request_id": ["a"], "feature.x": [1.0], "feature.a.b": ["q"]})
    assert list(strip_feature_prefix(frame).columns) == ["x", "a.b"]
    plain = pd.DataFrame({"x": [1]})
    assert strip_feature_prefix(plain) is plain


def test_tracked_performance_is_logged_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monitor = ModelMonitor("m", "1.2.0", mlflow_experiment="perf-test")
    monitor.track_model_performance([1, 1, 0, 0], [1, 1, 0, 1])
    monitor.track_model_performance([], [], metrics={"accuracy": 0.5, "nan_metric": float("nan")})
    assert monitor.mlflow_run_id is not None
    client = MlflowClient(uri)
    history = client.get_metric_history(monitor.mlflow_run_id, "accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.75), (1, 0.5)]
    run = client.get_run(monitor.mlflow_run_id)
    assert run.data.tags[TAG_MODEL_NAME] == "m" and run.data.tags[TAG_SEMVER] == "1.2.0"
    assert "nan_metric" not in run.data.metrics


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        ModelMonitor("m", window="yesterday")
    with pytest.raises(ValueError, match="history_size"):
        ModelMonitor("m", history_size=0)
    assert np.isfinite(ModelMonitor("m").window.total_seconds())


def test_monitor_reads_the_prediction_log(tmp_path: Path) -> None:
    """The document's workflow: PredictionLogger.log_prediction, then ModelMonitor over the stage's log."""
    from modelops.monitoring.prediction_log import PredictionLogger

    base = str(tmp_path / "log")
    with PredictionLogger(base, "future-skills-model", "Production", pod="p0") as logger:
        for i in range(40):
            rid = logger.log_prediction(
                model_name="future-skills-model",
                model_version="1.0.0",
                features={"experience": i % 7, "skill": "Python"},
                prediction="HIGH" if i % 2 else "LOW",
                probability=0.9,
                prediction_time_ms=10.0 + i,
                status=LOG_STATUS_OK if i < 38 else "error",
            )
            logger.log_feedback(rid, "HIGH")
    monitor = ModelMonitor("future-skills-model", prediction_log_uri=base, window="1h", drift=DriftSpec(min_rows=10))
    report = monitor.generate_monitoring_report()
    assert report["model_version"] == "1.0.0"
    assert report["prediction_stats"]["total_predictions"] == 40
    assert report["prediction_stats"]["avg_prediction_time_ms"] == pytest.approx(29.5)
    health = monitor.check_model_health()
    assert health["error_rate"] == pytest.approx(0.05) and health["labelled"] == 38
    assert health["accuracy"] == pytest.approx(19 / 38)  # odd i predicted HIGH; failed rows are not joined
    assert ModelMonitor("other-model", prediction_log_uri=base).check_model_health()["status"] == "unknown"

    monitor.set_reference_data(pd.DataFrame({"experience": np.arange(200) % 7, "skill": "Python"}))
    predictions, _ = monitor.prediction_window()
    detected, drift = monitor.detect_data_drift(predictions)
    assert not detected and drift["result"] == "Completed" and drift["ignored_columns"] == []
    assert [c["name"] for c in drift["columns"]] == ["experience", "skill"]
    assert drift["columns"][1]["reason"].startswith("constant")


def test_library_imports_neither_kopf_nor_evidently_up_front() -> None:
    import subprocess
    import sys

    code = "import sys, modelops.monitoring; print(sorted(m for m in ('kopf', 'evidently') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_out_of_range_cron_schedules_are_rejected_by_the_spec() -> None:
    """`61 * * * *` passes the CRD's coarse pattern; the operator's spec validation names it."""
    from pydantic import ValidationError

    from modelops.api.modelmonitor import ModelMonitorSpec

    with pytest.raises(ValidationError, match="not a valid cron schedule"):
        ModelMonitorSpec.model_validate({"model": "m", "schedule": "61 * * * *"})
    assert ModelMonitorSpec.model_validate({"model": "m", "schedule": "*/5 * * * 1-5"}).schedule == "*/5 * * * 1-5"
