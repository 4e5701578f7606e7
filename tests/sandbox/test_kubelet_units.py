"""Pure parts of the kubelet: schedules, rolling-update arithmetic, images, env, mounts, policies."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelops.sandbox.kubelet.common import condition, template_hash
from modelops.sandbox.kubelet.cronjobs import decide, job_from_cronjob, manual_job_name, most_recent_schedule
from modelops.sandbox.kubelet.deployments import rolling_parameters
from modelops.sandbox.kubelet.images import (
    ImagePullError,
    ImageResolver,
    image_repository,
    parse_image_option,
    venv_bin,
)
from modelops.sandbox.kubelet.jobs import pod_failure_action
from modelops.sandbox.kubelet.pods import Mounts, _expand
from modelops.sandbox.kubelet.probes import resolve_port
from modelops.settings import DEFAULT_RUNTIME_IMAGE


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_most_recent_schedule_picks_the_latest_due_time() -> None:
    now = ts("2026-01-01T10:17:30")
    assert most_recent_schedule("*/5 * * * *", ts("2026-01-01T10:00:00"), now) == ts("2026-01-01T10:15:00")
    assert most_recent_schedule("*/5 * * * *", ts("2026-01-01T10:15:00"), now) is None  # already run
    assert most_recent_schedule("@hourly", ts("2026-01-01T09:00:00"), now) == ts("2026-01-01T10:00:00")
    # 10:00 in Paris is 09:00 UTC in winter.
    assert most_recent_schedule("0 10 * * *", ts("2026-01-01T00:00:00"), now, "Europe/Paris") == ts(
        "2026-01-01T09:00:00"
    )
    with pytest.raises(ValueError):
        most_recent_schedule("not a cron", 0, now)
    with pytest.raises(ValueError):
        most_recent_schedule("* * * * *", 0, now, "Mars/Olympus")


def test_decide_applies_suspend_deadline_and_concurrency() -> None:
    now = ts("2026-01-01T10:17:30")
    last = ts("2026-01-01T10:00:00")
    spec = {"schedule": "*/5 * * * *"}
    assert decide({**spec, "suspend": True}, last, now, 0).action == "suspended"
    assert decide(spec, now - 10, now, 0).action == "wait"
    created = decide(spec, last, now, 0)
    assert (created.action, created.scheduled) == ("create", ts("2026-01-01T10:15:00"))
    assert decide({**spec, "startingDeadlineSeconds": 60}, last, now, 0).action == "skip-late"
    assert decide({**spec, "startingDeadlineSeconds": 300}, last, now, 0).action == "create"
    assert decide({**spec, "concurrencyPolicy": "Forbid"}, last, now, 1).action == "skip-forbid"
    assert decide({**spec, "concurrencyPolicy": "Replace"}, last, now, 1).action == "replace"
    assert decide({**spec, "concurrencyPolicy": "Allow"}, last, now, 1).action == "create"


def test_job_from_cronjob_copies_the_template_and_owns_the_job() -> None:
    cj = {
        "metadata": {"name": "drift", "namespace": "ml", "uid": "u-1"},
        "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
                                 "spec": {"backoffLimit": 1}}},
    }
    job = job_from_cronjob(cj, "drift-29000000", ts("2026-01-01T10:15:00"), manual=False)
    assert job["metadata"]["namespace"] == "ml" and job["metadata"]["labels"] == {"a": "b"}
    assert job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == "2026-01-01T10:15:00Z"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["spec"] == {"backoffLimit": 1}
    job["spec"]["backoffLimit"] = 9
    assert cj["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 1  # a deep copy
    assert len(manual_job_name("x" * 80)) <= 63


@pytest.mark.parametrize(
    ("strategy", "desired", "expected"),
    [
        ({}, 4, (1, 1)),  # 25 % of 4: surge rounds up, unavailable down
        ({}, 1, (1, 0)),
        ({"maxSurge": 1, "maxUnavailable": 0}, 3, (1, 0)),
        ({"maxSurge": 0, "maxUnavailable": 0}, 3, (1, 0)),  # both zero: surge 1
        ({"maxSurge": "50%", "maxUnavailable": "50%"}, 3, (2, 1)),
    ],
)
def test_rolling_parameters(strategy: dict, desired: int, expected: tuple[int, int]) -> None:
    spec = {"strategy": {"type": "RollingUpdate", "rollingUpdate": strategy}} if strategy else {}
    assert rolling_parameters(spec, desired) == expected


def test_images_map_the_runtime_repository_only() -> None:
    assert image_repository("ghcr.io/org/modelops-runtime:0.1.0") == "ghcr.io/org/modelops-runtime"
    assert image_repository("localhost:5000/modelops-runtime@sha256:abc") == "localhost:5000/modelops-runtime"
    assert image_repository("modelops-runtime") == "modelops-runtime"
    resolver = ImageResolver()
    for image in (DEFAULT_RUNTIME_IMAGE, "ghcr.io/org/modelops-runtime:dev", "localhost:5000/modelops-runtime"):
        assert resolver.resolve(image).entrypoint == (str(venv_bin() / "modelops-runtime"),)
    with pytest.raises(ImagePullError, match="busybox"):
        resolver.resolve("busybox:1.36")
    repo, spec = parse_image_option(f"sandbox.test/python={sys.executable} -u")
    assert repo == "sandbox.test/python" and spec.entrypoint == (sys.executable, "-u")
    assert ImageResolver({repo: spec}).resolve("sandbox.test/python:3").entrypoint[0] == sys.executable
    with pytest.raises(ValueError):
        parse_image_option("no-equals-sign")


def test_env_expansion_and_mount_rewriting(tmp_path: Path) -> None:
    env = {"A": "1", "B": "two"}
    assert _expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"
    mounts = Mounts([("/data", tmp_path / "d"), ("/data/logs", tmp_path / "l"), ("/tmp", tmp_path / "t")])
    assert mounts.rewrite("/data/x.csv") == f"{tmp_path}/d/x.csv"
    assert mounts.rewrite("/data/logs/a") == f"{tmp_path}/l/a"  # the longest mount path wins
    assert mounts.rewrite("/database") == "/database"  # only whole path components
    assert mounts.rewrite("s3://bucket/data") == "s3://bucket/data"
    config = json.dumps({"prediction_log_uri": "/data/logs", "n": 3, "nested": ["/tmp/a"]})
    assert json.loads(mounts.rewrite_env(config)) == {
        "prediction_log_uri": f"{tmp_path}/l", "n": 3, "nested": [f"{tmp_path}/t/a"]
    }
    assert mounts.rewrite_env("{not json") == "{not json"
    # Paths that already name a host location below the mount path stay (a test's dataset
    # under the host's /tmp while the pod mounts an emptyDir at /tmp); so does the state dir.
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    shared = Mounts([(str(host), tmp_path / "vol")], host_root=tmp_path / "state")
    assert shared.rewrite(str(host)) == str(tmp_path / "vol")
    assert shared.rewrite(str(host / "sub" / "new.csv")) == str(host / "sub" / "new.csv")
    assert shared.rewrite(str(host / "nothere" / "x")) == str(tmp_path / "vol" / "nothere" / "x")
    state_tmp = Mounts([(str(tmp_path), tmp_path / "root")], host_root=tmp_path / "state")
    assert state_tmp.rewrite(str(tmp_path / "state" / "predictions")) == str(tmp_path / "state" / "predictions")


def test_pod_failure_policy_actions() -> None:
    spec = {"podFailurePolicy": {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "train", "operator": "In", "values": [2]}},
        {"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
    ]}}
    action, message = pod_failure_action(spec, "train", 2, "ns/p")
    assert action == "FailJob" and "exit code 2" in message and "index 1" in message
    assert pod_failure_action(spec, "other", 2, "ns/p")[0] == "Count"  # the container does not match
    assert pod_failure_action(spec, "train", 1, "ns/p")[0] == "Count"
    assert pod_failure_action(spec, "train", 7, "ns/p")[0] == "Ignore"
    assert pod_failure_action(spec, "train", 0, "ns/p")[0] == "Count"
    assert pod_failure_action({}, "train", 2, "ns/p")[0] == "Count"


def test_template_hash_and_conditions() -> None:
    a = {"spec": {"containers": [{"name": "m", "env": [{"name": "X", "value": "1"}]}]}}
    b = json.loads(json.dumps(a))
    assert template_hash(a) == template_hash(b) and len(template_hash(a)) == 10
    b["spec"]["containers"][0]["env"][0]["value"] = "2"
    assert template_hash(a) != template_hash(b)
    first = condition("Available", True, "R", "m", [], with_update_time=True)
    old = [{**first, "lastTransitionTime": "2020-01-01T00:00:00Z", "lastUpdateTime": "2020-01-01T00:00:00Z"}]
    same = condition("Available", True, "R", "m", old, with_update_time=True)
    assert same["lastTransitionTime"] == same["lastUpdateTime"] == "2020-01-01T00:00:00Z"
    flipped = condition("Available", False, "R2", "m", old, with_update_time=True)
    assert flipped["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_probe_ports_map_to_the_replica_port() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", container, 41000) == 41000
    assert resolve_port(8080, container, 41000) == 41000
    assert resolve_port("9090", container, 41000) == 41000
    assert resolve_port("metrics", container, 41000) is None


def test_listening_addresses_reads_the_hosts_listeners() -> None:
    import socket

    from modelops.sandbox.kubelet.node import listening_addresses

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp here")
    with socket.socket() as listener:
        listener.bind(("127.244.254.77", 0))
        assert "127.244.254.77" not in listening_addresses()  # bound, not listening yet
        listener.listen()
        assert "127.244.254.77" in listening_addresses()
    assert listening_addresses("/nonexistent") == set()


def test_pod_addresses_skip_loopback_twins_another_sandbox_listens_on() -> None:
    from modelops.sandbox.kubelet.node import AddressPool

    busy = {"127.244.0.2", "127.244.0.4"}  # pods of another sandbox on this host
    pool = AddressPool(busy=lambda: busy)
    assert [pool.take(uid) for uid in ("a", "b")] == ["10.244.0.3", "10.244.0.5"]
    busy.clear()  # the other sandbox's pods are gone: their addresses are used again
    assert pool.take("c") == "10.244.0.2"
    pool.release("a")
    busy.add("127.244.0.3")  # released, then taken by another sandbox: not given out
    assert pool.take("d") == "10.244.0.4"
    assert pool.take("b") == "10.244.0.5" and pool.take("e", wanted="10.244.0.9") == "10.244.0.9"
