"""kopf registration only: every handler is a thin call into reconcile/.

Handlers are registered by :func:`register` into a given ``kopf.OperatorRegistry`` with values
from the loaded settings (never read at import time). Create, update, resume, the timer and
child-object events all run the same level-based reconcile. A kopf index of ModelVersions by
``(namespace, spec.model)`` (:data:`INDEX`) lets a reconcile find a model's versions without
listing the namespace (see reconcile/versions.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .api.common import GROUP, VERSION
from .builders.common import LABEL_MANAGED_BY, LABEL_MODEL, MANAGED_BY
from .clients.kube import (
    CRONJOBS,
    DEPLOYMENTS,
    HPAS,
    JOBS,
    MODELMONITORS,
    MODELVERSIONS,
    PDBS,
    SERVICES,
    KubeError,
    Unavailable,
)
from .reconcile import modelmonitor, modelversion
from .reconcile.context import Context
from .reconcile.model import model_bodies
from .reconcile.versions import model_key
from .registry.errors import RegistryUnavailable
from .settings import Settings
from .telemetry import REASON_KUBERNETES, REASON_REGISTRY, OperatorMetrics

log = logging.getLogger(__name__)
MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}
#: id of the kopf index of ModelVersions by (namespace, spec.model); also the handlers' kwarg name.
INDEX = "modelversions_by_model"
#: ids of the ModelVersion resync timers: versions in progress, settled versions.
RESYNC_TIMERS = ("resync", "resync-settled")
#: id of the ModelMonitor timer (polls MLflow for new monitoring runs).
MONITOR_TIMER = "observe"
#: Every timer registered here: kopf's per-firing "Timer '…' succeeded." lines of these are
#: filtered out of the log (runner.QuietTimerSuccess).
TIMERS = (*RESYNC_TIMERS, MONITOR_TIMER)
#: Every kind of child the operator creates, watched by label (``app.kubernetes.io/managed-by``).
CHILD_RESOURCES = (JOBS, DEPLOYMENTS, SERVICES, PDBS, HPAS, CRONJOBS)
#: Children whose status the operator reports, so every event of theirs counts.
STATUS_CHILDREN = ("Job", "Deployment")


def _retry_delay(attempt: int) -> float:
    return float(min(60, 2 ** min(attempt, 6)))


def _memo(kwargs: Mapping[str, Any]) -> Any:
    """kopf's memo, with the ModelVersion index attached to the context (the same object every call)."""
    memo = kwargs["memo"]
    if INDEX in kwargs and getattr(memo, "ctx", None) is not None:
        memo.ctx.versions.attach(kwargs[INDEX])
    return memo


def index_by_model(body: Mapping[str, Any], **_: Any) -> dict[tuple[str, str], Mapping[str, Any]] | None:
    """kopf indexing handler: a ModelVersion body under ``(namespace, spec.model)``."""
    key = model_key(body)
    return {key: body} if key is not None else None


async def _guarded(kind: str, memo: Any, retry: int, fn: Any, *args: Any) -> Any:
    """Run a reconcile, turning unavailability of MLflow or the API into kopf's TemporaryError."""
    metrics: OperatorMetrics = memo.metrics
    with metrics.reconcile_timer(kind):
        try:
            result = await fn(*args)
        except RegistryUnavailable as exc:
            metrics.reconcile_error(kind, REASON_REGISTRY)
            raise kopf.TemporaryError(f"MLflow unavailable: {exc}", delay=_retry_delay(retry)) from exc
        except Unavailable as exc:
            metrics.reconcile_error(kind, REASON_KUBERNETES)
            raise kopf.TemporaryError(str(exc), delay=_retry_delay(retry)) from exc
        except KubeError as exc:
            metrics.reconcile_error(kind, f"HTTP{exc.status}")
            raise kopf.TemporaryError(f"Kubernetes API error: {exc}", delay=_retry_delay(retry)) from exc
    return result


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register every handler of the operator into ``registry``."""

    async def mv_reconcile(**kwargs: Any) -> None:
        memo = _memo(kwargs)
        await _guarded(
            "ModelVersion", memo, kwargs.get("retry", 0), modelversion.reconcile, memo.ctx, dict(kwargs["body"])
        )

    async def mv_resync(**kwargs: Any) -> None:
        memo = _memo(kwargs)
        await _guarded(
            "ModelVersion", memo, kwargs.get("retry", 0), modelversion.reconcile, memo.ctx, dict(kwargs["body"]), True
        )

    async def mv_delete(**kwargs: Any) -> None:
        memo = _memo(kwargs)
        await _guarded(
            "ModelVersion", memo, kwargs.get("retry", 0), modelversion.finalize, memo.ctx, dict(kwargs["body"])
        )

    async def mm_reconcile(**kwargs: Any) -> None:
        memo = _memo(kwargs)
        await _guarded(
            "ModelMonitor", memo, kwargs.get("retry", 0), modelmonitor.reconcile, memo.ctx, dict(kwargs["body"])
        )

    async def child_event(**kwargs: Any) -> None:
        """A managed Job or Deployment changed: reconcile the ModelVersions it belongs to."""
        memo = _memo(kwargs)
        await _on_child(memo.ctx, memo, kwargs["body"], kwargs.get("type"))

    kopf.index(GROUP, VERSION, "modelversions", id=INDEX, registry=registry)(index_by_model)
    interval = settings.reconcile_interval_seconds
    for plural, reconcile_fn in (("modelversions", mv_reconcile), ("modelmonitors", mm_reconcile)):
        kopf.on.create(GROUP, VERSION, plural, id="reconcile", registry=registry)(reconcile_fn)
        kopf.on.update(GROUP, VERSION, plural, id="reconcile", registry=registry)(reconcile_fn)
        kopf.on.resume(GROUP, VERSION, plural, id="reconcile", registry=registry)(reconcile_fn)
    kopf.on.delete(GROUP, VERSION, "modelversions", id="finalize", registry=registry)(mv_delete)
    # Two resync timers, by the version's own state, both every interval: versions in progress
    # reconcile; settled ones (registered, status current) compare the registry with their
    # statuses once per model (a full pass every SETTLED_RESYNC_FACTOR intervals or on drift).
    # kopf stops one and starts the other when the filter flips.
    in_progress, settled = RESYNC_TIMERS
    for timer_id, every, when in (
        (in_progress, interval, lambda body, **_: not modelversion.is_settled(body)),
        (settled, interval, lambda body, **_: modelversion.is_settled(body)),
    ):
        kopf.timer(
            GROUP,
            VERSION,
            "modelversions",
            id=timer_id,
            interval=every,
            initial_delay=every,
            idle=interval / 2,
            when=when,
            registry=registry,
        )(mv_resync)
    kopf.timer(
        GROUP, VERSION, "modelmonitors", id=MONITOR_TIMER, interval=settings.monitor_poll_seconds, registry=registry
    )(mm_reconcile)
    # Every kind of child is watched, so one deleted or edited by hand is restored within seconds.
    for res in CHILD_RESOURCES:
        kopf.on.event(res.group, res.version, res.plural, labels=MANAGED, id=f"{res.plural}-watch", registry=registry)(
            child_event
        )


async def _on_child(ctx: Context, memo: Any, body: Mapping[str, Any], event_type: str | None) -> None:
    """Reconcile the custom resource(s) a managed child belongs to.

    Jobs and Deployments on every event (their status is what we report; a Job's event runs the
    model-level flow only when its version's status changed or the flow is due); Services, PDBs, HPAs
    and CronJobs only when deleted or edited (see ``EditWatch``). A training Job names its
    ModelVersion and a drift CronJob its ModelMonitor in their controller ownerReference; serving
    children are shared by the model's versions, so one registered version that is not being
    deleted re-runs the model-level flow (an unregistered one would only run its own flow).
    """
    kind = body.get("kind")
    if kind not in STATUS_CHILDREN and not ctx.child_edits.needs_reconcile(body, event_type):
        return
    meta = body.get("metadata") or {}
    namespace = meta["namespace"]
    owners = {o.get("kind"): o for o in meta.get("ownerReferences") or []}
    if kind == "CronJob":
        if "ModelMonitor" in owners:
            monitor = await ctx.kube.get(MODELMONITORS, namespace, owners["ModelMonitor"]["name"])
            if monitor is not None:
                await _child_reconcile(memo, body, event_type, "ModelMonitor", modelmonitor.reconcile, ctx, monitor)
        return
    targets: list[dict[str, Any]] = []
    if kind == "Job":
        if "ModelVersion" not in owners:
            return
        obj = await _owner_version(ctx, namespace, owners["ModelVersion"], (meta.get("labels") or {}).get(LABEL_MODEL))
        targets = [obj] if obj else []
    elif (meta.get("labels") or {}).get(LABEL_MODEL):  # a serving child
        bodies = await model_bodies(ctx, namespace, meta["labels"][LABEL_MODEL])
        registered = [
            b for b in bodies if (b.get("status") or {}).get("registry") and not b["metadata"].get("deletionTimestamp")
        ]
        targets = registered[:1]
    # A Job's event changes its version's own state at most (trained, registered): the model-level
    # flow follows only a change, or when it has not run within the interval, as for the timers. A
    # serving child's event is about the model-level flow itself (the Deployment's status).
    periodic = kind == "Job"
    for target in targets:
        await _child_reconcile(memo, body, event_type, "ModelVersion", modelversion.reconcile, ctx, target, periodic)


async def _owner_version(
    ctx: Context, namespace: str, owner: Mapping[str, Any], model: str | None
) -> dict[str, Any] | None:
    """The ModelVersion a training Job belongs to: the index's copy (found by the Job's model label
    and the owner's uid), else a GET (no index, or not indexed yet); None when it is gone."""
    if ctx.versions.attached and model:
        stub = {"metadata": {"namespace": namespace, "name": owner["name"], "uid": owner.get("uid")}}
        known = ctx.versions.latest({**stub, "spec": {"model": model}})
        if (known.get("metadata") or {}).get("resourceVersion"):
            return known
    return await ctx.kube.get(MODELVERSIONS, namespace, owner["name"])


async def _child_reconcile(
    memo: Any, child: Mapping[str, Any], event_type: str | None, kind: str, fn: Any, *args: Any
) -> None:
    try:
        await _guarded(kind, memo, 0, fn, *args)
    except kopf.TemporaryError as exc:  # the timer retries; a child event must not crash
        log.warning("reconcile after %s %s event failed: %s", child.get("kind"), event_type, exc)


def configure(settings: kopf.OperatorSettings, ours: Settings) -> None:
    """Apply our settings to kopf's: own finalizer and annotation prefix, Events, watching."""
    settings.persistence.finalizer = ours.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ours.annotation_prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ours.annotation_prefix, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # kopf's own log→Event mirroring; ours are explicit
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.error_delays = [1, 2, 5, 10, 30, 60]


__all__ = ["configure", "register"]
