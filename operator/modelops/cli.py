"""The ``modelops`` command line: ``operator``, ``sandbox``, ``demo``, ``crds``, ``status``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from . import __version__

app = typer.Typer(
    name="modelops",
    help="Kubernetes operator for ML models: train, register, promote, serve and monitor with MLflow.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """modelops command line."""


@app.command()
def version() -> None:
    """Print the modelops version."""
    typer.echo(__version__)


@app.command()
def crds(
    out: Path = typer.Option(Path("crds"), help="Directory to write the CRD YAML files to."),
    check: bool = typer.Option(False, help="Exit 1 when the files differ from the types instead of writing."),
) -> None:
    """Generate the CustomResourceDefinitions from the API types."""
    from .api.crdgen import main

    args = ["--out", str(out)] + (["--check"] if check else [])
    raise typer.Exit(main(args))


operator_app = typer.Typer(no_args_is_help=True, help="Run the operator.")


@operator_app.command("run")
def operator_run(
    liveness: bool = typer.Option(True, help="Serve /healthz on MODELOPS_HEALTH_PORT."),
) -> None:
    """Run the operator against the cluster in KUBECONFIG (or in-cluster). Settings: MODELOPS_* env.

    Replicas elect one active operator through a Lease (MODELOPS_LEASE_*); the others stand by.
    """
    from .lean import data_stack_hidden

    with data_stack_hidden():  # while MLflow is imported (see lean.py: ~120 MiB of RSS)
        from .runner import run

    run(liveness=liveness)


app.add_typer(operator_app, name="operator")


@app.command()
def demo(
    once: bool = typer.Option(False, "--once", help="Stop the sandbox at the end instead of waiting for Ctrl-C."),
    state_dir: Path = typer.Option(  # = sandbox.supervisor.DEMO_STATE_DIR (not imported here: 0.4 s)
        Path(".sandbox/demo"), help="Sandbox state directory (wiped at start)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the measured results as JSON here."),
    control_plane: str | None = typer.Option(
        None, help="real or emulator (default: real when built with `modelops sandbox build`)."),
) -> None:
    """Run the whole product on real data in the local sandbox (train, promote, serve, monitor)."""
    from .demo.flow import run_demo
    from .sandbox.supervisor import CONTROL_PLANES, default_control_plane

    chosen = control_plane or default_control_plane()
    if chosen not in CONTROL_PLANES:
        raise typer.BadParameter(f"--control-plane must be one of {', '.join(CONTROL_PLANES)}")
    if chosen == "emulator" and control_plane is None:
        typer.echo("Using the API emulator: the real Kubernetes control plane is not built yet. "
                   "`.venv/bin/modelops sandbox build` builds it once (about 10 min on 2 cores); "
                   "then `make demo` runs on it.", err=True)

    root = Path(__file__).resolve().parents[2]
    if not (root / "manifests" / "samples").is_dir():
        typer.echo("modelops demo runs from a checkout of the repository (it applies manifests/samples/)", err=True)
        raise typer.Exit(2)
    raise typer.Exit(run_demo(root, state_dir, once, json_out, chosen))


#: ``modelops status`` exit code when the monitor's Ready condition is not True.
EXIT_NOT_READY = 3


@app.command()
def status(
    monitor: str = typer.Argument(..., help="ModelMonitor name."),
    namespace: str = typer.Option("default", "-n", "--namespace", help="Namespace of the monitor."),
    output: str = typer.Option("table", "-o", "--output", help="table or json."),
    kubeconfig: Path | None = typer.Option(
        None,
        envvar="KUBECONFIG",
        help="kubeconfig (default: in-cluster, else a running local sandbox's, else ~/.kube/config).",
    ),
) -> None:
    """Print a ModelMonitor's monitoring report (readiness, health, performance, prediction stats, drift).

    Exit codes: 0 the monitor is Ready; 3 it is not (the report says why: its Ready condition's
    reason and message); 1 no cluster or the monitor cannot be read; 2 a bad option.
    """
    import json

    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    from .api.common import GROUP, VERSION
    from .report import monitoring_report, report_table

    if output not in ("table", "json"):
        typer.echo(f"--output must be table or json, not {output!r}", err=True)
        raise typer.Exit(2)
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig))
        else:  # in-cluster when in a pod, else a local sandbox that runs (make demo's too), else ~/.kube/config
            try:
                config.load_incluster_config()
            except config.ConfigException:
                sandbox = _running_sandbox_kubeconfig()
                if sandbox is not None:
                    typer.echo(f"using the local sandbox's kubeconfig {sandbox}", err=True)
                config.load_kube_config(config_file=str(sandbox) if sandbox else None)
    except config.ConfigException as exc:
        typer.echo(f"no cluster to talk to: {exc} (set KUBECONFIG or --kubeconfig)", err=True)
        raise typer.Exit(1) from exc
    try:
        body: Any = client.CustomObjectsApi().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelmonitors", monitor
        )
    except ApiException as exc:
        typer.echo(f"cannot read ModelMonitor {namespace}/{monitor}: HTTP {exc.status} {exc.reason}", err=True)
        raise typer.Exit(1) from exc
    report = monitoring_report(body)
    typer.echo(json.dumps(report, indent=2) if output == "json" else "\n".join(report_table(report)))
    if report["ready"]["status"] != "True":
        raise typer.Exit(EXIT_NOT_READY)


def _running_sandbox_kubeconfig() -> Path | None:
    """The kubeconfig of the local sandbox that runs (``.sandbox``, or ``make demo``'s), if any."""
    from .sandbox.supervisor import STATE_FILE, Supervisor, locate_state_dir

    state_dir = locate_state_dir()
    if not (state_dir / STATE_FILE).is_file():
        return None
    sup = Supervisor(state_dir)
    return Path(sup.state.kubeconfig) if sup.running() and sup.state.kubeconfig else None


def _register_subcommands() -> None:
    """Attach the sub-apps that later modules provide (each imports its heavy deps lazily)."""
    from .sandbox.cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox",
                  help="Local sandbox: the control plane (real or emulated), a kubelet and MLflow.")


_register_subcommands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
