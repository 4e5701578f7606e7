"""Kubernetes API errors as kube-apiserver reports them: an HTTP status and a ``v1.Status`` body."""

from __future__ import annotations

from typing import Any

import attrs
import kmock

from ...api.openapi import FieldError


@attrs.frozen
class ApiError(kmock.KubernetesError):
    """An API failure rendered as a ``kind: Status`` body (see :meth:`to_status`).

    Attributes (inherited): ``status`` (HTTP code), ``reason`` (``NotFound``, ``AlreadyExists``,
    ``Conflict``, ``Invalid``, ``BadRequest``...), ``message`` and ``details`` (name, group,
    kind, causes).
    """

    def to_status(self) -> dict[str, Any]:
        """The ``v1.Status`` JSON body of this error."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message or "",
            "reason": self.reason or "",
            "details": self.details or {},
            "code": self.status,
        }


def _details(group: str, kind: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"group": group, "kind": kind} if group else {"kind": kind}
    if name is not None:
        details = {"name": name, **details}
    return details


def qualified(plural: str, group: str) -> str:
    """``modelversions.ml.smarthr360.io`` (or just ``pods`` for the core group)."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    """404 for a missing object: ``modelversions.ml.smarthr360.io "x" not found``."""
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found', _details(group, plural, name))


def no_route(message: str = "the server could not find the requested resource") -> ApiError:
    """404 for an unknown URL or resource."""
    return ApiError(404, "NotFound", message, {})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists on a duplicate create."""
    return ApiError(
        409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists', _details(group, plural, name)
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    """409 Conflict on a stale resourceVersion or a failed precondition."""
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    message = f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(group, plural, name))


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid naming every field, worded like kube-apiserver.

    The message reads ``ModelVersion.ml.smarthr360.io "x" is invalid: spec.a: ...`` (several
    errors are bracketed and comma-separated); ``details.causes`` lists ``reason``, ``message``
    and ``field`` for each error.
    """
    what = f"{kind}.{group}" if group else kind
    text = ", ".join(str(e) for e in errors)
    body = text if len(errors) == 1 else f"[{text}]"
    details = _details(group, kind, name)
    details["causes"] = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors]
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {body}', details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message, {})


def forbidden(message: str) -> ApiError:
    """403 Forbidden (e.g. creating in a terminating namespace)."""
    return ApiError(403, "Forbidden", message, {})


def method_not_allowed(method: str) -> ApiError:
    """405 MethodNotAllowed for a verb the resource does not support."""
    message = f"the server does not allow this method on the requested resource ({method})"
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(content_type: str) -> ApiError:
    """415 UnsupportedMediaType for a patch type the resource does not accept."""
    accepted = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
    message = f"the body of the request was in an unknown format - accepted media types include: {accepted}"
    return ApiError(415, "UnsupportedMediaType", f"{message} (got {content_type!r})", {})


def protobuf_unsupported(content_type: str) -> ApiError:
    """415 for a protobuf body: the emulator speaks JSON only (a difference from a real server)."""
    message = (
        "the sandbox API emulator speaks JSON only: use `kubectl apply -f` or `kubectl create -f` with a "
        f"manifest instead of an imperative kubectl command (got {content_type!r})"
    )
    return ApiError(415, "UnsupportedMediaType", message, {})


def expired(requested: int, oldest: int) -> ApiError:
    """410 Expired: a watch asked for a resourceVersion older than the kept history."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})", {})
