"""Several server processes per pod (``ServeConfig.workers`` > 1, ``--workers``): a small supervisor.

The supervisor is the container's main process. It binds the port once, prepares the Prometheus
multiprocess directory, and starts ``workers`` processes (multiprocessing ``spawn``: fresh
interpreters, no fork of a process that runs threads). Each worker is the whole one-process server
(model, uvicorn, metrics, prediction log) serving on the shared listening socket; the kernel gives
each new connection to one of them. The supervisor itself imports neither the model stack nor
scikit-learn (about 30 MiB instead of 300).

- **Metrics** (:mod:`.metrics`): prometheus-client's multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR``
  (the variable's value, emptied at start, else a new directory under ``$TMPDIR``, removed at exit)
  holds each worker's memory-mapped values; any worker answers a scrape with the sums over every
  worker the pod has run. A worker's counts survive its death (the files stay; the values are
  written to the shared mapping as they change, so even SIGKILL loses nothing), so counters never
  go down while the container lives. For each dead worker the supervisor calls
  ``mark_process_dead``, which removes its live-gauge files (the server has no gauges today).
- **Prediction log**: one stream per worker. Worker ``k`` of pod ``p`` writes its own files
  ``p-w<k>-<seq>.parquet`` (``seq``: that process's start time in ms, plus one per file), so workers
  never write to the same file and a replacement never overwrites its predecessor's; readers take
  every file of the partition. A worker killed with SIGKILL loses the rows it had not written yet
  (at most ``log_flush_seconds``); SIGTERM flushes every worker.
- **Readiness** (:class:`~.podstate.WorkerState`): workers share one state byte each. The supervisor
  listens at once; until the first worker has imported the model stack it answers liveness 200 and
  everything else 503 itself (:func:`answer_until_workers_start`), as a loading server does. Then
  every worker accepts connections and answers the health endpoints as the one-process server does;
  the pod is ready only when every worker that accepts connections has its model, so no
  request reaches a worker that is still loading. A **replacement** worker (the previous one died)
  loads its model before it accepts connections (uvicorn starts serving after the load), so the
  pod keeps serving on the others meanwhile, without 503s.
- **Lifecycle**: a worker that dies (killed, crashed) is replaced with the same index, after a
  back-off when it died young (1 s doubling to 30 s). A worker that refuses its model stays up,
  live and not ready, with the refusal on ``/v2/health/ready`` (as the one-process server); every
  worker loads the same model with the same libraries, so they all refuse it. A replacement worker
  that refuses the model its siblings serve exits with 2 (after writing the termination message);
  the supervisor then stops every worker and exits with 2. A worker that exits by itself before it was
  ever ready (a startup failure) stops the pod with its exit code. SIGTERM/SIGINT go to every worker
  (they drain, flush their logs), then the supervisor re-raises the signal, as uvicorn does. Workers
  stop when the supervisor disappears.

Why not uvicorn's own ``--workers`` (its multiprocess supervisor, which also restarts dead
workers): it starts replacements serving before their model is loaded (503s for the length of a
model load), it offers no hook for ``mark_process_dead`` and gives workers no index (log file names,
per-worker readiness). The per-request path is uvicorn's either way.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for_sentinels
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.contract import EXIT_INVALID_INPUT

if TYPE_CHECKING:
    import socket

    from .main import ServeOptions

log = logging.getLogger("modelops_runtime.serve.workers")

#: prometheus-client's multiprocess directory variable (read when prometheus_client is imported).
ENV_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: A worker's shared state byte: not accepting connections (starting, preloading, gone).
SLOT_IDLE = 0
#: Accepting connections, model still loading (the pod is not ready).
SLOT_LOADING = 1
#: Accepting connections with its model loaded.
SLOT_READY = 2
#: Its model loader crashed (liveness fails for the whole pod, as with one process).
SLOT_CRASHED = 3
#: Back-off before replacing a worker that died within :data:`YOUNG_SECONDS` of its start.
MIN_RESTART_DELAY, MAX_RESTART_DELAY, YOUNG_SECONDS = 1.0, 30.0, 30.0
#: Seconds the supervisor waits for the workers after SIGTERM (uvicorn's graceful timeout is 20).
STOP_GRACE_SECONDS = 25.0


@dataclass
class Worker:
    """What a worker process knows about its place in the pod (picklable: handed to the spawned process).

    Attributes:
        index: 0 … count-1, stable across replacements.
        count: workers of the pod.
        slots: one shared state byte per worker (``SLOT_*``), a ``multiprocessing`` RawArray.
        preload: load the model before accepting connections (a replacement worker).
        metrics_dir: the Prometheus multiprocess directory.
        parent_pid: the supervisor (the worker stops when it disappears).
    """

    index: int
    count: int
    slots: Any
    preload: bool
    metrics_dir: str
    parent_pid: int

    def log_writer(self, pod: str) -> str:
        """The prediction log's writer name of this worker in pod ``pod`` (``<pod>-w<index>``)."""
        return f"{pod}-w{self.index}"

    def publish(self, code: int) -> None:
        """Set this worker's state byte."""
        self.slots[self.index] = code

    def others(self) -> list[int]:
        """The state bytes of the other workers."""
        return [self.slots[i] for i in range(self.count) if i != self.index]


def prepare_metrics_dir() -> tuple[str, bool]:
    """The multiprocess directory: ``$PROMETHEUS_MULTIPROC_DIR`` emptied, else a new one (set in the env).

    Returns (path, whether the supervisor created it and removes it at exit).
    """
    given = os.environ.get(ENV_MULTIPROC_DIR)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous container's values (an emptyDir outlives it)
            stale.unlink()
        return str(path), False
    created = tempfile.mkdtemp(prefix="modelops-metrics-")
    os.environ[ENV_MULTIPROC_DIR] = created
    return created, True


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess | None = None
    started: float = 0.0
    restart_at: float | None = None
    delay: float = MIN_RESTART_DELAY
    ever_ready: bool = False
    history: list[int] = field(default_factory=list)


class Supervisor:
    """Starts, watches and replaces the workers of one pod (see the module docstring).

    Args:
        options: the parsed serve options (``options.workers`` processes).
        sock: the bound listening socket the workers share.
        metrics_dir: the Prometheus multiprocess directory.
    """

    def __init__(self, options: ServeOptions, sock: socket.socket, metrics_dir: str) -> None:
        self.options = options
        self.sock = sock
        self.metrics_dir = metrics_dir
        self.count = options.workers
        self._ctx = multiprocessing.get_context("spawn")
        self.slots = self._ctx.RawArray("b", self.count)
        self._workers = [_Slot() for _ in range(self.count)]
        self._stop_signal: int | None = None
        self.exit_code = 0

    @property
    def pids(self) -> list[int | None]:
        """The current worker pids by index (None while one is being replaced)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    def _start(self, index: int) -> None:
        # A replacement loads before accepting connections, unless no other worker serves (then it
        # must answer the health endpoints itself while it loads).
        preload = any(code == SLOT_READY for i, code in enumerate(self.slots) if i != index)
        worker = Worker(index, self.count, self.slots, preload, self.metrics_dir, os.getpid())
        process = self._ctx.Process(
            target=run_worker, args=(self.options, worker, self.sock), name=f"serve-worker-{index}", daemon=False
        )
        process.start()
        slot = self._workers[index]
        slot.process, slot.started, slot.restart_at, slot.ever_ready = process, time.monotonic(), None, False
        log.info("worker %d started (pid %s%s)", index, process.pid, ", loading before accepting" if preload else "")

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the supervisor, if one did."""
        return self._stop_signal

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop_signal = signum

    def run(self) -> int:
        """Run until a signal, a refusal or a startup failure; returns the exit code (after stopping all)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for index in range(self.count):
            self._start(index)
        while self._stop_signal is None and self.exit_code == 0:
            sentinels = [w.process.sentinel for w in self._workers if w.process is not None]
            wait_for_sentinels(sentinels, timeout=0.5)
            self._check()
        self._stop_all()
        return self.exit_code

    def _check(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self._workers):
            process = slot.process
            if process is not None:
                if self.slots[index] == SLOT_READY:
                    slot.ever_ready = True
                if process.is_alive():
                    continue
                self._on_exit(index, slot, process, now)
            elif slot.restart_at is not None and now >= slot.restart_at and self._stop_signal is None:
                self._start(index)

    def _on_exit(self, index: int, slot: _Slot, process: multiprocessing.process.BaseProcess, now: float) -> None:
        from prometheus_client import multiprocess

        code = process.exitcode
        assert code is not None and process.pid is not None
        multiprocess.mark_process_dead(process.pid, self.metrics_dir)
        self.slots[index] = SLOT_IDLE
        slot.process = None
        slot.history.append(code)
        if self._stop_signal is not None:
            return
        if code == EXIT_INVALID_INPUT:
            log.error("worker %d refused its model (exit %d); stopping the pod", index, code)
            self.exit_code = code
            return
        if code > 0 and not slot.ever_ready:
            log.error("worker %d exited with %d before it was ever ready; stopping the pod", index, code)
            self.exit_code = code
            return
        young = now - slot.started < YOUNG_SECONDS
        slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY) if young else MIN_RESTART_DELAY
        wait = slot.delay if young else 0.0
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        log.warning("worker %d (pid %d) ended by %s; replacing it in %.0f s", index, process.pid, how, wait)
        slot.restart_at = now + wait

    def _stop_all(self) -> None:
        running = [w.process for w in self._workers if w.process is not None and w.process.is_alive()]
        for process in running:
            if process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop within %.0f s; killing it", process.pid, STOP_GRACE_SECONDS)
                process.kill()
                process.join()


def supervise(options: ServeOptions) -> int:
    """Run ``options.workers`` server processes on one port until SIGTERM/SIGINT; returns the exit code.

    Ends by re-raising the signal that stopped it (status 143 for SIGTERM, as the one-process server).
    Exit codes otherwise: 2 when a replacement worker refused the model (its termination message is written), 1
    (or the worker's code) when a worker failed before it was ever ready, 1 when the port cannot be bound.
    """
    from .httpserver import uvicorn_config

    metrics_dir, created = prepare_metrics_dir()
    config = uvicorn_config("modelops_runtime:unused", options.limits, host=options.host, port=options.port)
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logs the bind error and exits 1
        return 1
    # Listen at once (as gunicorn does): the address is ours from now on, and connections wait in the
    # backlog for the workers, which take seconds to import the model stack.
    sock.listen(config.backlog)
    supervisor = Supervisor(options, sock, metrics_dir)
    log.info("serving with %d workers on %s:%d (pid %d)", options.workers, options.host, options.port, os.getpid())
    stand_in = threading.Thread(target=answer_until_workers_start, args=(sock, supervisor), daemon=True)
    stand_in.start()
    try:
        code = supervisor.run()
    finally:
        sock.close()
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if supervisor.stop_signal is not None:
        signal.signal(supervisor.stop_signal, signal.SIG_DFL)
        os.kill(os.getpid(), supervisor.stop_signal)
    return code


#: The supervisor's answers while no worker has started: live, not ready (as a loading server).
_STARTING_LIVE = b'{"live":true}'
_STARTING_NOT_READY = b'{"ready":false,"error":"the server processes are starting"}'


def answer_until_workers_start(sock: socket.socket, supervisor: Supervisor) -> None:
    """Answer the connections that arrive before any worker runs its server (a thread of the supervisor).

    Liveness is 200 and everything else 503, as the one-process server answers while it loads, so a
    startup probe does not count the workers' imports (seconds on a busy node) against the pod. Stops
    as soon as a worker has published a state, which it does before it starts accepting connections.
    """
    import select

    while supervisor.stop_signal is None and all(code == SLOT_IDLE for code in supervisor.slots):
        readable, _, _ = select.select([sock], [], [], 0.2)
        if not readable:
            continue
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):  # a worker took it (the socket is non-blocking there)
            continue
        with conn:
            conn.settimeout(2.0)
            try:
                head = conn.recv(65536)
                live = head.startswith(b"GET /v2/health/live ")
                body = _STARTING_LIVE if live else _STARTING_NOT_READY
                status = b"200 OK" if live else b"503 Service Unavailable"
                conn.sendall(
                    b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
                )
            except OSError:
                continue


def run_worker(options: ServeOptions, worker: Worker, sock: socket.socket) -> None:
    """A worker process: the one-process server on the shared socket (spawned by :class:`Supervisor`)."""
    from .main import configure_logging, serve

    configure_logging(options.log_level, f"worker {worker.index}")
    threading.Thread(target=_exit_with_parent, args=(worker.parent_pid,), name="parent-watch", daemon=True).start()
    sys.exit(serve(options, sockets=[sock], worker=worker))


def _exit_with_parent(parent_pid: int) -> None:
    """SIGTERM this worker (drain, flush) when the supervisor is gone (the worker was re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
