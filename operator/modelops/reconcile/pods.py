"""Pure reads of serving pods as the API reports them: where to reach a pod's server, whether it is ready."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..contract import SERVING_PORT, SERVING_PORT_NAME


def pod_url(pod: Mapping[str, Any], path: str, address: Callable[[str], str] = str) -> str | None:
    """``http://<address>:<serving port><path>`` of a Running pod with an IP, else None.

    ``address`` maps the pod IP to where the operator reaches it (``Settings.pod_address``); the
    port is the container port named ``SERVING_PORT_NAME``, else ``SERVING_PORT``.
    """
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") != "Running":
        return None
    port = next(
        (
            p.get("containerPort")
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") == SERVING_PORT_NAME
        ),
        SERVING_PORT,
    )
    return f"http://{address(str(ip))}:{port}{path}"


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's ``Ready`` condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
