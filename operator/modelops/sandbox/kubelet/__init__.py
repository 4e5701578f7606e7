"""The sandbox's local kubelet: runs Jobs, CronJobs, Deployments and Services as local processes.

One asyncio process watches the API emulator (list + watch per resource) and runs:

* :mod:`.jobs` — a Job's pod as a local process, retries, deadline, status;
* :mod:`.cronjobs` — Jobs from CronJobs on schedule and on demand;
* :mod:`.deployments` — replicas on free local ports, probes, restarts, rolling updates;
* :mod:`.services` — a local TCP forwarder per Service port over the ready replicas.

Run it as ``python -m modelops.sandbox.kubelet --api URL --state-dir DIR``; it prints ``READY``
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

from ..client import CRONJOBS, DEPLOYMENTS, JOBS, SERVICES, AsyncApi
from .common import KubeletConfig, KubeletContext
from .cronjobs import CronJobController
from .deployments import DeploymentController
from .images import ImageResolver, parse_image_option
from .informer import Informer
from .jobs import JobController
from .pods import PodMirror
from .services import ServiceController

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
        api = AsyncApi(self.config.api_url)
        ctx = KubeletContext(
            api, self.config, ImageResolver(self.config.images), PodMirror(api, self.config.mirror_pods)
        )
        informers = {res.plural: Informer(api, res) for res in (JOBS, CRONJOBS, DEPLOYMENTS, SERVICES)}
        jobs = JobController(ctx, informers["jobs"])
        deployments = DeploymentController(ctx, informers["deployments"])
        services = ServiceController(ctx, informers["services"], deployments.endpoints)
        cronjobs = CronJobController(ctx, informers["cronjobs"], informers["jobs"])
        tasks = [asyncio.create_task(i.run(), name=f"informer {n}") for n, i in informers.items()]
        tasks += [
            asyncio.create_task(jobs.run(), name="jobs"),
            asyncio.create_task(deployments.run(), name="deployments"),
            asyncio.create_task(services.run(), name="services"),
            asyncio.create_task(cronjobs.run(), name="cronjobs"),
        ]
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
            await asyncio.gather(jobs.shutdown(), deployments.shutdown(), services.shutdown())
            await api.aclose()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m modelops.sandbox.kubelet", description=__doc__.splitlines()[0])
    p.add_argument("--api", required=True, help="API server URL, e.g. http://127.0.0.1:6443")
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
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    images = dict(parse_image_option(opt) for opt in args.image)
    config = KubeletConfig(
        api_url=args.api,
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
