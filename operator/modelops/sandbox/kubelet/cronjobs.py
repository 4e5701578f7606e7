"""CronJob controller: Jobs from ``jobTemplate`` on schedule, and on demand (``trigger``).

Scheduling follows the Kubernetes CronJob controller: the most recent schedule time after
``status.lastScheduleTime`` (or the CronJob's creation) is run once, late runs beyond
``startingDeadlineSeconds`` are skipped, ``concurrencyPolicy`` Allow / Forbid / Replace is
applied against the CronJob's unfinished Jobs, ``suspend`` stops scheduling, and finished Jobs
beyond ``successfulJobsHistoryLimit`` (default 3) / ``failedJobsHistoryLimit`` (default 1) are
deleted. Status: ``active`` (object references), ``lastScheduleTime``, ``lastSuccessfulTime``.
Scheduled Jobs are named ``<cronjob>-<minutes since epoch>`` like Kubernetes; on-demand ones
``<cronjob>-manual-<suffix>``, annotated ``cronjob.kubernetes.io/instantiate: manual`` like
``kubectl create job --from=cronjob/...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from croniter import croniter

from ..client import CRONJOBS, JOBS, Api, ApiError, ConflictError, NotFoundError
from .common import KubeletContext, ObjectGone, parse_time, write_status
from .informer import Informer, Key
from .jobs import finish_time, job_finished
from .pods import random_suffix

log = logging.getLogger("modelops.sandbox.kubelet")

ANN_INSTANTIATE = "cronjob.kubernetes.io/instantiate"
ANN_SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def most_recent_schedule(schedule: str, after: float, now: float, timezone: str | None = None) -> float | None:
    """The latest schedule time ``t`` with ``after < t <= now`` (epoch seconds), or None.

    ``schedule`` is a cron expression (``@hourly`` style macros included); ``timezone`` an IANA
    name (default UTC). Raises ValueError for an invalid expression or time zone.
    """
    try:
        tz = ZoneInfo(timezone) if timezone else UTC
    except ZoneInfoNotFoundError as exc:
        raise ValueError(f"unknown time zone {timezone!r}") from exc
    if not croniter.is_valid(schedule):
        raise ValueError(f"invalid cron schedule {schedule!r}")
    # croniter's get_prev is strictly before the start: start one second later to include ``now``.
    itr = croniter(schedule, datetime.fromtimestamp(now + 1, tz))
    prev: float = itr.get_prev(float)
    return prev if after < prev <= now else None


@dataclass(frozen=True)
class Decision:
    """What the CronJob controller should do now: ``action`` and the schedule time it is for."""

    action: str  # "wait" | "create" | "replace" | "skip-late" | "skip-forbid" | "suspended"
    scheduled: float | None = None


def decide(spec: Mapping[str, Any], last: float, now: float, active: int) -> Decision:
    """Decide one scheduling step (pure).

    ``last`` is the lastScheduleTime (or creation time), ``active`` the number of unfinished Jobs.
    Raises ValueError for an invalid schedule or time zone.
    """
    if spec.get("suspend"):
        return Decision("suspended")
    scheduled = most_recent_schedule(str(spec.get("schedule", "")), last, now, spec.get("timeZone"))
    if scheduled is None:
        return Decision("wait")
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None and now - scheduled > float(deadline):
        return Decision("skip-late", scheduled)
    policy = str(spec.get("concurrencyPolicy") or "Allow")
    if active and policy == "Forbid":
        return Decision("skip-forbid", scheduled)
    if active and policy == "Replace":
        return Decision("replace", scheduled)
    return Decision("create", scheduled)


def job_from_cronjob(cronjob: Mapping[str, Any], name: str, scheduled: float | None, manual: bool) -> dict[str, Any]:
    """A Job manifest from a CronJob's ``jobTemplate``, owned by the CronJob."""
    meta = cronjob.get("metadata") or {}
    template = ((cronjob.get("spec") or {}).get("jobTemplate")) or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    if manual:
        annotations[ANN_INSTANTIATE] = "manual"
    if scheduled is not None:
        annotations[ANN_SCHEDULED] = _iso(scheduled)
    owner: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": meta["name"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    if meta.get("uid"):
        owner["uid"] = meta["uid"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace") or "default",
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def manual_job_name(cronjob: str) -> str:
    """``<cronjob>-manual-<5 chars>``, shortened to fit Kubernetes' 63-character limit."""
    return f"{cronjob[:49]}-manual-{random_suffix()}"


def trigger_cronjob(api: Api, name: str, namespace: str = "default") -> str:
    """Create a Job from a CronJob now (``kubectl create job --from=cronjob/NAME``); returns its name.

    Raises NotFoundError when the CronJob does not exist.
    """
    cronjob = api.get(CRONJOBS, name, namespace)
    job_name = manual_job_name(name)
    api.create(JOBS, job_from_cronjob(cronjob, job_name, None, manual=True), namespace)
    return job_name


def owned_by(job: Mapping[str, Any], cronjob: Mapping[str, Any]) -> bool:
    """Whether a Job's controller reference points to this CronJob (same namespace, name and uid)."""
    jmeta, cmeta = job.get("metadata") or {}, cronjob.get("metadata") or {}
    if jmeta.get("namespace") != cmeta.get("namespace"):
        return False
    for ref in jmeta.get("ownerReferences") or []:
        if ref.get("kind") == "CronJob" and ref.get("name") == cmeta.get("name"):
            return not (ref.get("uid") and cmeta.get("uid")) or ref.get("uid") == cmeta.get("uid")
    return False


class CronJobController:
    """Schedules every CronJob once a second (and on CronJob changes)."""

    def __init__(self, ctx: KubeletContext, cronjobs: Informer, jobs: Informer) -> None:
        self.ctx = ctx
        self.cronjobs = cronjobs
        self.jobs = jobs
        self.first_seen: dict[Key, float] = {}
        self.wake = asyncio.Event()
        cronjobs.listeners.append(lambda key: self.wake.set())
        jobs.listeners.append(lambda key: self.wake.set())

    async def run(self) -> None:
        """Reconcile forever."""
        await self.cronjobs.synced.wait()
        await self.jobs.synced.wait()
        while True:
            self.wake.clear()
            for key, cronjob in self.cronjobs.items():
                try:
                    await self.reconcile(key, cronjob)
                except (ApiError, httpx.HTTPError, ObjectGone) as exc:
                    log.warning("cronjob %s/%s: %s", key[0], key[1], exc)
            for key in [k for k in self.first_seen if k not in self.cronjobs.objects]:
                del self.first_seen[key]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)

    async def reconcile(self, key: Key, cronjob: Mapping[str, Any]) -> None:
        """Run the schedule, trim the history and update the status of one CronJob."""
        namespace, name = key
        meta = cronjob.get("metadata") or {}
        spec = cronjob.get("spec") or {}
        status = dict(cronjob.get("status") or {})
        owned = [j for _, j in self.jobs.items() if owned_by(j, cronjob)]
        active = [j for j in owned if not job_finished(j)]
        now = time.time()
        last = (
            parse_time(status.get("lastScheduleTime"))
            or parse_time(meta.get("creationTimestamp"))
            or self.first_seen.setdefault(key, now)
        )
        try:
            decision = decide(spec, last, now, len(active))
        except ValueError as exc:
            log.warning("cronjob %s/%s: %s", namespace, name, exc)
            return
        new_status: dict[str, Any] = {}
        if decision.action == "replace":
            for job in active:
                with contextlib.suppress(NotFoundError):
                    await self.ctx.api.delete(JOBS, job["metadata"]["name"], namespace)
            active = []
        if decision.action in ("create", "replace") and decision.scheduled is not None:
            job_name = f"{name[:52]}-{int(decision.scheduled // 60)}"
            try:
                created = await self.ctx.api.create(
                    JOBS, job_from_cronjob(cronjob, job_name, decision.scheduled, manual=False), namespace
                )
                active.append(created)
                log.info("cronjob %s/%s: created job %s", namespace, name, job_name)
            except ConflictError:
                pass  # already created for this schedule time
            new_status["lastScheduleTime"] = _iso(decision.scheduled)
        elif decision.action == "skip-late":
            log.info(
                "cronjob %s/%s: missed the start of %s (startingDeadlineSeconds)",
                namespace,
                name,
                _iso(decision.scheduled or now),
            )

        await self._trim_history(spec, owned, namespace)
        refs = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": j["metadata"]["name"],
                "namespace": namespace,
                **({"uid": j["metadata"]["uid"]} if j["metadata"].get("uid") else {}),
            }
            for j in active
        ]
        new_status["active"] = sorted(refs, key=lambda r: r["name"]) or None
        successes = [finish_time(j) for j in owned if job_finished(j) == "Complete"]
        best = max((t for t in successes if t is not None), default=None)
        if best is not None:
            new_status["lastSuccessfulTime"] = _iso(best)
        merged = {**status, **{k: v for k, v in new_status.items() if v is not None}}
        if new_status.get("active") is None:
            merged.pop("active", None)
        if merged != status:
            await write_status(self.ctx.api, CRONJOBS, namespace, name, new_status)

    async def _trim_history(self, spec: Mapping[str, Any], owned: list[dict[str, Any]], namespace: str) -> None:
        limits = {
            "Complete": int(spec.get("successfulJobsHistoryLimit", 3)),
            "Failed": int(spec.get("failedJobsHistoryLimit", 1)),
        }
        for outcome, limit in limits.items():
            finished = sorted((j for j in owned if job_finished(j) == outcome), key=lambda j: finish_time(j) or 0.0)
            for job in finished[: max(0, len(finished) - limit)]:
                with contextlib.suppress(NotFoundError):
                    await self.ctx.api.delete(JOBS, job["metadata"]["name"], namespace)
