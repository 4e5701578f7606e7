"""Shared test fixtures and paths."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest_plugins = ["modelops.sandbox.testing"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory."""
    return ROOT


def load_yaml_docs(path: Path) -> list[dict]:
    """All non-empty YAML documents of a file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(autouse=True)
def _forget_mlflow_uris() -> Iterator[None]:
    """No test inherits a process-wide MLflow tracking/registry URI another test set.

    Without this, a test that relies on ``MLFLOW_TRACKING_URI`` could write into MLflow's
    default store (``./mlflow.db`` in the working directory) or another test's store.
    """
    yield
    if "mlflow" in sys.modules:  # never import MLflow just to reset it
        from tests.mlflow_testing import reset_mlflow_uris

        reset_mlflow_uris()
