"""Fast, isolated MLflow stores for tests: a sqlite file per test, copied from a migrated template.

Creating a new MLflow sqlite database runs its migrations (about 3 s here); copying an already
migrated file takes milliseconds. Import the fixtures into a test module::

    from tests.mlflow_testing import mlflow_store, mlflow_template  # noqa: F401

``mlflow_store`` points ``MLFLOW_TRACKING_URI`` (and ``mlflow.set_tracking_uri``) at the copy,
changes into ``tmp_path`` so nothing lands in the checkout, and resets MLflow's globals after.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient


@dataclass
class MlflowStore:
    """One test's MLflow store."""

    uri: str
    root: Path
    client: MlflowClient

    def experiment(self, name: str) -> str:
        """Create experiment ``name`` with its artifacts under ``root`` (or return its id)."""
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        return str(self.client.create_experiment(name, artifact_location=(self.root / "artifacts" / name).as_uri()))


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite database file (created once per session)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowStore]:
    """A private MLflow store for one test (see the module docstring)."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowStore(uri=uri, root=tmp_path, client=MlflowClient(uri))
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
