"""The document's versioning API (create_model_version, ModelVersionManager) on the MLflow registry."""

from __future__ import annotations

import pydantic
import pytest

from modelops.contract import TAG_NAMESPACE, TAG_SEMVER, TAG_STAGE, TrainingResult
from modelops.registry import operations as ops
from modelops.registry.versioning import ModelVersionManager, create_model_version
from tests.mlflow_testing import (  # noqa: F401
    LoggedRuns,
    logged_runs,
    logged_runs_template,
    mlflow_store,
    mlflow_template,
)


def test_create_model_version_fields() -> None:
    version = create_model_version(
        version_string="1.0.0",
        metrics={"accuracy": 0.92, "precision": 0.91, "recall": 0.90, "f1_score": 0.905},
        model_path="ml/models/model_v1.0.0.pkl",
        framework="scikit-learn",
        algorithm="RandomForestClassifier",
        hyperparameters={"n_estimators": 100, "max_depth": 10, "random_state": 42},
        stage="Production",
    )
    assert version.model_id == "model_1.0.0"
    assert str(version) == "1.0.0"
    fields = set(version.model_dump())
    assert {
        "model_id",
        "version_string",
        "framework",
        "algorithm",
        "model_path",
        "model_size_mb",
        "training_dataset_size",
        "training_features",
        "target_classes",
        "hyperparameters",
        "metrics",
        "created_at",
        "stage",
        "parent_version",
        "mlflow_run_id",
    } <= fields
    assert create_model_version("1.0.0", stage="staging").stage == "Staging"
    with pytest.raises(pydantic.ValidationError):
        create_model_version("1.0")
    with pytest.raises(pydantic.ValidationError):
        create_model_version("1.0.0", stage="Prod")


def test_manager_round_trip(logged_runs: LoggedRuns) -> None:  # noqa: F811
    client = logged_runs.store.client
    manager = ModelVersionManager("future-skills-model", client=client)
    assert manager.get_latest_version() is None
    assert manager.get_production_version() is None
    assert manager.auto_version("minor") == "0.1.0"

    v1 = create_model_version(
        "1.0.0",
        metrics={"accuracy": 0.90},
        algorithm="LogisticRegression",
        hyperparameters={"max_iter": 300},
        training_features=["a", "b"],
        target_classes=["LOW", "HIGH"],
        model_size_mb=1.5,
        training_dataset_size=120,
        mlflow_run_id=logged_runs.run_ids[0],
        stage="Production",
    )
    registered = manager.register_version(v1)
    assert registered.registry_version == "1"
    assert manager.register_version(v1).registry_version == "1"  # idempotent
    assert len(ops.list_versions(client, "future-skills-model")) == 1

    prod = manager.get_production_version()
    assert prod is not None
    assert prod.version_string == "1.0.0" and prod.stage == "Production"
    assert prod.metrics == {"accuracy": 0.90}
    assert prod.hyperparameters == {"max_iter": 300}
    assert prod.training_features == ["a", "b"] and prod.target_classes == ["LOW", "HIGH"]
    assert prod.model_size_mb == pytest.approx(1.5) and prod.training_dataset_size == 120
    assert prod.algorithm == "LogisticRegression" and prod.mlflow_run_id == logged_runs.run_ids[0]
    assert prod.created_at == v1.created_at

    # A better candidate: registered in Staging, then judged against Production.
    v2 = create_model_version(
        "1.1.0",
        metrics={"accuracy": 0.93},
        mlflow_run_id=logged_runs.run_ids[1],
        stage="Staging",
        parent_version="1.0.0",
    )
    manager.register_version(v2)
    latest = manager.get_latest_version()
    assert latest is not None and latest.version_string == "1.1.0" and latest.parent_version == "1.0.0"
    assert manager.get_production_version().version_string == "1.0.0"  # type: ignore[union-attr]
    ok, reason = manager.should_promote(v2, metric_name="accuracy", improvement_threshold=0.01)
    assert ok, reason
    assert "0.93 vs 0.9 (incumbent 1.0.0)" in reason
    ok, reason = manager.should_promote(v2, prod, improvement_threshold=0.05)
    assert not ok and "below the required 0.05" in reason
    ok, reason = manager.should_promote(v1)
    assert not ok and "already the current version" in reason

    # The same semantic version from another run is a conflict.
    with pytest.raises(ValueError, match="already registry version 1"):
        manager.register_version(create_model_version("1.0.0", mlflow_run_id=logged_runs.run_ids[2]))
    with pytest.raises(ValueError, match="needs mlflow_run_id"):
        manager.register_version(create_model_version("9.0.0", model_path="ml/models/model.pkl"))

    assert manager.auto_version("minor") == "1.2.0"
    assert manager.auto_version("patch") == "1.1.1"
    assert manager.auto_version("major") == "2.0.0"
    assert [v.version_string for v in manager.list_versions()] == ["1.0.0", "1.1.0"]
    assert manager.get_version("1.1.0").stage == "Staging"  # type: ignore[union-attr]


def test_metadata_of_an_operator_registered_version(logged_runs: LoggedRuns) -> None:  # noqa: F811
    """A version registered by the operator (semver tag only) is read with the run's metrics and tags."""
    client = logged_runs.store.client
    run = client.get_run(logged_runs.run_ids[2])
    client.set_tag(run.info.run_id, "model.features", '["sepal length (cm)"]')  # as TrainingResult.to_tags writes it
    for key, value in (
        TrainingResult(algorithm="LogisticRegression", task="classification", training_rows=120).to_tags().items()
    ):
        client.set_tag(run.info.run_id, key, value)
    ops.ensure_registered_model(client, "iris", "team-a")
    ops.register_run_model(
        client, "iris", client.get_run(run.info.run_id), {TAG_SEMVER: "2.0.0", TAG_NAMESPACE: "team-a"}
    )
    ops.transition_stage(client, "iris", "1", "Staging")
    manager = ModelVersionManager("iris", client=client)
    version = manager.get_version("2.0.0")
    assert version is not None
    assert version.metrics == {"accuracy": 0.95}
    assert version.hyperparameters == {"max_iter": 300}  # train.* params are the runtime's, not hyperparameters
    assert version.algorithm == "LogisticRegression" and version.training_dataset_size == 120
    assert version.training_features == ["sepal length (cm)"]
    assert version.stage == "Staging" and client.get_model_version("iris", "1").tags[TAG_STAGE] == "Staging"
    assert version.model_path is not None and version.model_path.startswith("models:/m-")
