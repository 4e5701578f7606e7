"""Prometheus metrics of the model server (names from the original system document, via the contract).

* ``ml_predictions_total{model_name, model_version, prediction_class}`` — predicted rows, by class
  (``prediction_class`` is empty for regressors);
* ``ml_prediction_latency_seconds{model_name, model_version}`` — histogram of the server-side time
  of each successful infer request (parsing, prediction, encoding), 50 µs to 5 s buckets;
* ``ml_prediction_errors_total{model_name, error_type}`` — failed infer requests, ``error_type``
  from :mod:`.errors` (``internal`` and ``not_ready`` are server-side, 5xx; the others are client
  errors, 4xx); every type exists at 0 from the start;
* ``modelops_prediction_log_rows_total{outcome}`` — prediction-log rows ``written``/``dropped``;
* ``modelops_batch_rows`` — histogram of the rows of each merged predict call (adaptive batching on);
* the process and platform collectors (CPU, RSS, open fds, GC, Python version).

Each server gets its own :class:`~prometheus_client.CollectorRegistry`, so tests can run several.

With several server processes per pod (:mod:`.workers`) the metrics use prometheus-client's
multiprocess mode: every worker writes its values to memory-mapped files in the directory
``PROMETHEUS_MULTIPROC_DIR``, and a scrape answered by any worker sums the files of every worker that
ever ran in the pod, so counters keep the counts of a worker that died and never go down. Per-process
collectors cannot be summed that way (a dead worker's CPU seconds would vanish from a sum): in that
mode ``process_*`` and ``python_gc_*`` are not exported; use the container's metrics (cAdvisor).
"""

from __future__ import annotations

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
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

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
#: Rows per merged predict call (adaptive batching): 1 … 1024.
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Outcomes of ``modelops_prediction_log_rows_total`` (the prediction logger's ``on_rows`` names).
LOG_ROW_OUTCOMES = ("written", "dropped")


def base_name(name: str) -> str:
    """prometheus-client adds ``_total`` to counters itself."""
    return name[: -len("_total")] if name.endswith("_total") else name


class ServerMetrics:
    """The server's Prometheus registry and pre-bound metric children for the hot path.

    Args:
        model_name, model_version: label values (the semantic version).
        prediction_log: the prediction log is on (its rows are counted through :meth:`count_log_rows`).
        batching: adaptive batching is on (merged calls are observed through :meth:`observe_batch`).
        multiprocess_dir: the ``PROMETHEUS_MULTIPROC_DIR`` of a multi-worker pod (see the module
            docstring); prometheus-client must have been imported with that variable set. None: this
            process's values only.
    """

    def __init__(
        self,
        model_name: str,
        model_version: str,
        *,
        prediction_log: bool = False,
        batching: bool = False,
        multiprocess_dir: str | None = None,
    ) -> None:
        # The *_created series double the exposition for nothing a dashboard uses (process-wide switch).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        PlatformCollector(registry=self.registry)
        if multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            own: CollectorRegistry | None = self.registry
        else:
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            own = None  # values live in the files; the collector above exposes the pod's sums
        self.model_name = model_name
        self.model_version = model_version
        self.predictions = Counter(
            base_name(PROM_PREDICTIONS),
            "Predicted rows by predicted class.",
            ["model_name", "model_version", "prediction_class"],
            registry=own,
        )
        self.latency = Histogram(
            PROM_LATENCY,
            "Server-side latency of successful infer requests in seconds.",
            ["model_name", "model_version"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.errors = Counter(
            base_name(PROM_ERRORS),
            "Failed infer requests by error type (internal = server fault).",
            ["model_name", "error_type"],
            registry=own,
        )
        self.log_rows = None
        if prediction_log:
            self.log_rows = Counter(
                "modelops_prediction_log_rows", "Prediction log rows written or dropped.", ["outcome"], registry=own
            )
            for outcome in LOG_ROW_OUTCOMES:
                self.log_rows.labels(outcome)
        self._batch_rows = (
            Histogram(
                "modelops_batch_rows", "Rows per merged predict call (adaptive batching).", buckets=BATCH_ROWS_BUCKETS,
                registry=own,
            )
            if batching
            else None
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

    def count_log_rows(self, outcome: str, n_rows: int) -> None:
        """Count prediction-log rows ``written`` or ``dropped`` (the logger's ``on_rows`` hook)."""
        if self.log_rows is not None:
            self.log_rows.labels(outcome).inc(n_rows)

    def observe_batch(self, n_rows: int) -> None:
        """Record the rows of one merged predict call."""
        if self._batch_rows is not None:
            self._batch_rows.observe(n_rows)

    def error(self, error_type: str) -> None:
        """Count one failed request."""
        self.errors.labels(self.model_name, error_type).inc()

    def render(self) -> bytes:
        """The exposition text for ``GET /metrics``."""
        return generate_latest(self.registry)
