"""Node faults on the real control plane: the node controller, not the sandbox, marks what happened."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.sandbox.testing import Sandbox, python_container

pytestmark = pytest.mark.e2e


def _ready(obj: dict[str, Any]) -> str | None:
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


def _unreachable(node: dict[str, Any]) -> bool:
    return "node.kubernetes.io/unreachable" in {t["key"] for t in node["spec"].get("taints") or []}


def test_node_that_stops_renewing_its_lease_is_marked_then_recovers(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sleeper"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleeper"}},
                          "template": {"metadata": {"labels": {"app": "sleeper"}},
                                       "spec": {"containers": [python_container("import time; time.sleep(3600)")]}}}},
                ns)
    real.wait_for_object("deployments", "sleeper", ns, lambda d: (d.get("status") or {}).get("readyReplicas") == 1)
    real.supervisor.stop_component("kubelet", grace=5.0)
    try:
        # kube-controller-manager's node lifecycle controller: no lease renewal for the grace period
        # (20 s here) → Ready=Unknown, the unreachable taint, and the node's pods marked not ready.
        # The taint comes in a later pass of the controller than the condition: wait for both.
        real.wait_for_object("nodes", "sandbox", None, lambda n: _ready(n) == "Unknown" and _unreachable(n),
                             timeout=90, message="node Ready=Unknown with the unreachable taint")
        pod = real.wait_for(lambda: next((p for p in real.list("pods", ns, {"app": "sleeper"})
                                          if _ready(p) == "False"), None), timeout=60, message="pod marked not ready")
        assert pod["status"]["phase"] == "Running"
    finally:
        real.supervisor.start_component("kubelet")
    real.wait_for_object("nodes", "sandbox", None, lambda n: _ready(n) == "True", timeout=60)
    real.wait_for_object("deployments", "sleeper", ns, lambda d: (d.get("status") or {}).get("readyReplicas") == 1,
                         timeout=90, message="the pod runs again on the recovered node")
