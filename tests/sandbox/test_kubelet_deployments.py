"""Deployments run as local processes, roll one process at a time, and Services forward to them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops.sandbox.testing import Sandbox, condition, python_container

# A tiny HTTP server that journals its life: "start", "ready" (first successful readiness
# probe, READY_AFTER seconds after start) and "stop" (SIGTERM), with time, version and pod name.
# /live fails LIVE_FOR seconds after start.
SERVER = r"""
import http.server, os, signal, sys, time
journal, ver, name = os.environ["JOURNAL"], os.environ["VER"], os.environ["POD_NAME"]
delay, start = float(os.environ.get("READY_AFTER", "0")), time.time()
def note(event):
    with open(journal, "a") as f:
        f.write(f"{time.time():.6f} {event} {ver} {name}\n")
note("start")
noted = []
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/live":
            alive = time.time() - start < float(os.environ.get("LIVE_FOR", "1e9"))
            self.send_response(200 if alive else 500); self.end_headers(); return
        if self.path == "/ready":
            ok = time.time() - start >= delay
            if ok and not noted:
                note("ready"); noted.append(1)
            self.send_response(200 if ok else 503); self.end_headers(); return
        body = f"{ver} {name}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
def stop(*_):
    note("stop"); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", int(os.environ["MODELOPS_PORT"])), Handler).serve_forever()
"""


def server_container(journal: Path, version: str, ready_after: float = 0.0) -> dict[str, Any]:
    """The journaling server as a container with a readiness probe on a named port."""
    return python_container(
        SERVER,
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
        env=[
            {"name": "JOURNAL", "value": str(journal)},
            {"name": "VER", "value": version},
            {"name": "READY_AFTER", "value": str(ready_after)},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    )


def deployment(name: str, container: dict[str, Any], replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
            **spec,
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def rolled_out(dep: dict[str, Any], replicas: int = 2) -> bool:
    status = dep.get("status") or {}
    progressing = condition(dep, "Progressing")
    return (
        status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
        and progressing is not None
        and progressing["reason"] == "NewReplicaSetAvailable"
        and status.get("observedGeneration") == dep["metadata"].get("generation")
    )


def responses(url: str, count: int) -> list[str]:
    with httpx.Client(timeout=5) as client:
        return [client.get(url).text for _ in range(count)]


def journal_events(path: Path) -> list[tuple[float, str, str, str]]:
    events = []
    for line in path.read_text().splitlines():
        stamp, event, version, pod = line.split()
        events.append((float(stamp), event, version, pod))
    return sorted(events)


def test_template_change_rolls_process_by_process(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    sandbox.create(deployment("web", server_container(journal, "v1")), namespace)
    sandbox.create(service("web"), namespace)
    sandbox.wait_for_object("deployments", "web", namespace, rolled_out, message="web v1 rolled out")

    url = sandbox.service_url("web", namespace)
    answers = responses(url, 6)
    assert {a.split()[0] for a in answers} == {"v1"}
    assert len({a.split()[1] for a in answers}) == 2  # round-robin over both ready replicas

    template = sandbox.get("deployments", "web", namespace)["spec"]["template"]
    new_template = copy.deepcopy(template)
    new_template["spec"]["containers"] = [server_container(journal, "v2", ready_after=1.0)]
    sandbox.patch("deployments", "web", {"spec": {"template": new_template}}, namespace)

    def v2_rolled_out(dep: dict[str, Any]) -> bool:
        return rolled_out(dep) and all(a.startswith("v2") for a in responses(url, 4))

    sandbox.wait_for_object("deployments", "web", namespace, v2_rolled_out, timeout=120, message="v2 rolled out")

    events = journal_events(journal)
    starts = {v: [e for e in events if e[1] == "start" and e[2] == v] for v in ("v1", "v2")}
    stops = [e for e in events if e[1] == "stop" and e[2] == "v1"]
    v2_ready = [e for e in events if e[1] == "ready" and e[2] == "v2"]
    assert len(starts["v1"]) == 2 and len(starts["v2"]) == 2 and len(stops) == 2 and len(v2_ready) == 2
    # Old and new processes overlap: the first new one starts before any old one stops ...
    assert starts["v2"][0][0] < stops[0][0]
    # ... and the n-th old process stops only after the n-th new one is ready.
    assert v2_ready[0][0] < stops[0][0] < starts["v2"][1][0] < v2_ready[1][0] < stops[1][0]
    # maxSurge 1 / maxUnavailable 0: never more than 3 processes, never fewer than 2 ready.
    rollout_start = starts["v2"][0][0]
    alive: set[str] = set()
    ready: set[str] = set()
    for stamp, event, version, pod in events:
        if event == "start":
            alive.add(pod)
            if version == "v1":
                ready.add(pod)  # v1 was ready before the rollout began
        elif event == "ready":
            ready.add(pod)
        elif event == "stop":
            alive.discard(pod)
            ready.discard(pod)
        assert len(alive) <= 3, events
        if stamp >= rollout_start:
            assert len(ready) >= 2, events
    # The mirror pods follow: only the two v2 pods remain.
    pods = sandbox.list("pods", namespace, {"app": "web"})
    assert len(pods) == 2 and all(p["metadata"]["name"] in {e[3] for e in v2_ready} for p in pods)


def test_bad_template_leaves_old_replicas_serving(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    sandbox.create(deployment("api", server_container(journal, "v1"), progressDeadlineSeconds=3), namespace)
    sandbox.create(service("api"), namespace)
    good = sandbox.wait_for_object("deployments", "api", namespace, rolled_out, message="api v1 rolled out")
    url = sandbox.service_url("api", namespace)

    bad_template = copy.deepcopy(good["spec"]["template"])
    # It writes a termination message where the kubelet tells it to (terminationMessagePath), then exits.
    bad_template["spec"]["containers"][0]["args"] = [
        "-c",
        "import os, sys; open(os.environ['MODELOPS_TERMINATION_LOG'], 'w').write('Refused: no way'); sys.exit(2)",
    ]
    sandbox.patch("deployments", "api", {"spec": {"template": bad_template}}, namespace)

    stuck = sandbox.wait_for_object(
        "deployments", "api", namespace,
        lambda d: condition(d, "Progressing", "False"), timeout=60, message="progress deadline exceeded",
    )
    assert condition(stuck, "Progressing", "False")["reason"] == "ProgressDeadlineExceeded"
    assert condition(stuck, "Available") is not None
    status = stuck["status"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"]) == (3, 1, 2)
    assert all(a.startswith("v1") for a in responses(url, 4))
    assert len([e for e in journal_events(journal) if e[1] == "stop"]) == 0  # no old replica was stopped
    # The new replica restarts (CrashLoopBackOff): its first exit may come after the 3 s deadline
    # on a loaded machine (a process start), so it is waited for, not assumed by then.
    crashing = sandbox.wait_for(lambda: [p for p in sandbox.list("pods", namespace, {"app": "api"})
                                         if _restarts(p) >= 1], timeout=60, message="the new replica restarts")
    last = crashing[0]["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"], last["message"]) == (2, "Error", "Refused: no way")

    # Rolling back to the good template removes the crashing replica and completes again.
    sandbox.patch("deployments", "api", {"spec": {"template": good["spec"]["template"]}}, namespace)
    sandbox.wait_for_object("deployments", "api", namespace, rolled_out, timeout=60, message="rolled back")
    assert len(sandbox.list("pods", namespace, {"app": "api"})) == 2


def test_termination_message_falls_back_to_the_log_tail(sandbox: Sandbox, namespace: str) -> None:
    script = "import sys; print('\\n'.join(f'line {i}' for i in range(100))); sys.exit(3)"
    container = python_container(script, terminationMessagePolicy="FallbackToLogsOnError")
    sandbox.create(deployment("tail", container, replicas=1), namespace)

    def last_state(pod: dict[str, Any]) -> dict[str, Any]:
        return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("lastState") or {}

    sandbox.wait_for(lambda: any(last_state(p) for p in sandbox.list("pods", namespace, {"app": "tail"})), 60)
    (pod,) = sandbox.list("pods", namespace, {"app": "tail"})
    message = last_state(pod)["terminated"]["message"]
    assert message.splitlines() == [f"line {i}" for i in range(20, 100)]  # the last 80 lines


def test_unknown_image_reports_replica_failure(sandbox: Sandbox, namespace: str) -> None:
    container = {"name": "main", "image": "ghcr.io/example/unknown:1.0", "ports": [{"name": "http",
                                                                                  "containerPort": 80}]}
    sandbox.create(deployment("nope", container, replicas=1), namespace)
    sandbox.create(service("nope"), namespace)
    dep = sandbox.wait_for_object("deployments", "nope", namespace,
                                  lambda d: condition(d, "ReplicaFailure"), message="ReplicaFailure")
    failure = condition(dep, "ReplicaFailure")
    assert failure["reason"] == "ErrImagePull" and "ghcr.io/example/unknown:1.0" in failure["message"]
    assert condition(dep, "Available", "False") is not None
    assert dep["status"]["readyReplicas"] == 0
    # The Service has a URL, but with no ready replica the connection is closed at once.
    url = sandbox.service_url("nope", namespace)
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=5)


def test_scaling_up_and_down(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    sandbox.create(deployment("scale", server_container(journal, "v1"), replicas=1), namespace)
    sandbox.wait_for_object("deployments", "scale", namespace, lambda d: rolled_out(d, 1))
    sandbox.patch("deployments", "scale", {"spec": {"replicas": 3}}, namespace)
    sandbox.wait_for_object("deployments", "scale", namespace, lambda d: rolled_out(d, 3), message="scaled to 3")
    sandbox.patch("deployments", "scale", {"spec": {"replicas": 1}}, namespace)
    sandbox.wait_for_object("deployments", "scale", namespace, lambda d: rolled_out(d, 1), message="scaled to 1")
    events = journal_events(journal)
    assert [e[1] for e in events].count("start") == 3 and [e[1] for e in events].count("stop") == 2


def _restarts(pod: dict[str, Any]) -> int:
    """Restart count of a pod's first container (0 while the kubelet has not reported it yet)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return int(statuses[0].get("restartCount") or 0)


def test_failing_liveness_probe_restarts_the_container(sandbox: Sandbox, namespace: str, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    container = server_container(journal, "v1")
    container["env"].append({"name": "LIVE_FOR", "value": "1"})
    container["livenessProbe"] = {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 1,
                                  "failureThreshold": 2}
    sandbox.create(deployment("sick", container, replicas=1), namespace)

    def restarted() -> list[dict[str, Any]]:
        pods = sandbox.list("pods", namespace, {"app": "sick"})
        return [p for p in pods if _restarts(p) >= 1]

    pod = sandbox.wait_for(restarted, timeout=60, message="liveness restart")[0]
    events = [e for e in journal_events(journal) if e[3] == pod["metadata"]["name"]]
    # The same pod's container was stopped (SIGTERM) and started again.
    assert [e[1] for e in events][:3] == ["start", "ready", "stop"]
    sandbox.wait_for(lambda: [e for e in journal_events(journal) if e[1] == "start"][1:], timeout=30,
                     message="second start")
