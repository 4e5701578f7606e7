"""Server-side printing: ``meta.k8s.io/v1`` Tables for ``kubectl get`` (``Accept: ...;as=Table``).

Custom resources get their CRD's ``additionalPrinterColumns`` (JSONPath subset: dotted fields,
``[index]`` and ``[?(@.key=="value")]`` filters); built-in kinds get ``Name`` and ``Age`` only
(a real server prints kind-specific columns such as READY or STATUS).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from .catalogue import ResourceType

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "priority": 0,
    "description": "CreationTimestamp of the object.",
}
_STEP = re.compile(r"""\.?([^.\[\]]+)|\[(\d+)\]|\[\?\(@\.([\w.]+)\s*==\s*["']?([^"')]*)["']?\)\]""")


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate a printer-column JSONPath (``.status.phase``, ``.items[0].x``, ``.c[?(@.type=="Ready")].status``).

    Returns:
        The value, or None when any step is absent or the path is not supported.
    """
    path = path.strip().removeprefix("{").removesuffix("}")
    node = obj
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None or m.end() == pos:
            return None
        pos = m.end()
        if m[1] is not None:
            node = node.get(m[1]) if isinstance(node, dict) else None
        elif m[2] is not None:
            index = int(m[2])
            node = node[index] if isinstance(node, list) and index < len(node) else None
        else:
            key, wanted = m[3], m[4]
            found = (
                [i for i in node if isinstance(i, dict) and str(jsonpath(i, "." + key)) == wanted]
                if isinstance(node, list)
                else []
            )
            node = found[0] if found else None
        if node is None:
            return None
    return node


def human_duration(seconds: float) -> str:
    """Kubernetes' ``HumanDuration`` (``45s``, ``5m3s``, ``3h``, ``2d4h``...)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _columns(rt: ResourceType, version: str | None) -> list[dict[str, Any]]:
    columns = rt.crd_version(version).get("additionalPrinterColumns") if rt.is_custom else None
    return list(columns) if columns else [_AGE_COLUMN]


def _cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    value = jsonpath(obj, str(column.get("jsonPath", "")))
    if value is None:
        return None
    kind = column.get("type")
    if kind == "date" and isinstance(value, str):
        try:
            stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return value
        return human_duration((datetime.now(UTC) - stamp).total_seconds())
    if kind in ("integer", "number", "boolean") and isinstance(value, int | float | bool):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, str) else json.dumps(value)


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``PartialObjectMetadata`` of an object."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    rt: ResourceType,
    version: str | None,
    objs: list[dict[str, Any]],
    resource_version: str,
    include_object: str = "Metadata",
    continue_token: str | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objs`` (``include_object``: ``None``, ``Metadata`` or ``Object``)."""
    columns = _columns(rt, version)
    definitions = [_NAME_COLUMN] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in columns
    ]
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": [obj.get("metadata", {}).get("name")] + [_cell(c, obj) for c in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial(obj)
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
