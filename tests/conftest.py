"""Shared test fixtures and paths."""

from __future__ import annotations

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
