"""The sandbox's Kubernetes API server: ``python -m modelops.sandbox.apiserver --port PORT --crds DIR``.

It serves the CRDs found in ``DIR/*.yaml`` and the built-in kinds the operator, kopf and kubectl
use, from memory (state is lost when it stops), over plain HTTP without authentication. Once it
listens it prints exactly one line to stdout, ``READY http://HOST:PORT`` (with the real port
when ``--port 0`` asks for a free one), and it stops cleanly on SIGTERM or SIGINT (exit code 0).
Behaviour and remaining differences from a real kube-apiserver: ``docs/sandbox.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import kmock

from .emulator import ApiEmulator, read_crds

log = logging.getLogger(__name__)


async def serve(
    crds: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    stop: asyncio.Event,
    ready: Callable[[str], None] | None = None,
    history: int = 4096,
) -> None:
    """Serve the emulator until ``stop`` is set.

    Args:
        crds: directory whose ``*.yaml`` CustomResourceDefinitions are served (None: none).
        host: address to listen on.
        port: TCP port; 0 picks a free one.
        stop: set it to stop serving (open watches are ended first).
        ready: called with the server URL (``http://host:port``) once it accepts connections.
        history: watch events kept per resource for resuming watches.
    """
    emulator = ApiEmulator(crds=read_crds(crds) if crds else [], history=history)
    async with emulator, kmock.Server(emulator, host=host, port=port) as server:
        url = f"http://{host}:{server.port}"
        log.info("serving %d resources at %s", len(list(emulator.catalogue)), url)
        if ready is not None:
            ready(url)
        await stop.wait()
        emulator.close_watches()
        await asyncio.sleep(0)


@dataclass
class ApiServerProcess:
    """A running ``python -m modelops.sandbox.apiserver`` process and its URL."""

    process: subprocess.Popen[str]
    url: str

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process, wait up to ``timeout`` seconds (then SIGKILL); return its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return int(self.process.returncode)


def spawn(
    crds: Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    history: int | None = None,
    stderr: IO[Any] | int | None = subprocess.DEVNULL,
    timeout: float = 30.0,
) -> ApiServerProcess:
    """Start the server in a child process and wait for its ``READY`` line.

    Args:
        crds: CRD directory (None: none).
        host, port: where to listen (port 0: a free port).
        history: watch events kept per resource (default: the server's).
        stderr: where the server's log goes (a file, ``subprocess.DEVNULL``...).
        timeout: seconds to wait for ``READY``.

    Raises:
        RuntimeError: the process exited or did not print ``READY`` in time (it is stopped).
    """
    cmd = [sys.executable, "-m", "modelops.sandbox.apiserver", "--host", host, "--port", str(port)]
    if crds is not None:
        cmd += ["--crds", str(crds)]
    if history is not None:
        cmd += ["--history", str(history)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = process.stdout.readline()
            if line.startswith("READY "):
                return ApiServerProcess(process, line.split()[1])
            if not line:
                break
    server = ApiServerProcess(process, "")
    code = server.stop()
    raise RuntimeError(f"the API emulator did not become ready (exit code {code}): {' '.join(cmd)}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelops.sandbox.apiserver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--crds", type=Path, default=None, help="directory of CRD YAML files to serve")
    parser.add_argument("--history", type=int, default=4096, help="watch events kept per resource")
    parser.add_argument("--log-level", default="INFO", help="logging level for stderr (default INFO)")
    return parser


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def ready(url: str) -> None:
        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()

    await serve(args.crds, args.host, args.port, stop=stop, ready=ready, history=args.history)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server process (see the module docstring); returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.crds is not None and not args.crds.is_dir():
        log.error("--crds %s is not a directory", args.crds)
        return 2
    asyncio.run(_main(args))
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
