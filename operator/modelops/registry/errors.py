"""Exceptions of the registry library and the translation of MLflow's errors into them.

MLflow reports almost everything as :class:`mlflow.exceptions.MlflowException`; callers need to
tell three cases apart, because the operator reacts differently to each:

* the tracking server cannot be reached (connection refused, timeout, 5xx after the client's
  retries) → :class:`RegistryUnavailable`: retry later, nothing is wrong with the resource;
* the object does not exist (``RESOURCE_DOES_NOT_EXIST``) → :func:`is_not_found` is true;
  most operations here turn that into ``None`` or "already done";
* anything else (bad argument, permission) → the original ``MlflowException`` propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from mlflow.exceptions import MlflowException


class RegistryError(Exception):
    """Base class of the registry library's own errors."""


class RegistryUnavailable(RegistryError):
    """The MLflow tracking/registry server could not be reached; the call may succeed later.

    ``__cause__`` holds the original exception (an ``MlflowException`` or a ``requests`` error).
    """


class ModelOwnedElsewhere(RegistryError):
    """A registered model name is owned by another Kubernetes namespace (tag ``modelops.namespace``)."""

    def __init__(self, model: str, owner: str, namespace: str) -> None:
        super().__init__(
            f"registered model {model!r} belongs to namespace {owner!r}; namespace {namespace!r} cannot use it"
        )
        self.model = model
        self.owner = owner
        self.namespace = namespace


class LoggedModelNotFound(RegistryError):
    """A run has no logged model (``mlflow.<flavor>.log_model``) that could be registered."""


class ModelVersionNotFound(RegistryError, LookupError):
    """A requested model version (by number, alias or semantic version) does not exist."""


class UntrustedModel(RegistryError):
    """A logged model cannot be loaded safely (not skops, or it needs types outside the trusted set)."""


#: MLflow error codes meaning "no such object".
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"})
#: MLflow error codes meaning "the server is in trouble", worth a retry.
_UNAVAILABLE_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "SERVICE_UNDER_MAINTENANCE", "REQUEST_LIMIT_EXCEEDED"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception followed by its ``__cause__``/``__context__`` chain (cycle-safe)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_not_found(exc: BaseException) -> bool:
    """True when ``exc`` is an ``MlflowException`` saying the object does not exist.

    A missing registered-model alias is reported by MLflow's SQL store as
    ``INVALID_PARAMETER_VALUE: Registered model alias <a> not found``; that counts as not found too.
    """
    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code in _NOT_FOUND_CODES:
        return True
    message = str(exc.message).lower()
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in message and "not found" in message


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) means the server is unreachable or overloaded.

    MLflow's REST client wraps ``requests`` errors as ``MlflowException("API request to <url> failed
    with exception ...")`` after its own retries, keeping the original only as ``__context__``.
    """
    for item in _chain(exc):
        if isinstance(item, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        if isinstance(item, MlflowException):
            if item.error_code in _UNAVAILABLE_CODES:
                return True
            text = str(item.message)
            if text.startswith("API request to") and "failed with" in text:
                return True
    return False


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Re-raise connection failures inside the block as :class:`RegistryUnavailable` (``what`` names the call).

    Every other exception passes through unchanged.
    """
    try:
        yield
    except (MlflowException, requests.exceptions.RequestException) as exc:
        if is_unavailable(exc):
            raise RegistryUnavailable(f"MLflow unreachable during {what}: {_first_line(exc)}") from exc
        raise


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``str(exc)``, cut to ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
