"""`modelops sandbox up/status/logs/url/down`: processes are tracked and nothing is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelops.sandbox import procs
from modelops.sandbox.client import DEPLOYMENTS, JOBS, SERVICES, Api
from modelops.sandbox.kubelet.images import venv_bin
from modelops.sandbox.supervisor import STATE_FILE, SandboxState, Supervisor, operator_command_available
from modelops.sandbox.testing import TEST_IMAGE, TEST_IMAGE_REPOSITORY, python_container, require_real_control_plane

HTTP_SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'pong')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(os.environ['MODELOPS_PORT'])), H).serve_forever()\n"
)


def cli(*args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``modelops <args>`` with this interpreter."""
    return subprocess.run([sys.executable, "-m", "modelops.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=check)


def wait(predicate, timeout: float = 20.0, message: str = ""):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out: {message}")


def assert_nothing_left(state_dir: Path, pids: list[int]) -> None:
    marker = procs.marker_value(state_dir)
    wait(lambda: not procs.marked_pids(marker), 10, "marked processes gone")
    assert [p for p in pids if procs.alive(p)] == []


def test_up_kubectl_logs_url_and_down_leave_nothing_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "sb"
    opts = ["--state-dir", str(state_dir)]
    out = cli("sandbox", "up", *opts, "--no-mlflow", "--no-operator", "--control-plane", "emulator",
              "--image", f"{TEST_IMAGE_REPOSITORY}={sys.executable}").stdout
    kubeconfig = state_dir / "kubeconfig"
    assert f"kubeconfig: {kubeconfig}" in out
    state = SandboxState.load(state_dir)
    assert state is not None and set(state.processes) == {"apiserver", "kubelet"}
    pids = [rec.pid for rec in state.processes.values()]
    try:
        kubectl = subprocess.run([str(venv_bin() / "kubectl"), "--kubeconfig", str(kubeconfig), "get", "ns"],
                                 capture_output=True, text=True, timeout=60)
        assert kubectl.returncode == 0, kubectl.stderr
        assert "default" in kubectl.stdout

        assert "already running" in cli("sandbox", "up", *opts, "--no-mlflow", "--no-operator").stdout
        status = json.loads(cli("sandbox", "status", *opts, "--json").stdout)
        assert all(c["alive"] for c in status["components"].values())

        with Api(state.connection()) as api:
            api.create(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hello"},
                              "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                  python_container("print('hello from the job')")]}}}})
            api.create(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sleeper"},
                              "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                                  python_container("import time; time.sleep(120)")]}}}})
            api.create(DEPLOYMENTS, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ping"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ping"}},
                         "template": {"metadata": {"labels": {"app": "ping"}}, "spec": {"containers": [
                             {"name": "main", "image": TEST_IMAGE, "args": ["-c", HTTP_SERVER],
                              "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}})
            api.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ping"},
                                  "spec": {"selector": {"app": "ping"}, "ports": [{"port": 80}]}})
            wait(lambda: (api.get(JOBS, "hello", "default").get("status") or {}).get("succeeded"),
                 message="job hello succeeded")
            assert "hello from the job" in cli("sandbox", "logs", "hello", *opts).stdout
            # --follow returns once the pod has finished.
            assert "hello from the job" in cli("sandbox", "logs", "hello", "-f", "--all", *opts, timeout=30).stdout
            url = cli("sandbox", "url", "ping", "--wait", "30", *opts).stdout.strip()
            assert url.startswith("http://127.0.0.1:")
            assert wait(lambda: _get(url) == "pong", message="service answers")
            pod_dirs = list((state_dir / "kubelet" / "pods" / "default").glob("sleeper-*/pod.json"))
            sleeper = wait(lambda: json.loads(pod_dirs[0].read_text()).get("pid") if pod_dirs else None,
                           message="sleeper running")
            pids.append(sleeper)
        assert "kubelet ready" in cli("sandbox", "logs", "--component", "kubelet", *opts).stdout
        assert f"export KUBECONFIG={kubeconfig}" in cli("sandbox", "env", *opts).stdout
    finally:
        down = cli("sandbox", "down", *opts, "--grace", "5", check=False)
        Supervisor(state_dir).down(grace=5)  # in case the CLI failed: never leak processes
    assert "stopped: kubelet, apiserver" in down.stdout
    assert_nothing_left(state_dir, pids)
    assert not (state_dir / STATE_FILE).exists()
    assert cli("sandbox", "status", *opts, check=False).returncode == 1
    assert (state_dir / "logs" / "kubelet.log").exists()  # logs stay after down


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


@pytest.mark.parametrize("control_plane", ["emulator", "real"])
def test_foreground_stops_everything_on_ctrl_c(tmp_path: Path, control_plane: str) -> None:
    if control_plane == "real":
        require_real_control_plane()
    state_dir = tmp_path / "fg"
    process = subprocess.Popen(
        [sys.executable, "-m", "modelops.cli", "sandbox", "up", "--state-dir", str(state_dir), "--no-mlflow",
         "--no-operator", "--foreground", "--control-plane", control_plane],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("foreground:"):
                break
        state = SandboxState.load(state_dir)
        api = "kube-apiserver" if control_plane == "real" else "apiserver"
        assert state is not None and state.alive(api) and state.alive("kubelet"), lines
        pids = [rec.pid for rec in state.processes.values()]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            Supervisor(state_dir).down(grace=5)  # never leak the sandbox of a failed test
    assert_nothing_left(state_dir, pids)


def test_stale_state_is_replaced_by_a_fresh_sandbox(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "stale", pdeathsig=True)
    try:
        sup.up(mlflow=False)
        old_apiserver = sup.state.processes["apiserver"].pid
        os.kill(sup.state.processes["kubelet"].pid, signal.SIGKILL)
        wait(lambda: not sup.state.alive("kubelet"), message="kubelet killed")
        again = Supervisor(tmp_path / "stale", pdeathsig=True)
        assert not again.running()
        assert again.up(mlflow=False) is True
        assert again.running() and again.state.processes["apiserver"].pid != old_apiserver
        assert not procs.alive(old_apiserver)  # the leftover API emulator was stopped
        sup = again
    finally:
        sup.down(grace=5)
    assert_nothing_left(tmp_path / "stale", [])


@pytest.mark.e2e
def test_full_sandbox_with_mlflow_and_operator(tmp_path: Path) -> None:
    with_operator = operator_command_available()
    sup = Supervisor(tmp_path / "full", pdeathsig=True, mlflow_workers=1)
    try:
        # Bounded by the supervisor's own waits (MLflow 120 s, docs/sandbox.md; the API server, kubelet
        # and operator 60 s each), not by a total on this test's clock: MLflow alone takes 12-28 s on
        # an idle 2-core machine.
        sup.up(mlflow=True, operator=with_operator)
        assert httpx.get(f"{sup.state.mlflow_url}/health", timeout=5).status_code == 200
        assert sup.state.alive("mlflow") and sup.state.alive("operator") == with_operator
        pids = [rec.pid for rec in sup.state.processes.values()]
    finally:
        sup.down(grace=10)
    assert_nothing_left(tmp_path / "full", pids)


def test_up_restarts_an_operator_that_outlived_its_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow died and `up` starts a new one (new port): the running operator, which read the old
    URL at start, is restarted against the new one. (Process control is stubbed: the decision only.)"""
    from modelops.sandbox.supervisor import Supervisor

    sup = Supervisor(tmp_path / "state")
    alive = {"apiserver": True, "kubelet": True, "mlflow": False, "operator": True}
    calls: list[str] = []
    monkeypatch.setattr(sup.state, "alive", lambda name: alive[name])
    monkeypatch.setattr(sup, "start_mlflow", lambda port=0: calls.append("start_mlflow") or alive.update(mlflow=True))
    monkeypatch.setattr(sup, "wait_mlflow", lambda timeout=120.0: calls.append("wait_mlflow") or "http://new")
    monkeypatch.setattr(sup, "restart_operator", lambda grace=10.0: calls.append("restart_operator"))
    assert sup.up(operator=True) is False  # reused
    assert calls == ["start_mlflow", "wait_mlflow", "restart_operator"]

    calls.clear()  # MLflow alive: nothing restarted
    assert sup.up(operator=True) is False
    assert calls == ["wait_mlflow"]
