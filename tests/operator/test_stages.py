"""Stage resolution: tables of ModelVersion sets → winners and decisions (pure)."""

from __future__ import annotations

import pytest

from modelops.api.modelversion import PromotionSpec
from modelops.reconcile.stages import Candidate, resolve


def cand(
    name: str,
    version: str,
    stage: str = "Production",
    acc: float | None = 0.9,
    registered: bool = True,
    **promotion: object,
) -> Candidate:
    metrics = {} if acc is None else {"accuracy": acc}
    return Candidate(
        name=name,
        version=version,
        stage=stage,
        registered=registered,
        metrics=metrics,
        promotion=PromotionSpec(**promotion),
    )


@pytest.mark.parametrize(
    ("candidates", "winner", "decisions"),
    [
        # a single passing version takes the stage
        ([cand("a", "1.0.0")], "a", {"a": "Promoted"}),
        # a better, higher version takes over; the older one is superseded
        ([cand("a", "1.0.0", acc=0.90), cand("b", "1.1.0", acc=0.95)], "b", {"a": "Superseded", "b": "Promoted"}),
        # a worse higher version fails its gate against the holder (minImprovement 0 means "at least equal")
        ([cand("a", "1.0.0", acc=0.95), cand("b", "1.1.0", acc=0.93)], "a", {"a": "Promoted", "b": "GateFailed"}),
        # order of the input does not matter: semantic order does (1.10.0 > 1.9.0)
        ([cand("b", "1.10.0", acc=0.96), cand("a", "1.9.0", acc=0.95)], "b", {"a": "Superseded", "b": "Promoted"}),
        # min_value gate
        ([cand("a", "1.0.0", acc=0.80, min_value=0.9)], None, {"a": "GateFailed"}),
        # improvement required
        (
            [cand("a", "1.0.0", acc=0.90), cand("b", "1.1.0", acc=0.905, min_improvement=0.01)],
            "a",
            {"a": "Promoted", "b": "GateFailed"},
        ),
        # relative improvement: 0.95 vs 0.90 is +5.6 % ≥ 5 %
        (
            [
                cand("a", "1.0.0", acc=0.90),
                cand("b", "1.1.0", acc=0.95, min_improvement=0.05, improvement_mode="relative"),
            ],
            "b",
            {"a": "Superseded", "b": "Promoted"},
        ),
        # Manual policy recommends but never takes the stage
        (
            [cand("a", "1.0.0", acc=0.90), cand("b", "1.1.0", acc=0.99, policy="Manual")],
            "a",
            {"a": "Promoted", "b": "Recommended"},
        ),
        # not registered yet → pending; does not block the others
        ([cand("a", "1.0.0"), cand("b", "2.0.0", registered=False)], "a", {"a": "Promoted", "b": "Pending"}),
        # requireStaging without having been in Staging
        ([cand("a", "1.0.0", require_staging=True)], None, {"a": "GateFailed"}),
        # a missing metric fails the gate
        ([cand("a", "1.0.0", acc=None)], None, {"a": "GateFailed"}),
        # Archived releases
        ([cand("a", "1.0.0", stage="Archived")], None, {"a": "Released"}),
    ],
)
def test_production_resolution(candidates: list[Candidate], winner: str | None, decisions: dict[str, str]) -> None:
    result = resolve(candidates)
    assert result.winners["Production"] == winner
    assert {n: d.decision for n, d in result.decisions.items()} == decisions


def test_rollback_is_a_function_of_the_crs() -> None:
    """1.1.0 moved from Production back to Staging: Production returns to 1.0.0, Staging gets 1.1.0."""
    promoted = resolve([cand("a", "1.0.0", acc=0.90), cand("b", "1.1.0", acc=0.95)])
    assert promoted.winners["Production"] == "b"
    rolled_back = resolve([cand("a", "1.0.0", acc=0.90), cand("b", "1.1.0", stage="Staging", acc=0.95)])
    assert rolled_back.winners == {"Development": None, "Staging": "b", "Production": "a"}


def test_gate_failure_message_has_both_numbers() -> None:
    result = resolve([cand("a", "1.0.0", acc=0.95), cand("b", "1.1.0", acc=0.93, min_improvement=0.01)])
    reason = result.decisions["b"].reason
    assert "0.93" in reason and "0.95" in reason
    assert result.decisions["b"].compared_to == "1.0.0"


def test_minimize_metric() -> None:
    a = Candidate("a", "1.0.0", "Staging", True, {"rmse": 10.0}, PromotionSpec(metric="rmse"))
    b = Candidate("b", "1.1.0", "Staging", True, {"rmse": 8.0}, PromotionSpec(metric="rmse"))
    assert resolve([a, b]).winners["Staging"] == "b"
    c = Candidate("c", "1.2.0", "Staging", True, {"rmse": 12.0}, PromotionSpec(metric="rmse"))
    assert resolve([a, b, c]).winners["Staging"] == "b"


def test_require_staging_passes_after_staging() -> None:
    a = Candidate(
        "a", "1.0.0", "Production", True, {"accuracy": 0.9}, PromotionSpec(require_staging=True), staged_before=True
    )
    assert resolve([a]).winners["Production"] == "a"


def test_ineligible_versions_never_win() -> None:
    a = Candidate("a", "1.0.0", "Production", True, {"accuracy": 0.9}, eligible=False)
    b = Candidate("b", "0.9.0", "Production", True, {"accuracy": 0.8})
    result = resolve([a, b])
    assert result.winners["Production"] == "b"
    assert result.decisions["a"].decision == "NotRequested"
