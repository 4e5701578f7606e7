"""Fast, isolated MLflow stores for tests: a sqlite file per test, copied from a migrated template.

Creating a new MLflow sqlite database runs its migrations (about 3 s here); copying an already
migrated file takes milliseconds. Import the fixtures into a test module::

    from tests.mlflow_testing import mlflow_store, mlflow_template  # noqa: F401

``logged_runs`` adds three runs that each logged a small model (for registry tests).

``mlflow_store`` points ``MLFLOW_TRACKING_URI`` (and ``mlflow.set_tracking_uri``) at the copy,
changes into ``tmp_path`` so nothing lands in the checkout, and resets MLflow's globals after.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient


def reset_mlflow_uris() -> None:
    """Forget the process-wide tracking/registry URIs set with ``mlflow.set_*_uri`` (back to env/defaults)."""
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None is the documented "unset"
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


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


#: Templates built in this session. Each test module that imports the fixtures gets its own
#: session-scoped fixture instance, so the files themselves are cached here to build them once.
_CACHE: dict[str, Any] = {}


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite database file (created once per session)."""
    if "template" not in _CACHE:
        path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
        MlflowClient(f"sqlite:///{path}").search_experiments()
        _CACHE["template"] = path
    return Path(_CACHE["template"])


@pytest.fixture
def mlflow_store(mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowStore]:
    """A private MLflow store for one test (see the module docstring)."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.chdir(tmp_path)
    # mlflow.set_*_uri also write these env vars; setting them through monkeypatch first makes
    # sure they are restored when the test ends.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowStore(uri=uri, root=tmp_path, client=MlflowClient(uri))
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        reset_mlflow_uris()


@dataclass
class LoggedRuns:
    """A store holding runs that logged small scikit-learn models (see :func:`logged_runs`)."""

    store: MlflowStore
    experiment: str
    run_ids: list[str]  # each logged a model named "model"; metrics accuracy 0.90, 0.93, 0.95
    empty_run_id: str  # a finished run without a model


@pytest.fixture(scope="session")
def logged_runs_template(
    mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str], str]:
    """A migrated database with three runs that logged an iris LogisticRegression (built once)."""
    if "logged" not in _CACHE:
        _CACHE["logged"] = _build_logged_runs(mlflow_template, tmp_path_factory)
    db, run_ids, empty = _CACHE["logged"]
    return db, list(run_ids), empty


def _build_logged_runs(mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modelops.contract import TAG_SEMVER, TAG_UID
    from modelops.registry.models import trusted_types_for

    root = tmp_path_factory.mktemp("mlflow-logged")
    db = root / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment("registry-tests", artifact_location=(root / "artifacts").as_uri())
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    trusted = trusted_types_for(model).trusted_types
    saved_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    run_ids = []
    try:
        for i, accuracy in enumerate((0.90, 0.93, 0.95)):
            with mlflow.start_run(experiment_id=exp, tags={TAG_UID: f"uid-{i}", TAG_SEMVER: f"1.{i}.0"}) as run:
                mlflow.log_metric("accuracy", accuracy)
                mlflow.log_params({"max_iter": 300, "train.target": "target"})
                mlflow.sklearn.log_model(
                    model, name="model", pip_requirements=["scikit-learn"], skops_trusted_types=trusted
                )
                run_ids.append(run.info.run_id)
        with mlflow.start_run(experiment_id=exp, tags={TAG_UID: "uid-empty"}) as run:
            empty = run.info.run_id
    finally:
        reset_mlflow_uris()  # also unsets the env var set_tracking_uri had set
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
    return db, run_ids, empty


@pytest.fixture
def logged_runs(logged_runs_template: tuple[Path, list[str], str], mlflow_store: MlflowStore) -> LoggedRuns:
    """The test's store, replaced by a copy of :func:`logged_runs_template` (artifacts are shared, read-only)."""
    db, run_ids, empty = logged_runs_template
    shutil.copyfile(db, mlflow_store.root / "mlflow.db")
    return LoggedRuns(mlflow_store, "registry-tests", run_ids, empty)
