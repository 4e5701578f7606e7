"""A model server's refusal of its model, read from its pods (for the ``Serving`` condition and rollouts).

A server that refuses its model (modelops.contract.REFUSAL_REASONS) stays up, not ready, and
answers ``/v2/health/ready`` with the refusal; it also writes it as its termination message, which
the container status shows once the container stopped (and which older servers, that exited on a
refusal, only wrote). :func:`server_refusal` and :func:`ready_refusal` are pure;
:func:`find_refusal` does the I/O (one GET per running, not ready pod, through
:func:`~modelops.clients.scrape.scrape`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..clients.scrape import ScrapeError, scrape
from ..contract import READY_PATH, parse_ready_refusal, parse_refusal
from .context import Context
from .pods import pod_ready, pod_url

#: ``(reason, message, pod name)``.
Refusal = tuple[str, str, str]


def server_refusal(pods: list[dict[str, Any]]) -> Refusal | None:
    """``(reason, message, pod name)`` of the first serving container (by pod name) whose current
    or last termination message is a model server's refusal (modelops.contract.parse_refusal)."""
    for pod in sorted(pods, key=lambda p: str(p["metadata"].get("name"))):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (container.get("state"), container.get("lastState")):
                terminated = (state or {}).get("terminated") or {}
                refusal = parse_refusal(terminated.get("message"))
                if refusal is not None:
                    return (*refusal, str(pod["metadata"].get("name")))
    return None


def ready_refusal(answers: Mapping[str, str | ScrapeError]) -> Refusal | None:
    """``(reason, message, pod name)`` of the first pod (by name) whose ``/v2/health/ready`` body
    (``{pod name: body or the error}``) carries a refusal (modelops.contract.parse_ready_refusal)."""
    for name in sorted(answers):
        body = answers[name]
        refusal = None if isinstance(body, ScrapeError) else parse_ready_refusal(body)
        if refusal is not None:
            return (*refusal, name)
    return None


async def find_refusal(ctx: Context, pods: list[dict[str, Any]]) -> Refusal | None:
    """The refusal of one of ``pods``: from the termination messages, else by asking the running pods
    that are not ready (HTTP 503 bodies of ``/v2/health/ready``; an unreachable pod tells nothing)."""
    found = server_refusal(pods)
    if found is not None:
        return found
    urls = {
        str(pod["metadata"].get("name")): url
        for pod in pods
        if not pod_ready(pod) and (url := pod_url(pod, READY_PATH, ctx.settings.pod_address)) is not None
    }
    return ready_refusal(await scrape(urls, ctx.settings.metrics_scrape_timeout_seconds, statuses=(503,)))
