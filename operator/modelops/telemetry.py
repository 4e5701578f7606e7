"""Operator Prometheus metrics (the operator's own ``/metrics``).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms, base units).
``ml_drift_detections_total`` and ``ml_model_accuracy`` are the original system document's names;
they carry the ``namespace`` of the monitored model (the ServiceMonitor keeps it with
``honorLabels``), so two models of the same name in two namespaces stay apart.

A counter series that appears at its first increment never shows an increase to Prometheus
(``increase()`` needs an earlier sample), so an alert on it would not fire. The drift counter's
label sets are therefore created at 0 as soon as a ModelMonitor is known, a rollout's decision
counters with its first decision, and an increment of a label set that no collection has shown yet
waits for the next one (:class:`ZeroFirstCounter`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .api.modelversion import RolloutAction
from .contract import PROM_ACCURACY, PROM_DRIFT

#: ``drift_type`` of the drift counter: the drift job compares input feature distributions.
DRIFT_TYPE_DATA = "data"
#: The kinds the operator reconciles and the reasons of failed reconciles known in advance
#: (``HTTP<status>`` reasons are created when they occur); their series start at 0.
KINDS = ("ModelVersion", "ModelMonitor")
REASON_REGISTRY = "RegistryUnavailable"
REASON_KUBERNETES = "KubernetesUnavailable"


class ZeroFirstCounter(Collector):
    """A labelled counter whose every label set is collected at 0 at least once before it counts.

    ``init(*labels)`` creates a label set at 0; ``inc(*labels)`` adds to it, but while no
    collection (a scrape of ``/metrics``) has shown the label set yet, the increment is held and
    applied right after the next collection. So Prometheus sees 0 then 1, and ``increase()``
    reports the first event too (also the first one after an operator restart).

    Args:
        name: metric name without ``_total`` (added on exposition, as prometheus-client does).
        documentation: HELP text.
        labelnames: label names, in the order ``init``/``inc`` take the values.
        registry: where to register.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._held: dict[tuple[str, ...], float] = {}
        self._shown: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()
        registry.register(self)

    def _key(self, labels: Sequence[str]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self._name}: expected labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def init(self, *labels: str) -> None:
        """Create the label set at 0 (no-op when it exists)."""
        with self._lock:
            self._values.setdefault(self._key(labels), 0.0)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the label set; held until a collection has shown it at its old value."""
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)
            if key in self._shown:
                self._values[key] += amount
            else:
                self._held[key] = self._held.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        """The value the next collection shows (0 for an unknown label set)."""
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def describe(self) -> Iterator[CounterMetricFamily]:
        """The family without samples (for the registry's duplicate-name check)."""
        yield CounterMetricFamily(self._name, self._documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Expose every label set, then release the increments held for those now shown."""
        family = CounterMetricFamily(self._name, self._documentation, labels=self.labelnames)
        with self._lock:
            for key, value in self._values.items():
                family.add_metric(list(key), value)
            self._shown.update(self._values)
            for key, amount in self._held.items():
                self._values[key] += amount
            self._held.clear()
        yield family


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
        self.drift = ZeroFirstCounter(
            PROM_DRIFT,
            "Monitoring runs that detected drift (counted once per run).",
            ["namespace", "model_name", "drift_type"],
            registry=self.registry,
        )
        self.accuracy = Gauge(
            PROM_ACCURACY,
            "Latest accuracy of a served model version (feedback labels).",
            ["namespace", "model_name", "model_version"],
            registry=self.registry,
        )

        for kind in KINDS:
            for result in ("ok", "error"):
                self.reconciles.labels(kind, result)
            for reason in (REASON_REGISTRY, REASON_KUBERNETES):
                self.errors.labels(kind, reason)
            self.duration.labels(kind)

        self.rollout_decisions = ZeroFirstCounter(
            "modelops_rollout_decisions_total",
            "Rollout analysis decisions (Wait, NextStep, Promote, Abort, Pause), by model stage.",
            ["namespace", "model_name", "stage", "action"],
            registry=self.registry,
        )
        self.rollout_weight = Gauge(
            "modelops_rollout_weight",
            "Percent of live requests a rollout candidate answers (0 in shadow or after an abort, 100 promoted).",
            ["namespace", "model_name", "stage"],
            registry=self.registry,
        )
        self.rollout_window = Gauge(
            "modelops_rollout_window",
            "Latest rollout analysis numbers: side (candidate, incumbent, both) and quantity "
            "(requests, error_rate, latency_p95_seconds, accuracy, drift_share, agreement).",
            ["namespace", "model_name", "stage", "side", "quantity"],
            registry=self.registry,
        )

    def rollout_decided(self, namespace: str, model: str, stage: str, action: str, state: Any) -> None:
        """Count a rollout decision and set the weight and window gauges from ``state`` (a RolloutStatus).

        Every action of the stage starts at 0 with its first decision, and that decision is held
        until a scrape has shown the 0 (:class:`ZeroFirstCounter`), so the dashboard's
        ``increase()`` shows the first Abort or Promote of a stage too."""
        for known in get_args(RolloutAction):
            self.rollout_decisions.init(namespace, model, stage, known)
        self.rollout_decisions.inc(namespace, model, stage, action)
        self.rollout_weight.labels(namespace, model, stage).set(state.weight)
        drift = state.drift
        if drift is not None:
            for side, share in (("candidate", drift.candidate_share), ("incumbent", drift.incumbent_share)):
                if share is not None:
                    self.rollout_window.labels(namespace, model, stage, side, "drift_share").set(share)
        numbers = state.analysis
        if numbers is None:
            return
        for side in ("candidate", "incumbent"):
            values = getattr(numbers, side)
            for quantity, value in (
                ("requests", values.requests),
                ("error_rate", values.error_rate),
                ("latency_p95_seconds", None if values.latency_p95_ms is None else values.latency_p95_ms / 1000),
                ("accuracy", values.accuracy),
            ):
                if value is not None:
                    self.rollout_window.labels(namespace, model, stage, side, quantity).set(value)
        if numbers.agreement is not None:
            self.rollout_window.labels(namespace, model, stage, "both", "agreement").set(numbers.agreement)

    def monitor_known(self, namespace: str, model: str) -> None:
        """Create the drift series of a monitored model at 0 (every ModelMonitor reconcile calls it)."""
        self.drift.init(namespace, model, DRIFT_TYPE_DATA)

    def drift_detected(self, namespace: str, model: str) -> None:
        """Count one monitoring run that detected drift."""
        self.drift.inc(namespace, model, DRIFT_TYPE_DATA)

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
