"""High availability end to end: two operator processes against one cluster and MLflow. One holds
the leader-election Lease and acts, the other stands by; SIGKILL the leader while versions train
and the standby takes over within the Lease's bound, with no duplicate Job or registered version.

It runs its own sandbox (API, kubelet, MLflow): the session's shared operator must not take part.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from modelops.sandbox import procs
from modelops.sandbox.client import Resource
from modelops.sandbox.testing import Sandbox, WaitTimeout, start_test_sandbox
from tests.e2e.conftest import OPERATOR_ENV, modelversion, phase

pytestmark = pytest.mark.e2e

LEASE = {
    "MODELOPS_LEASE_NAMESPACE": "default",
    "MODELOPS_LEASE_DURATION_SECONDS": "4",
    "MODELOPS_LEASE_RENEW_DEADLINE_SECONDS": "3",
    "MODELOPS_LEASE_RETRY_SECONDS": "0.5",
}
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
#: A standby takes over once it saw the Lease unrenewed for its duration, plus one retry period;
#: kopf's start-up and the resume handlers come on top (measured here: about 2 s).
TAKEOVER_BOUND = 4 + 0.5 + 10


@pytest.fixture(scope="module")
def ha_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sup = start_test_sandbox(tmp_path_factory.mktemp("ha-sandbox"))
    box = Sandbox(sup)
    try:
        sup.ensure_mlflow()
        yield box
    finally:
        box.close()
        sup.down(grace=5.0)


def _start_operator(box: Sandbox, name: str, logs: Path, restart: int = 0) -> subprocess.Popen[bytes]:
    """Start operator ``name`` (its log: ``<name>.log``, ``<name>-<restart>.log`` when started again)."""
    sup = box.supervisor
    env = {
        **os.environ,
        "KUBECONFIG": str(sup.state.kubeconfig),
        "MODELOPS_MLFLOW_TRACKING_URI": str(sup.state.mlflow_url),
        "MODELOPS_PREDICTION_LOG_URI": str(sup.state_dir / "predictions"),
        "MODELOPS_HEALTH_PORT": str(procs.free_port()),
        "MODELOPS_METRICS_PORT": str(procs.free_port()),
        **sup.operator_env,
        **OPERATOR_ENV,
        **LEASE,
        procs.MARKER_ENV: sup.marker,
    }
    with open(logs / (f"{name}-{restart}.log" if restart else f"{name}.log"), "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "modelops.cli", "operator", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _holder(box: Sandbox) -> str:
    lease = box.find(LEASES, "modelops-operator", "default") or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _log_tails(logs: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of each operator's log, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in sorted(logs.glob("*.log"))
    )


def _pid_of(identity: str) -> int:
    return int(identity.split("_")[-2])  # <host>_<pid>_<random>


def test_the_standby_takes_over_without_duplicates(ha_sandbox: Sandbox, tmp_path: Path) -> None:
    box = ha_sandbox
    ns = box.new_namespace("failover")
    model = f"m-{ns}"[:40].rstrip("-")
    started = {name: _start_operator(box, name, tmp_path) for name in ("a", "b")}
    operators = {p.pid: p for p in started.values()}
    log_of = {p.pid: tmp_path / f"{name}.log" for name, p in started.items()}
    try:
        leader = _pid_of(box.wait_for(lambda: _holder(box), 60, message="a leader"))
        (standby,) = set(operators) - {leader}
        names = ["v1", "v2", "v3", "v4"]
        box.create(modelversion("v1", model, "1.0.0", stage="Development"), ns)
        for name in names[1:]:  # versionBump: resolved against each other's claims
            box.create(modelversion(name, model, stage="Development", versionBump="minor"), ns)
        box.wait_for(lambda: box.list("jobs", ns), 60, message="a training Job")
        # The second operator refused to act: it stands by and never started its handlers (it may
        # still be importing when the leader already works: wait for it to say so).
        box.wait_for(lambda: "standing by" in log_of[standby].read_text(), 60, message="the standby stands by")
        assert "modelops operator started" not in log_of[standby].read_text()

        operators[leader].send_signal(signal.SIGKILL)  # mid-work: Jobs running, versions unregistered
        killed = time.monotonic()
        operators[leader].wait(10)
        box.wait_for(lambda: _pid_of(_holder(box)) == standby, TAKEOVER_BOUND, 0.1, "the standby took the Lease")
        took_over = time.monotonic() - killed
        # From here on the operators run as their Deployment's pods would: one that exits (the
        # killed one; a leader that lost its Lease on a loaded machine, by design) is started again.
        pods = {name: started[name] for name in started}
        restarts: list[str] = []

        settled = phase("", ("Ready", "Superseded"))

        def restarted_then_settled(obj: dict[str, Any]) -> bool:
            for pod, process in pods.items():
                if process.poll() is not None:
                    restarts.append(f"{pod} (exit {process.returncode})")
                    pods[pod] = _start_operator(box, pod, tmp_path, restart=len(restarts))
                    operators[pods[pod].pid] = pods[pod]
            return settled(obj)

        for name in names:
            try:
                box.wait_for_object("modelversions", name, ns, restarted_then_settled, 240)
            except WaitTimeout as exc:  # its message names the version's status
                raise WaitTimeout(f"{exc}; restarted: {restarts}; operator logs:\n{_log_tails(tmp_path)}") from None
        print(f"takeover after {took_over:.1f}s; operators restarted after it: {restarts}")  # for the docs

        versions = [box.get("modelversions", n, ns)["status"]["version"] for n in names]
        assert len(set(versions)) == len(names), versions
        assert sorted(j["metadata"]["name"] for j in box.list("jobs", ns)) == sorted(
            f"{n}-v{v.replace('.', '-')}" for n, v in zip(names, versions, strict=True)
        )
        client = MlflowClient(tracking_uri=box.mlflow_url, registry_uri=box.mlflow_url)
        registered = client.search_model_versions(f"name='{model}'")
        assert sorted(v.tags["semver"] for v in registered) == sorted(versions)  # each once
    finally:
        for process in operators.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(20)
