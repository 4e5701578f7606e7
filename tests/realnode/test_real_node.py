"""The real node: the upstream kubelet with containerd, runc and the CNI bridge registers with the
sandbox's real control plane and runs pods from a locally made image (nothing pulled)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops.sandbox import realnode
from modelops.sandbox.realnode import config
from modelops.sandbox.realnode.images import ImageError, busybox_image
from modelops.sandbox.testing import Sandbox

from .conftest import BUSYBOX

pytestmark = pytest.mark.e2e


@pytest.fixture
def ns(node_cluster: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    name = node_cluster.new_namespace(request.node.name.removeprefix("test_").replace("_", "-"))
    try:
        yield name
    finally:
        node_cluster.delete_namespace(name)


def _container(command: str, **extra: Any) -> dict[str, Any]:
    return {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "command": ["sh", "-c", command], **extra}


def test_node_registers_ready_with_containerd(node_cluster: Sandbox) -> None:
    node = node_cluster.get("nodes", config.NODE_NAME, None)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.") and info["containerRuntimeVersion"].startswith("containerd://")
    assert {"type": "InternalIP", "address": config.GATEWAY} in node["status"]["addresses"]


def test_pod_runs_to_completion_in_a_container_and_kubectl_logs_shows_its_output(node_cluster: Sandbox,
                                                                                   ns: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
           "spec": {"restartPolicy": "Never",
                    "containers": [_container("echo hello from $(hostname) as $(id -u); ls /var/run/secrets/"
                                              "kubernetes.io/serviceaccount; exit 3")]}}
    node_cluster.create(pod, ns)
    done = node_cluster.wait_for_object("pods", "hello", ns,
                                        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Failed"
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert done["spec"]["nodeName"] == config.NODE_NAME
    assert done["status"]["podIP"].startswith(config.GATEWAY.rsplit(".", 1)[0] + ".")
    logs = node_cluster.kubectl("logs", "-n", ns, "hello").stdout
    assert logs.splitlines()[0] == "hello from hello as 0"
    assert "token" in logs.splitlines()[1:]  # the projected service-account volume is mounted


def test_deployment_answers_http_by_pod_ip_and_by_service_name_from_the_host_and_from_pods(node_cluster: Sandbox,
                                                                                         ns: str) -> None:
    serve = "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"
    probe = {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}},
                                        "spec": {"containers": [_container(
                                            serve, ports=[{"name": "http", "containerPort": 8080}],
                                            readinessProbe=probe)]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    node_cluster.create(deployment, ns)
    node_cluster.create(service, ns)
    node_cluster.wait_for_object("deployments", "web", ns,
                                 lambda d: (d.get("status") or {}).get("availableReplicas") == 1)

    def ready_endpoint() -> str | None:
        slices = node_cluster.list("endpointslices", ns, {"kubernetes.io/service-name": "web"})
        addresses = [a for s in slices for e in s.get("endpoints") or []
                     if (e.get("conditions") or {}).get("ready") for a in e["addresses"]]
        return addresses[0] if addresses else None

    address = node_cluster.wait_for(ready_endpoint, message="a ready endpoint of Service web")
    pod = node_cluster.list("pods", ns, {"app": "web"})[0]
    assert address == pod["status"]["podIP"]
    response = httpx.get(f"http://{address}:8080/index.html", timeout=10)
    assert response.status_code == 200
    assert response.text.strip() == f"served by {pod['metadata']['name']}"

    # Through the Service: kube-proxy's rules translate its cluster IP, from this machine and from a pod.
    cluster_ip = node_cluster.get("services", "web", ns)["spec"]["clusterIP"]

    def through_cluster_ip() -> str | None:
        try:  # refused until kube-proxy has synced the new Service (asynchronously, as in any cluster)
            return httpx.get(f"http://{cluster_ip}/index.html", timeout=10).text.strip()
        except httpx.ConnectError:
            return None

    assert node_cluster.wait_for(through_cluster_ip, message=f"{cluster_ip} answering") == response.text.strip()
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
              "spec": {"restartPolicy": "Never", "containers": [_container(
                  f"wget -q -O - http://web.{ns}.svc/index.html && "  # the cluster DNS (CoreDNS) names it
                  # busybox's TLS client finds no cipher in common with kube-apiserver ("handshake failure"),
                  # so plain HTTP to its TLS port: Go's server answers "400 Bad Request" to that.
                  "wget -O - http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/ 2>&1 | grep -q 'HTTP/1.0 400' "
                  "&& echo apiserver reached"
              )]}}
    node_cluster.create(client, ns)
    done = node_cluster.wait_for_object("pods", "client", ns,
                                        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    logs = node_cluster.kubectl("logs", "-n", ns, "client").stdout
    assert done["status"]["phase"] == "Succeeded", logs
    assert logs.splitlines()[0] == response.text.strip()
    assert logs.splitlines()[1] == "apiserver reached"  # kubernetes.default, as in-cluster clients reach it
    kubernetes = node_cluster.list("endpointslices", "default", {"kubernetes.io/service-name": "kubernetes"})
    assert kubernetes[0]["endpoints"][0]["addresses"] == [config.GATEWAY]


def test_an_image_that_was_not_imported_is_never_pulled(node_cluster: Sandbox, ns: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "absent"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{**_container("true"), "image": "modelops.test/not-imported:1"}]}}
    node_cluster.create(pod, ns)

    def waiting_reason(p: dict[str, Any]) -> bool:
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and (statuses[0]["state"].get("waiting") or {}).get("reason") == "ErrImageNeverPull"

    stuck = node_cluster.wait_for_object("pods", "absent", ns, waiting_reason)
    assert stuck["status"]["phase"] == "Pending"


def test_a_claim_without_a_class_binds_a_local_volume_that_a_non_root_pod_writes(node_cluster: Sandbox,
                                                                                 ns: str) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
    node_cluster.create(claim, ns)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer"},
           "spec": {"restartPolicy": "Never",
                    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                    "containers": [_container("echo written by $(id -u) > /data/file && cat /data/file",
                                              volumeMounts=[{"name": "data", "mountPath": "/data"}])]}}
    node_cluster.create(pod, ns)
    done = node_cluster.wait_for_object("pods", "writer", ns,
                                        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    logs = node_cluster.kubectl("logs", "-n", ns, "writer").stdout
    assert done["status"]["phase"] == "Succeeded", logs
    assert logs.strip() == "written by 10001"
    bound = node_cluster.get("persistentvolumeclaims", "data", ns)
    assert bound["status"]["phase"] == "Bound" and bound["spec"]["storageClassName"] == config.STORAGE_CLASS


def test_an_image_built_by_docker_is_imported_without_an_archive_and_runs(node_cluster: Sandbox, ns: str,
                                                                          tmp_path: Path) -> None:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker daemon here (the images of `make images` come from one)")
    reference = "modelops.test/busybox-docker:1"
    archive = busybox_image(tmp_path / "busybox.tar", reference)
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    try:
        realnode.import_docker_images(node_cluster.state_dir, [reference])
    finally:
        subprocess.run(["docker", "rmi", reference], check=False, capture_output=True)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "from-docker"},
           "spec": {"restartPolicy": "Never", "containers": [{**_container("echo from docker"), "image": reference}]}}
    node_cluster.create(pod, ns)
    done = node_cluster.wait_for_object("pods", "from-docker", ns,
                                        lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded"
    assert node_cluster.kubectl("logs", "-n", ns, "from-docker").stdout.strip() == "from docker"
    with pytest.raises(ImageError, match=r"docker save modelops\.test/absent:1: exit 1"):
        realnode.import_docker_images(node_cluster.state_dir, ["modelops.test/absent:1"])
