"""``modelops-runtime train`` through its console script, as the Job's container runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from modelops.api.modelversion import DataSpec
from modelops.contract import ENV_JOB_CONFIG, TAG_UID, Owner, TrainJobConfig
from tests.mlflow_testing import MlflowStore, mlflow_store, mlflow_template  # noqa: F401

SCRIPT = Path(sys.executable).with_name("modelops-runtime")


def test_console_script_trains_and_logs(mlflow_store: MlflowStore) -> None:  # noqa: F811
    experiment_id = mlflow_store.experiment("cli-training")
    config = TrainJobConfig(
        owner=Owner(kind="ModelVersion", namespace="ns", name="iris", uid="uid-cli"),
        model="iris",
        version="0.1.0",
        data=DataSpec(uri="sklearn://iris", target="target"),
        estimator="sklearn.linear_model.LogisticRegression",
        hyperparameters={"max_iter": 500},
        experiment="cli-training",
    )
    env = {**os.environ, ENV_JOB_CONFIG: config.to_env(), "MLFLOW_TRACKING_URI": mlflow_store.uri}
    proc = subprocess.run(
        [str(SCRIPT), "train"], env=env, cwd=mlflow_store.root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # library logs go to stdout; stderr is kept for the failure reason
    assert "trained iris 0.1.0" in proc.stdout
    runs = MlflowClient(mlflow_store.uri).search_runs([experiment_id], filter_string=f"tags.`{TAG_UID}` = 'uid-cli'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["accuracy"] > 0.9


def test_console_script_bad_input_exit_code() -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_JOB_CONFIG}
    proc = subprocess.run([str(SCRIPT), "train"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"training failed: {ENV_JOB_CONFIG} is not set\n"
