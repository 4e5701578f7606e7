"""Configuration and helpers shared by the kubelet's controllers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..client import ApiError, AsyncApi, NotFoundError, Resource
from .images import ImageResolver, ImageSpec
from .pods import PodMirror, now_iso

log = logging.getLogger("modelops.sandbox.kubelet")


@dataclass
class KubeletConfig:
    """Kubelet options. Times are in seconds.

    The sandbox compresses a few Kubernetes delays so that demos and tests do not wait
    minutes: Job retry backoff (Kubernetes: 10 s doubling to 6 min), container restart
    backoff (10 s doubling to 5 min), probe periods (capped) and termination grace (capped).
    """

    api_url: str
    state_dir: Path
    images: dict[str, ImageSpec] = field(default_factory=dict)
    job_backoff_base: float = 1.0
    job_backoff_max: float = 10.0
    crash_backoff_base: float = 1.0
    crash_backoff_max: float = 30.0
    probe_period_max: float = 2.0
    grace_max: float = 5.0
    setup_retry_seconds: float = 1.0
    mirror_pods: bool = True
    #: kubeconfig of the real control plane (None: ``api_url`` is the API emulator's, no auth).
    kubeconfig: Path | None = None
    #: Be a node of the real control plane instead of playing the controllers (see :mod:`.node`).
    node: bool = False
    node_name: str = "sandbox"
    #: What the node advertises: the sandbox overcommits (every pod is a process sharing the host),
    #: so the scheduler never leaves a test's pods Pending for want of requested CPU or memory.
    node_cpu: str = "32"
    node_memory: str = "128Gi"
    node_pods: int = 250
    #: Port of the HTTPS log endpoint (``kubectl logs``); 0 picks a free one.
    log_port: int = 0


@dataclass
class KubeletContext:
    """What every controller shares: API client, config, image resolver, pod mirror."""

    api: AsyncApi
    config: KubeletConfig
    images: ImageResolver
    mirror: PodMirror


def parse_time(value: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (None for None or an unparsable value)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable 10-character hash of a pod template (canonical JSON, sha256)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def condition(
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    previous: list[dict[str, Any]] | None = None,
    with_update_time: bool = False,
) -> dict[str, Any]:
    """A status condition; ``lastTransitionTime`` is kept from ``previous`` when the status did not flip.

    ``with_update_time`` adds ``lastUpdateTime`` (Deployments), kept when reason and message are unchanged.
    """
    flag = "True" if status else "False"
    now = now_iso()
    prev = next((c for c in previous or [] if c.get("type") == ctype), None)
    transition = prev.get("lastTransitionTime", now) if prev and prev.get("status") == flag else now
    cond: dict[str, Any] = {"type": ctype, "status": flag, "reason": reason, "message": message}
    if with_update_time:
        same = prev is not None and prev.get("status") == flag and prev.get("reason") == reason
        cond["lastUpdateTime"] = prev.get("lastUpdateTime", now) if same and prev else now
    cond["lastTransitionTime"] = transition
    return cond


def strip_times(value: Any) -> Any:
    """A copy of a status without timestamps (to skip no-op status writes)."""
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if not k.endswith("Time")}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


class ObjectGone(Exception):
    """The object a controller works on was deleted."""


async def write_status(
    api: AsyncApi, res: Resource, namespace: str, name: str, status: Mapping[str, Any], attempts: int = 8
) -> dict[str, Any]:
    """Merge-patch the ``status`` subresource, retrying transient errors with backoff (0.2 s doubling, at most 5 s).

    Raises ObjectGone when the object no longer exists, ApiError after the last failed attempt.
    """
    delay = 0.2
    for attempt in range(attempts):
        try:
            return await api.patch(res, name, {"status": dict(status)}, namespace, "status")
        except NotFoundError as exc:
            raise ObjectGone(f"{res.kind} {namespace}/{name}") from exc
        except (ApiError, httpx.HTTPError) as exc:
            if attempt == attempts - 1:
                raise
            log.warning("status write of %s %s/%s failed (%s); retrying", res.kind, namespace, name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")
