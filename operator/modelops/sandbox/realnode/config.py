"""Configuration of the real node (pure: paths and ports in, file contents and argv out).

The real node is the upstream kubelet with containerd, runc and the CNI bridge plugin, against the
sandbox's real control plane. Everything it writes lives under ``<state>/node`` (:class:`Layout`);
its pod network is one Linux bridge inside this machine (:data:`BRIDGE`, :data:`POD_SUBNET`), with
no masquerading: pod traffic never leaves the machine. The node's InternalIP is the bridge's
gateway address, because the kubelet refuses a loopback node IP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Bridge name and pod subnet of the node's pod network (host-local IPAM, gateway = node IP).
BRIDGE = "modelops0"
POD_SUBNET = "10.85.0.0/24"
GATEWAY = "10.85.0.1"
NODE_NAME = "modelops-node"
#: The pod sandbox ("pause") image; built locally from Kubernetes' own pause.c (see images.py).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
#: CNI plugins of Debian's containernetworking-plugins.
CNI_BIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True)
class Layout:
    """Paths of one real node under ``<state>/node``."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        """containerd's persistent data (content store, snapshots)."""
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        """containerd's runtime state (tasks, shim sockets)."""
        return self.root / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        """``config.toml``."""
        return self.root / "containerd" / "config.toml"

    @property
    def socket(self) -> Path:
        """containerd's gRPC socket (the CRI endpoint of the kubelet)."""
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        """Directory of the node's CNI conflist."""
        return self.root / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        """host-local IPAM's allocations."""
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's ``--root-dir`` (pod volumes, plugin state)."""
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        """The KubeletConfiguration file."""
        return self.root / "kubelet-config.yaml"

    @property
    def kubeconfig(self) -> Path:
        """The kubelet's kubeconfig (client certificate ``system:node:<name>``); CoreDNS's and
        kube-proxy's are ``coredns.kubeconfig`` and ``kube-proxy.kubeconfig`` beside it."""
        return self.root / "kubelet.kubeconfig"

    @property
    def volumes(self) -> Path:
        """Directories of the node's local PersistentVolumes."""
        return self.root / "volumes"

    @property
    def pod_logs(self) -> Path:
        """``podLogsDir``: container logs, served by ``kubectl logs``."""
        return self.root / "pods-logs"


def containerd_config(layout: Layout, cni_bin_dir: Path = CNI_BIN_DIR, pause_image: str = PAUSE_IMAGE) -> str:
    """containerd's ``config.toml`` (config version 2, read by containerd 1.6 and 1.7).

    Its own root, state and socket (so it runs beside any other containerd, e.g. Docker's), the
    CRI plugin with runc through ``io.containerd.runc.v2`` and cgroupfs (``SystemdCgroup = false``,
    matching the kubelet's ``cgroupDriver``), the overlayfs snapshotter, CNI from ``cni_bin_dir`` and
    the node's conf dir, and ``pause_image`` as the pod sandbox image (it must be imported: nothing
    is pulled). ``restrict_oom_score_adj``: the kubelet asks for negative OOM scores (-998 for
    the pause container), which need CAP_SYS_RESOURCE; these machines do not grant it to root, and
    runc then fails every pod sandbox ("failed to update /proc/self/oom_score_adj: Permission
    denied"), so scores are clamped to containerd's own, as for rootless containerd. Pod network
    namespaces are mounted under its state dir (so ``cleanup`` finds them with the rest).
    Snapshotters and plugins that need what this machine lacks are disabled.
    """
    return f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{layout.socket}"

[ttrpc]
  address = "{layout.socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.root / 'containerd' / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "{layout.cni_conf_dir}"
"""


def cni_conflist(layout: Layout, bridge: str = BRIDGE, subnet: str = POD_SUBNET,
                 gateway: str = GATEWAY) -> dict[str, Any]:
    """The pod network: ``bridge`` (the node's gateway address on it, no masquerade: traffic stays on
    this machine) with host-local IPAM in ``subnet`` (allocations under the node's dir), and
    ``portmap`` for ``hostPort``. containerd adds the loopback plugin itself."""
    return {
        "cniVersion": "1.0.0",
        "name": "modelops",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.ipam_dir),
                      "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: Layout, *, ca: Path, cert: Path, key: Path, address: str, port: int,
                   healthz_port: int, cluster_dns: list[str] | None = None) -> dict[str, Any]:
    """The KubeletConfiguration (``kubelet.config.k8s.io/v1beta1``).

    Serves on ``address:port`` with ``cert``/``key`` (signed by the sandbox CA); callers (the
    apiserver, for logs and exec) authenticate with client certificates of ``ca`` and are
    authorised by the apiserver (webhook), as kubeadm sets it up. No static pods, cgroupfs (as
    containerd's runc), cgroup v1 allowed (``failCgroupV1: false``: this machine's hierarchy),
    swap tolerated, evictions and image garbage collection effectively off (a sandbox shares its
    disk and memory with everything else: a real node would evict our pods at the defaults), images
    pulled one at a time (nothing is pulled anyway: pods use ``IfNotPresent``/``Never``).
    """
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs),
        "volumePluginDir": str(layout.root / "volume-plugins"),
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                         "imagefs.available": "1%", "imagefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "maxPods": 110,
    }
    if cluster_dns:
        config |= {"clusterDNS": cluster_dns, "clusterDomain": "cluster.local"}
    return config


def kubelet_argv(binary: Path, layout: Layout, node_name: str = NODE_NAME, node_ip: str = GATEWAY) -> list[str]:
    """The kubelet's command line (what the config file cannot hold)."""
    return [str(binary), f"--config={layout.kubelet_config}", f"--kubeconfig={layout.kubeconfig}",
            f"--root-dir={layout.kubelet_root}", f"--cert-dir={layout.root / 'kubelet-pki'}",
            f"--hostname-override={node_name}", f"--node-ip={node_ip}", "--v=1"]


def kube_proxy_argv(binary: Path, kubeconfig: Path, healthz_port: int, metrics_port: int,
                    node_name: str = NODE_NAME, cluster_cidr: str = POD_SUBNET) -> list[str]:
    """kube-proxy in iptables mode: Service cluster IPs (``kubernetes.default`` included) reach
    their endpoints from pods and from this machine. NodePorts only on the pod bridge's subnet;
    ``--conntrack-max-per-core=0`` keeps the kernel's conntrack table size (no sysctl written)."""
    return [str(binary), f"--kubeconfig={kubeconfig}", f"--hostname-override={node_name}",
            "--proxy-mode=iptables", f"--cluster-cidr={cluster_cidr}", f"--nodeport-addresses={cluster_cidr}",
            f"--healthz-bind-address=127.0.0.1:{healthz_port}", f"--metrics-bind-address=127.0.0.1:{metrics_port}",
            "--conntrack-max-per-core=0", "--v=1"]


#: The user CoreDNS authenticates as, and its ClusterRole (kubeadm's ``system:coredns`` rules).
COREDNS_USER = "system:coredns"


def corefile(kubeconfig: Path, ready_port: int, address: str = GATEWAY, domain: str = "cluster.local") -> str:
    """CoreDNS's configuration: the ``kubernetes`` plugin answers ``<svc>.<ns>.svc.<domain>`` (and
    pod and reverse names) on ``address:53``, from the apiserver through ``kubeconfig``; ``ready``
    on ``127.0.0.1:ready_port`` answers 200 once its caches are synced. No ``forward``: other names
    get no answer (nothing leaves this machine)."""
    return f"""{domain}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {address}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} coredns
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def coredns_rbac(user: str = COREDNS_USER) -> list[dict[str, Any]]:
    """The ClusterRole and ClusterRoleBinding CoreDNS's ``kubernetes`` plugin needs (read and watch
    Services, EndpointSlices, Namespaces and Pods), as kubeadm installs them, bound to ``user``."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": user},
            "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                       "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": user},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}
    return [role, binding]


def coredns_argv(binary: Path, corefile_path: Path) -> list[str]:
    """CoreDNS with the node's Corefile."""
    return [str(binary), "-conf", str(corefile_path)]


#: The node's default StorageClass: pre-made local PersistentVolumes, bound as soon as claimed.
STORAGE_CLASS = "modelops-local"


def storage_manifests(volume_dirs: list[Path], node_name: str = NODE_NAME, size: str = "10Gi") -> list[dict[str, Any]]:
    """A default StorageClass (``kubernetes.io/no-provisioner``, ``Immediate`` binding: one node, so
    nothing is gained by waiting for the pod's placement, and ``helm install --wait`` waits for every
    claim to be Bound, which a ``WaitForFirstConsumer`` claim with no pod yet never is) and one
    ``local`` PersistentVolume per directory, pinned to the node, of
    ``size`` and both ``ReadWriteOnce`` and ``ReadWriteMany`` (one node: every pod shares it). Claims
    without a class (the chart's MLflow and prediction-log claims) get the default class and bind
    to a free volume; the kubelet applies the pod's ``fsGroup`` to local volumes, so non-root pods
    can write."""
    storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                     "metadata": {"name": STORAGE_CLASS,
                                  "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                     "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
                     "reclaimPolicy": "Retain"}
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}}
    volumes = [{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{STORAGE_CLASS}-{path.name}"},
                "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                         "local": {"path": str(path)}, "nodeAffinity": affinity}}
               for path in volume_dirs]
    return [storage_class, *volumes]


def forward_rules(bridge: str = BRIDGE) -> list[list[str]]:
    """iptables ``FORWARD`` rules (``-I FORWARD 1`` each, in this order, so the first listed ends
    up last): pods on the bridge may reach each other (bridged traffic passes iptables with
    ``br_netfilter``, and Docker's ``FORWARD`` policy is DROP), and nothing from the bridge is
    forwarded anywhere else: pod traffic stays on this machine."""
    return [["-i", bridge, "!", "-o", bridge, "-j", "DROP"], ["-i", bridge, "-o", bridge, "-j", "ACCEPT"]]


def containerd_argv(binary: Path, layout: Layout) -> list[str]:
    """containerd with the node's config."""
    return [str(binary), f"--config={layout.containerd_config}", "--log-level=warn"]


def dumps(obj: dict[str, Any]) -> str:
    """JSON text (the kubelet reads its YAML config file as JSON too; so does CNI)."""
    return json.dumps(obj, indent=1) + "\n"
