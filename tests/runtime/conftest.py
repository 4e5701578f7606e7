"""Fixtures of the model server tests: a sqlite MLflow store with real models, servers on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest

from .serve_support import (
    Running,
    Store,
    breast_cancer_model,
    config_for,
    mlflow_store,
    next_patch_release,
    patch_recorded_sklearn_version,
    penguins_model,
    register,
    serving,
    use_store,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    previous = mlflow.get_tracking_uri()
    root = tmp_path_factory.mktemp("serve-store")
    uri = mlflow_store(root)
    bc = register("breast-cancer", *breast_cancer_model())
    penguins = register("penguins", *penguins_model())
    old = register("old-sklearn", *breast_cancer_model())
    patch_recorded_sklearn_version(old, "0.24.2")
    other_patch = register("other-patch", *breast_cancer_model())
    patch_recorded_sklearn_version(other_patch, next_patch_release())
    yield Store(root, uri, bc, penguins, old, other_patch)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def bc(store: Store) -> Iterator[Running]:
    use_store(store)
    with serving(config_for(store.bc, log_flush_seconds=0.2), log_uri=str(store.root / "log")) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="module")
def penguins(store: Store) -> Iterator[Running]:
    use_store(store)
    with serving(config_for(store.penguins, stage="Staging"), log_uri=str(store.root / "log")) as running:
        running.wait_ready()
        yield running
