"""What only a real API server can check, with kubectl as users type it (the real control plane only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modelops.sandbox.controlplane import binaries
from modelops.sandbox.controlplane.install import OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT
from modelops.sandbox.testing import Sandbox
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"


def test_kubectl_version_is_the_pinned_release(real: Sandbox) -> None:
    out = json.loads(real.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == binaries.release()


def test_create_namespace_apply_server_side_explain_and_events(real: Sandbox) -> None:
    ns = "habits"
    real.kubectl("create", "namespace", ns)
    try:
        # -k: manifests/samples/ holds a kustomization.yaml, which `apply -f DIR` would send as an object.
        out = real.kubectl("apply", "--server-side", "-n", ns, "-k", str(ROOT / "manifests" / "samples")).stdout
        assert "modelversion.ml.smarthr360.io/breast-cancer-1-0-0 serverside-applied" in out
        mv = json.loads(real.kubectl("get", "mv", "breast-cancer-1-0-0", "-n", ns, "-o", "json").stdout)
        # Defaults from the CRD schema are applied by the real apiserver.
        assert mv["spec"]["promotion"]["metric"] == "accuracy"
        explain = real.kubectl("explain", "modelversion.spec.promotion").stdout
        assert "minImprovement" in explain and "FIELDS:" in explain
        # Printer columns of the CRD, as `kubectl get mv` shows them.
        header = real.kubectl("get", "mv", "-n", ns).stdout.splitlines()[0].split()
        assert header[:6] == ["NAME", "MODEL", "VERSION", "STAGE", "HOLDS", "PHASE"]
        real.kubectl("create", "configmap", "x", "-n", ns, "--from-literal=a=b")
        events = real.kubectl("get", "events", "-n", ns, "-o", "json").stdout
        assert json.loads(events)["kind"] == "List"
    finally:
        real.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"versionBump": "minor"}, "exactly one of spec.version and spec.versionBump"),  # with spec.version
        (  # a percentage where a fraction is meant: the messageExpression names the metric
            {"promotion": {"metric": "accuracy", "minValue": 5}},
            "spec.promotion.minValue: Invalid value: minValue of accuracy must be at least 0 and at most 1",
        ),
        ({"promotion": {"minValue": 90}}, "minValue of accuracy must be"),  # the metric's default applied first
    ],
)
def test_cel_rules_reject_invalid_specs_at_admission(
    real: Sandbox, cluster_namespace: str, spec: dict[str, object], message: str
) -> None:
    manifest = yaml.safe_load((ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml").read_text())
    manifest["spec"].update(spec)
    result = real.kubectl("apply", "-n", cluster_namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_operator_rbac_is_exactly_the_generated_rules(real: Sandbox) -> None:
    """`kubectl auth can-i --list` for the operator's ServiceAccount: every generated rule is granted,
    nothing broader (no wildcard, no Secrets)."""
    role = next(d for d in yaml.safe_load_all((ROOT / "manifests" / "base" / "rbac.yaml").read_text())
                if d and d["kind"] == "ClusterRole")
    listing = real.kubectl("auth", "can-i", "--list", f"--as={OPERATOR}", "-n", "default").stdout
    assert "*" not in [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    target = f"{resource}.{group}" if group else resource
                    allowed = real.kubectl("auth", "can-i", verb, target, f"--as={OPERATOR}", "-n", "ml",
                                           check=False).stdout.strip()
                    assert allowed == "yes", f"{verb} {target}"
    for verb, target in (("get", "secrets"), ("create", "pods"), ("delete", "namespaces"),
                         ("update", "customresourcedefinitions.apiextensions.k8s.io")):
        denied = real.kubectl("auth", "can-i", verb, target, f"--as={OPERATOR}", "-n", "ml", check=False)
        assert denied.stdout.strip() == "no", f"{verb} {target} should be denied"


def test_kubeconfig_of_the_operator_is_a_token_not_admin(real: Sandbox) -> None:
    path = Path(str(real.supervisor.state.operator_kubeconfig))
    config = yaml.safe_load(path.read_text())
    user = config["users"][0]["user"]
    assert set(user) == {"token"}
    who = real.kubectl("--kubeconfig", str(path), "auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["username"] == OPERATOR
