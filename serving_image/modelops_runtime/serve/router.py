"""The rollout router of an incumbent's serving pods: shadow copies and canary shares to a candidate.

The operator sets it through ``MODELOPS_ROUTER`` (:class:`~modelops.contract.RouterConfig`) on the
incumbent's Deployment while a new version rolls out (docs/rollout.md). Requests are parsed and
validated by the incumbent first, so a request the incumbent refuses (4xx) never reaches the
candidate, and the candidate sees the request id the incumbent assigned (``X-Request-ID``).

* **shadow**: once the incumbent's response has been sent to the client (a background task of the
  response, :mod:`.app`), a share of the requests (exactly every ``1/sample_rate``-th per pod,
  :class:`Share`) is handed to the shadow sender, a process of its own (:mod:`.shadow`) that sends
  the copies to the candidate and compares its predictions with the incumbent's. The client's
  request never waits for the candidate, and the copy's work runs outside the serving process's
  event loop: handing a copy over is a write to a pipe. Copies beyond what the sender holds
  (``queue_size`` waiting with at most 64 MiB of bodies, ``concurrency`` in flight, 16 MiB in its
  pipe) are dropped (counted); a failing candidate is only counted and logged.
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

The client to the candidate is aiohttp (:mod:`.candidate`); a shadow copy's exchange, reading and
comparison (0.5-0.65 ms of CPU per 1-row copy) run in the sender process, while this process only
writes the copy to a pipe, then counts and logs its outcome (docs/rollout.md, "Cost of shadowing").
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import aiohttp
import numpy as np
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

from . import candidate
from .metrics import LATENCY_BUCKETS, base_name
from .protocol import Prediction, header_safe
from .service import BINARY_HEADER_LENGTH, JSON, LOG_STATUS_ERROR, REQUEST_ID_HEADER, InferJob, InferResult, log_rows
from .shadow import Outcome, ShadowSender

PER_MILLION = 1_000_000


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
        return self.taken(self.calls) > self.taken(self.calls - 1)

    def taken(self, calls: int) -> int:
        """How many of the first ``calls`` calls are in the share."""
        return (calls * self.per_million) // PER_MILLION


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
        self._client: aiohttp.ClientSession | None = None
        self._sender: ShadowSender | None = None
        self._keys = itertools.count()
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
        """Start the shadow sender process (shadow mode) or open the HTTP client (canary mode)."""
        if self.config.mode == "shadow":
            self._sender = ShadowSender(self.config, self._on_outcome)
            await self._sender.start()
        else:
            self._client = candidate.client_session(self.config.timeout_seconds)

    async def stop(self) -> None:
        """Stop the shadow sender (copies in flight are answered and logged, queued ones dropped) or
        close the client."""
        if self._sender is not None:
            await self._sender.stop()
        if self._client is not None:
            await self._client.close()

    # -------------------------------------------------------------------------------- canary

    async def canary(self, job: InferJob, body: bytes, path: str, headers: Any) -> InferResult | None:
        """The candidate's answer for a request in the canary share; None when the incumbent answers
        (not in the share, not in canary mode, or the candidate failed: then logged as its error)."""
        if self.config.mode != "canary" or not self._share.take():
            return None
        assert self._client is not None, "Router.start() was not awaited"
        sent = time.perf_counter()
        response = await candidate.post(self._client, self._base + path, body, self._headers(job, headers, "canary"))
        seconds = time.perf_counter() - sent
        predictions = candidate.answer(response, job.batch.n_rows)
        if predictions is None:
            self.requests.labels("canary", "fallback").inc()
            self._log(job, None, seconds, LOG_STATUS_ERROR)
            return None
        assert response is not None
        self.requests.labels("canary", "answered").inc()
        self.latency.labels("canary").observe(seconds)
        self._log(job, predictions, seconds, LOG_STATUS_OK)
        out_headers = {REQUEST_ID_HEADER: header_safe(job.request_id)}  # the incumbent's id, encoded as its own
        if BINARY_HEADER_LENGTH in response.headers:
            out_headers[BINARY_HEADER_LENGTH] = response.headers[BINARY_HEADER_LENGTH]
        media_type = response.headers.get("content-type", JSON)
        return InferResult(response.content, media_type, out_headers, Prediction(predictions), seconds, forwarded=True)

    # -------------------------------------------------------------------------------- shadow

    def copies(self, result: InferResult) -> bool:
        """Whether a request the incumbent answered is copied to the candidate: shadow mode and in the
        share. Advances the share: call it once per answered request. The server attaches a
        background task (:meth:`shadow`) only to the requests it returns True for, so the others
        cost nothing more than this call."""
        return self._sender is not None and not result.forwarded and self._share.take()

    async def shadow(self, job: InferJob, body: bytes, path: str, headers: Any, result: InferResult) -> None:
        """Hand a copy of an answered request (one :meth:`copies` took) to the shadow sender.

        Called once the response was sent (a Starlette background task, :mod:`.app`). Never
        blocks and never raises: a copy the sender cannot take is dropped (``outcome="dropped"``).
        """
        if self._sender is None:
            return
        key = next(self._keys)
        headers = self._headers(job, headers, "shadow")
        if not self._sender.send(key, path, headers, body, result.prediction.predict, context=job):
            self.requests.labels("shadow", "dropped").inc()

    def _on_outcome(self, outcome: Outcome) -> None:
        """Count and log what became of a shadow copy (the sender's report, :mod:`.shadow`)."""
        if outcome.dropped:
            self.requests.labels("shadow", "dropped").inc()
            return
        if outcome.predictions is None:
            self.requests.labels("shadow", "failed").inc()
        else:
            self.requests.labels("shadow", "sent").inc()
            self.latency.labels("shadow").observe(outcome.seconds)
            self.rows.labels("agree").inc(outcome.agree)
            self.rows.labels("disagree").inc(outcome.disagree)
        status = LOG_STATUS_ERROR if outcome.predictions is None else LOG_STATUS_OK
        self._log(outcome.context, outcome.predictions, outcome.seconds, status)

    # --------------------------------------------------------------------------------- common

    def _headers(self, job: InferJob, headers: Any, route: str) -> dict[str, str]:
        """The headers sent to the candidate: the client's forwarded ones, the request id (percent-encoded
        as in the incumbent's response when it is no header value, :func:`.protocol.header_safe`), the route."""
        return {**candidate.forwarded(headers), REQUEST_ID_HEADER: header_safe(job.request_id), HEADER_ROUTED: route}

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
