"""``modelops sandbox`` sub-commands: up, down, status, logs, trigger, url, env.

All commands find the sandbox through its state dir (``--state-dir``, env
``MODELOPS_SANDBOX_DIR``; by default ``.sandbox``, or ``.sandbox/demo`` when ``make demo``'s
sandbox is the one running): the state file there holds the API URL, the kubeconfig path, the
MLflow URL and the pids of every component.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from .supervisor import SandboxState, Supervisor

app = typer.Typer(no_args_is_help=True, help="Local sandbox: the Kubernetes control plane (real or emulated), "
                                             "a local kubelet, MLflow (and the operator).")

_STATE_HELP = "Sandbox state directory (pids, logs, kubeconfig, MLflow data)."


def _state_dir(value: Path | None) -> Path:
    from .supervisor import locate_state_dir

    return locate_state_dir(value)


def _running_state(state_dir: Path) -> SandboxState:
    """The state of a running sandbox, or exit 1 with a clear message."""
    from .supervisor import Supervisor

    sup = Supervisor(state_dir)
    if not sup.running():
        typer.echo(f"no sandbox is running in {state_dir} (start one with `modelops sandbox up`)", err=True)
        raise typer.Exit(1)
    return sup.state


@app.command()
def up(
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
    operator: bool | None = typer.Option(
        None,
        "--operator/--no-operator",
        help="Also run `modelops operator run` (default: when it exists and MLflow runs).",
    ),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Start the MLflow tracking server."),
    foreground: bool = typer.Option(False, help="Stay attached; Ctrl-C stops everything."),
    api_port: int = typer.Option(0, help="API emulator port (0: a free port)."),
    mlflow_port: int = typer.Option(0, help="MLflow port (0: a free port)."),
    image: list[str] = typer.Option(
        [], help="Extra kubelet image mapping REPOSITORY=ENTRYPOINT (repeatable)."
    ),
    control_plane: str | None = typer.Option(
        None, help="real (etcd + upstream kube-apiserver, controller-manager, scheduler; built from Go "
                   "modules on first use) or emulator. Default: real when built (`modelops sandbox build`)."),
    node: str = typer.Option(
        "local", help="local (our kubelet: pods as local processes) or real (the upstream kubelet with containerd, "
                      "runc and a CNI bridge; root and --control-plane real; docs/sandbox.md \"Real node\")."),
    node_image: list[Path] = typer.Option(
        [], help="A `docker save` archive to import into the real node's containerd (repeatable)."),
) -> None:
    """Start the sandbox (or reuse the one running in the state dir) and print how to reach it."""
    from .kubelet.images import parse_image_option
    from .supervisor import (
        CONTROL_PLANES,
        NODES,
        SandboxError,
        Supervisor,
        default_control_plane,
        operator_command_available,
    )

    chosen = control_plane or ("real" if node == "real" else default_control_plane())
    if chosen not in CONTROL_PLANES:
        raise typer.BadParameter(f"--control-plane must be one of {', '.join(CONTROL_PLANES)}")
    if node not in NODES:
        raise typer.BadParameter(f"--node must be one of {', '.join(NODES)}")
    if node == "real" and chosen != "real":
        raise typer.BadParameter("--node real needs --control-plane real")
    if control_plane is None and chosen == "emulator":
        typer.echo("control plane: the API emulator (the real one is not built yet: `modelops sandbox build`, "
                   "about 10 min once, then `--control-plane real` is the default)", err=True)

    images = {}
    for option in image:
        try:
            repo, _ = parse_image_option(option)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        images[repo] = option.split("=", 1)[1]
    # Default: the operator runs when this installation has it and MLflow is started.
    with_operator = (mlflow and operator_command_available()) if operator is None else operator
    if with_operator and not mlflow:
        raise typer.BadParameter("the operator needs MLflow: drop --no-mlflow or add --no-operator")
    from .supervisor import DEFAULT_STATE_DIR

    # up: never another sandbox's dir (the other commands discover a running one, see _state_dir)
    sup = Supervisor((state_dir or DEFAULT_STATE_DIR).resolve(), images=images, control_plane=chosen, node=node,
                     node_images=[p.resolve() for p in node_image])
    began = time.monotonic()
    try:
        started = sup.up(mlflow=mlflow, operator=with_operator, api_port=api_port, mlflow_port=mlflow_port)
    except SandboxError as exc:
        typer.echo(f"sandbox failed to start: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        typer.echo("interrupted: the sandbox was stopped", err=True)
        raise typer.Exit(130) from None
    try:
        _print_summary(sup, started, time.monotonic() - began)
        if foreground:
            raise typer.Exit(sup.foreground(lambda: typer.echo("foreground: Ctrl-C stops the sandbox")))
    except KeyboardInterrupt:  # Ctrl-C before the foreground handlers were installed
        if foreground:
            sup.down()
        raise typer.Exit(130) from None


def _print_summary(sup: Supervisor, started: bool, seconds: float) -> None:
    state = sup.state
    if started:
        typer.echo(f"sandbox started in {seconds:.1f}s ({state.state_dir})")
    else:
        typer.echo(f"sandbox already running in {state.state_dir}: reusing it")
    typer.echo(f"kubeconfig: {state.kubeconfig}")
    typer.echo(f"API:        {state.api_url} ({state.control_plane} control plane)")
    typer.echo(f"MLflow:     {state.mlflow_url or '(not started)'}")
    typer.echo(f"operator:   {'running' if state.alive('operator') else 'not started'}")
    typer.echo(f"logs:       {sup.logs_dir}")
    typer.echo(f"try:        kubectl --kubeconfig {state.kubeconfig} get ns")


@app.command()
def build(
    node: bool = typer.Option(False, "--node", help="Also the real node's kubelet, kube-proxy and pause "
                                                    "(about 5 more minutes; gcc and libc6-dev for pause)."),
) -> None:
    """Build the real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
    from their Go modules into ~/.cache/modelops/kube (once; 10-25 min on 2 cores)."""
    from .controlplane import binaries

    try:
        typer.echo(f"binaries: {binaries.ensure(typer.echo, node=node)}")
    except binaries.BinariesError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@app.command()
def down(
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
    grace: float = typer.Option(10.0, help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop every process of the sandbox (components and pods); logs and data stay."""
    from .supervisor import Supervisor

    sup = Supervisor(_state_dir(state_dir))
    stopped = sup.down(grace=grace)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the sandbox's components (pid, alive, URL, log); exit 1 when it is not running."""
    from .supervisor import Supervisor

    sup = Supervisor(_state_dir(state_dir))
    info = sup.status()
    if as_json:
        typer.echo(json.dumps(info, indent=1))
    else:
        typer.echo(f"state dir:  {info['state_dir']}")
        typer.echo(f"kubeconfig: {info['kubeconfig'] or '(none)'}")
        for name, comp in info["components"].items():
            flag = "running" if comp["alive"] else "DEAD"
            typer.echo(f"{name:23s} pid {comp['pid']:<8d} {flag:8s} {comp['url'] or '':32s} {comp['log']}")
        if not info["components"]:
            typer.echo("no sandbox components")
    if not sup.running():
        raise typer.Exit(1)


#: kubectl's kind prefixes ``logs`` accepts in ``KIND/NAME`` (the name after the slash is looked up).
_LOG_KINDS = frozenset({"deployment", "deployments", "deploy", "job", "jobs", "pod", "pods", "po"})


@app.command()
def logs(
    name: str | None = typer.Argument(
        None, help="Job, Deployment or pod name (kubectl's KIND/NAME form too, e.g. deployment/NAME)."
    ),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
    all_pods: bool = typer.Option(False, "--all", help="Every pod (retries, replicas), oldest first."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing the latest pod's log."),
    container: str | None = typer.Option(None, "-c", "--container"),
    component: str | None = typer.Option(
        None, help="Print a component's log instead: kube-apiserver (or apiserver, the emulator), etcd, "
                   "kube-controller-manager, kube-scheduler, kubelet, mlflow or operator."
    ),
) -> None:
    """Print a pod log (the latest pod of a Job or Deployment), or a component's log."""
    from .kubelet.pods import FINAL_PHASES, pod_log_path, pod_records

    root = _state_dir(state_dir)
    if component is not None:
        path = root / "logs" / f"{component}.log"
        if not path.exists():
            typer.echo(f"no log for component {component!r} in {path.parent}", err=True)
            raise typer.Exit(1)
        sys.stdout.write(path.read_text(errors="replace"))
        return
    if name is None:
        raise typer.BadParameter("give a Job, Deployment or pod name, or --component")
    kind, slash, bare = name.partition("/")
    if slash and kind.lower() in _LOG_KINDS:
        name = bare
    records = pod_records(root, namespace, name)
    if not records:
        hint = ""
        if (root / "logs" / f"{name}.log").exists():
            hint = f"; {name!r} is a sandbox component: modelops sandbox logs --component {name}"
        typer.echo(f"no pods of {namespace}/{name} in {root}{hint}", err=True)
        raise typer.Exit(1)
    if all_pods:
        for record in records:
            typer.echo(f"==> pod {record['name']} ({record.get('phase')}) <==")
            path = pod_log_path(record, container)
            sys.stdout.write(path.read_text(errors="replace") if path.exists() else "")
        return
    record = records[-1]
    path = pod_log_path(record, container)
    offset = 0
    while True:
        if path.exists():
            with open(path, errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
            sys.stdout.write(chunk)
            sys.stdout.flush()
        if not follow:
            return
        latest = pod_records(root, namespace, name)
        if latest and latest[-1].get("phase") in FINAL_PHASES and latest[-1]["name"] == record["name"]:
            return
        time.sleep(0.5)


@app.command()
def trigger(
    cronjob: str = typer.Argument(..., help="CronJob name."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
) -> None:
    """Create a Job from a CronJob now (like `kubectl create job --from=cronjob/NAME`); prints its name."""
    from .client import Api, NotFoundError
    from .kubelet.cronjobs import trigger_cronjob

    state = _running_state(_state_dir(state_dir))
    with Api(state.connection()) as api:
        try:
            typer.echo(trigger_cronjob(api, cronjob, namespace))
        except NotFoundError as exc:
            typer.echo(f"cronjob {namespace}/{cronjob} not found", err=True)
            raise typer.Exit(1) from exc


@app.command()
def url(
    service: str = typer.Argument(..., help="Service name."),
    namespace: str = typer.Option("default", "-n", "--namespace"),
    port: str | None = typer.Option(None, help="Service port name or number (default: the first)."),
    wait: float = typer.Option(0.0, help="Seconds to wait for the kubelet to publish the URL."),
    state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP),
) -> None:
    """Print the local URL that forwards to a Service's ready pods."""
    from .client import SERVICES, Api, NotFoundError
    from .kubelet.services import ANN_URL, ANN_URLS

    state = _running_state(_state_dir(state_dir))
    deadline = time.monotonic() + wait
    with Api(state.connection()) as api:
        while True:
            try:
                svc = api.get(SERVICES, service, namespace)
            except NotFoundError:
                svc = {}
            annotations = (svc.get("metadata") or {}).get("annotations") or {}
            found = json.loads(annotations.get(ANN_URLS, "{}")).get(port) if port else annotations.get(ANN_URL)
            if found:
                typer.echo(found)
                return
            if time.monotonic() >= deadline:
                what = "not found" if not svc else "has no sandbox URL (no selector, or unknown port)"
                typer.echo(f"service {namespace}/{service} {what}", err=True)
                raise typer.Exit(1)
            time.sleep(0.2)


@app.command()
def env(state_dir: Path | None = typer.Option(None, envvar="MODELOPS_SANDBOX_DIR", help=_STATE_HELP)) -> None:
    """Print shell exports for the running sandbox (KUBECONFIG, MLFLOW_TRACKING_URI)."""
    state = _running_state(_state_dir(state_dir))
    typer.echo(f"export KUBECONFIG={state.kubeconfig}")
    if state.mlflow_url:
        typer.echo(f"export MLFLOW_TRACKING_URI={state.mlflow_url}")
