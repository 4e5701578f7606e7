"""HTTP load generators for the serving benchmark: ``wrk`` when installed, else an asyncio client.

Both send the same pre-encoded POST over keep-alive connections on loopback for a fixed duration
(closed loop: each connection sends its next request when the previous answer arrived) and report
requests/s, latency percentiles (ms), error counts and the generator's own CPU seconds.

The asyncio client also has an open-loop mode (``rate``, requests/s; ``wrk`` has none): request *i*
is due at ``start + i / rate`` whatever the answers before it; the first free connection sends it
at its due time (later when every connection is busy), and its latency is measured from the due
time, not from the send. A server that stalls therefore counts the wait of every request that
should have been sent meanwhile (no coordinated omission, as in wrk2).

- ``wrk`` (Debian package ``wrk``; ``apt-get install -y wrk``): one thread, a Lua script sets the
  request and prints exact percentiles as JSON in ``done()``.
- The asyncio client (``python -m benchmarks.loadgen load ...``, uvloop when importable) runs in
  its own process, so it never shares the GIL with the driver.

:func:`ceiling` measures a generator against a trivial server that answers a fixed response
(``python -m benchmarks.loadgen echo``): the requests/s a generator reaches there is its own limit
on this machine, reported beside the real numbers to show it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import Placement, background, free_port, percentile, run_child

WRK_ENV = "BENCH_WRK"


@dataclass
class LoadResult:
    """One load run: ``requests`` completed (2xx) in ``duration_s``; latencies of those in ms."""

    generator: str
    connections: int
    duration_s: float
    requests: int
    errors: int
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    generator_cpu_s: float
    #: open loop: the requests/s asked for (None: closed loop); ``late`` requests were sent more than
    #: 1 ms after their due time (every connection busy, or the client itself late); ``lag_p99_ms``:
    #: the 99th percentile of send time minus due time (the client's own delay is part of the latency).
    rate: float | None = None
    late: int = 0
    lag_p99_ms: float | None = None
    #: every answered request's latency (ms), when asked for (``raw``)
    latencies_ms: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        return asdict(self)


def wrk_path() -> str | None:
    """Path of ``wrk`` (``$BENCH_WRK`` or PATH), or None when it is not installed."""
    explicit = os.environ.get(WRK_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("wrk")


def choose(preference: str = "auto") -> str:
    """``wrk`` or ``python`` for ``preference`` in auto|wrk|python; ValueError when wrk is asked but missing."""
    if preference == "python":
        return "python"
    if wrk_path() is not None:
        return "wrk"
    if preference == "wrk":
        raise ValueError("wrk is not installed (apt-get install -y wrk, or set $BENCH_WRK); use --loadgen python")
    return "python"


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "{content_type}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "errors": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration: float,
    timeout_s: float = 10.0,
    placement: Placement | None = None,
) -> LoadResult:
    """Run ``wrk -t1`` for ``duration`` seconds (rounded up to whole seconds, wrk's resolution), where
    ``placement`` says."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    seconds = max(1, round(duration))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.format(body=body.decode(), content_type=content_type))
    try:
        argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s:g}s", "-s", script.name, url]
        child = run_child(argv, timeout=seconds + timeout_s + 30, placement=placement).check("wrk")
    finally:
        os.unlink(script.name)
    line = next((x for x in child.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{child.stdout}\n{child.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    elapsed = data["duration_us"] / 1e6
    ok = max(0, data["requests"] - data["errors"])
    return LoadResult(
        generator="wrk",
        connections=connections,
        duration_s=elapsed,
        requests=ok,
        errors=data["errors"],
        rps=ok / elapsed if elapsed else 0.0,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
        generator_cpu_s=child.cpu_s,
    )


def run_python(
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration: float,
    timeout_s: float = 10.0,
    rate: float | None = None,
    placement: Placement | None = None,
    raw: bool = False,
) -> LoadResult:
    """Run the asyncio load generator in a child process (where ``placement`` says); open loop at ``rate``
    requests/s when set (see the module docstring); ``raw``: with every latency (``latencies_ms``)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".body", delete=False) as handle:
        handle.write(body)
    try:
        argv = [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            "load",
            "--url",
            url,
            "--body-file",
            handle.name,
            "--content-type",
            content_type,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
            "--timeout",
            str(timeout_s),
            *(["--rate", str(rate)] if rate is not None else []),
            *(["--raw"] if raw else []),
        ]
        here = Path(__file__).resolve().parents[1]
        child = run_child(argv, timeout=duration + timeout_s + 60, cwd=here, placement=placement)
        child.check("python load generator")
    finally:
        os.unlink(handle.name)
    data = json.loads(child.stdout.strip().splitlines()[-1])
    return LoadResult(**data)


def run_load(
    generator: str,
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration: float,
    *,
    rate: float | None = None,
    placement: Placement | None = None,
    raw: bool = False,
) -> LoadResult:
    """Run ``generator`` (``wrk`` or ``python``) against ``url``, where ``placement`` says.

    ``rate`` (requests/s) asks for the open loop and ``raw`` for every latency, which only the
    asyncio client has: it is used then whatever ``generator`` says.
    """
    if generator == "wrk" and rate is None and not raw:
        return run_wrk(url, body, content_type, connections, duration, placement=placement)
    return run_python(url, body, content_type, connections, duration, rate=rate, placement=placement, raw=raw)


def ceiling(generator: str, body: bytes, content_type: str, connections: int, duration: float) -> LoadResult:
    """The generator's own limit: the same load against the fixed-response server (``echo``)."""
    from .common import wait_http

    port = free_port()
    log = Path(tempfile.gettempdir()) / f"bench-echo-{port}.log"
    argv = [sys.executable, "-m", "benchmarks.loadgen", "echo", "--port", str(port)]
    with background(argv, log=log, cwd=Path(__file__).resolve().parents[1]) as process:
        wait_http(f"http://127.0.0.1:{port}/ping", process, 30, log)
        result = run_load(generator, f"http://127.0.0.1:{port}/invocations", body, content_type, connections, duration)
    log.unlink(missing_ok=True)
    return result


# -- the asyncio client ---------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); returns the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


class _Connection:
    """A keep-alive connection of the asyncio client; reopened after a failed exchange."""

    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.host, self.port, self.reader, self.writer = host, port, reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(host, port, reader, writer)

    async def exchange(self, request: bytes, timeout: float) -> int | None:
        """Send ``request`` and read the answer: its status, None on a timeout or a broken connection."""
        self.writer.write(request)
        try:
            return await asyncio.wait_for(_read_response(self.reader), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            return None

    def close(self) -> None:
        self.writer.close()


def _record(status: int | None, seconds: float, latencies: list[float], errors: list[int]) -> None:
    """A 2xx answer's latency, or an error (1 for no answer, else the status)."""
    if status is not None and 200 <= status < 300:
        latencies.append(seconds)
    else:
        errors.append(1 if status is None else status)


async def _connection(
    connection: _Connection,
    request: bytes,
    deadline: float,
    timeout: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    """One connection of the closed loop: the next request as soon as the previous answer arrived."""
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = await connection.exchange(request, timeout)
            finished = time.perf_counter()
            if status is not None and finished > deadline:
                break
            _record(status, finished - started, latencies, errors)
    finally:
        connection.close()


class _Schedule:
    """Due times of an open loop: request *i* is due at ``start + i / rate`` (s, ``perf_counter``)."""

    def __init__(self, start: float, rate: float) -> None:
        self.start = start
        self.rate = rate
        self.next = 0
        self.late = 0
        self.lags: list[float] = []

    def take(self) -> float:
        """The due time of the next request not yet taken by a connection."""
        due = self.start + self.next / self.rate
        self.next += 1
        return due


async def _paced_connection(
    connection: _Connection,
    request: bytes,
    deadline: float,
    timeout: float,
    schedule: _Schedule,
    latencies: list[float],
    errors: list[int],
) -> None:
    """One connection of the open loop (opened before the schedule starts): take the next due
    request, send it at its due time (at once when late), record its latency from the due time."""
    try:
        while (due := schedule.take()) < deadline:
            while (wait := due - time.perf_counter()) > 0:  # never early: a loop's timers may round to 1 ms
                await asyncio.sleep(wait)
            lag = time.perf_counter() - due
            schedule.lags.append(lag)
            if lag > 0.001:
                schedule.late += 1
            status = await connection.exchange(request, timeout)
            _record(status, time.perf_counter() - due, latencies, errors)
    finally:
        connection.close()


async def load(
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    duration: float,
    timeout: float,
    rate: float | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Load with ``connections`` keep-alive connections for ``duration`` seconds: closed loop, or
    open loop at ``rate`` requests/s (every request due within ``duration`` is sent; see the module
    docstring)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    opened = await asyncio.gather(*(_Connection.open(host, port) for _ in range(connections)))
    started = time.perf_counter()
    deadline = started + duration
    schedule = _Schedule(started, rate) if rate is not None else None
    await asyncio.gather(
        *(
            _connection(c, request, deadline, timeout, latencies, errors)
            if schedule is None
            else _paced_connection(c, request, deadline, timeout, schedule, latencies, errors)
            for c in opened
        )
    )
    elapsed = max(time.perf_counter() - started, 1e-9)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        generator="python",
        connections=connections,
        duration_s=elapsed,
        requests=len(latencies),
        errors=len(errors),
        rps=len(latencies) / elapsed,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms) if ms else None,
        generator_cpu_s=cpu,
        rate=rate,
        late=schedule.late if schedule is not None else 0,
        lag_p99_ms=percentile([x * 1000 for x in schedule.lags], 99) if schedule is not None else None,
        latencies_ms=ms if raw else None,
    ).to_dict()


# -- the fixed-response server --------------------------------------------------------------------


_ECHO_BODY = b'{"predictions": [0]}'
_ECHO_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_ECHO_BODY)).encode()
    + b"\r\n\r\n"
    + _ECHO_BODY
)


async def _echo_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(_ECHO_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def echo(port: int) -> None:
    """Answer every request on 127.0.0.1:``port`` with a fixed 200 JSON response, forever."""
    server = await asyncio.start_server(_echo_client, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.loadgen load|echo ...`` (used by :func:`run_python` and :func:`ceiling`)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    sub = parser.add_subparsers(dest="command", required=True)
    p_load = sub.add_parser("load", help="closed-loop (or --rate: open-loop) POST load; prints a LoadResult as JSON")
    p_load.add_argument("--url", required=True)
    p_load.add_argument("--body-file", required=True)
    p_load.add_argument("--content-type", default="application/json")
    p_load.add_argument("--connections", type=int, default=1)
    p_load.add_argument("--duration", type=float, default=5.0)
    p_load.add_argument("--timeout", type=float, default=10.0)
    p_load.add_argument("--rate", type=float, help="open loop: requests/s due at fixed intervals")
    p_load.add_argument("--raw", action="store_true", help="print every latency too (latencies_ms)")
    p_echo = sub.add_parser("echo", help="fixed-response HTTP server on 127.0.0.1")
    p_echo.add_argument("--port", type=int, required=True)
    ns = parser.parse_args(argv)
    loop = _new_loop()
    try:
        if ns.command == "echo":
            loop.run_until_complete(echo(ns.port))
            return 0
        body = Path(ns.body_file).read_bytes()
        result: Mapping[str, Any] = loop.run_until_complete(
            load(ns.url, body, ns.content_type, ns.connections, ns.duration, ns.timeout, ns.rate, ns.raw)
        )
    finally:
        loop.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
