"""What every reconcile needs: settings, clients, per-model locks, metrics and the Event poster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clients.kube import KubeClient
from ..clients.mlflow import Registry
from ..settings import Settings
from ..telemetry import OperatorMetrics

#: post_event(body, type, reason, message): type is "Normal" or "Warning".
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]


def _no_events(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    return None


@dataclass
class Context:
    """Shared operator state, kept in kopf's memo. Nothing here is truth a restart would lose:
    locks serialise work, everything else is re-read from Kubernetes and MLflow."""

    settings: Settings
    kube: KubeClient
    registry: Registry
    post_event: EventPoster = _no_events
    metrics: OperatorMetrics | None = None
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _model_synced: dict[str, float] = field(default_factory=dict)

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

    def model_synced_within(self, namespace: str, model: str) -> bool:
        """Whether the model-level flow of a model completed within the resync interval."""
        last = self._model_synced.get(f"{namespace}/{model}")
        return last is not None and time.monotonic() - last < self.settings.reconcile_interval_seconds

    def forget(self, uid: str) -> None:
        """Drop an object's lock once the object is gone."""
        self._locks.pop(("object", uid), None)
