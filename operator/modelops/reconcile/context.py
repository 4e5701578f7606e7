"""What every reconcile needs: settings, clients, per-model locks, metrics and the Event poster."""

from __future__ import annotations

import asyncio
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

    def model_lock(self, namespace: str, model: str) -> asyncio.Lock:
        """The lock serialising every reconcile that touches one registered model in a namespace."""
        return self._locks.setdefault((namespace, model), asyncio.Lock())
