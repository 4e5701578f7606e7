"""Validate objects against a CRD's structural ``openAPIV3Schema``, as an API server would.

Used by the tests (every example CR and every status we write must validate) and by the
sandbox's API emulator. The schema dialect is OpenAPI v3.0, whose ``exclusiveMinimum`` is a
boolean like JSON Schema draft 4, so draft 4 semantics are the faithful choice here.
``strict=True`` rejects unknown fields (``kubectl``'s default ``--validate=strict``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator


@dataclass(frozen=True)
class FieldError:
    """One validation failure: a dotted field path (``spec.training.testSize``) and a message."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _path(error: Any, prefix: str) -> str:
    parts = [prefix] if prefix else []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(str(part))
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts.append(unknown[0] if unknown else "")
        return ".".join(p for p in parts if p)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
        parts.append(missing)
    return ".".join(p for p in parts if p)


_CACHE: dict[tuple[int, bool], tuple[Any, Draft4Validator]] = {}


def validator(schema: dict[str, Any], strict: bool = True) -> Draft4Validator:
    """Return a cached draft-4 validator for ``schema`` (strict adds additionalProperties: false)."""
    key = (id(schema), strict)
    hit = _CACHE.get(key)
    if hit is None or hit[0] is not schema:
        body = _strict(copy.deepcopy(schema)) if strict else schema
        hit = (schema, Draft4Validator(body))
        _CACHE[key] = hit
    return hit[1]


def validate(schema: dict[str, Any], obj: Any, *, strict: bool = True, prefix: str = "") -> list[FieldError]:
    """Validate ``obj`` against ``schema``; return every error with the field it concerns.

    Args:
        schema: an ``openAPIV3Schema`` (or a sub-schema, with ``prefix`` naming its path).
        obj: the object (dict) to check.
        strict: reject fields the schema does not declare.
        prefix: dotted path of ``obj`` inside the whole object, used in messages.
    """
    errors = sorted(validator(schema, strict).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [FieldError(_path(e, prefix), e.message) for e in errors]


def crd_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """Return the ``openAPIV3Schema`` of a CRD (of ``version``, or its storage version)."""
    for ver in crd["spec"]["versions"]:
        if (version is None and ver.get("storage")) or ver["name"] == version:
            return ver["schema"]["openAPIV3Schema"]
    raise KeyError(f"version {version} not in CRD {crd['metadata']['name']}")
