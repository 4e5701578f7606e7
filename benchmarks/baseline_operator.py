"""The operator benchmark's baseline: a minimal kopf operator.

One on-create handler for ModelVersions that creates one Job (suspended, so the sandbox kubelet
runs nothing for it) and patches ``status.phase``. It runs with the same kopf settings as ours
where they change the API traffic (Events posted only for warnings, our annotation prefix), so
the difference with :mod:`modelops` is the work our handlers do, not kopf's configuration.

Run by the benchmark as ``python -m kopf run --standalone --namespace NS benchmarks/baseline_operator.py``
with ``BENCH_KUBECONFIG`` set to a kubeconfig of the sandbox: the API emulator's (plain HTTP, no
authentication) or the real kube-apiserver's admin kubeconfig (HTTPS, client certificate). The same
connection (server, CA, client certificate or token) serves kopf's login and the Job POSTs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import httpx
import kopf

from modelops.sandbox.client import Connection
from modelops.sandbox.kubeconfig import read_connection

_client: dict[str, httpx.AsyncClient] = {}


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
    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ml.smarthr360.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ml.smarthr360.io", key="last-handled-configuration"
    )
    _client["http"] = httpx.AsyncClient(timeout=30, **connection().httpx_options())
    print("BASELINE READY", flush=True)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    """Close the HTTP client."""
    client = _client.pop("http", None)
    if client is not None:
        await client.aclose()


@kopf.on.create("ml.smarthr360.io", "v1alpha1", "modelversions")
async def create(**kwargs: Any) -> None:
    """Create the CR's Job, then let kopf patch ``status.phase``."""
    name, namespace, uid = kwargs["name"], kwargs["namespace"], kwargs["uid"]
    body, patch = kwargs["body"], kwargs["patch"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-train",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "bench-baseline"},
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
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "bench.local/baseline:1", "command": ["true"]}],
                }
            },
        },
    }
    response = await _client["http"].post(f"/apis/batch/v1/namespaces/{namespace}/jobs", json=job)
    if response.status_code not in (200, 201, 409):
        raise kopf.TemporaryError(f"creating the Job: {response.status_code} {response.text[:200]}", delay=1)
    patch.status["phase"] = "Training"
