"""Who serves a stage during a rollout (modelops.reconcile.rollout.plan, pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from modelops.api.modelversion import (
    ModelVersionSpec,
    ModelVersionStatus,
    PromotionStatus,
    RegistryStatus,
    RolloutAnalysisStatus,
    RolloutStatus,
    WindowNumbers,
)
from modelops.reconcile.rollout import (
    Plan,
    StageRollout,
    _record,
    aborted_blocks,
    advance,
    plan,
    rollout_hash,
    summarise,
)
from modelops.reconcile.stages import Candidate, Resolution, resolve
from modelops.rollout.decision import Verdict, plan_steps

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
    blocked = aborted_blocks(statuses, specs)  # as the model pass builds its candidates
    cands = [
        Candidate(
            name=n,
            version=st.version or "",
            stage=specs[n].stage,
            registered=True,
            metrics=st.metrics or {},
            blocked=blocked.get(n),
        )
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


def aborted(spec_: ModelVersionSpec, incumbent: str = "1.1.0") -> RolloutStatus:
    return RolloutStatus(
        phase="Aborted",
        stage="Production",
        incumbent=incumbent,
        spec_hash=rollout_hash(spec_, "Production", incumbent),
        reason="agreement 58.6% over 143 rows (at least 90.0%)",
    )


def test_a_rollback_of_the_incumbent_does_not_hand_the_stage_to_the_aborted_candidate() -> None:
    """The demo's end state, then 1.1.0 rolled back to Staging: Production returns to 1.0.0, the
    previous winner, not to 1.3.0 whose rollout against 1.1.0 was aborted on live numbers."""
    specs = {"v1": spec(), "v2": spec(stage="Staging"), "v3": spec(rollout=CANARY)}
    statuses = {
        "v1": status("1.0.0", "1"),
        "v2": status("1.1.0", "2", "Production"),
        "v3": status("1.3.0", "3"),
    }
    statuses["v3"].rollout = aborted(specs["v3"])
    result = resolved(statuses, specs)
    assert result.resolution.winners["Production"] == "v1"
    blocked = result.resolution.decisions["v3"]
    assert blocked.decision == "GateFailed" and blocked.reason.startswith("rollout aborted: agreement 58.6%")
    assert statuses["v3"].rollout.phase == "Aborted" and not result.rollouts
    # Set back to Production (a revert of the rollback): 1.1.0 wins again, 1.3.0 is still refused.
    specs["v2"] = spec()
    result = resolved(statuses, specs)
    assert result.resolution.winners["Production"] == "v2"
    assert result.resolution.decisions["v3"].decision == "GateFailed"


def test_an_aborted_candidate_is_tried_again_when_its_rollout_or_stage_changes() -> None:
    specs = {"v1": spec(), "v3": spec(rollout={**CANARY, "analysis": {"minAgreement": 0.5}})}
    statuses = {"v1": status("1.0.0", "1", "Production"), "v3": status("1.3.0", "3")}
    statuses["v3"].rollout = aborted(spec(rollout=CANARY), incumbent="1.0.0")
    assert aborted_blocks(statuses, specs) == {}
    result = resolved(statuses, specs)
    assert statuses["v3"].rollout.phase == "Waiting" and result.rollouts["Production"].candidate == "v3"
    statuses["v3"].rollout = aborted(specs["v3"], incumbent="1.0.0")
    assert set(aborted_blocks(statuses, specs)) == {"v3"}
    moved = spec(stage="Staging", rollout=specs["v3"].rollout.model_dump())
    assert aborted_blocks(statuses, {**specs, "v3": moved}) == {}


def test_a_rollout_moved_to_another_stage_reports_the_cancel_of_the_old_one() -> None:
    """GitOps: spec.stage moved from Production to Staging during the shadow window."""
    specs = {"v1": spec(), "s1": spec(stage="Staging"), "v2": spec(stage="Staging", rollout=CANARY)}
    statuses = {
        "v1": status("1.0.0", "1", "Production"),
        "s1": status("0.9.0", "0", "Staging"),
        "v2": status("1.1.0", "2"),
    }
    statuses["v2"].rollout = RolloutStatus(
        phase="Shadow",
        stage="Production",
        incumbent="1.0.0",
        spec_hash=rollout_hash(specs["v2"], "Production", "1.0.0"),
    )
    result = resolved(statuses, specs)
    assert result.restarted == [("v2", "Production")]
    assert statuses["v2"].rollout.stage == "Staging" and statuses["v2"].rollout.phase == "Waiting"


def recorded(action: str, phase: str = "Shadow") -> tuple[ModelVersionStatus, list[tuple[str, str, str]]]:
    """A candidate's status after one verdict, and the Events it posted."""
    events: list[tuple[str, str, str]] = []
    ctx = SimpleNamespace(post_event=lambda body, kind, reason, message: events.append((kind, reason, message)))
    ctx.metrics = None
    specs = spec(rollout={**CANARY, "shadow": {"sampleRate": 0.5, "pauseSeconds": 5}})
    steps = plan_steps(specs.rollout)
    st = status("1.1.0", "2")
    st.rollout = RolloutStatus(phase=phase, stage="Production", spec_hash="h", incumbent="1.0.0", steps=3)
    roll = StageRollout("Production", "v2", "v1", steps)
    _record(ctx, {}, "ns", "m", roll, st, Verdict(action, f"{action} because"), None)  # type: ignore[arg-type]
    return st, events


def test_a_wait_changes_only_the_reason() -> None:
    st, events = recorded("Wait")
    assert st.rollout is not None and (st.rollout.phase, st.rollout.step) == ("Shadow", 0) and not events


def test_next_step_moves_to_the_next_window() -> None:
    st, events = recorded("NextStep")
    assert st.rollout is not None
    assert (st.rollout.phase, st.rollout.step, st.rollout.weight, st.rollout.step_started) == ("Canary", 1, 10, None)
    assert events == [("Normal", "RolloutStep", "NextStep because; next: canary 10%")]


def shadow_window(passes: list[tuple[int, int]]) -> tuple[ModelVersionStatus, list[tuple[str, str, str]]]:
    """Passes of one shadow window with ``(copies sent, copies dropped)`` so far, the status going
    through the API in between (as after an operator restart): the last status and the Events."""
    events: list[tuple[str, str, str]] = []
    ctx = SimpleNamespace(post_event=lambda body, kind, reason, message: events.append((kind, reason, message)))
    ctx.metrics = None
    steps = plan_steps(spec(rollout={**CANARY, "shadow": {"sampleRate": 1.0, "pauseSeconds": 600}}).rollout)
    roll = StageRollout("Production", "v2", "v1", steps)
    st = status("1.1.0", "2")
    st.rollout = RolloutStatus(phase="Shadow", stage="Production", spec_hash="h", incumbent="1.0.0", steps=3)
    started = datetime(2026, 1, 1, tzinfo=UTC)
    for sent, dropped in passes:
        numbers = RolloutAnalysisStatus(
            window_start=started, candidate=WindowNumbers(requests=sent), shadow_dropped=dropped
        )
        _record(ctx, {}, "ns", "m", roll, st, Verdict("Wait", "waiting"), numbers)  # type: ignore[arg-type]
        st = ModelVersionStatus.model_validate(st.model_dump(mode="json", by_alias=True, exclude_none=True))
    return st, events


def test_a_window_dropping_many_shadow_copies_posts_one_warning() -> None:
    """The warning is posted when the share of dropped copies first exceeds 10 %, once."""
    st, events = shadow_window([(95, 5), (150, 50), (300, 100), (400, 100)])
    assert [e[:2] for e in events] == [("Warning", "ShadowCopiesDropped")]
    assert events[0][2].startswith("50 of 200 shadow copies in this window dropped (25.0%)")
    assert st.rollout is not None and st.rollout.analysis is not None and st.rollout.analysis.shadow_dropped == 100


def test_a_dropped_share_that_dips_under_10_percent_and_rises_again_is_not_warned_twice() -> None:
    """The cumulative share of dropped copies wanders around 10 % under a steady load: the window's
    warning is still posted once, also across operator restarts (the status through the API)."""
    # 25 %, 9.1 %, 15.4 %, 8.3 %, 12.5 % of the copies so far
    _, events = shadow_window([(150, 50), (1000, 100), (1100, 200), (2200, 200), (2800, 400)])
    assert [e[:2] for e in events] == [("Warning", "ShadowCopiesDropped")]
    assert events[0][2].startswith("50 of 200 shadow copies in this window dropped (25.0%)")


def test_abort_pause_and_promote_are_recorded_with_events_and_phases() -> None:
    st, events = recorded("Abort")
    assert st.rollout is not None and (st.rollout.phase, st.rollout.weight) == ("Aborted", 0)
    assert events[0][:2] == ("Warning", "RolloutAborted") and "traffic returns to 1.0.0" in events[0][2]
    summarise(st, None, 1)
    assert st.phase == "RolloutAborted"
    rollout = next(c for c in st.conditions if c.type == "Rollout")
    assert (rollout.status, rollout.reason, rollout.message) == ("False", "Aborted", "Abort because")
    st, events = recorded("Pause")
    assert st.rollout is not None and st.rollout.phase == "Paused" and events[0][:2] == ("Warning", "RolloutPaused")
    st, events = recorded("Promote", phase="Canary")
    assert st.rollout is not None and (st.rollout.phase, st.rollout.weight) == ("Promoted", 100)
    summarise(st, "Production", 1)
    assert next(c for c in st.conditions if c.type == "Rollout").status == "True"


async def test_cancelled_and_replaced_rollouts_post_one_rollout_cancelled_each() -> None:
    """GitOps changes mid-rollout: v2's stage moved away (cancelled: its rollout state goes), v3's
    rollout moved to Staging (replaced: its new rollout stays). Each posts RolloutCancelled naming the
    stage it left."""
    events: list[tuple[str, str, str]] = []
    ctx = SimpleNamespace(post_event=lambda body, kind, reason, message: events.append((body["n"], reason, message)))
    statuses = {"v2": status("1.1.0", "2"), "v3": status("1.2.0", "3")}
    statuses["v2"].rollout = RolloutStatus(phase="Shadow", stage="Production", spec_hash="h")
    statuses["v3"].rollout = RolloutStatus(phase="Waiting", stage="Staging", spec_hash="h", reason="rollout to Staging")
    the_plan = Plan(Resolution({}, {}), cancelled=["v2"], restarted=[("v3", "Production")])
    bodies = [{"metadata": {"name": n}, "n": n} for n in statuses]
    await advance(ctx, "ns", "m", the_plan, bodies, statuses, {})  # type: ignore[arg-type]
    assert [(n, reason) for n, reason, _ in events] == [("v2", "RolloutCancelled"), ("v3", "RolloutCancelled")]
    assert events[0][2].startswith("rollout to Production cancelled: the version no longer wins the stage")
    assert events[1][2] == (
        "rollout to Production cancelled: spec.stage, spec.rollout or the incumbent changed; rollout to Staging"
    )
    assert statuses["v2"].rollout is None and statuses["v3"].rollout is not None


def test_the_window_starts_when_no_pod_answers_without_the_router() -> None:
    """The incumbent's Deployment rolled out with the router setting, but an old pod still answers on
    its keep-alive connections during its preStop wait (terminating, old template): the window does not
    start until it is gone, so the window's numbers are all with the router."""
    from modelops.contract import ENV_ROUTER, RouterConfig
    from modelops.reconcile.rollout import _router_in_effect

    router = RouterConfig(mode="shadow", url="http://c", version="1.1.0", registry_version="2")

    def spec(env: str | None) -> dict:
        return {"containers": [{"name": "server", "env": [{"name": ENV_ROUTER, "value": env}] if env else []}]}

    deployment = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1, "template": {"spec": spec(router.to_env())}},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                   "readyReplicas": 1},
    }
    new = {"metadata": {"name": "new"}, "spec": spec(router.to_env())}
    old = {"metadata": {"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec(None)}
    assert not _router_in_effect(deployment, [new, old], router)
    assert _router_in_effect(deployment, [new], router)
    evicted = {"metadata": {"name": "evicted"}, "spec": spec(None), "status": {"phase": "Failed"}}
    assert _router_in_effect(deployment, [new, evicted], router)  # a pod that runs nothing answers nothing
    assert not _router_in_effect(deployment, [new], router.model_copy(update={"sample_rate": 0.5}))


def test_a_version_promoted_by_a_rollout_and_then_superseded_answers_no_requests() -> None:
    """kubectl's Weight column: 100 while the rolled-out version holds its stage, 0 once a newer
    version took it (the rollout's record, phase Promoted and its reason, stays)."""
    from modelops.reconcile.model import apply_outcome
    from modelops.reconcile.stages import Decision

    ctx = SimpleNamespace(settings=SimpleNamespace(promotion_history_limit=20, served_stages=["Production"]))
    body = {"metadata": {"name": "v2", "generation": 1}}
    st = status("1.1.0", "2", "Production")
    st.rollout = RolloutStatus(phase="Promoted", stage="Production", spec_hash="h", steps=3, weight=100, reason="r")
    st.stage = None  # the pass that promotes it: the incumbent still holds the stage in this pass
    pending = Decision("v2", "Production", "Pending", "rolling out")
    apply_outcome(ctx, body, spec(rollout=CANARY), st, pending, {"Production": "v1"}, {}, {})  # type: ignore[arg-type]
    assert (st.stage, st.rollout.weight) == (None, 100)
    holds = Decision("v2", "Production", "Promoted", "first")
    apply_outcome(ctx, body, spec(rollout=CANARY), st, holds, {"Production": "v2"}, {}, {})  # type: ignore[arg-type]
    assert (st.stage, st.rollout.weight) == ("Production", 100)
    lost = Decision("v2", "Production", "Superseded", "1.2.0 is better", compared_to="1.2.0")
    apply_outcome(ctx, body, spec(rollout=CANARY), st, lost, {"Production": "v3"}, {}, {})  # type: ignore[arg-type]
    assert st.stage is None and st.rollout is not None
    assert (st.rollout.phase, st.rollout.weight, st.rollout.reason) == ("Promoted", 0, "r")
    apply_outcome(ctx, body, spec(rollout=CANARY), st, lost, {"Production": "v3"}, {}, {})  # type: ignore[arg-type]
    assert st.rollout.weight == 0  # a later pass
    apply_outcome(ctx, body, spec(rollout=CANARY), st, holds, {"Production": "v2"}, {}, {})  # type: ignore[arg-type]
    assert st.rollout.weight == 100  # holds it again (the newer version was deleted)
