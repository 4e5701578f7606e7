"""Settings, the CLI and the runtime entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelops.cli import app
from modelops.contract import DriftJobConfig, Owner, ServeConfig, TrainingResult, TrainJobConfig
from modelops.settings import Settings


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOPS_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("MODELOPS_MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("MODELOPS_RECONCILE_INTERVAL_SECONDS", "5")
    settings = Settings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.mlflow_tracking_uri == "http://mlflow.example:5000"
    assert settings.reconcile_interval_seconds == 5.0
    assert settings.experiment_training == "model-training"
    assert settings.experiment_monitoring == "production-monitoring"


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOPS_RECONCILE_INTERVAL_SECONDS", "-1")
    with pytest.raises(ValueError, match="reconcile_interval_seconds"):
        Settings()


def test_cli_help_lists_subcommands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("sandbox", "crds", "version"):
        assert command in result.output


def test_console_script_help() -> None:
    exe = Path(sys.executable).with_name("modelops")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "sandbox" in result.stdout


def test_runtime_usage_error() -> None:
    exe = Path(sys.executable).with_name("modelops-runtime")
    result = subprocess.run([str(exe), "nonsense"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "usage" in result.stderr


def test_job_configs_roundtrip_through_env() -> None:
    owner = Owner(kind="ModelVersion", namespace="ns", name="mv", uid="u-1")
    train = TrainJobConfig(
        owner=owner,
        model="m",
        version="1.0.0",
        estimator="sklearn.svm.SVC",
        data={"uri": "sklearn://iris", "target": "target"},
    )
    assert TrainJobConfig.from_env(train.to_env()) == train
    serve = ServeConfig(model="m", registry_version="3", version="1.0.0", stage="Production")
    assert ServeConfig.from_env(serve.to_env()).model_uri == "models:/m/3"
    drift = DriftJobConfig(owner=owner.model_copy(update={"kind": "ModelMonitor"}), model="m", stage="Production")
    assert DriftJobConfig.from_env(drift.to_env()) == drift
    assert owner.tags()["modelops.uid"] == "u-1"


def test_training_result_tags_roundtrip() -> None:
    result = TrainingResult(
        algorithm="SVC",
        task="classification",
        size_bytes=12,
        training_rows=100,
        features=["a", "b"],
        classes=["x", "y"],
        framework_version="1.5.0",
    )
    assert TrainingResult.from_tags(result.to_tags()) == result


def test_served_stages_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOPS_SERVED_STAGES", "Prod,Foo")
    with pytest.raises(ValueError, match="served_stages"):
        Settings()
    monkeypatch.setenv("MODELOPS_SERVED_STAGES", "Production")
    assert Settings().served_stages == ["Production"]
