"""The promotion gate: one pure function deciding whether a version may take a stage.

Used by :meth:`modelops.registry.versioning.ModelVersionManager.should_promote` (the original
document's API) and by the operator's ModelVersion reconcile (``spec.promotion``). It does no I/O.

Rules, in order:

1. the candidate must have the metric (a finite number);
2. with ``min_value``: the metric must reach it (``>=`` when maximizing, ``<=`` when minimizing);
3. with an incumbent (the version holding the stage, with a finite value): the improvement
   (``value - incumbent`` when maximizing, ``incumbent - value`` when minimizing) must be at least
   ``min_improvement``; in ``relative`` mode the improvement is divided by ``|incumbent|`` first.
   ``min_improvement = 0`` means "not worse". Comparisons allow a 1e-9 tolerance so that
   ``0.91 - 0.90`` passes a 0.01 requirement despite floating-point rounding;
4. without an incumbent the gate passes once rules 1 and 2 hold.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

Direction = Literal["maximize", "minimize"]
ImprovementMode = Literal["absolute", "relative"]

#: Metrics where lower is better (besides any name containing "time", "latency" or "error").
MINIMIZE_METRICS = frozenset({"rmse", "mae", "mse", "log_loss", "logloss", "mape", "max_error"})
_MINIMIZE_WORDS = ("time", "latency", "error", "loss")
_TOLERANCE = 1e-9


def infer_direction(metric: str) -> Direction:
    """``minimize`` for error, loss and time metrics (rmse, mae, mse, log_loss, *time*, *latency*), else maximize."""
    name = metric.lower()
    if name in MINIMIZE_METRICS or any(word in name for word in _MINIMIZE_WORDS):
        return "minimize"
    return "maximize"


class GateResult(BaseModel):
    """Outcome of :func:`evaluate_gate`; ``reason`` is a sentence with the numbers compared."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reason: str
    metric: str
    value: float | None
    direction: Direction
    min_value: float | None = None
    incumbent_version: str | None = None
    incumbent_value: float | None = None
    improvement: float | None = None
    """Improvement over the incumbent in the gate's mode (absolute units or a fraction); None without one."""


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and not math.isinf(x)


def evaluate_gate(
    value: float | None,
    *,
    metric: str,
    min_value: float | None = None,
    incumbent_value: float | None = None,
    incumbent_version: str | None = None,
    min_improvement: float = 0.0,
    mode: ImprovementMode = "absolute",
    direction: Direction | None = None,
) -> GateResult:
    """Decide whether a candidate with ``metric = value`` may take a stage (see the module docstring).

    Args:
        value: the candidate's metric value; None or NaN fails the gate.
        metric: metric name, used in the reason and to infer the direction.
        min_value: absolute bound the value must reach, or None for no bound.
        incumbent_value: metric value of the version currently holding the stage, or None.
        incumbent_version: that version's name (a semantic version), for the reason.
        min_improvement: required improvement over the incumbent (>= 0).
        mode: ``absolute`` (metric units) or ``relative`` (fraction of ``|incumbent_value|``).
        direction: ``maximize`` / ``minimize``; None infers it with :func:`infer_direction`.

    Returns:
        A :class:`GateResult`. Raises ``ValueError`` only for a negative ``min_improvement``
        or an unknown ``mode``/``direction``.
    """
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be >= 0, got {min_improvement}")
    if mode not in ("absolute", "relative"):
        raise ValueError(f"mode must be 'absolute' or 'relative', got {mode!r}")
    resolved: Direction = direction or infer_direction(metric)
    if resolved not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    better = ">=" if resolved == "maximize" else "<="
    common = {
        "metric": metric,
        "direction": resolved,
        "min_value": min_value,
        "incumbent_version": incumbent_version,
        "incumbent_value": incumbent_value,
    }

    if value is None or not _finite(value):
        shown = "missing" if value is None else _fmt(value)
        return GateResult(passed=False, value=value, reason=f"metric {metric} is {shown} for this version", **common)

    if min_value is not None:
        ok = value >= min_value - _TOLERANCE if resolved == "maximize" else value <= min_value + _TOLERANCE
        if not ok:
            return GateResult(
                passed=False,
                value=value,
                reason=f"{metric} {_fmt(value)} does not reach the minimum ({better} {_fmt(min_value)})",
                **common,
            )
    bound = f" and meets the minimum ({better} {_fmt(min_value)})" if min_value is not None else ""

    if incumbent_value is None or not _finite(incumbent_value):
        return GateResult(
            passed=True,
            value=value,
            reason=(
                f"{metric} {_fmt(value)}{bound}; incumbent {incumbent_version} has no {metric} value"
                if incumbent_version
                else f"{metric} {_fmt(value)}{bound}; no incumbent to compare with"
            ),
            **common,
        )

    delta = value - incumbent_value if resolved == "maximize" else incumbent_value - value
    if mode == "relative":
        if incumbent_value == 0:
            improvement = math.copysign(math.inf, delta) if delta != 0 else 0.0
        else:
            improvement = delta / abs(incumbent_value)
        shown_improvement = f"{improvement:+.4%}"
        shown_required = f"{min_improvement:.4%}"
    else:
        improvement = delta
        shown_improvement = f"{improvement:+.6g}"
        shown_required = _fmt(min_improvement)
    passed = improvement >= min_improvement - _TOLERANCE
    who = f"incumbent {incumbent_version}" if incumbent_version else "incumbent"
    verdict = "meets" if passed else "is below"
    reason = (
        f"{metric} {_fmt(value)} vs {_fmt(incumbent_value)} ({who}): improvement {shown_improvement} "
        f"{verdict} the required {shown_required} ({mode}, {resolved}){bound if passed else ''}"
    )
    return GateResult(passed=passed, value=value, reason=reason, improvement=improvement, **common)
