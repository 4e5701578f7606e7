"""Shared test fixtures and paths."""

from __future__ import annotations

import shutil
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


#: MLflow's default local stores, created in the working directory by anything that runs MLflow
#: without a tracking URI (and, when that directory is the checkout, left in the repository).
MLFLOW_DEFAULT_STORES = ("mlflow.db", "mlruns")


#: Stores already there when the session started are someone's data: neither blamed nor removed.
_STORES_BEFORE = {name for name in MLFLOW_DEFAULT_STORES if (ROOT / name).exists()}


@pytest.fixture(autouse=True)
def _no_mlflow_store_in_the_checkout() -> Iterator[None]:
    """Fail the test that leaves MLflow's default store in the repository root (and remove it).

    Checked after the test and before it, for what its wider-scoped fixtures (set up first) wrote.
    """

    def created() -> list[str]:
        found = [n for n in MLFLOW_DEFAULT_STORES if n not in _STORES_BEFORE and (ROOT / n).exists()]
        for name in found:
            path = ROOT / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return found

    at_setup = created()
    assert not at_setup, f"the fixtures of this test wrote MLflow's default store {at_setup} into the checkout"
    yield
    after = created()
    assert not after, f"this test wrote MLflow's default store {after} into the checkout: give it a tracking URI"
