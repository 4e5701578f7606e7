"""Fixtures for the container smoke tests: a Docker engine and the images `make images` built.

The tests run only as root with a Docker engine answering and both images present; elsewhere
they skip with a notice naming what is missing. ``MODELOPS_REQUIRE_CONTAINERS=1`` (set by
``.ci/run``, which starts dockerd and runs ``make images`` first) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from modelops import __version__

RUNTIME_IMAGE = f"modelops-runtime:{__version__}"
OPERATOR_IMAGE = f"modelops-operator:{__version__}"
REQUIRE_ENV = "MODELOPS_REQUIRE_CONTAINERS"


@dataclass
class Docker:
    """The Docker client, and the containers a test started (removed after it)."""

    binary: str
    started: list[str]

    def run(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``docker <args>``, captured; the container named by ``--name`` is removed after the test."""
        if args and args[0] == "run" and "--name" in args:
            self.started.append(args[args.index("--name") + 1])
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout, check=False)

    def logs(self, name: str) -> str:
        """The container's stdout and stderr, for failure messages."""
        done = subprocess.run([self.binary, "logs", "--tail", "80", name], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    binary = shutil.which("docker")
    if binary is None:
        return "no docker client on PATH (apt-get install docker.io)"
    if subprocess.run([binary, "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers (start dockerd)"
    for image in (RUNTIME_IMAGE, OPERATOR_IMAGE):
        if subprocess.run([binary, "image", "inspect", image], capture_output=True, check=False).returncode != 0:
            return f"image {image} is not built (make images)"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The docker client's path, once root, an engine and both images are there (else skip/fail)."""
    missing = _missing()
    if missing:
        message = f"container smoke tests need root, a Docker engine and the images: {missing}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1)")
        pytest.skip(message)
    return str(shutil.which("docker"))


@pytest.fixture
def docker(docker_engine: str) -> Iterator[Docker]:
    """A :class:`Docker` whose containers are force-removed when the test ends."""
    handle = Docker(docker_engine, [])
    yield handle
    for name in handle.started:
        subprocess.run([docker_engine, "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def container_name() -> Callable[[str], str]:
    """Unique container names: ``container_name("train")`` -> ``modelops-test-train-1a2b3c4d``."""
    return lambda role: f"modelops-test-{role}-{uuid.uuid4().hex[:8]}"
