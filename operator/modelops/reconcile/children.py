"""Apply desired child manifests: create when absent, patch when our fields differ, else nothing."""

from __future__ import annotations

from typing import Any

from ..builders.common import desired_differs
from ..clients.kube import BY_KIND, Conflict, KubeClient


async def apply(kube: KubeClient, desired: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Make the cluster match ``desired``; return (observed object, action).

    ``action`` is ``created``, ``patched`` or ``unchanged``. Only the fields the builders set
    are compared (see ``desired_differs``), so API-server defaults never cause a patch loop.
    Raises clients.kube.KubeError subclasses on API failures.
    """
    res = BY_KIND[desired["kind"]]
    meta = desired["metadata"]
    observed = await kube.get(res, meta["namespace"], meta["name"])
    if observed is None:
        try:
            return await kube.create(res, meta["namespace"], desired), "created"
        except Conflict:  # created concurrently (or by a previous life of this operator)
            observed = await kube.get(res, meta["namespace"], meta["name"])
            if observed is None:
                raise
    if not desired_differs(desired, observed):
        return observed, "unchanged"
    patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "status")}
    return await kube.patch(res, meta["namespace"], meta["name"], patch), "patched"


async def remove(kube: KubeClient, kind: str, namespace: str, name: str) -> bool:
    """Delete a child if it exists; returns whether something was deleted."""
    return await kube.delete(BY_KIND[kind], namespace, name)
