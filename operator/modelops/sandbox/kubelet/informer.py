"""List-and-watch caches of API objects (one per resource type), like client-go informers.

Each :class:`Informer` lists its resource, then follows a watch from the list's
resourceVersion (when the server gives a numeric one; otherwise the watch replays the current
objects); it re-lists after an error (e.g. 410 Expired) and every ``relist_seconds`` as a
safety net. Listeners are called with the object key after every change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from ..client import ApiError, AsyncApi, Resource

log = logging.getLogger("modelops.sandbox.kubelet")

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def key_of(obj: dict[str, Any]) -> Key:
    """The cache key of an object."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Informer:
    """A cache of one resource's objects, kept current by list + watch."""

    def __init__(self, api: AsyncApi, resource: Resource, relist_seconds: float = 300.0,
                 field_selector: str | None = None) -> None:
        self.api = api
        self.resource = resource
        self.field_selector = field_selector
        self.relist_seconds = relist_seconds
        self.objects: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.listeners: list[Callable[[Key], None]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object, or None."""
        return self.objects.get((namespace, name))

    def items(self) -> list[tuple[Key, dict[str, Any]]]:
        """A snapshot of the cache."""
        return list(self.objects.items())

    def _notify(self, key: Key) -> None:
        for listener in self.listeners:
            listener(key)

    def _upsert(self, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if self.objects.get(key) != obj:
            self.objects[key] = obj
            self._notify(key)

    def _remove(self, key: Key) -> None:
        if self.objects.pop(key, None) is not None:
            self._notify(key)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        fresh = {key_of(o): o for o in items}
        for key in list(self.objects):
            if key not in fresh:
                self._remove(key)
        for obj in fresh.values():
            self._upsert(obj)

    async def run(self) -> None:
        """List and watch forever (until cancelled), recovering from errors with a short backoff."""
        delay = 0.2
        while True:
            try:
                items, version = await self.api.list_with_version(self.resource, field_selector=self.field_selector)
                self._replace(items)
                self.synced.set()
                delay = 0.2
                async with asyncio.timeout(self.relist_seconds):
                    # From the list's resourceVersion: nothing between the list and the watch is lost.
                    async for kind, obj in self.api.watch(self.resource, resource_version=version,
                                                             field_selector=self.field_selector):
                        if kind in ("ADDED", "MODIFIED"):
                            self._upsert(obj)
                        elif kind == "DELETED":
                            self._remove(key_of(obj))
            except TimeoutError:
                continue  # periodic re-list
            except (ApiError, httpx.HTTPError, ValueError) as exc:
                log.warning("watch of %s failed (%s); re-listing in %.1fs", self.resource.plural, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
