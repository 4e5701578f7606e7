"""In-memory object storage: objects indexed by (resource, namespace, name), uid and owner uid.

Every write takes the next global ``resourceVersion`` (an increasing integer, as a string on the
wire, like etcd's revision) and is recorded in a bounded per-resource history, which lets a
watch resume from a resourceVersion without replaying everything. Watchers receive events
through their own queue. Stored objects are never mutated after they are stored: a write
stores a new dict, so events and responses can share them safely.

All methods are synchronous; the emulator runs them on one event loop, so each is atomic.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .catalogue import ResourceKey

#: (namespace or "" for cluster-scoped objects, name)
ObjectKey = tuple[str, str]


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is ADDED, MODIFIED or DELETED; ``old`` is the previous state (or None)."""

    rv: int
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    """A subscription to one resource's events; ``None`` in the queue means "stop streaming"."""

    key: ResourceKey
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def owner_uids(obj: dict[str, Any]) -> set[str]:
    """The uids of an object's ``metadata.ownerReferences``."""
    return {ref["uid"] for ref in _meta(obj).get("ownerReferences") or [] if isinstance(ref, dict) and ref.get("uid")}


class Store:
    """The emulator's state.

    Args:
        history: events kept per resource for watch resumption; a watch from an older
            resourceVersion gets ``410 Expired`` (and kopf/kubectl re-list).
    """

    def __init__(self, history: int = 4096) -> None:
        self._objects: dict[ResourceKey, dict[ObjectKey, dict[str, Any]]] = defaultdict(dict)
        self._by_uid: dict[str, tuple[ResourceKey, ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[ResourceKey, ObjectKey]]] = defaultdict(set)
        self._history: dict[ResourceKey, deque[WatchEvent]] = defaultdict(lambda: deque(maxlen=history))
        self._expired: dict[ResourceKey, int] = defaultdict(int)
        self._watchers: dict[ResourceKey, set[Watcher]] = defaultdict(set)
        self._rv = 0

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion handed out (0 before the first write)."""
        return self._rv

    def next_rv(self) -> int:
        """Take the next resourceVersion."""
        self._rv += 1
        return self._rv

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: ResourceKey, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object (do not mutate it), or None."""
        return self._objects[key].get((namespace, name))

    def objects(self, key: ResourceKey, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource (in ``namespace``, or everywhere when None), in (namespace, name) order."""
        items = self._objects[key]
        keys = sorted(k for k in items if namespace is None or k[0] == namespace)
        return [items[k] for k in keys]

    def by_uid(self, uid: str) -> tuple[ResourceKey, dict[str, Any]] | None:
        """The resource key and object with this uid, or None."""
        hit = self._by_uid.get(uid)
        if hit is None:
            return None
        obj = self._objects[hit[0]].get(hit[1])
        return (hit[0], obj) if obj is not None else None

    def dependents(self, uid: str) -> list[tuple[ResourceKey, dict[str, Any]]]:
        """Objects whose ownerReferences name ``uid``."""
        out = []
        for key, okey in sorted(self._dependents.get(uid, ())):
            obj = self._objects[key].get(okey)
            if obj is not None:
                out.append((key, obj))
        return out

    def namespaced_in(self, namespace: str) -> list[tuple[ResourceKey, dict[str, Any]]]:
        """Every object stored in ``namespace`` (any resource)."""
        return [(key, obj) for key, items in self._objects.items() for (ns, _), obj in items.items() if ns == namespace]

    def count(self) -> int:
        """Number of stored objects."""
        return sum(len(items) for items in self._objects.values())

    # -- writes ------------------------------------------------------------------------------
    def put(self, key: ResourceKey, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Store ``obj`` with a new resourceVersion; emit ADDED (``old`` None) or MODIFIED.

        Returns:
            The stored object (``obj`` with ``metadata.resourceVersion`` set).
        """
        rv = self.next_rv()
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(rv)
        okey = (meta.get("namespace") or "", meta["name"])
        self._objects[key][okey] = obj
        self._by_uid[meta["uid"]] = (key, okey)
        self._reindex_owners(key, okey, old, obj)
        self._publish(key, WatchEvent(rv, "MODIFIED" if old is not None else "ADDED", obj, old))
        return obj

    def remove(self, key: ResourceKey, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete ``obj`` for good; emit DELETED with the final state under a new resourceVersion.

        Returns:
            The final state that was sent to watchers.
        """
        rv = self.next_rv()
        meta = _meta(obj)
        okey = (meta.get("namespace") or "", meta["name"])
        self._objects[key].pop(okey, None)
        self._by_uid.pop(meta.get("uid", ""), None)
        self._reindex_owners(key, okey, obj, None)
        final = {**obj, "metadata": {**meta, "resourceVersion": str(rv)}}
        self._publish(key, WatchEvent(rv, "DELETED", final, obj))
        return final

    def _reindex_owners(
        self, key: ResourceKey, okey: ObjectKey, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        before = owner_uids(old) if old else set()
        after = owner_uids(new) if new else set()
        for uid in before - after:
            self._dependents[uid].discard((key, okey))
            if not self._dependents[uid]:
                del self._dependents[uid]
        for uid in after - before:
            self._dependents[uid].add((key, okey))

    # -- watching ----------------------------------------------------------------------------
    def _publish(self, key: ResourceKey, event: WatchEvent) -> None:
        history = self._history[key]
        if history.maxlen is not None and len(history) == history.maxlen:
            self._expired[key] = history[0].rv
        history.append(event)
        for watcher in self._watchers.get(key, ()):
            watcher.queue.put_nowait(event)

    def subscribe(self, key: ResourceKey) -> Watcher:
        """Register a watcher for a resource; events stored from now on go to its queue."""
        watcher = Watcher(key)
        self._watchers[key].add(watcher)
        return watcher

    def is_subscribed(self, watcher: Watcher) -> bool:
        """Whether the watcher is still registered."""
        return watcher in self._watchers.get(watcher.key, ())

    def unsubscribe(self, watcher: Watcher) -> None:
        """Forget a watcher (idempotent)."""
        self._watchers[watcher.key].discard(watcher)

    def events_since(self, key: ResourceKey, rv: int) -> list[WatchEvent] | None:
        """Events of a resource after ``rv``, or None when some of them were dropped from history."""
        if rv < self._expired[key]:
            return None
        return [e for e in self._history[key] if e.rv > rv]

    def oldest_rv(self, key: ResourceKey) -> int:
        """The oldest resourceVersion a watch of this resource can resume from."""
        return self._expired[key]

    def close_watchers(self, keys: Iterable[ResourceKey] | None = None) -> None:
        """Tell watchers (of ``keys``, or all) to end their streams."""
        for key, watchers in self._watchers.items():
            if keys is None or key in keys:
                for watcher in watchers:
                    watcher.queue.put_nowait(None)
