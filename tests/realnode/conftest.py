"""Fixtures of the real-node tier: the real control plane with the upstream kubelet, containerd,
runc and the CNI bridge as its node. Root only; skipped with a loud notice where it cannot run,
required under MODELOPS_REQUIRE_REAL_NODE=1 (``.ci/run``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops.sandbox import realnode
from modelops.sandbox.realnode.images import busybox_image
from modelops.sandbox.testing import Sandbox, real_control_plane_missing, serve, skip_or_fail, start_test_sandbox

REQUIRE_ENV = "MODELOPS_REQUIRE_REAL_NODE"
#: The test image (a static busybox; imported into the node's containerd, never pulled).
BUSYBOX = "modelops.test/busybox:1"


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The real control plane with the real node ``modelops-node``, the busybox image loaded."""
    why = real_control_plane_missing() or realnode.missing()
    if why is None and not Path("/bin/busybox").is_file():
        why = "the test image needs /bin/busybox (Debian package busybox-static)"
    if why is not None:
        skip_or_fail(f"REAL NODE NOT TESTED: {why}", REQUIRE_ENV)
    state = tmp_path_factory.mktemp("realnode")
    archive = busybox_image(state / "busybox.tar", BUSYBOX)
    yield from serve(start_test_sandbox(state, control_plane="real", node="real", node_images=[archive]))
