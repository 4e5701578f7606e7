"""An in-memory stand-in for clients.kube.KubeClient (same async methods), for reconcile tests."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Mapping
from typing import Any

from modelops.clients.kube import Conflict, NotFound, Resource

_rv = itertools.count(1)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKube:
    """Objects keyed by (plural, namespace, name); records every write in ``calls``, every GET in ``reads``."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.reads: list[tuple[str, str]] = []  # (plural, name) of each GET

    def put(self, res: Resource, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as if created (uid, generation, resourceVersion filled)."""
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(next(_rv))
        self.objects[(res.plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((res.plural, name))
        obj = self.objects.get((res.plural, namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        items = [
            copy.deepcopy(o)
            for (plural, ns, _), o in self.objects.items()
            if plural == res.plural and (namespace is None or ns == namespace)
        ]
        if label_selector:
            items = [
                i
                for i in items
                if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in label_selector.items())
            ]
        return items

    async def create(self, res: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (res.plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise Conflict(409, f"{key} already exists")
        self.calls.append(("create", res.plural, body["metadata"]["name"]))
        return self.put(res, {**body, "metadata": {**body["metadata"], "namespace": namespace}})

    async def patch(
        self, res: Resource, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        key = (res.plural, namespace, name)
        if key not in self.objects:
            raise NotFound(404, f"{key} not found")
        self.calls.append(("patch" + (f"/{subresource}" if subresource else ""), res.plural, name))
        current = self.objects[key]
        given = (patch.get("metadata") or {}).get("resourceVersion")
        if given and given != current["metadata"].get("resourceVersion"):
            raise Conflict(409, f"{key}: the object has been modified")
        if subresource == "status":
            updated = {**current, "status": merge_patch(current.get("status") or {}, patch.get("status") or {})}
        else:
            updated = merge_patch(current, {k: v for k, v in patch.items() if k != "status"})
        updated["metadata"]["resourceVersion"] = str(next(_rv))
        self.objects[key] = updated
        return copy.deepcopy(updated)

    async def replace(self, res: Resource, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.put(res, body)

    async def delete(self, res: Resource, namespace: str, name: str) -> bool:
        self.calls.append(("delete", res.plural, name))
        return self.objects.pop((res.plural, namespace, name), None) is not None

    def count(self, plural: str) -> int:
        """How many objects of a resource exist."""
        return sum(1 for (p, _, _) in self.objects if p == plural)
