"""The operator image against the real control plane: it starts as the chart runs it (uid 10001,
read-only root, no capabilities, the operator ServiceAccount's token), reports healthy on its
probe port, and takes the sample ModelVersion to Ready."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from modelops.sandbox import procs
from modelops.sandbox.testing import Sandbox, require_real_control_plane
from tests.conftest import ROOT, load_yaml_docs

from .conftest import OPERATOR_IMAGE, Docker

SAMPLE = ROOT / "manifests/samples/modelversion-1.0.0.yaml"
KUBECONFIG_IN_CONTAINER = "/etc/modelops/kubeconfig"


def portable_kubeconfig(source: Path, target: Path) -> Path:
    """``source`` with its CA file inlined (``certificate-authority-data``), readable by the image's user."""
    config = yaml.safe_load(source.read_text())
    for entry in config["clusters"]:
        cluster = entry["cluster"]
        if "certificate-authority" in cluster:
            ca = Path(cluster.pop("certificate-authority")).read_bytes()
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o644)
    return target


def test_operator_image_reconciles_the_sample_to_ready(
    docker: Docker, container_name: Any, cluster: Sandbox, cluster_namespace: str, tmp_path: Path
) -> None:
    require_real_control_plane()
    supervisor = cluster.supervisor
    state = supervisor.state
    assert state.operator_kubeconfig, "the real control plane writes the operator's token kubeconfig"
    kubeconfig = portable_kubeconfig(Path(state.operator_kubeconfig), tmp_path / "kubeconfig")
    cluster.mlflow_url  # noqa: B018  # starts the sandbox's MLflow
    health, metrics = procs.free_port(), procs.free_port()
    predictions = supervisor.state_dir / "predictions"
    predictions.mkdir(exist_ok=True)
    name = container_name("operator")
    # The chart's container securityContext (helm/modelops/values.yaml) and its env, on the host network.
    args = [
        "run", "--detach", "--name", name, "--network", "host", "--init",
        "--user", "10001:10001", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--tmpfs", "/tmp:rw,mode=1777",
        "--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        "--env", f"KUBECONFIG={KUBECONFIG_IN_CONTAINER}",
        "--env", f"MODELOPS_MLFLOW_TRACKING_URI={state.mlflow_url}",
        "--env", f"MODELOPS_PREDICTION_LOG_URI={predictions}",
        "--env", f"MODELOPS_HEALTH_PORT={health}",
        "--env", f"MODELOPS_METRICS_PORT={metrics}",
        "--env", "MODELOPS_LEASE_NAMESPACE=modelops-system",
        "--env", f"MODELOPS_NAMESPACES={cluster_namespace}",
        OPERATOR_IMAGE,
    ]
    # One operator at a time: the sandbox's own (if a test started it) steps aside for the image's.
    was_running = state.alive("operator")
    if was_running:
        supervisor.stop_component("operator")
    try:
        started = docker.run(args)
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and not healthy:
            running = docker.run(["inspect", "--format", "{{.State.Running}}", name]).stdout.strip()
            assert running == "true", f"the operator container exited:\n{docker.logs(name)}"
            try:
                healthy = httpx.get(f"http://127.0.0.1:{health}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.5)
        assert healthy, f"no /healthz 200 in 120 s:\n{docker.logs(name)}"
        scrape = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5)
        assert scrape.status_code == 200 and "modelops_" in scrape.text

        manifest = load_yaml_docs(SAMPLE)[0]
        cluster.create(manifest, cluster_namespace)
        name_mv = manifest["metadata"]["name"]
        try:
            cluster.wait_for_object(
                "ModelVersion", name_mv, cluster_namespace,
                lambda mv: mv.get("status", {}).get("phase") == "Ready", timeout=600,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{docker.logs(name)}") from exc
        status = cluster.get("ModelVersion", name_mv, cluster_namespace)["status"]
        assert status["stage"] == "Production" and status["observedGeneration"] == 1
    finally:
        docker.run(["rm", "-f", name])
        if was_running:
            supervisor.start_operator()
