"""Start the operator: load settings once, register handlers, run kopf."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf
from aiohttp import web

from . import handlers
from .clients.kube import KubeClient
from .clients.mlflow import Registry
from .leader import LeaderElector, run_as_leader
from .reconcile.context import Context
from .settings import Settings
from .telemetry import OperatorMetrics

log = logging.getLogger(__name__)


def _post_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message[:1024])


class QuietTimerSuccess(logging.Filter):
    """Drop kopf's per-firing "Timer '…' succeeded." lines of every timer of ours (handlers.TIMERS:
    one per ModelVersion or ModelMonitor per interval, thousands an hour that say nothing);
    failures and every other handler's lines stay."""

    QUIET = frozenset(f"Timer '{timer}' succeeded." for timer in handlers.TIMERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.getMessage() in self.QUIET)


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    """A kopf registry with our handlers and the start-up/clean-up hooks bound to ``settings``."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    # A custom registry has none of kopf's default login handlers: use the official client's
    # loader (in-cluster service account, else KUBECONFIG), the same one clients/kube.py uses.
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        ours: Settings = memo.settings
        handlers.configure(settings, ours)
        memo.metrics = OperatorMetrics()
        memo.metrics.serve(ours.metrics_port)
        memo.ctx = Context(
            settings=ours,
            kube=KubeClient(),
            registry=Registry(ours.mlflow_tracking_uri),
            post_event=_post_event,
            metrics=memo.metrics,
        )
        log.info("modelops operator started: MLflow %s, runtime image %s", ours.mlflow_tracking_uri, ours.runtime_image)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx: Context | None = getattr(memo, "ctx", None)
        if ctx is not None:
            ctx.kube.close()
            ctx.registry.close()

    return registry


def run(settings: Settings | None = None, *, liveness: bool = True) -> None:
    """Run the operator until it is stopped (blocking), as the elected leader of its replicas.

    The process stands by (serving ``/healthz``) until it holds the Lease (see leader.py), then
    runs kopf. Losing the Lease ends the process at once (exit code 1, before a standby may take
    over): no handler of a former leader acts next to the new one.

    Args:
        settings: operator settings; loaded from ``MODELOPS_*`` env vars when None.
        liveness: serve the liveness probe at ``/healthz`` on settings.health_port.
    """
    settings = settings or Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").addFilter(QuietTimerSuccess())
    if not asyncio.run(_elected(settings, liveness)):
        _exit_lost()


def _exit_lost() -> None:
    """End the process at once with exit code 1 (leadership lost).

    Called inside the event loop: ``asyncio.run``'s teardown would first wait for every thread of
    the default executor, and a handler thread blocked in a call (e.g. to an apiserver that is
    restarting) kept a former leader alive, doing nothing and never restarted.
    """
    log.error("leadership lost: exiting so that only the new leader acts")
    logging.shutdown()
    os._exit(1)  # handlers still running must not write next to the new leader


async def _elected(settings: Settings, liveness: bool) -> bool:
    """Stand by, then run kopf as the leader; False when the Lease was lost."""
    port = settings.health_port if liveness else 0
    kube = KubeClient()
    elector = LeaderElector.from_settings(kube, settings)
    standby = await _serve_standby_health(port)

    async def operate(stop: asyncio.Event) -> None:
        await standby.cleanup()  # kopf serves /healthz from here on
        await kopf.operator(
            registry=build_registry(settings),
            standalone=True,  # one active replica: the Lease decides which (no kopf peering)
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port else None,
            memo=kopf.Memo(settings=settings),
            stop_flag=stop,
        )

    try:
        led = await run_as_leader(elector, operate)
    finally:
        await standby.cleanup()
        kube.close()
    if not led:
        _exit_lost()
    return led


async def _serve_standby_health(port: int) -> web.AppRunner:
    """Answer ``/healthz`` with 200 while standing by (a standby is alive, just not active)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    if port:
        await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
