"""What every reconcile needs: settings, clients, per-model locks, metrics and the Event poster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..clients.kube import KubeClient
from ..clients.mlflow import Registry
from ..registry import operations as ops
from ..settings import Settings
from ..telemetry import OperatorMetrics
from .children import EditWatch
from .versions import VersionCache

T = TypeVar("T")
R = TypeVar("R")

#: post_event(body, type, reason, message): type is "Normal" or "Warning".
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


def _no_events(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    return None


@dataclass
class _Batch(Generic[T, R]):
    items: dict[str, T] = field(default_factory=dict)
    result: dict[str, R] | None = None


class Coalescer(Generic[T, R]):
    """Merge concurrent requests for the same key into one batched call, run under a lock.

    Requests that arrive while a call for their key runs (or waits for the lock) join the next
    batch, so N near-simultaneous requests cost a few calls, not N. If the call raises, the
    caller that ran it gets the error and the batch's other waiters run it again themselves.
    """

    def __init__(self) -> None:
        self._open: dict[Hashable, _Batch[T, R]] = {}

    async def submit(
        self,
        key: Hashable,
        lock: asyncio.Lock,
        name: str,
        item: T,
        run: Callable[[dict[str, T]], Awaitable[dict[str, R]]],
    ) -> R:
        """Add ``item`` under ``name`` to the open batch of ``key``; return ``run(batch)[name]``."""
        batch = self._open.setdefault(key, _Batch())
        batch.items[name] = item
        async with lock:
            if batch.result is None:
                if self._open.get(key) is batch:
                    del self._open[key]
                batch.result = await run(batch.items)
            return batch.result[name]


@dataclass
class Context:
    """Shared operator state, kept in kopf's memo. Nothing here is truth a restart would lose:
    locks serialise work, everything else is re-read from Kubernetes and MLflow."""

    settings: Settings
    kube: KubeClient
    registry: Registry
    post_event: EventPoster = _no_events
    metrics: OperatorMetrics | None = None
    versions: VersionCache = field(default_factory=VersionCache)
    model_passes: Coalescer[Any, Any] = field(default_factory=Coalescer)
    child_edits: EditWatch = field(default_factory=EditWatch)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _model_synced: dict[str, float] = field(default_factory=dict)
    _registry_checked: dict[str, float] = field(default_factory=dict)
    _models_checked: dict[tuple[str, str], float] = field(default_factory=dict)
    _in_flight: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict)
    _versions_read: dict[str, tuple[float, list[Any]]] = field(default_factory=dict)
    _registry_changes: dict[str, int] = field(default_factory=dict)

    async def registry_versions(self, model: str, max_age: float) -> list[Any]:
        """The registered model's versions (``ops.search_versions``), read at most ``max_age``
        seconds ago (0: afresh, joining an identical search in flight).

        A read that started before :meth:`registry_changed` was called for the model is not kept.
        """
        began = time.monotonic()
        cached = self._versions_read.get(model)
        if cached is not None and began - cached[0] <= max_age:
            return cached[1]
        change = self._registry_changes.get(model, 0)
        versions: list[Any] = await self.shared(
            ("search_versions", model), lambda: self.registry.run(ops.search_versions, model)
        )
        if self._registry_changes.get(model, 0) == change:
            self._versions_read[model] = (began, versions)
        return versions

    def registry_changed(self, model: str) -> None:
        """The operator just changed the model's versions in MLflow: forget the read kept of them."""
        self._registry_changes[model] = self._registry_changes.get(model, 0) + 1
        self._versions_read.pop(model, None)

    async def shared(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Run the read ``call()``, or join the identical one already in flight under ``key``.

        For reads only (a registry search many reconciles of one model ask at once): a joiner
        gets a result at most one round trip old. Errors reach every joiner.
        """
        future = self._in_flight.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._in_flight[key] = future
            future.add_done_callback(lambda _: self._in_flight.pop(key, None))
        result: T = await asyncio.shield(future)
        return result

    def model_lock(self, namespace: str, model: str) -> asyncio.Lock:
        """The lock serialising the model-level flow (and semantic-version bumps) of one model."""
        return self._locks.setdefault(("model", f"{namespace}/{model}"), asyncio.Lock())

    def object_lock(self, uid: str) -> asyncio.Lock:
        """The lock serialising reconciles of one object (handlers, timer and child events).

        Always taken before a model lock, never after, so the two cannot deadlock."""
        return self._locks.setdefault(("object", uid), asyncio.Lock())

    def mark_model_synced(self, namespace: str, model: str) -> None:
        """Record that the model-level flow of a model just completed."""
        self._model_synced[f"{namespace}/{model}"] = time.monotonic()

    def model_synced_within(self, namespace: str, model: str, seconds: float | None = None) -> bool:
        """Whether the model-level flow of a model completed within ``seconds`` (default: the resync interval)."""
        last = self._model_synced.get(f"{namespace}/{model}")
        limit = self.settings.reconcile_interval_seconds if seconds is None else seconds
        return last is not None and time.monotonic() - last < limit

    def registry_checked_within(self, namespace: str, model: str) -> bool:
        """Whether a settled model's registry was compared with its statuses within the resync interval."""
        last = self._registry_checked.get(f"{namespace}/{model}")
        return last is not None and time.monotonic() - last < self.settings.reconcile_interval_seconds

    def mark_registry_checked(self, namespace: str, model: str) -> None:
        """Record that a settled model's registry was just compared with its statuses."""
        self._registry_checked[f"{namespace}/{model}"] = time.monotonic()

    def model_check_lock(self, namespace: str, model: str) -> asyncio.Lock:
        """The lock under which one reconcile checks the registered model while the others wait."""
        return self._locks.setdefault(("check", f"{namespace}/{model}"), asyncio.Lock())

    def model_checked_recently(self, namespace: str, model: str) -> bool:
        """Whether the registered model's existence and owner were checked within the resync interval."""
        last = self._models_checked.get((namespace, model))
        return last is not None and time.monotonic() - last < self.settings.reconcile_interval_seconds

    def mark_model_checked(self, namespace: str, model: str) -> None:
        """Record that the registered model exists and belongs to ``namespace`` (checked just now)."""
        self._models_checked[(namespace, model)] = time.monotonic()

    def forget(self, uid: str) -> None:
        """Drop an object's lock and remembered body once the object is gone."""
        self._locks.pop(("object", uid), None)
        self.versions.forget(uid)
