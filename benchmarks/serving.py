"""Serving benchmark: ``modelops-runtime serve`` vs ``mlflow models serve`` and the peers
(MLServer, KServe, BentoML), and the in-process limit.

What is measured (issue 9, item 1; issue 18, item 1), side by side in one run:

- **Servers**: our server (``modelops-runtime serve``, one uvicorn worker, prediction log and
  Prometheus metrics on, as in production), ``mlflow models serve --env-manager local --workers 1``
  and the peers of :mod:`benchmarks.peers` (MLServer with its scikit-learn and its MLflow runtime,
  a minimal KServe ``kserve.Model``, a minimal BentoML service; each in its own virtual environment,
  one worker each), all serving the same registered model version, all on 127.0.0.1 at once, all
  driven by the same load generator. Ours, MLflow's and MLServer's MLflow runtime get
  ``POST /invocations`` with a ``dataframe_split`` body; the others their own protocol with the
  same rows (see :mod:`benchmarks.peers`). Every server must answer the in-process predictions first.
- **Models**: scikit-learn's bundled breast-cancer data (569 rows, 30 float columns);
  ``StandardScaler + LogisticRegression`` (server overhead dominates) and a 100-tree
  ``RandomForestClassifier`` (the model dominates).
- **Requests** of 1 row and of 100 rows (real rows of the dataset), with 1 and 8 connections.
- **Per cell**: requests/s, rows/s, p50/p99 latency (ms, client side), server CPU per request (ms,
  from ``/proc``), and each server's peak RSS (MiB; process tree, sampled every 0.1 s); the load
  average after every repeat (the machine is shared).
- **The limit**: the same pipeline loaded in this process, ``predict`` on a pre-built DataFrame
  of 1 and 100 rows, median of per-call times, timed in every repeat between the server runs.
- **Profile**: py-spy of our server in the 100-row x 8-connection cells (``profile_cells``).

Each repeat runs every server in turn, starting with the next server each repeat, then the
in-process limit; values are medians over repeats and ratios are of those medians. The load
generator's own limit is measured against a fixed-response server in the same run.

Targets. Issue 9: on 1-row LogisticRegression requests our requests/s at least 3x MLflow's with
our p99 at most half of MLflow's; on 100-row requests at least 50 % of the in-process limit's
rows/s (1-connection cells). Issue 18: in every cell, at least 2x the requests/s of the best other
server, at a p99 no higher than that server's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import loadgen, peers
from .common import (
    MIB,
    RssSampler,
    Target,
    background,
    free_port,
    loadavg,
    log,
    machine_info,
    median,
    mlflow_uris,
    profile_markdown,
    pyspy_record,
    ratio,
    tree_cpu_seconds,
    venv_bin,
    wait_http,
    write_result,
)

NAME = "serving"
MODELS = ("logistic_regression", "random_forest")
ROWS = (1, 100)
OURS, MLFLOW = "modelops", "mlflow"
PEERS = ("mlserver-sklearn", "mlserver-mlflow", "kserve", "bentoml")
CONTENT_TYPE = "application/json"


@dataclass
class Params:
    """Sizes of one run."""

    duration: float = 5.0
    repeats: int = 3
    connections: tuple[int, ...] = (1, 8)
    rows: tuple[int, ...] = ROWS
    models: tuple[str, ...] = MODELS
    warmup: float = 1.0
    inprocess_seconds: float = 1.0
    loadgen: str = "auto"
    start_timeout: float = 180.0
    #: Peers from :func:`benchmarks.peers.peers`, each started beside ours and mlflow serve.
    peers: tuple[str, ...] = PEERS
    #: py-spy of our server for this many seconds in each of ``profile_cells`` (0: none).
    profile_seconds: float = 10.0
    profile_cells: tuple[tuple[int, int], ...] = ((100, 8),)

    @classmethod
    def quick(cls) -> Params:
        """Short runs: 2 s, 2 repeats, no profile."""
        return cls(duration=2.0, repeats=2, warmup=0.5, inprocess_seconds=0.5, profile_seconds=0)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes: one short repeat of each cell, LogisticRegression only."""
        return cls(
            duration=0.5,
            repeats=1,
            connections=(1,),
            models=("logistic_regression",),
            warmup=0.2,
            inprocess_seconds=0.1,
            peers=(),
            profile_seconds=0,
        )


# -- models ---------------------------------------------------------------------------------------


def build_model(kind: str) -> tuple[Any, Any]:
    """The fitted pipeline and the feature frame for ``kind`` (breast-cancer data)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    if kind == "logistic_regression":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    elif kind == "random_forest":
        model = make_pipeline(RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1))
    else:
        raise ValueError(f"unknown model {kind!r}")
    return model.fit(X, y), X


def request_body(X: Any, rows: int) -> bytes:
    """``/invocations`` body with the first ``rows`` rows of ``X`` (``dataframe_split``)."""
    return peers.request_body("invocations", X.head(rows))


def feature_frame() -> Any:
    """The breast-cancer feature frame (569 rows, 30 float columns)."""
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).data


def register_models(root: Path, kinds: tuple[str, ...]) -> dict[str, str]:
    """Log and register each model in the current MLflow store (see :func:`~.common.mlflow_uris`).

    Returns ``{kind: registered model name}`` (version 1 each); artifacts go under ``root``.
    """
    import mlflow
    from mlflow.models import infer_signature

    from modelops.registry.models import trusted_types_for

    experiment = mlflow.create_experiment("bench-serving", artifact_location=(root / "artifacts").as_uri())
    names = {}
    for kind in kinds:
        model, X = build_model(kind)
        name = f"bench-{kind.replace('_', '-')}"
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X.head(5))),
                input_example=X.head(3),
                pip_requirements=["scikit-learn"],
                skops_trusted_types=trusted_types_for(model).trusted_types,
                registered_model_name=name,
            )
        names[kind] = name
    return names


# -- servers --------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A started server: its kind, URL and process."""

    kind: str
    url: str
    pid: int
    started_in_s: float


@contextmanager
def start_servers(
    tracking_uri: str, model_name: str, workdir: Path, timeout: float
) -> Iterator[dict[str, RunningServer]]:
    """Start our server and ``mlflow models serve`` for ``models:/<model_name>/1``; stop both after."""
    from modelops.contract import ENV_JOB_CONFIG, ServeConfig

    env_common = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow execs `uvicorn`
        "PYTHONUNBUFFERED": "1",
    }
    predictions = workdir / "predictions"
    config = ServeConfig(
        model=model_name,
        registry_version="1",
        version="1.0.0",
        stage="Production",
        prediction_log_uri=str(predictions),
    )
    ours_port, mlflow_port = free_port(), free_port()
    ours_argv = [
        str(venv_bin() / "modelops-runtime"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(ours_port),
        "--log-level",
        "warning",
    ]
    mlflow_argv = [
        str(venv_bin() / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{model_name}/1",
        "--env-manager",
        "local",
        "--workers",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(mlflow_port),
    ]
    with ExitStack() as stack:
        began = time.monotonic()
        ours_log, mlflow_log = workdir / f"{model_name}-ours.log", workdir / f"{model_name}-mlflow.log"
        ours = stack.enter_context(
            background(
                ours_argv,
                env={**env_common, ENV_JOB_CONFIG: config.to_env(), "POD_NAME": "bench"},
                log=ours_log,
                cwd=workdir,
            )
        )
        theirs = stack.enter_context(background(mlflow_argv, env=env_common, log=mlflow_log, cwd=workdir))
        wait_http(f"http://127.0.0.1:{ours_port}/v2/health/ready", ours, timeout, ours_log)
        ours_ready = time.monotonic() - began
        wait_http(f"http://127.0.0.1:{mlflow_port}/ping", theirs, timeout, mlflow_log)
        theirs_ready = time.monotonic() - began
        yield {
            OURS: RunningServer(OURS, f"http://127.0.0.1:{ours_port}", ours.pid, ours_ready),
            MLFLOW: RunningServer(MLFLOW, f"http://127.0.0.1:{mlflow_port}", theirs.pid, theirs_ready),
        }


def prediction_log_counts(url: str) -> dict[str, float]:
    """``modelops_prediction_log_rows_total`` by outcome from our server's /metrics."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("modelops_prediction_log_rows_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


# -- in-process limit -----------------------------------------------------------------------------


def time_predict(model: Any, frame: Any, seconds: float) -> dict[str, float]:
    """Median seconds of ``model.predict(frame)`` over as many calls as fit in ``seconds`` (at least 5)."""
    model.predict(frame)  # warm
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        started = time.perf_counter()
        model.predict(frame)
        times.append(time.perf_counter() - started)
    per_call = median(times) or float("nan")
    return {"calls": len(times), "per_call_ms": per_call * 1000, "rows_per_s": len(frame) / per_call}


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Served:
    """A server of the run: its name, base URL, request path, protocol and pid (for CPU and RSS)."""

    name: str
    url: str
    path: str
    protocol: str
    pid: int
    ready_s: float


def _start_all(
    stack: ExitStack,
    params: Params,
    tracking_uri: str,
    model_name: str,
    estimator: Any,
    root: Path,
    envs: dict[str, Any],
) -> dict[str, Served]:
    """Start ours, ``mlflow models serve`` and each prepared peer for ``models:/<model_name>/1``."""
    both = stack.enter_context(start_servers(tracking_uri, model_name, root, params.start_timeout))
    out = {k: Served(k, s.url, "/invocations", "invocations", s.pid, s.started_in_s) for k, s in both.items()}
    if envs:
        exported = peers.export_model(estimator, f"models:/{model_name}/1", root / f"{model_name}-export")
        for name, (peer, bin_dir) in envs.items():
            url, pid, ready = stack.enter_context(
                peers.serve(peer, bin_dir, exported, root / f"{model_name}-{name}", params.start_timeout)
            )
            out[name] = Served(name, url, peer.path(), peer.protocol, pid, ready)
    return out


def _check(server: Served, body: bytes, expected: list[Any]) -> None:
    """``server`` must answer ``body`` with the in-process predictions (same model, same rows)."""
    response = httpx.post(server.url + server.path, content=body, headers={"content-type": CONTENT_TYPE}, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{server.name} answered {response.status_code}: {response.text[:300]}")
    got = peers.predictions(server.protocol, response.json())
    if [str(int(float(x))) for x in got] != [str(int(x)) for x in expected]:
        raise RuntimeError(f"{server.name} answered {got[:5]}..., expected {expected[:5]}...")


def _measure(generator: str, server: Served, body: bytes, conns: int, duration: float) -> dict[str, Any]:
    cpu_before = tree_cpu_seconds(server.pid)
    measured = loadgen.run_load(generator, server.url + server.path, body, CONTENT_TYPE, conns, duration)
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    entry = measured.to_dict()
    entry["server_cpu_ms_per_request"] = 1000 * cpu / measured.requests if measured.requests else None
    return entry


def _summary(kind: str, rows: int, conns: int, which: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    rps = median([e["rps"] for e in entries])
    return {
        "model": kind,
        "rows": rows,
        "connections": conns,
        "server": which,
        "rps": rps,
        "rows_per_s": rps * rows if rps is not None else None,
        "p50_ms": median([e["p50_ms"] for e in entries if e["p50_ms"] is not None]),
        "p99_ms": median([e["p99_ms"] for e in entries if e["p99_ms"] is not None]),
        "server_cpu_ms_per_request": median(
            [e["server_cpu_ms_per_request"] for e in entries if e["server_cpu_ms_per_request"] is not None]
        ),
        "errors": sum(e["errors"] for e in entries),
        "repeats": entries,
    }


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the serving benchmark; returns the result document (see the module docstring)."""
    params = params or Params()
    generator = loadgen.choose(params.loadgen)
    machine = machine_info()
    cells: list[dict[str, Any]] = []
    inprocess: list[dict[str, Any]] = []
    servers_info: dict[str, Any] = {}
    notes: list[str] = []
    load_seen: list[float] = [loadavg()]
    envs = peers.prepare(list(params.peers), lambda name, exc: notes.append(f"{name} not installed: {exc}"))
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serving-")))
        log(f"serving: registering {', '.join(params.models)}")
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        stack.enter_context(mlflow_uris(tracking_uri))
        names = register_models(root, params.models)
        from modelops.registry.models import load_model

        ceiling = {}
        for conns in params.connections:
            body = peers.request_body("invocations", feature_frame().head(max(params.rows)))
            measured = loadgen.ceiling(generator, body, CONTENT_TYPE, conns, max(1.0, params.duration / 2))
            ceiling[str(conns)] = measured.to_dict()
            log(
                f"serving: {generator} against a fixed-response server, {conns} connection(s): {measured.rps:.0f} req/s"
            )
        for kind in params.models:
            model_name = names[kind]
            estimator = load_model(f"models:/{model_name}/1")
            X = feature_frame()
            frames = {rows: X.head(rows) for rows in params.rows}
            log(f"serving: starting the servers for {model_name}")
            with ExitStack() as running, ExitStack() as sampling:
                servers = _start_all(running, params, tracking_uri, model_name, estimator, root, envs)
                bodies = {
                    (name, rows): peers.request_body(s.protocol, frames[rows])
                    for name, s in servers.items()
                    for rows in params.rows
                }
                for name, server in servers.items():
                    rows = max(params.rows)
                    _check(server, bodies[name, rows], list(estimator.predict(frames[rows])))
                samplers = {k: sampling.enter_context(RssSampler(s.pid)) for k, s in servers.items()}
                order = list(servers)
                for rows in params.rows:
                    for conns in params.connections:
                        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                        limits: list[dict[str, float]] = []
                        for name, server in servers.items():  # warm-up, discarded
                            loadgen.run_load(
                                generator,
                                server.url + server.path,
                                bodies[name, rows],
                                CONTENT_TYPE,
                                conns,
                                params.warmup,
                            )
                        for repeat in range(params.repeats):
                            shift = repeat % len(order)  # each repeat starts with the next server
                            for name in order[shift:] + order[:shift]:
                                runs[name].append(
                                    _measure(generator, servers[name], bodies[name, rows], conns, params.duration)
                                )
                            limits.append(time_predict(estimator, frames[rows], params.inprocess_seconds))
                            load_seen.append(loadavg())
                        limit = {
                            "model": kind,
                            "rows": rows,
                            "connections": conns,
                            "per_call_ms": median([x["per_call_ms"] for x in limits]),
                            "rows_per_s": median([x["rows_per_s"] for x in limits]),
                            "repeats": limits,
                        }
                        inprocess.append(limit)
                        summaries = {name: _summary(kind, rows, conns, name, e) for name, e in runs.items()}
                        cells.extend(summaries.values())
                        text = ", ".join(f"{n} {c['rps']:.0f} ({c['p99_ms']:.1f})" for n, c in summaries.items())
                        log(f"serving: {kind} {rows} row(s) x{conns}: req/s (p99 ms) {text}")
                if params.profile_seconds:
                    for rows, conns in params.profile_cells:
                        if rows in params.rows:
                            servers_info.setdefault(f"{kind}-profiles", {})[f"{rows}x{conns}"] = _profile(
                                generator, servers[OURS], bodies[OURS, rows], conns, params.profile_seconds
                            )
                sampling.close()
                servers_info[kind] = {
                    name: {"ready_after_s": servers[name].ready_s, "peak_rss_mib": samplers[name].peak / MIB}
                    for name in servers
                }
                servers_info[kind][OURS]["prediction_log_rows"] = prediction_log_counts(servers[OURS].url)
    result = {
        "name": NAME,
        "machine": machine,
        "loadavg_end": os.getloadavg()[0],
        "loadavg_during": {"min": min(load_seen), "median": median(load_seen), "max": max(load_seen)},
        "params": {
            "duration_s": params.duration,
            "repeats": params.repeats,
            "connections": list(params.connections),
            "rows": list(params.rows),
            "models": list(params.models),
            "servers": [OURS, MLFLOW, *envs],
            "peers": {name: list(peer.requirements) for name, (peer, _) in envs.items()},
            "endpoint": "ours, mlflow serve, mlserver-mlflow: POST /invocations (dataframe_split); "
            "mlserver-sklearn: V2 infer (one FP64 tensor); kserve: V1 instances; bentoml: instances",
            "dataset": "sklearn breast_cancer (569 x 30 float)",
        },
        "loadgen": {"generator": generator, "ceiling": ceiling},
        "cells": cells,
        "inprocess": inprocess,
        "servers": servers_info,
        "notes": notes,
    }
    result["targets"] = targets(result)
    return result


def _profile(generator: str, server: Served, body: bytes, conns: int, seconds: float) -> dict[str, Any] | None:
    """py-spy of our server while the load generator drives one cell (None without py-spy)."""
    import threading

    holder: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: holder.update(
            load=loadgen.run_load(generator, server.url + server.path, body, CONTENT_TYPE, conns, seconds + 2).to_dict()
        )
    )
    thread.start()
    time.sleep(1)
    profile = pyspy_record(server.pid, seconds, keep=r"modelops|sklearn|pandas|numpy|starlette|uvicorn|pyarrow|orjson")
    thread.join()
    if profile is not None:
        profile["load"] = holder.get("load")
    return profile


def _cell(result: dict[str, Any], model: str, rows: int, conns: int, server: str) -> dict[str, Any] | None:
    for cell in result["cells"]:
        if (cell["model"], cell["rows"], cell["connections"], cell["server"]) == (model, rows, conns, server):
            return dict(cell)
    return None


def _limit(result: dict[str, Any], model: str, rows: int, conns: int) -> dict[str, Any] | None:
    for entry in result["inprocess"]:
        if (entry["model"], entry["rows"], entry["connections"]) == (model, rows, conns):
            return dict(entry)
    return None


def best_peer(result: dict[str, Any], model: str, rows: int, conns: int) -> dict[str, Any] | None:
    """The cell of the peer (any server but ours) with the most requests/s."""
    others = [c for c in result["cells"] if (c["model"], c["rows"], c["connections"]) == (model, rows, conns)]
    others = [c for c in others if c["server"] != OURS and c["rps"]]
    return max(others, key=lambda c: c["rps"]) if others else None


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 9's serving targets (1-connection cells) and issue 18's (every cell, against the best peer)."""
    out = []
    conns = 1
    ours = _cell(result, "logistic_regression", 1, conns, OURS)
    theirs = _cell(result, "logistic_regression", 1, conns, MLFLOW)
    if ours and theirs:
        out.append(
            Target(
                "1-row LogisticRegression: our req/s / mlflow serve req/s",
                ratio(ours["rps"], theirs["rps"]),
                ">=",
                3.0,
                "x",
            )
        )
        out.append(
            Target(
                "1-row LogisticRegression: our p99 / mlflow serve p99",
                ratio(ours["p99_ms"], theirs["p99_ms"]),
                "<=",
                0.5,
                "x",
            )
        )
    for model in result["params"]["models"]:
        cell = _cell(result, model, 100, conns, OURS)
        limit = _limit(result, model, 100, conns)
        if cell and limit:
            out.append(
                Target(
                    f"100-row {model}: our rows/s / in-process predict rows/s",
                    ratio(cell["rows_per_s"], limit["rows_per_s"]),
                    ">=",
                    0.5,
                    "x",
                )
            )
    if len(result["params"].get("servers", ())) <= 2:
        return out
    for model in result["params"]["models"]:
        for rows in result["params"]["rows"]:
            for conns in result["params"]["connections"]:
                ours = _cell(result, model, rows, conns, OURS)
                best = best_peer(result, model, rows, conns)
                if not (ours and best):
                    continue
                where = f"{model}, {rows} row(s), {conns} conn(s)"
                out += [
                    Target(f"{where}: {what}", value, op, limit, "x", source="issue 18")
                    for what, value, op, limit in (
                        (f"our req/s / best peer's ({best['server']})", ratio(ours["rps"], best["rps"]), ">=", 2.0),
                        ("our p99 / that peer's p99", ratio(ours["p99_ms"], best["p99_ms"]), "<=", 1.0),
                    )
                ]
    return out


def markdown(result: dict[str, Any]) -> str:
    """The serving section of RESULTS.md."""
    servers = result["params"].get("servers") or [OURS, MLFLOW]
    during = result.get("loadavg_during")
    load = (
        f" Load average (1 min) during the run: {during['min']:.2f} to {during['max']:.2f} "
        f"(median {during['median']:.2f})."
        if during
        else ""
    )
    lines = [
        "## Serving",
        "",
        f"One worker process each on loopback, load generator `{result['loadgen']['generator']}`, "
        f"{result['params']['duration_s']:g} s x {result['params']['repeats']} repeats per cell, the servers "
        "interleaved within each repeat (each repeat starts with the next server), medians. Our server has the "
        f"prediction log and metrics on. Endpoints: {result['params']['endpoint']}. The in-process limit is "
        f"`pipeline.predict` on a pre-built DataFrame in the driver process.{load}",
        "",
        "Requests/s (p99 ms) per server; `vs best` = ours / the best other server's req/s:",
        "",
        "| model | rows | conns | " + " | ".join(servers) + " | vs best | in-process rows/s |",
        "|---|---|---|" + "---|" * len(servers) + "---|---|",
    ]
    for model in result["params"]["models"]:
        for rows in result["params"]["rows"]:
            for conns in result["params"]["connections"]:
                cells = [_cell(result, model, rows, conns, s) for s in servers]
                ours = cells[0]
                best = best_peer(result, model, rows, conns)
                limit = _limit(result, model, rows, conns)
                if ours is None:
                    continue
                shown = " | ".join(f"{_f(c['rps'])} ({_f(c['p99_ms'], 1)})" if c else "-" for c in cells)
                vs = f"{_f(ratio(ours['rps'], best['rps']), 2)}x {best['server']}" if best else "-"
                lines.append(
                    f"| {model} | {rows} | {conns} | {shown} | {vs} | {_f(limit['rows_per_s']) if limit else '-'} |"
                )
    lines += [
        "",
        "Server CPU ms per request (process tree, from `/proc`):",
        "",
        "| model | rows | conns | " + " | ".join(servers) + " |",
        "|---|---|---|" + "---|" * len(servers),
    ]
    for model in result["params"]["models"]:
        for rows in result["params"]["rows"]:
            for conns in result["params"]["connections"]:
                cells = [_cell(result, model, rows, conns, s) for s in servers]
                if cells[0] is None:
                    continue
                shown = " | ".join(_f(c["server_cpu_ms_per_request"], 2) if c else "-" for c in cells)
                lines.append(f"| {model} | {rows} | {conns} | {shown} |")
    lines += ["", "| model | " + " | ".join(f"{s} peak RSS MiB (ready s)" for s in servers) + " |"]
    lines.append("|---|" + "---|" * len(servers))
    for model in result["params"]["models"]:
        info = result["servers"].get(model)
        if not info:
            continue
        shown = " | ".join(
            f"{_f(info[s]['peak_rss_mib'])} ({_f(info[s]['ready_after_s'], 1)})" if s in info else "-" for s in servers
        )
        lines.append(f"| {model} | {shown} |")
    ceil = ", ".join(
        f"{c} conn: {_f(v['rps'])} req/s ({_f(1e6 * v['generator_cpu_s'] / max(v['requests'], 1), 3)} µs CPU/req)"
        for c, v in result["loadgen"]["ceiling"].items()
    )
    lines += ["", f"Load generator ceiling against a fixed-response server (same body): {ceil}."]
    logs = {
        m: result["servers"][m][OURS].get("prediction_log_rows")
        for m in result["params"]["models"]
        if m in result["servers"]
    }
    lines.append(f"Prediction log rows at the end (ours): {logs}.")
    if result["params"].get("peers"):
        lines.append(
            "Peer environments: "
            + "; ".join(f"`{name}`: {', '.join(reqs)}" for name, reqs in result["params"]["peers"].items())
            + "."
        )
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    for key, profiles in result["servers"].items():
        if key.endswith("-profiles"):
            for cell, profile in profiles.items():
                lines += profile_markdown(profile, f"Our server, {key.removesuffix('-profiles')} {cell} (rows x conns)")
    return "\n".join(lines)


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.serving [--quick] [--duration S] [--repeats N] [--loadgen auto|wrk|python]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--connections", type=int, nargs="+")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results/")
    ns = parser.parse_args(argv)
    params = Params.quick() if ns.quick else Params()
    if ns.duration:
        params.duration = ns.duration
    if ns.repeats:
        params.repeats = ns.repeats
    if ns.connections:
        params.connections = tuple(ns.connections)
    params.loadgen = ns.loadgen
    result = run(params)
    if ns.no_write:
        print(json.dumps(result, default=str, indent=1))
    else:
        print(write_result(NAME, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
