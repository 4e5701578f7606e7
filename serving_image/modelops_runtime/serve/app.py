"""The ASGI app: Starlette routes that hand bodies to :class:`~.service.InferenceService`.

This module only moves bytes between HTTP and the service, and maps errors to responses: a
:class:`~.errors.ServeError` becomes its status with the protocol's error body (V2:
``{"error": ...}``; MLflow: ``{"error_code": ..., "message": ...}``); any other exception is a
server fault, answered 500 and counted as ``error_type="internal"``.

Where predict runs: a request of at most ``inline_max_rows`` rows is parsed, predicted and
encoded inline on the event loop; larger ones are predicted in Starlette's worker threads. A
small scikit-learn predict is dominated by Python-level validation that holds the GIL, so a thread
adds only a hand-off each way: measured here (docs/serving.md), 1-row requests with one connection
did 651 req/s inline vs 414 via a thread (p99 8.8 vs 11.1 ms), and were even with 4 connections.
A 100-row predict spends long enough in numpy code that releases the GIL for the event loop to
parse the next request meanwhile: with 4 connections a thread did 386 req/s vs 236 inline (p99
33 vs 49 ms; better in 8 of 8 paired rounds), with one connection 223 vs 240. Big batches in a
thread also keep health probes from waiting behind them. Hence the default threshold of 32 rows.
Bodies above ``INLINE_PARSE_MAX_BYTES`` (1 MiB) are also parsed and checked in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from modelops.contract import not_ready_body

from .batching import Batcher
from .errors import InternalError, NotReady, ServeError, mlflow_body, v2_body
from .limits import INLINE_MAX_ROWS, INLINE_PARSE_MAX_BYTES, read_body
from .metrics import METRICS_CONTENT_TYPE
from .router import Router
from .service import BINARY_HEADER_LENGTH, JSON, REQUEST_ID_HEADER, InferenceService, InferJob, InferResult

log = logging.getLogger(__name__)

#: ``error_type`` of infer requests whose client went away before sending the whole body (no response).
DISCONNECTED = "client_disconnected"

Handler = Callable[[Request], Awaitable[Response]]


class _Slot:
    """The parsed request of an infer call, kept for the error boundary (fault rows in the log)."""

    job: InferJob | None = None
    body: bytes = b""


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def create_app(
    service: InferenceService,
    *,
    on_startup: Callable[[], None] | None = None,
    on_shutdown: Callable[[], None] | None = None,
    inline_max_rows: int = INLINE_MAX_ROWS,
    batcher: Batcher | None = None,
    router: Router | None = None,
) -> Starlette:
    """Build the app.

    Args:
        service: the inference service.
        on_startup: called when the server starts (starts the model loader).
        on_shutdown: called on shutdown, e.g. after SIGTERM (flushes the prediction log).
        inline_max_rows: see the module docstring.
        batcher: adaptive batching (:mod:`.batching`) of the requests it accepts; None: off.
        router: the rollout router (shadow copies, canary shares), if the operator set one.
    """

    max_body = service.limits.max_body_bytes

    async def predict(request: Request, slot: _Slot) -> InferResult:
        job = slot.job
        assert job is not None
        if router is not None and (answer := await router.canary(job, slot.body, request.url.path, request.headers)):
            return answer
        if batcher is not None and batcher.accepts(job):
            return await batcher.submit(job)
        if job.batch.n_rows <= inline_max_rows:
            return service.run(job)
        return await run_in_threadpool(service.run, job)

    async def body_of(request: Request) -> bytes:
        headers = request.headers
        return await read_body(
            request.stream(), headers.get("content-length"), headers.get("content-encoding"), max_body
        )

    def boundary(
        render: Callable[[ServeError], bytes], handle: Callable[[Request, _Slot], Awaitable[InferResult]]
    ) -> Handler:
        """Wrap an infer handler: map errors to responses and count them in ml_prediction_errors_total.

        A request is counted (and logged) as predicted only once its response is built, so metrics
        and the prediction log agree with what the client receives. A shadow router gets a request
        in its share in a background task of the response, which Starlette runs after the
        response's last byte was handed to the server: nothing of the copy runs before the client's
        answer is written (the other requests get no background task).
        """

        async def endpoint(request: Request) -> Response:
            slot = _Slot()
            try:
                result = await handle(request, slot)
                response = Response(result.body, media_type=result.media_type, headers=result.headers)
            except ServeError as exc:
                service.metrics.error(exc.error_type)
                return _json(render(exc), exc.status)
            except ClientDisconnect:  # nobody is left to answer (also after a 408 from the protocol)
                service.metrics.error(DISCONNECTED)
                return Response(status_code=400)
            except Exception:  # the request boundary: anything else is a server fault → 500 (logged, counted)
                log.exception("server fault while handling %s %s", request.method, request.url.path)
                service.metrics.error(InternalError.error_type)
                service.record_fault(slot.job)
                return _json(render(InternalError("internal server error; see the server log")), 500)
            assert slot.job is not None
            if not result.forwarded:
                service.commit(slot.job, result)
            if router is not None and router.copies(result):
                response.background = BackgroundTask(
                    router.shadow, slot.job, slot.body, request.url.path, request.headers, result
                )
            return response

        return endpoint

    def plain(render: Callable[[ServeError], bytes], handle: Callable[[Request], Awaitable[bytes]]) -> Handler:
        """Wrap a non-infer handler: map errors to responses (not counted as prediction errors)."""

        async def endpoint(request: Request) -> Response:
            try:
                return _json(await handle(request))
            except ServeError as exc:
                return _json(render(exc), exc.status)
            except ClientDisconnect:
                return Response(status_code=400)

        return endpoint

    # ------------------------------------------------------------------------------- V2

    async def parsed(body: bytes, prepare: Callable[..., InferJob], *args: Any) -> InferJob:
        """``prepare(*args)``: inline for a small body, in a worker thread above
        ``INLINE_PARSE_MAX_BYTES`` (parsing many elements holds the loop for seconds otherwise)."""
        if len(body) <= INLINE_PARSE_MAX_BYTES:
            return prepare(*args)
        return await run_in_threadpool(prepare, *args)

    async def v2_infer(request: Request, slot: _Slot) -> InferResult:
        slot.body = body = await body_of(request)
        p, headers = request.path_params, request.headers
        slot.job = await parsed(
            body,
            service.prepare_v2,
            p["name"],
            p.get("version"),
            body,
            headers.get(REQUEST_ID_HEADER),
            headers.get(BINARY_HEADER_LENGTH),
        )
        return await predict(request, slot)

    async def live(request: Request) -> Response:
        if service.state.live:
            return _json(b'{"live":true}')
        return _json(orjson.dumps({"live": False, "error": service.state.reason}), 503)

    async def ready(request: Request) -> Response:
        state = service.state
        if state.ready:
            return _json(b'{"ready":true}')
        refusal = (state.refusal.reason, str(state.refusal)) if state.refusal is not None else None
        return _json(orjson.dumps(not_ready_body(state.reason, refusal)), 503)

    async def model_ready(request: Request) -> bytes:
        p = request.path_params
        service.model_or_raise(p["name"], p.get("version"))
        return orjson.dumps({"name": p["name"], "ready": True})

    async def server_metadata(request: Request) -> bytes:
        return service.server_metadata()

    async def model_metadata(request: Request) -> bytes:
        p = request.path_params
        return service.model_metadata(p["name"], p.get("version"))

    async def feedback(request: Request) -> bytes:
        return service.feedback(request.path_params.get("name"), await body_of(request))

    # --------------------------------------------------------------------------- MLflow

    async def invocations(request: Request, slot: _Slot) -> InferResult:
        slot.body = body = await body_of(request)
        headers = request.headers
        slot.job = await parsed(
            body, service.prepare_invocations, body, headers.get("content-type"), headers.get(REQUEST_ID_HEADER)
        )
        return await predict(request, slot)

    async def ping(request: Request) -> Response:
        if service.state.ready:
            return _json(b"\n")
        return _json(mlflow_body(_not_ready(service)), 503)

    async def version(request: Request) -> Response:
        return Response(service.mlflow_version(), media_type=JSON)

    async def metrics(request: Request) -> Response:
        return Response(service.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", plain(v2_body, server_metadata)),
        Route("/v2/models/{name}", plain(v2_body, model_metadata)),
        Route("/v2/models/{name}/versions/{version}", plain(v2_body, model_metadata)),
        Route("/v2/models/{name}/ready", plain(v2_body, model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", plain(v2_body, model_ready)),
        Route("/v2/models/{name}/infer", boundary(v2_body, v2_infer), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", boundary(v2_body, v2_infer), methods=["POST"]),
        Route("/v2/models/{name}/feedback", plain(v2_body, feedback), methods=["POST"]),
        Route("/feedback", plain(v2_body, feedback), methods=["POST"]),
        Route("/invocations", boundary(mlflow_body, invocations), methods=["POST"]),
        Route("/ping", ping),
        Route("/health", ping),
        Route("/version", version),
        Route("/metrics", metrics),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        if router is not None:
            await router.start()
        try:
            yield
        finally:
            if router is not None:
                await router.stop()
            if on_shutdown is not None:
                await run_in_threadpool(on_shutdown)

    return Starlette(routes=routes, lifespan=lifespan)


def _not_ready(service: InferenceService) -> ServeError:
    return NotReady(f"model '{service.config.model}' is not ready: {service.state.reason}")
