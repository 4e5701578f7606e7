"""Errors of the model server and their HTTP mapping, in one place.

Every problem the server can report is a :class:`ServeError` subclass carrying its HTTP status
and a short ``error_type`` (the ``error_type`` label of ``ml_prediction_errors_total``; a small,
fixed set so the label's cardinality stays bounded). The protocol and model code raise these; the
web layer turns them into a response with :func:`v2_body` (KServe-style ``{"error": ...}``) or
:func:`mlflow_body` (MLflow's ``{"error_code": ..., "message": ...}``). Any other exception that
reaches the request boundary is a server fault: :class:`InternalError`, HTTP 500.
"""

from __future__ import annotations

import orjson


class ServeError(Exception):
    """Base of all errors the server reports to a client.

    Attributes:
        status: HTTP status code of the response.
        error_type: value of the ``error_type`` metric label.
        mlflow_code: MLflow ``error_code`` used on ``/invocations``.
    """

    status = 500
    error_type = "internal"
    mlflow_code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(ServeError):
    """The request is invalid (HTTP 400). Subclasses name the kind of problem."""

    status = 400
    error_type = "invalid_input"
    mlflow_code = "BAD_REQUEST"


class MalformedBody(InputError):
    """The body is not valid JSON/CSV or does not have the protocol's structure."""

    error_type = "malformed_request"


class ShapeError(InputError):
    """A tensor's shape does not match its data, or inputs have different row counts."""

    error_type = "wrong_shape"


class UnknownColumn(InputError):
    """The input names a column that the model's signature does not have."""

    error_type = "unknown_column"


class MissingColumn(InputError):
    """A column the model's signature requires is absent."""

    error_type = "missing_column"


class DatatypeError(InputError):
    """A value cannot be converted safely to the column's (or tensor's) datatype."""

    error_type = "wrong_datatype"


class RejectedByModel(InputError):
    """The estimator itself rejected the input (a ``ValueError``/``TypeError`` from predict)."""

    error_type = "rejected_by_model"


class UnsupportedMediaType(ServeError):
    """The Content-Type is not one the endpoint accepts (HTTP 415)."""

    status = 415
    error_type = "unsupported_media_type"
    mlflow_code = "BAD_REQUEST"


class TooLarge(ServeError):
    """The request exceeds a configured limit: body bytes (also after decompression) or rows (HTTP 413)."""

    status = 413
    error_type = "too_large"
    mlflow_code = "BAD_REQUEST"


class NotFound(ServeError):
    """Unknown model name or version in the URL (HTTP 404)."""

    status = 404
    error_type = "not_found"
    mlflow_code = "RESOURCE_DOES_NOT_EXIST"


class NotReady(ServeError):
    """The model is not loaded (yet, or it was refused); the message says why (HTTP 503)."""

    status = 503
    error_type = "not_ready"
    mlflow_code = "TEMPORARILY_UNAVAILABLE"


class InternalError(ServeError):
    """A server fault (HTTP 500): an unexpected exception in the server or the model."""

    status = 500
    error_type = "internal"
    mlflow_code = "INTERNAL_ERROR"


def error_types() -> dict[str, int]:
    """Every ``error_type`` the server reports, with its HTTP status (read from the ServeError classes).

    The metrics pre-create one error series per type (at 0), and the alert rules tell server faults
    (5xx) from client errors (4xx) by it.
    """
    found: dict[str, int] = {}
    pending: list[type[ServeError]] = [ServeError]
    while pending:
        cls = pending.pop()
        found[cls.error_type] = cls.status
        pending.extend(cls.__subclasses__())
    return found


def v2_body(error: ServeError) -> bytes:
    """JSON body of an Open Inference Protocol (V2) error, as KServe writes it: ``{"error": msg}``."""
    return orjson.dumps({"error": error.message})


def mlflow_body(error: ServeError) -> bytes:
    """JSON body of an MLflow scoring-server error: ``{"error_code": code, "message": msg}``."""
    return orjson.dumps({"error_code": error.mlflow_code, "message": error.message})
