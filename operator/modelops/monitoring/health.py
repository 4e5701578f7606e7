"""Health of a served model from a window of its prediction log (and feedback labels).

:func:`compute_health` turns the prediction log rows of a window (the layout of
:data:`modelops.contract.LOG_COLUMNS`) and optional feedback (``request_id``, ``label``) into
counts, latency percentiles, error rate and accuracy, compares them with a
:class:`~modelops.api.modelmonitor.HealthSpec` and gives a verdict. :func:`performance_trend`
classifies a metric's history as improving, stable or degrading.

Verdict rule (each breached limit adds one issue):

- ``unknown``: no predictions in the window and no accuracy (nothing to judge).
- ``unhealthy``: p95 latency above twice ``max_latency_p95_ms``; error rate above twice
  ``max_error_rate`` (so with ``max_error_rate: 0`` any error); accuracy more than
  :data:`ACCURACY_CRITICAL_MARGIN` below ``min_accuracy``.
- ``degraded``: any other breached limit, or a degrading accuracy trend.
- ``healthy``: none of the above.

No kopf import; usable from a notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..api.modelmonitor import HealthSpec, HealthStatus
from ..contract import LOG_STATUS_OK

HealthVerdict = Literal["healthy", "degraded", "unhealthy", "unknown"]
Trend = Literal["improving", "stable", "degrading", "unknown"]

#: Trend tolerance: the newest value must differ from the mean of the previous ones by more than this.
TREND_TOLERANCE = 0.02
#: Accuracy this far (absolute) below ``min_accuracy`` makes the model unhealthy rather than degraded.
ACCURACY_CRITICAL_MARGIN = 0.10
#: Metric names (as tracked by ModelMonitor) for which lower values are better.
LOWER_IS_BETTER = frozenset({"error_rate", "log_loss", "mae", "mse", "rmse", "latency_p95_ms", "latency_p50_ms"})


class HealthReport(BaseModel):
    """Health of one window: the numbers, the verdict and why.

    Latencies are milliseconds per request (a batch request counts once, see
    :func:`request_keys`); ``error_rate`` is failed requests (``status`` other than
    :data:`~modelops.contract.LOG_STATUS_OK`) over all requests;
    ``accuracy`` is the share of successful predictions whose feedback label equals the
    prediction, over ``labelled`` such predictions (None without feedback or for regression).
    ``trend`` compares ``accuracy`` with ``previous_accuracy`` (see :func:`performance_trend`).
    """

    model_config = ConfigDict(extra="forbid")

    status: HealthVerdict = "unknown"
    issues: list[str] = Field(default_factory=list)
    predictions: int = Field(default=0, description="Logged prediction rows.")
    requests: int = Field(default=0, description="Requests the rows came with (a batch request logs many rows).")
    errors: int = 0
    error_rate: float | None = None
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    accuracy: float | None = None
    labelled: int = 0
    trend: Trend = "unknown"
    previous_accuracy: list[float] = Field(default_factory=list, description="Oldest first.")

    def to_status(self) -> HealthStatus:
        """The ModelMonitor ``status.health`` shape of this report."""
        return HealthStatus(
            status=self.status,
            issues=self.issues[:50],
            predictions=self.predictions,
            latency_p50_ms=self.latency_p50_ms,
            latency_p95_ms=self.latency_p95_ms,
            error_rate=self.error_rate,
            accuracy=self.accuracy,
            trend=self.trend,
        )


def performance_trend(
    values: Sequence[float | None], *, tolerance: float = TREND_TOLERANCE, higher_is_better: bool = True
) -> Trend:
    """Direction of a metric over time; ``values`` are oldest first, the last one is the newest.

    Rule: compare the newest value with the mean of the earlier ones (missing values dropped).
    A difference above ``tolerance`` (absolute, in the metric's unit) in the good direction is
    ``improving``, in the bad direction ``degrading``, otherwise ``stable``. Fewer than two
    values, or a missing newest value, gives ``unknown``. Last-versus-mean is used rather than a
    fitted slope because monitoring histories are short (a handful of runs) and a slope over
    them swings with one noisy point.
    """
    if not values or values[-1] is None:
        return "unknown"
    earlier = [float(v) for v in values[:-1] if v is not None and np.isfinite(v)]
    if not earlier:
        return "unknown"
    delta = float(values[-1]) - float(np.mean(earlier))
    if not higher_is_better:
        delta = -delta
    if delta > tolerance:
        return "improving"
    if delta < -tolerance:
        return "degrading"
    return "stable"


def labels_match(predictions: pd.Series, labels: pd.Series) -> pd.Series:
    """Element-wise equality of predictions and labels, numerically when both parse as numbers.

    The prediction log and feedback may carry the same class as ``1``, ``1.0`` or ``"1"``; pairs
    that are both numeric compare as floats, the others as stripped strings. Missing is unequal.
    """
    left = pd.to_numeric(predictions, errors="coerce")
    right = pd.to_numeric(labels, errors="coerce")
    numeric = left.notna() & right.notna()
    as_text = predictions.astype(str).str.strip() == labels.astype(str).str.strip()
    out = as_text.where(~numeric, left == right)
    return out & predictions.notna() & labels.notna()


def compute_health(
    predictions: pd.DataFrame,
    spec: HealthSpec | None = None,
    *,
    feedback: pd.DataFrame | None = None,
    previous_accuracy: Sequence[float | None] = (),
    task: str | None = None,
) -> HealthReport:
    """Health of a window of the prediction log: :func:`measure_window` then :func:`judge_health`.

    - ``predictions``: rows of the log (needs ``latency_ms`` and ``status``; ``request_id`` and
      ``prediction`` for accuracy). An empty frame gives ``unknown``.
    - ``feedback``: ``request_id``, ``label`` (the newest label per request wins).
    - ``previous_accuracy``: accuracy of earlier runs, oldest first, for the trend.
    - ``task``: ``"regression"`` skips accuracy (labels are not classes).

    Raises ``KeyError`` when a non-empty ``predictions`` lacks ``latency_ms`` or ``status``.
    """
    return judge_health(measure_window(predictions, feedback=feedback, task=task), spec, previous_accuracy)


def measure_window(
    predictions: pd.DataFrame, *, feedback: pd.DataFrame | None = None, task: str | None = None
) -> HealthReport:
    """The numbers of a window (counts, latency, error rate, accuracy); the verdict is left ``unknown``.

    Accuracy joins ``feedback`` on ``request_id`` with the successful predictions and compares
    with :func:`labels_match`. Raises ``KeyError`` when a non-empty ``predictions`` lacks
    ``latency_ms`` or ``status`` (or ``request_id``/``prediction`` when feedback is given).
    """
    report = HealthReport(predictions=len(predictions))
    if predictions.empty:
        return report
    ok = predictions["status"].astype(str).str.lower() == LOG_STATUS_OK
    requests = predictions[["status", "latency_ms"]]
    if "request_id" in predictions.columns:
        keys = request_keys(predictions["request_id"])
        if keys is not None:
            requests = requests[~keys.duplicated().to_numpy()]
    request_ok = requests["status"].astype(str).str.lower() == LOG_STATUS_OK
    report.requests = len(requests)
    report.errors = int((~request_ok).sum())
    report.error_rate = report.errors / len(requests)
    latency = pd.to_numeric(requests["latency_ms"], errors="coerce").dropna().to_numpy(dtype=float)
    if latency.size:
        report.latency_mean_ms = float(latency.mean())
        report.latency_p50_ms = float(np.percentile(latency, 50))
        report.latency_p95_ms = float(np.percentile(latency, 95))
    if feedback is not None and not feedback.empty and task != "regression":
        served = predictions.loc[ok, ["request_id", "prediction"]]
        labels = feedback.drop_duplicates("request_id", keep="last")[["request_id", "label"]]
        joined = served.merge(labels, on="request_id", how="inner")
        report.labelled = len(joined)
        if len(joined):
            report.accuracy = float(labels_match(joined["prediction"], joined["label"]).mean())
    return report


def request_keys(request_ids: pd.Series) -> pd.Series | None:
    """The request each log row came with: ``<id>:<i>`` rows of a batch request map to ``<id>``;
    None when no id has the batch form (every row is its own request: nothing to group).

    The server logs a request of n > 1 rows as request ids ``<id>:0`` ... ``<id>:<n-1>`` with the
    request's latency and status on every row (see :mod:`modelops.monitoring.prediction_log`).
    """
    ids = request_ids.astype(str)
    if not ids.str.contains(":", regex=False).any():
        return None
    return ids.str.replace(r":\d+$", "", regex=True)


def judge_health(
    report: HealthReport, spec: HealthSpec | None = None, previous_accuracy: Sequence[float | None] = ()
) -> HealthReport:
    """Set ``trend``, ``issues`` and ``status`` of ``report`` (in place, also returned) by the module's rule.

    ``unknown`` when there were no predictions and no accuracy to judge; otherwise each breached
    limit of ``spec`` is an issue, and a degrading accuracy trend against ``previous_accuracy``
    (oldest first) is one too.
    """
    spec = spec or HealthSpec()
    previous = [float(v) for v in previous_accuracy if v is not None]
    report.previous_accuracy = previous
    report.issues = []
    report.trend = performance_trend([*previous, report.accuracy]) if report.accuracy is not None else "unknown"
    if report.predictions == 0 and report.accuracy is None:
        report.status = "unknown"
        report.issues.append("no predictions in the window")
        return report

    critical = False
    if report.latency_p95_ms is not None and report.latency_p95_ms > spec.max_latency_p95_ms:
        report.issues.append(
            f"high prediction latency: p95 {report.latency_p95_ms:.1f} ms > {spec.max_latency_p95_ms:g} ms"
        )
        critical |= report.latency_p95_ms > 2 * spec.max_latency_p95_ms
    if report.error_rate is not None and report.error_rate > spec.max_error_rate:
        report.issues.append(f"error rate spike: {report.error_rate:.1%} > {spec.max_error_rate:.1%}")
        critical |= report.error_rate > 2 * spec.max_error_rate
    if spec.min_accuracy is not None and report.accuracy is not None and report.accuracy < spec.min_accuracy:
        report.issues.append(f"accuracy decline: {report.accuracy:.3f} < {spec.min_accuracy:.3f}")
        critical |= report.accuracy < spec.min_accuracy - ACCURACY_CRITICAL_MARGIN
    if report.trend == "degrading":
        report.issues.append(
            f"performance degradation: accuracy {report.accuracy:.3f} vs {float(np.mean(previous)):.3f} before"
        )
    report.status = "unhealthy" if critical else ("degraded" if report.issues else "healthy")
    return report
