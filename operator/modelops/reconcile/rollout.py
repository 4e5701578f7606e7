"""Progressive delivery in the model-level flow (docs/rollout.md): who serves a stage during a rollout,
the candidate's children, the router setting of the incumbent's pods, and the decision of each pass.

Three hooks of :func:`modelops.reconcile.model._model_pass`, in order:

1. :func:`plan` (pure), after stage resolution: when a stage's winner is a new version with a
   Shadow or Canary rollout and an incumbent holds the stage, the incumbent keeps the stage (and its
   alias and Deployment) until the rollout promotes the candidate. One candidate per stage at a
   time: a rollout in progress keeps its place; any other winner waits (``Pending``, with the reason).
2. :func:`apply_candidates`: the candidate's Deployment and Service (``<model>-<stage>-candidate``)
   and the router setting (:class:`~modelops.contract.RouterConfig`) for the incumbent's Deployment,
   set once the candidate is ready; stages without a rollout lose their candidate children.
3. :func:`advance`, after the serving children: starts the window once the candidate is ready and the
   incumbent's pods all run the router setting, scrapes the serving pods' ``/metrics`` into the
   window's counters (:mod:`modelops.rollout.window`; feedback accuracy from the prediction log when
   the operator is set to read it), decides (:func:`modelops.rollout.decision.decide`; a window that
   would pass first waits for its drift check, :mod:`.rolloutdrift`, when one is asked for) and
   records it in ``status.rollout``, a ``Rollout`` condition and Events.

The state lives in the candidate's ``status.rollout`` only (step, window start, the window's
counters, numbers, decision), so an operator restarted mid-step resumes where it was. A change of ``spec.rollout`` (or
of the incumbent) restarts the rollout from its first step; a change of ``spec.stage`` cancels it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..api.common import ConditionStatus, get_condition, now, set_condition
from ..api.modelversion import (
    ModelVersionSpec,
    ModelVersionStatus,
    RolloutAnalysisStatus,
    RolloutStatus,
    WindowCounters,
)
from ..builders.common import ObjectRef, serving_name, short_hash
from ..builders.serving import (
    METRICS_PATH,
    ServedVersion,
    build_serving_deployment,
    build_serving_service,
    candidate_name,
    service_url,
)
from ..clients.kube import DEPLOYMENTS, PODS
from ..clients.scrape import ScrapeError, scrape
from ..contract import ENV_ROUTER, RouterConfig
from ..rollout.decision import Step, Verdict, decide, dropped_copies_warning, plan_steps
from ..rollout.window import Side, accumulate, series, window_numbers
from . import children, rolloutdrift
from . import model as model_flow
from .context import Context
from .pods import pod_url
from .refusal import Refusal, find_refusal
from .stages import Decision, Resolution

log = logging.getLogger(__name__)

#: ``status.rollout.phase`` values of a rollout in progress (the version is not settled).
ACTIVE = ("Waiting", "Shadow", "Canary", "Paused")
#: Condition on the candidate: Unknown while rolling out, True promoted, False aborted or paused.
CONDITION = "Rollout"
#: Restarts of a candidate container that count as a crash loop (abort).
CRASH_RESTARTS = 3

#: Kinds of a rollout candidate's serving children, in the order they are removed.
CANDIDATE_KINDS = ("Service", "Deployment")


def is_active(status: Mapping[str, Any] | None) -> bool:
    """Whether a stored ``status`` (wire form) holds a rollout in progress (for timer filters)."""
    return ((status or {}).get("rollout") or {}).get("phase") in ACTIVE


@dataclass
class StageRollout:
    """A rollout of one stage in this pass: ``candidate``/``incumbent`` are CR names."""

    stage: str
    candidate: str
    incumbent: str
    steps: list[Step]
    router: RouterConfig | None = None
    candidate_ready: bool = False
    crash: str | None = None
    #: The candidate's pods as listed by :func:`apply_candidates` this pass (the analysis scrapes them).
    candidate_pods: list[dict[str, Any]] | None = None


@dataclass
class Plan:
    """The resolution with rollouts applied, the stages' rollouts, and the cancelled ones (CR names)."""

    resolution: Resolution
    rollouts: dict[str, StageRollout] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    #: ``(name, stage of the replaced rollout)``: an active rollout replaced by a new one (its
    #: ``spec.stage`` or ``spec.rollout`` changed, or its incumbent did), reported like a cancel.
    restarted: list[tuple[str, str]] = field(default_factory=list)


def rollout_hash(spec: ModelVersionSpec, stage: str, incumbent_version: str) -> str:
    """What a rollout is about: its spec, stage and incumbent; a change restarts it."""
    text = json.dumps([spec.rollout.model_dump(mode="json"), stage, incumbent_version], sort_keys=True)
    return short_hash(text, 16)


def aborted_blocks(
    statuses: Mapping[str, ModelVersionStatus], specs: Mapping[str, ModelVersionSpec]
) -> dict[str, str]:
    """``{name: reason}`` of the versions whose aborted rollout still stands (pure).

    An abort stands while the version asks for the stage it was aborted from with the same
    ``spec.rollout`` (its ``spec_hash``, recomputed against the incumbent recorded at the start):
    the version then stays out of that stage's resolution (``Candidate.blocked``), even when the
    incumbent leaves the stage, so a rollback never promotes what the live numbers refused.
    """
    out: dict[str, str] = {}
    for name, st in statuses.items():
        rs = st.rollout
        if rs is None or rs.phase != "Aborted" or name not in specs or specs[name].stage != rs.stage:
            continue
        if rs.spec_hash == rollout_hash(specs[name], rs.stage, rs.incumbent or ""):
            out[name] = f"rollout aborted: {rs.reason}"
    return out


def _kept(name: str, st: ModelVersionStatus, stage: str, why: str) -> Decision:
    """The incumbent's decision while it keeps its stage: its stored one, so no history entry is added."""
    p = st.promotion
    if p is not None and p.decision == "Promoted" and p.stage == stage:
        return Decision(name, stage, "Promoted", p.reason, p.value, p.compared_to, p.compared_value)
    return Decision(name, stage, "Promoted", why)


def plan(
    statuses: Mapping[str, ModelVersionStatus],
    specs: Mapping[str, ModelVersionSpec],
    resolution: Resolution,
    leaving: set[str | None],
    served: Collection[str],
) -> Plan:
    """Apply rollouts to a stage resolution (pure; see the module docstring). Only ``served`` stages
    (those with a serving Deployment) roll out; a version takes any other stage at once.

    Mutates the ``status.rollout`` of the candidates in ``statuses``: a new rollout starts in
    ``Waiting``; a version without an incumbent to compare with is promoted at once with the
    reason recorded; a rollout whose version no longer wins or waits for its stage is cancelled.
    """
    winners = dict(resolution.winners)
    decisions = dict(resolution.decisions)
    out = Plan(Resolution(winners, decisions))
    involved: set[str] = set()
    for stage, winner in resolution.winners.items():
        if winner is None or stage not in served:
            continue
        incumbent = next(
            (n for n, st in statuses.items() if st.stage == stage and n not in leaving and n in specs), None
        )
        # A rollout in progress for this stage keeps its place while its version still passes the gate.
        active = next(
            (
                n
                for n, st in statuses.items()
                if st.rollout is not None
                and st.rollout.phase in ACTIVE
                and st.rollout.stage == stage
                and n in specs
                and specs[n].stage == stage
                and n not in leaving
                and decisions.get(n) is not None
                and decisions[n].decision in ("Promoted", "Superseded")
                and n != incumbent
            ),
            None,
        )
        candidate = active or winner
        if candidate == incumbent:
            continue
        spec, st = specs[candidate], statuses[candidate]
        previous = st.rollout if st.rollout is not None and st.rollout.phase in ACTIVE else None
        steps = plan_steps(spec.rollout)
        if not steps:
            continue  # Immediate: today's rolling update
        if incumbent is None:
            if st.rollout is None or st.rollout.stage != stage or st.rollout.phase != "Promoted":
                st.rollout = RolloutStatus(
                    phase="Promoted",
                    stage=stage,
                    spec_hash=rollout_hash(spec, stage, ""),
                    steps=len(steps),
                    weight=100,
                    action="Promote",
                    reason=f"no version held {stage}: nothing to compare with, so the {spec.rollout.strategy} "
                    "rollout was skipped and the version took the stage at once",
                    time=now(),
                )
            involved.add(candidate)
            if previous is not None and previous.stage != stage:
                out.restarted.append((candidate, previous.stage or ""))
            continue
        inc_version = statuses[incumbent].version or ""
        digest = rollout_hash(spec, stage, inc_version)
        if st.rollout is None or st.rollout.spec_hash != digest or st.rollout.stage != stage:
            st.rollout = RolloutStatus(
                phase="Waiting",
                stage=stage,
                incumbent=inc_version,
                spec_hash=digest,
                steps=len(steps),
                action="Wait",
                reason=f"rollout to {stage} started against {inc_version}: waiting for the candidate to be ready",
                time=now(),
            )
            if previous is not None:
                out.restarted.append((candidate, previous.stage or ""))
        involved.add(candidate)
        if st.rollout.phase == "Promoted":
            winners[stage] = candidate
            d = decisions[candidate]
            decisions[candidate] = replace(d, decision="Promoted", reason=f"{d.reason}; rollout: {st.rollout.reason}")
            continue
        winners[stage] = incumbent
        decisions[incumbent] = _kept(incumbent, statuses[incumbent], stage, f"holds {stage} during a rollout")
        d = decisions[candidate]
        if st.rollout.phase == "Aborted":
            decisions[candidate] = replace(d, decision="GateFailed", reason=f"rollout aborted: {st.rollout.reason}")
        else:
            decisions[candidate] = replace(
                d, decision="Pending", reason=f"rolling out to {stage} against {inc_version}: {st.rollout.reason}"
            )
            out.rollouts[stage] = StageRollout(stage, candidate, incumbent, steps)
        if winner != candidate:  # a second candidate for the stage waits for this one
            w = decisions[winner]
            decisions[winner] = replace(
                w,
                decision="Pending",
                reason=f"waiting: {st.version} ({candidate}) is rolling out to {stage}; one candidate at a time",
            )
    for name, st in statuses.items():
        if name not in involved and st.rollout is not None and st.rollout.phase in ACTIVE:
            out.cancelled.append(name)
    return out


def _step_router(roll: StageRollout, st: ModelVersionStatus, url: str) -> RouterConfig | None:
    """The router setting of the current step (None before the candidate is ready or after a decision)."""
    rs = st.rollout
    if rs is None or rs.phase not in ACTIVE or not roll.candidate_ready or rs.step >= len(roll.steps):
        return None
    assert st.version is not None and st.registry is not None
    step = roll.steps[rs.step]
    return RouterConfig(
        mode=step.kind,
        url=url,
        version=st.version,
        registry_version=st.registry.version,
        sample_rate=step.sample_rate or 1.0,
        weight=step.weight,
    )


def _candidate_crash(
    deployment: Mapping[str, Any] | None, pods: list[dict[str, Any]], refused: Refusal | None
) -> str | None:
    """Why the candidate's pods cannot serve (``refused``: a pod's refusal of the model, read by
    :func:`.refusal.find_refusal`; a crash loop; a stalled rollout), if so."""
    if refused is not None:
        reason, message, pod = refused
        return f"pod {pod} refused the model ({reason}): {message}"
    for item in pods:
        for cs in (item.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            restarts = int(cs.get("restartCount") or 0)
            if waiting.get("reason") == "CrashLoopBackOff" or restarts >= CRASH_RESTARTS:
                return f"pod {item['metadata'].get('name')} is crash-looping ({restarts} restarts)"
    for cond in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return f"the candidate's Deployment exceeded its progress deadline: {cond.get('message', '')}"
    return None


def _ready(deployment: Mapping[str, Any] | None) -> bool:
    return model_flow.deployment_serving(deployment)[0] == "True"


async def apply_candidates(
    ctx: Context,
    namespace: str,
    model: str,
    the_plan: Plan,
    statuses: Mapping[str, ModelVersionStatus],
    specs: Mapping[str, ModelVersionSpec],
    owners: list[ObjectRef],
    ours: set[str],
) -> dict[str, RouterConfig]:
    """Apply the candidates' Deployments and Services, remove those of stages without a rollout, and
    return ``{stage: router setting}`` for the incumbents' Deployments (candidates that are ready)."""
    routers: dict[str, RouterConfig] = {}
    for stage in ctx.settings.served_stages:
        name = candidate_name(model, stage)
        roll = the_plan.rollouts.get(stage)
        st = statuses[roll.candidate] if roll else None
        if roll is None or st is None or st.rollout is None or st.rollout.phase not in ACTIVE or not owners:
            await children.remove_all(ctx.kube, CANDIDATE_KINDS, namespace, name, ours)
            continue
        spec = specs[roll.candidate]
        assert st.version is not None and st.registry is not None
        served = ServedVersion(namespace, st.version, st.registry.version, roll.candidate)
        try:
            deployment, _ = await children.apply(
                ctx.kube,
                build_serving_deployment(
                    model, stage, served, owners, spec.serving, ctx.settings, mlflow=spec.mlflow, candidate=True
                ),
                ours,
            )
            service, _ = await children.apply(
                ctx.kube, build_serving_service(model, stage, namespace, owners, candidate=True), ours
            )
        except children.ChildNameConflict as exc:
            roll.crash = str(exc)
            continue
        observed = await ctx.kube.get(DEPLOYMENTS, namespace, name) or deployment
        pods = roll.candidate_pods = await ctx.kube.list(PODS, namespace, observed["spec"]["selector"]["matchLabels"])
        roll.crash = _candidate_crash(observed, pods, await find_refusal(ctx, pods))
        roll.candidate_ready = roll.crash is None and _ready(observed)
        router = _step_router(roll, st, _url(ctx, model, stage, namespace, service))
        if router is not None:
            roll.router = routers[stage] = router
    return routers


def _url(ctx: Context, model: str, stage: str, namespace: str, service: Mapping[str, Any]) -> str:
    """The candidate Service's URL for the router: its ``service_url_annotation`` when the operator is
    configured with one (the sandbox's local forwarders), else the in-cluster DNS name."""
    key = ctx.settings.service_url_annotation
    found = ((service.get("metadata") or {}).get("annotations") or {}).get(key) if key else None
    return str(found) if found else service_url(model, stage, namespace, ctx.settings, candidate=True)


def _runs_router(spec: Mapping[str, Any], router: RouterConfig) -> bool:
    """Whether a pod spec (or a pod template's) sets ``router`` in its containers' env."""
    env = {e.get("name"): e.get("value") for c in spec.get("containers") or [] for e in c.get("env") or []}
    return env.get(ENV_ROUTER) == router.to_env()


def _router_in_effect(
    deployment: Mapping[str, Any] | None, pods: list[dict[str, Any]], router: RouterConfig
) -> bool:
    """Whether the incumbent's Deployment rolled out with ``router`` and every pod it selects runs it:
    an old pod stays on its keep-alive connections through its preStop wait after the rollout is
    complete, answering without the router (a window started then counted ~5 s of its requests)."""
    if not _ready(deployment):
        return False
    assert deployment is not None
    running = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]  # evicted
    return _runs_router(deployment["spec"]["template"]["spec"], router) and all(
        _runs_router(pod.get("spec") or {}, router) and not pod["metadata"].get("deletionTimestamp") for pod in running
    )


async def advance(
    ctx: Context,
    namespace: str,
    model: str,
    the_plan: Plan,
    bodies: list[dict[str, Any]],
    statuses: dict[str, ModelVersionStatus],
    specs: Mapping[str, ModelVersionSpec],
) -> None:
    """Decide each rollout of this pass and record it in the candidate's ``status.rollout`` (see module)."""
    by_name = {b["metadata"]["name"]: b for b in bodies}
    cancels = [
        (name, rs.stage, "the version no longer wins the stage (spec.stage changed, or another version won "
         "it); the incumbent keeps serving")
        for name in the_plan.cancelled
        if (rs := statuses[name].rollout) is not None
    ]
    for name, old_stage in the_plan.restarted:
        new = statuses[name].rollout
        assert new is not None
        cancels.append((name, old_stage, f"spec.stage, spec.rollout or the incumbent changed; {new.reason}"))
    for name, old_stage, why in cancels:
        ctx.post_event(by_name[name], "Normal", "RolloutCancelled", f"rollout to {old_stage} cancelled: {why}")
    for name in the_plan.cancelled:
        statuses[name].rollout = None
    for stage, roll in the_plan.rollouts.items():
        st = statuses[roll.candidate]
        rs = st.rollout
        assert rs is not None and st.version is not None
        if rs.phase == "Paused":
            continue  # held until the rollout spec changes (a new hash restarts it)
        clock = now()
        numbers = None
        elapsed: float | None = None
        unreadable = ""
        pods: list[dict[str, Any]] | None = None  # the incumbent's, when listed to start the window
        if rs.step_started is None and roll.router is not None:
            incumbent = await ctx.kube.get(DEPLOYMENTS, namespace, serving_name(model, stage))
            selector = incumbent["spec"]["selector"]["matchLabels"] if incumbent else None
            pods = await ctx.kube.list(PODS, namespace, selector) if selector else []
            if _router_in_effect(incumbent, pods, roll.router):
                rs.step_started = clock
                step = roll.steps[rs.step]
                rs.phase = "Shadow" if step.kind == "shadow" else "Canary"
                rs.weight, rs.sample_rate = step.weight, step.sample_rate
        if rs.step_started is not None:
            elapsed = (clock - rs.step_started).total_seconds()
            numbers, problems = await _analyse(
                ctx, namespace, model, stage, roll, st, statuses[roll.incumbent], clock, pods
            )
            unreadable = "; ".join(problems)
        spec = specs[roll.candidate].rollout
        verdict = decide(spec, roll.steps, rs.step, elapsed, numbers, roll.crash, rs.drift)
        if verdict.drift_check:  # the window would pass: its drift check decides (rolloutdrift.py)
            rs.drift = await rolloutdrift.check(
                ctx, by_name[roll.candidate], model, stage, st, statuses[roll.incumbent], spec.analysis, clock
            )
            verdict = decide(spec, roll.steps, rs.step, elapsed, numbers, roll.crash, rs.drift)
        if unreadable and verdict.action == "Wait":
            verdict = Verdict("Wait", f"{verdict.reason} ({unreadable})")
        _record(ctx, by_name[roll.candidate], namespace, model, roll, st, verdict, numbers)


async def _side_scrapes(
    ctx: Context,
    namespace: str,
    deployment: str,
    side: Side,
    since: datetime,
    pods: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, float]], set[str], set[str], list[str]]:
    """Scrape the pods of one side's Deployment (``pods`` when this pass listed them already):
    ``(series per pod scraped, pods present, pods created after ``since``, problems)``. A pod
    without an IP yet is present but not scraped."""
    if pods is None:
        found = await ctx.kube.get(DEPLOYMENTS, namespace, deployment)
        if found is None:
            return {}, set(), set(), [f"Deployment {deployment} not found"]
        pods = await ctx.kube.list(PODS, namespace, found["spec"]["selector"]["matchLabels"])
    present, new, urls = set(), set(), {}
    for pod in pods:
        meta = pod["metadata"]
        present.add(meta["name"])
        created = meta.get("creationTimestamp")
        if created and datetime.fromisoformat(str(created).replace("Z", "+00:00")) > since:
            new.add(meta["name"])
        if (url := pod_url(pod, METRICS_PATH, ctx.settings.pod_address)) is not None:
            urls[meta["name"]] = url
    scraped, problems = {}, []
    for name, text in (await scrape(urls, ctx.settings.metrics_scrape_timeout_seconds)).items():
        if isinstance(text, ScrapeError):
            problems.append(f"pod {name}: {text}")
            continue
        try:
            scraped[name] = series(text, side)
        except ValueError as exc:
            problems.append(f"pod {name}: /metrics is not the Prometheus text format: {exc}")
    if problems:
        log.warning("rollout %s/%s: %s", namespace, deployment, "; ".join(problems))
    return scraped, present, new, problems


async def _analyse(
    ctx: Context,
    namespace: str,
    model: str,
    stage: str,
    roll: StageRollout,
    st: ModelVersionStatus,
    incumbent: ModelVersionStatus,
    clock: datetime,
    incumbent_pods: list[dict[str, Any]] | None = None,
) -> tuple[RolloutAnalysisStatus, list[str]]:
    """The window's numbers: scrape both sides' pods (``incumbent_pods`` and ``roll.candidate_pods``
    when this pass listed them already), fold the scrapes into ``status.rollout.counters``
    (:mod:`modelops.rollout.window`), and, with ``rollout_feedback_from_log``, read feedback accuracy
    from the prediction log. Returns the numbers and what could not be read."""
    rs = st.rollout
    assert rs is not None and rs.step_started is not None and st.version is not None
    route = roll.steps[rs.step].kind
    counters = rs.counters or WindowCounters()
    scraped, present, new, problems = await _side_scrapes(
        ctx, namespace, serving_name(model, stage), "incumbent", rs.step_started, incumbent_pods
    )
    counters.incumbent = accumulate(counters.incumbent, scraped, present, new)
    # The candidate's own pods: their server-side latency, and in canary their predicted classes.
    scraped, present, new, more = await _side_scrapes(
        ctx, namespace, candidate_name(model, stage), "candidate", rs.step_started, roll.candidate_pods
    )
    counters.candidate = accumulate(counters.candidate, scraped, present, new)
    problems += more
    rs.counters = counters
    classifier = (st.model.task if st.model else None) != "regression"
    numbers = window_numbers(counters, route, classifier=classifier, window_start=rs.step_started, time=clock)
    if ctx.settings.rollout_feedback_from_log:
        # Imported here: reading the log needs the data stack (pandas, pyarrow), which the operator keeps
        # out of its process until it is needed (lean.py).
        from ..rollout.analysis import read_accuracy

        try:
            accuracy = await asyncio.to_thread(
                read_accuracy,
                ctx.settings.prediction_log_uri,
                model,
                stage,
                st.version,
                incumbent.version or "",
                rs.step_started,
                clock,
            )
        except OSError as exc:
            problems.append(f"the prediction log {ctx.settings.prediction_log_uri} cannot be read: {exc}")
        else:
            for side, (labelled, value) in accuracy.items():
                numbers_side = numbers.candidate if side == "candidate" else numbers.incumbent
                numbers_side.labelled, numbers_side.accuracy = labelled, value
    return numbers, problems


def _record(
    ctx: Context,
    body: Mapping[str, Any],
    namespace: str,
    model: str,
    roll: StageRollout,
    st: ModelVersionStatus,
    verdict: Verdict,
    numbers: Any,
) -> None:
    """Write a verdict into ``status.rollout``, post its Event and count it."""
    rs = st.rollout
    assert rs is not None
    if numbers is not None:
        numbers.failed = verdict.failed
        if (dropped := dropped_copies_warning(rs.analysis, numbers)) is not None:
            ctx.post_event(body, "Warning", "ShadowCopiesDropped", dropped)
        rs.analysis = numbers
    rs.action = verdict.action
    rs.reason = verdict.reason
    if verdict.action != "Wait":
        rs.time = now()
    if verdict.action == "NextStep":
        rs.step += 1
        rs.step_started = None
        rs.analysis = None
        rs.counters = None
        rs.drift = None
        upcoming = roll.steps[rs.step]  # what the operator now sets; its window starts once in effect
        rs.phase = "Shadow" if upcoming.kind == "shadow" else "Canary"
        rs.weight, rs.sample_rate = upcoming.weight, upcoming.sample_rate
        ctx.post_event(body, "Normal", "RolloutStep", f"{verdict.reason}; next: {roll.steps[rs.step].describe()}")
    elif verdict.action == "Promote":
        rs.phase, rs.weight = "Promoted", 100
        ctx.post_event(body, "Normal", "RolloutPromoted", verdict.reason)
    elif verdict.action == "Abort":
        rs.phase, rs.weight = "Aborted", 0
        ctx.post_event(body, "Warning", "RolloutAborted", f"{verdict.reason}; traffic returns to {rs.incumbent}")
    elif verdict.action == "Pause":
        rs.phase = "Paused"
        ctx.post_event(body, "Warning", "RolloutPaused", f"{verdict.reason}; held until spec.rollout changes")
    if ctx.metrics is not None:
        ctx.metrics.rollout_decided(namespace, model, roll.stage, verdict.action, rs)


def summarise(st: ModelVersionStatus, held: str | None, gen: int | None) -> None:
    """Set the ``Rollout`` condition and, for a candidate that does not hold its stage, the phase and
    ``Ready`` (RollingOut, RolloutPaused, RolloutAborted) from ``status.rollout``. After model.summarise."""
    rs = st.rollout
    if rs is None:
        if get_condition(st.conditions, CONDITION) is not None:
            set_condition(st.conditions, CONDITION, "False", "Cancelled", "no rollout in progress", gen)
        return
    outcomes: dict[str, tuple[ConditionStatus, str]] = {
        "Promoted": ("True", "Promoted"),
        "Aborted": ("False", "Aborted"),
        "Paused": ("False", "Paused"),
    }
    state, reason = outcomes.get(rs.phase, ("Unknown", "Progressing"))
    set_condition(st.conditions, CONDITION, state, reason, rs.reason, gen)
    if held or st.phase == "Failed":
        return
    phase, ready_reason = {
        "Aborted": ("RolloutAborted", "RolloutAborted"),
        "Paused": ("RolloutPaused", "RolloutPaused"),
        "Promoted": (None, None),
    }.get(rs.phase, ("RollingOut", "RollingOut"))
    if phase is not None and ready_reason is not None:
        st.phase = phase  # type: ignore[assignment]
        set_condition(st.conditions, "Ready", "False", ready_reason, rs.reason, gen)
