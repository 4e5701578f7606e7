"""Leader election through a ``coordination.k8s.io/v1`` Lease: one replica acts, the others stand by.

The protocol is client-go's ``leaderelection`` (what kube-controller-manager and
controller-runtime use):

* a candidate takes the Lease when it does not exist, is released (no holder), or was not renewed
  for ``leaseDurationSeconds`` *as observed by the candidate's own clock* (it remembers when it
  last saw the record change, so clock skew between hosts does not matter);
* every write carries the ``resourceVersion`` it read, so of two candidates only one wins;
* the leader renews every ``retry`` seconds and gives up when it could not renew for
  ``renew_deadline`` seconds, which is shorter than the lease duration: it has stopped acting
  before any standby may take over, so two operators never act at once;
* on a clean shutdown the leader releases the Lease (no holder), so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .clients.kube import LEASES, Conflict, KubeClient, KubeError
from .settings import Settings

log = logging.getLogger(__name__)

#: Where a pod finds its own namespace.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_identity() -> str:
    """``<host>_<pid>_<random>``: unique per process (the host is the pod name in a cluster)."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(settings: Settings) -> str:
    """The Lease's namespace: the setting, else the pod's own namespace, else ``default``."""
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    """Acquire, renew and release one Lease for ``identity`` (durations in seconds).

    ``clock`` is a monotonic clock (seconds), injectable for tests.
    """

    kube: KubeClient
    namespace: str
    name: str
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _observed: tuple[Any, ...] | None = None
    _observed_at: float = 0.0
    _renewed_at: float | None = None

    @classmethod
    def from_settings(cls, kube: KubeClient, settings: Settings) -> LeaderElector:
        """An elector for the operator's Lease as configured (``MODELOPS_LEASE_*``)."""
        return cls(
            kube,
            lease_namespace(settings),
            settings.lease_name,
            lease_duration=settings.lease_duration_seconds,
            renew_deadline=settings.lease_renew_deadline_seconds,
            retry=settings.lease_retry_seconds,
        )

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this identity holds the Lease afterwards.

        Raises clients.kube.KubeError for API failures other than a lost race (409).
        """
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        now = self.clock()
        spec = dict((lease or {}).get("spec") or {})
        holder = spec.get("holderIdentity") or None
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder not in (None, self.identity) and now - self._observed_at < duration:
            return False  # held by another identity that renewed within its lease duration
        stamp = _micro_time()
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if holder == self.identity else stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1),
        }
        try:
            if lease is None:
                new_spec["leaseTransitions"] = 0
                body = {
                    "apiVersion": LEASES.api_version,
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": new_spec,
                }
                await self.kube.create(LEASES, self.namespace, body)
            else:
                patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": new_spec}
                await self.kube.patch(LEASES, self.namespace, self.name, patch)
        except Conflict:
            return False  # another candidate wrote first
        if holder != self.identity:
            log.info("leader election: %s took Lease %s/%s (was %s)", self.identity, self.namespace, self.name, holder)
        self._renewed_at = self.clock()
        return True

    async def acquire(self) -> None:
        """Wait (standing by) until this identity holds the Lease. API errors are retried."""
        announced = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except KubeError as exc:
                log.warning("leader election: cannot read or write Lease %s/%s: %s", self.namespace, self.name, exc)
            if not announced:
                log.info(
                    "leader election: standing by, Lease %s/%s is held by %s",
                    self.namespace,
                    self.name,
                    self._observed[0] if self._observed else "?",
                )
                announced = True
            await asyncio.sleep(self.retry)

    async def hold(self) -> None:
        """Renew every ``retry`` seconds; return when renewal failed for ``renew_deadline`` seconds
        (leadership lost: the caller must stop acting at once)."""
        while True:
            await asyncio.sleep(self.retry)
            try:
                renewed = await self.try_acquire_or_renew()
            except KubeError as exc:
                log.warning("leader election: renewal failed: %s", exc)
                renewed = False
            if not renewed and self.clock() - (self._renewed_at or 0.0) >= self.renew_deadline:
                log.error(
                    "leader election: Lease %s/%s not renewed for %.0f s",
                    self.namespace,
                    self.name,
                    self.renew_deadline,
                )
                return

    async def release(self) -> None:
        """Give the Lease up (clean shutdown) so a standby takes over without waiting for expiry."""
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        patch = {
            "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
            "spec": {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro_time()},
        }
        try:
            await self.kube.patch(LEASES, self.namespace, self.name, patch)
        except KubeError as exc:  # the standby then waits for the lease to expire
            log.warning("leader election: release failed: %s", exc)


async def run_as_leader(elector: LeaderElector, work: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> bool:
    """Stand by until elected, then run ``work(stop)`` while renewing the Lease.

    Returns True when ``work`` ended by itself (the Lease is released), False when leadership was
    lost (``stop`` is set; the caller must exit without acting further).
    """
    await elector.acquire()
    stop = asyncio.Event()
    holder = asyncio.create_task(elector.hold())
    worker = asyncio.create_task(work(stop))
    done, _ = await asyncio.wait({holder, worker}, return_when=asyncio.FIRST_COMPLETED)
    if holder in done:
        stop.set()
        return False
    holder.cancel()
    try:
        await worker
    finally:
        await elector.release()
    return True
