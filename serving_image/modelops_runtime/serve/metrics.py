"""Prometheus metrics of the model server (names from the original system document, via the contract).

* ``ml_predictions_total{model_name, model_version, prediction_class}`` — predicted rows, by class
  (``prediction_class`` is empty for regressors);
* ``ml_prediction_latency_seconds{model_name, model_version}`` — histogram of the server-side time
  of each successful infer request (parsing, prediction, encoding), 50 µs to 5 s buckets;
* ``ml_prediction_errors_total{model_name, error_type}`` — failed infer requests, ``error_type``
  from :mod:`.errors` (``internal`` and ``not_ready`` are server-side, 5xx; the others are client
  errors, 4xx); every type exists at 0 from the start;
* ``modelops_prediction_log_rows_total{outcome}`` — prediction-log rows ``written``/``dropped``;
* the process and platform collectors (CPU, RSS, open fds, GC, Python version).

Each server gets its own :class:`~prometheus_client.CollectorRegistry`, so tests can run several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from modelops.contract import PROM_ERRORS, PROM_LATENCY, PROM_PREDICTIONS

from .errors import error_types

#: Latency buckets in seconds: 50 µs … 5 s, roughly x2 to x2.5 per step.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


def _base_name(name: str) -> str:
    """prometheus-client adds ``_total`` to counters itself."""
    return name[: -len("_total")] if name.endswith("_total") else name


class _LogRowsCollector(Collector):
    def __init__(self, stats: Callable[[], tuple[int, int] | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._stats()
        if stats is None:
            return
        family = CounterMetricFamily(
            "modelops_prediction_log_rows", "Prediction log rows written or dropped.", labels=["outcome"]
        )
        family.add_metric(["written"], stats[0])
        family.add_metric(["dropped"], stats[1])
        yield family


class ServerMetrics:
    """The server's Prometheus registry and pre-bound metric children for the hot path.

    Args:
        model_name, model_version: label values (the semantic version).
        log_stats: returns (rows written, rows dropped) of the prediction log, or None when off.
    """

    def __init__(
        self, model_name: str, model_version: str, log_stats: Callable[[], tuple[int, int] | None] | None = None
    ) -> None:
        # The *_created series double the exposition for nothing a dashboard uses (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        if log_stats is not None:
            self.registry.register(_LogRowsCollector(log_stats))
        self.model_name = model_name
        self.model_version = model_version
        self.predictions = Counter(
            _base_name(PROM_PREDICTIONS),
            "Predicted rows by predicted class.",
            ["model_name", "model_version", "prediction_class"],
            registry=self.registry,
        )
        self.latency = Histogram(
            PROM_LATENCY,
            "Server-side latency of successful infer requests in seconds.",
            ["model_name", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            _base_name(PROM_ERRORS),
            "Failed infer requests by error type (internal = server fault).",
            ["model_name", "error_type"],
            registry=self.registry,
        )
        self._latency = self.latency.labels(model_name, model_version)
        self._by_class: dict[Any, Any] = {}
        # Every error series exists at 0 from the start: a counter first seen at 1 shows no
        # increase to Prometheus, so the first errors would never reach rate() or an alert.
        for error_type in error_types():
            self.errors.labels(model_name, error_type)

    def set_classes(self, classes: list[Any] | None) -> None:
        """Pre-create the prediction counters at 0, one per class (``None``: a regressor's unlabelled one),
        so each series exists before its first prediction and rate() counts that one too."""
        for cls in [None] if classes is None else classes:
            self._class_counter(cls)

    def _class_counter(self, cls: Any) -> Any:
        child = self._by_class.get(cls)
        if child is None:
            label = "" if cls is None else str(cls)
            child = self._by_class[cls] = self.predictions.labels(self.model_name, self.model_version, label)
        return child

    def observe(self, predictions: np.ndarray, seconds: float, classifier: bool) -> None:
        """Count a successful request's predicted rows (by class for classifiers) and its latency."""
        self._latency.observe(seconds)
        if not classifier:
            self._class_counter(None).inc(len(predictions))
        elif len(predictions) == 1:
            self._class_counter(
                predictions[0].item() if isinstance(predictions[0], np.generic) else predictions[0]
            ).inc()
        else:
            values, counts = np.unique(predictions, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self._class_counter(value).inc(count)

    def error(self, error_type: str) -> None:
        """Count one failed request."""
        self.errors.labels(self.model_name, error_type).inc()

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)
