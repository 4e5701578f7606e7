"""Job controller: runs a Job's pod as local processes and maintains the Job's status.

Supported: one pod at a time (``completions``/``parallelism`` of 1), init containers run in
order before the single app container, ``backoffLimit`` (a failed pod is retried after a
compressed exponential backoff until ``status.failed`` exceeds the limit), ``activeDeadlineSeconds``
(counted from ``status.startTime``; the running pod is killed), ``suspend`` and
``ttlSecondsAfterFinished``. Status: ``startTime``, ``active``, ``ready``, ``succeeded``,
``failed``, ``completionTime`` and the ``Complete`` / ``Failed`` conditions (reasons
CompletionsReached, BackoffLimitExceeded, DeadlineExceeded, or the pod's ErrImagePull /
SandboxUnsupported when the pod can never start).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..client import JOBS, ApiError, NotFoundError
from .common import KubeletContext, ObjectGone, condition, parse_time, write_status
from .informer import Informer, Key
from .pods import (
    LocalPod,
    Owner,
    PodSetupError,
    ProcessHandle,
    build_launch,
    container_status,
    grace_seconds,
    now_iso,
    pod_status,
    random_suffix,
    termination_message,
)

log = logging.getLogger("modelops.sandbox.kubelet")

LABEL_JOB_NAME = "batch.kubernetes.io/job-name"
LABEL_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


def job_finished(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has that condition True, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def finish_time(job: Mapping[str, Any]) -> float | None:
    """Epoch seconds at which the Job finished (completionTime or the Failed condition's time)."""
    status = job.get("status") or {}
    if status.get("completionTime"):
        return parse_time(status["completionTime"])
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return parse_time(cond.get("lastTransitionTime"))
    return None


def pod_failure_action(spec: Mapping[str, Any], container: str, code: int, pod: str) -> tuple[str, str]:
    """Apply ``spec.podFailurePolicy`` ``onExitCodes`` rules to a failed pod's exit code.

    Returns (action, message): ``FailJob``, ``Ignore`` or ``Count`` (the default, also for exit
    code 0 and when no rule matches). ``onPodConditions`` rules never match (the sandbox has no
    disruptions).
    """
    if code == 0:
        return "Count", ""
    for index, rule in enumerate(((spec.get("podFailurePolicy") or {}).get("rules")) or []):
        on_codes = rule.get("onExitCodes")
        if not on_codes:
            continue
        if on_codes.get("containerName") and on_codes["containerName"] != container:
            continue
        values = {int(v) for v in on_codes.get("values") or []}
        matched = code in values if on_codes.get("operator", "In") == "In" else code not in values
        if matched:
            action = str(rule.get("action", "Count"))
            return action, (
                f"Container {container} for pod {pod} failed with exit code {code} "
                f"matching {action} rule at index {index}"
            )
    return "Count", ""


class _Deadline(Exception):
    """activeDeadlineSeconds passed."""


class JobRunner:
    """Runs one Job to completion (one task per Job)."""

    def __init__(self, ctx: KubeletContext, job: Mapping[str, Any]) -> None:
        self.ctx = ctx
        meta = job.get("metadata") or {}
        self.namespace = str(meta.get("namespace") or "default")
        self.name = str(meta["name"])
        self.uid = meta.get("uid")
        self.job = job
        self.pods: list[LocalPod] = []
        self.handle: ProcessHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the runner task."""
        self.task = asyncio.create_task(self._main(), name=f"job {self.namespace}/{self.name}")

    @property
    def done(self) -> bool:
        """Whether the runner task has finished."""
        return self.task is not None and self.task.done()

    async def stop(self, delete_pods: bool) -> None:
        """Cancel the runner (killing a running process) and optionally delete its mirror pods."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if delete_pods:
            for pod in self.pods:
                await self.ctx.mirror.delete(pod)

    async def _status(self, patch: Mapping[str, Any]) -> None:
        await write_status(self.ctx.api, JOBS, self.namespace, self.name, patch)

    async def _main(self) -> None:
        # Task boundary: a runner must never die silently, the Job would hang "active" forever.
        try:
            await self._run()
        except ObjectGone:
            log.info("job %s/%s deleted while running", self.namespace, self.name)
        except asyncio.CancelledError:
            raise
        except Exception:  # task boundary: logged with traceback
            log.exception("job runner %s/%s crashed", self.namespace, self.name)

    async def _run(self) -> None:
        spec = self.job.get("spec") or {}
        status = self.job.get("status") or {}
        start_iso = status.get("startTime") or now_iso()
        started = parse_time(start_iso) or time.time()
        ads = spec.get("activeDeadlineSeconds")
        deadline = started + float(ads) if ads is not None else None
        backoff_limit = int(spec.get("backoffLimit", 6))
        failed = int(status.get("failed") or 0)
        await self._status({"startTime": start_iso, "active": 1, "ready": 0})

        while True:
            try:
                if deadline is not None and time.time() >= deadline:
                    raise _Deadline
                code, setup_error = await self._attempt(deadline)
            except _Deadline:
                await self._finish_failed(failed + 1, "DeadlineExceeded", DEADLINE_MESSAGE)
                return
            if setup_error is not None:
                await self._finish_failed(failed + 1, setup_error.reason, setup_error.message)
                return
            action, rule_message = pod_failure_action(
                self.job.get("spec") or {}, self._main_container(), code, f"{self.namespace}/{self.pods[-1].name}"
            )
            if action == "FailJob":
                await self._finish_failed(failed + 1, "PodFailurePolicy", rule_message)
                return
            if action == "Ignore":
                await asyncio.sleep(self.ctx.config.job_backoff_base)
                continue
            if code == 0:
                now = now_iso()
                await self._status(
                    {
                        "active": None,
                        "ready": 0,
                        "succeeded": 1,
                        "completionTime": now,
                        "conditions": [
                            condition(
                                "Complete", True, "CompletionsReached", "Reached expected number of succeeded pods"
                            )
                        ],
                    }
                )
                return
            failed += 1
            if failed > backoff_limit:
                await self._finish_failed(failed, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                return
            await self._status({"failed": failed, "ready": 0})
            delay = min(self.ctx.config.job_backoff_base * 2 ** (failed - 1), self.ctx.config.job_backoff_max)
            if deadline is not None and time.time() + delay >= deadline:
                await asyncio.sleep(max(0.0, deadline - time.time()))
                await self._finish_failed(failed, "DeadlineExceeded", DEADLINE_MESSAGE)
                return
            await asyncio.sleep(delay)

    async def _finish_failed(self, failed: int, reason: str, message: str) -> None:
        log.info("job %s/%s failed: %s: %s", self.namespace, self.name, reason, message)
        await self._status(
            {
                "active": None,
                "ready": 0,
                "failed": failed,
                "conditions": [condition("Failed", True, reason, message)],
            }
        )

    def _main_container(self) -> str:
        containers = (((self.job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        return str(containers[0].get("name", "")) if containers else ""

    def _new_pod(self) -> LocalPod:
        template = (self.job.get("spec") or {}).get("template") or {}
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update({LABEL_JOB_NAME: self.name, "job-name": self.name})
        if self.uid:
            labels.update({LABEL_CONTROLLER_UID: str(self.uid), "controller-uid": str(self.uid)})
        pod = LocalPod(
            namespace=self.namespace,
            name=f"{self.name}-{random_suffix()}",
            owner=Owner("Job", self.name, self.uid, "batch/v1"),
            template=template,
            state_dir=self.ctx.config.state_dir,
            labels=labels,
            annotations=dict(meta.get("annotations") or {}),
        )
        self.pods.append(pod)
        return pod

    async def _attempt(self, deadline: float | None) -> tuple[int, PodSetupError | None]:
        """Run one pod; returns (exit code, None) or (-1, fatal setup error). Raises _Deadline."""
        pod = self._new_pod()
        spec = pod.spec
        containers = list(spec.get("containers") or [])
        started = now_iso()
        pod.write_record("Pending")
        await self.ctx.mirror.create(pod)
        if len(containers) != 1:
            error = PodSetupError(
                "SandboxUnsupported",
                f"the sandbox runs pods with exactly one container, this one has {len(containers)}",
            )
            await self._pod_failed(pod, containers[0] if containers else {}, started, waiting=error)
            return -1, error
        main = containers[0]
        try:
            for init in spec.get("initContainers") or []:
                code = await self._run_container(pod, init, deadline, started, init=True)
                if code != 0:
                    await self._pod_failed(pod, main, started, code=code)
                    return code, None
            code = await self._run_container(pod, main, deadline, started)
        except PodSetupError as error:
            await self._pod_failed(pod, main, started, waiting=error)
            return -1, error
        except _Deadline:
            await self._pod_failed(pod, main, started, code=137, reason="DeadlineExceeded")
            raise
        finished = now_iso()
        phase = "Succeeded" if code == 0 else "Failed"
        pod.write_record(phase, exitCode=code)
        message = termination_message(pod, main, code)
        await self.ctx.mirror.status(pod, pod_status(phase, [
            container_status(pod, main, terminated=(code, started, finished), message=message)], False, started))
        return code, None

    async def _pod_failed(
        self,
        pod: LocalPod,
        container: Mapping[str, Any],
        started: str,
        code: int | None = None,
        waiting: PodSetupError | None = None,
        reason: str | None = None,
    ) -> None:
        pod.write_record(
            "Failed",
            exitCode=code,
            reason=reason or (waiting.reason if waiting else None),
            message=waiting.message if waiting else None,
        )
        if waiting is not None:
            cstatus = container_status(pod, container, waiting=(waiting.reason, waiting.message))
        else:
            cstatus = container_status(pod, container, terminated=(code or 1, started, now_iso()))
        status = pod_status("Failed", [cstatus], False, started)
        if reason:
            status["reason"] = reason
        await self.ctx.mirror.status(pod, status)

    async def _run_container(
        self, pod: LocalPod, container: Mapping[str, Any], deadline: float | None, started: str, init: bool = False
    ) -> int:
        """Start one container (retrying retryable setup errors) and wait for it. Raises _Deadline."""
        while True:
            try:
                launch = await build_launch(self.ctx.api, self.ctx.images, pod, container)
                handle = await ProcessHandle.start(launch)
                break
            except PodSetupError as error:
                if error.reason == "StartError":
                    with open(pod.log_path(str(container.get("name") or "main")), "a") as logf:
                        logf.write(f"{error.reason}: {error.message}\n")
                    return 128
                if not error.retryable:
                    raise
                await self.ctx.mirror.status(
                    pod,
                    pod_status(
                        "Pending",
                        [container_status(pod, container, waiting=(error.reason, error.message))],
                        False,
                        started,
                    ),
                )
                if deadline is not None and time.time() + self.ctx.config.setup_retry_seconds >= deadline:
                    await asyncio.sleep(max(0.0, deadline - time.time()))
                    raise _Deadline from error
                await asyncio.sleep(self.ctx.config.setup_retry_seconds)
        self.handle = handle
        pod.write_record("Running", pid=handle.pid)
        if not init:
            await self._status({"ready": 1})
            await self.ctx.mirror.status(
                pod,
                pod_status(
                    "Running",
                    [container_status(pod, container, running_since=handle.started_iso, ready=True)],
                    True,
                    started,
                ),
            )
        grace = grace_seconds(pod.spec, self.ctx.config.grace_max)
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            return await asyncio.wait_for(asyncio.shield(handle.wait()), timeout)
        except TimeoutError:
            await handle.stop(grace)
            raise _Deadline from None
        except asyncio.CancelledError:
            await asyncio.shield(handle.stop(grace))
            raise
        finally:
            self.handle = None


class JobController:
    """Starts a :class:`JobRunner` for every unfinished Job and cleans up deleted ones."""

    def __init__(self, ctx: KubeletContext, informer: Informer) -> None:
        self.ctx = ctx
        self.informer = informer
        self.runners: dict[Key, JobRunner] = {}
        self.wake = asyncio.Event()
        informer.listeners.append(lambda key: self.wake.set())

    async def run(self) -> None:
        """Reconcile on every change and at least once a second (TTL expiry)."""
        await self.informer.synced.wait()
        while True:
            self.wake.clear()
            await self.reconcile()
            try:
                await asyncio.wait_for(self.wake.wait(), 1.0)
            except TimeoutError:
                pass

    async def reconcile(self) -> None:
        """Start, stop and garbage-collect runners to match the cached Jobs."""
        for key, job in self.informer.items():
            meta = job.get("metadata") or {}
            runner = self.runners.get(key)
            if runner is not None and runner.uid != meta.get("uid"):
                await runner.stop(delete_pods=True)  # deleted and re-created under the same name
                del self.runners[key]
                runner = None
            if job_finished(job):
                await self._expire(job)
                continue
            if meta.get("deletionTimestamp"):
                continue
            if (job.get("spec") or {}).get("suspend"):
                if runner is not None and not runner.done:
                    await runner.stop(delete_pods=True)
                    del self.runners[key]
                    await self._suspended(job)
                continue
            if runner is None:
                runner = JobRunner(self.ctx, job)
                self.runners[key] = runner
                runner.start()
        for key in [k for k in self.runners if k not in self.informer.objects]:
            await self.runners.pop(key).stop(delete_pods=True)

    async def _suspended(self, job: Mapping[str, Any]) -> None:
        meta = job.get("metadata") or {}
        try:
            await write_status(self.ctx.api, JOBS, meta["namespace"], meta["name"], {"active": None, "ready": 0})
        except ObjectGone:
            pass

    async def _expire(self, job: Mapping[str, Any]) -> None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = finish_time(job)
        if ttl is None or finished is None or time.time() < finished + float(ttl):
            return
        meta = job.get("metadata") or {}
        try:
            await self.ctx.api.delete(JOBS, meta["name"], meta.get("namespace"))
        except NotFoundError:
            pass
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("cannot delete expired job %s/%s: %s", meta.get("namespace"), meta["name"], exc)

    async def shutdown(self) -> None:
        """Stop every runner (kills running processes); mirror pods are left to the API server."""
        await asyncio.gather(*(r.stop(delete_pods=False) for r in self.runners.values()))
