"""Monitoring library: drift, health, the prediction log and the original document's ModelMonitor API.

``from modelops.monitoring import PredictionLogger, ModelMonitor`` replaces the document's
``from ml.monitoring import PredictionLogger, ModelMonitor``. No kopf import; usable from a
notebook. Evidently is imported lazily (only when drift is computed).
"""

from .drift import ColumnResult, DriftResult, detect_drift
from .health import HealthReport, compute_health, performance_trend
from .monitor import ModelMonitor, strip_feature_prefix
from .prediction_log import PredictionLogger, read_feedback, read_prediction_log
from .window import parse_duration

__all__ = [
    "ColumnResult",
    "DriftResult",
    "HealthReport",
    "ModelMonitor",
    "PredictionLogger",
    "compute_health",
    "detect_drift",
    "parse_duration",
    "performance_trend",
    "read_feedback",
    "read_prediction_log",
    "strip_feature_prefix",
]
