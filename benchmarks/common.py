"""Shared plumbing of the benchmarks: the machine, statistics, child processes, results.

Memory and CPU of other processes are read from ``/proc`` (Linux), so no extra dependency is
needed: the peak RSS of a child is its ``VmHWM`` (high-water mark of its own address space, read
every 10 ms while it runs), the RSS of a running process tree is sampled from ``VmRSS``, and CPU
time comes from ``/proc/<pid>/stat`` (``utime + stime``) or ``wait4``. ``wait4``'s ``ru_maxrss`` is
not used for memory: Linux carries the parent's high-water mark into a forked child across
``exec``, so a child of a large driver would report the driver's peak.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
MIB = 1024 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")

#: Library versions reported with every result.
LIBRARIES = (
    "mlflow",
    "scikit-learn",
    "numpy",
    "pandas",
    "scipy",
    "pyarrow",
    "evidently",
    "skops",
    "uvicorn",
    "starlette",
    "orjson",
    "kopf",
    "kmock",
    "aiohttp",
    "httpx",
)


# -- the machine ----------------------------------------------------------------------------------


def _meminfo_kib(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, OS, Python, library versions, load average and git commit."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total = _meminfo_kib("MemTotal")
    available = _meminfo_kib("MemAvailable")
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "memory_gib": round(total / 1024 / 1024, 1) if total else None,
        "memory_available_gib": round(available / 1024 / 1024, 1) if available else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git_commit(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def loadavg() -> float:
    """One-minute load average (how busy the shared machine was)."""
    return round(os.getloadavg()[0], 2)


# -- statistics -----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    """Median, or None for no values."""
    return float(statistics.median(values)) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0):
        return None
    return float(numerator) / float(denominator)


def rounded(value: Any, digits: int = 4) -> Any:
    """Round floats (recursively in dicts and lists) for readable JSON."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


@dataclass
class Target:
    """One target of issue 9 and whether this run met it.

    ``value`` is compared with ``limit`` by ``op`` (``>=`` or ``<=``); ``met`` is None when the
    value could not be measured. ``source`` says where the target comes from.
    """

    name: str
    value: float | None
    op: str
    limit: float
    unit: str = ""
    source: str = "issue 9"
    note: str = ""
    met: bool | None = field(default=None)

    def __post_init__(self) -> None:
        if self.value is not None:
            self.met = self.value >= self.limit if self.op == ">=" else self.value <= self.limit


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
    return out


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Current resident memory of ``pid`` and its descendants, bytes."""
    return sum(_status_kib(p, "VmRSS") for p in descendants(pid)) * 1024


def tree_hwm_bytes(pid: int) -> int:
    """Sum of each process's own peak RSS (``VmHWM``) over ``pid`` and its descendants, bytes."""
    return sum(_status_kib(p, "VmHWM") for p in descendants(pid)) * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    return 0.0


@dataclass(frozen=True)
class Placement:
    """Where a child process runs: the CPU cores ``cpus`` (None: any) and its niceness ``nice``
    (None: inherited; below 0 only as root)."""

    cpus: frozenset[int] | None = None
    nice: int | None = None


def place(pid: int, placement: Placement | None) -> None:
    """Apply ``placement`` to ``pid``, every thread of it and of its descendants (``sched_setaffinity``
    and ``setpriority``, both per thread on Linux; threads and processes started later inherit them).
    Called right after a child starts (before it imports numpy and starts its threads), and again
    once it runs."""
    if placement is None or (placement.cpus is None and placement.nice is None):
        return
    for process in descendants(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{process}/task"):
                with contextlib.suppress(OSError):
                    if placement.cpus is not None:
                        os.sched_setaffinity(int(task), placement.cpus)
                    if placement.nice is not None:
                        os.setpriority(os.PRIO_PROCESS, int(task), placement.nice)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) for p in descendants(pid))


class RssSampler:
    """Samples the RSS of a process tree in a thread; ``peak`` is the highest sum seen (bytes)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, tree_rss_bytes(self.pid))


@dataclass
class ChildResult:
    """A finished child process: exit code, output, wall seconds, peak RSS (bytes), CPU seconds."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_bytes: int
    cpu_s: float

    def check(self, what: str) -> ChildResult:
        """Raise RuntimeError with the end of stderr unless the child exited 0."""
        if self.returncode != 0:
            tail = "\n".join((self.stderr or self.stdout).splitlines()[-15:])
            raise RuntimeError(f"{what} exited with {self.returncode}:\n{tail}")
        return self


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
    placement: Placement | None = None,
) -> ChildResult:
    """Run ``argv`` to completion (where ``placement`` says, see :func:`place`); peak RSS = the
    highest ``VmHWM`` sum of its process tree seen while polling every 10 ms (see the module
    docstring), CPU seconds from ``wait4`` (child and reaped children).

    Output goes through temporary files (no pipe deadlock). Kills the child after ``timeout``
    seconds and raises TimeoutError.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True
        )
        place(process.pid, placement)
        deadline = started + timeout
        peak = 0
        while True:
            peak = max(peak, tree_hwm_bytes(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                os.wait4(process.pid, 0)
                raise TimeoutError(f"{argv[0]} did not finish within {timeout:.0f} s")
            time.sleep(0.01)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            peak_rss_bytes=peak,
            cpu_s=usage.ru_utime + usage.ru_stime,
        )


@contextlib.contextmanager
def background(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path,
    cwd: Path | None = None,
    placement: Placement | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own process group for the block (where ``placement`` says, see
    :func:`place`), output to ``log``; SIGTERM then SIGKILL after."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    place(process.pid, placement)
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group of ``process``, SIGKILL it after ``grace`` seconds, reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(5)
    with contextlib.suppress(ProcessLookupError):  # stray children of the group
        os.killpg(process.pid, 9)


def wait_http(url: str, process: subprocess.Popen[bytes] | None, timeout: float, log: Path | None = None) -> float:
    """Poll ``GET url`` until it answers 200; returns seconds waited. Raises RuntimeError on exit/timeout."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - began
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}{tail(log)}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s{tail(log)}")


def tail(log: Path | None, lines: int = 20) -> str:
    """The last lines of a log file, prefixed with a header (empty when absent)."""
    if log is None or not log.exists():
        return ""
    return f"\n--- {log} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def venv_bin() -> Path:
    """The bin directory of the running interpreter (console scripts: modelops-runtime, mlflow)."""
    return Path(sys.executable).parent


def which(name: str) -> str | None:
    """``name`` in this environment's bin directory, else on PATH."""
    local = venv_bin() / name
    return str(local) if local.exists() else shutil.which(name)


# -- profiles -------------------------------------------------------------------------------------


def pyspy_path() -> str | None:
    """``py-spy`` from this environment or PATH (the ``dev`` extra installs it), or None."""
    return which("py-spy")


def summarize_collapsed(
    text: str, keep: str = r"modelops|mlflow|sklearn|pandas|kopf|evidently", top: int = 15
) -> dict[str, Any]:
    """Summarise py-spy's collapsed stacks: inclusive share of the functions matching ``keep``, and leaves.

    Shares are fractions of the sampled (non-idle) time; line numbers are dropped so a function
    counts once per stack.
    """
    import re
    from collections import Counter

    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            re.sub(r":\d+\)$", ")", re.sub(r"\(/.*?(site-packages|operator|serving_image)/", "(", f))
            for f in stack.split(";")
        ]
        for name in set(frames):
            inclusive[name] += n
        leaves[frames[-1]] += n
    pattern = re.compile(keep)
    return {
        "samples": total,
        "inclusive": [
            (k, v / total) for k, v in inclusive.most_common() if pattern.search(k) and not k.startswith("process ")
        ][:top]
        if total
        else [],
        "leaves": [(k, v / total) for k, v in leaves.most_common(top)] if total else [],
    }


def pyspy_record(target: int | Sequence[str], seconds: float | None = None, **summary: Any) -> dict[str, Any] | None:
    """Profile a running pid for ``seconds``, or run ``argv`` under py-spy; None without py-spy.

    Returns :func:`summarize_collapsed` of the samples (100 Hz, non-idle threads, subprocesses included).
    """
    import tempfile

    spy = pyspy_path()
    if spy is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as out:
        path = out.name
    try:
        argv = [spy, "record", "-f", "raw", "-o", path, "--nonblocking", "--subprocesses"]
        if isinstance(target, int):
            argv += ["-p", str(target), "-d", str(max(1, round(seconds or 10)))]
        else:
            argv += ["--", *target]
        child = run_child(argv, timeout=(seconds or 300) + 120)
        if child.returncode != 0 and not Path(path).stat().st_size:
            return {"error": (child.stderr or child.stdout)[-500:]}
        return summarize_collapsed(Path(path).read_text(), **summary)
    finally:
        Path(path).unlink(missing_ok=True)


# -- results --------------------------------------------------------------------------------------


def write_result(name: str, result: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``result`` (plus ``targets`` as dicts) to ``<out_dir>/<name>.json``; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = dict(result)
    doc["targets"] = [asdict(t) if isinstance(t, Target) else t for t in doc.get("targets", [])]
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(rounded(doc), indent=1, sort_keys=False) + "\n")
    return path


def log(message: str) -> None:
    """Progress line on stderr (benchmarks print results as JSON on stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def profile_markdown(profile: dict[str, Any] | None, title: str, top: int = 10) -> list[str]:
    """Markdown lines for a :func:`pyspy_record` summary (nothing when there is none)."""
    if not profile or "inclusive" not in profile:
        return []
    lines = ["", f"{title} (py-spy, {profile['samples']} samples; inclusive share of sampled time):", ""]
    inclusive = [(n, v) for n, v in profile["inclusive"] if not n.startswith("process ")]
    lines += [f"- {100 * share:.0f} % `{name}`" for name, share in inclusive[:top]]
    leaves = ", ".join(
        f"`{name}` {100 * share:.0f} %" for name, share in profile["leaves"][:6] if not name.startswith("process ")
    )
    lines.append(f"- leaves: {leaves}")
    return lines


@contextlib.contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for the block, then restore them.

    ``mlflow.set_*_uri`` also write ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``; both are put back.
    """
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in keys}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None is the documented "unset"
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
