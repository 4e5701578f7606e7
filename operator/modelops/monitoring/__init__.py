"""Monitoring library: drift, health, the ModelMonitor API of the original system document.

No kopf import; usable from a notebook. Evidently is imported lazily (only when drift is computed).
"""

from .drift import ColumnResult, DriftResult, detect_drift
from .health import HealthReport, compute_health, performance_trend
from .monitor import ModelMonitor, strip_feature_prefix
from .window import parse_duration

__all__ = [
    "ColumnResult",
    "DriftResult",
    "HealthReport",
    "ModelMonitor",
    "compute_health",
    "detect_drift",
    "parse_duration",
    "performance_trend",
    "strip_feature_prefix",
]
