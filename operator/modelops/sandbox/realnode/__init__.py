"""The real node: the upstream kubelet with containerd, runc and the CNI bridge plugin, registered
with the sandbox's real control plane (``modelops sandbox up --node real``), instead of our Python
kubelet. Pods run in real containers from images imported into containerd's ``k8s.io`` namespace.

Root only (containerd, runc and CNI need it). Binaries: ``kubelet``, ``kube-proxy``, ``coredns`` and
``pause`` from ``hack/kube/build.sh --node`` (into the control plane's cache), ``containerd``, ``ctr`` and
``runc`` from Debian (``containerd``, ``runc``), CNI plugins from ``containernetworking-plugins``.
Everything the node writes is under ``<state>/node`` (:class:`.config.Layout`); its pod network is
the bridge :data:`.config.BRIDGE` with :data:`.config.POD_SUBNET` (one real node per machine).
docs/sandbox.md ("Real node") has what it needs and what it taught us.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..controlplane import binaries
from ..controlplane.pki import ensure_client_cert, ensure_server_cert
from ..kubeconfig import write_tls_kubeconfig
from . import config
from .images import ImageError, import_image, write_image_tar

if TYPE_CHECKING:
    from ..supervisor import Supervisor

#: What the node needs from Debian, by command → package (for the error message).
HOST_COMMANDS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "ip": "iproute2",
                 "iptables": "iptables"}


def missing() -> str | None:
    """Why the real node cannot run here (None when it can): not root, a host command or CNI plugin
    missing, or the node binaries neither built nor buildable."""
    if os.geteuid() != 0:
        return "the real node needs root (containerd, runc, CNI)"
    absent = sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if shutil.which(cmd) is None})
    if not (config.CNI_BIN_DIR / "bridge").exists():
        absent.append("containernetworking-plugins")
    if absent:
        return f"missing Debian packages: {' '.join(absent)}"
    if not binaries.built(node=True) and not binaries.available():
        return "kubelet not built and the Go toolchain (go) is not on PATH"
    return None


def layout_of(state_dir: Path) -> config.Layout:
    """The node's paths in a sandbox state dir."""
    return config.Layout(state_dir / "node")


def ensure_network(bridge: str = config.BRIDGE, gateway: str = config.GATEWAY, subnet: str = config.POD_SUBNET) -> str:
    """Create the pod bridge with the gateway address (the node IP; the control plane listens there
    too) before anything starts; the CNI bridge plugin then finds it as it would have made it.
    Routes the Service range to the bridge (a cluster IP that kube-proxy has not translated goes
    nowhere, never out of the machine) and adds :func:`.config.forward_rules`. Idempotent; returns
    ``gateway``."""
    from ..controlplane.components import SERVICE_CIDR

    prefix = subnet.split("/")[1]
    if subprocess.run(["ip", "link", "show", bridge], capture_output=True, check=False).returncode != 0:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    shown = subprocess.run(["ip", "-4", "addr", "show", "dev", bridge], capture_output=True, text=True, check=True)
    if f"inet {gateway}/" not in shown.stdout:
        subprocess.run(["ip", "addr", "add", f"{gateway}/{prefix}", "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    subprocess.run(["ip", "route", "replace", SERVICE_CIDR, "dev", bridge], check=True)
    for rule in config.forward_rules(bridge):
        if subprocess.run(["iptables", "-C", "FORWARD", *rule], capture_output=True, check=False).returncode != 0:
            subprocess.run(["iptables", "-I", "FORWARD", "1", *rule], check=True)
    return gateway


def import_images(state_dir: Path, archives: Sequence[Path]) -> None:
    """Import ``docker save`` archives into the running node's containerd (``k8s.io`` namespace).
    Raises ImageError."""
    layout = layout_of(state_dir)
    for archive in archives:
        import_image(Path(shutil.which("ctr") or "ctr"), layout.socket, archive)


def import_docker_images(state_dir: Path, references: Sequence[str]) -> None:
    """``docker save <ref> | ctr -n k8s.io images import -`` into the running node's containerd, for
    images built by Docker (``make images``), without an archive on disk. Raises ImageError (with
    docker's message when the image does not exist)."""
    layout = layout_of(state_dir)
    for reference in references:
        failed: ImageError | None = None
        with subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as save:
            assert save.stdout is not None and save.stderr is not None
            try:
                import_image(Path(shutil.which("ctr") or "ctr"), layout.socket, None, stdin=save.stdout.fileno())
            except ImageError as exc:
                failed = exc
            save.stdout.close()
            error = save.stderr.read().decode(errors="replace")
        if save.returncode != 0:  # the cause of ctr's failure too ("unrecognized image format" of nothing)
            raise ImageError(f"docker save {reference}: exit {save.returncode}: {error.strip()[-2000:]}")
        if failed is not None:
            raise failed


def start(sup: Supervisor, images: Sequence[Path] = (), node_name: str = config.NODE_NAME) -> None:
    """Start the real node against the sandbox's running real control plane: containerd (then the
    pause image and ``images``, ``docker save`` archives, are imported), CoreDNS, the kubelet (until
    the Node is Ready) and kube-proxy (until its rules are synced).

    Raises SandboxError when something is missing (see :func:`missing`) or a process fails.
    """
    from ..supervisor import SandboxError

    why = missing()
    if why is not None:
        raise SandboxError(f"the real node cannot run here: {why}")
    try:
        bindir = binaries.ensure(node=True)
    except binaries.BinariesError as exc:
        raise SandboxError(str(exc)) from exc
    layout = layout_of(sup.state_dir)
    for directory in (layout.containerd_root, layout.containerd_state, layout.cni_conf_dir, layout.ipam_dir,
                      layout.kubelet_root, layout.pod_logs):
        directory.mkdir(parents=True, exist_ok=True)
    ensure_network()
    timeout = max(sup.start_timeout, 90.0)
    _start_containerd(sup, layout, timeout)
    try:
        pause = write_image_tar(layout.root / "images" / "pause.tar", config.PAUSE_IMAGE,
                                {"/pause": bindir / "pause"}, entrypoint=["/pause"], user="65535:65535")
        import_images(sup.state_dir, [pause, *images])
    except ImageError as exc:
        raise SandboxError(str(exc)) from exc
    _start_dns(sup, bindir, timeout)
    _start_kubelet(sup, bindir, node_name, timeout)
    _start_kube_proxy(sup, bindir, node_name, timeout)
    ensure_storage(sup, node_name)


#: Local PersistentVolumes made per node (the chart needs two: MLflow's and the prediction log's,
#: one per namespace with models).
VOLUMES = 8


def ensure_storage(sup: Supervisor, node_name: str = config.NODE_NAME, count: int = VOLUMES) -> None:
    """Make ``count`` volume directories under ``<state>/node/volumes`` (mode 0777: a pod without
    ``fsGroup`` may write too) and apply :func:`.config.storage_manifests` with kubectl."""
    from ..controlplane.install import kubectl

    directories = [layout_of(sup.state_dir).volumes / f"pv{i}" for i in range(count)]
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)
    kubectl(Path(str(sup.state.kubeconfig)), "apply", "--server-side", "--field-manager=modelops-sandbox", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                              "items": config.storage_manifests(directories, node_name)}))


def _kubeconfig(sup: Supervisor, name: str, stem: str, user: str, group: str | None = None) -> Path:
    """``<state>/node/<name>.kubeconfig`` with a client certificate ``user``/``group`` of the sandbox CA."""
    from ..controlplane import pki_of

    pki = pki_of(sup.state_dir)
    cert, key = ensure_client_cert(pki, stem, user, group)
    return write_tls_kubeconfig(layout_of(sup.state_dir).root / f"{name}.kubeconfig", str(sup.state.api_url), pki.ca,
                                cert=cert, key=key, name=name)


def _start_containerd(sup: Supervisor, layout: config.Layout, timeout: float) -> None:
    from ..controlplane import wait_until

    layout.containerd_config.write_text(config.containerd_config(layout))
    (layout.cni_conf_dir / "10-modelops.conflist").write_text(config.dumps(config.cni_conflist(layout)))
    ctr = Path(shutil.which("ctr") or "ctr")
    sup._spawn("containerd", config.containerd_argv(Path(shutil.which("containerd") or "containerd"), layout))

    def containerd_serves() -> str | None:
        result = subprocess.run([str(ctr), "--address", str(layout.socket), "version"], capture_output=True,
                                text=True, timeout=10, check=False)
        return None if result.returncode == 0 else result.stderr.strip()[-200:]

    wait_until(sup, "containerd", containerd_serves, "its socket answering", timeout)


def _start_dns(sup: Supervisor, bindir: Path, timeout: float) -> None:
    """CoreDNS on the node's address (the pods' ``clusterDNS``) with its own client certificate and
    RBAC (:func:`.config.coredns_rbac`, applied with kubectl); waits for its ``ready``."""
    from ..controlplane import wait_http_ok
    from ..controlplane.install import kubectl
    from ..procs import free_port

    kubectl(Path(str(sup.state.kubeconfig)), "apply", "--server-side", "--field-manager=modelops-sandbox", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": config.coredns_rbac()}))
    kubeconfig = _kubeconfig(sup, "coredns", "coredns", config.COREDNS_USER)
    ready_port = free_port()
    corefile = layout_of(sup.state_dir).root / "Corefile"
    corefile.write_text(config.corefile(kubeconfig, ready_port))
    sup._spawn("coredns", config.coredns_argv(bindir / "coredns", corefile), port=ready_port)
    wait_http_ok(sup, "coredns", f"http://127.0.0.1:{ready_port}/ready", timeout)


def _start_kubelet(sup: Supervisor, bindir: Path, node_name: str, timeout: float) -> None:
    """The kubelet as ``system:node:<node_name>``, serving with a certificate of the sandbox CA; waits
    until its Node is Ready."""
    from ..controlplane import pki_of, wait_until
    from ..controlplane.install import InstallError, kubectl
    from ..procs import free_port

    layout = layout_of(sup.state_dir)
    pki = pki_of(sup.state_dir)
    _kubeconfig(sup, "kubelet", f"kubelet-{node_name}", f"system:node:{node_name}", "system:nodes")
    serving_cert, serving_key = ensure_server_cert(pki, f"kubelet-serving-{node_name}", [config.GATEWAY, node_name])
    port = free_port()
    layout.kubelet_config.write_text(config.dumps(config.kubelet_config(
        layout, ca=pki.ca, cert=serving_cert, key=serving_key, address=config.GATEWAY, port=port,
        healthz_port=free_port(), cluster_dns=[config.GATEWAY])))
    sup._spawn("kubelet", config.kubelet_argv(bindir / "kubelet", layout, node_name), port=port)
    sup.state.processes["kubelet"].url = f"https://{config.GATEWAY}:{port}"
    sup.state.save()
    admin = Path(str(sup.state.kubeconfig))

    def node_ready() -> str | None:
        try:
            ready = kubectl(admin, "get", "node", node_name, "--ignore-not-found",
                            "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", timeout=20).strip()
        except InstallError as exc:
            return str(exc)
        return None if ready == "True" else f"Ready={ready or 'not registered'}"

    wait_until(sup, "kubelet", node_ready, f"Node {node_name} Ready", timeout)


def _start_kube_proxy(sup: Supervisor, bindir: Path, node_name: str, timeout: float) -> None:
    """kube-proxy as ``system:kube-proxy`` (bound to ``system:node-proxier`` by default RBAC); its
    /healthz answers 200 once it has programmed its rules."""
    from ..controlplane import wait_http_ok
    from ..procs import free_port

    kubeconfig = _kubeconfig(sup, "kube-proxy", "kube-proxy", "system:kube-proxy")
    healthz = free_port()
    sup._spawn("kube-proxy", config.kube_proxy_argv(bindir / "kube-proxy", kubeconfig, healthz, free_port(),
                                                    node_name), port=healthz)
    wait_http_ok(sup, "kube-proxy", f"http://127.0.0.1:{healthz}/healthz", timeout)


def _kill_cgroup_tree(root: Path) -> int:
    """SIGKILL every process in the cgroup tree at ``root``; returns how many were signalled."""
    killed = 0
    if not root.is_dir():
        return 0
    for procs_file in root.rglob("cgroup.procs"):
        try:
            pids = [int(p) for p in procs_file.read_text().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def cleanup(state_dir: Path) -> None:
    """After containerd and the kubelet are stopped: kill the pods' processes (the ``kubepods``
    cgroup tree; containers outlive the kubelet and containerd by design), unmount what the node
    mounted under ``<state>/node`` (rootfs overlays, pod volumes, network namespaces), delete
    the bridge and remove kube-proxy's and :func:`.config.forward_rules`' iptables rules. Safe to
    call when no real node ran."""
    layout = layout_of(state_dir)
    if not layout.root.exists():
        return
    cgroup = Path("/sys/fs/cgroup")
    for tree in [cgroup / "kubepods", *(d / "kubepods" for d in cgroup.iterdir() if d.is_dir())]:
        _kill_cgroup_tree(tree)
    prefix = str(layout.root.resolve()) + "/"
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", config.BRIDGE], capture_output=True, check=False)
    proxy = (binaries.bin_dir() or Path("/nonexistent")) / "kube-proxy"
    if proxy.exists():  # its Service rules outlive it by design; --cleanup removes them
        subprocess.run([str(proxy), "--cleanup"], capture_output=True, check=False, timeout=60)
    for rule in config.forward_rules():
        subprocess.run(["iptables", "-D", "FORWARD", *rule], capture_output=True, check=False)
