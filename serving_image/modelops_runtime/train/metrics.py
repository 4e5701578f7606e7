"""Evaluation metrics and the training data profile.

Metric names (logged to MLflow, copied into the ModelVersion status):

* classification: ``accuracy``; ``precision_macro``, ``recall_macro``, ``f1_macro``;
  ``precision_weighted``, ``recall_weighted``, ``f1_weighted``; the original document's
  ``precision``, ``recall`` and ``f1_score`` (equal to the weighted averages); ``roc_auc`` for
  binary problems when the model has ``predict_proba`` or ``decision_function``;
* regression: ``r2``, ``rmse``, ``mae``;
* both: ``training_time_s`` (fit wall time, seconds) and ``inference_time_ms`` (prediction wall
  time on the test split divided by its rows, milliseconds per row).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from .pipeline import Task


def classification_metrics(y_true: Any, y_pred: Any, y_score: Any | None = None) -> dict[str, float]:
    """Accuracy, macro/weighted precision, recall, F1 (zero_division=0) and binary ROC AUC.

    ``y_score`` is the positive-class score (``predict_proba[:, 1]`` or ``decision_function``) for a
    binary problem, else None (no ``roc_auc``).
    """
    out = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        out[f"precision_{average}"] = float(precision)
        out[f"recall_{average}"] = float(recall)
        out[f"f1_{average}"] = float(f1)
    out["precision"] = out["precision_weighted"]
    out["recall"] = out["recall_weighted"]
    out["f1_score"] = out["f1_weighted"]
    if y_score is not None and len(np.unique(y_true)) == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y_true, y_score))
    return out


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """R², root mean squared error and mean absolute error (label units)."""
    return {
        "r2": float(skm.r2_score(y_true, y_pred)),
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
    }


def binary_score(model: Any, x: pd.DataFrame, classes: list[Any]) -> Any | None:
    """Score of the second class for ROC AUC when the problem is binary and the model can score; else None."""
    if len(classes) != 2:
        return None
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)[:, 1]
    if hasattr(model, "decision_function"):
        return model.decision_function(x)
    return None


def evaluate(task: Task, model: Any, x_test: pd.DataFrame, y_test: pd.Series) -> tuple[dict[str, float], Any]:
    """Metrics of a fitted model on the test split (see the module docstring) and its predictions.

    Adds ``inference_time_ms`` (per row) measured around ``predict`` only.
    """
    import time

    start = time.perf_counter()
    y_pred = model.predict(x_test)
    elapsed = time.perf_counter() - start
    if task == "classification":
        classes = list(getattr(model, "classes_", []))
        result = classification_metrics(y_test, y_pred, binary_score(model, x_test, classes))
    else:
        result = regression_metrics(y_test, y_pred)
    result["inference_time_ms"] = elapsed * 1000.0 / max(len(x_test), 1)
    return result, y_pred


def _number(x: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    value = float(x)
    return value if math.isfinite(value) else None


def profile_frame(frame: pd.DataFrame, top: int = 10) -> dict[str, Any]:
    """Per-column profile: dtype, missing share (0-1), and stats.

    Numeric columns: count, mean, std, min, p25, p50, p75, max. Others: distinct count and the
    ``top`` most frequent values with their counts. Shape: ``{"rows": n, "columns": {name: {...}}}``.
    """
    columns: dict[str, Any] = {}
    rows = len(frame)
    for name in frame.columns:
        series = frame[name]
        entry: dict[str, Any] = {
            "dtype": str(series.dtype),
            "missing_share": float(series.isna().mean()) if rows else 0.0,
        }
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = pd.to_numeric(series, errors="coerce").dropna()
            if len(values):
                q = values.quantile([0.25, 0.5, 0.75])
                entry.update(
                    kind="numeric",
                    count=int(values.count()),
                    mean=_number(values.mean()),
                    std=_number(values.std()) if len(values) > 1 else None,
                    min=_number(values.min()),
                    p25=_number(q.loc[0.25]),
                    p50=_number(q.loc[0.5]),
                    p75=_number(q.loc[0.75]),
                    max=_number(values.max()),
                )
            else:
                entry.update(kind="numeric", count=0)
        else:
            counts = series.astype(object).dropna().astype(str).value_counts()
            entry.update(
                kind="categorical",
                count=int(counts.sum()),
                distinct=len(counts),
                top={str(k): int(v) for k, v in counts.head(top).items()},
            )
        columns[str(name)] = entry
    return {"rows": rows, "columns": columns}
