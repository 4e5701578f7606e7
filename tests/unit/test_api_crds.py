"""The CRDs are generated from the API types, valid, and enforce what they promise."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from modelops.api import crdgen
from modelops.api.common import Condition
from modelops.api.modelmonitor import (
    ColumnDrift,
    DriftStatus,
    HealthStatus,
    LastRun,
    ModelMonitorSpec,
    ModelMonitorStatus,
    MonitorRecord,
    RetrainingStatus,
)
from modelops.api.modelversion import (
    ModelMetadata,
    ModelVersionSpec,
    ModelVersionStatus,
    PromotionRecord,
    PromotionStatus,
    RegistryStatus,
    ServingStatus,
    TrainingJobStatus,
)
from modelops.api.openapi import crd_schema, validate
from tests.conftest import ROOT, load_yaml_docs

CRDS = crdgen.build_crds()
MV_SCHEMA = crd_schema(CRDS["modelversions.yaml"])
MM_SCHEMA = crd_schema(CRDS["modelmonitors.yaml"])
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_crd_files_are_not_stale(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(ROOT / "crds"), "--check"]) == 0, "run `make crds`"
    # and the checker really detects a difference
    (tmp_path / "modelversions.yaml").write_text("stale")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


def test_crds_pass_kubernetes_validate_strict() -> None:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    files = sorted(str(p) for p in (ROOT / "crds").glob("*.yaml"))
    result = subprocess.run([str(exe), "--strict", *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files)


def _walk(node: object, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural(name: str) -> None:
    schema = crd_schema(CRDS[name])
    for path, node in _walk(schema):
        if path.endswith("/properties") or "x-kubernetes-validations" in path or path.endswith("/anyOf"):
            continue
        if "/anyOf[" in path:
            continue  # int-or-string alternatives
        assert "$ref" not in node and "title" not in node, path
        if "description" in node or "properties" in node or "items" in node:
            assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"untyped node at {path}"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_crd_shape() -> None:
    mv = CRDS["modelversions.yaml"]["spec"]
    assert mv["names"]["shortNames"] == ["mv"] and "ml" in mv["names"]["categories"]
    version = mv["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    for wanted in ("Model", "Version", "Stage", "Phase", "Metric", "Age"):
        assert wanted in columns
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "has(self.version) != has(self.versionBump)" in rules
    assert any("oldSelf.version" in r for r in rules)
    assert spec["properties"]["version"]["pattern"].startswith("^(0|[1-9]")
    assert spec["properties"]["stage"]["enum"] == ["Development", "Staging", "Production", "Archived"]
    mm = CRDS["modelmonitors.yaml"]["spec"]
    assert mm["names"]["shortNames"] == ["mm"]
    mm_columns = [c["name"] for c in mm["versions"][0]["additionalPrinterColumns"]]
    for wanted in ("Model", "Stage", "Schedule", "Drift", "Health", "Last Run"):
        assert wanted in mm_columns


def test_user_strings_and_lists_are_bounded() -> None:
    for name, crd in CRDS.items():
        spec = crd_schema(crd)["properties"]["spec"]
        for path, node in _walk(spec):
            if node.get("type") == "string" and "enum" not in node and "/anyOf[" not in path:
                assert "maxLength" in node or "pattern" in node, f"{name}{path} unbounded string"
            if node.get("type") == "array":
                assert "maxItems" in node, f"{name}{path} unbounded list"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_validate_against_crds(path: Path) -> None:
    for doc in load_yaml_docs(path):
        if doc.get("kind") == "ModelVersion":
            assert validate(MV_SCHEMA, doc) == []
            ModelVersionSpec.model_validate(doc["spec"])
        elif doc.get("kind") == "ModelMonitor":
            assert validate(MM_SCHEMA, doc) == []
            ModelMonitorSpec.model_validate(doc["spec"])


def _sample_mv() -> dict:
    return load_yaml_docs(ROOT / "manifests" / "samples" / "modelversion-1.0.0.yaml")[0]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.update(version="1.0"), "spec.version"),
        (lambda s: s.update(stage="Prod"), "spec.stage"),
        (lambda s: s["training"].update(testSize=1.5), "spec.training.testSize"),
        (lambda s: s["training"].update(backoffLimit=-1), "spec.training.backoffLimit"),
        (lambda s: s.update(model="Bad_Name"), "spec.model"),
        (lambda s: s["training"].pop("data"), "spec.training.data"),
        (lambda s: s["training"].update(estimatr="x"), "spec.training.estimatr"),
        (lambda s: s.update(unknownField=1), "spec.unknownField"),
        (lambda s: s["training"]["resources"]["requests"].update(cpu="lots"), "spec.training.resources.requests.cpu"),
    ],
)
def test_invalid_modelversion_is_rejected_naming_the_field(mutate, field: str) -> None:
    obj = _sample_mv()
    mutate(obj["spec"])
    errors = validate(MV_SCHEMA, obj)
    assert errors, "expected a validation error"
    assert any(e.field == field for e in errors), [str(e) for e in errors]


def test_quantities_accept_integers() -> None:
    obj = _sample_mv()
    obj["spec"]["training"]["resources"]["requests"]["cpu"] = 2
    assert validate(MV_SCHEMA, obj) == []
    spec = ModelVersionSpec.model_validate(obj["spec"])
    assert spec.training.resources and spec.training.resources.requests
    assert spec.training.resources.requests.cpu == "2"


def test_invalid_monitor_is_rejected() -> None:
    obj = load_yaml_docs(ROOT / "manifests" / "samples" / "modelmonitor.yaml")[0]
    bad = copy.deepcopy(obj)
    bad["spec"]["onDrift"] = "Page"
    assert any(e.field == "spec.onDrift" for e in validate(MM_SCHEMA, bad))
    bad = copy.deepcopy(obj)
    bad["spec"]["schedule"] = "every hour"
    assert any(e.field == "spec.schedule" for e in validate(MM_SCHEMA, bad))
    bad = copy.deepcopy(obj)
    bad["spec"]["drift"]["driftShare"] = 0
    assert any(e.field == "spec.drift.driftShare" for e in validate(MM_SCHEMA, bad))


def _condition() -> Condition:
    return Condition(
        type="Ready", status="True", reason="Serving", message="ok", last_transition_time=T0, observed_generation=3
    )


def test_full_modelversion_status_validates() -> None:
    status = ModelVersionStatus(
        observed_generation=3,
        phase="Ready",
        conditions=[_condition()],
        version="1.2.0",
        parent_version="1.1.0",
        registry=RegistryStatus(model="m", version="4", run_id="abc", model_uri="models:/m/4", experiment="e"),
        metrics={"accuracy": 0.95, "f1_macro": 0.94},
        metric_summary="accuracy=0.9500",
        model=ModelMetadata(
            framework_version="1.5",
            algorithm="RandomForestClassifier",
            task="classification",
            size_bytes=10,
            training_rows=400,
            features=["a"],
            classes=["0", "1"],
            dataset_hash="x",
        ),
        stage="Production",
        promotion=PromotionStatus(
            decision="Promoted",
            stage="Production",
            reason="r",
            metric="accuracy",
            value=0.95,
            compared_to="1.1.0",
            compared_value=0.93,
            time=T0,
        ),
        promotion_history=[
            PromotionRecord(
                version="1.2.0", stage="Production", decision="Promoted", metrics={"accuracy": 0.95}, time=T0
            )
        ],
        serving=ServingStatus(
            deployment="m-production",
            service="m-production",
            url="http://x",
            replicas=1,
            ready_replicas=1,
            served_version="1.2.0",
        ),
        training_job=TrainingJobStatus(name="j", start_time=T0, completion_time=T0, failed_pods=0),
    )
    wire = status.to_wire()
    assert validate(MV_SCHEMA["properties"]["status"], wire, prefix="status") == []
    assert ModelVersionStatus.model_validate(wire) == status


def test_full_modelmonitor_status_validates() -> None:
    status = ModelMonitorStatus(
        observed_generation=1,
        conditions=[_condition()],
        cron_job="c",
        model_version="1.0.0",
        last_run=LastRun(run_id="r", time=T0, result="Completed", model_version="1.0.0", current_rows=100),
        drift=DriftStatus(
            detected=True,
            share=0.5,
            drifted_columns=["a"],
            columns=[ColumnDrift(name="a", stattest="ks", score=0.01, threshold=0.05, drifted=True)],
            ignored_columns=["z"],
            report_uri="mlflow-artifacts:/x",
        ),
        health=HealthStatus(
            status="healthy",
            issues=[],
            predictions=10,
            latency_p50_ms=1.0,
            latency_p95_ms=2.0,
            error_rate=0.0,
            accuracy=0.9,
            trend="stable",
        ),
        history=[MonitorRecord(run_id="r", time=T0, result="Completed", drift_detected=True, drift_share=0.5)],
        retraining=RetrainingStatus(day="2026-01-02", count=1, last_model_version="x", last_run_id="r"),
    )
    wire = status.to_wire()
    assert validate(MM_SCHEMA["properties"]["status"], wire, prefix="status") == []


def test_status_with_unknown_field_is_caught() -> None:
    errors = validate(MV_SCHEMA["properties"]["status"], {"phase": "Ready", "bogus": 1}, prefix="status")
    assert [e.field for e in errors] == ["status.bogus"]


def test_generated_yaml_has_header_and_roundtrips() -> None:
    text = (ROOT / "crds" / "modelversions.yaml").read_text()
    assert text.startswith("# Generated by `make crds`")
    assert yaml.safe_load(text) == CRDS["modelversions.yaml"]


def test_api_reference_is_not_stale() -> None:
    from modelops.api import docgen

    assert docgen.main(["--out", str(ROOT / "docs" / "api.md"), "--check"]) == 0, "run `make crds`"
    text = (ROOT / "docs" / "api.md").read_text()
    assert "`spec.training.testSize`" in text and "`status.drift.share`" in text


def test_the_api_reference_gives_every_pattern_and_what_each_column_shows() -> None:
    """docs/api.md omitted patterns of 60 characters or more, spec.version's semver pattern among them."""
    from modelops.api import docgen
    from modelops.api.common import SEMVER_PATTERN

    text = docgen.render()
    patterns: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    crds = crdgen.build_crds()
    walk([crd_schema(crd) for crd in crds.values()])
    assert SEMVER_PATTERN in patterns
    assert [p for p in patterns if f"`{p}`" not in text] == []
    for crd in crds.values():
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            assert f"{column['name']} (`{column['jsonPath']}`" in text, column


@pytest.mark.parametrize(
    ("metric", "min_value", "refused"),
    [
        ("accuracy", 5.0, "at least 0 and at most 1"),  # a percentage where a fraction is meant
        ("accuracy", 0.9, None),
        ("accuracy", 1.0, None),
        ("f1_macro", -0.1, "at least 0 and at most 1"),
        ("roc_auc", 1.01, "at least 0 and at most 1"),
        ("r2", -2.0, None),  # R² is unbounded below
        ("r2", 1.5, "at most 1"),
        ("rmse", -1.0, "at least 0"),
        ("rmse", 120.0, None),
        ("my_metric", 50.0, None),  # a metric of unknown range is not judged
    ],
)
def test_a_gate_outside_its_metrics_range_is_refused_at_admission(
    metric: str, min_value: float, refused: str | None
) -> None:
    """Both the CRD's CEL rule (as the API server evaluates it, defaults applied) and the API type:
    the same verdict, naming the metric and its range."""
    from pydantic import ValidationError

    from modelops.api.modelversion import PromotionSpec
    from modelops.sandbox.emulator.cel import CelValidator

    obj = _sample_mv()
    obj["spec"]["promotion"] = {"metric": metric, "minValue": min_value}
    errors = CelValidator().validate(MV_SCHEMA["properties"]["spec"], obj["spec"], prefix="spec")
    if refused is None:
        assert errors == []
        PromotionSpec.model_validate(obj["spec"]["promotion"])
        return
    [error] = errors
    assert error.field == "spec.promotion.minValue"
    assert f"minValue of {metric} must be {refused}" in error.message
    with pytest.raises(ValidationError, match=f"minValue of {metric} must be {refused}, got {min_value:g}"):
        PromotionSpec.model_validate(obj["spec"]["promotion"])


def test_rollout_progress_is_derived_when_written_and_ignored_when_read() -> None:
    """``status.rollout.progress`` (the Step column, 1-based as the reasons say "step 2/3") follows
    ``step`` whenever the status is written, and a stored one never makes equal states differ."""
    from modelops.api.modelversion import RolloutStatus

    rollout = RolloutStatus(phase="Shadow", stage="Production", spec_hash="h", steps=3)
    status = ModelVersionStatus(version="1.1.0", rollout=rollout)
    assert status.to_wire()["rollout"]["progress"] == "1/3"
    rollout.step = 1  # the next step, as the operator moves it
    wire = status.to_wire()
    assert wire["rollout"]["progress"] == "2/3"
    assert validate(MV_SCHEMA["properties"]["status"], wire, prefix="status") == []
    assert ModelVersionStatus.model_validate(wire) == status
    stale = {**wire, "rollout": {**wire["rollout"], "progress": "1/3"}}
    assert ModelVersionStatus.model_validate(stale) == status  # read as nothing, written afresh
    rollout.step = 3  # decided after the last step: the index is past it, the column is not
    assert status.to_wire()["rollout"]["progress"] == "3/3"
    assert "progress" not in RolloutStatus(phase="Promoted", stage="Production", spec_hash="h").to_wire()
    columns = {c["name"]: c for c in CRDS["modelversions.yaml"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Step"]["jsonPath"] == ".status.rollout.progress"
