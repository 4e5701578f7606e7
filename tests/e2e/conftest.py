"""End-to-end fixtures: the session cluster (the real control plane with the sandbox kubelet as a
node; the API emulator where it cannot run, with a loud notice) with MLflow and the operator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from modelops.api.common import API_VERSION
from modelops.sandbox.testing import Sandbox

#: Fast timers for tests; the same code paths as production defaults.
OPERATOR_ENV = {"MODELOPS_RECONCILE_INTERVAL_SECONDS": "3", "MODELOPS_MONITOR_POLL_SECONDS": "2"}


@pytest.fixture
def operated(cluster: Sandbox) -> Sandbox:
    """The session cluster with MLflow and the operator running: started once, and started again
    before a test when it has exited, as its Deployment's pod would be restarted (an operator that
    loses its Lease, e.g. while the apiserver restarts, exits by design: modelops.leader)."""
    cluster.start_operator(OPERATOR_ENV)
    return cluster


@pytest.fixture
def namespace(cluster_namespace: str) -> str:
    """End-to-end tests get their namespace in the session cluster."""
    return cluster_namespace


@pytest.fixture
def mlflow_client(operated: Sandbox) -> MlflowClient:
    """A client of the sandbox's MLflow (tracking and registry)."""
    return MlflowClient(tracking_uri=operated.mlflow_url, registry_uri=operated.mlflow_url)


@pytest.fixture
def model_name(namespace: str) -> str:
    """A registered model name unique to the test (a name belongs to one namespace)."""
    return f"m-{namespace}"[:40].rstrip("-")


def modelversion(
    name: str,
    model: str,
    version: str | None = None,
    stage: str = "Production",
    estimator: str = "sklearn.linear_model.LogisticRegression",
    hyperparameters: dict[str, Any] | None = None,
    uri: str = "sklearn://breast_cancer",
    target: str = "target",
    **spec: Any,
) -> dict[str, Any]:
    """A ModelVersion manifest on a built-in real dataset."""
    body: dict[str, Any] = {
        "model": model,
        "stage": stage,
        "training": {
            "data": {"uri": uri, "target": target},
            "estimator": estimator,
            "hyperparameters": hyperparameters or {"C": 0.05, "max_iter": 500},
            "testSize": 0.25,
            "randomState": 42,
        },
        "promotion": {"metric": "accuracy", "minValue": 0.9},
        **spec,
    }
    if version:
        body["version"] = version
    elif "versionBump" not in body:
        body["versionBump"] = "minor"
    return {"apiVersion": API_VERSION, "kind": "ModelVersion", "metadata": {"name": name}, "spec": body}


def phase(name: str, want: str | tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    """Predicate: the object's status.phase is ``want`` (or one of them)."""
    wanted = (want,) if isinstance(want, str) else want
    return lambda obj: (obj.get("status") or {}).get("phase") in wanted


@pytest.fixture
def events(operated: Sandbox, namespace: str) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """events(name) → Events in the test namespace whose involvedObject is ``name``."""

    def _events(name: str) -> list[dict[str, Any]]:
        return [e for e in operated.list("events", namespace) if (e.get("involvedObject") or {}).get("name") == name]

    yield _events
