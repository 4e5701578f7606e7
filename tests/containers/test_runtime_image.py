"""The runtime image, run as the chart's pods run it: train the sample model against a real MLflow
server, serve it, and answer V2 and ``/invocations`` predictions that score the training run's
accuracy exactly; as uid 10001 with a read-only root file system and no capabilities."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from mlflow import MlflowClient

from modelops.api.modelversion import ModelVersionSpec
from modelops.builders import build_serving_deployment, build_training_job
from modelops.builders.common import ObjectRef
from modelops.builders.serving import ServedVersion
from modelops.contract import ENV_JOB_CONFIG, TAG_UID
from modelops.registry.operations import register_run_model
from modelops.sandbox import procs
from modelops.sandbox.testing import Sandbox
from modelops.settings import Settings
from modelops_runtime.train.data import load_builtin
from modelops_runtime.train.pipeline import split_dataset
from tests.conftest import ROOT, load_yaml_docs

from .conftest import RUNTIME_IMAGE, Docker
from .dockerrun import docker_run_args

SAMPLE = ROOT / "manifests/samples/modelversion-1.0.0.yaml"


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"])


def _wait_ready(url: str, docker: Docker, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker.run(["inspect", "--format", "{{.State.Running}}", name]).stdout.strip()
        assert state == "true", f"the server container exited:\n{docker.logs(name)}"
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"server not ready after {timeout:.0f} s:\n{docker.logs(name)}")


def test_runtime_image_trains_serves_and_scores_the_runs_accuracy(
    docker: Docker, container_name: Any, cluster: Sandbox
) -> None:
    raw = load_yaml_docs(SAMPLE)[0]
    spec = ModelVersionSpec.model_validate(raw["spec"])
    model = f"containers-{container_name('m').rsplit('-', 1)[-1]}"
    spec = spec.model_copy(update={"model": model})
    owner = ObjectRef("ml.smarthr360.io/v1alpha1", "ModelVersion", "smoke", "containers", f"uid-{model}")
    settings = Settings(mlflow_tracking_uri=cluster.mlflow_url, runtime_image=RUNTIME_IMAGE)

    # 1. Train: the Job's pod, in the image, as uid 10001 on a read-only root.
    job = build_training_job(owner, spec, "1.0.0", None, settings)
    train = container_name("train")
    done = docker.run(docker_run_args(_pod(job), "train", image=RUNTIME_IMAGE, name=train), timeout=900)
    assert done.returncode == 0, f"training exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    client = MlflowClient(cluster.mlflow_url)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.`{TAG_UID}` = 'uid-{model}'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    registered = register_run_model(client, model, run)  # what the operator does once the Job succeeded

    # 2. Serve: the Deployment's pod, on a free port of the host's loopback.
    port = procs.free_port()
    served = ServedVersion("containers", "1.0.0", str(registered.version), "smoke")
    deployment = build_serving_deployment(model, "Production", served, [owner], spec.serving, settings)
    pod = _pod(deployment)
    container = next(c for c in pod["containers"] if c["name"] == "server")
    config = json.loads(next(e["value"] for e in container["env"] if e["name"] == ENV_JOB_CONFIG))
    server = container_name("serve")
    args = docker_run_args(
        pod, "server", image=RUNTIME_IMAGE, name=server,
        env={ENV_JOB_CONFIG: json.dumps({**config, "port": port}), "MODELOPS_HOST": "127.0.0.1"},
        field_values={"metadata.name": server},
    )
    started = docker.run([args[0], "--detach", *args[1:]])
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, docker, server)

    # 3. Predict the training run's test split both ways; score it as the run did.
    frame = load_builtin("sklearn://breast_cancer")
    training = spec.training
    split = split_dataset(frame, training.data, "classification", training.test_size, training.random_state)
    x_test, y_test = split.x_test, split.y_test
    v2 = httpx.post(
        f"{url}/v2/models/{model}/infer",
        json={"inputs": [
            {"name": str(col), "datatype": "FP64", "shape": [len(x_test)], "data": x_test[col].astype(float).tolist()}
            for col in x_test.columns
        ]},
        timeout=30,
    )
    assert v2.status_code == 200, v2.text
    v2_predictions = v2.json()["outputs"][0]["data"]
    invocations = httpx.post(
        f"{url}/invocations",
        json={"dataframe_split": {"columns": [str(c) for c in x_test.columns], "data": x_test.values.tolist()}},
        timeout=30,
    )
    assert invocations.status_code == 200, invocations.text
    mlflow_predictions = invocations.json()["predictions"]
    assert v2_predictions == mlflow_predictions
    accuracy = sum(int(p) == int(y) for p, y in zip(v2_predictions, y_test.tolist(), strict=True)) / len(y_test)
    assert accuracy == run.data.metrics["accuracy"]

    # 4. What the chart's securityContext demands, seen from inside the running container.
    whoami = docker.run(["exec", server, "python", "-c",
                         "import os; print(os.getuid(), os.getgid()); open('/probe', 'w')"])
    assert whoami.stdout.split()[:2] == ["10001", "10001"]
    assert "Read-only file system" in whoami.stderr
    caps = docker.run(["exec", server, "grep", "CapEff", "/proc/self/status"]).stdout
    assert caps.split()[-1] == "0000000000000000"

    # 5. SIGTERM drains. In a pod the preStop sleep has taken the pod out of the Service before the
    # kubelet's SIGTERM, so no new connection arrives: the clients here stop starting requests just
    # before it. Every request already sent (large ones: predicted in a worker thread, several in
    # flight at the signal) is answered 200, and the server exits 0.
    body = {"dataframe_split": {"columns": [str(c) for c in x_test.columns], "data": x_test.values.tolist() * 20}}
    outcomes: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as session:
            while not stop.is_set():
                try:
                    outcomes.append(str(session.post(f"{url}/invocations", json=body).status_code))
                except httpx.HTTPError as exc:
                    outcomes.append(type(exc).__name__)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(3)
    stop.set()
    stopped = docker.run(["stop", "--time", "30", server])
    for thread in clients:
        thread.join()
    assert stopped.returncode == 0, stopped.stderr
    exit_code = docker.run(["inspect", "--format", "{{.State.ExitCode}}", server]).stdout.strip()
    assert exit_code == "0", docker.logs(server)
    assert len(outcomes) >= 4 and set(outcomes) == {"200"}, outcomes
