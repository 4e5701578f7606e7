"""``ModelMonitor``: the original system document's monitoring API (``ml/monitoring.py``), without Django.

The document's calls map one to one::

    monitor = ModelMonitor(model_name="future-skills-model")
    monitor.track_model_performance(y_true, y_pred, metrics={"accuracy": 0.92, "f1_score": 0.91})
    monitor.get_performance_metrics(window_size=100)        # {"average": {...}, "trend": {...}}
    monitor.set_reference_data(training_data)
    drift_detected, drift_report = monitor.detect_data_drift(production_data)
    monitor.check_model_health()                            # {"status": ..., "issues": [...]}
    monitor.generate_monitoring_report()                    # model, health, performance, prediction stats

Drift comes from :mod:`.drift`, health from :mod:`.health` (the same code the ``drift`` job runs).
Predictions for health and prediction statistics come from the stage's prediction log (when
``prediction_log_uri`` is given, read with :mod:`.prediction_log`) and/or from frames passed to
:meth:`ModelMonitor.add_predictions`. Tracked performance stays in memory (bounded) and is
optionally logged to MLflow. No kopf import; usable from a notebook.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ..api.modelmonitor import DriftSpec, HealthSpec
from ..contract import LOG_FEATURE_PREFIX, TAG_MODEL_NAME, TAG_MODEL_STAGE, TAG_SEMVER
from .drift import DriftResult, detect_drift
from .health import LOWER_IS_BETTER, HealthReport, judge_health, measure_window, performance_trend
from .window import parse_duration


@dataclass(frozen=True)
class PerformanceRecord:
    """One call of :meth:`ModelMonitor.track_model_performance`: when, on how many samples, which values."""

    time: datetime
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)


def score_predictions(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Standard metrics of predictions against truth, by scikit-learn.

    Classification targets (``sklearn.utils.multiclass.type_of_target`` not continuous) give
    ``accuracy`` and macro ``f1_score``; continuous targets give ``mae``, ``rmse`` and ``r2``.
    Empty inputs give ``{}``. Raises ``ValueError`` when the lengths differ.
    """
    from sklearn import metrics as skm
    from sklearn.utils.multiclass import type_of_target

    truth, pred = np.asarray(y_true), np.asarray(y_pred)
    if len(truth) != len(pred):
        raise ValueError(f"y_true has {len(truth)} values but y_pred has {len(pred)}")
    if len(truth) == 0:
        return {}
    if type_of_target(truth).startswith("continuous"):
        return {
            "mae": float(skm.mean_absolute_error(truth, pred)),
            "rmse": float(np.sqrt(skm.mean_squared_error(truth, pred))),
            "r2": float(skm.r2_score(truth, pred)) if len(truth) > 1 else float("nan"),
        }
    return {
        "accuracy": float(skm.accuracy_score(truth, pred)),
        "f1_score": float(skm.f1_score(truth, pred, average="macro", zero_division=0)),
    }


class ModelMonitor:
    """Performance tracking, drift detection, health checks and a report for one registered model.

    - ``model_name``/``model_version``: what is monitored (the version defaults to the newest
      ``model_version`` seen in the predictions).
    - ``stage``, ``prediction_log_uri``, ``window``: where predictions come from: the stage's
      prediction log (fsspec URI of its base directory) over the last ``window`` (``24h``...).
    - ``drift``/``health``: the same settings a ModelMonitor resource takes (``DriftSpec``,
      ``HealthSpec``).
    - ``history_size``: performance records kept (oldest dropped).
    - ``mlflow_experiment``: when set, every tracked performance is also logged as metrics
      (step = record number) to one MLflow run of that experiment, tagged with the model name,
      stage and version; the tracking URI is MLflow's own (``MLFLOW_TRACKING_URI``).
    """

    def __init__(
        self,
        model_name: str,
        model_version: str | None = None,
        *,
        stage: str = "Production",
        prediction_log_uri: str | None = None,
        window: str = "24h",
        drift: DriftSpec | None = None,
        health: HealthSpec | None = None,
        history_size: int = 1000,
        mlflow_experiment: str | None = None,
    ) -> None:
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        self.model_name = model_name
        self.model_version = model_version
        self.stage = stage
        self.prediction_log_uri = prediction_log_uri
        self.window = parse_duration(window)
        self.drift_spec = drift or DriftSpec()
        self.health_spec = health or HealthSpec()
        self.mlflow_experiment = mlflow_experiment
        self.history: deque[PerformanceRecord] = deque(maxlen=history_size)
        self.reference: pd.DataFrame | None = None
        self.features: list[str] | None = None
        self.last_drift: DriftResult | None = None
        self._predictions: list[pd.DataFrame] = []
        self._feedback: list[pd.DataFrame] = []
        self._mlflow_run_id: str | None = None
        self._tracked = 0

    # -- performance -------------------------------------------------------------------------

    def track_model_performance(
        self, y_true: Sequence[Any], y_pred: Sequence[Any], metrics: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Record one evaluation; returns the metric values recorded.

        Values come from :func:`score_predictions` on ``y_true``/``y_pred`` (accuracy and macro
        F1, or MAE/RMSE/R² for continuous targets); ``metrics`` adds to or overrides them, as
        in the document's ``metrics={"accuracy": 0.92, "f1_score": 0.91}``. Raises ``ValueError``
        for inputs of different lengths or a non-numeric metric value.
        """
        values = score_predictions(y_true, y_pred)
        for name, value in (metrics or {}).items():
            values[str(name)] = float(value)
        record = PerformanceRecord(time=datetime.now(UTC), samples=len(y_true), metrics=values)
        self.history.append(record)
        self._tracked += 1
        if self.mlflow_experiment:
            self._log_to_mlflow(record)
        return dict(values)

    def get_performance_metrics(self, window_size: int = 100) -> dict[str, Any]:
        """Averages and trends of the newest ``window_size`` tracked records.

        Returns ``{"count": n, "average": {metric: mean}, "latest": {metric: value},
        "trend": {metric: {"direction": improving|stable|degrading|unknown}}}``; the trend of a
        metric is :func:`~modelops.monitoring.health.performance_trend` over its values (lower is
        better for the names in ``LOWER_IS_BETTER``). Raises ``ValueError`` when ``window_size`` < 1.
        """
        if window_size < 1:
            raise ValueError("window_size must be at least 1")
        records = list(self.history)[-window_size:]
        names = list(dict.fromkeys(name for r in records for name in r.metrics))
        average: dict[str, float] = {}
        trend: dict[str, dict[str, str]] = {}
        for name in names:
            series = [r.metrics.get(name) for r in records]
            finite = [v for v in series if v is not None and np.isfinite(v)]
            if finite:
                average[name] = float(np.mean(finite))
            direction = performance_trend(series, higher_is_better=name not in LOWER_IS_BETTER)
            trend[name] = {"direction": direction}
        latest = dict(records[-1].metrics) if records else {}
        return {"count": len(records), "average": average, "latest": latest, "trend": trend}

    # -- drift -------------------------------------------------------------------------------

    def set_reference_data(self, data: pd.DataFrame, features: Sequence[str] | None = None) -> None:
        """Keep ``data`` (the training data) as drift reference; ``features`` are the model inputs
        (default: every column of ``data``; pass them to leave a target column out)."""
        if features is not None:
            missing = [f for f in features if f not in data.columns]
            if missing:
                raise ValueError(f"features not in the reference data: {missing}")
        self.reference = data
        self.features = list(features) if features is not None else None

    def detect_data_drift(self, data: pd.DataFrame) -> tuple[bool, dict[str, Any]]:
        """Compare ``data`` with the reference by :func:`~modelops.monitoring.drift.detect_drift`.

        Returns ``(drift_detected, report)`` where ``report`` is the result as a JSON-ready dict
        plus ``drift_detected`` and ``drifted_features`` (the number of drifted columns, as in
        the document's ``drift_report['drifted_features']``). The full result, with its
        Evidently HTML report (``last_drift.report_html()``), stays in ``last_drift``. Columns
        named ``feature.<name>`` (prediction log layout) are compared as ``<name>``. Raises
        ``ValueError`` when no reference data was set.
        """
        if self.reference is None:
            raise ValueError("no reference data: call set_reference_data() first")
        current = strip_feature_prefix(data)
        spec = self.drift_spec
        result = detect_drift(
            self.reference,
            current,
            columns=self.features if self.features is not None else spec.columns,
            method=spec.method,
            threshold=spec.threshold,
            drift_share=spec.drift_share,
            min_rows=spec.min_rows,
            max_rows=spec.max_rows,
        )
        self.last_drift = result
        report = result.model_dump(mode="json")
        report["drift_detected"] = result.detected
        report["drifted_features"] = len(result.drifted_columns)
        return result.detected, report

    # -- predictions and health --------------------------------------------------------------

    def add_predictions(self, predictions: pd.DataFrame, feedback: pd.DataFrame | None = None) -> None:
        """Add prediction log rows (``latency_ms``, ``status``, ``request_id``, ``prediction``...)
        and optional feedback (``request_id``, ``label``) to what health checks and the report use."""
        self._predictions.append(predictions)
        if feedback is not None:
            self._feedback.append(feedback)

    def prediction_window(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Predictions and feedback of the window: the prediction log's (when configured) plus added ones.

        Reading the log raises what :mod:`.prediction_log` raises (e.g. ``OSError`` on an
        unreachable store).
        """
        frames = list(self._predictions)
        feedback = list(self._feedback)
        if self.prediction_log_uri:
            from .prediction_log import read_feedback, read_prediction_log

            since = datetime.now(UTC) - self.window
            frames.append(read_prediction_log(self.prediction_log_uri, self.model_name, self.stage, since))
            feedback.append(read_feedback(self.prediction_log_uri, self.model_name, self.stage, since))
        rows = [f for f in frames if not f.empty]
        predictions = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        labels = [f for f in feedback if not f.empty]
        return predictions, (pd.concat(labels, ignore_index=True) if labels else None)

    def health_report(self) -> HealthReport:
        """Full health (numbers, verdict, trend) from the prediction window and tracked accuracy.

        Window accuracy (feedback) is used when there is some; otherwise the newest tracked
        ``accuracy``. The trend compares that with the earlier tracked accuracies.
        """
        predictions, feedback = self.prediction_window()
        report = measure_window(predictions, feedback=feedback)
        tracked = [r.metrics["accuracy"] for r in self.history if "accuracy" in r.metrics]
        if report.accuracy is None and tracked:
            report.accuracy = tracked[-1]
            tracked = tracked[:-1]
        return judge_health(report, self.health_spec, tracked)

    def check_model_health(self) -> dict[str, Any]:
        """``{"status": healthy|degraded|unhealthy|unknown, "issues": [...]}`` (see :mod:`.health`
        for the rule), plus ``trend`` and the numbers behind the verdict."""
        report = self.health_report()
        numbers = report.model_dump(exclude={"status", "issues"})
        return {"status": report.status, "issues": list(report.issues), **numbers}

    def generate_monitoring_report(self) -> dict[str, Any]:
        """The document's monitoring report as a JSON-ready dict.

        Keys: ``model_name``, ``model_version``, ``health`` ``{status, issues}``, ``performance``
        ``{average, trend: {metric: {direction}}}`` (newest 100 records), ``prediction_stats``
        ``{total_predictions, avg_prediction_time_ms, p95_prediction_time_ms}`` over the window,
        ``drift`` (the last drift check's verdict, or None) and ``generated_at`` (ISO 8601, UTC).
        """
        predictions, _ = self.prediction_window()
        health = self.health_report()
        performance = self.get_performance_metrics(window_size=100)
        version = self.model_version
        if version is None and "model_version" in predictions.columns and not predictions.empty:
            ordered = predictions.sort_values("timestamp") if "timestamp" in predictions.columns else predictions
            version = str(ordered["model_version"].iloc[-1])
        drift = None
        if self.last_drift is not None:
            drift = {
                "result": self.last_drift.result,
                "detected": self.last_drift.detected,
                "share": self.last_drift.share,
                "drifted_columns": list(self.last_drift.drifted_columns),
            }
        return {
            "model_name": self.model_name,
            "model_version": version,
            "health": {"status": health.status, "issues": list(health.issues)},
            "performance": {"average": performance["average"], "trend": performance["trend"]},
            "prediction_stats": {
                "total_predictions": health.predictions,
                "avg_prediction_time_ms": health.latency_mean_ms,
                "p95_prediction_time_ms": health.latency_p95_ms,
            },
            "drift": drift,
            "generated_at": datetime.now(UTC).isoformat(),
        }

    # -- MLflow ------------------------------------------------------------------------------

    def _log_to_mlflow(self, record: PerformanceRecord) -> None:
        """Log one record's metrics to this monitor's MLflow run (created on first use)."""
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        if self._mlflow_run_id is None:
            assert self.mlflow_experiment is not None
            experiment = client.get_experiment_by_name(self.mlflow_experiment)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.mlflow_experiment)
            tags = {TAG_MODEL_NAME: self.model_name, TAG_MODEL_STAGE: self.stage}
            if self.model_version:
                tags[TAG_SEMVER] = self.model_version
            run = client.create_run(experiment_id, tags=tags, run_name=f"{self.model_name}-performance")
            self._mlflow_run_id = run.info.run_id
        step = self._tracked - 1
        stamp = int(record.time.timestamp() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in record.metrics.items() if np.isfinite(v)]
        client.log_batch(self._mlflow_run_id, metrics=metrics)

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run tracked performance is logged to (None until the first logged record)."""
        return self._mlflow_run_id


def strip_feature_prefix(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename prediction log columns ``feature.<name>`` to ``<name>`` and drop the log's other
    columns; a frame without such columns is returned unchanged."""
    features = [c for c in frame.columns if str(c).startswith(LOG_FEATURE_PREFIX)]
    if not features:
        return frame
    return frame[features].rename(columns={c: str(c)[len(LOG_FEATURE_PREFIX) :] for c in features})
