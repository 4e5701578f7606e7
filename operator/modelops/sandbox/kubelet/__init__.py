"""The sandbox's local kubelet: pods as local processes, and Service forwarders.

As a node of the real control plane (``--node``, see :mod:`.node`) it registers the Node ``sandbox``,
runs the Pods the scheduler binds to it, serves their logs to ``kubectl logs`` (:mod:`.logs`) and
forwards Services to their EndpointSlices; the controllers are kube-controller-manager's.

With the API emulator, one asyncio process watches it (list + watch per resource) and also plays
the controllers:

* :mod:`.jobs` — a Job's pod as a local process, retries, deadline, status;
* :mod:`.cronjobs` — Jobs from CronJobs on schedule and on demand;
* :mod:`.deployments` — replicas on free local ports, probes, restarts, rolling updates;
* :mod:`.services` — a local TCP forwarder per Service port over the ready replicas.

Run it as ``python -m modelops.sandbox.kubelet --api URL --state-dir DIR`` (emulator) or
``--kubeconfig FILE --node --state-dir DIR`` (real control plane); it prints ``READY``
on stdout once its caches are synced and stops every process it started on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import CRONJOBS, DEPLOYMENTS, ENDPOINTSLICES, JOBS, PODS, SERVICES, AsyncApi, Connection
from .common import KubeletConfig, KubeletContext
from .cronjobs import CronJobController
from .deployments import DeploymentController
from .images import ImageResolver, parse_image_option
from .informer import Informer
from .jobs import JobController
from .pods import PodMirror
from .services import ServiceController, slice_backends

__all__ = ["Kubelet", "KubeletConfig", "main"]

log = logging.getLogger("modelops.sandbox.kubelet")


class Kubelet:
    """All controllers over one API connection; :meth:`run` until :meth:`stop` (or a crash)."""

    def __init__(self, config: KubeletConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (safe to call from a signal handler)."""
        self._stop.set()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run until stopped; every pod process is stopped before returning.

        ``on_ready`` is called once all caches are synced. Raises whatever a controller loop
        raised (a bug), after the same cleanup.
        """
        api = AsyncApi(self._connection())
        ctx = KubeletContext(api, self.config, ImageResolver(self.config.images),
                             PodMirror(api, self.config.mirror_pods and not self.config.node))
        if self.config.node:
            informers, controllers, shutdowns = await self._node_parts(ctx)
        else:
            informers, controllers, shutdowns = self._emulator_parts(ctx)
        tasks = [asyncio.create_task(i.run(), name=f"informer {n}") for n, i in informers.items()]
        tasks += [asyncio.create_task(coro, name=name) for name, coro in controllers.items()]
        stop_waiter = asyncio.create_task(self._stop.wait())
        try:
            synced: asyncio.Future[Any] = asyncio.gather(*(i.synced.wait() for i in informers.values()))
            waiters: set[asyncio.Future[Any]] = {synced, stop_waiter, *tasks}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if synced.done() and on_ready is not None:
                on_ready()
            waiters = {stop_waiter, *tasks}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stop_waiter}:
                task.result()  # re-raise a crashed controller
        finally:
            for task in [*tasks, stop_waiter]:
                task.cancel()
            synced.cancel()
            await asyncio.gather(*tasks, stop_waiter, return_exceptions=True)
            await asyncio.gather(*(shutdown() for shutdown in shutdowns))
            await api.aclose()

    def _connection(self) -> str | Connection:
        if self.config.kubeconfig is not None:
            from ..kubeconfig import read_connection

            return read_connection(self.config.kubeconfig)
        return self.config.api_url

    def _emulator_parts(self, ctx: KubeletContext) -> tuple[dict[str, Informer], dict[str, Any], list[Any]]:
        """Informers, controller loops and shutdown hooks when the kubelet plays the controllers."""
        informers = {res.plural: Informer(ctx.api, res) for res in (JOBS, CRONJOBS, DEPLOYMENTS, SERVICES)}
        jobs = JobController(ctx, informers["jobs"])
        deployments = DeploymentController(ctx, informers["deployments"])

        def backends(namespace: str, service: str, port: Any) -> list[tuple[str, int]]:
            svc = informers["services"].get(namespace, service) or {}
            selector = (svc.get("spec") or {}).get("selector") or {}
            return [("127.0.0.1", p) for p in deployments.endpoints(namespace, selector)]

        services = ServiceController(ctx, informers["services"], backends)
        cronjobs = CronJobController(ctx, informers["cronjobs"], informers["jobs"])
        controllers = {"jobs": jobs.run(), "deployments": deployments.run(), "services": services.run(),
                       "cronjobs": cronjobs.run()}
        return informers, controllers, [jobs.shutdown, deployments.shutdown, services.shutdown]

    async def _node_parts(self, ctx: KubeletContext) -> tuple[dict[str, Informer], dict[str, Any], list[Any]]:
        """Informers, loops and shutdown hooks of a node of the real control plane."""
        from ..controlplane.binaries import release
        from .logs import LogServer
        from .node import NodeAgent

        cfg = self.config
        informers = {
            "pods": Informer(ctx.api, PODS, field_selector=f"spec.nodeName={cfg.node_name}"),
            "services": Informer(ctx.api, SERVICES),
            "endpointslices": Informer(ctx.api, ENDPOINTSLICES),
        }
        logs = LogServer(cfg.state_dir, cfg.log_port)
        await logs.start()
        node = NodeAgent(ctx, informers["pods"], cfg.node_name, logs.port, release() or "v0.0.0")
        services = ServiceController(ctx, informers["services"], slice_backends(informers["endpointslices"]))
        controllers = {"node": node.run(), "services": services.run()}
        return informers, controllers, [node.shutdown, services.shutdown, logs.stop]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m modelops.sandbox.kubelet", description=__doc__.splitlines()[0])
    p.add_argument("--api", default=None, help="API emulator URL, e.g. http://127.0.0.1:6443")
    p.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig of the real control plane")
    p.add_argument("--node", action="store_true", help="be a node of the real control plane (see kubelet.node)")
    p.add_argument("--node-name", default="sandbox", help="Node name (default sandbox)")
    p.add_argument("--log-port", type=int, default=0, help="port of the kubectl-logs endpoint (0: free port)")
    p.add_argument("--state-dir", required=True, type=Path, help="sandbox state directory")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="REPOSITORY=ENTRYPOINT",
        help="map an image repository to a local entrypoint (repeatable)",
    )
    p.add_argument("--job-backoff", type=float, default=1.0, help="first Job retry delay, s (doubles)")
    p.add_argument("--crash-backoff-max", type=float, default=30.0, help="max container restart delay, s")
    p.add_argument("--probe-period-max", type=float, default=2.0, help="cap on probe periodSeconds, s")
    p.add_argument("--grace-max", type=float, default=5.0, help="cap on terminationGracePeriodSeconds, s")
    p.add_argument("--no-mirror-pods", action="store_true", help="do not create Pod objects in the API")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (0 on a clean stop)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.api and not args.kubeconfig:
        parser.error("one of --api or --kubeconfig is required")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    images = dict(parse_image_option(opt) for opt in args.image)
    config = KubeletConfig(
        api_url=args.api or "",
        kubeconfig=args.kubeconfig,
        node=args.node,
        node_name=args.node_name,
        log_port=args.log_port,
        state_dir=args.state_dir.resolve(),
        images=images,
        job_backoff_base=args.job_backoff,
        crash_backoff_max=args.crash_backoff_max,
        probe_period_max=args.probe_period_max,
        grace_max=args.grace_max,
        mirror_pods=not args.no_mirror_pods,
    )
    kubelet = Kubelet(config)

    def ready() -> None:
        print("READY", flush=True)
        log.info("kubelet ready (api %s, state %s)", config.api_url, config.state_dir)

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, kubelet.stop)
        await kubelet.run(ready)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run())
    log.info("kubelet stopped")
    return 0
