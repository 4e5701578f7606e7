"""Start the operator: load settings once, register handlers, run kopf."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import handlers
from .clients.kube import KubeClient
from .clients.mlflow import Registry
from .reconcile.context import Context
from .settings import Settings
from .telemetry import OperatorMetrics

log = logging.getLogger(__name__)


def _post_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(dict(body), type=type_, reason=reason, message=message[:1024])


class QuietTimerSuccess(logging.Filter):
    """Drop kopf's per-firing "Timer 'resync…' succeeded." lines (one per ModelVersion per interval:
    thousands an hour that say nothing); failures and every other handler's lines stay."""

    QUIET = frozenset(f"Timer '{timer}' succeeded." for timer in handlers.RESYNC_TIMERS)

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


def run(
    settings: Settings | None = None, *, standalone: bool = True, peering: str | None = None, liveness: bool = True
) -> None:
    """Run the operator until it is stopped (blocking).

    Args:
        settings: operator settings; loaded from ``MODELOPS_*`` env vars when None.
        standalone: no peering (one replica); set False with ``peering`` for several replicas.
        peering: kopf peering object name when not standalone.
        liveness: serve kopf's liveness probe at ``/healthz`` on settings.health_port.
    """
    settings = settings or Settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").addFilter(QuietTimerSuccess())
    registry = build_registry(settings)
    endpoint = f"http://0.0.0.0:{settings.health_port}/healthz" if liveness and settings.health_port else None
    kopf.run(
        registry=registry,
        standalone=standalone and peering is None,
        peering_name=peering,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=endpoint,
        memo=kopf.Memo(settings=settings),
    )
