"""Service forwarders: a local TCP port per Service port, round-robin over ready endpoints.

In-cluster DNS names do not resolve on the host, so each Service with a selector gets a stable
local port (kept in ``<state>/kubelet/service-ports.json`` across kubelet restarts) that forwards
raw TCP to its ready endpoints: with the API emulator, the Deployment replicas whose pod labels
match the selector; as a node of the real control plane, the ready endpoints of the Service's
EndpointSlices (written by kube-controller-manager), like kube-proxy. The URL of the
first port is written to the annotation ``sandbox.modelops.io/url`` of the Service (all ports,
by port name or number, as JSON in ``sandbox.modelops.io/urls``); ``modelops sandbox url``
prints it. A connection arriving while no replica is ready is closed at once (like a refused
connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from .. import procs
from ..client import SERVICES, ApiError, NotFoundError
from .common import KubeletContext
from .informer import Informer

log = logging.getLogger("modelops.sandbox.kubelet")

#: Annotation holding the local URL of a Service's first port.
ANN_URL = "sandbox.modelops.io/url"
#: Annotation holding a JSON object: port name (or number) → local URL.
ANN_URLS = "sandbox.modelops.io/urls"


def port_key(port: Mapping[str, Any]) -> str:
    """The name of a Service port, or its number when unnamed."""
    return str(port.get("name") or port.get("port"))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


Backend = tuple[str, int]  # (address, port)
#: ``(namespace, service, service port) → ready backends``.
BackendsFor = Callable[[str, str, Mapping[str, Any]], list[Backend]]


def slice_backends(slices: Informer) -> BackendsFor:
    """Backends from EndpointSlices: ready endpoints of the slices labelled with the Service's name,
    at the slice port whose name is the Service port's name, each pod IP mapped to the loopback
    address its process listens on (:func:`.node.loopback_for`)."""
    from .node import loopback_for

    def backends(namespace: str, service: str, port: Mapping[str, Any]) -> list[Backend]:
        wanted = str(port.get("name") or "")
        out: list[Backend] = []
        for (ns, _), eps in slices.items():
            labels = (eps.get("metadata") or {}).get("labels") or {}
            if ns != namespace or labels.get("kubernetes.io/service-name") != service:
                continue
            number = next((p.get("port") for p in eps.get("ports") or [] if str(p.get("name") or "") == wanted), None)
            if number is None:
                continue
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                out += [(loopback_for(str(address)), int(number)) for address in endpoint.get("addresses") or []]
        return sorted(out)

    return backends


class Forwarder:
    """A TCP listener on ``127.0.0.1:local_port`` that forwards each connection to one backend."""

    def __init__(self, local_port: int, backends: Callable[[], list[Backend]]) -> None:
        self.local_port = local_port
        self.backends = backends
        self.server: asyncio.Server | None = None
        self._next = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local_port>``."""
        return f"http://127.0.0.1:{self.local_port}"

    async def start(self) -> None:
        """Listen (raises OSError when the port is taken)."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.local_port)

    async def stop(self) -> None:
        """Stop listening (open connections are left to finish)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        targets = self.backends()
        for attempt in range(len(targets)):
            host, port = targets[(self._next + attempt) % len(targets)]
            try:
                pair = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self._next = (self._next + attempt + 1) % max(len(targets), 1)
            return pair
        return None

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            backend = await self._connect()
            if backend is None:
                return
            backend_reader, backend_writer = backend
            try:
                await asyncio.gather(_pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer))
            finally:
                backend_writer.close()
        finally:
            client_writer.close()


class ServiceController:
    """Keeps one :class:`Forwarder` per Service port and the URL annotations current."""

    def __init__(self, ctx: KubeletContext, informer: Informer, backends_for: BackendsFor) -> None:
        self.ctx = ctx
        self.informer = informer
        self.backends_for = backends_for
        self.forwarders: dict[tuple[str, str, str], Forwarder] = {}
        self.ports_file = ctx.config.state_dir / "kubelet" / "service-ports.json"
        self.saved_ports: dict[str, int] = self._load_ports(self.ports_file)
        self.wake = asyncio.Event()
        informer.listeners.append(lambda key: self.wake.set())

    @staticmethod
    def _load_ports(path: Path) -> dict[str, int]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_ports(self) -> None:
        self.ports_file.parent.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps(self.saved_ports, indent=1, sort_keys=True))

    def _backends(self, namespace: str, name: str, key: str) -> Callable[[], list[Backend]]:
        def backends() -> list[Backend]:
            svc = self.informer.get(namespace, name) or {}
            port = next((p for p in (svc.get("spec") or {}).get("ports") or [] if port_key(p) == key), None)
            return self.backends_for(namespace, name, port) if port is not None else []

        return backends

    async def run(self) -> None:
        """Reconcile on every Service change (and every 5 s)."""
        await self.informer.synced.wait()
        while True:
            self.wake.clear()
            await self.reconcile()
            # Also re-check every few seconds: an annotation write may have failed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 5.0)

    async def reconcile(self) -> None:
        """Start and stop forwarders, then write the URL annotations that differ."""
        wanted: set[tuple[str, str, str]] = set()
        for (namespace, name), svc in self.informer.items():
            spec = svc.get("spec") or {}
            if spec.get("type") == "ExternalName" or not spec.get("selector"):
                continue
            urls: dict[str, str] = {}
            for port in spec.get("ports") or []:
                key = (namespace, name, port_key(port))
                wanted.add(key)
                forwarder = self.forwarders.get(key)
                if forwarder is None:
                    forwarder = await self._start_forwarder(key)
                    if forwarder is None:
                        continue
                urls[key[2]] = forwarder.url
            if urls:
                await self._annotate(svc, urls)
        for key in [k for k in self.forwarders if k not in wanted]:
            await self.forwarders.pop(key).stop()
            self.saved_ports.pop("/".join(key), None)
            self._save_ports()

    async def _start_forwarder(self, key: tuple[str, str, str]) -> Forwarder | None:
        saved = self.saved_ports.get("/".join(key))
        for candidate in (procs.free_port(saved), procs.free_port()):
            forwarder = Forwarder(candidate, self._backends(*key))
            try:
                await forwarder.start()
            except OSError as exc:
                log.warning("service %s/%s port %s: cannot listen on %d: %s", *key, candidate, exc)
                continue
            self.forwarders[key] = forwarder
            self.saved_ports["/".join(key)] = candidate
            self._save_ports()
            log.info("service %s/%s port %s → %s", key[0], key[1], key[2], forwarder.url)
            return forwarder
        return None

    async def _annotate(self, svc: Mapping[str, Any], urls: dict[str, str]) -> None:
        meta = svc.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        first = next(iter(urls.values()))
        wanted = {ANN_URL: first, ANN_URLS: json.dumps(urls, sort_keys=True)}
        if all(annotations.get(k) == v for k, v in wanted.items()):
            return
        try:
            await self.ctx.api.patch(SERVICES, meta["name"], {"metadata": {"annotations": wanted}}, meta["namespace"])
        except NotFoundError:
            pass
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("cannot annotate service %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)

    async def shutdown(self) -> None:
        """Stop every forwarder."""
        for forwarder in self.forwarders.values():
            await forwarder.stop()
