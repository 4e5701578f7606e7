"""The exchange with a rollout candidate's Service: one HTTP request, and the predictions of its answer.

Shared by the router's canary path (:mod:`.router`, in the serving process) and the shadow sender
(:mod:`.shadow`, a process of its own). Imports aiohttp, numpy and orjson only, so that the sender
process stays small (about 55 MiB resident, against 250 MiB for a serving process).

The client is aiohttp: its CPU per 1-row request is about a quarter of httpx's (measured here:
0.25 vs 0.9-1.1 ms against the same server; docs/rollout.md, "Cost of shadowing").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson

from .wire import BINARY_HEADER_LENGTH, OUTPUT_PREDICT, REQUEST_ID_HEADER

log = logging.getLogger(__name__)

#: Headers copied from the client's request to the candidate (the body is sent decompressed).
FORWARDED_HEADERS = ("content-type", BINARY_HEADER_LENGTH)
#: Idle connections to the candidate are closed after this (s): below the model server's own
#: keep-alive (``keep_alive_seconds``, 5 s by default), so a request is never sent on a connection
#: the candidate is closing at that moment.
KEEPALIVE_SECONDS = 4.0
#: Connections to the candidate at most (shadow copies in flight are at most ``concurrency``; canary
#: requests are as many as the clients' concurrent requests in the share).
MAX_CONNECTIONS = 100


@dataclass
class Reply:
    """A candidate's answer: status, headers (case-insensitive) and body."""

    status: int
    headers: Any
    content: bytes

    @property
    def ok(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300


def client_session(timeout_seconds: float) -> aiohttp.ClientSession:
    """An HTTP client for the candidate: ``timeout_seconds`` for a whole exchange, pooled connections
    closed after :data:`KEEPALIVE_SECONDS` idle. Call from a running event loop; close it when done."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS),
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        skip_auto_headers=("Content-Type",),  # forwarded from the client, or absent as the client sent it
    )


async def post(client: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> Reply | None:
    """POST ``body`` to ``url``; None on a transport error or a timeout (logged as a warning)."""
    try:
        async with client.post(url, data=body, headers=headers) as response:
            return Reply(response.status, response.headers, await response.read())
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__  # a timeout has no message
        log.warning("candidate %s did not answer request %s: %s", url, headers.get(REQUEST_ID_HEADER, "?"), reason)
        return None


def forwarded(headers: Any) -> dict[str, str]:
    """The client's headers that go to the candidate (:data:`FORWARDED_HEADERS`), from any mapping."""
    return {k: v for k in FORWARDED_HEADERS if (v := headers.get(k)) is not None}


def answer(response: Reply | None, n_rows: int) -> np.ndarray | None:
    """The ``(n_rows,)`` predictions of a candidate's answer, None when it failed (no answer, a
    non-2xx status). A 2xx answer without readable predictions (binary tensor data, no ``predict``
    output) gives ``None`` values: answered, but not comparable."""
    if response is None or not response.ok:
        return None
    values = _predictions(response.content, n_rows)
    return np.full(n_rows, None, dtype=object) if values is None else values


def agreement(candidate: np.ndarray, incumbent: np.ndarray) -> tuple[int, int]:
    """``(agree, disagree)``: rows where the candidate's prediction equals the incumbent's, and
    where it does not, over the rows the candidate answered readably (``None`` values are neither).
    Predictions are compared as text, so 1, 1.0 and "1" from JSON equal numpy's label 1."""
    readable = np.array([v is not None for v in candidate.tolist()], dtype=bool)
    agree = int(np.sum(_as_text(candidate[readable]) == _as_text(incumbent[readable])))
    return agree, int(readable.sum()) - agree


def _as_text(values: np.ndarray) -> np.ndarray:
    return np.array([_label(v) for v in values.tolist()], dtype=object)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _predictions(content: bytes, n_rows: int) -> np.ndarray | None:
    """The predictions of a V2 (``predict`` output) or MLflow (``predictions``) JSON answer."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    values: Any = None
    if isinstance(body, dict) and isinstance(body.get("outputs"), list):
        values = next((o.get("data") for o in body["outputs"] if o.get("name") == OUTPUT_PREDICT), None)
    elif isinstance(body, dict):
        values = body.get("predictions")
    elif isinstance(body, list):
        values = body
    if not isinstance(values, list) or len(values) != n_rows:
        return None
    if values and isinstance(values[0], dict):  # MLflow records of a multi-output model
        return None
    return np.array(values, dtype=object)
