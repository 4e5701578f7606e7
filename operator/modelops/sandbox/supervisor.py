"""Start, track and stop the sandbox's processes: the API server (the real control plane or the
API emulator), the kubelet, MLflow and the operator.

Every component runs as a child process in its own session (process group), with stdout and
stderr appended to ``<state>/logs/<component>.log`` and the marker env var
``MODELOPS_SANDBOX=<state dir>`` (see :mod:`.procs`). The state file ``<state>/sandbox.json``
records pids, argv, logs, ports and URLs; it is written after every start, so ``down`` (from
any shell) stops exactly what ``up`` started, then sweeps any process still carrying the
marker (pod processes included). The layout of the state dir::

    sandbox.json        state file (see SandboxState)
    kubeconfig          admin kubeconfig of the API server (the emulator's, or system:masters)
    operator.kubeconfig the operator's ServiceAccount token (real control plane only)
    pki/ etcd/ kubeconfigs/   the real control plane's (see modelops.sandbox.controlplane)
    node/               the real node's: containerd, CNI, kubelet, CoreDNS (see modelops.sandbox.realnode)
    logs/<component>.log
    kubelet/pods/<ns>/<pod>/   pod logs and working dirs (see kubelet.pods)
    mlflow/             sqlite database and artifacts
    predictions/        prediction log of the sandbox's operator (MODELOPS_PREDICTION_LOG_URI)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import mlflow_server, procs
from .client import Connection
from .kubelet.services import ANN_URL

STATE_FILE = "sandbox.json"
STATE_VERSION = 1
#: Start order; ``down`` stops in reverse. "apiserver" is the API emulator; the real control plane
#: is etcd, kube-apiserver, kube-controller-manager and kube-scheduler instead.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "apiserver", "containerd",
              "coredns", "kubelet", "kube-proxy", "mlflow", "operator")
#: ``--control-plane`` values.
CONTROL_PLANES = ("real", "emulator")
#: ``--node`` values: our kubelet running pods as local processes, or the upstream kubelet with
#: containerd (:mod:`.realnode`, root and the real control plane only).
NODES = ("local", "real")
DEFAULT_STATE_DIR = Path(".sandbox")
#: Where ``modelops demo`` keeps its sandbox; commands without ``--state-dir`` look there too.
DEMO_STATE_DIR = DEFAULT_STATE_DIR / "demo"


def locate_state_dir(explicit: Path | None = None) -> Path:
    """The sandbox state dir a command should use (absolute).

    ``explicit`` (``--state-dir`` or ``MODELOPS_SANDBOX_DIR``) when given; otherwise the first of
    ``.sandbox`` and ``.sandbox/demo`` (relative to the working directory) where a sandbox runs,
    so commands find ``make demo``'s sandbox without flags; otherwise ``.sandbox``.
    """
    if explicit is not None:
        return explicit.resolve()
    for candidate in (DEFAULT_STATE_DIR, DEMO_STATE_DIR):
        if (candidate / STATE_FILE).is_file() and Supervisor(candidate).running():
            return candidate.resolve()
    return DEFAULT_STATE_DIR.resolve()


class SandboxError(RuntimeError):
    """A component failed to start (the message carries the end of its log)."""


@dataclass
class ProcessRecord:
    """One tracked component process."""

    pid: int
    argv: list[str]
    log: str
    started_at: float
    port: int | None = None
    url: str | None = None


@dataclass
class SandboxState:
    """The state file: where everything runs. Serialised as JSON in ``<state>/sandbox.json``."""

    state_dir: str
    marker: str
    api_url: str | None = None
    kubeconfig: str | None = None
    mlflow_url: str | None = None
    prediction_log_uri: str | None = None
    control_plane: str = "emulator"
    node: str = "local"
    operator_kubeconfig: str | None = None
    started_at: float = field(default_factory=time.time)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    version: int = STATE_VERSION

    @classmethod
    def load(cls, state_dir: Path) -> SandboxState | None:
        """Read the state file; None when absent or unreadable."""
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return None
        processes = {name: ProcessRecord(**rec) for name, rec in (data.pop("processes", None) or {}).items()}
        return cls(**data, processes=processes)

    def save(self) -> None:
        """Write the state file atomically."""
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(path)

    def connection(self) -> Connection:
        """How to reach the API server (from the admin kubeconfig; the bare URL without one)."""
        from .kubeconfig import read_connection

        if self.kubeconfig and Path(self.kubeconfig).exists():
            return read_connection(Path(self.kubeconfig))
        return Connection(str(self.api_url))

    def alive(self, name: str) -> bool:
        """Whether a recorded component still runs (pid alive and still carrying our marker)."""
        rec = self.processes.get(name)
        return rec is not None and procs.alive(rec.pid) and procs.has_marker(rec.pid, self.marker)


def default_crds_dir() -> Path | None:
    """``crds/`` of this checkout, when running from one."""
    candidate = Path(__file__).resolve().parents[3] / "crds"
    return candidate if candidate.is_dir() else None


def default_control_plane() -> str:
    """``real`` when the control plane's binaries are built already, else ``emulator``: the first
    build takes about ten minutes, so it is never started implicitly (``modelops sandbox build``)."""
    from .controlplane import binaries

    return "real" if binaries.built() else "emulator"


def operator_command_available() -> bool:
    """Whether this installation can run ``modelops operator run``: the ``operator`` extra (kopf and
    the kubernetes client) is installed. Checked without importing the CLI, which imports this
    package's CLI in turn."""
    return all(importlib.util.find_spec(name) is not None for name in ("kopf", "kubernetes"))


class Supervisor:
    """Starts and stops the components of one sandbox (one state dir).

    ``images``: extra kubelet image mappings ``repository → entrypoint`` (shell-split), e.g.
    ``{"sandbox.test/python": sys.executable}``. ``kubelet_args``: extra kubelet options.
    ``pdeathsig``: children die with this process (for test sessions; not for daemon mode).
    ``apiserver_command``: argv prefix of the API emulator (default ``python -m
    modelops.sandbox.apiserver``); ``--host``, ``--port`` and ``--crds`` are appended.
    ``operator_env``: extra ``MODELOPS_*`` settings for the operator process.
    ``control_plane``: ``"emulator"`` (the API emulator, default) or ``"real"`` (etcd and the
    upstream Kubernetes control plane, see :mod:`.controlplane`; our kubelet is then a node).
    ``node``: ``"local"`` (our kubelet, default) or ``"real"`` (the upstream kubelet with containerd,
    :mod:`.realnode`; needs ``control_plane="real"``); ``node_images``: ``docker save`` archives
    imported into the real node's containerd before it registers.
    """

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        *,
        images: Mapping[str, str] | None = None,
        kubelet_args: Sequence[str] = (),
        pdeathsig: bool = False,
        crds_dir: Path | None = None,
        mlflow_workers: int = 2,
        start_timeout: float = 60.0,
        apiserver_command: Sequence[str] | None = None,
        operator_env: Mapping[str, str] | None = None,
        control_plane: str = "emulator",
        node: str = "local",
        node_images: Sequence[Path] = (),
    ) -> None:
        if control_plane not in CONTROL_PLANES:
            raise ValueError(f"control_plane must be one of {CONTROL_PLANES}, not {control_plane!r}")
        if node not in NODES:
            raise ValueError(f"node must be one of {NODES}, not {node!r}")
        if node == "real" and control_plane != "real":
            raise ValueError("node='real' needs control_plane='real'")
        self.node = node
        self.node_images = list(node_images)
        self.operator_env = dict(operator_env or {})  # extra MODELOPS_* settings for the operator
        self._operator_extra_env: dict[str, str] = {}
        self.state_dir = Path(state_dir).resolve()
        self.images = dict(images or {})
        self.kubelet_args = list(kubelet_args)
        self.pdeathsig = pdeathsig
        self.crds_dir = crds_dir
        self.mlflow_workers = mlflow_workers
        self.start_timeout = start_timeout
        self.apiserver_command = list(apiserver_command or [sys.executable, "-m", "modelops.sandbox.apiserver"])
        self.marker = procs.marker_value(self.state_dir)
        self.control_plane = control_plane
        self.state = SandboxState.load(self.state_dir) or self._fresh_state()
        self._popen: dict[str, subprocess.Popen[bytes]] = {}
        self._log_offsets: dict[str, int] = {}

    def _fresh_state(self) -> SandboxState:
        return SandboxState(state_dir=str(self.state_dir), marker=self.marker, control_plane=self.control_plane,
                            node=self.node)

    # ---------------------------------------------------------------- process plumbing

    @property
    def logs_dir(self) -> Path:
        """``<state>/logs``."""
        return self.state_dir / "logs"

    def log_path(self, name: str) -> Path:
        """The log file of a component."""
        return self.logs_dir / f"{name}.log"

    def api_component(self) -> str:
        """The process that serves the API: ``kube-apiserver`` or ``apiserver`` (the emulator)."""
        return "kube-apiserver" if self.state.control_plane == "real" else "apiserver"

    def running(self) -> bool:
        """Whether a sandbox runs in this state dir (API server and kubelet alive)."""
        return self.state.alive(self.api_component()) and self.state.alive("kubelet")

    def _spawn(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None, port: int | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(name)
        full_env = {**os.environ, **(env or {}), procs.MARKER_ENV: self.marker}
        with open(log, "ab") as logf:
            self._log_offsets[name] = logf.tell()  # this start's output begins here
            logf.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            logf.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=self.state_dir,
                start_new_session=True,
                preexec_fn=procs.pdeathsig_preexec() if self.pdeathsig else None,
            )
        self._popen[name] = process
        self.state.processes[name] = ProcessRecord(process.pid, argv, str(log), time.time(), port)
        self.state.save()
        return process

    def _wait_line(self, name: str, process: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
        """Wait for a line starting with ``prefix`` in the component's log (written after spawn)."""
        log = self.log_path(name)
        start = self._log_offsets.get(name, 0)  # only this start's output counts (the log is appended to)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log, "rb") as f:
                f.seek(start)
                lines = f.read().decode(errors="replace").splitlines()
            for line in lines:
                if line.startswith(prefix):
                    return line
            if process.poll() is not None:
                raise SandboxError(f"{name} exited with code {process.returncode}{self._tail(name)}")
            time.sleep(0.05)
        raise SandboxError(f"{name} did not print {prefix!r} within {timeout:.0f}s{self._tail(name)}")

    def _tail(self, name: str, lines: int = 20) -> str:
        log = self.log_path(name)
        if not log.exists():
            return ""
        text = log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- {log} ---\n" + "\n".join(text)

    # ---------------------------------------------------------------- components

    def _crds(self) -> Path:
        crds = self.crds_dir or default_crds_dir()
        if crds is None:  # installed without the checkout: generate them from the API types
            from ..api.crdgen import main as crdgen

            crds = self.state_dir / "crds"
            crdgen(["--out", str(crds)])
        return crds

    def start_apiserver(self, port: int = 0) -> str:
        """Start the API emulator and write the kubeconfig; returns the API URL."""
        argv = [*self.apiserver_command, "--host", "127.0.0.1", "--port", str(port), "--crds", str(self._crds())]
        process = self._spawn("apiserver", argv, port=port or None)
        line = self._wait_line("apiserver", process, "READY ", self.start_timeout)
        url = line.split(None, 1)[1].strip()
        self.state.processes["apiserver"].url = url
        self.state.processes["apiserver"].port = int(url.rsplit(":", 1)[1])
        self.state.api_url = url
        self.state.kubeconfig = str(self._write_kubeconfig(url))
        self.state.save()
        return url

    def _write_kubeconfig(self, url: str) -> Path:
        from .kubeconfig import write_kubeconfig

        return write_kubeconfig(self.state_dir / "kubeconfig", url)

    def start_control_plane(self, port: int = 0) -> str:
        """Start the real control plane, install the CRDs and the operator's RBAC; returns the API URL."""
        from . import controlplane
        from .controlplane.install import InstallError, install

        address = "127.0.0.1"
        if self.state.node == "real":
            from . import realnode

            address = realnode.ensure_network()  # pods reach the apiserver on the bridge
        url = controlplane.start(self, port, address)
        try:
            operator_kubeconfig = install(Path(str(self.state.kubeconfig)), self._crds(), self.state_dir,
                                          controlplane.pki_of(self.state_dir), url)
        except InstallError as exc:
            raise SandboxError(f"installing into the control plane failed: {exc}") from exc
        self.state.operator_kubeconfig = str(operator_kubeconfig)
        self.state.save()
        return url

    def stop_component(self, name: str, grace: float = 10.0) -> None:
        """Stop one component (SIGTERM, SIGKILL after ``grace`` s); its record stays for
        :meth:`start_component`. Raises KeyError for a component that was never started."""
        record = self.state.processes[name]
        procs.stop_groups([record.pid], grace, self.marker)
        popen = self._popen.pop(name, None)
        if popen is not None:
            popen.poll()

    def start_component(self, name: str) -> None:
        """Start a stopped component again with its recorded command line (same ports), as a crashed
        static pod or systemd unit comes back; waits for our kubelet's READY line and the API
        server's /readyz, not for the others (nor for the real node's kubelet). Raises KeyError for
        an unknown name."""
        record = self.state.processes[name]
        process = self._spawn(name, list(record.argv), port=record.port)
        self.state.processes[name].url = record.url
        self.state.save()
        if name == "kubelet" and self.state.node == "local":
            self._wait_line("kubelet", process, "READY", self.start_timeout)
        elif name == "kube-apiserver":
            from .controlplane import wait_api_ready

            wait_api_ready(self, max(self.start_timeout, 90.0))

    def restart_component(self, name: str, grace: float = 10.0) -> None:
        """:meth:`stop_component` then :meth:`start_component`."""
        self.stop_component(name, grace)
        self.start_component(name)

    def start_kubelet(self) -> None:
        """Start the kubelet against the running API server and wait for its caches.

        With the emulator the kubelet also plays the Job, CronJob and Deployment controllers; with
        the real control plane it is a node (``--node``) that runs the pods bound to it. With
        ``node="real"`` the real node starts instead (:func:`.realnode.start`: containerd, CoreDNS,
        the upstream kubelet until its Node is Ready, kube-proxy).
        """
        if not self.state.api_url or not self.state.kubeconfig:
            raise SandboxError("the API server is not running")
        if self.state.node == "real":
            from . import realnode

            realnode.start(self, self.node_images)
            return
        argv = [sys.executable, "-m", "modelops.sandbox.kubelet", "--state-dir", str(self.state_dir)]
        if self.state.control_plane == "real":
            argv += ["--kubeconfig", self.state.kubeconfig, "--node"]
        else:
            argv += ["--api", self.state.api_url]
        for repo, entry in self.images.items():
            argv += ["--image", f"{repo}={entry}"]
        argv += self.kubelet_args
        process = self._spawn("kubelet", argv)
        self._wait_line("kubelet", process, "READY", self.start_timeout)

    def start_mlflow(self, port: int = 0) -> str:
        """Start ``mlflow server`` (does not wait, see :meth:`wait_mlflow`); returns its URL."""
        port = procs.free_port(port or None)
        mlflow_server.prepare_state(self.state_dir)
        self._spawn(
            "mlflow", mlflow_server.command(self.state_dir, port, self.mlflow_workers), mlflow_server.ENV, port=port
        )
        url = mlflow_server.url_for(port)
        self.state.processes["mlflow"].url = url
        self.state.save()
        return url

    def wait_mlflow(self, timeout: float = 120.0) -> str:
        """Wait until MLflow answers ``/health``; records and returns its URL. Raises SandboxError."""
        rec = self.state.processes.get("mlflow")
        if rec is None or rec.url is None:
            raise SandboxError("mlflow was not started")
        try:
            mlflow_server.wait_healthy(rec.url, self._popen.get("mlflow"), timeout, self.log_path("mlflow"))
        except mlflow_server.MlflowStartError as exc:
            raise SandboxError(str(exc)) from exc
        if not self.state.alive("mlflow"):
            raise SandboxError(f"mlflow exited{self._tail('mlflow')}")
        self.state.mlflow_url = rec.url
        self.state.save()
        return rec.url

    def ensure_mlflow(self, port: int = 0) -> str:
        """MLflow's URL, starting it (and waiting for it) when it is not running yet."""
        if self.state.alive("mlflow") and self.state.mlflow_url:
            return self.state.mlflow_url
        if not self.state.alive("mlflow"):
            self.start_mlflow(port)
        return self.wait_mlflow()

    def ensure_operator(self, env: Mapping[str, str] | None = None) -> None:
        """Start MLflow (if needed) and the operator, unless the operator already runs."""
        if self.state.alive("operator"):
            return
        self.ensure_mlflow()
        self.start_operator(env=env)

    def restart_operator(self, grace: float = 10.0, env: Mapping[str, str] | None = None) -> None:
        """Stop the operator (SIGTERM, then SIGKILL after ``grace`` s) and start it again with the
        same settings, as a pod restart would, or with ``env`` in place of the extra settings it was
        started with (a redeploy with other settings; see :attr:`operator_extra_env`). Raises
        SandboxError when it does not come back."""
        record = self.state.processes.get("operator")
        if record is not None:
            procs.stop_groups([record.pid], grace, self.marker)
            popen = self._popen.pop("operator", None)
            if popen is not None:
                popen.poll()  # reap
        self.start_operator(env=self._operator_extra_env if env is None else env)

    @property
    def operator_extra_env(self) -> dict[str, str]:
        """The settings the operator was last started with on top of the sandbox's (a copy)."""
        return dict(self._operator_extra_env)

    def start_operator(self, timeout: float = 60.0, env: Mapping[str, str] | None = None) -> None:
        """Start ``modelops operator run`` against the sandbox and wait for its /healthz.

        Settings (``MODELOPS_*``) come from the sandbox, then ``operator_env``, then ``env``.
        Raises SandboxError when the command does not exist, MLflow is not running, or the
        operator exits or stays unhealthy for ``timeout`` seconds.
        """
        if not operator_command_available():
            raise SandboxError("this installation has no `modelops operator run` command")
        if not (self.state.kubeconfig and self.state.mlflow_url):
            raise SandboxError("the operator needs the API server and MLflow running first")
        predictions = self.state_dir / "predictions"
        predictions.mkdir(parents=True, exist_ok=True)
        health_port, metrics_port = procs.free_port(), procs.free_port()
        settings = {
            # The real control plane: the operator's own ServiceAccount token, never admin credentials.
            "KUBECONFIG": self.state.operator_kubeconfig or self.state.kubeconfig,
            "MODELOPS_MLFLOW_TRACKING_URI": self.state.mlflow_url,
            "MODELOPS_PREDICTION_LOG_URI": str(predictions),
            # No cluster DNS here: a rollout router reaches the candidate through its local forwarder.
            "MODELOPS_SERVICE_URL_ANNOTATION": ANN_URL,
            "MODELOPS_HEALTH_PORT": str(health_port),
            "MODELOPS_METRICS_PORT": str(metrics_port),
            **self.operator_env,
            **(env or {}),
        }
        if self.state.control_plane == "real" and self.state.node == "local":
            from .kubelet.node import LOOPBACK_CIDR, POD_CIDR

            # Pod IPs are not routable here: the kubelet's processes listen on their loopback twins.
            settings.setdefault("MODELOPS_POD_NETWORK_MAP", f"{POD_CIDR}={LOOPBACK_CIDR}")
        if self.state.operator_kubeconfig:
            from .controlplane.install import OPERATOR_NAMESPACE

            # A pod would read its namespace from its service-account volume; the Lease Role is there.
            settings.setdefault("MODELOPS_LEASE_NAMESPACE", OPERATOR_NAMESPACE)
        self._operator_extra_env = dict(env or {})
        argv = [sys.executable, "-m", "modelops.cli", "operator", "run"]
        process = self._spawn("operator", argv, env=settings, port=health_port)
        self.state.processes["operator"].url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.state.prediction_log_uri = str(predictions)
        self.state.save()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SandboxError(f"operator exited with code {process.returncode}{self._tail('operator')}")
            try:
                if httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SandboxError(f"operator not healthy after {timeout:.0f}s{self._tail('operator')}")

    # ---------------------------------------------------------------- up / down

    def up(self, *, mlflow: bool = True, operator: bool = False, api_port: int = 0, mlflow_port: int = 0) -> bool:
        """Start the sandbox; returns False when one was already running (it is reused).

        Missing requested components (MLflow, operator) are added to a running sandbox; an
        operator that outlived its MLflow is restarted against the new one. A stale
        state (some process died) is stopped and started afresh. On any failure, everything
        started is stopped and SandboxError (or KeyboardInterrupt) propagates.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        reused = self.running()
        if not reused and self.state.processes:
            self.down()  # stale: a component died; start from scratch
        if not reused:
            # A fresh cluster, like a fresh emulator: etcd's data does not outlive its sandbox.
            self.state.control_plane = self.control_plane
            self.state.node = self.node
            shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        try:
            mlflow_restarted = mlflow and not self.state.alive("mlflow")
            if mlflow_restarted:
                self.start_mlflow(mlflow_port)  # slowest: let it boot while the rest starts
            if not reused:
                if self.state.control_plane == "real":
                    self.start_control_plane(api_port)
                else:
                    self.start_apiserver(api_port)
                self.start_kubelet()
            if mlflow:
                self.wait_mlflow()
            if mlflow_restarted and self.state.alive("operator"):
                # The operator reads MLflow's URL once, at start; a new MLflow has a new port.
                self.restart_operator()
            if operator and not self.state.alive("operator"):
                self.start_operator()
        except BaseException:
            if not reused:
                self.down()
            raise
        return not reused

    def down(self, grace: float = 10.0) -> list[str]:
        """Stop every tracked component (operator and MLflow, then kubelet, then the control plane:
        scheduler and controller manager, API server, etcd), then sweep marked processes.

        Each component's process group gets SIGTERM, then SIGKILL after ``grace`` seconds.
        Returns the names of the components that were running. Removes the state file.
        """
        stopped = [name for name in reversed(COMPONENTS) if self.state.alive(name)]
        # Clients first (together), then the kubelet (ours stops its pods on SIGTERM; the real node's
        # containers are killed by realnode.cleanup below), then the API.
        phases = (("operator", "mlflow"), ("kubelet", "kube-proxy", "coredns"), ("containerd",),
                  ("kube-scheduler", "kube-controller-manager"), ("apiserver", "kube-apiserver"), ("etcd",))
        for phase in phases:
            pids = [self.state.processes[n].pid for n in phase if n in self.state.processes]
            procs.stop_groups(pids, grace, self.marker)
            for name in phase:
                popen = self._popen.pop(name, None)
                if popen is not None:
                    popen.poll()  # reap
        procs.sweep(self.marker)
        from . import realnode

        realnode.cleanup(self.state_dir)  # the real node's containers, mounts and bridge, if it ran
        self.state = self._fresh_state()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        return stopped

    def status(self) -> dict[str, Any]:
        """Components with pid, alive flag, URL and log path, plus the kubeconfig path."""
        out: dict[str, Any] = {"state_dir": str(self.state_dir), "control_plane": self.state.control_plane,
                               "kubeconfig": self.state.kubeconfig,
                               "api_url": self.state.api_url, "mlflow_url": self.state.mlflow_url,
                               "components": {}}
        for name in COMPONENTS:
            rec = self.state.processes.get(name)
            if rec is not None:
                out["components"][name] = {
                    "pid": rec.pid,
                    "alive": self.state.alive(name),
                    "url": rec.url,
                    "log": rec.log,
                }
        return out

    def foreground(self, on_attached: Callable[[], None] | None = None) -> int:
        """Stay attached until SIGINT/SIGTERM or a component dies, then stop everything.

        ``on_attached`` is called once the signal handlers are in place. Returns 0 after a
        signal, 1 when a component died.
        """
        stop = {"flag": False}

        def _handler(signum: int, frame: object) -> None:
            stop["flag"] = True

        previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if on_attached is not None:
                on_attached()
            while not stop["flag"]:
                dead = [n for n in self.state.processes if not self.state.alive(n)]
                if dead:
                    print(f"sandbox component(s) exited: {', '.join(dead)}{self._tail(dead[0])}", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            return 0
        finally:
            self.down()
            for sig, old in previous.items():
                signal.signal(sig, old)
