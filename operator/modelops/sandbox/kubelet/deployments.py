"""Deployment controller: replicas as local processes, probes, restarts and rolling updates.

Each replica is one process on its own free local port (env ``MODELOPS_PORT``). Pod templates
are told apart by :func:`~.common.template_hash`; a template change rolls replicas like a
Deployment with two ReplicaSets: the RollingUpdate arithmetic of Kubernetes (``maxSurge``,
``maxUnavailable``, ints or percentages, defaults 25 %) decides how many new replicas may start
and how many old ones may stop, so with ``maxSurge: 1, maxUnavailable: 0`` a new process starts,
becomes ready, then an old one stops, one by one; a new template that never becomes ready leaves
the old replicas serving. ``Recreate`` stops all old replicas first. Crashed processes restart
with a (compressed) exponential backoff, reported as CrashLoopBackOff with the previous run's exit
code and termination message in ``lastState.terminated``.

Status: ``observedGeneration``, ``replicas``, ``updatedReplicas``, ``readyReplicas``,
``availableReplicas``, ``unavailableReplicas`` and the conditions ``Available``
(MinimumReplicasAvailable / MinimumReplicasUnavailable), ``Progressing`` (NewReplicaSetAvailable,
ReplicaSetUpdated, ProgressDeadlineExceeded) and ``ReplicaFailure`` (ErrImagePull,
CreateContainerConfigError, ... when a new replica cannot start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from ...contract import ENV_PORT
from .. import procs
from ..client import DEPLOYMENTS, matches_labels
from .common import KubeletContext, ObjectGone, condition, strip_times, template_hash, write_status
from .informer import Informer, Key
from .pods import (
    LocalPod,
    Owner,
    PodSetupError,
    ProcessHandle,
    build_launch,
    container_status,
    exit_reason,
    grace_seconds,
    now_iso,
    pod_status,
    random_suffix,
    termination_message,
)
from .probes import ProbeLoop, supervise

log = logging.getLogger("modelops.sandbox.kubelet")

LABEL_TEMPLATE_HASH = "pod-template-hash"
#: Waiting reasons that make the Deployment report ReplicaFailure.
FAILURE_REASONS = {"ErrImagePull", "CreateContainerConfigError", "FailedMount", "SandboxUnsupported", "StartError"}


def _scaled(value: Any, desired: int, default: str, round_up: bool) -> int:
    """An int-or-percent field of a rolling update, resolved against ``desired``."""
    raw = default if value is None else value
    if isinstance(raw, str) and raw.endswith("%"):
        fraction = float(raw[:-1]) / 100 * desired
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(raw)


def rolling_parameters(spec: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) of a Deployment spec; both zero becomes surge 1 like Kubernetes."""
    rolling = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    surge = _scaled(rolling.get("maxSurge"), desired, "25%", round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable"), desired, "25%", round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


class Replica:
    """One Deployment replica: a local pod whose process is restarted when it dies."""

    def __init__(self, runner: DeploymentRunner, pod: LocalPod, thash: str) -> None:
        self.runner = runner
        self.ctx = runner.ctx
        self.pod = pod
        self.hash = thash
        self.port = procs.free_port()
        pod.port = self.port
        self.ready = False
        self.ready_since: float | None = None
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.restarts = 0
        self.stopping = False
        self.handle: ProcessHandle | None = None
        self.started_iso = now_iso()
        self.task: asyncio.Task[None] | None = None
        self.last_terminated: dict[str, Any] | None = None

    @property
    def container(self) -> Mapping[str, Any]:
        """The pod's (single) app container."""
        containers = self.pod.spec.get("containers") or [{}]
        return dict(containers[0])

    def available(self, min_ready: float) -> bool:
        """Ready for at least ``min_ready`` seconds (minReadySeconds)."""
        return self.ready and self.ready_since is not None and time.time() - self.ready_since >= min_ready

    def start(self) -> None:
        """Start the replica's lifecycle task."""
        self.task = asyncio.create_task(self._main(), name=f"replica {self.pod.namespace}/{self.pod.name}")

    async def stop(self) -> None:
        """Stop serving at once, then terminate the process (grace capped) and delete the mirror pod."""
        self.stopping = True
        self._set_ready(False)
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.handle is not None:
            await self.handle.stop(grace_seconds(self.pod.spec, self.ctx.config.grace_max))
        self.pod.write_record("Terminated")
        await self.ctx.mirror.delete(self.pod)

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self.ready_since = time.time() if ready else None
            self.runner.wake.set()

    async def _publish(self) -> None:
        self.runner.wake.set()
        if self.waiting is not None:
            cstatus = container_status(self.pod, self.container, waiting=self.waiting, restarts=self.restarts,
                                       last_terminated=self.last_terminated)
            phase = "Pending" if self.handle is None and self.restarts == 0 else "Running"
        else:
            since = self.handle.started_iso if self.handle else None
            cstatus = container_status(self.pod, self.container, running_since=since, ready=self.ready,
                                       restarts=self.restarts, last_terminated=self.last_terminated)
            phase = "Running"
        await self.ctx.mirror.status(self.pod, pod_status(phase, [cstatus], self.ready, self.started_iso))

    async def _main(self) -> None:
        # Task boundary: a crashing lifecycle task would leave a replica that never restarts.
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            raise
        except Exception:  # task boundary: logged with traceback
            log.exception("replica %s/%s crashed", self.pod.namespace, self.pod.name)

    async def _lifecycle(self) -> None:
        self.pod.write_record("Pending")
        await self.ctx.mirror.create(self.pod)
        exponent = 0
        containers = self.pod.spec.get("containers") or []
        if len(containers) != 1:
            self.waiting = (
                "SandboxUnsupported",
                f"the sandbox runs pods with exactly one container, this one has {len(containers)}",
            )
            await self._publish()
            return
        while not self.stopping:
            try:
                await self._run_init_containers()
                launch = await build_launch(
                    self.ctx.api, self.ctx.images, self.pod, self.container, {ENV_PORT: str(self.port)}
                )
                self.handle = await ProcessHandle.start(launch)
            except PodSetupError as error:
                self.waiting = (error.reason, error.message)
                await self._publish()
                delay = self.ctx.config.setup_retry_seconds if error.retryable else self._backoff(exponent)
                exponent += 0 if error.retryable else 1
                await asyncio.sleep(delay)
                continue
            self.waiting = None
            self.pod.write_record("Running", pid=self.handle.pid)
            await self._publish()
            ran_from = time.monotonic()
            reason = await self._supervise(launch.env)
            self._set_ready(False)
            started_iso = self.handle.started_iso
            code = await self.handle.stop(grace_seconds(self.pod.spec, self.ctx.config.grace_max))
            self.handle = None
            if self.stopping:
                return
            self.last_terminated = {"exitCode": code, "reason": exit_reason(code), "startedAt": started_iso,
                                    "finishedAt": now_iso()}
            message = termination_message(self.pod, self.container, code)
            if message:
                self.last_terminated["message"] = message
            self.restarts += 1
            exponent = 0 if time.monotonic() - ran_from > 60 else exponent + 1
            delay = self._backoff(exponent)
            log.info(
                "replica %s/%s %s (exit %s); restarting in %.1fs",
                self.pod.namespace,
                self.pod.name,
                reason,
                code,
                delay,
            )
            self.waiting = (
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container ({reason}, exit code {code})",
            )
            self.pod.write_record("CrashLoopBackOff", exitCode=code, restarts=self.restarts)
            await self._publish()
            await asyncio.sleep(delay)

    def _backoff(self, exponent: int) -> float:
        cfg = self.ctx.config
        return float(min(cfg.crash_backoff_base * 2 ** max(exponent - 1, 0), cfg.crash_backoff_max))

    async def _run_init_containers(self) -> None:
        for init in self.pod.spec.get("initContainers") or []:
            launch = await build_launch(self.ctx.api, self.ctx.images, self.pod, init, {ENV_PORT: str(self.port)})
            handle = await ProcessHandle.start(launch)
            code = await handle.wait()
            if code != 0:
                raise PodSetupError("StartError", f"init container {launch.container!r} exited with code {code}")

    async def _supervise(self, env: Mapping[str, str]) -> str:
        """Run probes until the process exits or liveness/startup fails; returns why it ended."""
        assert self.handle is not None
        cfg = self.ctx.config
        container = self.container

        def make_probe(kind: str, initial: bool, notify: asyncio.Event) -> ProbeLoop | None:
            spec = container.get(kind)
            return ProbeLoop(spec, container, self.port, env, cfg.probe_period_max, initial, notify) if spec else None

        async def set_ready(ready: bool) -> None:
            self._set_ready(ready)
            await self._publish()

        return await supervise(container, make_probe, {"exited": self.handle.wait()}, set_ready)


class DeploymentRunner:
    """Keeps one Deployment's replicas and status in step with its spec."""

    def __init__(self, ctx: KubeletContext, deployment: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.deployment = deployment
        meta = deployment.get("metadata") or {}
        self.namespace = str(meta.get("namespace") or "default")
        self.name = str(meta["name"])
        self.uid = meta.get("uid")
        self.replicas: list[Replica] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.current_hash: str | None = None
        self.progress_at = time.time()
        self.progress_sig: tuple[int, ...] = ()
        self.last_status: dict[str, Any] | None = None
        self.written_rv = ""

    def start(self) -> None:
        """Start the reconcile loop."""
        self.task = asyncio.create_task(self._main(), name=f"deployment {self.namespace}/{self.name}")

    def update(self, deployment: Mapping[str, Any]) -> None:
        """A new version of the Deployment object was observed."""
        self.deployment = deployment
        self.wake.set()

    async def stop(self) -> None:
        """Stop the loop and every replica."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await asyncio.gather(*(r.stop() for r in self.replicas))
        self.replicas.clear()

    async def _main(self) -> None:
        # Task boundary: keep reconciling whatever a single pass raises.
        while True:
            self.wake.clear()
            try:
                await self.reconcile()
            except ObjectGone:
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # task boundary: logged with traceback, retried on the next tick
                log.exception("deployment %s/%s reconcile failed", self.namespace, self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.5)

    def _new_replica(self, template: Mapping[str, Any], thash: str) -> Replica:
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels[LABEL_TEMPLATE_HASH] = thash
        pod = LocalPod(
            namespace=self.namespace,
            name=f"{self.name}-{thash}-{random_suffix()}",
            owner=Owner("Deployment", self.name, self.uid, "apps/v1"),
            template=template,
            state_dir=self.ctx.config.state_dir,
            labels=labels,
            annotations=dict(meta.get("annotations") or {}),
        )
        replica = Replica(self, pod, thash)
        self.replicas.append(replica)
        replica.start()
        return replica

    async def _remove(self, replicas: list[Replica]) -> None:
        for replica in replicas:
            self.replicas.remove(replica)
        await asyncio.gather(*(r.stop() for r in replicas))

    async def reconcile(self) -> None:
        """One pass: scale the new and old replica sets, then write the status when it changed."""
        spec = self.deployment.get("spec") or {}
        template = spec.get("template") or {}
        desired = int(spec.get("replicas", 1))
        min_ready = float(spec.get("minReadySeconds") or 0)
        thash = template_hash(template)
        if thash != self.current_hash:
            self.current_hash = thash
            self.progress_at = time.time()
        new = [r for r in self.replicas if r.hash == thash]
        old = [r for r in self.replicas if r.hash != thash]
        strategy = str((spec.get("strategy") or {}).get("type") or "RollingUpdate")
        surge, max_unavailable = rolling_parameters(spec, desired)
        if strategy == "Recreate":
            surge, max_unavailable = 0, desired
            if old:
                await self._remove(old)
                old = []

        # Scale the new replica set down (replicas lowered): unready ones first.
        if len(new) > desired:
            excess = sorted(new, key=lambda r: (r.ready, r.pod.created))[: len(new) - desired]
            await self._remove(excess)
            new = [r for r in new if r not in excess]
        # Scale the new replica set up within desired + maxSurge.
        room = desired + surge - len(self.replicas)
        for _ in range(max(0, min(room, desired - len(new)))):
            new.append(self._new_replica(template, thash))
        # Scale old replica sets down while keeping desired - maxUnavailable available.
        if old:
            min_available = desired - max_unavailable
            new_unavailable = sum(1 for r in new if not r.available(min_ready))
            budget = len(self.replicas) - min_available - new_unavailable
            if budget > 0:
                unhealthy = [r for r in old if not r.available(min_ready)][:budget]
                if unhealthy:
                    await self._remove(unhealthy)
                    old = [r for r in old if r not in unhealthy]
                    budget -= len(unhealthy)
                available = sum(1 for r in self.replicas if r.available(min_ready))
                count = min(budget, available - min_available)
                if count > 0:
                    victims = sorted(old, key=lambda r: (r.ready, -r.pod.created))[:count]
                    await self._remove(victims)
                    old = [r for r in old if r not in victims]
        # minReadySeconds and the progress deadline are re-checked by the loop's 0.5 s tick.
        await self._write_status(desired, max_unavailable, min_ready, new, old)

    async def _write_status(
        self, desired: int, max_unavailable: int, min_ready: float, new: list[Replica], old: list[Replica]
    ) -> None:
        spec = self.deployment.get("spec") or {}
        meta = self.deployment.get("metadata") or {}
        total = len(self.replicas)
        ready = sum(1 for r in self.replicas if r.ready)
        available = sum(1 for r in self.replicas if r.available(min_ready))
        new_available = sum(1 for r in new if r.available(min_ready))
        sig = (len(new), new_available, len(old))
        if sig != self.progress_sig:
            self.progress_sig = sig
            self.progress_at = time.time()
        previous = list(((self.deployment.get("status") or {}).get("conditions")) or [])
        rs_name = f"{self.name}-{self.current_hash}"
        conditions = []
        if available >= desired - max_unavailable:
            conditions.append(
                condition(
                    "Available",
                    True,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    previous,
                    True,
                )
            )
        else:
            conditions.append(
                condition(
                    "Available",
                    False,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    previous,
                    True,
                )
            )
        deadline = float(spec.get("progressDeadlineSeconds") or 600)
        if len(new) == desired and new_available == desired and not old:
            conditions.append(
                condition(
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    previous,
                    True,
                )
            )
        elif time.time() - self.progress_at > deadline:
            conditions.append(
                condition(
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    previous,
                    True,
                )
            )
        else:
            conditions.append(
                condition(
                    "Progressing", True, "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', previous, True
                )
            )
        failing = [r for r in new if r.waiting and r.waiting[0] in FAILURE_REASONS]
        if failing:
            reason, message = failing[0].waiting or ("", "")
            conditions.append(
                condition("ReplicaFailure", True, reason, f"pod {failing[0].pod.name}: {message}", previous, True)
            )
        status: dict[str, Any] = {
            "replicas": total,
            "updatedReplicas": len(new),
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
            "conditions": conditions,
        }
        if meta.get("generation") is not None:
            status["observedGeneration"] = meta["generation"]
        if self.last_status is not None and strip_times(self.last_status) == strip_times(status):
            observed_rv = str(meta.get("resourceVersion") or "")
            overwritten = (
                observed_rv.isdigit()
                and self.written_rv.isdigit()
                and int(observed_rv) > int(self.written_rv)
                and strip_times(self.deployment.get("status") or {}) != strip_times(status)
            )
            if not overwritten:  # no-op write skipped (unless someone else changed the status since)
                return
        written = await write_status(self.ctx.api, DEPLOYMENTS, self.namespace, self.name, status)
        self.last_status = status
        self.written_rv = str((written.get("metadata") or {}).get("resourceVersion") or "")

    def endpoints(self, selector: Mapping[str, str]) -> list[int]:
        """Local ports of ready replicas whose pod labels match ``selector``."""
        return [
            r.port
            for r in self.replicas
            if r.ready and not r.stopping and matches_labels({"metadata": {"labels": r.pod.labels}}, selector)
        ]


class DeploymentController:
    """One :class:`DeploymentRunner` per Deployment."""

    def __init__(self, ctx: KubeletContext, informer: Informer) -> None:
        self.ctx = ctx
        self.informer = informer
        self.runners: dict[Key, DeploymentRunner] = {}
        self.wake = asyncio.Event()
        informer.listeners.append(self._changed)
        self.on_endpoints: list[asyncio.Event] = []

    def _changed(self, key: Key) -> None:
        self.wake.set()
        runner = self.runners.get(key)
        obj = self.informer.objects.get(key)
        if runner is not None and obj is not None and runner.uid == (obj.get("metadata") or {}).get("uid"):
            runner.update(obj)

    async def run(self) -> None:
        """Start and stop runners as Deployments appear and disappear."""
        await self.informer.synced.wait()
        while True:
            self.wake.clear()
            for key, dep in self.informer.items():
                runner = self.runners.get(key)
                if runner is not None and runner.uid != (dep.get("metadata") or {}).get("uid"):
                    await self.runners.pop(key).stop()
                    runner = None
                if runner is None:
                    runner = DeploymentRunner(self.ctx, dep)
                    self.runners[key] = runner
                    runner.start()
            for key in [k for k in self.runners if k not in self.informer.objects]:
                await self.runners.pop(key).stop()
            await self.wake.wait()

    def endpoints(self, namespace: str, selector: Mapping[str, str]) -> list[int]:
        """Local ports of ready replicas in ``namespace`` matching ``selector`` (Service backends)."""
        if not selector:
            return []
        ports: list[int] = []
        for (ns, _), runner in list(self.runners.items()):
            if ns == namespace:
                ports.extend(runner.endpoints(selector))
        return ports

    async def shutdown(self) -> None:
        """Stop every replica of every Deployment."""
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
