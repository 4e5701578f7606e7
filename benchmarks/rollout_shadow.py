"""Rollout benchmark: what shadowing costs the incumbent's clients, and the share that reaches the candidate.

Three ``modelops-runtime serve`` processes load the same registered model (breast cancer,
``StandardScaler + LogisticRegression``) with the prediction log on, as in production: the
**candidate**, the **incumbent without a router**, and the **incumbent with a shadow router**
(``MODELOPS_ROUTER``, ``sample_rate`` from the parameters) copying to the candidate. The same load
generator drives both incumbents with the same 1-row ``/invocations`` body on 1 connection,
alternating which goes first in each repeat. Per server: requests/s and the client's p50/p99
latency (medians over repeats). Then, per configured sample rate, the share of the requests the
incumbent answered that reached the candidate (``modelops_router_requests_total{route="shadow",
outcome="sent"}`` over the incumbent's ``ml_prediction_latency_seconds_count``), and the copies
dropped or failed.

No target is set by the issue beyond "client latency must not change measurably": the result
reports the p50 and p99 ratios (with router / without) and the repeats' spread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
    log,
    machine_info,
    median,
    mlflow_uris,
    ratio,
    wait_http,
    write_result,
)
from .serving import CONTENT_TYPE, feature_frame, register_models, request_body

NAME = "rollout_shadow"
MODEL = "logistic_regression"


@dataclass
class Params:
    """Sizes of one run."""

    duration: float = 5.0
    repeats: int = 5
    sample_rates: tuple[float, ...] = (1.0, 0.1)
    warmup: float = 1.0
    start_timeout: float = 120.0
    loadgen: str = "auto"

    @classmethod
    def quick(cls) -> Params:
        return cls(duration=2.0, repeats=3)

    @classmethod
    def tiny(cls) -> Params:
        return cls(duration=0.5, repeats=1, sample_rates=(0.5,), warmup=0.2)


@contextmanager
def server(tracking_uri: str, model: str, workdir: Path, tag: str, router: dict[str, Any] | None, timeout: float):
    """One ``modelops-runtime serve`` for ``models:/<model>/1`` (log on); yields its URL."""
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
    argv = [str(venv_bin() / "modelops-runtime"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    logfile = workdir / f"{tag}.log"
    with background([*argv, "--log-level", "warning"], env=env, log=logfile, cwd=workdir) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v2/health/ready", process, timeout, logfile)
        yield url


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


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result document (see the module docstring)."""
    params = params or Params()
    generator = loadgen.choose(params.loadgen)
    body = request_body(feature_frame(), 1)
    result: dict[str, Any] = {"name": NAME, "machine": machine_info(), "params": vars(params), "generator": generator}
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rollout-")))
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        stack.enter_context(mlflow_uris(tracking_uri))
        model = register_models(root, (MODEL,))[MODEL]
        candidate = stack.enter_context(server(tracking_uri, model, root, "candidate", None, params.start_timeout))
        plain = stack.enter_context(server(tracking_uri, model, root, "plain", None, params.start_timeout))
        shadowed = {
            rate: stack.enter_context(
                server(
                    tracking_uri,
                    model,
                    root,
                    f"shadow-{rate:g}",
                    {
                        "mode": "shadow",
                        "url": candidate,
                        "version": "1.0.0",
                        "registry_version": "1",
                        "sample_rate": rate,
                    },
                    params.start_timeout,
                )
            )
            for rate in params.sample_rates
        }
        before = {rate: shadow_counts(url) for rate, url in shadowed.items()}
        latency: dict[str, list[dict[str, Any]]] = {"without": [], **{f"shadow {r:g}": [] for r in shadowed}}
        targets = {"without": plain, **{f"shadow {r:g}": u for r, u in shadowed.items()}}
        for url in targets.values():
            loadgen.run_load(generator, f"{url}/invocations", body, CONTENT_TYPE, 1, params.warmup)
        for repeat in range(params.repeats):
            order = list(targets.items())
            if repeat % 2:
                order.reverse()
            for label, url in order:
                measured = loadgen.run_load(generator, f"{url}/invocations", body, CONTENT_TYPE, 1, params.duration)
                latency[label].append(measured.to_dict())
                log(f"{NAME}: {label}: {measured.rps:.0f} req/s, p50 {measured.p50_ms} ms, p99 {measured.p99_ms} ms")
        cells = {}
        for label, runs in latency.items():
            cells[label] = {
                "rps": median([r["rps"] for r in runs]),
                "p50_ms": median([r["p50_ms"] for r in runs if r["p50_ms"] is not None]),
                "p99_ms": median([r["p99_ms"] for r in runs if r["p99_ms"] is not None]),
                "p99_ms_range": [
                    min(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
                    max(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
                ],
                "errors": sum(r["errors"] for r in runs),
            }
        shares = {}
        for rate, url in shadowed.items():
            after = shadow_counts(url)
            delta = {k: after[k] - before[rate][k] for k in after}
            shares[f"{rate:g}"] = {
                "configured": rate,
                "answered": delta["answered"],
                "sent": delta["sent"],
                "dropped": delta["dropped"],
                "failed": delta["failed"],
                "reached": ratio(delta["sent"], delta["answered"]),
                "copied": ratio(delta["sent"] + delta["dropped"] + delta["failed"], delta["answered"]),
            }
    result["cells"] = cells
    result["shares"] = shares
    result["targets"] = [
        Target(
            f"p99 with shadow {r:g} / without",
            ratio(cells[f"shadow {r:g}"]["p99_ms"], cells["without"]["p99_ms"]),
            "<=",
            1.1,
            "x",
            "issue 17: client latency must not change measurably",
        )
        for r in params.sample_rates
    ]
    return result


def markdown(result: dict[str, Any]) -> str:
    """The results section."""
    lines = [
        "## Rollout shadow",
        "",
        "| incumbent | req/s | p50 ms | p99 ms (range over repeats) | errors |",
        "|---|---|---|---|---|",
    ]
    for label, cell in result["cells"].items():
        low, high = cell["p99_ms_range"]
        lines.append(
            f"| {label} | {cell['rps']:.0f} | {cell['p50_ms']:.2f} | {cell['p99_ms']:.2f} ({low:.2f}-{high:.2f}) "
            f"| {cell['errors']} |"
        )
    lines += [
        "",
        "| configured rate | answered | sent | dropped | failed | reached the candidate |",
        "|---|---|---|---|---|---|",
    ]
    for share in result["shares"].values():
        reached = share["reached"]
        lines.append(
            f"| {share['configured']:g} | {share['answered']:.0f} | {share['sent']:.0f} | {share['dropped']:.0f} "
            f"| {share['failed']:.0f} | {'n/a' if reached is None else f'{reached:.4f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.rollout_shadow [--quick] [--duration S] [--repeats N] [--no-write]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rollout_shadow", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-write", action="store_true", help="print the JSON, do not write results/")
    ns = parser.parse_args(argv)
    params = Params.quick() if ns.quick else Params()
    if ns.duration:
        params.duration = ns.duration
    if ns.repeats:
        params.repeats = ns.repeats
    params.loadgen = ns.loadgen
    result = run(params)
    print(markdown(result))
    if ns.no_write:
        print(json.dumps(result, default=str, indent=1))
    else:
        print(write_result(NAME, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
