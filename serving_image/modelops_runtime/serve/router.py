"""The rollout router of an incumbent's serving pods: shadow copies and canary shares to a candidate.

The operator sets it through ``MODELOPS_ROUTER`` (:class:`~modelops.contract.RouterConfig`) on the
incumbent's Deployment while a new version rolls out (docs/rollout.md). Requests are parsed and
validated by the incumbent first, so a request the incumbent refuses (4xx) never reaches the
candidate, and the candidate sees the request id the incumbent assigned (``X-Request-ID``).

* **shadow**: once the incumbent's response has been sent to the client (a background task of the
  response, :mod:`.app`), a share of the requests (exactly every ``1/sample_rate``-th per pod,
  :class:`Share`) is put on a bounded queue; a few sender tasks send them to the candidate. The
  client's request never waits for the candidate, nor for the sender's work on the event loop: a
  full queue drops the copy (counted), a failing candidate is only counted and logged.
* **canary**: ``weight`` percent of the requests (exactly, :class:`Share`) are sent to the
  candidate on the request path and its answer is returned. When the candidate fails (transport
  error, timeout, any non-2xx status) the incumbent answers instead, so clients never see a
  candidate's fault; the failure is logged as a candidate error.

Every candidate answer, or failure, is appended to the candidate's partition of the prediction
log (``<model>/<stage>-candidate/``: the marker) with the request's id, features, the candidate's
predictions, the round-trip latency and ``status`` ``ok``/``error``; the operator's analysis
joins it with the incumbent's rows by request id. Metrics (same registry as the server's):

* ``modelops_router_requests_total{route, outcome}``: shadow ``sent``/``failed``/``dropped``,
  canary ``answered``/``fallback``;
* ``modelops_router_candidate_latency_seconds{route}``: candidate round trips that answered;
* ``modelops_router_shadow_rows_total{result}``: shadowed rows whose predictions ``agree``/``disagree``
  (rows the candidate answered without readable predictions, binary tensor data, are neither).

The operator's rollout analysis reads these from each pod's ``/metrics`` (docs/rollout.md).

The client to the candidate is aiohttp: its CPU per 1-row request is about a quarter of httpx's
(measured here: 0.25 vs 0.9-1.1 ms), and a whole copy (exchange, parsing, counters, log rows) costs
the incumbent's process 0.5-0.65 ms against 1.3-1.45 ms with httpx (docs/rollout.md, "Cost of
shadowing"); at ``sampleRate: 1`` that CPU is spent once per request the incumbent answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from modelops.contract import (
    HEADER_ROUTED,
    LOG_STATUS_OK,
    PROM_ROUTER_LATENCY,
    PROM_ROUTER_REQUESTS,
    PROM_ROUTER_SHADOW_ROWS,
    RouterConfig,
)
from modelops.monitoring.prediction_log import PredictionLogger

from .metrics import LATENCY_BUCKETS, base_name
from .protocol import OUTPUT_PREDICT, Prediction
from .service import BINARY_HEADER_LENGTH, JSON, LOG_STATUS_ERROR, REQUEST_ID_HEADER, InferJob, InferResult, log_rows

log = logging.getLogger(__name__)

#: Headers copied from the client's request to the candidate (the body is sent decompressed).
FORWARDED_HEADERS = ("content-type", BINARY_HEADER_LENGTH)
PER_MILLION = 1_000_000
#: Idle connections to the candidate are closed after this (s): below the model server's own
#: keep-alive (``keep_alive_seconds``, 5 s by default), so a copy is never sent on a connection the
#: candidate is closing at that moment.
KEEPALIVE_SECONDS = 4.0
#: Connections to the candidate at most (copies in flight are at most ``concurrency``; canary
#: requests are as many as the clients' concurrent requests in the share).
MAX_CONNECTIONS = 100


class Share:
    """An exact share of a sequence of requests: :meth:`take` is True for ``rate`` of the calls.

    Call *n* (from 1) is taken when ``floor(n*r) > floor((n-1)*r)`` with ``r`` in millionths, so
    any 100 consecutive calls at 10 % take exactly 10 (spread evenly, no randomness). Not
    thread-safe; the router runs on the event loop only.
    """

    def __init__(self, rate: float) -> None:
        self.per_million = round(rate * PER_MILLION)
        self.calls = 0

    def take(self) -> bool:
        """Count one call; whether it is in the share."""
        self.calls += 1
        return (self.calls * self.per_million) // PER_MILLION > ((self.calls - 1) * self.per_million) // PER_MILLION


@dataclass
class _Reply:
    """A candidate's answer: status, headers (case-insensitive) and body."""

    status: int
    headers: Any
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class _Copy:
    job: InferJob
    body: bytes
    path: str
    headers: dict[str, str]
    incumbent: np.ndarray


class Router:
    """Routes a share of the infer requests of one serving pod to a rollout candidate.

    Args:
        config: the router setting.
        registry: the server's Prometheus registry (the router's metrics join it).
        logger: the candidate partition's prediction logger, or None when the log is off.
    """

    def __init__(self, config: RouterConfig, registry: CollectorRegistry, logger: PredictionLogger | None) -> None:
        self.config = config
        self.logger = logger
        self._base = config.url.rstrip("/")
        rate = config.sample_rate if config.mode == "shadow" else config.weight / 100
        self._share = Share(rate)
        self._queue: asyncio.Queue[_Copy] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: aiohttp.ClientSession | None = None
        self.requests = Counter(
            base_name(PROM_ROUTER_REQUESTS),
            "Requests the rollout router sent to the candidate, by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            PROM_ROUTER_LATENCY,
            "Round-trip time of candidate answers through the rollout router, s.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            base_name(PROM_ROUTER_SHADOW_ROWS),
            "Shadowed rows whose candidate prediction agrees with the incumbent's.",
            ["result"],
            registry=registry,
        )
        for outcome in ("sent", "failed", "dropped"):
            self.requests.labels("shadow", outcome)
        for outcome in ("answered", "fallback"):
            self.requests.labels("canary", outcome)
        for result in ("agree", "disagree"):
            self.rows.labels(result)

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the HTTP client and start the shadow senders (on the server's event loop)."""
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
            skip_auto_headers=("Content-Type",),  # forwarded from the client, or absent as the client sent it
        )
        if self.config.mode == "shadow":
            self._queue = asyncio.Queue(self.config.queue_size)
            self._tasks = [asyncio.create_task(self._sender()) for _ in range(self.config.concurrency)]

    async def stop(self) -> None:
        """Stop the senders (copies still queued are dropped) and close the client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.close()

    # -------------------------------------------------------------------------------- canary

    async def canary(self, job: InferJob, body: bytes, path: str, headers: Any) -> InferResult | None:
        """The candidate's answer for a request in the canary share; None when the incumbent answers
        (not in the share, not in canary mode, or the candidate failed: then logged as its error)."""
        if self.config.mode != "canary" or not self._share.take():
            return None
        sent = time.perf_counter()
        response = await self._send(job, body, path, headers, "canary")
        seconds = time.perf_counter() - sent
        predictions = _answer(response, job.batch.n_rows)
        if predictions is None:
            self.requests.labels("canary", "fallback").inc()
            self._log(job, None, seconds, LOG_STATUS_ERROR)
            return None
        assert response is not None
        self.requests.labels("canary", "answered").inc()
        self.latency.labels("canary").observe(seconds)
        self._log(job, predictions, seconds, LOG_STATUS_OK)
        out_headers = {REQUEST_ID_HEADER: response.headers.get(REQUEST_ID_HEADER, "")}
        if BINARY_HEADER_LENGTH in response.headers:
            out_headers[BINARY_HEADER_LENGTH] = response.headers[BINARY_HEADER_LENGTH]
        media_type = response.headers.get("content-type", JSON)
        return InferResult(response.content, media_type, out_headers, Prediction(predictions), seconds, forwarded=True)

    # -------------------------------------------------------------------------------- shadow

    def shadows(self) -> bool:
        """Whether this router copies requests (shadow mode)."""
        return self.config.mode == "shadow"

    async def shadow(self, job: InferJob, body: bytes, path: str, headers: Any, result: InferResult) -> None:
        """Queue a copy of an answered request for the candidate when it is in the shadow share.

        Called once the response was sent (a Starlette background task, :mod:`.app`). Never
        blocks and never raises: a full queue drops the copy (``outcome="dropped"``).
        """
        if self._queue is None or result.forwarded or not self._share.take():
            return
        copy = _Copy(job, body, path, _forwarded(headers), result.prediction.predict)
        try:
            self._queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.requests.labels("shadow", "dropped").inc()

    async def _sender(self) -> None:
        assert self._queue is not None
        while True:
            copy = await self._queue.get()
            try:
                await self._shadow_one(copy)
            except Exception:  # a sender task must survive any one copy; the copy is counted as failed
                log.exception("shadow copy of request %s failed", copy.job.request_id)
                self.requests.labels("shadow", "failed").inc()

    async def _shadow_one(self, copy: _Copy) -> None:
        sent = time.perf_counter()
        response = await self._send(copy.job, copy.body, copy.path, copy.headers, "shadow")
        seconds = time.perf_counter() - sent
        predictions = _answer(response, copy.job.batch.n_rows)
        if predictions is None:
            self.requests.labels("shadow", "failed").inc()
            self._log(copy.job, None, seconds, LOG_STATUS_ERROR)
            return
        self.requests.labels("shadow", "sent").inc()
        self.latency.labels("shadow").observe(seconds)
        # Rows the candidate answered without readable predictions (binary tensor data) are not compared.
        readable = np.array([v is not None for v in predictions.tolist()], dtype=bool)
        agree = int(np.sum(_as_text(predictions[readable]) == _as_text(copy.incumbent[readable])))
        self.rows.labels("agree").inc(agree)
        self.rows.labels("disagree").inc(int(readable.sum()) - agree)
        self._log(copy.job, predictions, seconds, LOG_STATUS_OK)

    # --------------------------------------------------------------------------------- common

    async def _send(self, job: InferJob, body: bytes, path: str, headers: Any, route: str) -> _Reply | None:
        """POST the request to the candidate; None on a transport error or timeout (``timeout_seconds``
        for the whole exchange)."""
        assert self._client is not None, "Router.start() was not awaited"
        sent_headers = {**_forwarded(headers), REQUEST_ID_HEADER: job.request_id, HEADER_ROUTED: route}
        try:
            async with self._client.post(self._base + path, data=body, headers=sent_headers) as response:
                return _Reply(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__  # a timeout has no message
            log.warning("candidate %s did not answer request %s: %s", self.config.url, job.request_id, reason)
            return None

    def _log(self, job: InferJob, predictions: np.ndarray | None, seconds: float, status: str) -> None:
        if self.logger is None:
            return
        if predictions is None:
            predictions = np.full(job.batch.n_rows, None, dtype=object)
        log_rows(
            self.logger,
            job,
            self.config.version,
            self.config.registry_version,
            Prediction(predictions),
            seconds * 1000.0,
            status,
        )


def _forwarded(headers: Any) -> dict[str, str]:
    return {k: v for k in FORWARDED_HEADERS if (v := headers.get(k)) is not None}


def _as_text(values: np.ndarray) -> np.ndarray:
    """Predictions as strings, so that 1, 1.0 and "1" from JSON compare equal to numpy's labels."""
    return np.array([_label(v) for v in values.tolist()], dtype=object)


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _answer(response: _Reply | None, n_rows: int) -> np.ndarray | None:
    """The ``(n_rows,)`` predictions of a candidate's answer, None when it failed (no answer, a
    non-2xx status). A 2xx answer without readable predictions (binary tensor data, no ``predict``
    output) gives ``None`` values: answered, but not comparable."""
    if response is None or not response.ok:
        return None
    values = _predictions(response.content, n_rows)
    return np.full(n_rows, None, dtype=object) if values is None else values


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
