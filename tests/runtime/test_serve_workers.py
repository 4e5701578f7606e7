"""Several server processes per pod (``--workers``/``ServeConfig.workers``): the real command, as a pod runs it.

What must hold (issue 18): the workers share one port and answer what one process answers; one
scrape shows the pod's sums; counters never go down, also when a worker is killed and replaced; the
prediction log holds every request (one stream per worker); a refused model ends the pod with its
reason as with one process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from modelops.contract import (
    ENV_JOB_CONFIG,
    ENV_PORT,
    ENV_TERMINATION_LOG,
    ServeConfig,
    parse_ready_refusal,
    parse_refusal,
)
from modelops.monitoring.prediction_log import read_prediction_log

from .serve_support import Store, config_for, free_port, records

POD = "bc-pod-0"
HOUR = timedelta(hours=1)


class Pod:
    """A ``modelops-runtime serve --workers N`` process tree on a free port."""

    def __init__(self, proc: subprocess.Popen[str], url: str, output: Path) -> None:
        self.proc, self.url, self.output = proc, url, output

    def workers(self) -> list[int]:
        """The worker pids (children of the supervisor running the server, not multiprocessing's helper)."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"resource_tracker" not in cmdline:
                    pids.append(int(pid))
        return sorted(pids)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """One ``/metrics`` scrape: (sample name, sorted labels) → value."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")


@contextmanager
def pod(
    store: Store, config: ServeConfig, tmp_path: Path, workers: int = 2, until: Callable[[Pod], bool] | None = None,
    **env: str,
) -> Iterator[Pod]:
    """Start the command with ``workers`` processes and wait until it is ready (or ``until`` holds);
    SIGKILL the group after."""
    port = free_port()
    output = tmp_path / f"pod-{port}.log"
    with open(output, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelops_runtime", "serve", "--host", "127.0.0.1", "--workers", str(workers)],
            env={**os.environ, ENV_JOB_CONFIG: config.to_env(), ENV_PORT: str(port),
                 "MLFLOW_TRACKING_URI": store.uri, "POD_NAME": POD, "TMPDIR": str(tmp_path), **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    running = Pod(proc, f"http://127.0.0.1:{port}", output)
    try:
        wait_until(lambda: (until or _ready)(running), 180, running)
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _ready(running: Pod) -> bool:
    try:
        return httpx.get(f"{running.url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition: object, timeout: float, running: Pod | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if running is not None:
            assert running.proc.poll() is None, running.log_text()
        assert time.monotonic() < deadline, running.log_text() if running else "timed out"
        time.sleep(0.2)


def predict_rows(running: Pod, X: pd.DataFrame, first: int, n: int) -> list[tuple[str, int, int]]:
    """Send rows ``first … first+n-1`` one per request, 8 at a time, each on a new connection (so the
    kernel spreads them over the workers); returns (request id, status, prediction) per request."""

    def one(i: int) -> tuple[str, int, int]:
        request_id = f"req-{i}"
        row = X.iloc[[i % len(X)]]
        response = httpx.post(
            f"{running.url}/invocations",
            json={"dataframe_records": records(row)},
            headers={"x-request-id": request_id, "connection": "close"},
            timeout=30,
        )
        return request_id, response.status_code, response.json()["predictions"][0]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(first, first + n)))


def _sum(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in scrape.items() if n == name)


def test_two_workers_serve_one_port_with_the_pods_metrics_and_a_complete_log(store: Store, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    # Rows are written only when the workers stop (flush after an hour): SIGTERM must flush both.
    config = config_for(store.bc, prediction_log_uri=str(log_dir), log_flush_seconds=3600)
    X, n = store.bc.X, 120
    with pod(store, config, tmp_path) as running:
        assert len(running.workers()) == 2
        answers = predict_rows(running, X, 0, n)
        assert all(status == 200 for _, status, _ in answers)
        expected = store.bc.estimator.predict(X.iloc[[i % len(X) for i in range(n)]]).tolist()
        assert [prediction for _, _, prediction in answers] == expected
        # One scrape, whichever worker answers it, shows the pod's sums.
        for _ in range(4):
            scrape = running.scrape()
            assert _sum(scrape, "ml_predictions_total") == n
            assert _sum(scrape, "ml_prediction_latency_seconds_count") == n
            by_class = {dict(labels)["prediction_class"]: v for (name, labels), v in scrape.items()
                        if name == "ml_predictions_total"}
            assert by_class == {"0": expected.count(0), "1": expected.count(1)}
            internal = (("error_type", "internal"), ("model_name", "breast-cancer"))
            assert scrape[("ml_prediction_errors_total", internal)] == 0
        assert not any(name.startswith("process_") for name, _ in scrape)  # per process: not summable
        bad = httpx.post(f"{running.url}/invocations", json={"dataframe_records": [{"nope": 1}]}, timeout=10)
        assert bad.status_code == 400
        assert _sum(running.scrape(), "ml_prediction_errors_total") == 1
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(60) == -signal.SIGTERM, running.log_text()
    log = read_prediction_log(str(log_dir), store.bc.name, "Production", datetime.now(UTC) - HOUR)
    assert sorted(log["request_id"]) == sorted(request_id for request_id, _, _ in answers)
    by_id = dict(zip(log["request_id"], log["prediction"], strict=True))
    assert [by_id[request_id] for request_id, _, _ in answers] == expected
    writers = {f.name.rsplit("-", 1)[0] for f in log_dir.rglob("*.parquet")}
    assert writers == {f"{POD}-w0", f"{POD}-w1"}  # one stream per worker, both served
    assert not list(tmp_path.glob("modelops-metrics-*"))  # the supervisor removed its metrics directory


def test_a_killed_worker_is_replaced_and_no_count_is_lost(store: Store, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    config = config_for(store.bc, prediction_log_uri=str(log_dir), log_flush_seconds=0.2)
    X = store.bc.X
    with pod(store, config, tmp_path) as running:
        served = 80
        assert all(status == 200 for _, status, _ in predict_rows(running, X, 0, served))
        wait_until(lambda: _sum(running.scrape(), "modelops_prediction_log_rows_total") == served, 30, running)
        victim = running.workers()[0]
        index = re.search(rf"worker (\d+) started \(pid {victim}\b", running.log_text())
        assert index is not None, running.log_text()
        killed_ms = int(time.time() * 1000)
        previous = running.scrape()
        os.kill(victim, signal.SIGKILL)

        def replacement_serving() -> bool:
            """Requests keep succeeding and counters only grow until the replacement has logged rows."""
            nonlocal served, previous
            answers = predict_rows(running, X, served, 16)
            assert all(status == 200 for _, status, _ in answers), answers
            served += 16
            scrape = running.scrape()
            for key, value in previous.items():
                if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
                    assert scrape.get(key, 0) >= value, key
            previous = scrape
            assert _sum(scrape, "ml_prediction_latency_seconds_count") == served
            files = log_dir.rglob(f"{POD}-w{index[1]}-*.parquet")
            return any(int(f.stem.rsplit("-", 1)[1]) > killed_ms for f in files)

        wait_until(replacement_serving, 180, running)
        assert len(running.workers()) == 2 and victim not in running.workers()
        assert f"worker {index[1]} (pid {victim}) ended by signal 9" in running.log_text()
        wait_until(lambda: _sum(running.scrape(), "modelops_prediction_log_rows_total") == served, 30, running)
        scrape = running.scrape()
        assert _sum(scrape, "ml_predictions_total") == served  # the killed worker's counts are still there
        assert _sum(scrape, "ml_prediction_latency_seconds_count") == served
    log = read_prediction_log(str(log_dir), store.bc.name, "Production", datetime.now(UTC) - HOUR)
    assert len(log) == served and log["request_id"].nunique() == served


def test_a_refused_model_keeps_the_pod_up_not_ready_with_its_reason(store: Store, tmp_path: Path) -> None:
    """Every worker refuses the model and stays up: the pod is live and not ready with the refusal
    (whichever worker answers), no worker is replaced or ends the pod, and the termination message
    is written for when the container stops."""
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")

    def refusing(running: Pod) -> bool:
        try:
            answers = [httpx.get(f"{running.url}/v2/health/ready", headers={"connection": "close"}, timeout=2)
                       for _ in range(8)]
        except httpx.TransportError:
            return False
        return all(parse_ready_refusal(a.content) is not None for a in answers)

    config = config_for(store.other_patch)
    with pod(store, config, tmp_path, until=refusing, **{ENV_TERMINATION_LOG: str(termination_log)}) as running:
        workers = running.workers()
        ready = httpx.get(f"{running.url}/v2/health/ready", timeout=5)
        reason, message = parse_ready_refusal(ready.content) or ("", "")
        assert ready.status_code == 503
        assert reason == "FrameworkVersionMismatch" and "scikit-learn version mismatch" in message
        assert httpx.get(f"{running.url}/v2/health/live", timeout=5).status_code == 200
        assert parse_refusal(termination_log.read_text()) == (reason, message)
        assert running.proc.poll() is None and running.workers() == workers and len(workers) == 2
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(60) == -signal.SIGTERM
    assert "refused its model" not in running.log_text()
