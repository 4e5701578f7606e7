"""The rollout decision rules (modelops.rollout.decision) and feedback accuracy from the log
(modelops.rollout.analysis); the window numbers from /metrics are tested in test_rollout_window.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from modelops.api.modelversion import RolloutAnalysisStatus, RolloutSpec, WindowNumbers
from modelops.rollout.analysis import feedback_accuracy
from modelops.rollout.decision import Step, decide, failed_bounds, plan_steps, summary

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def canary(**analysis: object) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "strategy": "Canary",
            "shadow": {"sampleRate": 1.0, "pauseSeconds": 30},
            "steps": [{"weight": 10, "pauseSeconds": 60}, {"weight": 50, "pauseSeconds": 60}],
            "analysis": {"minRequests": 100, **analysis},
        }
    )


def numbers(
    cand_requests: int = 200,
    inc_requests: int = 1000,
    cand_errors: int = 0,
    inc_errors: int = 0,
    cand_p95: float = 5.0,
    inc_p95: float = 5.0,
    agreement_: float | None = 0.97,
    compared: int = 200,
    cand_acc: float | None = None,
    inc_acc: float | None = None,
    labelled: int = 0,
) -> RolloutAnalysisStatus:
    def side(requests: int, errors: int, p95: float, acc: float | None) -> WindowNumbers:
        return WindowNumbers(
            requests=requests,
            errors=errors,
            error_rate=errors / requests if requests else None,
            latency_p95_ms=p95,
            labelled=labelled,
            accuracy=acc,
        )

    return RolloutAnalysisStatus(
        candidate=side(cand_requests, cand_errors, cand_p95, cand_acc),
        incumbent=side(inc_requests, inc_errors, inc_p95, inc_acc),
        agreement=agreement_,
        compared=compared,
    )


def test_plan_steps_shadow_then_canary_steps() -> None:
    assert plan_steps(canary()) == [
        Step("shadow", 0, 1.0, 30),
        Step("canary", 10, None, 60),
        Step("canary", 50, None, 60),
    ]
    assert [s.kind for s in plan_steps(RolloutSpec(strategy="Shadow"))] == ["shadow"]
    assert plan_steps(RolloutSpec()) == []


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"strategy": "Canary"}, "needs at least one step"),
        ({"strategy": "Shadow", "steps": [{"weight": 10, "pauseSeconds": 5}]}, "only allowed with strategy Canary"),
        (
            {"strategy": "Canary", "steps": [{"weight": 50, "pauseSeconds": 5}, {"weight": 10, "pauseSeconds": 5}]},
            "must increase strictly",
        ),
        ({"strategy": "Canary", "steps": [{"weight": 100, "pauseSeconds": 5}]}, "less than or equal to 99"),
    ],
)
def test_invalid_step_lists_are_refused(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutSpec.model_validate(spec)


def test_waits_until_the_window_starts() -> None:
    spec = canary()
    verdict = decide(spec, plan_steps(spec), 0, None, None)
    assert verdict.action == "Wait" and "router setting" in verdict.reason


def test_waits_for_the_pause_then_goes_to_the_next_step() -> None:
    spec = canary()
    steps = plan_steps(spec)
    assert decide(spec, steps, 1, 59.0, numbers()).action == "Wait"
    verdict = decide(spec, steps, 1, 60.0, numbers())
    assert verdict.action == "NextStep"
    assert "requests 200 vs 1000" in verdict.reason


def test_promotes_after_the_last_step() -> None:
    spec = canary()
    assert decide(spec, plan_steps(spec), 2, 61.0, numbers()).action == "Promote"


def test_never_decides_on_fewer_requests_than_asked() -> None:
    spec = canary()
    steps = plan_steps(spec)
    # Every bound broken, the pause long over, but 99 < minRequests: no abort, no promotion.
    bad = numbers(cand_requests=99, cand_errors=99, agreement_=0.1)
    verdict = decide(spec, steps, 1, 1e6, bad)
    assert verdict.action == "Wait"
    assert "99 candidate and 1000 incumbent requests, 100 needed" in verdict.reason
    assert decide(spec, steps, 1, 1e6, numbers(inc_requests=50)).action == "Wait"


def test_a_failed_bound_aborts_before_the_pause_ends() -> None:
    spec = canary()
    verdict = decide(spec, plan_steps(spec), 0, 1.0, numbers(agreement_=0.62, compared=150))
    assert verdict.action == "Abort"
    assert verdict.failed == ["agreement 62.0% over 150 rows (at least 90.0%)"]


def test_latency_is_judged_over_the_whole_window_not_at_interim_looks() -> None:
    spec = canary()
    slow = numbers(cand_p95=73.0, inc_p95=21.0)
    assert decide(spec, plan_steps(spec), 1, 9.0, slow).action == "Wait"  # 9 s into the window
    verdict = decide(spec, plan_steps(spec), 1, 1e6, slow)
    assert verdict.action == "Abort"
    assert verdict.failed == ["p95 latency 73.0 ms vs incumbent 21.0 ms (at most 62.0 ms)"]


def test_on_failure_pause() -> None:
    spec = canary().model_copy(update={"on_failure": "Pause"})
    assert decide(spec, plan_steps(spec), 1, 5.0, numbers(cand_errors=10)).action == "Pause"


def test_a_crash_looping_candidate_aborts_whatever_the_numbers() -> None:
    spec = canary().model_copy(update={"on_failure": "Pause"})
    verdict = decide(spec, plan_steps(spec), 1, None, None, crash="pod x is crash-looping (3 restarts)")
    assert verdict.action == "Abort" and "crash-looping" in verdict.reason


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"cand_errors": 3}, "error rate 1.5% vs incumbent 0.0% (at most +1.0%)"),
        ({"cand_errors": 2}, None),  # 1.0 % is at the bound, not beyond it
        ({"cand_p95": 31.0, "inc_p95": 5.0}, "p95 latency 31.0 ms vs incumbent 5.0 ms (at most 30.0 ms)"),
        ({"cand_p95": 30.0, "inc_p95": 5.0}, None),
        ({"agreement_": 0.899}, "agreement 89.9% over 200 rows (at least 90.0%)"),
        ({"agreement_": None, "compared": 0}, None),  # nothing comparable (a regressor): not checked
        (
            {"cand_acc": 0.80, "inc_acc": 0.90, "labelled": 30},
            "feedback accuracy 80.0% (30 labels) vs incumbent 90.0% (30 labels) (at most -5.0%)",
        ),
        ({"cand_acc": 0.80, "inc_acc": 0.90, "labelled": 29}, None),  # fewer than minFeedback labels
        ({"cand_acc": 0.86, "inc_acc": 0.90, "labelled": 30}, None),
    ],
)
def test_each_bound_relative_to_the_incumbent(kwargs: dict[str, object], expected: str | None) -> None:
    failed = failed_bounds(canary().analysis, numbers(**kwargs))  # type: ignore[arg-type]
    assert failed == ([expected] if expected else [])


def log_rows(ids: list[str], predictions: list[object], status: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"request_id": ids, "status": status or ["ok"] * len(ids), "prediction": predictions})


def test_feedback_accuracy_over_successful_labelled_rows() -> None:
    rows = log_rows(["a:0", "a:1", "b", "c", "d"], [1, 0, 1.0, None, 1], ["ok", "ok", "ok", "error", "ok"])
    labels = pd.DataFrame({"request_id": ["a:0", "a:1", "b", "c", "b"], "label": ["1", "1", 0, 1, "1"]})
    # a:0 right, a:1 wrong, b right (its newest label wins), c failed, d has no label
    assert feedback_accuracy(rows, labels) == (3, pytest.approx(2 / 3))
    assert feedback_accuracy(rows, pd.DataFrame()) == (0, None)
    assert feedback_accuracy(log_rows([], []), labels) == (0, None)


def test_canary_agreement_fails_only_beyond_sampling_noise() -> None:
    analysis = canary().analysis
    noisy = numbers(agreement_=0.85, compared=37)
    noisy.agreement_p_value = 0.3
    assert failed_bounds(analysis, noisy) == []
    real = numbers(agreement_=0.85, compared=1000)
    real.agreement_p_value = 0.001
    assert failed_bounds(analysis, real) == ["agreement 85.0% over 1000 rows (at least 90.0%, chi-square p=0.001)"]


def test_canary_agreement_before_the_pause_ends_needs_the_stricter_interim_level() -> None:
    """Numbers are looked at every pass: before the pause ends a canary disagreement aborts only at
    p < 0.001 (Haybittle-Peto), at the end of the window at p < 0.05."""
    spec, steps = canary(), plan_steps(canary())
    gap = numbers(agreement_=0.8, compared=200)
    gap.agreement_p_value = 0.01
    assert decide(spec, steps, 1, 10.0, gap).action == "Wait"  # interim look, 10/60 s
    assert decide(spec, steps, 1, 60.0, gap).action == "Abort"  # final look
    gap.agreement_p_value = 0.0001
    assert decide(spec, steps, 1, 10.0, gap).action == "Abort"
    shadow = numbers(agreement_=0.62, compared=150)  # paired shadow rows: no p-value, stopped early
    assert decide(spec, steps, 0, 1.0, shadow).action == "Abort"


def test_read_accuracy_joins_both_sides_rows_with_the_stage_feedback(tmp_path: Path) -> None:
    """With MODELOPS_ROLLOUT_FEEDBACK_FROM_LOG: the incumbent's rows of its version, the candidate's rows
    (the -candidate partition the router writes) of its version, the stage's labels for both."""
    from modelops.contract import candidate_log_stage
    from modelops.monitoring.prediction_log import PredictionLogger
    from modelops.rollout.analysis import read_accuracy

    base = str(tmp_path / "log")
    since = datetime.now(UTC) - timedelta(minutes=1)
    with (
        PredictionLogger(base, "churn", "Production", pod="p0") as incumbent,
        PredictionLogger(base, "churn", candidate_log_stage("Production"), pod="p0") as candidate,
    ):
        for i in range(10):
            rid = f"r{i}"
            incumbent.log_prediction("churn", "1.0.0", {"x": i}, prediction=1, request_id=rid)
            candidate.log_prediction("churn", "1.1.0", {"x": i}, prediction=i % 2, request_id=rid)
            incumbent.log_feedback(rid, 1)
        incumbent.log_prediction("churn", "0.9.0", {"x": 0}, prediction=0, request_id="r0")  # another version
    until = datetime.now(UTC) + timedelta(seconds=1)
    result = read_accuracy(base, "churn", "Production", "1.1.0", "1.0.0", since, until)
    assert result == {"candidate": (10, pytest.approx(0.5)), "incumbent": (10, pytest.approx(1.0))}


def test_the_summary_says_agreement_counts_rows_not_requests() -> None:
    """21 canary requests of 2 rows each: the agreement is over 42 rows, and the line says so."""
    line = summary(numbers(cand_requests=21, inc_requests=180, agreement_=0.93, compared=42))
    assert line.startswith("candidate vs incumbent: requests 21 vs 180, errors 0.0% vs 0.0%")
    assert "agreement 93.0% over 42 predicted rows" in line
