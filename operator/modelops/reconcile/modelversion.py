"""ModelVersion, per-version flow: resolve the version, train, register. Then the model-level flow.

Level-based: create, update, resume, the timer and child events all call :func:`reconcile`,
which observes Kubernetes and MLflow, decides, applies, and writes status once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import semver
from pydantic import ValidationError

from ..api.common import get_condition, set_condition
from ..api.modelversion import (
    ModelMetadata,
    ModelVersionSpec,
    ModelVersionStatus,
    RegistryStatus,
    TrainingJobStatus,
)
from ..builders.common import COMPONENT_TRAINING, LABEL_COMPONENT, LABEL_VERSION, ObjectRef, train_job_name
from ..builders.training import TRAIN_CONTAINER, build_training_job, trained_hash, training_hash
from ..clients.kube import JOBS, MODELVERSIONS, PODS, Conflict
from ..contract import (
    TAG_FAILURE,
    TAG_NAME,
    TAG_NAMESPACE,
    TAG_SEMVER,
    TAG_STAGE,
    TAG_UID,
    TrainingResult,
    estimator_allowed,
)
from ..datapolicy import first_refusal
from ..registry import operations as ops
from ..registry.errors import ModelOwnedElsewhere, RegistryUnavailable
from ..registry.semantic import bump_version, is_semver, max_semver
from . import children, rollout
from .context import Context
from .model import VERSION_DELETED, model_bodies, reconcile_model, registry_in_sync, summarise
from .status import (
    ADMISSION_REASONS,
    mark_invalid_field,
    mark_invalid_spec,
    mark_registry_reachable,
    mark_registry_unavailable,
    parse_status,
    post_transitions,
    write_status,
)
from .termination import last_termination


def experiment_of(ctx: Context, spec: ModelVersionSpec) -> str:
    """The training experiment for this version (spec override or operator default)."""
    return (spec.mlflow.experiment if spec.mlflow and spec.mlflow.experiment else None) or (
        ctx.settings.experiment_training
    )


def _created_key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body["metadata"]
    return (str(meta.get("creationTimestamp") or ""), str(meta["name"]))


def _claimed_version(body: Mapping[str, Any]) -> str | None:
    return (body.get("status") or {}).get("version") or (body.get("spec") or {}).get("version")


def resolve_version(
    spec: ModelVersionSpec, siblings: list[dict[str, Any]], registered: list[str | None]
) -> tuple[str, str | None]:
    """Return (semantic version, parent version). Explicit, or a bump of the highest known one.

    "Known" means registered in MLflow (``registered``: the model versions' semver tags) or
    claimed by another CR of the model in the namespace, so two CRs bumping at once do not
    resolve to the same version.
    """
    known = [v for v in [*registered, *(_claimed_version(s) for s in siblings)] if v and is_semver(v)]
    highest = max_semver(known)
    if spec.version:
        mine = semver.Version.parse(spec.version)
        return spec.version, max_semver(v for v in known if semver.Version.parse(v) < mine)
    assert spec.version_bump is not None  # the CRD's CEL rule requires exactly one of the two
    return bump_version(highest, spec.version_bump), highest


async def version_of_own_job(ctx: Context, namespace: str, uid: str, model: str) -> str | None:
    """The semantic version a training Job owned by the CR ``uid`` was created for (its version
    label), or None when it has none. The Job is the durable record of a bump decided before the
    status claim could be written."""
    jobs = await ctx.kube.list(JOBS, namespace, {LABEL_COMPONENT: COMPONENT_TRAINING})
    for job in jobs:
        meta = job.get("metadata") or {}
        if not any(ref.get("uid") == uid and ref.get("controller") for ref in meta.get("ownerReferences") or []):
            continue
        version = (meta.get("labels") or {}).get(LABEL_VERSION)
        if version and is_semver(version):
            return str(version)
    return None


def find_conflict(body: Mapping[str, Any], version: str, siblings: list[dict[str, Any]]) -> str | None:
    """Name of an older CR of the same model claiming the same version, if any (it keeps it)."""
    mine = _created_key(body)
    for other in siblings:
        if _claimed_version(other) == version and _created_key(other) < mine:
            return str(other["metadata"]["name"])
    return None


#: How old (seconds) the model's version list may be when an explicit version is resolved and
#: checked before its Job: a burst of new versions of a model shares one registry search.
REGISTRY_READ_SECONDS = 10.0

#: How often one reconcile re-reads and retries after a status write lost to a newer object.
CONFLICT_RETRIES = 3


#: Settled versions are re-checked this many resync intervals apart (see :func:`is_settled`).
SETTLED_RESYNC_FACTOR = 10


def is_settled(body: Mapping[str, Any]) -> bool:
    """A registered version whose status reflects its current spec, that is not being deleted and
    whose serving Deployment is not rolling out.

    Pure (the body only), so kopf can use it as a timer filter: such a version only changes
    through events (its spec, its children, its siblings' registrations), and its timer only
    guards against drift made by hand, so it fires every ``SETTLED_RESYNC_FACTOR`` intervals.
    A version reporting a ``ChildNameConflict`` is not settled: the object in the way may go
    without an event we watch.
    """
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    rolling_out = any(
        c.get("type") == "Serving" and c.get("status") == "Unknown" for c in status.get("conditions") or []
    )  # a rollout in progress is watched every interval: its pods may refuse the model
    return bool(
        status.get("registry")
        and status.get("observedGeneration") == meta.get("generation")
        and not meta.get("deletionTimestamp")
        # an object of someone else blocks a child: look again every interval until it is gone
        and not any(c.get("reason") == children.CHILD_NAME_CONFLICT for c in status.get("conditions") or [])
        and not rolling_out
        and not rollout.is_active(status)  # a rollout decides on every interval
    )


def _settled_and_synced(ctx: Context, body: Mapping[str, Any]) -> bool:
    model = (body.get("spec") or {}).get("model")
    window = ctx.settings.reconcile_interval_seconds * SETTLED_RESYNC_FACTOR
    return bool(is_settled(body) and model and ctx.model_synced_within(body["metadata"]["namespace"], model, window))


async def _registry_unchanged(ctx: Context, body: Mapping[str, Any]) -> bool:
    """Whether a settled version's model still matches MLflow, checked at most once per interval
    per model (the first timer of the model that fires reads the registry; the others skip)."""
    namespace, model = body["metadata"]["namespace"], body["spec"]["model"]
    if ctx.model_synced_within(namespace, model) or ctx.registry_checked_within(namespace, model):
        return True
    async with ctx.model_check_lock(namespace, model):
        if ctx.registry_checked_within(namespace, model):
            return True
        unchanged = await registry_in_sync(ctx, namespace, model)
        ctx.mark_registry_checked(namespace, model)
        return unchanged


async def reconcile(ctx: Context, body: Mapping[str, Any], periodic: bool = False) -> ModelVersionStatus | None:
    """Reconcile one ModelVersion and then its model. Returns the status it wrote or kept (None:
    nothing to do, the object is gone or, for the timer, settled).

    Every reconcile starts from the freshest body the operator already has (kopf's index and its
    own writes; a GET without an index, and after a 409). For a settled version
    (:func:`is_settled`) the timer does nothing when the model-level flow ran within
    ``SETTLED_RESYNC_FACTOR`` intervals; otherwise it skips the model-level flow when this
    version's own state did not change and the flow ran within one interval: a model is
    re-checked once per interval while it has versions in progress, and once per
    ``SETTLED_RESYNC_FACTOR`` intervals when all are settled, not once per version.

    Status writes carry the body's resourceVersion; when one is refused (409) the object is
    re-read and the reconcile repeated, at most :data:`CONFLICT_RETRIES` times.

    Raises kopf.TemporaryError (via the handlers) when MLflow or the API server is unavailable,
    or when the object kept changing under the reconcile (Conflict).
    """
    uid = body["metadata"]["uid"]
    if periodic and ctx.versions.attached and _settled_and_synced(ctx, ctx.versions.latest(body)):
        # The timer of a settled version: at most one registry read per model and interval,
        # and a full reconcile only when MLflow was changed by hand.
        if await _registry_unchanged(ctx, ctx.versions.latest(body)):
            return None
        periodic = False
    async with ctx.object_lock(uid):
        for attempt in range(CONFLICT_RETRIES):
            if attempt == 0 and ctx.versions.attached:
                # The freshest copy already known (the handler's body, the index, our own writes): the
                # body a handler got may predate a reconcile that just finished, and our writes are
                # remembered; a copy still stale meets the status write's precondition (409: re-read).
                current: dict[str, Any] | None = ctx.versions.latest(body)
            else:
                current = await ctx.kube.get(MODELVERSIONS, body["metadata"]["namespace"], body["metadata"]["name"])
            if current is None or current["metadata"].get("uid") != uid:
                return None  # gone (or replaced): nothing to do
            ctx.versions.remember(current)
            try:
                return await _reconcile_current(ctx, current, periodic)
            except Conflict:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


async def _write(ctx: Context, body: Mapping[str, Any], status: ModelVersionStatus) -> dict[str, Any] | None:
    """Write a ModelVersion status with a resourceVersion precondition; remember what was written."""
    written = await write_status(ctx.kube, MODELVERSIONS, body, status, precondition=True)
    if written is not None:
        ctx.versions.remember(written)
    return written


def settings_problem(spec: ModelVersionSpec, ctx: Context) -> str | None:
    """What the CRD schema cannot check because it depends on the operator's settings: the
    estimator must come from ``MODELOPS_ALLOWED_ESTIMATOR_MODULES``. None when the spec is fine."""
    allowed = list(ctx.settings.allowed_estimator_modules)
    if not estimator_allowed(spec.training.estimator, allowed):
        return f"spec.training.estimator: {spec.training.estimator!r} is outside the allowed modules {allowed}"
    return None


async def _reconcile_current(ctx: Context, body: dict[str, Any], periodic: bool) -> ModelVersionStatus:
    meta = body["metadata"]
    status: ModelVersionStatus = parse_status(ModelVersionStatus, body.get("status"))
    generation = meta.get("generation")
    old_conditions = list(status.conditions)
    try:
        spec = ModelVersionSpec.model_validate(body.get("spec") or {})
        invalid: ValidationError | str | None = None if status.registry else settings_problem(spec, ctx)
    except ValidationError as exc:
        invalid = exc
    if invalid is not None:  # refused before any Job, MLflow run or registry call
        mark_invalid_spec(status.conditions, invalid, generation)
        return await _write_invalid(ctx, body, status, old_conditions)
    refused = policy_refusal(ctx, spec, status)
    if refused is not None:
        mark_invalid_field(status.conditions, *refused, generation)
        return await _write_invalid(ctx, body, status, old_conditions)
    if _refused_before_training(status):
        status.version = None  # only shown while refused (see _write_invalid): resolve it now
    try:
        return await _reconcile(ctx, body, spec, status, periodic)
    except RegistryUnavailable as exc:
        # Say so in status (what was learnt before the failure is kept), then let kopf retry.
        mark_registry_unavailable(status.conditions, exc, generation)
        with contextlib.suppress(Conflict):  # a newer object: the retry re-reads it anyway
            await _write(ctx, body, status)
        raise


def policy_refusal(ctx: Context, spec: ModelVersionSpec, status: ModelVersionStatus) -> tuple[str, str] | None:
    """``(field, reason)`` when the operator's data URI policy refuses ``spec.training.data.uri``.

    Checked before any Job or MLflow call of a version that is not registered yet; a registered
    version is immutable and keeps serving whatever the policy says now.
    """
    if status.registry is not None:
        return None
    return first_refusal({"spec.training.data.uri": spec.training.data.uri}, ctx.settings.data_policy)


def _refused_before_training(status: ModelVersionStatus) -> bool:
    """Whether the stored status is a refusal (``Ready=False InvalidSpec``) of a version that never
    had a training Job nor a registry version: nothing was resolved for it yet."""
    ready = get_condition(status.conditions, "Ready")
    return bool(
        ready is not None and ready.reason == "InvalidSpec" and status.training_job is None and status.registry is None
    )


async def _write_invalid(
    ctx: Context, body: Mapping[str, Any], status: ModelVersionStatus, old_conditions: list[Any]
) -> ModelVersionStatus:
    """Write an InvalidSpec status (phase Failed) and post its transition Event.

    A version refused before training shows the explicit ``spec.version`` it asks for in
    ``status.version`` (``kubectl get mv``'s VERSION column); it is resolved afresh once the spec
    is accepted, so a fix that also changes ``spec.version`` takes the new one.
    """
    requested = (body.get("spec") or {}).get("version")
    if _refused_before_training(status) and isinstance(requested, str) and is_semver(requested):
        status.version = requested
    status.phase = "Failed"
    status.observed_generation = body["metadata"].get("generation")
    if await _write(ctx, body, status):
        post_transitions(ctx.post_event, body, old_conditions, status.conditions)
    return status


async def _reconcile(
    ctx: Context, body: Mapping[str, Any], spec: ModelVersionSpec, status: ModelVersionStatus, periodic: bool
) -> ModelVersionStatus:
    """Per-version flow, then the model-level flow once the version is registered.

    Versions with an explicit ``spec.version`` train in parallel; a ``versionBump`` resolves under
    the model lock (and writes its claim before releasing it) so two bumps never pick the same
    number. Unregistered versions take no part in stage decisions: they write their own status
    and skip the model-level flow. Registered versions hand their status to the model-level
    flow, which runs once for all versions of the model that asked for it meanwhile.
    """
    meta = body["metadata"]
    namespace = meta["namespace"]
    deleting = bool(meta.get("deletionTimestamp"))
    model_lock = ctx.model_lock(namespace, spec.model)
    bumping = status.version is None and spec.version_bump is not None
    async with model_lock if bumping else contextlib.nullcontext():
        if not deleting:
            await version_flow(ctx, body, spec, status)
        if status.registry is None and not deleting:
            old = parse_status(ModelVersionStatus, body.get("status"))
            # The flow ran without meeting an outage (it raises RegistryUnavailable otherwise):
            # an earlier "MLflow unreachable" no longer holds, also for a Failed version.
            mark_registry_reachable(status.conditions, meta.get("generation"))
            summarise(ctx, spec, status, None, meta.get("generation"))
            if await _write(ctx, body, status):
                post_transitions(ctx.post_event, body, old.conditions, status.conditions)
            return status
    unchanged = status == parse_status(ModelVersionStatus, body.get("status"))
    if periodic and unchanged and ctx.model_synced_within(namespace, spec.model):
        return status

    async def model_pass(fresh: dict[str, ModelVersionStatus]) -> dict[str, ModelVersionStatus]:
        result = await reconcile_model(ctx, namespace, spec.model, fresh)
        ctx.mark_model_synced(namespace, spec.model)
        return result

    result: ModelVersionStatus = await ctx.model_passes.submit(
        (namespace, spec.model), model_lock, meta["name"], status, model_pass
    )
    return result


async def version_flow(
    ctx: Context, body: Mapping[str, Any], spec: ModelVersionSpec, status: ModelVersionStatus
) -> None:
    """Resolve, train and register one version, updating ``status`` in place (not written here)."""
    meta = body["metadata"]
    ns, uid, gen = meta["namespace"], meta["uid"], meta.get("generation")
    status.observed_generation = gen
    if status.registry is not None:  # registered: immutable, only say whether spec moved
        verdict = get_condition(status.conditions, "Registered")
        if verdict is not None and verdict.reason == VERSION_DELETED:
            return  # deleted from MLflow by hand: final (the model-level flow found it)
        ignored = []
        if status.training_hash not in (None, training_hash(spec)):
            ignored.append("spec.training changed")
        if spec.version and spec.version != status.version:
            ignored.append(f"spec.version {spec.version} differs")
        if ignored:
            set_condition(
                status.conditions,
                "Registered",
                "True",
                "ImmutableVersion",
                f"{' and '.join(ignored)} after registration of {status.version}; a registered version is "
                "immutable and this change is ignored: create a new ModelVersion for a new version",
                gen,
            )
        else:
            set_condition(
                status.conditions,
                "Registered",
                "True",
                "Registered",
                f"registered as {status.registry.model} version {status.registry.version}",
                gen,
            )
        return
    if not ctx.model_checked_recently(ns, spec.model):
        async with ctx.model_check_lock(ns, spec.model):  # one check per model, not one per waiting version
            if not ctx.model_checked_recently(ns, spec.model):
                try:
                    await ctx.registry.run(ops.ensure_registered_model, spec.model, ns)
                except ModelOwnedElsewhere as exc:
                    set_condition(status.conditions, "Registered", "False", "ModelOwnedElsewhere", str(exc), gen)
                    return
                ctx.mark_model_checked(ns, spec.model)
    siblings = [s for s in await model_bodies(ctx, ns, spec.model) if s["metadata"]["uid"] != uid]
    existing: Any = _UNKNOWN
    if not status.version:  # one search answers both the highest known version and who holds ours
        # An explicit version may start from a read of the last few seconds (shared by a burst of new
        # versions of the model; register() checks the owner again, uncached); a bump reads afresh.
        max_age = 0.0 if spec.version_bump else REGISTRY_READ_SECONDS
        versions = await ctx.registry_versions(spec.model, max_age)
        registered = [(v.tags or {}).get(TAG_SEMVER) for v in versions]
        started = await version_of_own_job(ctx, ns, uid, spec.model) if spec.version_bump else None
        # A Job of ours already trains a version (an operator stopped before it wrote the claim,
        # e.g. a leader killed mid-pass): that is our version, not a new bump and a second Job.
        resolved_spec = spec.model_copy(update={"version": started, "version_bump": None}) if started else spec
        status.version, status.parent_version = resolve_version(resolved_spec, siblings, registered)
        existing = ops.oldest_with_semver(versions, status.version)
    conflict = find_conflict(body, status.version, siblings)
    if conflict is None and status.training_job is None:  # before training; again before registering
        if existing is _UNKNOWN:
            existing = await ctx.registry.run(ops.find_version_by_semver, spec.model, status.version)
        if existing is not None and _recreated(existing, meta):
            # This CR was deleted and applied again (new uid, same namespace/name/version): adopt
            # the version its predecessor registered instead of training a second one.
            run = await ctx.registry.run(ops.get_run, existing.run_id)
            await register(ctx, body, spec, status, run, experiment_of(ctx, spec))
            return
        conflict = await _registry_conflict(ctx, spec.model, status.version, meta, existing)
    if conflict:
        _version_conflict(status, spec, conflict, gen)
        return
    # A conflict or foreign owner reported earlier is gone: Registered is set again on registration.
    status.conditions = [c for c in status.conditions if not (c.type == "Registered" and c.reason in ADMISSION_REASONS)]
    await training_flow(ctx, body, spec, status)


_UNKNOWN: Any = object()


def _recreated(existing: Any, meta: Mapping[str, Any]) -> bool:
    """Whether a registered version was made by an earlier CR of the same namespace and name (a
    name is unique in a namespace, so that CR is gone and this one takes its place)."""
    tags = existing.tags or {}
    return (
        tags.get(TAG_UID) != meta["uid"]
        and tags.get(TAG_NAMESPACE) == meta["namespace"]
        and tags.get(TAG_NAME) == meta["name"]
    )


async def _registry_conflict(
    ctx: Context, model: str, version: str, meta: Mapping[str, Any], existing: Any = _UNKNOWN
) -> str | None:
    """Who else holds ``version`` of ``model`` in the registry, or None.

    Another owner is a version tagged with another uid that an earlier CR of the same namespace
    and name did not make (see :func:`_recreated`). ``existing`` is the oldest version tagged with
    that semver when the caller already looked it up.
    """
    if existing is _UNKNOWN:
        existing = await ctx.registry.run(ops.find_version_by_semver, model, version)
    if existing is None or _recreated(existing, meta):
        return None
    owner_uid = (existing.tags or {}).get(TAG_UID)
    if owner_uid in (None, meta["uid"]):
        return None
    owner = (existing.tags or {}).get(TAG_NAMESPACE), (existing.tags or {}).get(TAG_NAME)
    named = f"ModelVersion {owner[0]}/{owner[1]}, " if all(owner) else ""
    return f"a registered version with another owner ({named}uid {owner_uid})"


def _version_conflict(status: ModelVersionStatus, spec: ModelVersionSpec, conflict: str, gen: int | None) -> None:
    set_condition(
        status.conditions,
        "Registered",
        "False",
        "VersionConflict",
        f"{spec.model} {status.version} is already claimed by {conflict}; choose another version",
        gen,
    )


async def find_run(ctx: Context, experiment: str, uid: str, status: str | None = None) -> Any:
    """The newest MLflow run of a ModelVersion (by uid tag) in ``experiment`` (a name), or None.

    The experiment's id is remembered; a miss looks the id up again once, in case the experiment
    was re-created.
    """
    for refresh in (False, True):
        experiment_id = await ctx.registry.experiment_id(experiment, refresh=refresh)
        if experiment_id is None:
            return None
        run = await ctx.registry.run(ops.find_run_in_experiment, experiment_id, uid, status=status)
        if run is not None or experiment_id == await ctx.registry.experiment_id(experiment, refresh=True):
            return run
    return None


async def find_runs(ctx: Context, experiment: str, uid: str) -> list[Any]:
    """Every MLflow run of a ModelVersion (by uid tag) in ``experiment`` (a name), newest first.

    One search where :func:`find_run` and ending the killed attempts' runs took one each; the
    experiment's id is looked up again once on a miss, as in :func:`find_run`.
    """
    for refresh in (False, True):
        experiment_id = await ctx.registry.experiment_id(experiment, refresh=refresh)
        if experiment_id is None:
            return []
        runs = await ctx.registry.run(ops.runs_of, experiment_id, uid)
        if runs or experiment_id == await ctx.registry.experiment_id(experiment, refresh=True):
            return runs
    return []


async def training_flow(
    ctx: Context, body: Mapping[str, Any], spec: ModelVersionSpec, status: ModelVersionStatus
) -> None:
    """Create or observe the training Job; register the model once the run finished."""
    meta = body["metadata"]
    ns, name, uid, gen = meta["namespace"], meta["name"], meta["uid"], meta.get("generation")
    assert status.version is not None
    job_name = train_job_name(name, status.version)
    experiment = experiment_of(ctx, spec)
    trained = get_condition(status.conditions, "Trained")
    failed_before = trained is not None and trained.reason == "TrainingFailed"
    # No Job recorded for this version yet: create it without reading first (one round trip less
    # before training starts); a Job of that name that exists already is read and judged below.
    if status.training_job is None and not failed_before and await _create_job(ctx, body, spec, status):
        return
    job = await ctx.kube.get(JOBS, ns, job_name)
    if job is not None and not children.is_ours(job, {uid}):
        # Not ours (no ownerReference to this CR): never read as our training run, never deleted.
        conflict = str(children.ChildNameConflict({"kind": "Job", **job}))
        set_condition(status.conditions, "Trained", "False", children.CHILD_NAME_CONFLICT, conflict, gen)
        return
    if job is not None and trained_hash(job):
        # The Job says which spec.training it trains: a status write recording a new Job can be
        # lost (409), and the Job of the fixed spec has the failed one's name.
        status.training_hash = trained_hash(job)
    # A failed training is final for its spec; a new spec.training trains again.
    retrain = failed_before and status.training_hash not in (None, training_hash(spec))
    if job is not None and job["metadata"].get("deletionTimestamp"):
        set_condition(
            status.conditions, "Trained", "Unknown", "Retraining", f"waiting for the failed Job {job_name} to go", gen
        )
        return
    if job is not None and retrain:
        await ctx.kube.delete(JOBS, ns, job_name)
        set_condition(
            status.conditions,
            "Trained",
            "Unknown",
            "Retraining",
            f"spec.training changed after a failed training: Job {job_name} deleted, a new one follows",
            gen,
        )
        return
    if job is None:
        # Its Job ran and was garbage-collected (TTL): the run it wrote is the result. Not after a
        # Retraining deleted the failed Job: the next run must come from a Job of the new spec.
        deleted_by_us = trained is not None and trained.reason == "Retraining"
        if status.training_job is not None and not retrain and not deleted_by_us:
            run = await find_run(ctx, experiment, uid, "FINISHED")
            if run is not None:
                await register(ctx, body, spec, status, run, experiment)
                return
            if failed_before:
                return  # the failed Job is gone: keep the verdict (a new spec.training retrains)
        await _create_job(ctx, body, spec, status, exists_ok=True)
        return
    job_status = job.get("status") or {}
    conds = {c.get("type"): c for c in job_status.get("conditions") or [] if c.get("status") == "True"}
    status.training_job = TrainingJobStatus(
        name=job_name,
        start_time=job_status.get("startTime"),
        completion_time=job_status.get("completionTime"),
        failed_pods=job_status.get("failed") or 0,
    )
    if "Complete" in conds:
        runs = await find_runs(ctx, experiment, uid)  # one search: the killed attempts' and the finished one
        if any(r.info.status == "RUNNING" for r in runs):
            await ctx.registry.run(ops.end_runs, runs, "KILLED", _killed_reason(job_name, failed=False))
        run = next((r for r in runs if r.info.status == "FINISHED"), None)
        if run is None:
            set_condition(
                status.conditions,
                "Trained",
                "False",
                "RunNotFound",
                f"Job {job_name} completed but no finished MLflow run tagged {TAG_UID}={uid} "
                f"exists in experiment {experiment}",
                gen,
            )
            return
        await register(ctx, body, spec, status, run, experiment)
    elif "Failed" in conds:
        await _end_killed_runs(ctx, experiment, uid, job_name, True)
        run = await find_run(ctx, experiment, uid)
        pods = await ctx.kube.list(PODS, ns, {JOB_NAME_LABEL: job_name})
        ended = last_termination(pods, TRAIN_CONTAINER)
        job_says = conds["Failed"].get("message") or conds["Failed"].get("reason") or "the training process failed"
        recorded = run.data.tags.get(TAG_FAILURE) if run is not None else None
        if ended is not None and ended.signal:  # killed: the runtime could not say why, the pod does
            reason = f"{ended.describe(TRAIN_CONTAINER)}; {job_says}"
        else:
            reason = recorded or job_says
        status.training_job.failure_reason = reason
        if ended is not None:
            status.training_job.exit_code, status.training_job.signal = ended.exit_code, ended.signal
        set_condition(status.conditions, "Trained", "False", "TrainingFailed", f"Job {job_name}: {reason}", gen)
    else:
        attempt = (job_status.get("failed") or 0) + 1
        set_condition(
            status.conditions, "Trained", "Unknown", "Training", f"Job {job_name} is running (attempt {attempt})", gen
        )


async def _create_job(
    ctx: Context, body: Mapping[str, Any], spec: ModelVersionSpec, status: ModelVersionStatus, exists_ok: bool = False
) -> bool:
    """Create the version's training Job and record it in ``status`` (``Trained=Unknown JobCreated``).

    Returns False, recording nothing, when a Job of that name exists already, unless
    ``exists_ok`` (the caller just saw none: one created meanwhile is taken as ours).
    """
    meta = body["metadata"]
    assert status.version is not None
    job_name = train_job_name(meta["name"], status.version)
    manifest = build_training_job(ObjectRef.from_body(body), spec, status.version, status.parent_version, ctx.settings)
    try:
        await ctx.kube.create(JOBS, meta["namespace"], manifest)
    except Conflict:
        if not exists_ok:
            return False
    status.training_job = TrainingJobStatus(name=job_name)
    status.training_hash = training_hash(spec)
    gen = meta.get("generation")
    set_condition(status.conditions, "Trained", "Unknown", "JobCreated", f"training Job {job_name} created", gen)
    return True


#: Label the Job controller puts on its pods (Kubernetes >= 1.27; ``job-name`` before).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


async def _end_killed_runs(ctx: Context, experiment: str, uid: str, job_name: str, failed: bool) -> None:
    """A finished Job has no attempt left running: end the MLflow runs its killed attempts left
    ``RUNNING`` (a process killed by a signal cannot end its run), as KILLED."""
    experiment_id = await ctx.registry.experiment_id(experiment)
    if experiment_id is None:
        return
    await ctx.registry.run(ops.end_running_runs, experiment_id, uid, "KILLED", _killed_reason(job_name, failed))


def _killed_reason(job_name: str, failed: bool) -> str:
    outcome = "failed" if failed else "completed by a later attempt"
    return f"the training attempt was killed before it ended its run (Job {job_name} {outcome})"


async def register(
    ctx: Context, body: Mapping[str, Any], spec: ModelVersionSpec, status: ModelVersionStatus, run: Any, experiment: str
) -> None:
    """Register the run's model (idempotently) and fill registry, metrics and model metadata."""
    meta = body["metadata"]
    gen = meta.get("generation")
    set_condition(status.conditions, "Trained", "True", "TrainingSucceeded", f"MLflow run {run.info.run_id}", gen)
    if status.training_job is not None:  # an earlier attempt's failure no longer describes this version
        status.training_job.failure_reason = None
    assert status.version is not None
    # One search, afresh: who holds this semantic version now, and whether this run's version exists.
    same = await ctx.registry.run(ops.versions_with_semver, spec.model, status.version)
    conflict = await _registry_conflict(
        ctx, spec.model, status.version, meta, ops.oldest_with_semver(same, status.version)
    )
    if conflict:  # registered by someone else while this version trained
        _version_conflict(status, spec, conflict, gen)
        return
    tags = {
        TAG_SEMVER: str(status.version),
        TAG_NAMESPACE: meta["namespace"],
        TAG_NAME: meta["name"],
        TAG_UID: meta["uid"],
    }
    if status.parent_version:
        tags["semver.parent"] = status.parent_version
    # The stage tag only on creation: a repeated registration (a retry after a lost status
    # write) must not reset the stage the model-level flow has tagged since.
    mv = await ctx.registry.run(
        ops.register_run_model,
        spec.model,
        run,
        tags,
        create_model=False,
        creation_tags={TAG_STAGE: "None"},
        known=same,  # a version made from this run carries this semantic version (tagged at creation)
    )
    ctx.registry_changed(spec.model)
    status.registry = RegistryStatus(
        model=spec.model,
        version=str(mv.version),
        run_id=run.info.run_id,
        model_uri=f"models:/{spec.model}/{mv.version}",
        experiment=experiment,
    )
    status.metrics = {k: float(v) for k, v in run.data.metrics.items()}
    result = TrainingResult.from_tags(run.data.tags)
    status.model = ModelMetadata(
        framework="scikit-learn",
        framework_version=result.framework_version,
        algorithm=result.algorithm,
        task=result.task,
        size_bytes=result.size_bytes,
        training_rows=result.training_rows,
        features=result.features,
        classes=result.classes,
        dataset_hash=run.data.tags.get("dataset.sha256"),
    )
    value = status.metrics.get(spec.promotion.metric)
    status.metric_summary = f"{spec.promotion.metric}={value:.4f}" if value is not None else None
    status.training_hash = training_hash(spec)
    set_condition(
        status.conditions, "Registered", "True", "Registered", f"registered as {spec.model} version {mv.version}", gen
    )


async def finalize(ctx: Context, body: Mapping[str, Any]) -> None:
    """On deletion: remove this version's aliases, tag it Archived, and let the next candidate take over.

    Registry data is never deleted. A missing model version (404) counts as done; MLflow being
    unreachable propagates so that kopf retries.
    """
    meta = body["metadata"]
    status: ModelVersionStatus = parse_status(ModelVersionStatus, body.get("status"))
    spec_model = (body.get("spec") or {}).get("model")
    if not spec_model:
        return
    async with ctx.object_lock(meta["uid"]), ctx.model_lock(meta["namespace"], spec_model):
        ctx.versions.remember(body)
        if status.registry is not None and not _conflicted(status):
            await ctx.registry.run(ops.archive_version, spec_model, status.registry.version)
        await reconcile_model(ctx, meta["namespace"], spec_model, {}, exclude=meta["name"])
    ctx.forget(meta["uid"])


def _conflicted(status: ModelVersionStatus) -> bool:
    cond = get_condition(status.conditions, "Registered")
    return bool(cond and cond.reason in ADMISSION_REASONS)
