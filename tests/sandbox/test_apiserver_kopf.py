"""A real ``kopf run`` operator against the API emulator: list+watch, status patches, finalizers, events."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops.sandbox.apiserver import ApiServerProcess, spawn
from modelops.sandbox.kubeconfig import write_kubeconfig
from tests.conftest import ROOT, load_yaml_docs

GROUP = "ml.smarthr360.io"
MERGE = {"Content-Type": "application/merge-patch+json"}
KOPF = str(Path(sys.executable).with_name("kopf"))

OPERATOR = textwrap.dedent(
    """
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.persistence.finalizer = "test.modelops/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="test.modelops")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="test.modelops")

    @kopf.on.create("ml.smarthr360.io", "v1alpha1", "modelversions")
    def created(body, spec, patch, **_):
        kopf.info(body, reason="Created", message="first event")
        patch.status["phase"] = "Ready"
        patch.status["stage"] = spec["stage"]
        patch.status["bogusField"] = "pruned by the server"

    @kopf.on.update("ml.smarthr360.io", "v1alpha1", "modelversions", field="spec.stage")
    def staged(body, new, patch, meta, **_):
        kopf.info(body, reason="Staged", message=f"second event: {new}")
        patch.status["stage"] = new
        patch.status["observedGeneration"] = meta["generation"]

    @kopf.on.delete("ml.smarthr360.io", "v1alpha1", "modelversions")
    def deleted(**_):
        pass
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    log = (tmp_path_factory.mktemp("apiserver-kopf") / "apiserver.log").open("w")
    proc = spawn(ROOT / "crds", stderr=log)
    try:
        yield proc
    finally:
        assert proc.stop() == 0
        log.close()


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_kopf_operator_runs_against_the_emulator(server: ApiServerProcess, tmp_path: Path) -> None:
    operator = tmp_path / "operator.py"
    operator.write_text(OPERATOR)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
    log_path = tmp_path / "kopf.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log_path.open("w") as log:
        kopf = subprocess.Popen(
            [KOPF, "run", "--standalone", "--all-namespaces", "--verbose", str(operator)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=server.url, timeout=10) as api:
            ns = f"k-{uuid.uuid4().hex[:8]}"
            api.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            path = f"/apis/{GROUP}/v1alpha1/namespaces/{ns}/modelversions"
            body: dict[str, Any] = copy.deepcopy(load_yaml_docs(ROOT / "manifests/samples/modelversion-1.0.0.yaml")[0])
            body["metadata"] = {"name": "kopf-mv"}
            assert api.post(path, json=body).status_code == 201

            def current() -> dict[str, Any]:
                return dict(api.get(f"{path}/kopf-mv").json())

            eventually(lambda: current().get("status", {}).get("phase") == "Ready")
            obj = current()
            assert "test.modelops/finalizer" in obj["metadata"]["finalizers"]
            assert obj["status"] == {"phase": "Ready", "stage": "Production"}  # bogusField pruned
            api.patch(f"{path}/kopf-mv", json={"spec": {"stage": "Staging"}}, headers=MERGE)
            eventually(lambda: current()["status"].get("stage") == "Staging")
            assert current()["status"]["observedGeneration"] == current()["metadata"]["generation"] == 2

            def events() -> list[dict[str, Any]]:
                return list(api.get(f"/api/v1/namespaces/{ns}/events").json()["items"])

            eventually(lambda: len(events()) >= 2)
            assert all(e["metadata"]["name"].startswith("kopf-event-") for e in events())
            assert {e["reason"] for e in events()} >= {"Created", "Staged"}
            assert api.delete(f"{path}/kopf-mv").status_code == 200
            eventually(lambda: api.get(f"{path}/kopf-mv").status_code == 404)
    finally:
        kopf.send_signal(signal.SIGINT)
        try:
            kopf.wait(20)
        except subprocess.TimeoutExpired:
            kopf.kill()
            kopf.wait()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert "Handler 'deleted' succeeded" in text
    # Each line starts with a millisecond timestamp ("19:36:59,409"), so only the messages are searched.
    messages = "\n".join(line.split("] ", 1)[-1] for line in text.splitlines())
    assert "409" not in messages and "Conflict" not in messages, messages[-4000:]
