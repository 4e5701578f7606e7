"""What kube-apiserver does to objects, without HTTP: create, update, patch, delete, GC, namespaces.

Every method is synchronous and raises :class:`~.errors.ApiError` for API failures. Follow-up
work that a real cluster does asynchronously (ownerReference garbage collection, namespace
termination, removing the instances of a deleted CRD) goes through ``defer``, which the HTTP
layer sets to ``loop.call_soon`` so that it runs right after the current request.
"""

from __future__ import annotations

import copy
import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ...api import openapi
from . import builtins
from .catalogue import Catalogue, CrdError, ResourceKey, ResourceType, resource_from_crd
from .cel import CelValidator
from .errors import already_exists, bad_request, conflict, forbidden, invalid, not_found
from .patches import apply_patch
from .store import Store, owner_uids

log = logging.getLogger(__name__)

NAMESPACES: ResourceKey = ("", "namespaces")
CRDS: ResourceKey = ("apiextensions.k8s.io", "customresourcedefinitions")
#: Namespaces that exist from the start, as on a fresh cluster.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_SERVER_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
)
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _desired(obj: dict[str, Any]) -> dict[str, Any]:
    """What ``metadata.generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Registry:
    """The emulator's object semantics over a :class:`Store` (see the module docstring).

    Args:
        catalogue: served resources (CRDs created through the API are added to it).
        store: object storage.
        defer: runs follow-up work soon (default: immediately).
    """

    def __init__(self, catalogue: Catalogue, store: Store, defer: Callable[[Callable[[], None]], None] | None = None):
        self.catalogue = catalogue
        self.store = store
        self.cel = CelValidator()
        self.defer: Callable[[Callable[[], None]], None] = defer or (lambda fn: fn())

    # -- setup -------------------------------------------------------------------------------
    def bootstrap(self, crds: list[dict[str, Any]]) -> None:
        """Create the initial namespaces and the given CRDs (skipping those that exist)."""
        ns_rt = self._rt(NAMESPACES)
        for name in INITIAL_NAMESPACES:
            if self.store.get(NAMESPACES, "", name) is None:
                self.create(ns_rt, "v1", None, {"metadata": {"name": name}})
        crd_rt = self._rt(CRDS)
        for crd in crds:
            if self.store.get(CRDS, "", crd["metadata"]["name"]) is None:
                self.create(crd_rt, "v1", None, crd)

    def _rt(self, key: ResourceKey) -> ResourceType:
        rt = self.catalogue.get(key)
        if rt is None:
            raise KeyError(key)
        return rt

    # -- reads -------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object; raises 404 when absent."""
        obj = self.store.get(rt.key, (namespace or "") if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    # -- admission ---------------------------------------------------------------------------
    def _admit(
        self,
        rt: ResourceType,
        version: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        status_write: bool,
        field_validation: str | None,
    ) -> list[str]:
        """Default, prune and validate ``obj`` in place; return warnings; raise 422 when invalid."""
        name = str(_meta(obj).get("name", ""))
        warnings: list[str] = []
        if not rt.is_custom:
            if status_write:
                return warnings
            builtins.apply_defaults(rt, obj, old)
            errors = builtins.validate(rt, obj, old)
            if rt.key == CRDS and not errors:
                try:
                    resource_from_crd(obj)
                except CrdError as exc:
                    errors.append(openapi.FieldError("spec", f"Invalid value: {exc}"))
        else:
            errors = [] if status_write else builtins.metadata_errors(rt, obj)
            schema = rt.schema(version)
            if schema is not None:
                strict = field_validation == "Strict" or (field_validation is None and not status_write)
                unknown, schema_errors = self._admit_custom(rt, schema, obj, old, status_write)
                if strict:
                    errors += [openapi.FieldError(p, f'unknown field "{p}"', openapi.UNKNOWN_FIELD) for p in unknown]
                elif field_validation != "Ignore":
                    warnings += [f'unknown field "{p}"' for p in unknown]
                errors += schema_errors
        if errors:
            raise invalid(rt.kind, rt.group, name, errors)
        return warnings

    def _admit_custom(
        self,
        rt: ResourceType,
        schema: dict[str, Any],
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        status_write: bool,
    ) -> tuple[list[str], list[openapi.FieldError]]:
        """Prune, default, validate and check CEL rules of the part being written, in place.

        A status write handles ``status`` only; a main write handles everything else when the
        kind has a status subresource (the other part is the stored one, already admitted).

        Returns:
            (pruned unknown field paths, validation errors).
        """
        update = old is not None
        if status_write:
            sub = (schema.get("properties") or {}).get("status")
            if "status" not in obj:
                return [], []
            if sub is None:
                del obj["status"]
                return ["status"], []
            unknown = openapi.prune(sub, obj["status"], prefix="status", root=False)
            openapi.apply_defaults(sub, obj["status"])
            errors = openapi.validate(sub, obj["status"], strict=False, prefix="status")
            if not errors:
                errors = self.cel.validate(
                    sub, obj["status"], (old or {}).get("status"), prefix="status", update=update
                )
            return unknown, errors
        part = {k: v for k, v in obj.items() if not (rt.status and k == "status")}
        unknown = openapi.prune(schema, part)
        for key in [k for k in obj if k not in part and k != "status"]:
            del obj[key]  # pruned top-level fields
        openapi.apply_defaults(schema, part)
        obj.update(part)
        errors = openapi.validate(schema, part, strict=False)
        if not errors:
            old_part = {k: v for k, v in (old or {}).items() if not (rt.status and k == "status")}
            errors = self.cel.validate(schema, part, old_part if update else None, update=update)
        return unknown, errors

    def _check_identity(self, rt: ResourceType, version: str, obj: dict[str, Any]) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        if api_version and api_version != rt.api_version(version):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.api_version(version)})"
            )
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version(version)

    def _check_namespace(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise not_found("namespaces", "", namespace)
        if _meta(ns).get("deletionTimestamp"):
            raise forbidden(f"unable to create new content in namespace {namespace} because it is being terminated")

    # -- create ------------------------------------------------------------------------------
    def create(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        """Create an object (POST to a collection).

        Fills ``uid``, ``creationTimestamp``, ``generation`` (1), ``resourceVersion`` and a name
        from ``generateName``; drops ``status`` of kinds with a status subresource; admits the
        object (defaults, pruning, validation).

        Returns:
            (stored object, warnings).

        Raises:
            ApiError: 400 malformed, 403 terminating namespace, 404 missing namespace,
                409 AlreadyExists, 422 Invalid.
        """
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        obj = copy.deepcopy(body)
        self._check_identity(rt, version, obj)
        meta = _meta(obj)
        if rt.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the object does not match the namespace on the request")
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise bad_request("a namespace is required to create a namespaced object")
            meta["namespace"] = namespace
            self._check_namespace(namespace)
        else:
            meta.pop("namespace", None)
        okey_ns = (namespace or "") if rt.namespaced else ""
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        openapi.FieldError(
                            "metadata.name", "Required value: name or generateName is required", "FieldValueRequired"
                        )
                    ],
                )
            for _ in range(100):
                meta["name"] = prefix + "".join(random.choices(_SUFFIX, k=5))
                if self.store.get(rt.key, okey_ns, meta["name"]) is None:
                    break
        if self.store.get(rt.key, okey_ns, meta["name"]) is not None:
            raise already_exists(rt.plural, rt.group, meta["name"])
        for key in _SERVER_META:
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.generation:
            meta["generation"] = 1
        if rt.status:
            obj.pop("status", None)
        warnings = self._admit(rt, version, obj, None, False, field_validation)
        if rt.key == CRDS:
            self._crd_status(obj)
        if dry_run:
            return obj, warnings
        stored = self.store.put(rt.key, obj, None)
        self._after_write(rt, stored, None)
        return stored, warnings

    # -- update ------------------------------------------------------------------------------
    def replace(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        """Replace an object or its status (PUT), with resourceVersion conflict checking.

        Raises:
            ApiError: 400 name/namespace mismatch, 404 absent, 409 stale resourceVersion,
                422 Invalid.
        """
        old = self.get(rt, namespace, name)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        new = copy.deepcopy(body)
        self._check_identity(rt, version, new)
        meta = _meta(new)
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        return self._update(rt, version, old, new, subresource, dry_run, field_validation)

    def patch(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
    ) -> tuple[dict[str, Any], list[str]]:
        """Patch an object or its status (merge, JSON or strategic merge patch; see :mod:`.patches`).

        A ``metadata.resourceVersion`` in the patch is a precondition (409 when stale).

        Raises:
            ApiError: 404 absent, 409 stale, 415 unsupported patch type, 400/422 bad patch or
                invalid result.
        """
        old = self.get(rt, namespace, name)
        new = apply_patch(content_type, old, body, strategic=not rt.is_custom)
        meta = _meta(new)
        if meta.get("name") != name or (rt.namespaced and meta.get("namespace") != namespace):
            raise bad_request("metadata.name and metadata.namespace cannot be changed")
        self._check_identity(rt, version, new)
        return self._update(rt, version, old, new, subresource, dry_run, field_validation)

    def _update(
        self,
        rt: ResourceType,
        version: str,
        old: dict[str, Any],
        candidate: dict[str, Any],
        subresource: str | None,
        dry_run: bool,
        field_validation: str | None,
    ) -> tuple[dict[str, Any], list[str]]:
        old_meta = _meta(old)
        given_rv = _meta(candidate).get("resourceVersion")
        if given_rv and given_rv != old_meta["resourceVersion"]:
            raise conflict(rt.plural, rt.group, old_meta["name"])
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            meta = _meta(new)
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if rt.status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise invalid(
                        rt.kind,
                        rt.group,
                        old_meta["name"],
                        [
                            openapi.FieldError(
                                "metadata.finalizers",
                                f"Forbidden: no new finalizers can be added if the object is being "
                                f"deleted, found new finalizers {sorted(added)!r}",
                                "FieldValueForbidden",
                            )
                        ],
                    )
        _meta(new)["resourceVersion"] = old_meta["resourceVersion"]
        _meta(new).pop("managedFields", None)
        warnings = self._admit(rt, version, new, old, subresource == "status", field_validation)
        if rt.generation and _desired(new) != _desired(old):
            _meta(new)["generation"] = int(old_meta.get("generation") or 0) + 1
        if rt.key == CRDS and (new.get("spec") or {}).get("names") != (old.get("spec") or {}).get("names"):
            self._crd_status(new)
        if new == old or dry_run:
            return (old if new == old else new), warnings
        stored = self.store.put(rt.key, new, old)
        self._after_write(rt, stored, old)
        meta = _meta(stored)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and rt.key != NAMESPACES:
            self._remove(rt, stored)
        return stored, warnings

    def _after_write(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rt.key == CRDS:
            self._register_crd(obj, old)
        uids = owner_uids(obj)
        if uids and uids != (owner_uids(old) if old else set()):
            uid = _meta(obj)["uid"]
            self.defer(lambda: self._collect_dangling(uid))

    # -- CRDs --------------------------------------------------------------------------------
    @staticmethod
    def _crd_status(crd: dict[str, Any]) -> None:
        names = (crd.get("spec") or {}).get("names") or {}
        stamp = now()
        crd["status"] = {
            "acceptedNames": names,
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "lastTransitionTime": stamp,
                    "message": "no conflicts found",
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "lastTransitionTime": stamp,
                    "message": "the initial names have been accepted",
                },
            ],
            "storedVersions": [v["name"] for v in (crd.get("spec") or {}).get("versions", []) if v.get("storage")],
        }

    def _register_crd(self, crd: dict[str, Any], old: dict[str, Any] | None) -> None:
        rt = resource_from_crd(crd)
        if old is not None:
            previous = resource_from_crd(old)
            if previous.key != rt.key:
                self.catalogue.remove(previous.key)
        self.catalogue.add(rt)
        log.info("serving %s (%s)", rt.api_version(), rt.plural)

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        rt = resource_from_crd(crd)
        for obj in self.store.objects(rt.key):
            self.store.remove(rt.key, obj)
        self.store.close_watchers([rt.key])
        self.catalogue.remove(rt.key)

    # -- delete ------------------------------------------------------------------------------
    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object (DELETE).

        With finalizers (or for a namespace), only ``deletionTimestamp`` is set (and
        ``generation`` bumped, as a real server does); the object goes when the last finalizer is
        removed. ``propagationPolicy: Orphan`` strips the owner's references from dependents
        first; otherwise dependents are garbage-collected in the background once the object is
        gone (``Foreground`` is treated as ``Background``). ``preconditions`` (uid,
        resourceVersion) are checked.

        Returns:
            (the object's last state, whether it is gone now).

        Raises:
            ApiError: 404 absent, 409 failed precondition.
        """
        obj = self.get(rt, namespace, name)
        options = options or {}
        meta = _meta(obj)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise conflict(rt.plural, rt.group, name)
        if dry_run:
            return obj, False
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background")
        if policy == "Orphan":
            self._orphan(str(meta.get("uid")))
        return self._delete(rt, obj)

    def _delete(self, rt: ResourceType, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        meta = _meta(obj)
        if meta.get("deletionTimestamp"):
            return obj, False
        if meta.get("finalizers") or rt.key == NAMESPACES:
            new = copy.deepcopy(obj)
            new_meta = _meta(new)
            new_meta["deletionTimestamp"] = now()
            new_meta["deletionGracePeriodSeconds"] = 0
            if rt.generation:
                new_meta["generation"] = int(meta.get("generation") or 0) + 1
            if rt.key == NAMESPACES:
                new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
                self.defer(lambda: self._drain_namespace(str(meta["name"])))
            return self.store.put(rt.key, new, obj), False
        return self._remove(rt, obj), True

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        final = self.store.remove(rt.key, obj)
        meta = _meta(obj)
        uid = str(meta.get("uid"))
        if rt.key == CRDS:
            self.defer(lambda: self._unregister_crd(obj))
        self.defer(lambda: self._collect(uid))
        namespace = meta.get("namespace")
        if namespace:
            self.defer(lambda: self._finish_namespace(namespace))
        return final

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Callable[[dict[str, Any]], bool],
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        """Delete every object of a resource (in ``namespace``) that matches ``predicate``; return them."""
        out = []
        for obj in self.store.objects(rt.key, namespace if rt.namespaced else None):
            if predicate(obj):
                meta = _meta(obj)
                out.append(self.delete(rt, meta.get("namespace"), meta["name"], options, dry_run=dry_run)[0])
        return out

    # -- garbage collection ------------------------------------------------------------------
    def _rt_of(self, key: ResourceKey) -> ResourceType | None:
        return self.catalogue.get(key)

    def _collect(self, owner_uid: str) -> None:
        """Delete the dependents of a deleted owner that have no owner left; drop dangling references."""
        for key, dependent in self.store.dependents(owner_uid):
            rt = self._rt_of(key)
            if rt is not None:
                self._collect_one(rt, dependent)

    def _collect_dangling(self, uid: str) -> None:
        hit = self.store.by_uid(uid)
        if hit is not None:
            rt = self._rt_of(hit[0])
            if rt is not None:
                self._collect_one(rt, hit[1])

    def _collect_one(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        refs = _meta(obj).get("ownerReferences") or []
        alive = [r for r in refs if isinstance(r, dict) and self.store.by_uid(str(r.get("uid"))) is not None]
        if alive and len(alive) < len(refs):
            new = copy.deepcopy(obj)
            _meta(new)["ownerReferences"] = alive
            self.store.put(rt.key, new, obj)
        elif not alive and refs:
            log.info("garbage-collecting %s %s/%s", rt.kind, _meta(obj).get("namespace", ""), _meta(obj)["name"])
            self._delete(rt, obj)

    def _orphan(self, owner_uid: str) -> None:
        for key, dependent in self.store.dependents(owner_uid):
            new = copy.deepcopy(dependent)
            refs = _meta(new).get("ownerReferences") or []
            _meta(new)["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
            if not _meta(new)["ownerReferences"]:
                del _meta(new)["ownerReferences"]
            self.store.put(key, new, dependent)

    # -- namespaces --------------------------------------------------------------------------
    def _drain_namespace(self, namespace: str) -> None:
        for key, obj in self.store.namespaced_in(namespace):
            rt = self._rt_of(key)
            if rt is not None:
                self._delete(rt, obj)
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None or not _meta(ns).get("deletionTimestamp"):
            return
        if not self.store.namespaced_in(namespace):
            self.store.remove(NAMESPACES, ns)
