"""Who serves a stage during a rollout (modelops.reconcile.rollout.plan, pure)."""

from __future__ import annotations

from modelops.api.modelversion import (
    ModelVersionSpec,
    ModelVersionStatus,
    PromotionStatus,
    RegistryStatus,
    RolloutStatus,
)
from modelops.reconcile.rollout import plan, rollout_hash
from modelops.reconcile.stages import Candidate, resolve

CANARY = {"strategy": "Canary", "steps": [{"weight": 10, "pauseSeconds": 5}, {"weight": 50, "pauseSeconds": 5}]}


def spec(stage: str = "Production", rollout: dict[str, object] | None = None) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": "m",
            "versionBump": "minor",
            "stage": stage,
            "training": {"data": {"uri": "sklearn://iris", "target": "target"}},
            "rollout": rollout or {},
        }
    )


def status(version: str, registry: str, stage: str | None = None) -> ModelVersionStatus:
    st = ModelVersionStatus(
        version=version,
        registry=RegistryStatus(model="m", version=registry, run_id="r", model_uri=f"models:/m/{registry}"),
        metrics={"accuracy": 0.95},
        stage=stage,
    )
    if stage:
        st.promotion = PromotionStatus(decision="Promoted", stage=stage, reason="first")
    return st


def resolved(statuses: dict[str, ModelVersionStatus], specs: dict[str, ModelVersionSpec]):  # type: ignore[no-untyped-def]
    cands = [
        Candidate(name=n, version=st.version or "", stage=specs[n].stage, registered=True, metrics=st.metrics or {})
        for n, st in statuses.items()
    ]
    return plan(statuses, specs, resolve(cands), set(), ("Staging", "Production"))


def test_the_incumbent_keeps_the_stage_while_the_candidate_rolls_out() -> None:
    statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2")}
    specs = {"v1": spec(), "v2": spec(rollout=CANARY)}
    result = resolved(statuses, specs)
    assert result.resolution.winners["Production"] == "v1"
    assert result.resolution.decisions["v1"].decision == "Promoted"
    assert result.resolution.decisions["v1"].reason == "first"  # its stored decision: no history entry
    assert result.resolution.decisions["v2"].decision == "Pending"
    rollout = statuses["v2"].rollout
    assert rollout is not None and (rollout.phase, rollout.step, rollout.steps, rollout.incumbent) == (
        "Waiting",
        0,
        2,
        "1.0.0",
    )
    assert set(result.rollouts) == {"Production"} and result.rollouts["Production"].candidate == "v2"


def test_immediate_is_todays_rolling_update() -> None:
    statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2")}
    result = resolved(statuses, {"v1": spec(), "v2": spec()})
    assert result.resolution.winners["Production"] == "v2" and not result.rollouts
    assert statuses["v2"].rollout is None


def test_without_an_incumbent_the_version_takes_the_stage_at_once_and_says_why() -> None:
    statuses = {"v2": status("1.1.0", "2")}
    result = resolved(statuses, {"v2": spec(rollout=CANARY)})
    assert result.resolution.winners["Production"] == "v2" and not result.rollouts
    rollout = statuses["v2"].rollout
    assert rollout is not None and rollout.phase == "Promoted"
    assert "nothing to compare with" in rollout.reason


def test_promoted_and_aborted_rollouts() -> None:
    specs = {"v1": spec(), "v2": spec(rollout=CANARY)}
    for phase, winner, decision in (("Promoted", "v2", "Promoted"), ("Aborted", "v1", "GateFailed")):
        statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2")}
        statuses["v2"].rollout = RolloutStatus(
            phase=phase, stage="Production", spec_hash=rollout_hash(specs["v2"], "Production", "1.0.0"), reason="x"
        )
        result = resolved(statuses, specs)
        assert result.resolution.winners["Production"] == winner
        assert result.resolution.decisions["v2"].decision == decision
        assert not result.rollouts


def test_a_changed_rollout_spec_restarts_the_rollout() -> None:
    specs = {"v1": spec(), "v2": spec(rollout=CANARY)}
    statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2")}
    statuses["v2"].rollout = RolloutStatus(phase="Aborted", stage="Production", spec_hash="old", reason="x")
    result = resolved(statuses, specs)
    assert statuses["v2"].rollout.phase == "Waiting" and "Production" in result.rollouts


def test_one_candidate_per_stage_the_other_waits_with_a_reason() -> None:
    specs = {"v1": spec(), "v2": spec(rollout=CANARY), "v3": spec(rollout=CANARY)}
    statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2"), "v3": status("1.2.0", "3")}
    statuses["v2"].rollout = RolloutStatus(
        phase="Canary", stage="Production", spec_hash=rollout_hash(specs["v2"], "Production", "1.0.0"), step=1
    )
    result = resolved(statuses, specs)
    assert result.rollouts["Production"].candidate == "v2"
    waiting = result.resolution.decisions["v3"]
    assert waiting.decision == "Pending" and "1.1.0 (v2) is rolling out to Production" in waiting.reason
    assert statuses["v3"].rollout is None


def test_a_stage_change_cancels_the_rollout() -> None:
    """GitOps: spec.stage moved away (to Archived) during the rollout."""
    specs = {"v1": spec(), "v2": spec(stage="Archived", rollout=CANARY)}
    statuses = {"v1": status("1.0.0", "1", "Production"), "v2": status("1.1.0", "2")}
    statuses["v2"].rollout = RolloutStatus(phase="Shadow", stage="Production", spec_hash="h")
    result = resolved(statuses, specs)
    assert "v2" in result.cancelled and result.resolution.winners["Production"] == "v1"
