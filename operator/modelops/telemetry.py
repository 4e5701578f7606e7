"""Operator Prometheus metrics (the operator's own ``/metrics``).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms, base units).
``ml_drift_detections_total`` and ``ml_model_accuracy`` are the original system document's names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .contract import PROM_ACCURACY, PROM_DRIFT


class OperatorMetrics:
    """The operator's metric families, registered in their own ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "modelops_reconcile_total",
            "Reconciles run, by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "modelops_reconcile_errors_total",
            "Reconciles that failed, by kind and reason.",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "modelops_reconcile_duration_seconds",
            "Reconcile wall time, seconds.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.drift = Counter(
            PROM_DRIFT,
            "Monitoring runs that detected drift (counted once per run).",
            ["model_name", "drift_type"],
            registry=self.registry,
        )
        self.accuracy = Gauge(
            PROM_ACCURACY,
            "Latest accuracy of a served model version (feedback labels).",
            ["model_name", "model_version"],
            registry=self.registry,
        )

    @contextmanager
    def reconcile_timer(self, kind: str) -> Iterator[None]:
        """Time one reconcile and count it as ``ok`` or ``error``."""
        start = time.perf_counter()
        result = "error"
        try:
            yield
            result = "ok"
        finally:
            self.duration.labels(kind).observe(time.perf_counter() - start)
            self.reconciles.labels(kind, result).inc()

    def reconcile_error(self, kind: str, reason: str) -> None:
        """Count a failed reconcile by reason (e.g. RegistryUnavailable)."""
        self.errors.labels(kind, reason).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``port`` in a background thread (0 disables)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)
