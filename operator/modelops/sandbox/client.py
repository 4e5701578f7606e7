"""A thin Kubernetes REST client for the sandbox (kubelet, CLI, pytest fixture).

Only what the sandbox needs: get, list, create, JSON merge patch (main resource or a
subresource such as ``status``), delete and watch, over plain HTTP to the API emulator (no TLS,
no authentication) or HTTPS to the real kube-apiserver (a :class:`Connection` read from a
kubeconfig: CA, client certificate or bearer token). :class:`Api` is synchronous (httpx.Client),
:class:`AsyncApi` is for asyncio code (httpx.AsyncClient); both share the request building and
error mapping.
"""

from __future__ import annotations

import builtins
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Connection:
    """Where and how to reach an API server.

    ``url``: ``http://…`` (emulator) or ``https://…``; ``ca``: CA bundle file to verify the server
    (None: system default); ``cert``/``key``: client certificate files; ``token``: bearer token.
    """

    url: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    token: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context verifying the server against ``ca`` (system CAs without it) and presenting
        the client certificate when there is one."""
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert and self.key:
            context.load_cert_chain(self.cert, self.key)
        return context

    def httpx_options(self) -> dict[str, Any]:
        """``base_url``, ``verify``, ``cert`` and ``headers`` keyword arguments for an httpx client."""
        options: dict[str, Any] = {"base_url": self.url.rstrip("/")}
        if self.ca or (self.cert and self.key):
            options["verify"] = self.ssl_context()
        if self.token:
            options["headers"] = {"Authorization": f"Bearer {self.token}"}
        return options


def as_connection(target: str | Connection) -> Connection:
    """A :class:`Connection` for a URL (no credentials) or the connection itself."""
    return target if isinstance(target, Connection) else Connection(str(target))


@dataclass(frozen=True)
class Resource:
    """A Kubernetes resource type: ``group`` ("" for core), ``version``, ``plural``, ``kind``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """URL path of the collection (``name`` None) or of one object (and its subresource).

        ``namespace`` None on a namespaced resource gives the cluster-wide collection.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod")
SERVICES = Resource("", "v1", "services", "Service")
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
JOBS = Resource("batch", "v1", "jobs", "Job")
CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
MODELVERSIONS = Resource("ml.smarthr360.io", "v1alpha1", "modelversions", "ModelVersion")
MODELMONITORS = Resource("ml.smarthr360.io", "v1alpha1", "modelmonitors", "ModelMonitor")

KNOWN: tuple[Resource, ...] = (
    NAMESPACES,
    PODS,
    SERVICES,
    SECRETS,
    CONFIGMAPS,
    EVENTS,
    PVCS,
    JOBS,
    CRONJOBS,
    DEPLOYMENTS,
    REPLICASETS,
    NODES,
    LEASES,
    ENDPOINTSLICES,
    SERVICEACCOUNTS,
    MODELVERSIONS,
    MODELMONITORS,
)
_CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "PriorityClass",
}
_SHORT = {"ns": NAMESPACES, "svc": SERVICES, "cm": CONFIGMAPS, "deploy": DEPLOYMENTS, "cj": CRONJOBS}


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def resource_for(api_version: str, kind: str) -> Resource:
    """The resource of a manifest's ``apiVersion`` and ``kind`` (known table first, then a plural guess)."""
    for res in KNOWN:
        if res.api_version == api_version and res.kind == kind:
            return res
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, _plural(kind), kind, namespaced=kind not in _CLUSTER_SCOPED_KINDS)


def lookup(name: str) -> Resource:
    """A known resource by kind (``Job``), plural (``jobs``) or short name (``svc``), case-insensitive.

    Raises KeyError for an unknown name.
    """
    low = name.lower()
    if low in _SHORT:
        return _SHORT[low]
    for res in KNOWN:
        if low in (res.kind.lower(), res.plural):
            return res
    raise KeyError(f"unknown resource {name!r}; known: {', '.join(r.plural for r in KNOWN)}")


class ApiError(Exception):
    """A non-2xx answer of the API server: ``status`` (HTTP code), ``reason`` and ``message``."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


class NotFoundError(ApiError):
    """HTTP 404: the object, resource or endpoint does not exist."""


class ConflictError(ApiError):
    """HTTP 409: the object already exists (or a write conflict)."""


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    message = body.get("message", "") if isinstance(body, dict) else str(body)[:500]
    cls = {404: NotFoundError, 409: ConflictError}.get(response.status_code, ApiError)
    raise cls(response.status_code, reason or response.reason_phrase, message, body)


def _selector_params(label_selector: Mapping[str, str] | None) -> dict[str, str]:
    if not label_selector:
        return {}
    return {"labelSelector": ",".join(f"{k}={v}" for k, v in label_selector.items())}


def matches_labels(obj: Mapping[str, Any], selector: Mapping[str, str] | None) -> bool:
    """Whether an object's ``metadata.labels`` contain every ``key=value`` of ``selector``."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _items(res: Resource, body: Mapping[str, Any], selector: Mapping[str, str] | None) -> list[dict[str, Any]]:
    # Filter client-side as well: a plain kmock ignores label selectors.
    items = [dict(item) for item in body.get("items") or []]
    return [item for item in items if matches_labels(item, selector)]


def _with_namespace(res: Resource, body: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
    """A copy of ``body`` whose ``metadata.namespace`` is set (namespaced resources only)."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    if res.namespaced:
        meta["namespace"] = namespace or meta.get("namespace") or "default"
    out["metadata"] = meta
    return out


def _delete_body(propagation: str) -> dict[str, Any]:
    return {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}


class Api:
    """Synchronous client bound to one API server URL (``http://host:port``).

    Every method raises :class:`ApiError` (or a subclass) on an error answer and
    ``httpx.HTTPError`` when the server cannot be reached.
    """

    def __init__(self, url: str | Connection, timeout: float = 10.0) -> None:
        self.connection = as_connection(url)
        self.url = self.connection.url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, **self.connection.httpx_options())

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One raw request; returns the decoded JSON body (None when empty)."""
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json() if response.content else None

    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Fetch one object; NotFoundError when absent."""
        result: dict[str, Any] = self.request("GET", res.path(namespace, name))
        return result

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """List objects (all namespaces when ``namespace`` is None), optionally by labels."""
        body = self.request("GET", res.path(namespace), params=_selector_params(label_selector))
        return _items(res, body or {}, label_selector)

    def create(self, res: Resource, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object; ConflictError when it exists."""
        body = _with_namespace(res, body, namespace)
        ns = (body.get("metadata") or {}).get("namespace")
        result: dict[str, Any] = self.request("POST", res.path(ns), json=dict(body))
        return result

    def patch(
        self,
        res: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch of an object (or of its ``subresource``, e.g. ``status``)."""
        result: dict[str, Any] = self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            content=json.dumps(patch),
            headers={"Content-Type": MERGE_PATCH},
        )
        return result

    def delete(
        self, res: Resource, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> dict[str, Any] | None:
        """Delete an object; NotFoundError when absent."""
        result: dict[str, Any] | None = self.request(
            "DELETE", res.path(namespace, name), json=_delete_body(propagation)
        )
        return result


class AsyncApi:
    """Asynchronous twin of :class:`Api`, plus :meth:`watch`."""

    def __init__(self, url: str | Connection, timeout: float = 10.0) -> None:
        self.connection = as_connection(url)
        self.url = self.connection.url.rstrip("/")
        # Waiting for a free pooled connection is queueing, not failure: with hundreds of Jobs
        # starting at once the kubelet's requests wait their turn instead of raising PoolTimeout.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, pool=None), **self.connection.httpx_options())

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One raw request; returns the decoded JSON body (None when empty)."""
        response = await self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json() if response.content else None

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Fetch one object; NotFoundError when absent."""
        result: dict[str, Any] = await self.request("GET", res.path(namespace, name))
        return result

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """List objects (all namespaces when ``namespace`` is None), optionally by labels."""
        body = await self.request("GET", res.path(namespace), params=_selector_params(label_selector))
        return _items(res, body or {}, label_selector)

    async def create(self, res: Resource, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object; ConflictError when it exists."""
        body = _with_namespace(res, body, namespace)
        ns = (body.get("metadata") or {}).get("namespace")
        result: dict[str, Any] = await self.request("POST", res.path(ns), json=dict(body))
        return result

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch of an object (or of its ``subresource``, e.g. ``status``)."""
        result: dict[str, Any] = await self.request(
            "PATCH",
            res.path(namespace, name, subresource),
            content=json.dumps(patch),
            headers={"Content-Type": MERGE_PATCH},
        )
        return result

    async def delete(
        self, res: Resource, name: str, namespace: str | None = None, propagation: str = "Background"
    ) -> dict[str, Any] | None:
        """Delete an object; NotFoundError when absent."""
        result: dict[str, Any] | None = await self.request(
            "DELETE", res.path(namespace, name), json=_delete_body(propagation)
        )
        return result

    async def list_with_version(
        self, res: Resource, namespace: str | None = None, field_selector: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """List objects and return them with the list's ``metadata.resourceVersion`` ("" when absent).

        ``field_selector`` (e.g. ``spec.nodeName=sandbox``) is passed to the server as is.
        """
        params = {"fieldSelector": field_selector} if field_selector else {}
        body = await self.request("GET", res.path(namespace), params=params) or {}
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return _items(res, body, None), version

    async def watch(
        self, res: Resource, namespace: str | None = None, resource_version: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Stream ``(event type, object)`` pairs of a watch until the server closes the stream.

        With a numeric ``resource_version`` the watch starts after it (no initial ADDED events);
        otherwise the server sends the current objects first. BOOKMARK events are skipped.
        Raises ApiError when the watch is refused or an ERROR event arrives (410 when the version
        is too old), httpx.HTTPError on connection problems.
        """
        params = {"watch": "true"}
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version and resource_version.isdigit():
            params["resourceVersion"] = resource_version
        timeout = httpx.Timeout(10.0, read=None)
        async with self._http.stream("GET", res.path(namespace), params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                _raise_for(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type", "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise ApiError(int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message")), obj)
                if kind == "BOOKMARK":
                    continue
                yield kind, obj
