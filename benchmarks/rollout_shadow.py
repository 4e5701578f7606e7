"""Rollout benchmark: what shadowing costs the incumbent's clients, and the share that reaches the candidate.

Three kinds of ``modelops-runtime serve`` processes load the same registered model (breast cancer,
``StandardScaler + LogisticRegression``) with the prediction log on, as in production: the
**candidate**, the **incumbent without a router**, and one **incumbent with a shadow router** per
configured sample rate (``MODELOPS_ROUTER``) copying to the candidate. Placement
(:func:`placements`): every incumbent is pinned to one core and the candidate to another
(``sched_setaffinity``; in a cluster the candidate runs in its own pods, so its CPU is not the
incumbent's cost); the load generator runs on a third core when there is one, else beside the
incumbents: the candidate's work on the copies must not delay the client (a run with the client
beside the candidate, ``--client-with-candidate``, and no router at all but the candidate loaded
from outside, ``--control-load``, showed a p99 1.3-1.4x that of the candidate idle: the layout, not
the router). Run as root, the incumbents and the load generator run at niceness -20 in the
fixed-rate phase (-5 in the saturated one), so the other work of a shared machine disturbs them
less. ``--baseline REV`` adds shadow incumbents running the runtime of git revision ``REV``, measured
in the same rounds: a before/after comparison that the machine's load cannot tilt. The same 1-row
``/invocations`` body is sent to each incumbent, alternating which goes first in each repeat, in
two modes:

* **fixed rate** (open loop, the issue's case "client latency must not change measurably"): a
  request rate well below the incumbent's capacity (``open_fraction`` of the closed loop's
  requests/s without a router, median over repeats), latency measured from each request's due time (no coordinated
  omission; :mod:`.loadgen`). Target: p99 with / without <= 1.1, the ratio taken per repeat (both
  servers measured in the same minute) and reported as the median with its range over repeats.
* **saturated** (closed loop, 1 connection): the capacity cost. Requests/s and the incumbent's CPU
  ms per answered request (``/proc``, as :mod:`.serving` does) with and without the router, for the
  pod (the serving process and its shadow sender) and the serving process alone (the router's part
  there: the copy written to the sender's pipe, the outcome counted and logged). Reported, not a
  target.

Then, per mode and configured sample rate, the share of the requests the incumbent answered that
reached the candidate (``modelops_router_requests_total{route="shadow", outcome="sent"}`` over the
incumbent's ``ml_prediction_latency_seconds_count``), and the copies dropped or failed; each turn's
counts are read once the copies its load caused have outcomes (:func:`settled_counts`), so none is
lost between turns and none loads the machine during another incumbent's turn.

``control_load`` adds the incumbent without a router once more (``without, candidate loaded``), while
an outside client on the candidate's core sends the candidate the copies a rate-1 router would (fixed
rate only): the machine's load of a shadowed run without the router, to tell the router's cost from
the layout's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from . import loadgen
from .common import (
    ROOT,
    Placement,
    Target,
    background,
    cpu_seconds,
    descendants,
    free_port,
    log,
    machine_info,
    median,
    mlflow_uris,
    percentile,
    place,
    ratio,
    tree_cpu_seconds,
    wait_http,
    write_result,
)
from .serving import CONTENT_TYPE, feature_frame, register_models, request_body

NAME = "rollout_shadow"
MODEL = "logistic_regression"
#: The label of the control incumbent of ``Params.control_load``.
CONTROL = "without, candidate loaded"
#: Longest wait for a shadowed incumbent's copies to have outcomes (s): the sender's own bound is the
#: router's timeout (5 s) per copy in flight, 4 at once, for a queue of 256 (:func:`settled_counts`).
SETTLE_SECONDS = 30.0


@dataclass
class Params:
    """Sizes of one run.

    ``open_fraction``: the fixed rate as a share of the closed loop's requests/s without a router
    (median over repeats);
    ``open_connections``: connections the fixed-rate client may use at once; ``slices``: pieces of
    each fixed-rate repeat (the incumbents take turns every ``duration / slices`` s); ``pin``: pin the
    servers to cores, ``candidate_nice``, ``priority`` (the fixed-rate phase) and
    ``saturated_priority``: niceness, ``sender_apart``: the shadow senders on another core than the
    incumbents, ``client_with_candidate``: the load generator on the candidate's core
    (:func:`placements`); ``control_load``: the control incumbent (module docstring); ``baseline``: a git revision whose
    runtime also runs shadow incumbents, in the same rounds (labels ``shadow <rate> @<revision>``).
    """

    duration: float = 4.0
    repeats: int = 7
    sample_rates: tuple[float, ...] = (1.0, 0.1)
    warmup: float = 1.0
    start_timeout: float = 120.0
    loadgen: str = "auto"
    open_fraction: float = 1 / 3
    open_connections: int = 4
    slices: int = 4
    pin: bool = True
    candidate_nice: int = 10
    priority: int = -20
    saturated_priority: int = -5
    baseline: str | None = None
    sender_apart: bool = False
    client_with_candidate: bool = False
    control_load: bool = False

    @classmethod
    def quick(cls) -> Params:
        return cls(duration=2.0, repeats=3)

    @classmethod
    def tiny(cls) -> Params:
        return cls(duration=0.5, repeats=1, sample_rates=(0.5,), warmup=0.2, slices=2, control_load=True)


def placements(params: Params) -> dict[str, Placement]:
    """Where the incumbents, the candidate and the load generator run.

    Cores (``params.pin``, at least 2 usable): the first usable core for the incumbents, the second
    for the candidate (alone, as on a node of its own), the third (else the incumbents') for the load
    generator (``client_with_candidate``: the candidate's); the shadow sender processes of the
    incumbents (:mod:`modelops_runtime.serve.shadow`, at ``SCHED_IDLE``) on the incumbents' core by
    default (a pod limited to one CPU: the strictest case), or with ``sender_apart`` on the fourth
    core, else the last (at the candidate's niceness). Niceness: the
    candidate at ``candidate_nice``; the incumbents and the load generator at ``priority`` when
    run as root (a negative niceness needs it), so the other work of a shared machine disturbs the
    measured processes less (the saturated phase lowers it to ``saturated_priority``: a busy core
    at -20 would starve the machine's other work for the whole phase).
    """
    usable = sorted(os.sched_getaffinity(0))
    pinned = params.pin and len(usable) >= 2
    ours = params.priority if os.geteuid() == 0 else None

    def at(index: int, nice: int | None) -> Placement:
        return Placement(frozenset({usable[min(index, len(usable) - 1)]}) if pinned else None, nice)

    client = 1 if params.client_with_candidate else 2 if len(usable) > 2 else 0
    return {
        "incumbent": at(0, ours),
        "candidate": at(1, params.candidate_nice),
        "loadgen": at(client, ours),
        "sender": at(3, params.candidate_nice) if params.sender_apart else at(0, ours),
    }


@dataclass
class Server:
    """A running server: its URL and process id."""

    url: str
    pid: int


@contextmanager
def server(
    tracking_uri: str,
    model: str,
    workdir: Path,
    tag: str,
    router: dict[str, Any] | None,
    timeout: float,
    placement: Placement | None = None,
    runtime: Path | None = None,
    sender: Placement | None = None,
):
    """One ``modelops-runtime serve`` for ``models:/<model>/1`` (log on), where ``placement`` says,
    with the ``modelops_runtime`` package under ``runtime`` when set (else the installed one), its
    shadow sender process (if any) where ``sender`` says; yields a :class:`Server`."""
    from modelops.contract import ENV_JOB_CONFIG, ENV_ROUTER, ServeConfig

    from .common import venv_bin

    port = free_port()
    config = ServeConfig(
        model=model,
        registry_version="1",
        version="1.0.0",
        stage="Production",
        prediction_log_uri=str(workdir / "predictions"),
    )
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        ENV_JOB_CONFIG: config.to_env(),
        "POD_NAME": tag,
        "PYTHONUNBUFFERED": "1",
    }
    if router is not None:
        env[ENV_ROUTER] = json.dumps(router)
    if runtime is not None:
        env["PYTHONPATH"] = str(runtime)  # ahead of the editable install's path
    argv = [str(venv_bin() / "modelops-runtime"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    logfile = workdir / f"{tag}.log"
    argv += ["--log-level", "warning"]
    with background(argv, env=env, log=logfile, cwd=workdir, placement=placement) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/health/ready", process, timeout, logfile)
        place_server(process.pid, placement, sender)  # again: threads started while it loaded
        yield Server(url, process.pid)


def place_server(pid: int, placement: Placement | None, sender: Placement | None) -> None:
    """Apply ``placement`` to a server's processes and threads, then ``sender`` to its shadow sender
    process (:mod:`modelops_runtime.serve.shadow`), if it has one."""
    place(pid, placement)
    for process in senders(pid):
        place(process, sender)


def senders(pid: int) -> list[int]:
    """The shadow sender processes (:mod:`modelops_runtime.serve.shadow`) among ``pid``'s descendants."""
    found = []
    for process in descendants(pid):
        with contextlib.suppress(OSError):
            if b"modelops_runtime.serve.shadow" in Path(f"/proc/{process}/cmdline").read_bytes():
                found.append(process)
    return found


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a server's ``/metrics`` by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def shadow_counts(url: str) -> dict[str, float]:
    """Requests the incumbent answered and the router's shadow outcomes (sent, dropped, failed)."""
    found = samples(url)
    answered = sum(v for (name, _), v in found.items() if name == "ml_prediction_latency_seconds_count")
    out = {"answered": answered}
    for outcome in ("sent", "dropped", "failed"):
        out[outcome] = found.get(("modelops_router_requests_total", (("outcome", outcome), ("route", "shadow"))), 0.0)
    return out


def settled_counts(url: str, rate: float, cut: int) -> dict[str, float]:
    """:func:`shadow_counts` of a shadowed incumbent once the copies its router took have outcomes.

    A copy counts (sent, dropped or failed) when the shadow sender reports it, which may be well after
    the load that caused it ended (at saturation its queue is full); read at once, the copies still in
    the sender would count for no mode (the next read starts from later counts) and would load the
    machine during the next incumbent's turn. The router takes exactly ``Share(rate).taken(n)`` of its
    first ``n`` answered requests (:class:`modelops_runtime.serve.router.Share`), so the counts are
    read once at most ``cut`` copies are missing (requests answered whose connection the client cut at
    the end of its load: no copy follows them), or after :data:`SETTLE_SECONDS`.
    """
    from modelops_runtime.serve.router import Share

    share = Share(rate)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        counts = shadow_counts(url)
        outcomes = counts["sent"] + counts["dropped"] + counts["failed"]
        if outcomes + cut >= share.taken(round(counts["answered"])) or time.monotonic() >= deadline:
            return counts
        time.sleep(0.01)


def _share(rate: float, counts: dict[str, float]) -> dict[str, float | None]:
    """What became of the copies of one shadowed incumbent in one mode: ``counts`` (requests answered,
    copies sent, dropped, failed) with the share of answered requests that reached the candidate and
    the share copied at all."""
    copied = counts["sent"] + counts["dropped"] + counts["failed"]
    return {
        "configured": rate,
        **counts,
        "reached": ratio(counts["sent"], counts["answered"]),
        "copied": ratio(copied, counts["answered"]),
    }


def _spread(values: list[float]) -> dict[str, float | None]:
    """Median and range of ``values`` (None each when empty)."""
    return {
        "median": median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def _measure(
    generator: str,
    target: Server,
    candidate: Server,
    body: bytes,
    params: Params,
    client: Placement,
    rate: float | None,
    seconds: float,
    outside: Placement | None = None,
    settle: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """One load run of ``seconds`` against ``target`` (open loop at ``rate`` with every latency, else
    closed): the load result, the target's CPU seconds and the candidate's meanwhile (``/proc``).
    ``outside``: meanwhile an outside client placed there sends the candidate ``rate`` requests/s
    (the control incumbent of ``control_load``; its requests and errors in the result). ``settle``: called
    once the load ended, before the CPU seconds are read, so that the work on the copies still in the
    shadow sender counts for this run (:func:`settled_counts`); what it returns is ``shadow_counts``."""
    connections = 1 if rate is None else params.open_connections
    own, other = tree_cpu_seconds(target.pid), tree_cpu_seconds(candidate.pid)
    shadowing = senders(target.pid)
    sending = sum(cpu_seconds(p) for p in shadowing)
    with ThreadPoolExecutor(1) as pool:
        copies = None
        if outside is not None and rate is not None:
            url = f"{candidate.url}/invocations"
            copies = pool.submit(
                loadgen.run_load, "python", url, body, CONTENT_TYPE, connections, seconds, rate=rate, placement=outside
            )
        measured = loadgen.run_load(
            generator,
            f"{target.url}/invocations",
            body,
            CONTENT_TYPE,
            connections,
            seconds,
            rate=rate,
            placement=client,
            raw=rate is not None,
        )
    out = measured.to_dict()
    if copies is not None:
        outside_load = copies.result()  # raises what the outside client raised
        out["outside_requests"], out["outside_errors"] = outside_load.requests, outside_load.errors
    if settle is not None:
        out["shadow_counts"] = settle()
    out["server_cpu_s"] = tree_cpu_seconds(target.pid) - own
    out["sender_cpu_s"] = sum(cpu_seconds(p) for p in shadowing) - sending  # a restarted sender: not counted
    out["candidate_cpu_s"] = tree_cpu_seconds(candidate.pid) - other
    return out


def _pool(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """One repeat of one incumbent from its slices: percentiles over all their latencies (one slice
    of a closed loop: its own), sums of counts and CPU; CPU ms per answered request and the
    candidate's CPU ms per copy sent."""
    if len(pieces) == 1 and pieces[0].get("latencies_ms") is None:
        out = dict(pieces[0])
    else:
        ms = [x for p in pieces for x in p["latencies_ms"]]
        elapsed = sum(p["duration_s"] for p in pieces)
        out = {
            "slices": len(pieces),
            "rate": pieces[0]["rate"],
            "duration_s": elapsed,
            "rps": len(ms) / elapsed if elapsed else 0.0,
            "p50_ms": percentile(ms, 50),
            "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else None,
        }
        for key in ("requests", "errors", "late", "server_cpu_s", "sender_cpu_s", "candidate_cpu_s", "generator_cpu_s"):
            out[key] = sum(p[key] for p in pieces)
        for key in ("outside_requests", "outside_errors"):
            if key in pieces[0]:
                out[key] = sum(p[key] for p in pieces)
        out["lag_p99_ms"] = max(p["lag_p99_ms"] or 0.0 for p in pieces)  # the client's worst slice
        if pieces[0].get("copies_sent") is not None:
            out["copies_sent"] = sum(p["copies_sent"] for p in pieces)
    out.pop("latencies_ms", None)
    out["server_cpu_ms_per_request"] = 1000 * out["server_cpu_s"] / out["requests"] if out["requests"] else None
    serving = out["server_cpu_s"] - out["sender_cpu_s"]
    out["serving_cpu_ms_per_request"] = 1000 * serving / out["requests"] if out["requests"] else None
    sent = out.get("copies_sent")
    out["candidate_cpu_ms_per_copy"] = 1000 * out["candidate_cpu_s"] / sent if sent else None
    out["sender_cpu_ms_per_copy"] = 1000 * out["sender_cpu_s"] / sent if sent else None
    return out


def _cells(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per incumbent: medians over repeats (and the p99 range) of one mode's runs."""
    cells = {}
    for label, done in runs.items():
        p99 = [r["p99_ms"] for r in done if r["p99_ms"] is not None]
        cells[label] = {
            "rps": median([r["rps"] for r in done]),
            "p50_ms": median([r["p50_ms"] for r in done if r["p50_ms"] is not None]),
            "p99_ms": median(p99),
            "p99_ms_range": [min(p99), max(p99)] if p99 else [None, None],
            "max_ms": median([r["max_ms"] for r in done if r["max_ms"] is not None]),
            "server_cpu_ms_per_request": median(
                [r["server_cpu_ms_per_request"] for r in done if r["server_cpu_ms_per_request"] is not None]
            ),
            "candidate_cpu_ms_per_copy": median(
                [r["candidate_cpu_ms_per_copy"] for r in done if r["candidate_cpu_ms_per_copy"] is not None]
            ),
            "serving_cpu_ms_per_request": median(
                [r["serving_cpu_ms_per_request"] for r in done if r.get("serving_cpu_ms_per_request") is not None]
            ),
            "sender_cpu_ms_per_copy": median(
                [r["sender_cpu_ms_per_copy"] for r in done if r.get("sender_cpu_ms_per_copy") is not None]
            ),
            "lag_p99_ms": median([r["lag_p99_ms"] for r in done if r.get("lag_p99_ms") is not None]),
            "late": sum(r.get("late", 0) for r in done),
            "errors": sum(r["errors"] for r in done),
        }
    return cells


#: Ratios reported per shadowed incumbent (name → the run's key).
RATIOS = {
    "p50": "p50_ms",
    "p99": "p99_ms",
    "rps": "rps",
    "cpu": "server_cpu_ms_per_request",
    "serving_cpu": "serving_cpu_ms_per_request",
}


def _ratios(runs: dict[str, list[dict[str, Any]]], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Per shadowed incumbent: p50, p99, requests/s and CPU per request with / without, paired by
    repeat; median and range."""
    out = {}
    for label in labels:
        pairs = list(zip(runs[label], runs["without"], strict=True))
        out[label] = {
            name: _spread([r for a, b in pairs if (r := ratio(a[key], b[key])) is not None])
            for name, key in RATIOS.items()
        }
    return out


def export_runtime(revision: str, into: Path) -> Path:
    """``serving_image/`` of git ``revision`` extracted under ``into``; returns the directory that
    holds its ``modelops_runtime`` package. Raises RuntimeError when git cannot export it."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "serving_image"], capture_output=True
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {revision}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "serving_image"


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result document (see the module docstring)."""
    params = params or Params()
    generator = loadgen.choose(params.loadgen)
    where = placements(params)
    body = request_body(feature_frame(), 1)
    result: dict[str, Any] = {
        "name": NAME,
        "machine": machine_info(),
        "params": vars(params),
        "generator": generator,
        "placement": {k: {"cpus": sorted(v.cpus) if v.cpus else None, "nice": v.nice} for k, v in where.items()},
        "baseline": params.baseline,
    }
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rollout-")))
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        stack.enter_context(mlflow_uris(tracking_uri))
        model = register_models(root, (MODEL,))[MODEL]

        def start(tag: str, router: dict[str, Any] | None, placement: Placement, runtime: Path | None = None) -> Server:
            timeout = params.start_timeout
            return stack.enter_context(
                server(tracking_uri, model, root, tag, router, timeout, placement, runtime, where["sender"])
            )

        candidate = start("candidate", None, where["candidate"])
        targets = {"without": start("plain", None, where["incumbent"])}
        if params.control_load:
            targets[CONTROL] = targets["without"]
        runtimes: dict[str, Path | None] = {"": None}
        if params.baseline:
            runtimes[f" @{params.baseline}"] = export_runtime(params.baseline, root / "baseline")
        shadowed: dict[str, tuple[float, Server]] = {}
        for suffix, runtime in runtimes.items():
            for rate in params.sample_rates:
                router = {
                    "mode": "shadow",
                    "url": candidate.url,
                    "version": "1.0.0",
                    "registry_version": "1",
                    "sample_rate": rate,
                }
                tag = f"shadow-{rate:g}{suffix.replace(' @', '-')}"
                shadowed[f"{rate:g}{suffix}"] = (rate, start(tag, router, where["incumbent"], runtime))
        targets.update({f"shadow {key}": s for key, (_, s) in shadowed.items()})
        labels = [label for label in targets if label != "without"]
        for target in targets.values():
            loadgen.run_load(
                generator, f"{target.url}/invocations", body, CONTENT_TYPE, 1, params.warmup, placement=where["loadgen"]
            )

        def rounds(mode: str, rate: float | None, slices: int, nice: int | None) -> dict[str, list[dict[str, Any]]]:
            """``repeats`` of each incumbent; within a repeat they take turns ``slices`` times,
            alternating which goes first, so a burst of other work on the machine hits them alike.
            The incumbents and the load generator run at niceness ``nice`` (None: as placed)."""
            if nice is not None:
                sender = where["sender"] if params.sender_apart else Placement(nice=nice)
                for target in targets.values():
                    place_server(target.pid, Placement(nice=nice), sender)
            client = where["loadgen"] if nice is None else Placement(where["loadgen"].cpus, nice)
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
            copied[mode] = {key: dict.fromkeys(("answered", "sent", "dropped", "failed"), 0.0) for key in shadowed}
            for repeat in range(params.repeats):
                pieces: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
                for piece in range(slices):
                    order = list(targets.items())
                    if (repeat * slices + piece) % 2:
                        order.reverse()
                    for label, target in order:
                        key = label.removeprefix("shadow ")
                        cut = 1 if rate is None else params.open_connections  # connections of the load
                        settle = (
                            partial(settled_counts, target.url, shadowed[key][0], cut) if key in shadowed else None
                        )
                        counts = settle() if settle is not None else None
                        seconds = params.duration / slices
                        outside = where["candidate"] if label == CONTROL else None
                        measured = _measure(
                            generator, target, candidate, body, params, client, rate, seconds, outside, settle
                        )
                        if counts is not None:
                            after = measured.pop("shadow_counts")
                            for outcome, total in copied[mode][key].items():
                                copied[mode][key][outcome] = total + after[outcome] - counts[outcome]
                            measured["copies_sent"] = after["sent"] - counts["sent"]
                        pieces[label].append(measured)
                for label in targets:
                    done = _pool(pieces[label])
                    runs[label].append(done)
                    log(
                        f"{NAME}: {mode}: {label}: {done['rps']:.0f} req/s, p50 {done['p50_ms']:.2f} ms, "
                        f"p99 {done['p99_ms']:.2f} ms, {done['server_cpu_ms_per_request']:.3f} CPU ms/req"
                    )
            return runs

        copied: dict[str, dict[str, dict[str, float]]] = {}  # mode -> sample rate -> outcome -> count
        ours = where["incumbent"].nice is not None  # run as root: the phases set their own niceness
        closed = rounds("saturated", None, 1, params.saturated_priority if ours else None)
        fixed_rate = params.open_fraction * (median([r["rps"] for r in closed["without"]]) or 0.0)
        fixed_nice = params.priority if ours else None
        opened = rounds("fixed_rate", max(fixed_rate, 1.0), params.slices, fixed_nice)
        shares = {
            mode: {key: _share(shadowed[key][0], counts) for key, counts in by_rate.items()}
            for mode, by_rate in copied.items()
        }
    result["saturated"] = {"cells": _cells(closed), "ratios": _ratios(closed, labels), "runs": closed}
    result["fixed_rate"] = {
        "rate": fixed_rate,
        "connections": params.open_connections,
        "slices": params.slices,
        "cells": _cells(opened),
        "ratios": _ratios(opened, labels),
        "runs": opened,
    }
    result["shares"] = shares
    result["targets"] = [
        Target(
            f"p99 at a fixed {fixed_rate:.0f} req/s with shadow {r:g} / without (median of paired repeats)",
            result["fixed_rate"]["ratios"][f"shadow {r:g}"]["p99"]["median"],
            "<=",
            1.1,
            "x",
            "issue 17: client latency must not change measurably",
        )
        for r in params.sample_rates
    ]
    return result


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ratio_cols(ratios: dict[str, dict[str, float | None]] | None, *names: str) -> list[str]:
    """Ratio cells (:data:`RATIOS` ``names``): median (range); "-" for the incumbent without a router."""
    if ratios is None:
        return ["-"] * len(names)
    return [f"{_f(ratios[n]['median'])}x ({_f(ratios[n]['min'])}-{_f(ratios[n]['max'])})" for n in names]


def _latency_cols(cell: dict[str, Any]) -> list[str]:
    """p50 and p99 (range over repeats) cells, ms."""
    low, high = cell["p99_ms_range"]
    return [_f(cell["p50_ms"]), f"{_f(cell['p99_ms'])} ({_f(low)}-{_f(high)})"]


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    """The results section."""
    placed = "; ".join(
        f"{who} on core {','.join(map(str, p['cpus'])) if p['cpus'] else 'any'}"
        + (f" at nice {p['nice']}" if p["nice"] is not None else "")
        for who, p in result["placement"].items()
    )
    fixed, saturated = result["fixed_rate"], result["saturated"]
    params = result["params"]
    at_saturation = (
        f"; incumbents and load generator at nice {params['saturated_priority']}"
        if result["placement"]["incumbent"]["nice"] is not None
        else ""
    )
    baseline = (
        f" Rows `@{result['baseline']}`: the runtime of that revision, measured in the same rounds (before/after)."
        if result.get("baseline")
        else ""
    )
    lines = [
        "## Rollout shadow",
        "",
        f"1-row `/invocations`, prediction log on; {placed}. Ratios: with / without the router, "
        f"paired by repeat, median (range over repeats).{baseline}",
        "",
        f"Fixed rate ({fixed['rate']:.0f} req/s, open loop on up to {fixed['connections']} connections, "
        "latency from each request's due time; in each repeat the incumbents take turns "
        f"{fixed.get('slices', 1)} times): the client latency a user sees. Send lag: how late the client "
        "sent (its own delay, or all its connections waiting for answers). CPU from `/proc`: the pod (the "
        "serving process and its shadow sender), the serving process alone, the sender per copy sent.",
        "",
        "| incumbent | p50 ms | p99 ms (range over repeats) | max ms | p50 ratio | p99 ratio "
        "| pod CPU ms/request | CPU ratio | serving process CPU ms/request | ratio | sender CPU ms/copy "
        "| incumbent's core busy | send lag p99 ms | late sends | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, cell in fixed["cells"].items():
        rat = fixed["ratios"].get(label)
        cpu = cell["server_cpu_ms_per_request"]
        busy = f"{cell['rps'] * cpu / 10:.0f} %" if cpu is not None else "n/a"
        cols = [_f(cell["max_ms"]), *_ratio_cols(rat, "p50", "p99"), _f(cpu, 3), *_ratio_cols(rat, "cpu")]
        cols += [_f(cell.get("serving_cpu_ms_per_request"), 3), *_ratio_cols(rat, "serving_cpu")]
        cols += [_f(cell.get("sender_cpu_ms_per_copy"), 3), busy]
        cols += [_f(cell["lag_p99_ms"]), str(cell["late"]), str(cell["errors"])]
        lines.append(_row(label, *_latency_cols(cell), *cols))
    lines += [
        "",
        f"Saturated (closed loop, 1 connection{at_saturation}): the capacity cost; the router's part of the "
        "serving process takes CPU the next request waits for, the sender only CPU left idle (copies it has "
        "no time for are dropped). The candidate's CPU per copy includes its own background work (timers, "
        "log writer), spread over fewer copies at low rates.",
        "",
        "| incumbent | req/s | req/s ratio | p50 ms | p99 ms (range over repeats) | p50 ratio | p99 ratio "
        "| pod CPU ms/request | CPU ratio | serving process CPU ms/request | ratio | candidate CPU ms/copy "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, cell in saturated["cells"].items():
        rat = saturated["ratios"].get(label)
        cols = [f"{cell['rps']:.0f}", *_ratio_cols(rat, "rps"), *_latency_cols(cell), *_ratio_cols(rat, "p50", "p99")]
        cols += [_f(cell["server_cpu_ms_per_request"], 3), *_ratio_cols(rat, "cpu")]
        cols += [_f(cell.get("serving_cpu_ms_per_request"), 3), *_ratio_cols(rat, "serving_cpu")]
        lines.append(_row(label, *cols, _f(cell["candidate_cpu_ms_per_copy"], 3), str(cell["errors"])))
    if CONTROL in fixed["cells"]:
        lines += [
            "",
            f"`{CONTROL}`: no router, while an outside client on the candidate's core sends it the fixed "
            "rate (the machine's load of a rate-1 shadow without the router; saturated: no outside load).",
        ]
    lines += [
        "",
        "Copies: what became of them, per mode (sent = answered by the candidate; dropped = no CPU or "
        "queue room in the incumbent's pod).",
        "",
        "| mode | configured rate | answered | sent | dropped | failed | reached the candidate |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, by_rate in result["shares"].items():
        for key, share in by_rate.items():
            reached = share["reached"]
            lines.append(
                f"| {mode.replace('_', ' ')} | {key} | {share['answered']:.0f} | {share['sent']:.0f} "
                f"| {share['dropped']:.0f} | {share['failed']:.0f} | {'n/a' if reached is None else f'{reached:.4f}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.rollout_shadow [--quick] [--duration S] [--repeats N] [--no-pin]
    [--baseline REV] [--sender-apart] [--client-with-candidate] [--control-load] [--rates R ...]
    [--no-write]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rollout_shadow", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers to cores")
    parser.add_argument("--priority", type=int, help="niceness of the incumbents and the load generator (root)")
    parser.add_argument("--baseline", help="git revision whose runtime also runs shadow incumbents (before/after)")
    parser.add_argument(
        "--sender-apart", action="store_true", help="the shadow senders on another core than the incumbents'"
    )
    parser.add_argument(
        "--client-with-candidate", action="store_true", help="the load generator on the candidate's core"
    )
    parser.add_argument(
        "--control-load", action="store_true", help="also the incumbent without a router, the candidate loaded"
    )
    parser.add_argument("--rates", type=float, nargs="+", help="shadow sample rates (default 1 0.1)")
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results/")
    ns = parser.parse_args(argv)
    params = Params.quick() if ns.quick else Params()
    if ns.duration:
        params.duration = ns.duration
    if ns.repeats:
        params.repeats = ns.repeats
    params.loadgen = ns.loadgen
    params.pin = not ns.no_pin
    if ns.priority is not None:
        params.priority = ns.priority
    params.baseline = ns.baseline
    params.sender_apart = ns.sender_apart
    params.client_with_candidate = ns.client_with_candidate
    params.control_load = ns.control_load
    if ns.rates:
        params.sample_rates = tuple(dict.fromkeys(ns.rates))  # each rate once
    result = run(params)
    print(markdown(result))
    if ns.no_write:
        print(json.dumps(result, default=str, indent=1))
    else:
        print(write_result(NAME, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
