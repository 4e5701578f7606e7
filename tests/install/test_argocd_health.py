"""Argo CD health checks (Lua, run with Lua 5.1 like Argo CD's gopher-lua) and the GitOps example."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops.api.common import set_condition
from modelops.api.crdgen import build_crds
from modelops.api.modelmonitor import ModelMonitorStatus
from modelops.api.modelversion import ModelVersionStatus
from modelops.api.openapi import crd_schema, validate
from tests.install.helpers import ROOT

lupa = pytest.importorskip("lupa.lua51", reason="lupa (Lua 5.1) is needed to run the Argo CD health checks")

GITOPS = ROOT / "manifests" / "gitops"
HEALTH = {
    "ModelVersion": GITOPS / "health" / "modelversion.lua",
    "ModelMonitor": GITOPS / "health" / "modelmonitor.lua",
}
ARGOCD_KEY = "resource.customizations.health.ml.smarthr360.io_{kind}"


def _lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_lua(runtime, v) for v in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health script the way Argo CD does: a chunk with the object in the global ``obj``."""
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _lua(runtime, obj)
    result = runtime.execute(HEALTH[kind].read_text())
    status, message = result["status"], result["message"]
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    assert isinstance(message, str)
    return status, message


def _obj(status: Any, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "x", "generation": generation}}
    if status is not None:
        obj["status"] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return obj


def mv_status(phase: str | None, conditions: list[tuple[str, str, str]], generation: int = 1) -> Any:
    status = ModelVersionStatus(phase=phase, observed_generation=generation)
    for ctype, cstatus, reason in conditions:
        set_condition(status.conditions, ctype, cstatus, reason, f"{ctype} {reason}", generation)  # type: ignore[arg-type]
    return status


MV_CASES = [
    # (phase, conditions, expected)
    (None, [], "Progressing"),
    ("Training", [("Trained", "Unknown", "Training"), ("Ready", "False", "Training")], "Progressing"),
    ("Registering", [("Trained", "True", "TrainingSucceeded"), ("Ready", "False", "Registering")], "Progressing"),
    ("Failed", [("Trained", "False", "TrainingFailed"), ("Ready", "False", "TrainingFailed")], "Degraded"),
    ("Failed", [("Ready", "False", "InvalidSpec")], "Degraded"),
    ("Failed", [("Registered", "False", "VersionConflict"), ("Ready", "False", "VersionConflict")], "Degraded"),
    ("Registered", [("Promoted", "False", "GateFailed"), ("Ready", "False", "GateFailed")], "Degraded"),
    (
        "Registered",
        [("Promoted", "False", "ManualApprovalRequired"), ("Ready", "False", "ManualApprovalRequired")],
        "Suspended",
    ),
    ("Registered", [("Promoted", "False", "Pending"), ("Ready", "False", "Pending")], "Progressing"),
    ("Registered", [("Registered", "True", "Registered"), ("Ready", "False", "Registered")], "Healthy"),
    ("Promoted", [("Serving", "False", "RollingOut"), ("Ready", "False", "RollingOut")], "Progressing"),
    (
        "Promoted",
        [("Serving", "False", "ProgressDeadlineExceeded"), ("Ready", "False", "ProgressDeadlineExceeded")],
        "Degraded",
    ),
    ("Ready", [("Serving", "True", "Available"), ("Ready", "True", "Serving")], "Healthy"),
    # serving.replicas: 0 is a state reached, not a rollout that never ends
    ("Promoted", [("Serving", "False", "ScaledToZero"), ("Ready", "False", "ScaledToZero")], "Healthy"),
    ("Superseded", [("Promoted", "False", "Superseded"), ("Ready", "False", "Superseded")], "Healthy"),
    ("Archived", [("Ready", "False", "Archived")], "Healthy"),
    ("Ready", [("Registered", "True", "ImmutableVersion"), ("Ready", "True", "Serving")], "Degraded"),
    # progressive delivery (docs/rollout.md): steps in progress, paused on a failed bound, aborted
    ("RollingOut", [("Rollout", "Unknown", "Progressing"), ("Ready", "False", "RollingOut")], "Progressing"),
    ("RolloutPaused", [("Rollout", "False", "Paused"), ("Ready", "False", "RolloutPaused")], "Suspended"),
    ("RolloutAborted", [("Rollout", "False", "Aborted"), ("Ready", "False", "RolloutAborted")], "Degraded"),
]


@pytest.mark.parametrize(("phase", "conditions", "expected"), MV_CASES)
def test_modelversion_health(phase: str | None, conditions: list[tuple[str, str, str]], expected: str) -> None:
    status = mv_status(phase, conditions) if phase or conditions else None
    got, message = health("ModelVersion", _obj(status))
    assert got == expected, message
    if conditions:
        assert message


def test_modelversion_waits_for_a_new_generation() -> None:
    ready = mv_status("Ready", [("Ready", "True", "Serving")], generation=1)
    assert health("ModelVersion", _obj(ready, generation=2))[0] == "Progressing"
    assert health("ModelVersion", _obj(ready, generation=1))[0] == "Healthy"


def mm_status(conditions: list[tuple[str, str, str]]) -> Any:
    status = ModelMonitorStatus(observed_generation=1)
    for ctype, cstatus, reason in conditions:
        set_condition(status.conditions, ctype, cstatus, reason, f"{ctype} {reason}", 1)  # type: ignore[arg-type]
    return status


MM_CASES = [
    ([], "Progressing"),
    ([("Ready", "False", "WaitingForModel")], "Progressing"),
    ([("Ready", "False", "InvalidSpec")], "Degraded"),
    ([("Ready", "False", "RunFailed")], "Degraded"),
    ([("Ready", "False", "JobFailed")], "Degraded"),  # the drift Job failed before writing a run
    (
        [("DriftDetected", "Unknown", "NoRunYet"), ("Healthy", "Unknown", "NoRunYet"), ("Ready", "True", "Monitoring")],
        "Healthy",
    ),
    (
        [("DriftDetected", "False", "NoDrift"), ("Healthy", "True", "Healthy"), ("Ready", "True", "Monitoring")],
        "Healthy",
    ),
    (
        [("DriftDetected", "True", "DriftDetected"), ("Healthy", "True", "Healthy"), ("Ready", "True", "Monitoring")],
        "Degraded",
    ),
    (
        [("DriftDetected", "False", "NoDrift"), ("Healthy", "False", "Unhealthy"), ("Ready", "True", "Monitoring")],
        "Degraded",
    ),
    (
        [
            ("DataQuality", "False", "MissingValues"),
            ("DriftDetected", "False", "NoDrift"),
            ("Ready", "True", "Monitoring"),
        ],
        "Degraded",
    ),
]


@pytest.mark.parametrize(("conditions", "expected"), MM_CASES)
def test_modelmonitor_health(conditions: list[tuple[str, str, str]], expected: str) -> None:
    got, message = health("ModelMonitor", _obj(mm_status(conditions) if conditions else None))
    assert got == expected, message


def test_health_checks_cover_the_reasons_the_operator_uses() -> None:
    """Every 'failed' reason of the operator's ModelVersion summary, and every reason a model
    server refuses a model for, is Degraded in the Lua."""
    from modelops.contract import REFUSAL_REASONS
    from modelops.reconcile.model import FAILED_REASONS

    script = HEALTH["ModelVersion"].read_text()
    for reason in [*FAILED_REASONS, *REFUSAL_REASONS]:
        assert re.search(rf"\b{reason} = true", script), reason


def test_argocd_configmap_embeds_the_scripts() -> None:
    cm = yaml.safe_load((GITOPS / "argocd-health.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", "argocd-cm", "argocd")
    for kind, path in HEALTH.items():
        assert cm["data"][ARGOCD_KEY.format(kind=kind)] == path.read_text(), f"{path.name}: copy it into the ConfigMap"


def test_applications_point_at_paths_that_exist() -> None:
    for name in ("application-operator.yaml", "application-models.yaml"):
        app = yaml.safe_load((GITOPS / name).read_text())
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        source, dest = app["spec"]["source"], app["spec"]["destination"]
        assert (ROOT / source["path"]).is_dir(), source["path"]
        assert source["repoURL"] and source["targetRevision"] and dest["namespace"] and dest["server"]
        assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is True


def test_promotion_pull_request_is_one_line_and_valid(tmp_path: Path) -> None:
    doc = (GITOPS / "PROMOTION.md").read_text()
    diffs = re.findall(r"```diff\n(.*?)```", doc, re.S)
    promotion = diffs[0]
    changed = [line for line in promotion.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-  stage: Staging", "+  stage: Production"]
    target = re.search(r"^\+\+\+ b/(\S+)", promotion, re.M)
    assert target
    rel = target.group(1)
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text((ROOT / rel).read_text())
    (tmp_path / "promotion.diff").write_text(promotion)
    result = subprocess.run(
        ["git", "apply", "promotion.diff"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    promoted = yaml.safe_load((tmp_path / rel).read_text())
    assert promoted["spec"]["stage"] == "Production"
    schema = crd_schema(build_crds()["modelversions.yaml"])
    assert not validate(schema, promoted)
    rollback = [line for line in diffs[1].splitlines() if line[:1] in "+-"]
    assert rollback == ["-  stage: Production", "+  stage: Staging"]
