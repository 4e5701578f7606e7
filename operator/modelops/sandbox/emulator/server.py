"""``ApiEmulator``: a thin subclass of ``kmock.KubernetesEmulator`` that behaves like kube-apiserver.

kmock provides the HTTP serving (``kmock.Server`` over aiohttp), the request model, the error
shape and the reaction DSL. This subclass replaces kmock's request routing and object storage:

* kmock 0.8 matches every request against its whole request journal and scans every object
  (200 custom resources took 120 s); here each request is routed by its own URL to a handler,
  objects are indexed by (resource, namespace, name), and the journal is bounded
  (``journal_limit`` requests, for assertions and user reactions only);
* object semantics (uid, resourceVersion, generation, status subresource, finalizers, GC,
  validation, patches...) live in :class:`~.registry.Registry`; watches resume from a
  resourceVersion using the store's bounded history.

User reactions added with kmock's DSL (``emulator['patch', resource] << 500``) still take
precedence, which lets in-process tests inject faults; their slices/indexes see only the
journal's last ``journal_limit`` requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, references, rendering
from multidict import CIMultiDict

from .catalogue import VERBS, Catalogue, ResourceType
from .errors import ApiError, bad_request, expired, method_not_allowed, no_route, protobuf_unsupported
from .registry import Registry
from .selectors import Predicate, selector_predicate
from .store import Store, Watcher, WatchEvent
from .tables import partial, table

log = logging.getLogger(__name__)

#: Reported by ``/version``.
SERVER_VERSION = {
    "major": "1",
    "minor": "36",
    "gitVersion": "v1.36.0+modelops-sandbox",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Route:
    """A parsed API path: ``/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]``.

    ``plural`` is None for discovery paths (``/api``, ``/apis/{group}``, ``/apis/{group}/{version}``);
    ``version`` is None for ``/api``, ``/apis`` and ``/apis/{group}``.
    """

    group: str | None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    """Parse a Kubernetes API path; None when it is not under ``/api`` or ``/apis``."""
    segs = [s for s in path.split("/") if s]
    if not segs or segs[0] not in ("api", "apis"):
        return None
    if segs[0] == "api":
        group, rest = "", segs[1:]
    elif len(segs) == 1:
        return Route(None)
    else:
        group, rest = segs[1], segs[2:]
    if not rest:
        return Route(group)
    version, rest = rest[0], rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return Route(group, version)
    return Route(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None)


def _present(rt: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
    api_version = rt.api_version(version)
    return obj if obj.get("apiVersion") == api_version else {**obj, "apiVersion": api_version}


def _wants(request: aiohttp.web.BaseRequest, what: str) -> bool:
    return f"as={what}" in request.headers.get("Accept", "")


def _encode_continue(namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([namespace, name]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ApiError(410, "Expired", f"the provided continue parameter is invalid: {exc}", {}) from exc
    return str(namespace), str(name)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _json(data: Any, status: int = 200, warnings: list[str] | None = None) -> aiohttp.web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for warning in warnings or []:
        headers.add("Warning", f"299 - {json.dumps(warning)}")
    return aiohttp.web.json_response(data, status=status, headers=headers)


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    """A Kubernetes API server emulator with kube-apiserver's object semantics (see the module docstring).

    Use it as kmock documents (``async with emulator, kmock.Server(emulator) as server``), or
    through :func:`modelops.sandbox.apiserver.serve`.

    Args:
        crds: CustomResourceDefinition objects to serve from the start.
        history: watch events kept per resource (older resourceVersions get 410 Expired).
        journal_limit: requests kept in kmock's journal (0 keeps none).
    """

    crds: list[dict[str, Any]] = attrs.field(factory=list)
    history: int = 4096
    journal_limit: int = 256
    catalogue: Catalogue = attrs.field(init=False)
    store: Store = attrs.field(init=False)
    registry: Registry = attrs.field(init=False)
    _request_count: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        # kmock's own __attrs_post_init__ is deliberately not called: it registers catch-all
        # reactions that scan the journal and all objects for every request. Requests are
        # routed by _serve instead; self._payloads holds only user-added reactions.
        self.catalogue = Catalogue()
        self.store = Store(self.history)
        self.registry = Registry(self.catalogue, self.store, defer=self._defer)
        self.registry.bootstrap(self.crds)

    # -- plumbing ----------------------------------------------------------------------------
    def _defer(self, fn: Callable[[], None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            fn()
            return
        loop.call_soon(self._run_deferred, fn)

    @staticmethod
    def _run_deferred(fn: Callable[[], None]) -> None:
        try:
            fn()
        except ApiError as exc:
            log.warning("background work failed: %s", exc.message)

    def close_watches(self) -> None:
        """End every open watch stream (call before stopping the server, so it stops at once)."""
        self.store.close_watchers()

    def _kmock_request(self, raw: aiohttp.web.BaseRequest, body: bytes, data: Any, route: Route | None) -> Any:
        action = None
        if route is not None and route.plural:
            if raw.method == "GET":
                watch = raw.query.get("watch") in ("true", "1")
                action = enums.action.WATCH if watch else enums.action.FETCH if route.name else enums.action.LIST
            else:
                action = {"POST": enums.action.CREATE, "PATCH": enums.action.UPDATE, "DELETE": enums.action.DELETE}.get(
                    raw.method
                )
        resource = None
        if route is not None and route.plural and route.group is not None:
            resource = references.resource(group=route.group, version=route.version, plural=route.plural)
        self._request_count += 1
        return rendering.Request(
            id=self._request_count,
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=dict(raw.query),
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=action,
            resource=resource,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            subresource=route.subresource if route else None,
        )

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve one HTTP request (the aiohttp entry point; replaces kmock's journal-scanning one)."""
        body = await raw_request.read()
        route = parse_route(raw_request.path)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
            if raw_request.method in ("POST", "PUT", "PATCH"):
                content_type = raw_request.headers.get("Content-Type", "")
                if "protobuf" in content_type:  # kubectl's typed commands (create namespace, …)
                    return _json(protobuf_unsupported(content_type).to_status(), 415)
                return _json(bad_request("the body is not valid JSON").to_status(), 400)
        try:
            if self.journal_limit or self._payloads:
                request = self._kmock_request(raw_request, body, data, route)
                self._requests.append(request)
                del self._requests[: -self.journal_limit or None]
                if self._payloads:
                    try:
                        return await kmock.RawHandler._handle(self, request)
                    except NotImplementedError:
                        pass  # no user reaction matched: serve as the API server
            return await self._serve(raw_request, route, data)
        except ApiError as exc:
            log.debug("%s %s -> %s %s", raw_request.method, raw_request.path_qs, exc.status, exc.message)
            return _json(exc.to_status(), exc.status)
        except Exception as exc:  # request boundary: a bug becomes a logged 500 Status; the server keeps serving
            log.exception("internal error serving %s %s", raw_request.method, raw_request.path_qs)
            error = ApiError(500, "InternalError", f"an error on the server ({exc!r}) has prevented the request", {})
            return _json(error.to_status(), 500)

    # -- routing -----------------------------------------------------------------------------
    async def _serve(self, raw: aiohttp.web.BaseRequest, route: Route | None, data: Any) -> aiohttp.web.StreamResponse:
        if route is None:
            return self._serve_other(raw)
        if route.plural is None:
            if raw.method != "GET":
                raise method_not_allowed(raw.method)
            return _json(self._discovery(raw, route))
        assert route.group is not None and route.version is not None
        rt = self.catalogue.lookup(route.group, route.version, route.plural)
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise no_route()
        if route.subresource is not None and (route.subresource != "status" or not rt.status):
            raise no_route()
        version, q, method = route.version, raw.query, raw.method
        namespace = route.namespace if rt.namespaced else None
        dry_run = q.get("dryRun") == "All"
        validation = q.get("fieldValidation")
        if method == "GET" and q.get("watch") in ("true", "1"):
            return await self._watch(raw, rt, version, namespace, route.name)
        if method == "GET" and route.name is None:
            return _json(self._list(raw, rt, version, namespace))
        if method == "GET":
            obj = _present(rt, version, self.registry.get(rt, namespace, route.name or ""))
            if _wants(raw, "Table"):
                rv = obj["metadata"]["resourceVersion"]
                return _json(table(rt, version, [obj], rv, q.get("includeObject", "Metadata")))
            return _json(obj)
        if method == "POST" and route.name is None:
            obj, warnings = self.registry.create(
                rt, version, namespace, data, dry_run=dry_run, field_validation=validation
            )
            return _json(_present(rt, version, obj), 201, warnings)
        if method == "PUT" and route.name is not None:
            obj, warnings = self.registry.replace(
                rt,
                version,
                namespace,
                route.name,
                data,
                subresource=route.subresource,
                dry_run=dry_run,
                field_validation=validation,
            )
            return _json(_present(rt, version, obj), 200, warnings)
        if method == "PATCH" and route.name is not None:
            obj, warnings = self.registry.patch(
                rt,
                version,
                namespace,
                route.name,
                raw.headers.get("Content-Type", ""),
                data,
                subresource=route.subresource,
                dry_run=dry_run,
                field_validation=validation,
            )
            return _json(_present(rt, version, obj), 200, warnings)
        if method == "DELETE":
            return self._delete(raw, rt, version, namespace, route.name, data, dry_run)
        raise method_not_allowed(method)

    def _serve_other(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip("/") or "/"
        if path == "/version":
            return _json(SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return _json(self._openapi_v3(path.removeprefix("/openapi/v3").strip("/")))
        if path == "/":
            paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi/v3"}
            for group, versions in self.catalogue.groups().items():
                paths |= {f"/apis/{group}"} | {f"/apis/{group}/{v}" for v in versions}
            return _json({"paths": sorted(paths)})
        raise no_route()

    # -- discovery ---------------------------------------------------------------------------
    def _discovery(self, raw: aiohttp.web.BaseRequest, route: Route) -> dict[str, Any]:
        if route.group is None:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g, vs) for g, vs in self.catalogue.groups().items()],
            }
        if route.group == "" and route.version is None:
            address = f"{raw.host}"
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
            }
        if route.version is None:
            versions = self.catalogue.groups().get(route.group)
            if not versions:
                raise no_route()
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(route.group, versions)}
        resources = self.catalogue.in_group_version(route.group, route.version)
        if not resources:
            raise no_route()
        listed: list[dict[str, Any]] = []
        for rt in resources:
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(VERBS),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            listed.append(entry)
            if rt.status:
                listed.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        group_version = f"{route.group}/{route.version}" if route.group else route.version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": listed}

    def _openapi_v3(self, group_version: str) -> dict[str, Any]:
        """A minimal OpenAPI v3 index and per-group-version documents.

        They declare, for each resource, a PATCH operation with its ``x-kubernetes-group-version-kind``
        and the ``fieldValidation`` query parameter: that is what kubectl looks for to use
        server-side field validation, so ``kubectl apply`` works without ``--validate=false``.
        There are no schemas (``kubectl explain`` does not work).
        """
        docs: dict[str, dict[str, Any]] = {}
        for rt in self.catalogue:
            for version in rt.versions:
                prefix = f"apis/{rt.group}/{version}" if rt.group else f"api/{version}"
                doc = docs.setdefault(
                    prefix,
                    {
                        "openapi": "3.0.0",
                        "paths": {},
                        "components": {"schemas": {}},
                        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
                    },
                )
                scope = "namespaces/{namespace}/" if rt.namespaced else ""
                gvk = {"group": rt.group, "version": version, "kind": rt.kind}
                params = [
                    {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                    for n in ("dryRun", "fieldManager", "fieldValidation", "force")
                ]
                for suffix in ("", "/status") if rt.status else ("",):
                    doc["paths"][f"/{prefix}/{scope}{rt.plural}/{{name}}{suffix}"] = {
                        "patch": {
                            "x-kubernetes-group-version-kind": gvk,
                            "x-kubernetes-action": "patch",
                            "parameters": params,
                            "responses": {"200": {"description": "OK"}},
                        }
                    }
        if not group_version:
            return {
                "paths": {
                    prefix: {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={self._hash(doc)}"}
                    for prefix, doc in docs.items()
                }
            }
        if group_version not in docs:
            raise no_route()
        return docs[group_version]

    @staticmethod
    def _hash(doc: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()

    @staticmethod
    def _group(group: str, versions: list[str]) -> dict[str, Any]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    # -- list, delete ------------------------------------------------------------------------
    def _selected(
        self, raw: aiohttp.web.BaseRequest, rt: ResourceType, namespace: str | None, name: str | None = None
    ) -> tuple[list[dict[str, Any]], Predicate]:
        predicate = selector_predicate(raw.query.get("labelSelector"), raw.query.get("fieldSelector"))
        if name is not None:
            base = predicate
            predicate = lambda obj: _key(obj)[1] == name and base(obj)  # noqa: E731
        return [o for o in self.store.objects(rt.key, namespace) if predicate(o)], predicate

    def _list(
        self, raw: aiohttp.web.BaseRequest, rt: ResourceType, version: str, namespace: str | None
    ) -> dict[str, Any]:
        objs, _ = self._selected(raw, rt, namespace)
        q = raw.query
        if q.get("continue"):
            start = _decode_continue(q["continue"])
            objs = [o for o in objs if _key(o) > start]
        meta: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        limit = int(q.get("limit") or 0) if (q.get("limit") or "0").isdigit() else 0
        if limit and len(objs) > limit:
            meta["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
            meta["continue"] = _encode_continue(*_key(objs[-1]))
        objs = [_present(rt, version, o) for o in objs]
        if _wants(raw, "Table"):
            return table(
                rt, version, objs, meta["resourceVersion"], q.get("includeObject", "Metadata"), meta.get("continue")
            )
        if _wants(raw, "PartialObjectMetadataList"):
            return {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": [partial(o) for o in objs],
            }
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version(version), "metadata": meta, "items": objs}

    def _delete(
        self,
        raw: aiohttp.web.BaseRequest,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str | None,
        data: Any,
        dry_run: bool,
    ) -> aiohttp.web.Response:
        options = dict(data) if isinstance(data, dict) else {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if key in raw.query:
                options.setdefault(key, raw.query[key])
        if options.get("orphanDependents") in ("true", True):
            options["orphanDependents"] = True
        if name is None:
            _, predicate = self._selected(raw, rt, namespace)
            deleted = self.registry.delete_collection(rt, namespace, predicate, options, dry_run=dry_run)
            meta = {"resourceVersion": str(self.store.resource_version)}
            items = [_present(rt, version, o) for o in deleted]
            return _json(
                {"kind": f"{rt.kind}List", "apiVersion": rt.api_version(version), "metadata": meta, "items": items}
            )
        obj, gone = self.registry.delete(rt, namespace, name, options, dry_run=dry_run)
        if gone and not rt.is_custom and rt.key != ("", "pods"):
            meta = obj.get("metadata", {})
            details = {"name": name, "group": rt.group, "kind": rt.plural, "uid": meta.get("uid")}
            return _json(
                {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
            )
        return _json(_present(rt, version, obj))

    # -- watch -------------------------------------------------------------------------------
    async def _watch(
        self, raw: aiohttp.web.BaseRequest, rt: ResourceType, version: str, namespace: str | None, name: str | None
    ) -> aiohttp.web.StreamResponse:
        q = raw.query
        _, predicate = self._selected(raw, rt, namespace, name)
        since = q.get("resourceVersion") or ""
        initial = since in ("", "0") or q.get("sendInitialEvents") == "true"
        if not initial and not since.isdigit():
            raise bad_request(f"invalid resourceVersion: {since!r}")
        timeout = float(q["timeoutSeconds"]) if (q.get("timeoutSeconds") or "").isdigit() else None
        as_table = _wants(raw, "Table")

        def visible(obj: dict[str, Any] | None) -> bool:
            return obj is not None and (namespace is None or _key(obj)[0] == namespace) and predicate(obj)

        def render(kind: str, obj: dict[str, Any]) -> bytes:
            shown: dict[str, Any] = _present(rt, version, obj)
            if as_table:
                shown = table(rt, version, [shown], shown["metadata"]["resourceVersion"])
            return json.dumps({"type": kind, "object": shown}).encode() + b"\n"

        def translate(event: WatchEvent) -> bytes | None:
            now_in, was_in = visible(event.obj), visible(event.old)
            if event.type == "DELETED":
                return render("DELETED", event.obj) if now_in or was_in else None
            if now_in:
                return render("MODIFIED" if was_in else "ADDED", event.obj)
            return render("DELETED", event.obj) if was_in else None

        # Subscribe and take the backlog in one synchronous step: no event is lost or doubled.
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        watcher = self.store.subscribe(rt.key)
        try:
            backlog: list[bytes] = []
            if initial:
                backlog = [render("ADDED", o) for o in self.store.objects(rt.key, namespace) if predicate(o)]
                if q.get("sendInitialEvents") == "true":
                    bookmark = {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version(version),
                        "metadata": {
                            "resourceVersion": str(self.store.resource_version),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }
                    backlog.append(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
            else:
                events = self.store.events_since(rt.key, int(since))
                if events is None:
                    status = expired(int(since), self.store.oldest_rv(rt.key)).to_status()
                    backlog = [json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"]
                    self.store.unsubscribe(watcher)
                else:
                    backlog = [line for line in map(translate, events) if line is not None]
            await response.prepare(raw)
            for line in backlog:
                await response.write(line)
            await self._stream(response, watcher, translate, timeout)
            await response.write_eof()
        except ConnectionError:
            log.debug("watch client went away: %s", raw.path_qs)
        finally:
            self.store.unsubscribe(watcher)
        return response

    async def _stream(
        self,
        response: aiohttp.web.StreamResponse,
        watcher: Watcher,
        translate: Callable[[WatchEvent], bytes | None],
        timeout: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        while self.store.is_subscribed(watcher):
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                event = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                return
            if event is None:
                return
            line = translate(event)
            if line is not None:
                await response.write(line)
