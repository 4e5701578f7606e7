"""The sandbox kubelet runs Jobs as local processes and reports their status like Kubernetes."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta
from typing import Any

from modelops.sandbox import procs
from modelops.sandbox.testing import Sandbox, condition, python_container
from modelops.settings import DEFAULT_RUNTIME_IMAGE


def job(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Job manifest with one container and restartPolicy Never."""
    pod_spec = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }


ENV_DUMP = """
import json, os, sys
keys = ["POD_NAME", "POD_NS", "SECRET_VALUE", "CM_VALUE", "PLAIN", "EXPANDED", "HOME", "TMPDIR", "FROM_ENV_A"]
print(json.dumps({k: os.environ.get(k) for k in keys} | {"cwd": os.getcwd()}))
print("to stderr", file=sys.stderr)
"""


def test_job_succeeds_with_resolved_env_and_pod_log(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                    "data": {"token": base64.b64encode(b"s3cr3t").decode()}}, namespace)
    sandbox.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                    "data": {"mode": "fast", "A": "from-envfrom"}}, namespace)
    container = python_container(
        ENV_DUMP,
        env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SECRET_VALUE", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "CM_VALUE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}}},
            {"name": "PLAIN", "value": "plain"},
            {"name": "EXPANDED", "value": "$(PLAIN)-$(CM_VALUE)"},
            {"name": "HOME", "value": "/home/app"},
            {"name": "TMPDIR", "value": "/tmp"},
        ],
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "FROM_ENV_"}],
        volumeMounts=[{"name": "home", "mountPath": "/home/app"}, {"name": "tmp", "mountPath": "/tmp"}],
    )
    sandbox.create(job("hello", container, backoffLimit=0,
                       pod={"volumes": [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}),
                   namespace)

    done = sandbox.wait_for_condition("jobs", "hello", namespace, "Complete")
    status = done["status"]
    assert status["succeeded"] == 1
    assert status.get("failed", 0) == 0
    assert "active" not in status or not status["active"]
    assert status["startTime"] <= status["completionTime"]
    assert condition(done, "Complete")["reason"] == "CompletionsReached"

    log = sandbox.pod_logs("hello", namespace)
    assert "to stderr" in log  # stdout and stderr both land in the pod log
    values = json.loads(log.splitlines()[0])
    pod = sandbox.pods("hello", namespace)[-1]
    assert values["POD_NAME"] == pod["name"] and values["POD_NAME"].startswith("hello-")
    assert values["POD_NS"] == namespace
    assert values["SECRET_VALUE"] == "s3cr3t"
    assert values["CM_VALUE"] == "fast"
    assert values["EXPANDED"] == "plain-fast"
    assert values["FROM_ENV_A"] == "from-envfrom"
    pod_dir = str(sandbox.state_dir / "kubelet" / "pods" / namespace / pod["name"])
    # emptyDir mounts are per-pod directories; HOME/TMPDIR values pointing at them are rewritten.
    assert values["HOME"] == f"{pod_dir}/volumes/home"
    assert values["TMPDIR"] == f"{pod_dir}/volumes/tmp"
    assert values["cwd"] == f"{pod_dir}/work"
    # The mirror Pod object exists and is Succeeded.
    pods = sandbox.list("pods", namespace, {"job-name": "hello"})
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def test_failing_job_is_retried_up_to_backoff_limit(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create(job("flaky", python_container("import sys; print('attempt'); sys.exit(3)"), backoffLimit=2),
                   namespace)
    failed = sandbox.wait_for_condition("jobs", "flaky", namespace, "Failed")
    assert failed["status"]["failed"] == 3  # the first try plus backoffLimit retries
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "succeeded" not in failed["status"]
    assert [p["exitCode"] for p in sandbox.pods("flaky", namespace)] == [3, 3, 3]
    assert sandbox.pod_logs("flaky", namespace, all_pods=True).count("attempt") == 3
    time.sleep(0.5)
    assert len(sandbox.pods("flaky", namespace)) == 3  # no fourth attempt


def test_job_exceeding_active_deadline_is_killed(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create(job("slow", python_container("import time; print('started', flush=True); time.sleep(60)"),
                       activeDeadlineSeconds=2, backoffLimit=3), namespace)
    running = sandbox.wait_for(lambda: [p for p in sandbox.pods("slow", namespace) if p.get("pid")],
                               message="slow pod started")
    pid = running[0]["pid"]
    failed = sandbox.wait_for_condition("jobs", "slow", namespace, "Failed", timeout=60)
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    # Failed at its deadline (counted from startTime), long before its 60 s sleep could end: by the
    # times the Job records, not this test's clock (which also counted the pod's start and polling).
    started = datetime.fromisoformat(failed["status"]["startTime"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(condition(failed, "Failed")["lastTransitionTime"].replace("Z", "+00:00"))
    assert timedelta(seconds=2) <= ended - started < timedelta(seconds=15)
    assert failed["status"]["failed"] == 1
    sandbox.wait_for(lambda: not procs.alive(pid), timeout=30, message="deadline-killed process gone")


def test_unknown_image_fails_with_err_image_pull(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create(job("pull", {"name": "main", "image": "docker.io/library/busybox:1.36", "command": ["true"]}),
                   namespace)
    failed = sandbox.wait_for_condition("jobs", "pull", namespace, "Failed")
    cond = condition(failed, "Failed")
    assert cond["reason"] == "ErrImagePull"
    assert "docker.io/library/busybox:1.36" in cond["message"] and "modelops-runtime" in cond["message"]
    pod = sandbox.list("pods", namespace, {"job-name": "pull"})[0]
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull"


def test_pod_failure_policy_fails_the_job_at_once(sandbox: Sandbox, namespace: str) -> None:
    policy = {"rules": [{"action": "FailJob",
                         "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]}}]}
    sandbox.create(job("invalid", python_container("import sys; sys.exit(2)"), backoffLimit=5,
                       podFailurePolicy=policy), namespace)
    failed = sandbox.wait_for_condition("jobs", "invalid", namespace, "Failed")
    assert condition(failed, "Failed")["reason"] == "PodFailurePolicy"
    assert failed["status"]["failed"] == 1


def test_runtime_image_maps_to_the_installed_console_script(sandbox: Sandbox, namespace: str) -> None:
    # The runtime's dispatcher answers an unknown sub-command with its usage and exit code 2.
    container = {"name": "main", "image": DEFAULT_RUNTIME_IMAGE, "command": ["modelops-runtime", "nope"]}
    sandbox.create(job("runtime", container, backoffLimit=0), namespace)
    sandbox.wait_for_condition("jobs", "runtime", namespace, "Failed")
    assert sandbox.pods("runtime", namespace)[-1]["exitCode"] == 2
    assert "usage: modelops-runtime" in sandbox.pod_logs("runtime", namespace)


def test_deleting_a_running_job_stops_its_process(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create(job("doomed", python_container("import time; time.sleep(60)")), namespace)
    pods = sandbox.wait_for(lambda: [p for p in sandbox.pods("doomed", namespace) if p.get("pid")])
    sandbox.delete("jobs", "doomed", namespace)
    sandbox.wait_for(lambda: not procs.alive(pods[0]["pid"]), timeout=30, message="process of deleted job gone")


def test_kubectl_sees_jobs_and_pods(sandbox: Sandbox, namespace: str) -> None:
    sandbox.create(job("seen", python_container("print('ok')")), namespace)
    sandbox.wait_for_condition("jobs", "seen", namespace, "Complete")
    out = sandbox.kubectl("get", "jobs,pods", "-n", namespace, "-o", "name").stdout
    assert "job.batch/seen" in out and "pod/seen-" in out
