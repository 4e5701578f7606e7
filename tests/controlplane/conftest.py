"""Fixtures of the real-control-plane tier: these tests need etcd and the upstream Kubernetes
control plane (skipped with a loud notice where they cannot run; required in CI)."""

from __future__ import annotations

import pytest

from modelops.sandbox.testing import Sandbox, require_real_control_plane


@pytest.fixture
def real(request: pytest.FixtureRequest) -> Sandbox:
    """The session cluster, which must be the real control plane for these tests."""
    require_real_control_plane()
    box: Sandbox = request.getfixturevalue("cluster")
    assert box.supervisor.state.control_plane == "real"
    return box
