"""The operator benchmark's baseline: a bare kopf operator doing the same essential work as ours.

Two handlers, with nothing of ours in between:

- on create of a ModelVersion: create its training Job (the benchmark's training image, the same
  ``MODELOPS_JOB_CONFIG`` fields the image reads) and let kopf patch ``status.phase``;
- on an event of one of its Jobs that is Complete: find the run the Job wrote (one MLflow run search
  by the owner's uid tag; the model's name is a label of the Job), find its logged model (one
  search), create the model version (and the registered model the first time), then patch the
  CR's status ``Registered=True`` (one PATCH).

It runs with the same kopf settings as ours where they change the API traffic (Events posted only
for warnings, our annotation prefix), so the difference with :mod:`modelops` is the work our
handlers do (version resolution and registry checks, status conditions, the model-level flow), not
kopf's configuration.

Run by the benchmark as ``python -m kopf run --standalone --namespace NS benchmarks/baseline_operator.py``
with ``BENCH_KUBECONFIG`` set to a kubeconfig of the sandbox: the API emulator's (plain HTTP, no
authentication) or the real kube-apiserver's admin kubeconfig (HTTPS, client certificate), and
``BENCH_MLFLOW_URL`` to the sandbox's MLflow, ``BENCH_TRAIN_IMAGE`` to the benchmark's training
image. The same connection (server, CA, client certificate
or token) serves kopf's login and the handlers' requests.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import kopf

from modelops.contract import EXPERIMENT_TRAINING, TAG_UID
from modelops.sandbox.client import Connection
from modelops.sandbox.kubeconfig import read_connection

MANAGED_BY = "bench-baseline"
#: Attempts at registering a completed Job's model (MLflow's sqlite pool runs out under load: 400).
REGISTER_ATTEMPTS = 30
#: The Job's label naming the registered model (the benchmark's model names are valid label values).
MODEL_LABEL = "bench.modelops/model"
_state: dict[str, Any] = {}


def connection() -> Connection:
    """The sandbox's API server, from the kubeconfig in ``BENCH_KUBECONFIG`` (KeyError when unset)."""
    return read_connection(Path(os.environ["BENCH_KUBECONFIG"]))


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Connect to the sandbox's API server as the kubeconfig says (TLS and credentials when it has them)."""
    conn = connection()
    return kopf.ConnectionInfo(
        server=conn.url,
        ca_path=conn.ca,
        certificate_path=conn.cert,
        private_key_path=conn.key,
        token=conn.token,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Same posting and persistence settings as the modelops operator; print READY for the benchmark."""
    from mlflow import MlflowClient

    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ml.smarthr360.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ml.smarthr360.io", key="last-handled-configuration"
    )
    _state["http"] = httpx.AsyncClient(timeout=30, **connection().httpx_options())
    url = os.environ["BENCH_MLFLOW_URL"]
    _state["mlflow_url"] = url
    _state["mlflow"] = MlflowClient(url, registry_uri=url)
    _state["models"] = set()
    _state["registered"] = set()
    print("BASELINE READY", flush=True)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    """Close the HTTP client."""
    client = _state.pop("http", None)
    if client is not None:
        await client.aclose()


@kopf.on.create("ml.smarthr360.io", "v1alpha1", "modelversions")
async def create(**kwargs: Any) -> None:
    """Create the CR's training Job, then let kopf patch ``status.phase``."""
    name, namespace, uid = kwargs["name"], kwargs["namespace"], kwargs["uid"]
    body, spec, patch = kwargs["body"], kwargs["spec"], kwargs["patch"]
    config = {
        "owner": {"kind": body["kind"], "namespace": namespace, "name": name, "uid": uid},
        "model": spec["model"],
        "version": spec["version"],
        "data": dict(spec["training"]["data"]),
        "estimator": spec["training"]["estimator"],
        "experiment": EXPERIMENT_TRAINING,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-train",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, MODEL_LABEL: spec["model"]},
            "ownerReferences": [
                {
                    "apiVersion": body["apiVersion"],
                    "kind": body["kind"],
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 2,  # as ours (spec.training.backoffLimit's default)
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "train",
                            "image": os.environ["BENCH_TRAIN_IMAGE"],
                            "command": ["modelops-runtime", "train"],
                            "env": [
                                {"name": "MODELOPS_JOB_CONFIG", "value": json.dumps(config)},
                                {"name": "MLFLOW_TRACKING_URI", "value": _state["mlflow_url"]},
                            ],
                        }
                    ],
                }
            },
        },
    }
    response = await _state["http"].post(f"/apis/batch/v1/namespaces/{namespace}/jobs", json=job)
    if response.status_code not in (200, 201, 409):
        raise kopf.TemporaryError(f"creating the Job: {response.status_code} {response.text[:200]}", delay=1)
    patch.status["phase"] = "Training"


def _register(model: str, uid: str) -> str | None:
    """Blocking MLflow calls: the finished run of ``uid``, its logged model, a new model version."""
    from mlflow.exceptions import MlflowException

    client = _state["mlflow"]
    experiment = client.get_experiment_by_name(EXPERIMENT_TRAINING)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG_UID}` = '{uid}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"name = 'model' AND source_run_id = '{run.info.run_id}'",
    )[0]
    if model not in _state["models"]:
        try:
            client.create_registered_model(model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _state["models"].add(model)
    mv = client.create_model_version(
        name=model, source=f"models:/{logged.model_id}", run_id=run.info.run_id, model_id=logged.model_id
    )
    return str(mv.version)


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
async def job_event(body: kopf.Body, **_: Any) -> None:
    """A Job of ours completed: register its run's model and mark the CR Registered."""
    conditions = (body.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
        return
    owner = next((o for o in body["metadata"].get("ownerReferences") or [] if o.get("kind") == "ModelVersion"), None)
    if owner is None or owner["uid"] in _state["registered"]:
        return
    from mlflow.exceptions import MlflowException

    http, namespace = _state["http"], body["metadata"]["namespace"]
    for attempt in range(REGISTER_ATTEMPTS):  # kopf does not retry an event handler: a busy MLflow is retried here
        try:
            version = await asyncio.to_thread(_register, body["metadata"]["labels"][MODEL_LABEL], owner["uid"])
            break
        except MlflowException:
            if attempt == REGISTER_ATTEMPTS - 1:
                raise
            await asyncio.sleep(1)
    if version is None:
        return
    condition = {
        "type": "Registered",
        "status": "True",
        "reason": "Registered",
        "message": f"version {version}",
        "lastTransitionTime": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    response = await http.patch(
        f"/apis/ml.smarthr360.io/v1alpha1/namespaces/{namespace}/modelversions/{owner['name']}/status",
        json={"status": {"phase": "Registered", "conditions": [condition]}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    if response.status_code >= 400:
        raise kopf.TemporaryError(f"status patch: {response.status_code} {response.text[:200]}", delay=1)
    _state["registered"].add(owner["uid"])  # kopf runs one object's events one after the other
