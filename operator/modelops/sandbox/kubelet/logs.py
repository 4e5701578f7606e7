"""The node's log endpoint: what ``kubectl logs`` reaches through kube-apiserver.

kube-apiserver proxies ``GET /api/v1/namespaces/<ns>/pods/<pod>/log`` to the node's
``https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>``
with its kubelet client certificate. This server answers that path from the pod log files
(:mod:`.pods`) with ``tailLines``, ``limitBytes`` and ``follow``. It serves TLS with a certificate
of the sandbox CA; like a kubelet started without ``--client-ca-file`` it does not check the client
(it listens on 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from aiohttp import web

from .. import procs
from ..controlplane.pki import Pki, ensure_server_cert

log = logging.getLogger("modelops.sandbox.kubelet")


def tail_lines(data: bytes, count: int) -> bytes:
    """The last ``count`` lines of ``data`` (all of it when it has fewer)."""
    if count < 0:
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-count:]) if count else b""


class LogServer:
    """HTTPS ``/containerLogs`` on 127.0.0.1 (``port`` 0: a free one, see :attr:`port` after start)."""

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.state_dir = state_dir
        self.port = port
        self._runner: web.AppRunner | None = None

    def _log_file(self, namespace: str, pod: str, container: str) -> Path:
        return self.state_dir / "kubelet" / "pods" / namespace / pod / f"{container}.log"

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        path = self._log_file(info["namespace"], info["pod"], info["container"])
        if not path.is_file():
            raise web.HTTPNotFound(text=f"no log for container {info['container']!r} of pod "
                                        f"{info['namespace']}/{info['pod']} on this node")
        query = request.query
        try:
            tail = int(query.get("tailLines", "-1"))
            limit = int(query.get("limitBytes", "0"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"tailLines and limitBytes must be integers: {exc}") from exc
        data = tail_lines(path.read_bytes(), tail)
        if limit > 0:
            data = data[:limit]
        if query.get("follow") not in ("true", "1"):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        offset = path.stat().st_size
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:  # until the client goes away (kubectl logs -f is ended with Ctrl-C)
                await asyncio.sleep(0.5)
                size = path.stat().st_size if path.exists() else 0
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        await response.write(f.read(size - offset))
                    offset = size
        return response

    async def start(self) -> None:
        """Listen (TLS certificate made on first use under ``<state>/pki``)."""
        cert, key = ensure_server_cert(Pki(self.state_dir / "pki"), "kubelet", ["127.0.0.1", "localhost"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = procs.free_port(self.port or None)
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        log.info("log endpoint on https://127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
