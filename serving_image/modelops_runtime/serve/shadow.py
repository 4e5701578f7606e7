"""The shadow sender: a process of its own per serving process, which sends the shadow copies.

A copy's HTTP exchange with the candidate, reading its answer and comparing its predictions with the
incumbent's cost about 0.5 ms of CPU per 1-row copy with aiohttp (docs/rollout.md, "Cost of
shadowing"). Run on the serving process's event loop, that work delays the next clients' requests
whenever it runs; in a process of its own it runs on another core when the pod has one, and the
serving process only writes each copy to a pipe and reads back its outcome.

**Serving process** (:class:`ShadowSender`): starts ``python -m modelops_runtime.serve.shadow`` with
the router setting as its argument, writes copies to its stdin and reads outcomes from its stdout.
Never blocks: copies beyond ``queue_size + concurrency`` not yet answered, or while more than
:data:`WRITE_BUFFER_LIMIT` bytes wait in the pipe, are refused (the router counts them as dropped).
A sender that exits by itself is started again (after 1 s, doubling to 30 s while it keeps dying
young); its copies in flight are reported dropped.

**Sender process** (:func:`main`): reads copies, queues at most ``queue_size`` and
:data:`QUEUE_BYTES_LIMIT` of bodies (more are reported dropped), sends them with ``concurrency``
tasks, and writes one outcome per copy. It runs at the lowest CPU priority (``SCHED_IDLE``,
:func:`yield_cpu`): where it shares a CPU with its serving process (a pod limited to one CPU), it
takes only the time the serving process leaves, and copies it cannot send in time are dropped rather
than clients delayed. Ends when its stdin closes (the serving process stops, or died): copies in
flight are finished and reported (to nobody, quietly, when the serving process is gone), queued ones
reported dropped. It runs in a process group of its own (in its serving process's session): a
terminal's Ctrl-C or a kill of the serving process's group does not reach it (not even in the second
it takes to start), and it ignores SIGINT and SIGTERM sent to it: the serving process, which drains
first, closes its stdin when done. It ignores SIGTTOU too: a background job of the serving
process's terminal, it would be stopped at its first log line there under ``stty tostop``.

Wire format. To the sender, per copy: ``!II`` (lengths of meta and body), then the meta
(JSON: ``k`` the copy's key, ``path``, ``headers``, ``incumbent`` the incumbent's predictions) and
the request body as the client sent it (decompressed). From the sender, per copy, a JSON line:
``{"k", "dropped": true}``, or ``{"k", "s": round-trip seconds, "p": the candidate's predictions or
null when it failed, "a": agreeing rows, "d": disagreeing rows}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelops.contract import RouterConfig

from . import candidate

log = logging.getLogger(__name__)

_FRAME = struct.Struct("!II")
#: Restart back-off of a sender that exits by itself (s): first, and at most.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
#: A sender that ran this long (s) before exiting is restarted after the first back-off again.
RESTART_RESET_SECONDS = 60.0
#: Longest outcome line read (bytes): room for the predictions of the largest request the server
#: accepts (``max_rows``, 100,000 by default: a few MiB of JSON).
LINE_LIMIT = 2**26
#: The sender queues request bodies of at most this many bytes in all (more are reported dropped).
QUEUE_BYTES_LIMIT = 2**26
#: Copies are refused while more bytes than this wait in the sender's pipe (a sender that does not keep
#: up reading: starved of CPU, or hung), so they never hold more of the serving process's memory than
#: this and one copy (a request body is at most ``max_body_bytes``, 32 MiB by default).
WRITE_BUFFER_LIMIT = 2**24


@dataclass
class Outcome:
    """What became of one copy: ``dropped`` (never sent), else the round trip ``seconds`` and the
    candidate's ``predictions`` (``(n_rows,)`` objects; None when it failed), ``agree``/``disagree`` rows;
    ``context``: what :meth:`ShadowSender.send` was given with the copy."""

    key: int
    dropped: bool = False
    seconds: float = 0.0
    predictions: np.ndarray | None = None
    agree: int = 0
    disagree: int = 0
    context: Any = None

    @classmethod
    def from_line(cls, line: bytes) -> Outcome:
        """Read one of the sender's lines. Raises orjson.JSONDecodeError or KeyError on a bad line."""
        raw = orjson.loads(line)
        if raw.get("dropped"):
            return cls(raw["k"], dropped=True)
        values = raw["p"]
        predictions = None if values is None else np.array(values, dtype=object)
        return cls(raw["k"], seconds=raw["s"], predictions=predictions, agree=raw["a"], disagree=raw["d"])


class ShadowSender:
    """The serving process's side: hands copies to the sender process, gives back their outcomes.

    Args:
        config: the router setting (shadow mode).
        on_outcome: called on the event loop with each copy's :class:`Outcome` (also for the copies
            in flight when a sender exits: dropped).
        command: the sender's command line without its arguments (the setting, the log level).
    """

    def __init__(
        self,
        config: RouterConfig,
        on_outcome: Callable[[Outcome], None],
        command: tuple[str, ...] = (sys.executable, "-m", __name__),
    ) -> None:
        self.config = config
        self.on_outcome = on_outcome
        self.command = command
        self.limit = config.queue_size + config.concurrency
        self.restarts = 0
        #: Copies handed over and not yet answered: key → the caller's context.
        self._pending: dict[int, Any] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = asyncio.Event()

    async def start(self) -> None:
        """Start the sender process and the task that reads its outcomes (and restarts it). A sender
        the system refuses to start is tried again after the restart back-off (copies dropped meanwhile)."""
        self._stop_requested.clear()
        await self._spawn()
        self._task = asyncio.create_task(self._run())

    def send(
        self, key: int, path: str, headers: dict[str, str], body: bytes, incumbent: np.ndarray, context: Any = None
    ) -> bool:
        """Hand one copy to the sender (``context`` comes back in its :class:`Outcome`); False when it
        was not taken (too many not yet answered, more than :data:`WRITE_BUFFER_LIMIT` bytes waiting in
        the pipe, no sender running). Does not block: the bytes go to the pipe, or to the transport's
        buffer."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing() or len(self._pending) >= self.limit:
            return False
        if process.stdin.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return False
        meta = orjson.dumps(  # the predictions as the incumbent's response encodes them (protocol.py)
            {"k": key, "path": path, "headers": headers, "incumbent": incumbent.tolist()},
            default=_plain,
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        process.stdin.write(_FRAME.pack(len(meta), len(body)) + meta + body)
        self._pending[key] = context
        return True

    async def stop(self) -> None:
        """Close the sender's input and wait for the outcomes of the copies in flight (at most the
        router's ``timeout_seconds`` and 5 s more; then the sender is killed, its copies dropped)."""
        self._stop_requested.set()
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.timeout_seconds + 5.0)
            except TimeoutError:
                log.warning("shadow sender did not finish its copies in time; killing it")
                if (current := self._process) is not None and current.returncode is None:
                    current.kill()
                await self._task
            self._task = None

    async def _spawn(self) -> bool:
        """Start a sender process; False when none could be started (logged; tried again after the
        restart back-off): the system refused the process (a pids or memory limit)."""
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                self.config.model_dump_json(),
                logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
                # A process group of its own: a terminal's Ctrl-C, sent to the foreground group, would
                # kill it while it imports, before it can ignore SIGINT; it ends when its input closes
                # instead. Not a session of its own: outside a container cgroup a session is an
                # autogroup (sched(7)) that competes with the server's at equal weight, whatever the
                # sender's SCHED_IDLE. (uvloop, the server's event loop, has no ``process_group``.)
                preexec_fn=_own_process_group,
            )
        except (OSError, subprocess.SubprocessError) as exc:  # SubprocessError: the child's setpgid failed
            log.error("could not start the shadow sender (copies are dropped until it runs): %s", exc)
            return False
        return True

    async def _run(self) -> None:
        delay = RESTART_FIRST_SECONDS
        while True:
            started = time.monotonic()
            if self._process is not None:  # else it could not be started: try again after the back-off
                await self._read_outcomes()
                code = await self._process.wait()
                self._process = None  # copies are refused (dropped) until a sender runs again
                for key, context in sorted(self._pending.items()):
                    self.on_outcome(Outcome(key, dropped=True, context=context))
                self._pending.clear()
                if self._stop_requested.is_set():
                    return
                if time.monotonic() - started >= RESTART_RESET_SECONDS:
                    delay = RESTART_FIRST_SECONDS
                log.error("shadow sender exited with code %s; starting it again in %.0f s", code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_SECONDS)
            if self._stop_requested.is_set():
                return
            if not await self._spawn():
                continue
            self.restarts += 1
            if self._stop_requested.is_set():  # stop() came while it started: nothing to send
                assert self._process is not None and self._process.stdin is not None
                self._process.stdin.close()

    async def _read_outcomes(self) -> None:
        """Read outcomes until the sender's output ends (it exited, or was killed here)."""
        process = self._process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line beyond LINE_LIMIT: the sender is broken, start another
                log.error("shadow sender wrote a line longer than %d bytes; killing it", LINE_LIMIT)
                process.kill()
                return
            if not line:
                return
            try:
                outcome = Outcome.from_line(line)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.error("shadow sender wrote an unreadable line: %r", line[:200])
                continue
            if outcome.key in self._pending:
                outcome.context = self._pending.pop(outcome.key)
                self.on_outcome(outcome)


def _plain(value: Any) -> Any:
    """numpy scalars in predictions as Python values (orjson's ``default``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# ------------------------------------------------------------------------------- sender process


async def _send_copies(config: RouterConfig) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = sys.stdout.buffer
    queue: asyncio.Queue[tuple[dict[str, Any], bytes] | None] = asyncio.Queue(config.queue_size)
    queued = 0  # bytes of the bodies in the queue
    base = config.url.rstrip("/")

    def emit(record: dict[str, Any]) -> None:
        try:
            out.write(orjson.dumps(record, default=_plain) + b"\n")
            out.flush()
        except BrokenPipeError:  # the serving process is gone: nobody reads outcomes; finish quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())

    async def sender(client: Any) -> None:
        nonlocal queued
        while (item := await queue.get()) is not None:
            meta, body = item
            queued -= len(body)
            try:
                emit(await _exchange(client, base, meta, body))
            except Exception:  # a sender task must survive any one copy: report it failed
                log.exception("shadow copy %s failed", meta.get("k"))
                emit({"k": meta["k"], "s": 0.0, "p": None, "a": 0, "d": 0})

    async with candidate.client_session(config.timeout_seconds) as client:
        tasks = [asyncio.create_task(sender(client)) for _ in range(config.concurrency)]
        while True:
            try:
                sizes = await reader.readexactly(_FRAME.size)
                meta_size, body_size = _FRAME.unpack(sizes)
                meta = orjson.loads(await reader.readexactly(meta_size))
                body = await reader.readexactly(body_size)
            except asyncio.IncompleteReadError:
                break  # stdin closed: the serving process is stopping (or gone)
            if queue.full() or (queued and queued + len(body) > QUEUE_BYTES_LIMIT):
                emit({"k": meta["k"], "dropped": True})
            else:
                queue.put_nowait((meta, body))
                queued += len(body)
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                emit({"k": item[0]["k"], "dropped": True})
        for _ in tasks:
            await queue.put(None)
        await asyncio.gather(*tasks)


async def _exchange(client: Any, base: str, meta: dict[str, Any], body: bytes) -> dict[str, Any]:
    """Send one copy; its outcome record."""
    headers = meta["headers"]
    incumbent = np.array(meta["incumbent"], dtype=object)
    sent = time.perf_counter()
    reply = await candidate.post(client, base + meta["path"], body, headers)
    seconds = time.perf_counter() - sent
    predictions = candidate.answer(reply, len(incumbent))
    if predictions is None:
        return {"k": meta["k"], "s": seconds, "p": None, "a": 0, "d": 0}
    agree, disagree = candidate.agreement(predictions, incumbent)
    return {"k": meta["k"], "s": seconds, "p": predictions.tolist(), "a": agree, "d": disagree}


def _own_process_group() -> None:
    """In the forked child before exec: make it the leader of a new process group (setpgid(2))."""
    os.setpgid(0, 0)


def yield_cpu() -> str:
    """Put this process at the lowest CPU priority: ``SCHED_IDLE`` (Linux; it runs only when no other
    process of the pod wants the CPU), else niceness 19. Returns which, for the log.

    So a pod short of CPU drops shadow copies (``outcome="dropped"``) instead of delaying its clients.
    Lowering one's own priority needs no privilege (sched(7)).
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    with contextlib.suppress(OSError):
        os.nice(19 - os.nice(0))
    return f"niceness {os.nice(0)}"


def main(argv: list[str] | None = None) -> int:
    """The sender process: ``python -m modelops_runtime.serve.shadow '<RouterConfig JSON>' [LEVEL]``
    (the serving process's log level, INFO by default)."""
    # First, before anything is written to stderr: in a process group of its own the sender is a
    # background job of its serving process's terminal (if any), and under ``stty tostop`` such a job
    # is stopped by SIGTTOU at its first write there unless it ignores it (termios(3), TOSTOP). Set
    # here, not before exec: uvloop's libuv resets every signal's disposition in the child.
    for ignored in (signal.SIGINT, signal.SIGTERM, signal.SIGTTOU):
        signal.signal(ignored, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    config = RouterConfig.model_validate_json(args[0])
    level = args[1] if len(args) > 1 else "INFO"
    priority = yield_cpu()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s [shadow sender] %(name)s: %(message)s", stream=sys.stderr
    )
    log.info("sending shadow copies to %s at %s CPU priority", config.url, priority)
    asyncio.run(_send_copies(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
