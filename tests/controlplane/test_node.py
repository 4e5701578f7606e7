"""The sandbox kubelet as a node of the real control plane: the upstream controllers drive it."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from modelops.sandbox.testing import TEST_IMAGE, Sandbox, python_container

pytestmark = pytest.mark.e2e

#: A tiny HTTP server on the pod's own address and real containerPort 8080 (MODELOPS_HOST).
HTTP_SERVER = """
import http.server, os, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("VERSION", "v1").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S((os.environ["MODELOPS_HOST"], 8080), H).serve_forever()
"""


def _job(name: str, code: str, backoff: int = 0) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff, "template": {"spec": {
                "restartPolicy": "Never", "containers": [python_container(code)]}}}}


def test_node_is_registered_ready_with_a_renewed_lease(real: Sandbox) -> None:
    node = real.get("nodes", "sandbox", None)
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    lease = real.api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sandbox")
    assert lease["spec"]["holderIdentity"] == "sandbox"


def test_job_succeeds_with_the_exit_code_and_logs_through_kubectl(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create(_job("hello", "print('hello from the node')"), ns)
    job = real.wait_for_object("jobs", "hello", ns, lambda j: (j.get("status") or {}).get("succeeded") == 1)
    assert job["status"]["conditions"][-1]["type"] in ("Complete", "SuccessCriteriaMet")
    pods = real.list("pods", ns, {"job-name": "hello"})
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert pods[0]["status"]["podIP"].startswith("10.244.")
    logs = real.kubectl("logs", "-n", ns, "job/hello").stdout
    assert "hello from the node" in logs


def test_failing_job_is_retried_by_the_real_job_controller(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create(_job("fails", "import sys; sys.exit(3)", backoff=2), ns)

    def failed(job: dict[str, Any]) -> bool:
        conditions = (job.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Failed" and c["status"] == "True" for c in conditions)

    job = real.wait_for_object("jobs", "fails", ns, failed, timeout=180)
    assert job["status"]["failed"] == 3  # the first try and backoffLimit=2 retries, each a new pod
    reason = next(c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert reason == "BackoffLimitExceeded"
    codes = {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
             for p in real.list("pods", ns, {"job-name": "fails"})}
    assert codes == {3}


def test_killed_container_reports_its_signal(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create(_job("killed", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), ns)
    real.wait_for_object("jobs", "killed", ns, lambda j: (j.get("status") or {}).get("failed") == 1, timeout=120)
    state = real.list("pods", ns, {"job-name": "killed"})[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 137 and state["signal"] == 9


def test_cronjob_is_run_by_the_real_cronjob_controller(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
                 "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                     "restartPolicy": "Never", "containers": [python_container("print('tick')")]}}}}}}, ns)
    cron = real.wait_for_object("cronjobs", "tick", ns, lambda c: (c.get("status") or {}).get("lastSuccessfulTime"),
                                timeout=150, message="a scheduled run of the CronJob that succeeded")
    assert cron["status"]["lastScheduleTime"]


def test_pre_stop_sleep_runs_before_the_container_is_signalled(real: Sandbox, cluster_namespace: str,
                                                              tmp_path: Any) -> None:
    """A deleted pod's preStop sleep runs first (the process still serves while the endpoint goes),
    then SIGTERM: the process records the signal's time, at least the hook's 2 s after the deletion
    (2 s: within the grace period the test kubelet grants, --grace-max 3, so the whole hook runs)."""
    ns, marker = cluster_namespace, tmp_path / "terminated"
    code = ("import os, signal, sys, time\n"
            "def done(*_):\n    open(os.environ['MARKER'], 'w').write(f'TERM {time.time()}'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, done)\nwhile True: time.sleep(0.1)\n")
    container = python_container(code, env=[{"name": "MARKER", "value": str(marker)}],
                                 lifecycle={"preStop": {"sleep": {"seconds": 2}}})
    # A bare Pod needs its namespace's default ServiceAccount, which its controller creates shortly.
    real.wait_for(lambda: real.find("serviceaccounts", "default", ns) is not None, timeout=60, message="default SA")
    real.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stopper"},
                 "spec": {"terminationGracePeriodSeconds": 10, "containers": [container]}}, ns)
    real.wait_for_object("pods", "stopper", ns, lambda p: (p.get("status") or {}).get("phase") == "Running")
    real.api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/stopper")
    meta = real.wait_for_object("pods", "stopper", ns, lambda p: p["metadata"].get("deletionTimestamp"))["metadata"]
    real.wait_for(lambda: real.find("pods", "stopper", ns) is None, timeout=60, message="pod gone")
    # A pod's deletionTimestamp is the deletion's time plus its grace period (whole seconds, so
    # this is at most the deletion's time). From the times recorded, not a sleep of this test, which
    # on a loaded machine could end after the hook did (the old check slept 1 s of the hook's 3).
    deleted = datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00")) - timedelta(
        seconds=meta["deletionGracePeriodSeconds"])
    word, when = marker.read_text().split()
    assert word == "TERM"  # it was signalled, and stopped on it
    assert float(when) >= (deleted + timedelta(seconds=2)).timestamp(), "SIGTERM before the preStop sleep ended"


def _deployment(version: str) -> dict[str, Any]:
    # The preStop sleep keeps a terminating pod serving while the EndpointSlice controller and the
    # Service forwarder drop it, as a zero-downtime Deployment needs on any cluster.
    container = python_container(HTTP_SERVER, env=[{"name": "VERSION", "value": version}],
                                 ports=[{"name": "http", "containerPort": 8080}],
                                 readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                                 lifecycle={"preStop": {"sleep": {"seconds": 2}}})
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"terminationGracePeriodSeconds": 5, "containers": [container]}}}}


def test_rolling_update_by_the_real_deployment_controller_drops_no_request(real: Sandbox,
                                                                           cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create(_deployment("v1"), ns)
    real.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                 "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
                ns)
    real.wait_for_object("deployments", "web", ns, lambda d: (d.get("status") or {}).get("availableReplicas") == 2)
    url = real.service_url("web", ns)
    real.wait_for(lambda: httpx.get(url, timeout=2).text == "v1", message="v1 answers through the Service")
    answers: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.get(url, headers={"Connection": "close"})
                    answers.append(response.text) if response.status_code == 200 else failures.append(str(response))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                time.sleep(0.01)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        real.kubectl("set", "env", "-n", ns, "deployment/web", "VERSION=v2")
        real.kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=120s", timeout=150)
        real.wait_for(lambda: answers[-20:] == ["v2"] * 20 if len(answers) >= 20 else False, timeout=30,
                      message="only v2 answers after the rollout")
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert "v1" in answers and answers[-1] == "v2"
    replica_sets = real.api.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
    assert sorted(rs["status"].get("replicas", 0) for rs in replica_sets) == [0, 2]


def test_kubectl_scale_and_garbage_collection(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create(_deployment("v1"), ns)
    real.wait_for_object("deployments", "web", ns, lambda d: (d.get("status") or {}).get("readyReplicas") == 2)
    real.kubectl("scale", "-n", ns, "deployment/web", "--replicas=1")
    real.wait_for(lambda: len(real.list("pods", ns, {"app": "web"})) == 1, timeout=60, message="one pod left")
    real.kubectl("delete", "-n", ns, "deployment/web", "--cascade=background")
    real.wait_for(lambda: not real.list("pods", ns, {"app": "web"}) and not real.list("replicasets", ns),
                  timeout=60, message="the garbage collector removed the ReplicaSet and its pods")


def test_pod_that_never_becomes_ready_keeps_the_deployment_unavailable(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    container = python_container("import time; time.sleep(3600)",
                                 readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1})
    real.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "never"},
                 "spec": {"replicas": 1, "progressDeadlineSeconds": 10, "selector": {"matchLabels": {"app": "never"}},
                          "template": {"metadata": {"labels": {"app": "never"}}, "spec": {"containers": [container]}}}},
                ns)

    def deadline_exceeded(dep: dict[str, Any]) -> bool:
        return any(c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
                   for c in (dep.get("status") or {}).get("conditions") or [])

    dep = real.wait_for_object("deployments", "never", ns, deadline_exceeded, timeout=90)
    assert not dep["status"].get("availableReplicas")
    pod = real.list("pods", ns, {"app": "never"})[0]
    assert pod["status"]["phase"] == "Running"
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"


def test_image_that_cannot_start_is_reported_on_the_pod(real: Sandbox, cluster_namespace: str) -> None:
    ns = cluster_namespace
    real.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"},
                 "spec": {"containers": [{"name": "main", "image": "registry.invalid/none:1"}]}}, ns)
    pod = real.wait_for_object("pods", "noimage", ns, lambda p: json.dumps(p.get("status") or {}).count("ErrImagePull"))
    assert pod["status"]["phase"] == "Pending"
    assert TEST_IMAGE  # the test image itself resolves (used above)
