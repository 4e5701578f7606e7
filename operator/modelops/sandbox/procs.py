"""Process bookkeeping shared by the supervisor and the kubelet.

Every process the sandbox starts (components and pod processes) runs in its own process group
(a new session) and carries the environment variable ``MODELOPS_SANDBOX=<state dir>``. Stopping
sends SIGTERM to the group, then SIGKILL after a grace period. :func:`sweep` finds any process
still carrying the marker by reading ``/proc/<pid>/environ`` (Linux), which also protects
against killing an unrelated process that reused a recorded pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Environment variable marking every process of one sandbox; its value is the state dir.
MARKER_ENV = "MODELOPS_SANDBOX"
_PR_SET_PDEATHSIG = 1

_libc: ctypes.CDLL | None = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def marker_value(state_dir: Path) -> str:
    """The marker value for a state dir (its resolved absolute path)."""
    return str(Path(state_dir).resolve())


def pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux), else None."""
    libc = _libc
    if libc is None or not hasattr(libc, "prctl"):
        return None
    prctl = libc.prctl

    def _preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return _preexec


def alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return True


def has_marker(pid: int, marker: str) -> bool:
    """Whether process ``pid`` carries ``MODELOPS_SANDBOX=<marker>`` (False when unreadable)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER_ENV}={marker}".encode() in environ.split(b"\0")


def marked_pids(marker: str) -> list[int]:
    """Pids of all live processes carrying the marker (Linux /proc scan; [] elsewhere)."""
    me = os.getpid()
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    pids = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and int(entry.name) != me and has_marker(int(entry.name), marker):
            pids.append(int(entry.name))
    return pids


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group, ignoring a group that no longer exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def signal_pid(pid: int, sig: int) -> None:
    """Send ``sig`` to one process, ignoring a process that no longer exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_groups(pgids: Iterable[int], grace: float, marker: str | None = None) -> None:
    """SIGTERM each group, wait up to ``grace`` seconds for them to exit, then SIGKILL.

    When ``marker`` is given, a group leader that no longer carries the marker is left alone
    (its pid was reused by an unrelated process).
    """
    groups = [g for g in pgids if alive(g) and (marker is None or has_marker(g, marker))]
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(g) for g in groups):
        time.sleep(0.05)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)


def sweep(marker: str, grace: float = 2.0) -> list[int]:
    """Stop every process still carrying the marker (SIGTERM, grace, SIGKILL); returns their pids."""
    pids = marked_pids(marker)
    for pid in pids:
        signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            signal_pid(pid, signal.SIGKILL)
    return pids


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``: ``preferred`` when bindable, else any."""
    if preferred:
        with socket.socket() as sock:
            try:
                sock.bind((host, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
