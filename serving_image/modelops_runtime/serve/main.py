"""``modelops-runtime serve``: the model server's entry point.

Reads :class:`~modelops.contract.ServeConfig` from ``MODELOPS_JOB_CONFIG``; ``MODELOPS_PORT``
overrides its port (the sandbox kubelet sets it per replica), ``--port`` overrides both. The
prediction log goes to ``config.prediction_log_uri``, else ``PREDICTION_LOG_URI``, else nowhere.
The server answers liveness at once, loads the model in the background and becomes ready after
a warm-up prediction. One uvicorn worker; SIGTERM drains requests, then the prediction log is
flushed, then uvicorn re-raises the signal (the process ends by SIGTERM, status 143, as any
uvicorn app). Exit codes otherwise: 2 for an invalid config or limit setting, 1 when the server
cannot start. Request limits: :class:`~.limits.ServeLimits` (``MODELOPS_SERVE_*``, flags win).

A model the server refuses (scikit-learn version mismatch, untrusted types, no signature, an
unreadable MLmodel file, …; see :class:`~.model.IncompatibleModel`) can never be served by this
pod, and restarting cannot help: the server stays up, live and not ready (no crash loop).
``/v2/health/ready`` answers 503 with the refusal (:func:`modelops.contract.not_ready_body`:
``reason`` and ``refusal`` = ``<reason>: <message>``), infer requests 503 with the reason, and
``/metrics`` works. The operator reads the refusal from the not-ready pod into the ModelVersion's
``Serving`` condition (the Deployment's old pods keep serving: maxUnavailable 0). The same line is
written as the Kubernetes termination message, so a stopped pod's container status still shows it.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from modelops.contract import (
    ENV_HOST,
    ENV_JOB_CONFIG,
    ENV_PORT,
    ENV_PREDICTION_LOG_URI,
    ENV_ROUTER,
    EXIT_INVALID_INPUT,
    RouterConfig,
    ServeConfig,
    candidate_log_stage,
    refusal_message,
)

from ..jobrun import termination_message
from .limits import INLINE_MAX_ROWS, ServeLimits

if TYPE_CHECKING:
    import socket

    from starlette.applications import Starlette

    from modelops.monitoring.prediction_log import PredictionLogger

    from .model import ModelLoader
    from .service import InferenceService
    from .workers import Worker

log = logging.getLogger("modelops_runtime.serve")


@dataclass
class Server:
    """An assembled server: the ASGI app and the parts tests and ``main`` need to reach."""

    app: Starlette
    service: InferenceService
    loader: ModelLoader
    logger: PredictionLogger | None


def build_server(
    config: ServeConfig,
    *,
    prediction_log_uri: str | None = None,
    inline_max_rows: int = INLINE_MAX_ROWS,
    limits: ServeLimits | None = None,
    worker: Worker | None = None,
    router: RouterConfig | None = None,
) -> Server:
    """Assemble the server for ``config`` (nothing starts until the app's lifespan starts).

    Args:
        prediction_log_uri: where to log predictions; None = off.
        inline_max_rows: see :mod:`.app`.
        limits: request limits (defaults and ``MODELOPS_SERVE_*`` when None).
        worker: this process's place in a multi-worker pod (:mod:`.workers`); None: the only process.
        router: the rollout router setting (``MODELOPS_ROUTER``), if any; its candidate's answers
            go to the candidate partition of the same prediction log.
    """
    # The model stack is imported here, not at the top: the supervisor of a multi-worker pod runs
    # this module's main() without it (about 300 MiB and seconds of imports).
    from modelops.monitoring.prediction_log import PredictionLogger

    from .app import create_app
    from .batching import Batcher
    from .metrics import ServerMetrics
    from .model import LoadedModel, ModelLoader, ModelState, load_served_model
    from .router import Router
    from .service import InferenceService

    metrics = ServerMetrics(
        config.model,
        config.version,
        prediction_log=bool(prediction_log_uri),
        batching=config.batching is not None,
        multiprocess_dir=worker.metrics_dir if worker is not None else None,
    )

    def prediction_logger(stage: str) -> PredictionLogger | None:
        if not prediction_log_uri:
            return None
        return PredictionLogger(
            prediction_log_uri,
            config.model,
            stage,
            pod=worker.log_writer(_pod_name()) if worker is not None else None,
            flush_rows=config.log_flush_rows,
            flush_seconds=config.log_flush_seconds,
            on_rows=metrics.count_log_rows,
        )

    logger = prediction_logger(config.stage)
    candidate_logger = prediction_logger(candidate_log_stage(config.stage)) if router is not None else None
    if worker is not None:
        from .podstate import WorkerState

        state: ModelState = WorkerState(config.model_uri, worker)
    else:
        state = ModelState(config.model_uri)
    service = InferenceService(config, state, metrics, logger, limits or ServeLimits())

    def on_ready(loaded: LoadedModel) -> None:
        service.on_loaded(loaded)
        # MLflow, pandas and scikit-learn leave ~350k long-lived objects; a full collection over
        # them takes ~190 ms here, a p99 disaster. Freeze them out of the collector's view: later
        # collections only scan what requests allocate.
        gc.collect()
        gc.freeze()

    load = functools.partial(load_served_model, framework_match=config.framework_version_match)
    loader = ModelLoader(state, load=load, on_ready=on_ready)

    def shutdown() -> None:
        loader.stop()
        if logger is not None:
            logger.close()
            log.info(
                "prediction log closed: %d rows written, %d dropped",
                logger.stats.rows_written,
                logger.stats.rows_dropped,
            )
        if candidate_logger is not None:
            candidate_logger.close()

    batcher = Batcher(service, config.batching) if config.batching is not None else None
    app = create_app(
        service,
        on_startup=loader.start,
        on_shutdown=shutdown,
        inline_max_rows=inline_max_rows,
        batcher=batcher,
        router=Router(router, metrics.registry, candidate_logger) if router is not None else None,
    )
    return Server(app, service, loader, logger)


def _pod_name() -> str:
    import socket

    from modelops.contract import ENV_POD_NAME

    return os.environ.get(ENV_POD_NAME) or socket.gethostname()


@dataclass(frozen=True)
class ServeOptions:
    """The serve command's settings, resolved from the config, the environment and the flags.

    ``workers``: server processes (the flag wins over ``config.workers``); ``router``: the rollout
    router setting (``MODELOPS_ROUTER``), None when unset.
    """

    config: ServeConfig
    host: str
    port: int
    prediction_log_uri: str | None
    limits: ServeLimits
    inline_max_rows: int = INLINE_MAX_ROWS
    access_log: bool = False
    log_level: str = "info"
    workers: int = 1
    router: RouterConfig | None = None


def configure_logging(level: str, process: str | None = None) -> None:
    """Log to stderr at ``level``; ``process`` (e.g. ``worker 1``) prefixes each line of a worker."""
    prefix = f"[{process}] " if process else ""
    logging.basicConfig(
        level=level.upper(), format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s", stream=sys.stderr
    )


def main(args: list[str]) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit code."""
    options = parse_options(args)
    if isinstance(options, int):
        return options
    log.info(
        "serving %s (version %s, stage %s) on %s:%d; prediction log: %s; limits: %s; workers: %d; batching: %s;"
        " router: %s",
        options.config.model_uri,
        options.config.version,
        options.config.stage,
        options.host,
        options.port,
        options.prediction_log_uri or "off",
        options.limits.model_dump(),
        options.workers,
        options.config.batching.model_dump() if options.config.batching else "off",
        options.router.model_dump() if options.router is not None else "off",
    )
    if options.workers > 1:
        from .workers import supervise

        return supervise(options)
    return serve(options)


def parse_options(args: list[str]) -> ServeOptions | int:
    """The command line, ``MODELOPS_JOB_CONFIG`` and the environment as :class:`ServeOptions`, or an
    exit code (2) after printing why they are invalid. Configures logging."""
    parser = argparse.ArgumentParser(prog="modelops-runtime serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get(ENV_HOST) or "0.0.0.0",
                        help=f"address to bind (default ${ENV_HOST}, else 0.0.0.0)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default ${ENV_PORT}, else the config's)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--inline-max-rows",
        type=int,
        default=INLINE_MAX_ROWS,
        help=f"requests with more rows are predicted in a worker thread (default {INLINE_MAX_ROWS})",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="server processes sharing the port (default: the config's, else 1)"
    )
    limit_flags = {
        "max_body_bytes": int,
        "max_rows": int,
        "max_header_bytes": int,
        "request_timeout_seconds": float,
        "keep_alive_seconds": int,
    }
    for name, kind in limit_flags.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"{ServeLimits.model_fields[name].description} (default ${_env_name(name)}, else "
            f"{ServeLimits.model_fields[name].default})",
        )
    ns = parser.parse_args(args)
    configure_logging(ns.log_level)
    raw = os.environ.get(ENV_JOB_CONFIG)
    if not raw:
        print(f"serve: {ENV_JOB_CONFIG} is not set", file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        config = ServeConfig.from_env(raw)
    except ValidationError as exc:
        print(f"serve: invalid {ENV_JOB_CONFIG}: {exc}".replace("\n", "; "), file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        router = RouterConfig.from_env(os.environ[ENV_ROUTER]) if os.environ.get(ENV_ROUTER) else None
    except ValidationError as exc:
        print(f"serve: invalid {ENV_ROUTER}: {exc}".replace("\n", "; "), file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        limits = ServeLimits(**{k: v for k in limit_flags if (v := getattr(ns, k)) is not None})
    except ValidationError as exc:
        print(f"serve: invalid limits: {exc}".replace("\n", "; "), file=sys.stderr)
        return EXIT_INVALID_INPUT
    port = ns.port
    if port is None:
        env_port = os.environ.get(ENV_PORT)
        if env_port:
            try:
                port = int(env_port)
            except ValueError:
                print(f"serve: {ENV_PORT}={env_port!r} is not a port number", file=sys.stderr)
                return EXIT_INVALID_INPUT
        else:
            port = config.port
    workers = ns.workers if ns.workers is not None else config.workers
    if workers < 1:
        print(f"serve: --workers must be at least 1, not {workers}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    return ServeOptions(
        config=config,
        host=ns.host,
        port=port,
        prediction_log_uri=config.prediction_log_uri or os.environ.get(ENV_PREDICTION_LOG_URI) or None,
        limits=limits,
        inline_max_rows=ns.inline_max_rows,
        access_log=ns.access_log,
        log_level=ns.log_level,
        workers=workers,
        router=router,
    )


def serve(options: ServeOptions, *, sockets: list[socket.socket] | None = None, worker: Worker | None = None) -> int:
    """Run one server process until SIGTERM/SIGINT (on ``sockets`` when given); returns the exit code.

    A ``worker`` with ``preload`` loads its model before uvicorn starts accepting connections.
    """
    import uvicorn

    from .httpserver import uvicorn_config
    from .model import IncompatibleModel

    server = build_server(
        options.config,
        prediction_log_uri=options.prediction_log_uri,
        inline_max_rows=options.inline_max_rows,
        limits=options.limits,
        worker=worker,
        router=options.router,
    )
    uv_config = uvicorn_config(
        server.app,
        options.limits,
        host=options.host,
        port=options.port,
        access_log=options.access_log,
        log_config=None,
        log_level=options.log_level.lower(),
        timeout_graceful_shutdown=20,
    )
    uvicorn_server = uvicorn.Server(uv_config)
    refused: list[IncompatibleModel] = []

    def on_refused(exc: IncompatibleModel) -> None:
        # From the loader thread. The server keeps running, not ready, with the refusal on its
        # readiness endpoint; the termination message shows it once the container stops.
        refused.append(exc)
        termination_message(refusal_message(exc.reason, str(exc)))

    server.loader.on_refused = on_refused
    if worker is not None and worker.preload:
        server.loader.run()
        if refused:  # its siblings serve this model: a replacement that refuses it ends the pod
            return EXIT_INVALID_INPUT
        if server.loader.state.loaded is None:
            return 1  # the loader crashed (logged); the supervisor replaces this worker
    uvicorn_server.run(sockets=sockets)
    return 0


def _env_name(field: str) -> str:
    return f"{ServeLimits.model_config.get('env_prefix', '')}{field}".upper()
