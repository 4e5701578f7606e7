"""The real Kubernetes control plane as sandbox processes: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from their Go modules (:mod:`.binaries`), with
certificates made per sandbox (:mod:`.pki`), flags from :mod:`.components`, and the install steps
a cluster admin would take (:mod:`.install`: CRDs and the operator's ServiceAccount and RBAC with
kubectl, a token kubeconfig for the operator).

State dir additions (``<state>/``)::

    pki/                 CA, serving and client certificates, service-account key pair
    etcd/                etcd's data
    kubeconfig           admin kubeconfig (system:masters), for kubectl and tests
    kubeconfigs/<c>      kube-controller-manager's and kube-scheduler's own kubeconfigs
    operator.kubeconfig  the operator's: a token of ServiceAccount modelops-system/modelops-operator
    logs/<component>.log
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from .. import procs
from ..client import Connection
from ..kubeconfig import write_tls_kubeconfig
from . import binaries, components
from .pki import Pki, ensure_pki

if TYPE_CHECKING:
    from ..supervisor import Supervisor

#: Process names, in start order.
PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def wait_until(sup: Supervisor, name: str, check: Callable[[], str | None], what: str, timeout: float) -> None:
    """Poll ``check`` (None when ``what`` is reached, else why not; OSError, httpx.HTTPError,
    subprocess errors and ValueError count as not yet) until it is reached; SandboxError (with the end
    of the log of process ``name``) when that process exits or ``timeout`` seconds pass."""
    from ..supervisor import SandboxError

    process = sup._popen[name]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(f"{name} exited with code {process.returncode}{sup._tail(name, 40)}")
        try:
            reason = check()
            if reason is None:
                return
            last = reason
        except (OSError, httpx.HTTPError, subprocess.SubprocessError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SandboxError(f"{name}: {what} not reached after {timeout:.0f}s ({last}){sup._tail(name, 40)}")


def wait_http_ok(sup: Supervisor, name: str, url: str, timeout: float, **httpx_options: object) -> None:
    """Poll ``url`` until it answers 200 (or the process exits / time runs out: SandboxError)."""

    def check() -> str | None:
        response = httpx.get(url, timeout=2.0, **httpx_options)  # type: ignore[arg-type]
        return None if response.status_code == 200 else f"{response.status_code} {response.text[:200]}"

    wait_until(sup, name, check, f"200 from {url}", timeout)


def wait_api_ready(sup: Supervisor, timeout: float) -> None:
    """Wait until kube-apiserver answers ``/readyz`` with the admin certificate (SandboxError if not)."""
    pki = pki_of(sup.state_dir)
    url = str(sup.state.processes["kube-apiserver"].url)
    admin = Connection(url, ca=str(pki.ca), cert=str(pki.crt("admin")), key=str(pki.key("admin")))
    wait_http_ok(sup, "kube-apiserver", f"{url}/readyz", timeout, verify=admin.ssl_context())


def _spawn(sup: Supervisor, name: str, argv: list[str], port: int, url: str) -> None:
    sup._spawn(name, argv, port=port)
    sup.state.processes[name].url = url


def start(sup: Supervisor, api_port: int = 0, address: str = "127.0.0.1") -> str:
    """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler; returns the API URL.
    The apiserver listens on ``address`` (loopback, or the real node's bridge address).

    Builds the binaries first when they are missing (progress on stderr). Writes the admin
    kubeconfig to ``<state>/kubeconfig``. Raises SandboxError when a component fails to start.
    """
    from ..supervisor import SandboxError

    try:
        bindir = binaries.ensure()
    except binaries.BinariesError as exc:
        raise SandboxError(str(exc)) from exc
    state = sup.state_dir
    pki = ensure_pki(state / "pki", components.KUBERNETES_SERVICE_IP, address)
    ports = components.Ports(etcd_client=procs.free_port(), etcd_peer=procs.free_port(),
                             apiserver=procs.free_port(api_port or None), controller_manager=procs.free_port(),
                             scheduler=procs.free_port(), address=address)
    timeout = max(sup.start_timeout, 90.0)

    etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
    _spawn(sup, "etcd", components.etcd_argv(bindir / "etcd", state / "etcd", ports), ports.etcd_client, etcd_url)
    wait_http_ok(sup, "etcd", f"{etcd_url}/health", timeout)

    admin = write_tls_kubeconfig(state / "kubeconfig", ports.api_url, pki.ca, cert=pki.crt("admin"),
                                 key=pki.key("admin"))
    _spawn(sup, "kube-apiserver", components.apiserver_argv(bindir / "kube-apiserver", pki, ports),
           ports.apiserver, ports.api_url)
    sup.state.api_url = ports.api_url
    wait_api_ready(sup, timeout)
    sup.state.kubeconfig = str(admin)
    sup.state.control_plane = "real"
    sup.state.save()

    def own_kubeconfig(name: str) -> Path:
        return write_tls_kubeconfig(state / "kubeconfigs" / name, ports.api_url, pki.ca, cert=pki.crt(name),
                                    key=pki.key(name))

    kcm = components.controller_manager_argv(bindir / "kube-controller-manager", pki,
                                             own_kubeconfig("kube-controller-manager"), ports,
                                             storage=sup.state.node == "real")
    _spawn(sup, "kube-controller-manager", kcm, ports.controller_manager,
           f"https://127.0.0.1:{ports.controller_manager}")
    scheduler = components.scheduler_argv(bindir / "kube-scheduler", own_kubeconfig("kube-scheduler"), ports)
    _spawn(sup, "kube-scheduler", scheduler, ports.scheduler, f"https://127.0.0.1:{ports.scheduler}")
    for name, port in (("kube-controller-manager", ports.controller_manager), ("kube-scheduler", ports.scheduler)):
        wait_http_ok(sup, name, f"https://127.0.0.1:{port}/healthz", timeout, verify=False)
    if not all(sup.state.alive(n) for n in PROCESSES):
        raise SandboxError("a control-plane process exited during start-up")
    return ports.api_url


def pki_of(state_dir: Path) -> Pki:
    """The PKI paths of a sandbox state dir."""
    return Pki(state_dir / "pki")
