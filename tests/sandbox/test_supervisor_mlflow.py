"""MLflow in the sandbox: started lazily by the session fixture, reachable from pods."""

from __future__ import annotations

import httpx
import pytest

from modelops.sandbox.testing import Sandbox, python_container

CREATE_EXPERIMENT = """
import json, os, urllib.request
request = urllib.request.Request(
    os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/create",
    data=json.dumps({"name": os.environ["EXPERIMENT"]}).encode(),
    headers={"Content-Type": "application/json"},
)
print(urllib.request.urlopen(request, timeout=30).read().decode())
"""


@pytest.mark.e2e
def test_mlflow_starts_on_demand_and_pods_can_use_it(sandbox: Sandbox, namespace: str) -> None:
    url = sandbox.mlflow_url  # started on demand, within the supervisor's own 120 s bound (or it raises)
    assert sandbox.mlflow_url == url  # started once, shared by the session
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200

    experiment = f"sandbox-{namespace}"
    sandbox.create({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "mlflow-client"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            python_container(CREATE_EXPERIMENT, env=[{"name": "MLFLOW_TRACKING_URI", "value": url},
                                                     {"name": "EXPERIMENT", "value": experiment}])]}}},
    }, namespace)
    sandbox.wait_for_condition("jobs", "mlflow-client", namespace, "Complete", timeout=60)
    found = httpx.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment},
                      timeout=10).json()
    assert found["experiment"]["name"] == experiment
    # The tracking data lives under the sandbox's state dir.
    assert (sandbox.state_dir / "mlflow" / "mlflow.db").exists()
