"""The operator under control-plane faults (the real control plane only): kube-apiserver and etcd
restarted under a running operator, and a ModelVersion deleted with its children collected by the
real garbage collector."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from mlflow.tracking import MlflowClient

from modelops.sandbox.testing import Sandbox, require_real_control_plane
from tests.e2e.conftest import OPERATOR_ENV, modelversion, phase

pytestmark = pytest.mark.e2e
TIMEOUT = 240.0


def _operator_survived_or_restarted(sb: Sandbox, since: datetime, within: float = 40.0) -> str:
    """After the restarts the operator either renewed its Lease (it kept acting) or exits (it could
    not renew for 10 s: modelops.leader) and is started again, as its Deployment would restart it.
    Waiting for one of the two avoids starting it while the old process is still on its way out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not sb.supervisor.state.alive("operator"):
            sb.start_operator(OPERATOR_ENV)
            return "restarted"
        lease = sb.find("leases", "modelops-operator", "modelops-system") or {}
        renewed = (lease.get("spec") or {}).get("renewTime")
        if renewed and datetime.fromisoformat(renewed.replace("Z", "+00:00")) > since:
            return "survived"
        time.sleep(0.5)
    raise AssertionError(f"the operator neither renewed its Lease nor exited within {within:.0f} s")


def test_apiserver_and_etcd_restarted_under_the_operator(
    operated: Sandbox, namespace: str, model_name: str, mlflow_client: MlflowClient
) -> None:
    require_real_control_plane()
    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("before", model, "1.0.0", stage="Staging"), ns)
    sb.wait_for_object("modelversions", "before", ns, phase("before", "Ready"), TIMEOUT)
    # etcd first (the apiserver reconnects), then the apiserver itself (every watch breaks).
    sb.supervisor.restart_component("etcd")
    sb.supervisor.restart_component("kube-apiserver")
    back = datetime.now(UTC)
    # An operator that could not renew its Lease for 10 s meanwhile exits (modelops.leader, as
    # client-go's leader election does), even with a handler blocked in a call; its Deployment
    # would restart it.
    _operator_survived_or_restarted(sb, back)
    # Watches resume: a version created after the restarts is trained, registered and served.
    sb.create(modelversion("after", model, "1.1.0", stage="Staging"), ns)
    sb.wait_for_object("modelversions", "after", ns, phase("after", "Ready"), TIMEOUT)
    sb.wait_for_object("modelversions", "before", ns, phase("before", "Superseded"), TIMEOUT)
    # Nothing lost or duplicated: one Job per version, one registry version each.
    assert len(sb.list("jobs", ns)) == 2
    assert len(mlflow_client.search_model_versions(f"name='{model}'")) == 2
    assert all(sb.supervisor.state.alive(name) for name in ("kube-controller-manager", "kube-scheduler"))


def test_deleted_modelversion_children_are_garbage_collected(
    operated: Sandbox, namespace: str, model_name: str
) -> None:
    require_real_control_plane()
    sb, ns, model = operated, namespace, model_name
    sb.create(modelversion("gone", model, "1.0.0", stage="Staging"), ns)
    sb.wait_for_object("modelversions", "gone", ns, phase("gone", "Ready"), TIMEOUT)
    assert sb.list("jobs", ns) and sb.find("deployments", f"{model}-staging", ns)
    sb.kubectl("delete", "-n", ns, "modelversion/gone", "--wait=true", "--timeout=120s", timeout=150)
    sb.wait_for(lambda: not sb.list("jobs", ns) and not sb.list("pods", ns)
                and sb.find("deployments", f"{model}-staging", ns) is None, timeout=120,
                message="the Job, the serving Deployment and their pods collected")
