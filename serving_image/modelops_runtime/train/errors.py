"""Errors of the training runtime (shared with the other batch commands, see modelops_runtime.jobrun)."""

from __future__ import annotations

from ..jobrun import InvalidInput

__all__ = ["DatasetUnavailable", "InvalidInput"]


class DatasetUnavailable(Exception):
    """The dataset's storage could not be reached (connection refused, timeout, 5xx): a failure worth
    a retry (the job exits 1 and the Job runs another pod), unlike :class:`InvalidInput` (exit 2).

    fsspec's HTTP filesystem reports an unreachable server as ``FileNotFoundError`` too (with the
    connection error as its context), so the chain of causes decides (see ``data.unreachable``).
    The message names the URI and the error's class, never the data.
    """
