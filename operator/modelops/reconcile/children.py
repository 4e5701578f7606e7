"""Apply desired child manifests: create when absent, patch when our fields differ, else nothing.

A child is *ours* when one of its ownerReferences points at one of the custom resources it
belongs to (by uid). An object with a child's name that is not ours is never adopted, read as
ours, patched or deleted: :class:`ChildNameConflict` says so, and the caller reports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..builders.common import desired_differs, spec_hash
from ..clients.kube import BY_KIND, Conflict, KubeClient

#: Condition reason for an object that has a child's name but is not ours.
CHILD_NAME_CONFLICT = "ChildNameConflict"


class ChildNameConflict(Exception):
    """An object named like a child exists without an ownerReference to the owning custom resource.

    ``str(exc)`` names the object and says what to do; the object is left untouched.
    """

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self.kind = str(obj.get("kind") or "object")
        self.namespace = str(meta.get("namespace") or "")
        self.name = str(meta.get("name") or "")
        owners = [f"{o.get('kind')}/{o.get('name')}" for o in meta.get("ownerReferences") or []]
        owned_by = f"owned by {', '.join(owners)}" if owners else "with no owner"
        super().__init__(
            f"{self.kind} {self.namespace}/{self.name} already exists ({owned_by}) and is not managed by "
            "this resource; it is left untouched: delete or rename it and the operator carries on"
        )


def owner_uids(obj: Mapping[str, Any]) -> set[str]:
    """The uids an object's ``metadata.ownerReferences`` point at."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return {str(r["uid"]) for r in refs if r.get("uid")}


def is_ours(obj: Mapping[str, Any], ours: Collection[str]) -> bool:
    """Whether ``obj`` has an ownerReference to one of the uids in ``ours``."""
    return not owner_uids(obj).isdisjoint(ours)


async def apply(
    kube: KubeClient, desired: dict[str, Any], ours: Collection[str] | None = None
) -> tuple[dict[str, Any], str]:
    """Make the cluster match ``desired``; return (observed object, action).

    ``action`` is ``created``, ``patched`` or ``unchanged``. Only the fields the builders set
    are compared (see ``desired_differs``), so API-server defaults never cause a patch loop.
    ``ours`` are the uids whose children we manage (default: the desired ownerReferences).

    Raises:
        ChildNameConflict: an object with this name exists and is not ours (left untouched).
        clients.kube.KubeError: subclasses on API failures.
    """
    res = BY_KIND[desired["kind"]]
    meta = desired["metadata"]
    owners = owner_uids(desired) if ours is None else set(ours)
    observed = await kube.get(res, meta["namespace"], meta["name"])
    if observed is None:
        try:
            return await kube.create(res, meta["namespace"], desired), "created"
        except Conflict:  # created concurrently (or by a previous life of this operator)
            observed = await kube.get(res, meta["namespace"], meta["name"])
            if observed is None:
                raise
    if not is_ours(observed, owners):
        raise ChildNameConflict({"kind": desired["kind"], **observed})
    if not desired_differs(desired, observed):
        return observed, "unchanged"
    patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "status")}
    return await kube.patch(res, meta["namespace"], meta["name"], patch), "patched"


async def remove(kube: KubeClient, kind: str, namespace: str, name: str, ours: Collection[str]) -> bool:
    """Delete a child if it exists and is ours (see :func:`is_ours`); returns whether it was deleted.

    An object of that name that is not ours is left alone: nothing of ours is there to remove.
    """
    observed = await kube.get(BY_KIND[kind], namespace, name)
    if observed is None or not is_ours(observed, ours):
        return False
    return await kube.delete(BY_KIND[kind], namespace, name)


async def remove_all(
    kube: KubeClient, kinds: Sequence[str], namespace: str, name: str, ours: Collection[str]
) -> list[str]:
    """:func:`remove` for several kinds of child with one name: the GETs at once (one round trip
    where there is nothing to remove, the usual case), then the deletions of ours, dependents first
    (HorizontalPodAutoscaler, PodDisruptionBudget, Service, Deployment, CronJob; others in ``kinds``
    are read, never deleted).

    Returns the kinds deleted.
    """
    found = dict(zip(kinds, await asyncio.gather(*(kube.get(BY_KIND[kind], namespace, name) for kind in kinds)),
                     strict=True))
    deleted = []
    # Dependents first; a literal list, so the RBAC derivation (modelops.rbac) sees which kinds are deleted.
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment", "CronJob"):
        obj = found.get(kind)
        if obj is not None and is_ours(obj, ours) and await kube.delete(BY_KIND[kind], namespace, name):
            deleted.append(kind)
    return deleted


def essence(obj: Mapping[str, Any]) -> str:
    """What a user's edit of a child can change and we restore: spec, labels, annotations, owners.

    Status is left out, so status-only updates (a PDB's ``disruptionsAllowed``, an HPA's metrics,
    a CronJob's ``lastScheduleTime``) do not wake the operator.
    """
    meta = obj.get("metadata") or {}
    keys = ("labels", "annotations", "ownerReferences")
    return spec_hash({"spec": obj.get("spec"), "metadata": {k: meta.get(k) for k in keys}})


class EditWatch:
    """Decides which watch events of a child need a reconcile: deletions, and edits of its essence.

    Remembers the last essence seen per uid (memory only: after a restart the resume handlers
    reconcile everything anyway). The first sighting (the initial listing, or our own creation)
    needs nothing.
    """

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def needs_reconcile(self, obj: Mapping[str, Any], event_type: str | None) -> bool:
        """Whether this event (``ADDED``, ``MODIFIED``, ``DELETED`` or None for the listing) changed the child."""
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if event_type == "DELETED":
            self._seen.pop(uid, None)
            return True
        now, before = essence(obj), self._seen.get(uid)
        self._seen[uid] = now
        return before is not None and before != now
