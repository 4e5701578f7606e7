"""Control planes compared in one run: the sandbox's API emulator vs the real Kubernetes control plane.

Does the emulator (``--control-plane emulator``: kmock-based, our kubelet also plays the Job,
CronJob and Deployment controllers) still earn its code next to the real one (``--control-plane
real``: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from their Go
modules, our kubelet as the node)? Measured on both, in the same run, so that the load of other
work on the machine hits both alike; read the ratios real / emulator:

1. **Start time**, ``Supervisor.up`` in a fresh state dir (new certificates, new etcd), then
   ``down``: *bare* (``mlflow=False, operator=False``: the API server and the kubelet, what the
   e2e fixture waits for before a test that needs no MLflow) and *full* (``mlflow=True,
   operator=True``). ``repeats`` of each, the control planes interleaved (emulator, real,
   emulator, ...); medians. The bare starts are split into steps by the spawn time of each
   component (a component is spawned once the previous one is ready) and the install step
   (CRDs and the operator's RBAC with kubectl) is timed on its own. After each bare start, the
   RSS and CPU seconds spent so far of every process, then their CPU over ``idle_seconds``.
2. **Latency**, :mod:`benchmarks.operator` phases 1 and 2 (``latency_only``) on each control
   plane: ``count`` ModelVersions created at once, creation → Job p50/p99 for the minimal kopf
   operator (:mod:`benchmarks.baseline_operator`) and for ours, and creation → Registered for
   ours. On the real control plane the baseline and the driver use the admin kubeconfig
   (system:masters), our operator its ServiceAccount token (``state.operator_kubeconfig``).

No target: this benchmark informs a decision (keep or drop the emulator), it has no issue target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import operator as operator_bench
from .common import MIB, Target, log, machine_info, median, ratio, tree_cpu_seconds, tree_rss_bytes, write_result

NAME = "controlplane"
CONTROL_PLANES = ("emulator", "real")


@dataclass
class Params:
    """Sizes of one run."""

    repeats: int = 3
    count: int = 100
    models: int = 10
    idle_seconds: float = 10.0
    phase_timeout: float = 600.0
    control_planes: tuple[str, ...] = CONTROL_PLANES

    @classmethod
    def quick(cls) -> Params:
        """2 starts of each kind, 50 CRs."""
        return cls(repeats=2, count=50)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes."""
        return cls(repeats=1, count=3, models=2, idle_seconds=1.0, phase_timeout=300.0)


def available(control_plane: str) -> str | None:
    """Why ``control_plane`` cannot run here (None when it can): the real one needs its binaries built
    (``modelops sandbox build``, about ten minutes; never started implicitly by a benchmark)."""
    if control_plane == "real":
        from modelops.sandbox.controlplane import binaries

        if not binaries.built():
            return "the control plane's binaries are not built (`modelops sandbox build`)"
    return None


# -- start time -----------------------------------------------------------------------------------


@contextmanager
def _timed(module: Any, attr: str, sink: list[float]) -> Iterator[None]:
    """Append the seconds each call of ``module.attr`` takes to ``sink`` while in the block."""
    original = getattr(module, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            sink.append(time.monotonic() - began)

    setattr(module, attr, wrapper)
    try:
        yield
    finally:
        setattr(module, attr, original)


def _steps(
    control_plane: str, spawned: dict[str, float], began: float, ended: float, install_s: float | None
) -> dict[str, float]:
    """Seconds per start step, from the wall-clock spawn times of the components (``time.time()``).

    Each component is spawned when the previous one is ready, so the gap between two spawns is the
    first one's start-up (plus the supervisor's own work in between, which is small).
    """
    if control_plane == "real":
        order = ["etcd", "kube-apiserver", "kube-controller-manager", "kubelet"]
        labels = [
            "prepare (PKI, ports)",
            "etcd healthy",
            "kube-apiserver ready",
            "controller manager + scheduler healthy, install",
            "kubelet ready",
        ]
    else:
        order = ["apiserver", "kubelet"]
        labels = ["prepare", "API emulator ready", "kubelet ready"]
    marks = [began, *(spawned[n] for n in order), ended]
    out = {label: b - a for label, a, b in zip(labels, marks[:-1], marks[1:], strict=True)}
    if install_s is not None:  # part of the step before the kubelet's
        out["of which install (kubectl: CRDs, RBAC, token)"] = install_s
    return out


def start_once(control_plane: str, root: Path, full: bool, idle_seconds: float) -> dict[str, Any]:
    """One ``Supervisor.up`` in a fresh state dir under ``root``, measured, then ``down``.

    Returns ``up_s`` and ``down_s`` (seconds); for a bare start also ``steps`` (seconds per step),
    ``rss_mib``, ``start_cpu_s`` and ``idle_cpu_share`` per component process. Raises SandboxError
    when the sandbox does not start.
    """
    from modelops.sandbox.controlplane import install as install_module
    from modelops.sandbox.supervisor import Supervisor

    state_dir = Path(tempfile.mkdtemp(prefix=f"{control_plane}-{'full' if full else 'bare'}-", dir=root))
    supervisor = Supervisor(state_dir, pdeathsig=True, start_timeout=120, control_plane=control_plane)
    installs: list[float] = []
    out: dict[str, Any] = {"full": full}
    try:
        began_wall, began = time.time(), time.monotonic()
        with _timed(install_module, "install", installs):
            supervisor.up(mlflow=full, operator=full)
        out["up_s"] = time.monotonic() - began
        ended_wall = time.time()
        processes = dict(supervisor.state.processes)
        if full:
            out["operator_start_s"] = ended_wall - processes["operator"].started_at
        else:
            spawned = {n: rec.started_at for n, rec in processes.items()}
            out["steps"] = _steps(control_plane, spawned, began_wall, ended_wall, installs[0] if installs else None)
            pids = {n: rec.pid for n, rec in processes.items()}
            out["rss_mib"] = {n: tree_rss_bytes(p) / MIB for n, p in pids.items()}
            out["start_cpu_s"] = {n: tree_cpu_seconds(p) for n, p in pids.items()}
            meter = operator_bench.CpuMeter(pids).start()
            time.sleep(idle_seconds)
            out["idle_cpu_share"] = meter.stop()["core_share"]
    finally:
        began = time.monotonic()
        supervisor.down()
        out["down_s"] = time.monotonic() - began
    return out


def starts(params: Params, root: Path, control_planes: list[str]) -> dict[str, Any]:
    """``params.repeats`` bare and full starts per control plane, interleaved; runs and medians."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {cp: {"bare": [], "full": []} for cp in control_planes}
    for i in range(params.repeats):
        for kind in ("bare", "full"):
            for cp in control_planes:
                result = start_once(cp, root, kind == "full", params.idle_seconds)
                runs[cp][kind].append(result)
                log(
                    f"{NAME}: start {i + 1}/{params.repeats} {kind} {cp}: up {result['up_s']:.1f} s, "
                    f"down {result['down_s']:.1f} s"
                )
    out: dict[str, Any] = {}
    for cp, kinds in runs.items():
        bare = kinds["bare"]
        out[cp] = {
            "bare_up_s": median([r["up_s"] for r in bare]),
            "full_up_s": median([r["up_s"] for r in kinds["full"]]),
            "down_s": median([r["down_s"] for r in (*bare, *kinds["full"])]),
            "operator_start_s": median([r["operator_start_s"] for r in kinds["full"]]),
            "steps": _medians([r["steps"] for r in bare]),
            "rss_mib": _medians([r["rss_mib"] for r in bare]),
            "start_cpu_s": _medians([r["start_cpu_s"] for r in bare]),
            "idle_cpu_share": _medians([r["idle_cpu_share"] for r in bare]),
            "runs": kinds,
        }
    return out


def _medians(dicts: list[dict[str, float]]) -> dict[str, float | None]:
    """Per key, the median over ``dicts`` (keys in first-seen order)."""
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return {k: median([d[k] for d in dicts if d.get(k) is not None]) for k in keys}


# -- the run --------------------------------------------------------------------------------------


def latency(params: Params, root: Path, control_plane: str) -> dict[str, Any]:
    """:mod:`benchmarks.operator` phases 1 and 2 on ``control_plane`` (fresh sandbox, stopped after)."""
    bench_params = operator_bench.Params(
        count=params.count,
        models=params.models,
        phase_timeout=params.phase_timeout,
        profile_seconds=0.0,
        control_plane=control_plane,
        latency_only=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix=f"latency-{control_plane}-", dir=root))
    log(f"{NAME}: latency on the {control_plane} control plane ({params.count} ModelVersions)")
    return operator_bench.measure(bench_params, workdir)


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the comparison; returns the result document (see the module docstring)."""
    params = params or Params()
    machine = machine_info()
    skipped = {cp: why for cp in params.control_planes if (why := available(cp))}
    control_planes = [cp for cp in params.control_planes if cp not in skipped]
    for cp, why in skipped.items():
        log(f"{NAME}: skipping the {cp} control plane: {why}")
    with tempfile.TemporaryDirectory(prefix="bench-controlplane-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        started = starts(params, root, control_planes)
        latencies = {cp: latency(params, root, cp) for cp in control_planes}
    result: dict[str, Any] = {
        "name": NAME,
        "machine": machine,
        "params": {
            "repeats": params.repeats,
            "count": params.count,
            "models": params.models,
            "idle_seconds": params.idle_seconds,
            "create_concurrency": operator_bench.CREATE_CONCURRENCY,
            "control_planes": control_planes,
        },
        "skipped": skipped,
        "start": started,
        "latency": latencies,
    }
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    return result


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """real / emulator for the start times and the latency percentiles; ours / baseline per control plane."""
    out: dict[str, float | None] = {}
    start, lat = result["start"], result["latency"]
    for cp, doc in lat.items():
        for q in ("p50_s", "p99_s"):
            out[f"{cp}: ours / baseline creation -> Job {q[:3]}"] = ratio(
                doc["latency"]["create_to_job"][q], doc["baseline"]["create_to_job"][q]
            )
    if not {"emulator", "real"} <= set(start):
        return out
    for key in ("bare_up_s", "full_up_s", "down_s"):
        out[f"real / emulator {key}"] = ratio(start["real"][key], start["emulator"][key])
    for who, path in (
        ("baseline", ("baseline", "create_to_job")),
        ("ours", ("latency", "create_to_job")),
        ("ours registered", ("latency", "create_to_registered")),
    ):
        for q in ("p50_s", "p99_s"):
            real = lat["real"][path[0]][path[1]][q]
            emulator = lat["emulator"][path[0]][path[1]][q]
            out[f"real / emulator {who} {q[:3]}"] = ratio(real, emulator)
    return out


def targets(result: dict[str, Any]) -> list[Target]:
    """None: the comparison informs a decision and has no target of its own."""
    return []


# -- report ---------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    """The control-plane section of RESULTS.md."""
    start, lat, r = result["start"], result["latency"], result["ratios"]
    cps = list(result["params"]["control_planes"])
    both = len(cps) == 2
    p = result["params"]

    def header(first: str, last: str) -> list[str]:
        columns = [first, *cps, *([last] if both else [])]
        return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]

    lines = [
        "## Control planes: API emulator vs real (sandbox)",
        "",
        f"Both measured in the same run ({p['repeats']} starts of each kind per control plane, interleaved; "
        f"medians). Bare start = `Supervisor.up(mlflow=False, operator=False)` (API server + kubelet), full = "
        "with MLflow and the operator, each in a fresh state dir (new certificates and etcd data).",
        "",
        *header("start (s)", "real / emulator"),
    ]
    for label, key in (
        ("bare up", "bare_up_s"),
        ("full up (+ MLflow, operator)", "full_up_s"),
        ("of which the operator to /healthz", "operator_start_s"),
        ("down", "down_s"),
    ):
        row = f"| {label} | " + " | ".join(_f(start[cp][key]) for cp in cps)
        ratio_key = f"real / emulator {key}"
        lines.append(row + (f" | {_x(r.get(ratio_key))} |" if both else " |"))
    for cp in cps:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in start[cp]["steps"].items() if v is not None)
        lines += ["", f"Bare start steps, {cp}: {steps}."]
    lines += [
        "",
        f"Processes after a bare start (medians): RSS, CPU seconds spent starting, then CPU over "
        f"{p['idle_seconds']:.0f} s idle:",
        "",
        "| control plane | process | RSS MiB | start CPU s | idle CPU % |",
        "|---|---|---|---|---|",
    ]
    for cp in cps:
        for name, rss in start[cp]["rss_mib"].items():
            idle = start[cp]["idle_cpu_share"].get(name)
            lines.append(
                f"| {cp} | {name} | {rss:.0f} | {start[cp]['start_cpu_s'][name]:.1f} | "
                f"{'-' if idle is None else f'{100 * idle:.1f}'} |"
            )
        total_rss = sum(v for v in start[cp]["rss_mib"].values() if v)
        total_idle = sum(v for v in start[cp]["idle_cpu_share"].values() if v)
        total_cpu = sum(v for v in start[cp]["start_cpu_s"].values() if v)
        lines.append(f"| {cp} | **all** | {total_rss:.0f} | {total_cpu:.1f} | {100 * total_idle:.1f} |")
    lines += [
        "",
        f"Latency: {p['count']} ModelVersions created at once (≤ {p['create_concurrency']} requests in flight) over "
        f"{p['models']} models, `benchmarks/operator.py` phases 1 and 2 on each control plane (on the real one the "
        "baseline and the driver use the admin kubeconfig, our operator its ServiceAccount token). Seconds, p50 / p99.",
        "",
        *header("latency", "p50 / p99 real / emulator"),
    ]
    for label, who, path in (
        ("baseline: creation -> Job", "baseline", ("baseline", "create_to_job")),
        ("modelops: creation -> Job", "ours", ("latency", "create_to_job")),
        ("modelops: Job complete -> Registered", None, ("latency", "job_done_to_registered")),
        ("modelops: creation -> Registered", "ours registered", ("latency", "create_to_registered")),
    ):
        values = []
        for cp in cps:
            stats = lat[cp][path[0]][path[1]]
            values.append(f"{_f(stats['p50_s'])} / {_f(stats['p99_s'])}")
        row = f"| {label} | " + " | ".join(values)
        if both:
            row += (
                f" | {_x(r.get(f'real / emulator {who} p50'))} / {_x(r.get(f'real / emulator {who} p99'))} |"
                if who
                else " | |"
            )
        else:
            row += " |"
        lines.append(row)
    ours_base = [
        f"{_x(r.get(f'{cp}: ours / baseline creation -> Job p50'))} / "
        f"{_x(r.get(f'{cp}: ours / baseline creation -> Job p99'))}"
        for cp in cps
    ]
    lines.append("| creation -> Job, ours / baseline | " + " | ".join(ours_base) + (" | |" if both else " |"))
    for cp in cps:
        lines += ["", f"CPU seconds per component during the latency phases, {cp}:", ""]
        lines += operator_bench.cpu_table(
            [("baseline latency", lat[cp]["baseline"]["cpu"]), ("modelops latency", lat[cp]["latency"]["cpu"])]
        )
    if result.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{cp}: {why}" for cp, why in result["skipped"].items())]
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.controlplane [--quick] [--repeats N] [--count N] [--control-plane real emulator]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.controlplane", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, help="starts of each kind per control plane (3)")
    parser.add_argument("--count", type=int, help="CRs created at once for the latency phases (100)")
    parser.add_argument("--control-plane", nargs="+", choices=CONTROL_PLANES, help="(both)")
    parser.add_argument("--workdir", type=Path, help="keep the sandboxes' state and logs here")
    ns = parser.parse_args(argv)
    params = Params.quick() if ns.quick else Params()
    if ns.repeats is not None:
        params.repeats = ns.repeats
    if ns.count is not None:
        params.count = ns.count
    if ns.control_plane:
        params.control_planes = tuple(ns.control_plane)
    print(write_result(NAME, run(params, ns.workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
