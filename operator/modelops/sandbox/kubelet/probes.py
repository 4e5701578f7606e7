"""Container probes (httpGet, tcpSocket, exec; grpc is checked as a TCP connect).

With the API emulator every container port (by number or by name) maps to the single local port
the kubelet gave the process on 127.0.0.1 (``MODELOPS_PORT``). As a node of the real control plane
each pod has its own loopback address and listens on its real container ports: probes go to that
address and port (``local_port`` None), a named port resolving to its ``containerPort``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx


def resolve_port(port: Any, container: Mapping[str, Any], local_port: int | None) -> int | None:
    """The port for a probe or Service target port (a number, or a container port name).

    ``local_port``: the one port the process listens on (emulator mode), or None for real ports.
    A name that no container port declares gives None (the probe fails, like in Kubernetes).
    """
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return local_port if local_port is not None else int(port)
    named = {str(p.get("name")): p.get("containerPort") for p in container.get("ports") or [] if p.get("name")}
    if port not in named:
        return None
    return local_port if local_port is not None else int(named[port])


@dataclass
class ProbeSettings:
    """Timing of one probe (seconds); ``period`` is already capped by the kubelet option."""

    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: Mapping[str, Any], period_max: float) -> ProbeSettings:
        """Read Kubernetes defaults (0 s delay, 10 s period, 1 s timeout, thresholds 1 and 3)."""
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=min(float(probe.get("periodSeconds") or 10), period_max),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


async def check(
    probe: Mapping[str, Any], container: Mapping[str, Any], local_port: int | None, env: Mapping[str, str],
    timeout: float, host: str = "127.0.0.1",
) -> bool:
    """Run one probe once against ``host``; True on success (HTTP 200-399, TCP connect, exec exit 0)."""
    if "httpGet" in probe:
        http = probe["httpGet"] or {}
        port = resolve_port(http.get("port"), container, local_port)
        if port is None:
            return False
        scheme = str(http.get("scheme") or "HTTP").lower()
        path = str(http.get("path") or "/")
        headers = {str(h.get("name")): str(h.get("value")) for h in http.get("httpHeaders") or []}
        try:
            async with httpx.AsyncClient(timeout=timeout, verify=False) as client:
                response = await client.get(f"{scheme}://{host}:{port}{path}", headers=headers)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 400
    if "tcpSocket" in probe or "grpc" in probe:
        spec = probe.get("tcpSocket") or probe.get("grpc") or {}
        port = resolve_port(spec.get("port"), container, local_port)
        if port is None:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    if "exec" in probe:
        command = [str(c) for c in (probe["exec"] or {}).get("command") or []]
        if not command:
            return False
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            return False
        try:
            return await asyncio.wait_for(proc.wait(), timeout) == 0
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return False
    return True  # a probe without a handler is treated as passing


class ProbeLoop:
    """Runs one probe periodically and tracks consecutive results against the thresholds.

    ``state`` becomes True after ``success_threshold`` consecutive successes and False after
    ``failure_threshold`` consecutive failures; ``changed`` (and the shared ``notify`` event,
    when given) is set on every flip.
    """

    def __init__(
        self,
        probe: Mapping[str, Any],
        container: Mapping[str, Any],
        local_port: int | None,
        env: Mapping[str, str],
        period_max: float,
        initial: bool = False,
        notify: asyncio.Event | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.probe = probe
        self.container = container
        self.local_port = local_port
        self.env = env
        self.settings = ProbeSettings.of(probe, period_max)
        self.state = initial
        self.changed = asyncio.Event()
        self.notify = notify
        self.successes = 0
        self.failures = 0

    def _flag(self) -> None:
        self.changed.set()
        if self.notify is not None:
            self.notify.set()

    async def run(self) -> None:
        """Probe forever (until cancelled)."""
        await asyncio.sleep(self.settings.initial_delay)
        while True:
            began = time.monotonic()
            ok = await check(self.probe, self.container, self.local_port, self.env, self.settings.timeout,
                             self.host)
            if ok:
                self.successes += 1
                self.failures = 0
                if not self.state and self.successes >= self.settings.success_threshold:
                    self.state = True
                    self._flag()
            else:
                self.failures += 1
                self.successes = 0
                if self.state and self.failures >= self.settings.failure_threshold:
                    self.state = False
                    self._flag()
                elif not self.state and self.failures >= self.settings.failure_threshold:
                    self._flag()  # a failing probe that never succeeded still reports
            await asyncio.sleep(max(0.0, self.settings.period - (time.monotonic() - began)))


async def supervise(
    container: Mapping[str, Any],
    make_probe: Callable[[str, bool, asyncio.Event], ProbeLoop | None],
    ends: Mapping[str, Awaitable[Any]],
    set_ready: Callable[[bool], Awaitable[None]],
) -> str:
    """Run a running container's probes until one of ``ends`` happens or a probe stops it.

    ``make_probe(kind, initial, notify)`` builds the ProbeLoop of ``startupProbe``,
    ``readinessProbe`` or ``livenessProbe`` (None when the container has none); ``ends`` maps a
    reason (``"exited"``, ``"deleted"``) to what it waits for; ``set_ready`` is called on every
    change of readiness (True at once without a readiness probe). The startup probe gates the
    other two, as in Kubernetes. Returns the reason of the end, or ``"failed its startup probe"`` /
    ``"failed its liveness probe"``.
    """
    notify = asyncio.Event()  # set by any probe flip and by every end
    startup = make_probe("startupProbe", False, notify)
    readiness = make_probe("readinessProbe", False, notify)
    liveness = make_probe("livenessProbe", True, notify)
    waits = {reason: asyncio.ensure_future(aw) for reason, aw in ends.items()}
    for task in waits.values():
        task.add_done_callback(lambda _: notify.set())
    loops: list[asyncio.Task[None]] = []
    ready = False

    def ended() -> str | None:
        return next((reason for reason, task in waits.items() if task.done()), None)

    try:
        if startup is not None:
            loops.append(asyncio.create_task(startup.run()))
            while not startup.state:
                await notify.wait()
                notify.clear()
                if (reason := ended()) is not None:
                    return reason
                if not startup.state and startup.failures >= startup.settings.failure_threshold:
                    return "failed its startup probe"
            loops.pop().cancel()
        loops += [asyncio.create_task(p.run()) for p in (readiness, liveness) if p is not None]
        if readiness is None:
            ready = True
            await set_ready(True)
        while True:
            await notify.wait()
            notify.clear()
            if (reason := ended()) is not None:
                return reason
            if liveness is not None and liveness.changed.is_set():
                liveness.changed.clear()
                if not liveness.state:
                    return "failed its liveness probe"
            if readiness is not None and readiness.changed.is_set():
                readiness.changed.clear()
                if readiness.state != ready:
                    ready = readiness.state
                    await set_ready(ready)
    finally:
        for task in [*loops, *waits.values()]:
            task.cancel()
