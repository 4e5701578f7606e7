"""How a Job's pod ended, from the pods' observed container states (pure)."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Termination:
    """The last termination of a container: exit code, signal name (when killed by one), reason."""

    exit_code: int
    signal: str | None
    reason: str | None

    def describe(self, container: str) -> str:
        """One line, e.g. ``container train was killed by SIGKILL (exit code 137, OOMKilled)``."""
        how = f"was killed by {self.signal}" if self.signal else "exited"
        details = [f"exit code {self.exit_code}", *([self.reason] if self.reason not in (None, "Error") else [])]
        return f"container {container} {how} ({', '.join(details)})"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def termination_of(state: Mapping[str, Any]) -> Termination:
    """Read a ``ContainerStateTerminated``: a signal from its ``signal`` field or from the exit code
    (128 + N as container runtimes report a process killed by signal N; a negative code as a
    local process reports it)."""
    code = int(state.get("exitCode") or 0)
    number = state.get("signal") or (code - 128 if code > 128 else -code if code < 0 else None)
    return Termination(code, _signal_name(int(number)) if number else None, state.get("reason"))


def last_termination(pods: Iterable[Mapping[str, Any]], container: str) -> Termination | None:
    """The most recent termination of ``container`` among ``pods`` (by ``finishedAt``), or None."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            for key in ("state", "lastState"):
                terminated = (status.get(key) or {}).get("terminated")
                if terminated:
                    found.append((str(terminated.get("finishedAt") or ""), terminated))
    if not found:
        return None
    return termination_of(max(found, key=lambda item: item[0])[1])
