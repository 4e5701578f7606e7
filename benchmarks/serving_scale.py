"""Serving scale-up benchmark: worker processes per pod and adaptive batching (issue 18, items 2 and 3).

What is measured, side by side in one run, all servers ``modelops-runtime serve`` loading the same
registered model from one MLflow store, on 127.0.0.1, driven by the same load generator with the
same bytes (``POST /invocations``, ``dataframe_split``, one row of scikit-learn's breast-cancer data),
prediction log and metrics on:

- **Workers**: a 100-tree ``RandomForestClassifier`` (CPU-bound: ``predict`` dominates a 1-row
  request) served by one worker and by two workers (``--workers 2``), 8 connections. Per run:
  requests/s, p50/p99 (ms, client side), and the CPU the server's process tree used (cores = CPU
  seconds / wall seconds; the machine has 2 cores shared with other work, so the cores the second
  worker could get bound its gain). Target (issue 18): 2 workers >= 1.8x one worker's requests/s.
- **Batching**: the same forest, one worker, unbatched vs ``batching: {max_batch_size,
  max_wait_milliseconds}``, 16 connections. Per run as above, plus the mean rows per merged predict
  call (``modelops_batch_rows`` sum / count over the run). Targets: batched >= 3x unbatched
  requests/s; batched p99 <= the configured wait plus one predict of a full batch (the pipeline's
  ``predict_proba`` on as many rows as connections, timed in this process in the same run).

Each repeat measures every configuration once, in an order that rotates between repeats; values are
medians over repeats, ratios are of those medians. The one-minute load average before each run is
recorded beside it. Before measuring, each server's answers are checked against in-process predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from . import loadgen
from .common import (
    Target,
    background,
    free_port,
    loadavg,
    log,
    machine_info,
    median,
    mlflow_uris,
    ratio,
    tree_cpu_seconds,
    venv_bin,
    wait_http,
    write_result,
)
from .serving import CONTENT_TYPE, feature_frame, register_models, request_body, time_predict

NAME = "serving_scale"
MODEL = "random_forest"
ONE, TWO, UNBATCHED, BATCHED = "1 worker", "2 workers", "unbatched", "batched"


@dataclass
class Params:
    """Sizes of one run."""

    duration: float = 6.0
    repeats: int = 3
    warmup: float = 1.0
    worker_connections: int = 8
    batch_connections: int = 16
    max_batch_size: int = 32
    max_wait_milliseconds: float = 5.0
    loadgen: str = "auto"
    start_timeout: float = 300.0

    @classmethod
    def quick(cls) -> Params:
        """Short runs: 3 s, 2 repeats."""
        return cls(duration=3.0, repeats=2, warmup=0.5)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes: one short repeat."""
        return cls(duration=1.0, repeats=1, warmup=0.2)


@dataclass
class Server:
    """A started ``modelops-runtime serve``: its URL and the pid of its process tree."""

    url: str
    pid: int


@contextmanager
def start_server(
    tracking_uri: str, model_name: str, workdir: Path, label: str, timeout: float, **config: Any
) -> Iterator[Server]:
    """``modelops-runtime serve`` for ``models:/<model_name>/1`` with ``config`` (ServeConfig fields) until exit."""
    from modelops.contract import ENV_JOB_CONFIG, ServeConfig

    slug = label.replace(" ", "-")
    serve_config = ServeConfig(
        model=model_name,
        registry_version="1",
        version="1.0.0",
        stage="Production",
        prediction_log_uri=str(workdir / "predictions" / slug),
        **config,
    )
    port = free_port()
    argv = [str(venv_bin() / "modelops-runtime"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    output = workdir / f"serve-{slug}.log"
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        ENV_JOB_CONFIG: serve_config.to_env(),
        "POD_NAME": f"bench-{slug}",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(workdir),
    }
    with background([*argv, "--log-level", "warning"], env=env, log=output, cwd=workdir) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/health/ready", process, timeout, output)
        yield Server(url, process.pid)


def scrape(url: str, name: str) -> float:
    """Sum of the samples called ``name`` in one ``/metrics`` scrape."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def check_answers(server: Server, X: Any, expected: list[Any]) -> None:
    """``server`` answers each row as the in-process pipeline does (and concurrently for a batching one)."""
    with httpx.Client(timeout=30) as client:
        for i, want in enumerate(expected):
            response = client.post(
                f"{server.url}/invocations",
                content=request_body(X.iloc[i : i + 1], 1),
                headers={"content-type": CONTENT_TYPE},
            )
            response.raise_for_status()
            got = response.json()["predictions"][0]
            if str(got) != str(want):
                raise RuntimeError(f"{server.url} answered {got} for row {i}, expected {want}")


def measure(
    generator: str, server: Server, body: bytes, connections: int, duration: float
) -> dict[str, Any]:
    """One load run: the generator's numbers, the server tree's cores, the batch statistics, the load."""
    load = loadavg()
    cpu_before = tree_cpu_seconds(server.pid)
    batches_before = scrape(server.url, "modelops_batch_rows_count"), scrape(server.url, "modelops_batch_rows_sum")
    measured = loadgen.run_load(generator, f"{server.url}/invocations", body, CONTENT_TYPE, connections, duration)
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    calls = scrape(server.url, "modelops_batch_rows_count") - batches_before[0]
    rows = scrape(server.url, "modelops_batch_rows_sum") - batches_before[1]
    entry = measured.to_dict()
    entry["server_cores"] = cpu / measured.duration_s if measured.duration_s else None
    entry["requests_per_cpu_s"] = measured.requests / cpu if cpu else None
    entry["mean_batch_rows"] = rows / calls if calls else None
    entry["loadavg_before"] = load
    return entry


def summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one configuration."""

    def med(key: str) -> float | None:
        return median([e[key] for e in entries if e.get(key) is not None])

    keys = ("rps", "p50_ms", "p99_ms", "server_cores", "requests_per_cpu_s", "mean_batch_rows", "loadavg_before")
    return {
        **{k: med(k) for k in keys},
        "errors": sum(e["errors"] for e in entries),
        "repeats": entries,
    }


def compare(
    generator: str, servers: dict[str, Server], body: bytes, connections: int, params: Params
) -> dict[str, dict[str, Any]]:
    """Each server under the same load, interleaved over the repeats (order rotating)."""
    for server in servers.values():  # warm-up, discarded
        loadgen.run_load(generator, f"{server.url}/invocations", body, CONTENT_TYPE, connections, params.warmup)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    labels = list(servers)
    for repeat in range(params.repeats):
        order = labels[repeat % len(labels) :] + labels[: repeat % len(labels)]
        for label in order:
            entry = measure(generator, servers[label], body, connections, params.duration)
            runs[label].append(entry)
            log(f"serving_scale: {label} x{connections}: {entry['rps']:.0f} req/s, p99 {entry['p99_ms']} ms, "
                f"{entry['server_cores']:.2f} cores, load {entry['loadavg_before']}")
    return {label: summary(entries) for label, entries in runs.items()}


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result document (see the module docstring)."""
    params = params or Params()
    generator = loadgen.choose(params.loadgen)
    machine = machine_info()
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serving-scale-")))
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        stack.enter_context(mlflow_uris(tracking_uri))
        log("serving_scale: registering the forest")
        model_name = register_models(root, (MODEL,))[MODEL]
        from modelops.api.modelversion import BatchingSpec
        from modelops.registry.models import load_model

        estimator = load_model(f"models:/{model_name}/1")
        X = feature_frame()
        body = request_body(X, 1)
        expected = list(estimator.predict(X.head(8)))
        batching = BatchingSpec(
            max_batch_size=params.max_batch_size, max_wait_milliseconds=params.max_wait_milliseconds
        )
        start: dict[str, dict[str, Any]] = {
            ONE: {"workers": 1},
            TWO: {"workers": 2},
            BATCHED: {"workers": 1, "batching": batching},
        }
        servers = {
            label: stack.enter_context(start_server(tracking_uri, model_name, root, label, params.start_timeout, **cfg))
            for label, cfg in start.items()
        }
        for server in servers.values():
            check_answers(server, X, expected)
        log("serving_scale: workers")
        workers = compare(generator, {ONE: servers[ONE], TWO: servers[TWO]}, body, params.worker_connections, params)
        log("serving_scale: batching")
        batch = compare(
            generator, {UNBATCHED: servers[ONE], BATCHED: servers[BATCHED]}, body, params.batch_connections, params
        )
        # "One predict" of the batch this load makes: predict_proba (what the server calls for a
        # forest) on as many rows as connections, in this process, in the same run.
        full_batch = min(params.batch_connections, params.max_batch_size)
        one_predict = time_predict(_ProbaOf(estimator), X.head(full_batch), 1.0)
    result: dict[str, Any] = {
        "name": NAME,
        "machine": machine,
        "params": {
            "duration_s": params.duration,
            "repeats": params.repeats,
            "model": "100-tree RandomForestClassifier (breast cancer, 30 float columns), 1-row requests",
            "endpoint": "POST /invocations (dataframe_split)",
            "worker_connections": params.worker_connections,
            "batch_connections": params.batch_connections,
            "max_batch_size": params.max_batch_size,
            "max_wait_milliseconds": params.max_wait_milliseconds,
        },
        "loadgen": {"generator": generator},
        "workers": workers,
        "batching": batch,
        "one_predict": {"rows": full_batch, **one_predict},
    }
    result["targets"] = targets(result)
    return result


class _ProbaOf:
    """``predict`` = the estimator's ``predict_proba`` (for :func:`~.serving.time_predict`)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, frame: Any) -> Any:
        return self.estimator.predict_proba(frame.to_numpy())


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 18's targets for workers and batching."""
    w, b = result["workers"], result["batching"]
    params = result["params"]
    bound = params["max_wait_milliseconds"] + result["one_predict"]["per_call_ms"]
    rows = (
        (
            f"RandomForest 1 row, {params['worker_connections']} connections: 2 workers / 1 worker req/s",
            ratio(w[TWO]["rps"], w[ONE]["rps"]),
            ">=",
            1.8,
        ),
        (
            f"RandomForest 1 row, {params['batch_connections']} connections: batched / unbatched req/s",
            ratio(b[BATCHED]["rps"], b[UNBATCHED]["rps"]),
            ">=",
            3.0,
        ),
        (
            f"batched p99 / (max wait {params['max_wait_milliseconds']:g} ms + one predict of "
            f"{result['one_predict']['rows']} rows {result['one_predict']['per_call_ms']:.1f} ms)",
            ratio(b[BATCHED]["p99_ms"], bound),
            "<=",
            1.0,
        ),
    )
    return [Target(name, value, op, limit, "x", source="issue 18") for name, value, op, limit in rows]


def markdown(result: dict[str, Any]) -> str:
    """The section of RESULTS.md."""
    params = result["params"]
    lines = [
        "## Serving: workers and adaptive batching",
        "",
        f"{params['model']}, `{params['endpoint']}`, load generator `{result['loadgen']['generator']}`, "
        f"{params['duration_s']:g} s x {params['repeats']} repeats per configuration, interleaved (medians). "
        "Prediction log and metrics on. `cores` = CPU seconds of the server's process tree / wall seconds "
        "(what the server got of the 2 cores, shared with other work); `load` = the machine's one-minute load "
        "average before each run.",
        "",
        "| part | configuration | conns | req/s | p50 / p99 ms | server cores | requests per server CPU s "
        "| mean rows per predict | load | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part, conns in (("workers", params["worker_connections"]), ("batching", params["batch_connections"])):
        for label, s in result[part].items():
            lines.append(
                f"| {part} | {label} | {conns} | {_f(s['rps'])} | {_f(s['p50_ms'], 2)} / {_f(s['p99_ms'], 2)} | "
                f"{_f(s['server_cores'], 2)} | {_f(s['requests_per_cpu_s'])} | {_f(s['mean_batch_rows'], 1)} | "
                f"{', '.join(str(e['loadavg_before']) for e in s['repeats'])} | {s['errors']} |"
            )
    one = result["one_predict"]
    lines += [
        "",
        f"Batching: max batch {params['max_batch_size']} rows, max wait {params['max_wait_milliseconds']:g} ms; "
        f"one in-process `predict_proba` of {one['rows']} rows: {one['per_call_ms']:.2f} ms (median of "
        f"{one['calls']} calls).",
    ]
    return "\n".join(lines)


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.serving_scale [--quick] [--no-write]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results/")
    ns = parser.parse_args(argv)
    result = run(Params.quick() if ns.quick else Params())
    result["loadavg_end"] = loadavg()
    if ns.no_write:
        print(json.dumps(result, default=vars, indent=1))
    else:
        print(write_result(NAME, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
