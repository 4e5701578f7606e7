"""Validate, prune and default objects against a CRD's structural ``openAPIV3Schema``, as an API server would.

Used by the tests (every example CR and every status we write must validate) and by the
sandbox's API emulator. The schema dialect is OpenAPI v3.0, whose ``exclusiveMinimum`` is a
boolean like JSON Schema draft 4, so draft 4 semantics are the faithful choice here.
``strict=True`` rejects unknown fields (``kubectl``'s default ``--validate=strict``).

Error messages follow kube-apiserver's wording (``Invalid value: 1.5: spec.training.testSize in
body should be less than 1``, ``Unsupported value: "Prod": supported values: ...``,
``Required value``), and each :class:`FieldError` carries the Kubernetes cause type
(``FieldValueInvalid``, ``FieldValueRequired``...), so the emulator can answer 422 like a real
server.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError, best_match

#: The cause type of an unknown (undeclared) field rejected in strict mode.
UNKNOWN_FIELD = "FieldValueUnknown"


@dataclass(frozen=True)
class FieldError:
    """One validation failure.

    Attributes:
        field: dotted path of the offending field (``spec.training.testSize``, ``spec.items[0].name``).
        message: the Kubernetes-style detail (``Invalid value: 1.5: ... should be less than 1``).
        reason: the Kubernetes cause type (``FieldValueInvalid``, ``FieldValueRequired``,
            ``FieldValueNotSupported``, ``FieldValueTooLong``, ``FieldValueTooMany``,
            ``FieldValueTypeInvalid``, ``FieldValueForbidden``, ``FieldValueDuplicate`` or
            :data:`UNKNOWN_FIELD`).
    """

    field: str
    message: str
    reason: str = "FieldValueInvalid"

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


def _join(prefix: str, parts: Any) -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out = f"{out}[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _path(error: ValidationError, prefix: str) -> str:
    field = _join(prefix, error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return _join(field, unknown[:1])
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else ""
        return _join(field, [missing] if missing else [])
    return field


def go_value(value: Any) -> str:
    """Render a JSON value like kube-apiserver's error messages do (Go ``%v``/``%q``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return "null"
    return '"object"' if isinstance(value, dict) else '"array"'


def json_type(value: Any) -> str:
    """The JSON type name of a value (``string``, ``integer``, ``number``, ``boolean``, ``object``...)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "object" if isinstance(value, dict) else "array"


def _describe(error: ValidationError, field: str) -> tuple[str, str]:
    """Return (cause type, message) for a jsonschema error in kube-apiserver's words."""
    kind, arg, value = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    shown = go_value(value)
    if kind in ("anyOf", "oneOf") and error.context:
        # int-or-string and similar: report the alternative whose type matched the value
        same_type = [e for e in error.context if e.validator != "type"]
        return _describe(best_match(same_type or error.context), field)
    if kind == "type":
        got = json_type(value)
        return "FieldValueTypeInvalid", f'Invalid value: "{got}": {field} in body must be of type {arg}: "{got}"'
    if kind == "enum":
        supported = ", ".join(go_value(v) for v in arg)
        return "FieldValueNotSupported", f"Unsupported value: {shown}: supported values: {supported}"
    if kind == "required":
        return "FieldValueRequired", "Required value"
    if kind == "additionalProperties":
        return UNKNOWN_FIELD, f'unknown field "{field}"'
    if kind == "pattern":
        return "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should match '{arg}'"
    if kind == "minimum":
        op = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
        return "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should be {op} {go_value(arg)}"
    if kind == "maximum":
        op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
        return "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should be {op} {go_value(arg)}"
    if kind == "minLength":
        return "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should be at least {arg} chars long"
    if kind == "maxLength":
        return "FieldValueTooLong", f"Too long: may not be more than {arg} bytes"
    if kind in ("maxItems", "maxProperties"):
        what = "items" if kind == "maxItems" else "properties"
        return "FieldValueTooMany", f"Too many: {len(value)}: must have at most {arg} {what}"
    if kind in ("minItems", "minProperties"):
        what = "items" if kind == "minItems" else "properties"
        return "FieldValueInvalid", f"Invalid value: {len(value)}: {field} in body should have at least {arg} {what}"
    if kind == "multipleOf":
        return "FieldValueInvalid", f"Invalid value: {shown}: {field} in body should be a multiple of {go_value(arg)}"
    if kind == "uniqueItems":
        return "FieldValueDuplicate", f"Duplicate value: {shown}"
    return "FieldValueInvalid", f"Invalid value: {shown}: {error.message}"


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
        obj: the object (dict) to check; it is not modified.
        strict: reject fields the schema does not declare (reason :data:`UNKNOWN_FIELD`).
        prefix: dotted path of ``obj`` inside the whole object, used in messages.

    Returns:
        The errors sorted by field path; empty when ``obj`` is valid.
    """
    errors = sorted(validator(schema, strict).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for error in errors:
        field = _path(error, prefix)
        reason, message = _describe(error, field)
        out.append(FieldError(field, message, reason))
    return out


def _is_object_without_fields(schema: dict[str, Any]) -> bool:
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and not isinstance(schema.get("additionalProperties"), dict)
        and not schema.get("x-kubernetes-preserve-unknown-fields")
        and not schema.get("x-kubernetes-embedded-resource")
    )


def prune(schema: dict[str, Any], obj: Any, *, prefix: str = "", root: bool | None = None) -> list[str]:
    """Drop the fields a structural schema does not declare, in place, like kube-apiserver's pruning.

    ``x-kubernetes-preserve-unknown-fields`` keeps unknown fields of a node; ``apiVersion``,
    ``kind`` and ``metadata`` of the root object are never pruned (the server handles them).

    Args:
        schema: the structural schema of ``obj``.
        obj: the JSON value to prune (modified in place).
        prefix: dotted path of ``obj``, used in the returned paths.
        root: whether ``obj`` is a whole object; defaults to ``prefix == ""``.

    Returns:
        The dotted paths of the removed fields, in document order.
    """
    is_root = prefix == "" if root is None else root
    removed: list[str] = []
    if isinstance(obj, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(obj):
            path = _join(prefix, [key])
            if is_root and key in ("apiVersion", "kind", "metadata"):
                continue
            if key in props:
                removed += prune(props[key], obj[key], prefix=path, root=False)
            elif isinstance(extra, dict):
                removed += prune(extra, obj[key], prefix=path, root=False)
            elif keep_unknown or (extra is True) or (not props and not _is_object_without_fields(schema)):
                continue
            else:
                del obj[key]
                removed.append(path)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            removed += prune(schema["items"], item, prefix=f"{prefix}[{i}]", root=False)
    return removed


def apply_defaults(schema: dict[str, Any], obj: Any) -> None:
    """Apply the schema's ``default`` values in place, recursively, like a structural schema does.

    A default is set where its field is absent from an object that is present (a defaulted
    object is then defaulted inside too). ``null`` values of fields that are not ``nullable``
    are dropped first, so that they get their default (Kubernetes does the same).

    Args:
        schema: the structural schema of ``obj``.
        obj: the JSON value to complete (modified in place).
    """
    if isinstance(obj, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        for key, sub in props.items():
            if key in obj and obj[key] is None and not sub.get("nullable"):
                del obj[key]
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if key in props:
                apply_defaults(props[key], value)
            elif isinstance(extra, dict):
                apply_defaults(extra, value)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(schema["items"], item)


def crd_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """Return the ``openAPIV3Schema`` of a CRD (of ``version``, or its storage version).

    Raises:
        KeyError: the CRD has no such version.
    """
    for ver in crd["spec"]["versions"]:
        if (version is None and ver.get("storage")) or ver["name"] == version:
            return ver["schema"]["openAPIV3Schema"]
    raise KeyError(f"version {version} not in CRD {crd['metadata']['name']}")
