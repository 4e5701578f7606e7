"""The operator's only MLflow I/O: registry operations run off the event loop.

The operations themselves live in :mod:`modelops.registry.operations` (synchronous, usable from
a notebook); this wrapper runs each in a thread pool with one shared ``MlflowClient`` so the
MLflow client's blocking HTTP never stalls kopf's event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mlflow.tracking import MlflowClient

from ..registry.errors import RegistryUnavailable
from ..registry.operations import experiment_id_of

T = TypeVar("T")


class Registry:
    """Async access to MLflow for the operator.

    Args:
        tracking_uri: MLflow tracking server URI.
        max_workers: threads for blocking MLflow calls.
    """

    def __init__(self, tracking_uri: str, max_workers: int = 8) -> None:
        # MLflow's client retries a failed request 7 times with exponential backoff (minutes);
        # the operator has its own backoff (kopf TemporaryError), so fail fast unless configured.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mlflow")
        self._closed = False
        self._experiment_ids: dict[str, str] = {}

    async def run(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``operation(client, *args, **kwargs)`` in the pool and return its result.

        Exceptions propagate unchanged (see modelops.registry.operations for the classes).
        """
        if self._closed:  # a timer orphaned at shutdown: fail like an unreachable MLflow, not a crash
            raise RegistryUnavailable("MLflow client closed: the operator is shutting down")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: operation(self.client, *args, **kwargs))

    async def experiment_id(self, name: str, *, refresh: bool = False) -> str | None:
        """The id of experiment ``name`` (None when absent), remembered once found.

        ``refresh`` looks it up again (e.g. after a search in the remembered id found nothing,
        in case the experiment was deleted and re-created).
        """
        if refresh or name not in self._experiment_ids:
            found = await self.run(experiment_id_of, name)
            if found is None:
                self._experiment_ids.pop(name, None)
                return None
            self._experiment_ids[name] = found
        return self._experiment_ids[name]

    def close(self) -> None:
        """Release the thread pool; later calls raise RegistryUnavailable."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
