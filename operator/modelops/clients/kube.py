"""The operator's only Kubernetes I/O: a small async REST client over the ``kubernetes`` package.

Every call runs the official client's ``ApiClient.call_api`` in a thread pool (the client is
synchronous) with raw JSON in and out, so it works for built-in and custom kinds alike and does
not depend on the typed models' client-side validation. Errors are mapped to a few exception
classes the reconcilers handle explicitly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ..api.common import GROUP, VERSION


@dataclass(frozen=True)
class Resource:
    """A REST resource: API group ("" for core), version and plural name."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version`` or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection, or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


MODELVERSIONS = Resource(GROUP, VERSION, "modelversions")
MODELMONITORS = Resource(GROUP, VERSION, "modelmonitors")
JOBS = Resource("batch", "v1", "jobs")
CRONJOBS = Resource("batch", "v1", "cronjobs")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
PODS = Resource("", "v1", "pods")  # read only: why a serving pod refused its model

#: kind → resource, for manifests built by the builders.
BY_KIND: dict[str, Resource] = {
    "ModelVersion": MODELVERSIONS,
    "ModelMonitor": MODELMONITORS,
    "Job": JOBS,
    "CronJob": CRONJOBS,
    "Deployment": DEPLOYMENTS,
    "Service": SERVICES,
    "PodDisruptionBudget": PDBS,
    "HorizontalPodAutoscaler": HPAS,
}


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class NotFound(KubeError):
    """404: the object does not exist."""


class Conflict(KubeError):
    """409: already exists, or a stale resourceVersion."""


class Invalid(KubeError):
    """422: the API server rejected the object (schema validation)."""


class Unavailable(KubeError):
    """The API server could not be reached or answered 5xx/429: retry later."""


def _error(status: int, body: bytes | str | None, reason: str | None) -> KubeError:
    try:
        message = json.loads(body or "{}").get("message") or reason
    except (ValueError, AttributeError):
        message = reason
    cls = {404: NotFound, 409: Conflict, 422: Invalid}.get(status)
    if cls is None:
        cls = Unavailable if status == 0 or status >= 500 or status == 429 else KubeError
    return cls(status, str(message))


class KubeClient:
    """Async facade over the kubernetes client for the operator's few verbs.

    Args:
        api_client: a configured ``kubernetes.client.ApiClient``; by default loaded from the
            in-cluster service account, else from ``KUBECONFIG``/``~/.kube/config``.
        max_workers: threads for blocking HTTP calls.
    """

    def __init__(self, api_client: k8s.ApiClient | None = None, max_workers: int = 16) -> None:
        if api_client is None:
            try:
                k8s_config.load_incluster_config()
            except k8s_config.ConfigException:
                k8s_config.load_kube_config()
            config = k8s.Configuration.get_default_copy()
            # One pooled connection per worker thread (the default is 5 per CPU: connections were
            # discarded and re-opened under load on small machines).
            config.connection_pool_maxsize = max(max_workers, config.connection_pool_maxsize or 0)
            api_client = k8s.ApiClient(config)
        self._api = api_client
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube")
        self._closed = False

    def close(self) -> None:
        """Release the thread pool and connections; later calls raise Unavailable."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            request = self._api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._api.call_api(*request)
            data = response.read()
        except ApiException as exc:
            raise _error(int(exc.status or 0), exc.body, exc.reason) from exc
        except (HTTPError, OSError) as exc:
            raise Unavailable(0, f"Kubernetes API unreachable: {exc}") from exc
        if response.status >= 400:
            raise _error(response.status, data, response.reason)
        return json.loads(data) if data else None

    async def _run(self, *args: Any, **kwargs: Any) -> Any:
        if self._closed:  # a timer orphaned at shutdown: fail like an unreachable API, not a crash
            raise Unavailable(0, "Kubernetes client closed: the operator is shutting down")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call(*args, **kwargs))

    async def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the object, or None when it does not exist."""
        try:
            return await self._run("GET", res.path(namespace, name))
        except NotFound:
            return None

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """List objects (in one namespace, or all), optionally filtered by exact label values."""
        query = []
        if label_selector:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in label_selector.items())))
        result = await self._run("GET", res.path(namespace), query=query)
        items = list((result or {}).get("items") or [])
        if label_selector:  # be exact even where a server ignores selectors
            items = [
                i
                for i in items
                if all((i.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in label_selector.items())
            ]
        return items

    async def create(self, res: Resource, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; raises Conflict when it exists."""
        return await self._run("POST", res.path(namespace), body=dict(body))

    async def patch(
        self, res: Resource, namespace: str, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any]:
        """JSON merge-patch (RFC 7386) an object or its ``status`` subresource."""
        return await self._run(
            "PATCH",
            res.path(namespace, name, subresource),
            body=dict(patch),
            content_type="application/merge-patch+json",
        )

    async def replace(self, res: Resource, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT an object (``metadata.resourceVersion`` in body guards against lost updates)."""
        return await self._run("PUT", res.path(namespace, name), body=dict(body))

    async def delete(self, res: Resource, namespace: str, name: str) -> bool:
        """Delete with background propagation; returns False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self._run("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return False
        return True
