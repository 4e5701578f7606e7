"""Command lines and kubeconfigs of the control-plane processes (pure: paths and ports in, argv out).

The flags follow what kubeadm and controller-runtime's envtest give these components, reduced to a
single node on loopback: etcd on a client and a peer port of 127.0.0.1; kube-apiserver on a secure
port of 127.0.0.1 with client-certificate and service-account-token authentication,
``--authorization-mode=Node,RBAC`` and its default admission plugins; kube-controller-manager and
kube-scheduler with their own client certificates and ``--leader-elect=false``: with leader election
a single replica exits ("leaderelection lost") whenever the apiserver is away for longer than the
renew deadline (10 s), which in a cluster the kubelet answers by restarting the static pod; the
sandbox has one replica of each, so there is nothing to elect and they ride out an apiserver restart.
The service range is envtest's (``10.0.0.0/24``): its
addresses are only numbers in Service objects, nothing ever connects to them (the sandbox's Service
forwarders listen on loopback ports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .pki import Pki

SERVICE_CIDR = "10.0.0.0/24"
#: The ``kubernetes`` Service's cluster IP (first address of SERVICE_CIDR).
KUBERNETES_SERVICE_IP = "10.0.0.1"
#: Controllers of kube-controller-manager that the sandbox runs: its defaults ("*"), without the
#: ones that need a cloud provider or real volumes and that would only log errors here.
CONTROLLERS = "*,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pv-protection," \
              "-pvc-protection,-node-ipam-controller"
#: With the real node, which mounts real volumes: also the PersistentVolume binder and the PV and PVC
#: protection controllers (claims bind to the node's local PersistentVolumes, see realnode.storage).
CONTROLLERS_WITH_STORAGE = "*,-attachdetach,-persistentvolume-expander,-ephemeral-volume,-node-ipam-controller"


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one control plane on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    #: kube-apiserver's bind and advertise address: loopback, or with the real node the pod
    #: bridge's gateway, so that pods reach the ``kubernetes`` Service (docs/sandbox.md, "Real node").
    address: str = "127.0.0.1"

    @property
    def api_url(self) -> str:
        """``https://<address>:<apiserver>``."""
        return f"https://{self.address}:{self.apiserver}"


def etcd_argv(binary: Path, data_dir: Path, ports: Ports) -> list[str]:
    """etcd, one member, plain HTTP on loopback (the apiserver is its only client)."""
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [str(binary), "--name=sandbox", f"--data-dir={data_dir}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=sandbox={peer}", "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # a throw-away sandbox: fsync costs seconds per write burst on shared disks
            "--log-level=warn", "--listen-metrics-urls="]


def apiserver_argv(binary: Path, pki: Pki, ports: Ports, audit_log: Path | None = None) -> list[str]:
    """kube-apiserver with real authentication, Node+RBAC authorization and default admission.

    On loopback the ``kubernetes`` Service gets no endpoints (the API refuses loopback endpoint
    addresses); on another address (the real node's bridge) the default lease reconciler writes them.
    """
    argv = [
        str(binary),
        f"--advertise-address={ports.address}", f"--bind-address={ports.address}", f"--secure-port={ports.apiserver}",
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--tls-cert-file={pki.crt('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca}",
        f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
        f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",  # added to the default set, as kubeadm does
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]
    if ports.address.startswith("127."):
        argv += ["--endpoint-reconciler-type=none"]
    if audit_log is not None:
        argv += [f"--audit-log-path={audit_log}"]
    return argv


def controller_manager_argv(binary: Path, pki: Pki, kubeconfig: Path, ports: Ports, storage: bool = False) -> list[str]:
    """kube-controller-manager: the default controllers (with ``storage`` the volume ones of
    :data:`CONTROLLERS_WITH_STORAGE`), service-account tokens, cluster signing."""
    return [
        str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--controllers={CONTROLLERS_WITH_STORAGE if storage else CONTROLLERS}",
        "--use-service-account-credentials=true", f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca}", f"--cluster-signing-cert-file={pki.ca}",
        f"--cluster-signing-key-file={pki.key('ca')}", "--leader-elect=false",
        # Faster than the defaults (40 s, 5 min via taint eviction) so the node-failure test ends soon;
        # the semantics are Kubernetes' own. See docs/sandbox.md.
        "--node-monitor-grace-period=20s", "--node-monitor-period=2s",
        "--v=1",
    ]


def scheduler_argv(binary: Path, kubeconfig: Path, ports: Ports) -> list[str]:
    """kube-scheduler with its default profile."""
    return [str(binary), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}", "--leader-elect=false", "--v=1"]
