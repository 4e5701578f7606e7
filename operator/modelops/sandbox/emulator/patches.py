"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

The strategic merge patch is an approximation of Kubernetes' for the built-in kinds: maps merge
recursively; lists whose field has a known merge key (``containers``/``env``/``volumes`` by
``name``, ``volumeMounts`` by ``mountPath``, ``ports`` by ``containerPort`` or ``port``,
``conditions`` by ``type``, ``ownerReferences`` by ``uid``...) merge item by item;
``finalizers`` merge as a set; other lists are replaced. The directives ``$patch``
(``replace``/``delete``), ``$retainKeys``, ``$setElementOrder/...`` and
``$deleteFromPrimitiveList/...`` are honoured and never stored. The merge key is chosen by the
field's name, not by the kind's Go type, which is what differs from a real server in rare cases.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from .errors import ApiError, bad_request, unsupported_media_type

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

#: List fields merged by a key, as in the built-in kinds' ``patchMergeKey`` tags.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
#: Lists of scalars merged as sets.
SET_LISTS = frozenset({"finalizers"})


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, without parameters, lower-cased."""
    return (header or "application/json").split(";")[0].strip().lower()


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; returns a new value (``target`` is not modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    _merge_into(result, patch)
    return result


def _merge_into(result: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            if not isinstance(current, dict):
                current = result[key] = {}
            _merge_into(current, value)
        else:
            result[key] = copy.deepcopy(value)


def json_patch(target: dict[str, Any], ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch; returns a new value.

    Raises:
        ApiError: 400 when the body is not a list of operations, 422 when an operation fails
            (including a failed ``test``, which kopf relies on for optimistic concurrency).
    """
    if not isinstance(ops, list):
        raise bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        # includes JsonPatchTestFailed: kopf expects 422 when its resourceVersion test fails
        message = f"the server rejected our request due to an error in our request: {exc}"
        raise ApiError(422, "Invalid", message, {}) from exc


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def _strip(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: _strip(v) for k, v in item.items() if not k.startswith("$")}
    return copy.deepcopy(item)


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    current = current if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if field in SET_LISTS and all(not isinstance(i, dict | list) for i in patch):
        return copy.deepcopy(current) + [i for i in patch if i not in current]
    key = _merge_key(field, current + patch)
    if key is None or not all(isinstance(i, dict) for i in patch + current):
        return list(_strip(patch))
    result = copy.deepcopy(current)
    for item in patch:
        index = next((n for n, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip(item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ranked = [i for w in wanted for i in items if ident(i) == w]
    return ranked + [i for i in items if ident(i) not in wanted]


def strategic_merge(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch (see the module docstring); returns a new value, None for ``$patch: delete``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return None
    result: dict[str, Any] = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    removals: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            removals[key.split("/", 1)[1]] = value
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    for field, values in removals.items():
        if isinstance(result.get(field), list):
            result[field] = [v for v in result[field] if v not in values]
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, _merge_key(field, result[field]))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def apply_patch(content_type: str, original: dict[str, Any], body: Any, *, strategic: bool) -> dict[str, Any]:
    """Apply a PATCH body of the given media type to ``original``; returns a new object.

    Args:
        content_type: the request's Content-Type (parameters ignored).
        original: the stored object (not modified).
        body: the parsed JSON body.
        strategic: whether the resource accepts strategic merge patches (built-in kinds only,
            as on a real server: custom resources answer 415).

    Raises:
        ApiError: 415 for server-side apply, an unknown media type or a strategic patch of a
            custom resource; 400/422 for a malformed or failing patch.
    """
    kind = media_type(content_type)
    if kind == MERGE:
        result = merge_patch(original, body)
    elif kind == JSON:
        result = json_patch(original, body)
    elif kind == STRATEGIC and strategic:
        if not isinstance(body, dict):
            raise bad_request("strategic merge patch must be a JSON object")
        result = strategic_merge(original, body)
    else:
        raise unsupported_media_type(kind)
    if not isinstance(result, dict):
        raise bad_request("the patch did not produce an object")
    return result
