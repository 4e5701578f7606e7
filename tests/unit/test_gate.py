"""The promotion gate: a pure function, tested as tables."""

from __future__ import annotations

import math

import pytest

from modelops.registry.gate import evaluate_gate, infer_direction


@pytest.mark.parametrize(
    ("metric", "direction"),
    [
        ("accuracy", "maximize"),
        ("f1_macro", "maximize"),
        ("r2", "maximize"),
        ("roc_auc", "maximize"),
        ("rmse", "minimize"),
        ("mae", "minimize"),
        ("mse", "minimize"),
        ("log_loss", "minimize"),
        ("inference_time_ms", "minimize"),
        ("training_time_s", "minimize"),
        ("p95_latency", "minimize"),
        ("error_rate", "minimize"),
    ],
)
def test_direction_inference(metric: str, direction: str) -> None:
    assert infer_direction(metric) == direction


# value, min_value, incumbent, min_improvement, mode, direction, metric -> passed
GATE_TABLE = [
    # no incumbent: only the minimum matters
    (0.93, None, None, 0.0, "absolute", None, "accuracy", True),
    (0.93, 0.9, None, 0.5, "absolute", None, "accuracy", True),
    (0.85, 0.9, None, 0.0, "absolute", None, "accuracy", False),
    (0.9, 0.9, None, 0.0, "absolute", None, "accuracy", True),  # bound is inclusive
    # absolute improvement over an incumbent
    (0.93, None, 0.92, 0.01, "absolute", None, "accuracy", True),  # 0.93 - 0.92 rounds below 0.01
    (0.925, None, 0.92, 0.01, "absolute", None, "accuracy", False),
    (0.92, None, 0.92, 0.0, "absolute", None, "accuracy", True),  # zero means "not worse"
    (0.91, None, 0.92, 0.0, "absolute", None, "accuracy", False),
    # relative improvement
    (0.55, None, 0.5, 0.1, "relative", None, "accuracy", True),  # +10 %
    (0.54, None, 0.5, 0.1, "relative", None, "accuracy", False),  # +8 %
    (0.01, None, 0.0, 0.5, "relative", None, "accuracy", True),  # from zero: infinite gain
    # minimize metrics: lower wins, the bound is an upper bound
    (40.0, None, 45.0, 2.0, "absolute", None, "rmse", True),
    (44.0, None, 45.0, 2.0, "absolute", None, "rmse", False),
    (50.0, 48.0, None, 0.0, "absolute", None, "rmse", False),
    (40.0, None, 50.0, 0.2, "relative", None, "mae", True),  # 20 % lower
    # explicit direction beats inference
    (0.2, None, 0.3, 0.0, "absolute", "minimize", "custom_score", True),
    (0.2, None, 0.3, 0.0, "absolute", "maximize", "custom_score", False),
    # the bound applies even when the improvement is large
    (0.8, 0.85, 0.5, 0.1, "absolute", None, "accuracy", False),
]


@pytest.mark.parametrize(
    ("value", "min_value", "incumbent", "improvement", "mode", "direction", "metric", "passed"), GATE_TABLE
)
def test_gate_table(
    value: float,
    min_value: float | None,
    incumbent: float | None,
    improvement: float,
    mode: str,
    direction: str | None,
    metric: str,
    passed: bool,
) -> None:
    result = evaluate_gate(
        value,
        metric=metric,
        min_value=min_value,
        incumbent_value=incumbent,
        incumbent_version="1.2.0" if incumbent is not None else None,
        min_improvement=improvement,
        mode=mode,  # type: ignore[arg-type]
        direction=direction,  # type: ignore[arg-type]
    )
    assert result.passed is passed, result.reason
    assert f"{value:.6g}" in result.reason  # the candidate's number is in the reason
    if incumbent is not None and "does not reach the minimum" not in result.reason:
        assert f"{incumbent:.6g}" in result.reason and "1.2.0" in result.reason


def test_reason_names_both_numbers_and_the_rule() -> None:
    result = evaluate_gate(
        0.91, metric="accuracy", incumbent_value=0.92, incumbent_version="1.2.0", min_improvement=0.01
    )
    assert not result.passed
    assert result.reason == (
        "accuracy 0.91 vs 0.92 (incumbent 1.2.0): improvement -0.01 is below the required 0.01 (absolute, maximize)"
    )
    assert result.improvement == pytest.approx(-0.01)
    relative = evaluate_gate(0.55, metric="accuracy", incumbent_value=0.5, min_improvement=0.1, mode="relative")
    assert "improvement +10.0000% meets the required 10.0000%" in relative.reason


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_missing_or_non_finite_value_fails(value: float | None) -> None:
    result = evaluate_gate(value, metric="accuracy")
    assert not result.passed and "accuracy" in result.reason


def test_incumbent_without_the_metric_does_not_block() -> None:
    result = evaluate_gate(0.8, metric="f1_macro", incumbent_value=None, incumbent_version="1.0.0")
    assert result.passed and "incumbent 1.0.0 has no f1_macro value" in result.reason


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="min_improvement"):
        evaluate_gate(0.9, metric="accuracy", min_improvement=-0.1)
    with pytest.raises(ValueError, match="mode"):
        evaluate_gate(0.9, metric="accuracy", mode="percent")  # type: ignore[arg-type]
