"""The chart installed on the real node with the images `make images` built: hack/node-e2e.sh's
scenario (shared with hack/kind-e2e.sh) on the session's real control plane and node. The sample
ModelVersion goes to Ready, a real pod answers a prediction through its Service, and the
ModelMonitor's drift CronJob runs a Job to completion."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from modelops import __version__
from modelops.sandbox import realnode
from modelops.sandbox.testing import Sandbox, skip_or_fail
from tests.conftest import ROOT

from .conftest import REQUIRE_ENV

pytestmark = pytest.mark.e2e

IMAGES = (f"modelops-operator:{__version__}", f"modelops-runtime:{__version__}")


def test_chart_on_the_real_node_takes_the_sample_to_ready_and_serves_it(node_cluster: Sandbox, tmp_path: Path) -> None:
    docker = shutil.which("docker")
    built = docker is not None and all(
        subprocess.run([docker, "image", "inspect", image], capture_output=True, check=False).returncode == 0
        for image in IMAGES
    )
    if not built or docker is None:
        skip_or_fail("CHART NOT INSTALLED: the images are not built (make images)", REQUIRE_ENV)
        return
    realnode.import_docker_images(node_cluster.state_dir, IMAGES)
    env = {
        **os.environ,
        "KUBECONFIG": str(node_cluster.kubeconfig),
        "USE_KUBECONFIG": "1",
        "STATE_DIR": str(tmp_path),
        "MODELS_NAMESPACE": "ml-chart-e2e",
        "TIMEOUT": "15m",
    }
    done = subprocess.run(["bash", str(ROOT / "hack" / "node-e2e.sh")], env=env, capture_output=True, text=True,
                          timeout=2400, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12000:]
    assert "==> node-e2e passed" in output
    prediction = next(line for line in output.splitlines() if line.startswith("prediction: "))
    assert '"predictions"' in prediction
    assert "job.batch/breast-cancer-production-drift-e2e condition met" in output
