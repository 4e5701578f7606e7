"""ModelVersion, model-level flow: stage winners → MLflow aliases and tags → serving children → statuses.

Runs under the model's lock after any of its versions was reconciled (and on deletion). It
reads every ModelVersion of the model in the namespace, so its result depends on the CRs
alone (see stages.py), and it writes the status of every version whose outcome changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlflow.exceptions import MlflowException

from ..api.common import ConditionStatus, get_condition, now, set_condition
from ..api.modelversion import (
    STAGE_ALIASES,
    ModelVersionSpec,
    ModelVersionStatus,
    PromotionRecord,
    PromotionStatus,
    ServingStatus,
)
from ..builders.common import (
    COMPONENT_SERVING,
    LABEL_VERSION,
    ObjectRef,
    label_value,
    selector_labels,
    serving_name,
)
from ..builders.serving import (
    ServedVersion,
    build_hpa,
    build_pdb,
    build_serving_deployment,
    build_serving_service,
    service_url,
)
from ..clients.kube import DEPLOYMENTS, MODELVERSIONS, PODS, Conflict
from ..contract import TAG_ALIASES_WRITTEN, TAG_STAGE, TAG_STAGE_WRITTEN, RouterConfig
from ..registry import operations as ops
from ..registry.errors import RegistryUnavailable
from . import children, rollout
from .context import Context
from .refusal import find_refusal
from .stages import STAGES, Candidate, Decision, resolve
from .status import (
    ADMISSION_REASONS,
    FAILED_REASONS,
    REGISTRY_CONDITION,
    mark_registry_reachable,
    mark_registry_unavailable,
    parse_status,
    post_transitions,
    write_status,
)

log = logging.getLogger(__name__)
#: A stage's serving children, dependents first (the order they are removed in).
SERVING_KINDS = ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment")


def _spec(body: Mapping[str, Any]) -> ModelVersionSpec | None:
    try:
        return ModelVersionSpec.model_validate(body.get("spec") or {})
    except ValueError:
        return None


def _staged_before(status: ModelVersionStatus) -> bool:
    return status.stage == "Staging" or any(
        r.stage == "Staging" and r.decision == "Promoted" for r in status.promotion_history
    )


def _eligible(body: Mapping[str, Any], status: ModelVersionStatus) -> bool:
    if body["metadata"].get("deletionTimestamp"):
        return False
    reg = get_condition(status.conditions, "Registered")
    return not (reg and reg.reason in ADMISSION_REASONS)


#: ``Registered=False`` reason of a version deleted from MLflow by hand.
VERSION_DELETED = "VersionDeleted"


def _reason(status: ModelVersionStatus, ctype: str) -> str | None:
    cond = get_condition(status.conditions, ctype)
    return cond.reason if cond else None


def deployment_serving(deployment: Mapping[str, Any] | None) -> tuple[ConditionStatus, str, str, int]:
    """(status, reason, message, ready replicas) of a serving Deployment from its observed state."""
    if deployment is None:
        return "Unknown", "DeploymentMissing", "serving Deployment not created yet", 0
    spec, st = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas") or 0)
    if want == 0:
        return "False", "ScaledToZero", "serving.replicas is 0: no pod serves this stage", 0
    gen_seen = int(st.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    progressing = conds.get("Progressing") or {}
    if progressing.get("status") == "False" or progressing.get("reason") == "ProgressDeadlineExceeded":
        return (
            "False",
            "ProgressDeadlineExceeded",
            f"new pods did not become ready: {progressing.get('message', '')}; the previous version keeps serving",
            ready,
        )
    updated = int(st.get("updatedReplicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    total = int(st.get("replicas") or 0)
    # Complete as `kubectl rollout status` defines it: every pod runs the new template, no old
    # pod is left, and all are available (old pods still serving mean the rollout is not done).
    if gen_seen and updated >= want and total <= updated and available >= want and ready >= want:
        return "True", "Available", f"{ready}/{want} replicas ready", ready
    if not gen_seen:  # its counts are still those of the previous template: they would read as done
        observed, generation = st.get("observedGeneration"), deployment["metadata"].get("generation")
        return (
            "Unknown",
            "RollingOut",
            f"the Deployment controller has not yet observed the update (generation {generation}, "
            f"observed {observed}); {ready}/{want} replicas ready",
            ready,
        )
    old = max(0, total - updated)
    return (
        "Unknown",
        "RollingOut",
        f"{updated}/{want} updated, {available}/{want} available, {old} old replica(s) still serving",
        ready,
    )


async def observe_refusal(
    ctx: Context, namespace: str, model: str, stage: str, version: str, registry_version: str
) -> tuple[str, str] | None:
    """``(reason, message)`` for the ``Serving`` condition when a pod of ``version`` refused its model.

    Read from the pods (:func:`.refusal.find_refusal`: the not-ready server's readiness answer, or
    its termination message): the reason the server gave (e.g. FrameworkVersionMismatch) instead of
    a rollout that never completes.
    """
    selector = {**selector_labels(COMPONENT_SERVING, model, stage), LABEL_VERSION: label_value(version)}
    found = await find_refusal(ctx, await ctx.kube.list(PODS, namespace, selector))
    if found is None:
        return None
    reason, message, pod = found
    return reason, (
        f"the model server refused models:/{model}/{registry_version} (pod {pod}): {message}; "
        "the previous version keeps serving"
    )


#: Status fields the per-version flow owns; the model-level flow owns the rest.
VERSION_FIELDS = (
    "version",
    "parent_version",
    "registry",
    "metrics",
    "metric_summary",
    "model",
    "training_job",
    "training_hash",
    "observed_generation",
)
VERSION_CONDITIONS = ("Trained", "Registered", REGISTRY_CONDITION)


def overlay_version_fields(stored: ModelVersionStatus, mine: ModelVersionStatus) -> ModelVersionStatus:
    """The stored status (as the model-level flow last wrote it) with the per-version flow's
    fields and conditions from ``mine`` on top: neither flow's writes are lost."""
    merged = stored.model_copy(update={f: getattr(mine, f) for f in VERSION_FIELDS})
    own = {c.type: c for c in mine.conditions if c.type in VERSION_CONDITIONS}
    merged.conditions = [own.pop(c.type, c) if c.type in VERSION_CONDITIONS else c for c in stored.conditions]
    merged.conditions.extend(own.values())
    return merged


#: Model-level passes repeated at most this often when status writes meet newer objects (409).
CONFLICT_RETRIES = 3


async def model_bodies(ctx: Context, namespace: str, model: str) -> list[dict[str, Any]]:
    """Every ModelVersion of ``model`` in ``namespace``, by name.

    From the operator's index of ModelVersions by model (no API call); without one (tools,
    unit tests) from one namespace LIST filtered on ``spec.model``.
    """
    bodies = ctx.versions.bodies(namespace, model)
    if bodies is None:
        bodies = [
            b for b in await ctx.kube.list(MODELVERSIONS, namespace) if (b.get("spec") or {}).get("model") == model
        ]
    return sorted(bodies, key=lambda b: str(b["metadata"]["name"]))


async def reconcile_model(
    ctx: Context, namespace: str, model: str, fresh: dict[str, ModelVersionStatus], exclude: str | None = None
) -> dict[str, ModelVersionStatus]:
    """Decide and apply stages for one model; write changed statuses.

    Args:
        fresh: ``{name: status}`` just computed by the per-version flow of those versions; their
            per-version fields win over the stored ones.
        exclude: a version being finalized. It, and every other version being deleted, takes no
            stage, gets no stage tag and no status write (their finalizers handle them).

    Returns:
        The resulting status of every version named in ``fresh``.

    Raises:
        Conflict: a status write still met a newer object after :data:`CONFLICT_RETRIES` passes.
    """
    decided_once = False
    for attempt in range(CONFLICT_RETRIES):
        statuses, conflicted, decided = await _model_pass(ctx, namespace, model, fresh, exclude)
        if decided and not conflicted and not decided_once:
            # A rollout was just promoted or aborted: apply it now (winners, aliases, the rolling
            # update), not one resync interval later.
            decided_once = True
            statuses, conflicted, _ = await _model_pass(ctx, namespace, model, fresh, exclude)
        if not conflicted:
            return {name: statuses.get(name, status) for name, status in fresh.items()}
        log.info(
            "model %s/%s: %d status write(s) met newer objects; pass %d repeated",
            namespace,
            model,
            len(conflicted),
            attempt + 1,
        )
        for name in conflicted:  # re-read them, so that the next pass starts from their newest state
            current = await ctx.kube.get(MODELVERSIONS, namespace, name)
            if current is not None:
                ctx.versions.remember(current)
    raise Conflict(409, f"ModelVersions of {namespace}/{model} kept changing during {CONFLICT_RETRIES} passes")


async def _model_pass(
    ctx: Context, namespace: str, model: str, fresh: dict[str, ModelVersionStatus], exclude: str | None
) -> tuple[dict[str, ModelVersionStatus], list[str], bool]:
    """One model-level pass; returns the statuses, the names whose write was refused (409), and
    whether a rollout was promoted or aborted in this pass (its outcome is applied by the next)."""
    bodies = await model_bodies(ctx, namespace, model)
    leaving = {exclude} | {b["metadata"]["name"] for b in bodies if b["metadata"].get("deletionTimestamp")}
    statuses: dict[str, ModelVersionStatus] = {}
    specs: dict[str, ModelVersionSpec] = {}
    candidates = []
    for b in bodies:
        name = b["metadata"]["name"]
        stored = parse_status(ModelVersionStatus, b.get("status"))
        statuses[name] = overlay_version_fields(stored, fresh[name]) if name in fresh else stored
        spec = _spec(b)
        if spec is None:
            continue
        specs[name] = spec
        st = statuses[name]
        candidates.append(
            Candidate(
                name=name,
                version=st.version or "0.0.0",
                stage=spec.stage,
                registered=st.registry is not None and st.version is not None,
                metrics=st.metrics or {},
                promotion=spec.promotion,
                staged_before=_staged_before(st),
                eligible=name not in leaving and _eligible(b, st),
            )
        )
    blocked = rollout.aborted_blocks(statuses, specs)
    candidates = [replace(c, blocked=blocked.get(c.name)) for c in candidates]
    state: RegistryState | None = None
    registry_error: RegistryUnavailable | MlflowException | None = None
    try:
        state = await read_registry(ctx, model) if any(st.registry for st in statuses.values()) else None
    except (RegistryUnavailable, MlflowException) as exc:
        registry_error = exc  # statuses are still written from what Kubernetes shows, then it is raised
    gone = deleted_versions(state, statuses)
    candidates = [replace(c, eligible=False) if c.name in gone else c for c in candidates]
    rollouts = rollout.plan(statuses, specs, resolve(candidates), leaving, ctx.settings.served_stages)
    resolution = rollouts.resolution
    repairs: dict[str, list[tuple[str, str]]] = {}
    if state is not None and registry_error is None:
        try:
            plan = plan_registry(state, statuses, specs, resolution.winners, leaving)
            await sync_registry(ctx, model, plan)
        except (RegistryUnavailable, MlflowException) as exc:
            # Serving status still comes from the observed Deployments (children left as they are
            # until the registry agrees); the error is raised once the statuses are written.
            registry_error = exc
        else:
            repairs = plan.repairs
            by_name = {b["metadata"]["name"]: b for b in bodies}
            for name, notes in repairs.items():  # every repair is reported, not only the first of a kind
                for reason, message in notes:
                    ctx.post_event(by_name[name], "Warning", reason, message)
    routers: dict[str, RouterConfig] = {}
    if registry_error is None:
        owners = [ObjectRef.from_body(b) for b in bodies if b["metadata"]["name"] not in leaving]
        ours = {str(b["metadata"]["uid"]) for b in bodies}
        routers = await rollout.apply_candidates(ctx, namespace, model, rollouts, statuses, specs, owners, ours)
    serving = await sync_serving(
        ctx,
        namespace,
        model,
        bodies,
        statuses,
        specs,
        resolution.winners,
        leaving,
        apply=registry_error is None,
        routers=routers,
    )
    decided = False
    if registry_error is None:
        before = {n: st.rollout.phase if st.rollout else None for n, st in statuses.items()}
        await rollout.advance(ctx, namespace, model, rollouts, bodies, statuses, specs)
        decided = any(
            st.rollout is not None and st.rollout.phase in ("Promoted", "Aborted") and before.get(n) != st.rollout.phase
            for n, st in statuses.items()
        )
    conflicted: list[str] = []
    versions = {n: s.version for n, s in statuses.items() if s.version}
    for b in bodies:
        name = b["metadata"]["name"]
        if name in leaving or name not in specs or statuses[name].registry is None:
            continue  # unregistered versions write their own status (see modelversion._reconcile)
        st = statuses[name]
        old = parse_status(ModelVersionStatus, b.get("status"))
        if name in gone:
            set_condition(
                st.conditions,
                "Registered",
                "False",
                VERSION_DELETED,
                f"version {gone[name]} of registered model {model} ({st.version}) was deleted from MLflow "
                "by hand: it takes no stage and serves nothing; apply a new ModelVersion to train it again",
                b["metadata"].get("generation"),
            )
        apply_outcome(
            ctx, b, specs[name], st, resolution.decisions.get(name), resolution.winners, serving, repairs, versions
        )
        rollout.summarise(st, st.stage, b["metadata"].get("generation"))
        if isinstance(registry_error, RegistryUnavailable):
            mark_registry_unavailable(st.conditions, registry_error, b["metadata"].get("generation"))
        try:
            written = await write_status(ctx.kube, MODELVERSIONS, b, st, precondition=True)
        except Conflict:
            conflicted.append(name)
            continue
        if written is not None:
            ctx.versions.remember(written)
            post_transitions(ctx.post_event, b, old.conditions, st.conditions)
    if registry_error is not None and not conflicted:
        raise registry_error
    return statuses, conflicted, decided


@dataclass(frozen=True)
class RegistryState:
    """What MLflow holds for one registered model: ``aliases`` ``{alias: version}``, the tags
    of every existing version ``{version: {key: value}}`` (a version deleted by hand is absent),
    and ``written``, the stage aliases as the operator last set them (its
    :data:`~modelops.contract.TAG_ALIASES_WRITTEN` record; None before it wrote any)."""

    aliases: dict[str, str]
    tags: dict[str, dict[str, str]]
    written: dict[str, str | None] | None = None


def parse_written(value: str | None) -> dict[str, str | None] | None:
    """The :data:`~modelops.contract.TAG_ALIASES_WRITTEN` record (``{alias: version or None}``), or
    None when absent or not a JSON object of strings (edited by hand: then unused)."""
    try:
        record = json.loads(value) if value else None
    except ValueError:
        return None
    if not isinstance(record, dict) or not all(v is None or isinstance(v, str) for v in record.values()):
        return None
    return {str(k): v for k, v in record.items()}


async def read_registry(ctx: Context, model: str) -> RegistryState:
    """Read a model's aliases, its record of the operator's alias writes and its versions' tags:
    one ``get_registered_model`` and one paged ``search_model_versions``. Raises
    RegistryUnavailable when MLflow does not answer."""
    aliases, tags = await ctx.registry.run(ops.get_aliases_and_tags, model)
    versions = await ctx.registry.run(ops.search_versions, model)
    written = parse_written(tags.get(TAG_ALIASES_WRITTEN))
    return RegistryState(aliases, {str(v.version): dict(v.tags or {}) for v in versions}, written)


def deleted_versions(state: RegistryState | None, statuses: Mapping[str, ModelVersionStatus]) -> dict[str, str]:
    """``{CR name: registry version}`` of registered versions that MLflow no longer has (deleted by hand)."""
    if state is None:
        return {}
    return {
        name: st.registry.version
        for name, st in statuses.items()
        if st.registry is not None and st.registry.version not in state.tags
    }


@dataclass
class RegistryPlan:
    """The registry writes that make MLflow match the stage winners, and what they repair.

    ``aliases``: ``{alias: version}`` to set (None: delete); ``tags``: ``{version: stage tag}``;
    ``written``: the new record of the stage aliases (``{alias: version or None}``), when it
    changes; ``repairs``: ``{CR name: [(reason, message)]}`` for changes made by hand that they undo.
    """

    aliases: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    written: dict[str, str | None] | None = None
    repairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.aliases or self.tags or self.written is not None)


def plan_registry(
    state: RegistryState,
    statuses: Mapping[str, ModelVersionStatus],
    specs: Mapping[str, ModelVersionSpec],
    winners: Mapping[str, str | None],
    leaving: set[str | None],
) -> RegistryPlan:
    """Pure: compare MLflow (``state``) with the winners; say what to write and what was changed by hand.

    A change the operator did not make is one MLflow shows but neither the stored statuses nor
    the operator's record of its own writes (``state.written``, the versions'
    :data:`~modelops.contract.TAG_STAGE_WRITTEN`) explain: an alias pointing neither to the
    stage's previous holder, nor to its winner, nor where the operator last set it
    (``AliasMovedByHand``); a missing alias the operator last set to the stage's unchanged
    holder (``AliasDeletedByHand``); a ``stage`` tag that is neither the one recorded in status,
    nor the wanted one, nor the one the operator last wrote (``TagChangedByHand``, also when
    deleted). The record explains the operator's writes that no status shows: a pass whose status
    write was refused (409) after its registry writes, a finalizer's ``stage=Archived``.
    """
    plan = RegistryPlan()
    gone = deleted_versions(state, statuses)
    registered = {n: s for n, s in statuses.items() if s.registry is not None and n not in gone}
    record: dict[str, str | None] = {}
    for stage in STAGES:
        alias = STAGE_ALIASES[stage]
        winner = winners.get(stage)
        desired = registered[winner].registry.version if winner and winner in registered else None  # type: ignore[union-attr]
        record[alias] = desired
        holder = next((n for n, s in registered.items() if s.stage == stage and n not in leaving), None)
        previous = registered[holder].registry.version if holder else None  # type: ignore[union-attr]
        # Where the operator last set the alias: its record, or (without one) the statuses' holder.
        last = state.written.get(alias) if state.written is not None and alias in state.written else previous
        current = state.aliases.get(alias)
        if current == desired:
            continue
        plan.aliases[alias] = desired
        if current is not None and current not in (previous, last, desired) and winner:
            plan.repairs.setdefault(winner, []).append(
                (
                    "AliasMovedByHand",
                    f"alias {alias} pointed to version {current}, not {last or 'none'} as the "
                    f"operator last set it; set back to {desired or 'none'}",
                )
            )
        elif current is None and last is not None and last == desired and winner:
            plan.repairs.setdefault(winner, []).append(
                ("AliasDeletedByHand", f"alias {alias} was deleted by hand; set back to version {desired}")
            )
    if state.written != record:
        plan.written = record
    held = {w: s for s, w in winners.items() if w}
    for name, st in registered.items():
        spec = specs.get(name)
        if name in leaving or spec is None or st.registry is None:
            continue
        wanted = held.get(name) or ("Archived" if spec.stage == "Archived" else "None")
        before = st.stage or ("Archived" if st.phase == "Archived" else "None")
        tags = state.tags.get(st.registry.version, {})
        actual = tags.get(TAG_STAGE)
        if actual == wanted:
            continue
        plan.tags[st.registry.version] = wanted
        if actual not in (before, tags.get(TAG_STAGE_WRITTEN)):
            shown = "missing" if actual is None else f"{TAG_STAGE}={actual}"
            plan.repairs.setdefault(name, []).append(
                (
                    "TagChangedByHand",
                    f"tag of version {st.registry.version} was {shown}, not {TAG_STAGE}={before} as the "
                    f"status says; set to {TAG_STAGE}={wanted}",
                )
            )
    return plan


async def sync_registry(ctx: Context, model: str, plan: RegistryPlan) -> None:
    """Apply a :class:`RegistryPlan`: the record of the aliases, every alias, then the stage tags
    (each after its :data:`~modelops.contract.TAG_STAGE_WRITTEN` record).

    Every target version was seen in MLflow just before (versions deleted by hand take no
    stage), so no alias move fails half-way on a missing version; an outage half-way is
    completed by the retry, which re-reads and re-plans. The records are written before what
    they describe: a retry after an outage finds the operator's intent, never a write unrecorded.
    """
    if plan.written is not None:
        await ctx.registry.run(ops.set_model_tag, model, TAG_ALIASES_WRITTEN, json.dumps(plan.written, sort_keys=True))
    for alias, version in plan.aliases.items():
        if version is None:
            await ctx.registry.run(ops.delete_alias, model, alias)
        else:
            await ctx.registry.run(ops.set_alias, model, alias, version, check=False)  # read just before
    for version, stage in plan.tags.items():
        tags = {TAG_STAGE_WRITTEN: stage, TAG_STAGE: stage}  # the record first
        await ctx.registry.run(ops.set_version_tags, model, version, tags, current={})


async def registry_in_sync(ctx: Context, namespace: str, model: str) -> bool:
    """Whether MLflow still matches a settled model's statuses (no alias or tag changed, no
    version deleted by hand). Reads the registry (see :func:`read_registry`), writes nothing."""
    bodies = await model_bodies(ctx, namespace, model)
    statuses = {b["metadata"]["name"]: parse_status(ModelVersionStatus, b.get("status")) for b in bodies}
    if not any(st.registry is not None for st in statuses.values()):
        return True
    specs = {n: sp for n, sp in ((b["metadata"]["name"], _spec(b)) for b in bodies) if sp is not None}
    leaving = {b["metadata"]["name"] for b in bodies if b["metadata"].get("deletionTimestamp")}
    winners = {stage: next((n for n, s in statuses.items() if s.stage == stage), None) for stage in STAGES}
    state = await read_registry(ctx, model)
    newly_deleted = [
        n for n in deleted_versions(state, statuses) if _reason(statuses[n], "Registered") != VERSION_DELETED
    ]
    return not newly_deleted and not plan_registry(state, statuses, specs, winners, leaving)


async def sync_serving(
    ctx: Context,
    namespace: str,
    model: str,
    bodies: list[dict[str, Any]],
    statuses: dict[str, ModelVersionStatus],
    specs: dict[str, ModelVersionSpec],
    winners: dict[str, str | None],
    leaving: set[str | None],
    *,
    apply: bool = True,
    routers: Mapping[str, RouterConfig] | None = None,
) -> dict[str, tuple[ConditionStatus, str, str, ServingStatus]]:
    """Apply (or remove) each served stage's Deployment, Service, PDB and HPA; observe the Deployment.

    With ``apply=False`` (the registry step failed) nothing is changed: the Deployments are only
    observed, so the status still tells how serving is doing. ``routers``: the rollout router
    setting of a stage's Deployment during a rollout (:mod:`.rollout`).

    Returns ``{stage: (status, reason, message, ServingStatus)}`` for stages with a winner.
    """
    owners = [ObjectRef.from_body(b) for b in bodies if b["metadata"]["name"] not in leaving]
    ours = {str(b["metadata"]["uid"]) for b in bodies}  # leaving versions still own what they made
    result: dict[str, tuple[ConditionStatus, str, str, ServingStatus]] = {}
    for stage in ctx.settings.served_stages:
        name = serving_name(model, stage)
        winner = winners.get(stage)
        if not winner or not owners:
            if apply:
                await children.remove_all(ctx.kube, SERVING_KINDS, namespace, name, ours)
            continue
        st, spec = statuses[winner], specs[winner]
        assert st.registry is not None and st.version is not None
        foreign: list[str] = []  # objects with our children's names that are not ours
        applied = (
            await _apply_serving(
                ctx, namespace, model, stage, winner, st, spec, owners, ours, foreign, (routers or {}).get(stage)
            )
            if apply
            else None
        )
        if apply and applied is None:  # the Deployment's name is held by an object that is not ours
            observed = None
        else:
            observed = await ctx.kube.get(DEPLOYMENTS, namespace, name) or applied
            if observed is not None and not children.is_ours(observed, ours):  # only observed: never read as ours
                foreign.append(str(children.ChildNameConflict(observed)))
                observed = None
        state, reason, message, ready = deployment_serving(observed)
        if foreign:
            state, reason, message = "False", children.CHILD_NAME_CONFLICT, "; ".join(foreign)
        elif state != "True" and reason != "ScaledToZero":
            refused = await observe_refusal(ctx, namespace, model, stage, st.version, st.registry.version)
            if refused is not None:
                state, (reason, message) = "False", refused
        served_label = ((observed or {}).get("spec") or {}).get("template", {}).get("metadata", {}).get("labels") or {}
        result[stage] = (
            state,
            reason,
            message,
            ServingStatus(
                deployment=name,
                service=name,
                url=service_url(model, stage, namespace, ctx.settings),
                replicas=int(((observed or {}).get("spec") or {}).get("replicas", spec.serving.replicas)),
                ready_replicas=ready,
                served_version=served_label.get("ml.smarthr360.io/version", st.version),
            ),
        )
    return result


async def _ensure(ctx: Context, manifest: dict[str, Any], ours: set[str], foreign: list[str]) -> dict[str, Any] | None:
    """Apply one serving child; an object of that name that is not ours is left alone and
    described in ``foreign`` (returns None then)."""
    try:
        return (await children.apply(ctx.kube, manifest, ours))[0]
    except children.ChildNameConflict as exc:
        foreign.append(str(exc))
        return None


async def _apply_serving(
    ctx: Context,
    namespace: str,
    model: str,
    stage: str,
    winner: str,
    st: ModelVersionStatus,
    spec: ModelVersionSpec,
    owners: list[ObjectRef],
    ours: set[str],
    foreign: list[str],
    router: RouterConfig | None = None,
) -> dict[str, Any] | None:
    """Apply one stage's serving children for its winner; returns the Deployment as applied (None
    when an object that is not ours holds its name: described in ``foreign``, left alone)."""
    assert st.registry is not None and st.version is not None
    name = serving_name(model, stage)
    served = ServedVersion(
        namespace=namespace, version=st.version, registry_version=st.registry.version, cr_name=winner
    )
    deployment = await _ensure(
        ctx,
        build_serving_deployment(
            model, stage, served, owners, spec.serving, ctx.settings, mlflow=spec.mlflow, router=router
        ),
        ours,
        foreign,
    )
    await _ensure(ctx, build_serving_service(model, stage, namespace, owners), ours, foreign)
    pdb = build_pdb(model, stage, namespace, owners, spec.serving)
    if pdb is None:
        await children.remove(ctx.kube, "PodDisruptionBudget", namespace, name, ours)
    else:
        await _ensure(ctx, pdb, ours, foreign)
    hpa = build_hpa(model, stage, namespace, owners, spec.serving)
    if hpa is None:
        await children.remove(ctx.kube, "HorizontalPodAutoscaler", namespace, name, ours)
    else:
        await _ensure(ctx, hpa, ours, foreign)
    return deployment


def apply_outcome(
    ctx: Context,
    body: Mapping[str, Any],
    spec: ModelVersionSpec,
    st: ModelVersionStatus,
    decision: Decision | None,
    winners: dict[str, str | None],
    serving: dict[str, tuple[ConditionStatus, str, str, ServingStatus]],
    repairs: Mapping[str, list[tuple[str, str]]],
    versions: Mapping[str, str] | None = None,
) -> None:
    """Fill promotion, stage, serving, conditions and phase of one version's status in place.

    ``repairs``: registry changes made by hand that this pass undid, by CR name (RegistryDrift).
    ``versions`` maps ModelVersion names to their semantic versions (to name a stage's holder).
    """
    versions = versions or {}
    name = body["metadata"]["name"]
    gen = body["metadata"].get("generation")
    held = next((s for s, w in winners.items() if w == name), None)
    if decision is not None and st.registry is not None:
        previous = st.promotion
        if previous is None or (previous.decision, previous.stage, previous.compared_to) != (
            decision.decision,
            decision.stage,
            decision.compared_to,
        ):
            st.promotion = PromotionStatus(
                decision=decision.decision,
                stage=decision.stage,
                reason=decision.reason,
                metric=spec.promotion.metric,
                value=decision.value,
                compared_to=decision.compared_to,
                compared_value=decision.compared_value,
                time=now(),
            )
            st.promotion_history.append(
                PromotionRecord(
                    version=st.version or "",
                    stage=decision.stage,
                    decision=decision.decision,
                    reason=decision.reason,
                    metrics=st.metrics or {},
                    time=now(),
                )
            )
            st.promotion_history = st.promotion_history[-ctx.settings.promotion_history_limit :]
        reason = {
            "Promoted": "Promoted",
            "GateFailed": "GateFailed",
            "Superseded": "Superseded",
            "Recommended": "ManualApprovalRequired",
            "Released": "Archived",
        }.get(decision.decision, "Pending")
        message = decision.reason
        holder = winners.get(decision.stage)
        if decision.decision == "Superseded" and holder is not None and holder in versions:
            # The holder now, not only the version it lost to in the fold (that one may be superseded too).
            message = f"{decision.stage} is held by {versions[holder]}: {decision.reason}"
        set_condition(st.conditions, "Promoted", "True" if held else "False", reason, message, gen)
    _promoted_weight(st, held)
    st.stage = held
    if held and held in serving:
        state, reason, message, serving_status = serving[held]
        st.serving = serving_status
        set_condition(st.conditions, "Serving", state, reason, message, gen)
    else:
        st.serving = None
        if get_condition(st.conditions, "Serving") is not None:
            set_condition(
                st.conditions, "Serving", "False", "NotServing", "this version does not hold a served stage", gen
            )
    if repairs.get(name):
        reason = repairs[name][0][0]
        message = "; ".join(m for _, m in repairs[name])
        set_condition(st.conditions, "RegistryDrift", "True", reason, message, gen)
    elif get_condition(st.conditions, "RegistryDrift") is not None:
        set_condition(st.conditions, "RegistryDrift", "False", "InSync", "aliases match the ModelVersions", gen)
    mark_registry_reachable(st.conditions, gen)
    summarise(ctx, spec, st, held, gen)


def _promoted_weight(st: ModelVersionStatus, held: str | None) -> None:
    """``status.rollout.weight`` of a version its rollout promoted: 0 once it lost the stage to
    another version (the rollout's record stays), 100 while it holds it. Unchanged in the pass
    that promotes it (it takes the stage from the next pass on, and the promotion set 100)."""
    rs = st.rollout
    if rs is None or rs.phase != "Promoted":
        return
    if held == rs.stage:
        rs.weight = 100
    elif st.stage == rs.stage:  # held it until this pass
        rs.weight = 0


def summarise(ctx: Context, spec: ModelVersionSpec, st: ModelVersionStatus, held: str | None, gen: int | None) -> None:
    """Derive ``phase`` and the ``Ready`` condition from the other conditions."""
    conds = {c.type: c for c in st.conditions}
    # Ready is the summary written here, not an input: reading it back would make a failure
    # outlive its cause (a fixed spec, a conflict that went away).
    failed = next(
        (c for c in conds.values() if c.type != "Ready" and c.status == "False" and c.reason in FAILED_REASONS), None
    )
    serving = conds.get("Serving")
    promoted = conds.get("Promoted")
    if failed is not None:
        phase, ready, reason, message = "Failed", "False", failed.reason, failed.message
    elif st.registry is None:
        trained = conds.get("Trained")
        if trained is not None and trained.status == "True":
            phase, reason = "Registering", "Registering"
        elif trained is not None:
            phase, reason = "Training", trained.reason
        else:
            phase, reason = "Pending", "Pending"
        ready, message = "False", trained.message if trained else "waiting to train"
    elif spec.stage == "Archived":
        phase, ready, reason, message = "Archived", "False", "Archived", "spec.stage is Archived"
    elif held:
        is_served = held in ctx.settings.served_stages
        if not is_served or (serving is not None and serving.status == "True"):
            phase, ready, reason = "Ready", "True", "Serving" if is_served else "Promoted"
            message = f"{st.version} holds {held}" + (f" and serves at {st.serving.url}" if st.serving else "")
        else:
            phase, ready = "Promoted", "False"
            reason = serving.reason if serving else "RollingOut"
            message = serving.message if serving else "serving Deployment rolling out"
    elif promoted is not None and promoted.reason in ("Superseded", "GateFailed"):
        phase, ready, reason, message = promoted.reason, "False", promoted.reason, promoted.message
    else:
        phase, ready = "Registered", "False"
        reason = promoted.reason if promoted else "Registered"
        message = promoted.message if promoted else "registered"
    st.phase = phase  # type: ignore[assignment]
    set_condition(st.conditions, "Ready", ready, reason, message, gen)  # type: ignore[arg-type]
    st.observed_generation = gen
