"""CronJobs: on-demand trigger (CLI), scheduling from lastScheduleTime, suspend, Forbid, history."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from modelops.sandbox.kubelet.cronjobs import ANN_INSTANTIATE, ANN_SCHEDULED
from modelops.sandbox.testing import Sandbox, condition, python_container


def cronjob(name: str, code: str, schedule: str = "0 0 1 1 *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"app": name}},
                "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never", "containers": [python_container(code)]}}},
            },
            **spec,
        },
    }


def owned_jobs(sandbox: Sandbox, namespace: str, name: str) -> list[dict[str, Any]]:
    return [j for j in sandbox.list("jobs", namespace)
            if any(r.get("kind") == "CronJob" and r.get("name") == name
                   for r in j["metadata"].get("ownerReferences") or [])]


def test_trigger_creates_a_job_from_the_template(sandbox: Sandbox, namespace: str) -> None:
    cj = sandbox.create(cronjob("drift", "print('drift check')", successfulJobsHistoryLimit=1), namespace)
    result = subprocess.run(
        [sys.executable, "-m", "modelops.cli", "sandbox", "trigger", "drift", "-n", namespace,
         "--state-dir", str(sandbox.state_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    name = result.stdout.strip()
    assert name.startswith("drift-manual-")
    job = sandbox.wait_for_condition("jobs", name, namespace, "Complete")
    assert job["metadata"]["annotations"][ANN_INSTANTIATE] == "manual"
    assert job["metadata"]["labels"] == {"app": "drift"}
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "drift", True)
    assert owner.get("uid") == cj["metadata"].get("uid")
    assert "drift check" in sandbox.pod_logs(name, namespace)
    sandbox.wait_for_object("cronjobs", "drift", namespace,
                            lambda c: (c.get("status") or {}).get("lastSuccessfulTime"), message="lastSuccessfulTime")

    # A second run: the history limit of 1 keeps only the newest successful Job.
    second = sandbox.trigger("drift", namespace)
    sandbox.wait_for_condition("jobs", second, namespace, "Complete")
    sandbox.wait_for(lambda: [j["metadata"]["name"] for j in owned_jobs(sandbox, namespace, "drift")] == [second],
                     message="history trimmed to the newest job")


def test_trigger_of_a_missing_cronjob_fails_clearly(sandbox: Sandbox, namespace: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelops.cli", "sandbox", "trigger", "ghost", "-n", namespace,
         "--state-dir", str(sandbox.state_dir)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1 and "ghost" in result.stderr and "not found" in result.stderr


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_schedule_suspend_and_forbid(sandbox: Sandbox, namespace: str) -> None:
    # The Job runs for the whole test (deleted with the namespace): Forbid below meets an active Job.
    sandbox.create(cronjob("tick", "import time; time.sleep(600)", schedule="* * * * *", suspend=True,
                           concurrencyPolicy="Forbid"), namespace)
    two_minutes_ago = _iso(datetime.now(UTC) - timedelta(minutes=2))
    sandbox.patch("cronjobs", "tick", {"status": {"lastScheduleTime": two_minutes_ago}}, namespace, "status")
    time.sleep(1.5)
    assert owned_jobs(sandbox, namespace, "tick") == []  # suspended: a due run is not started

    sandbox.patch("cronjobs", "tick", {"spec": {"suspend": False}}, namespace)
    jobs = sandbox.wait_for(lambda: owned_jobs(sandbox, namespace, "tick"), message="scheduled job")
    assert len(jobs) == 1
    # Named after the schedule time it runs for (a missed one, after the last), as the CronJob
    # controller records it; from the Job itself, not this test's clock, which reads a later minute
    # when the Job took a while to appear.
    scheduled = jobs[0]["metadata"]["annotations"][ANN_SCHEDULED]
    assert two_minutes_ago < scheduled <= jobs[0]["metadata"]["creationTimestamp"]
    minute = int(datetime.fromisoformat(scheduled.replace("Z", "+00:00")).timestamp() // 60)
    assert jobs[0]["metadata"]["name"] == f"tick-{minute}"
    status = sandbox.wait_for_object("cronjobs", "tick", namespace,
                                     lambda c: (c.get("status") or {}).get("active"))["status"]
    assert status["lastScheduleTime"] == scheduled
    assert [ref["name"] for ref in status["active"]] == [jobs[0]["metadata"]["name"]]

    # Forbid: another due run while the first Job is still active is skipped: no Job, and the
    # schedule time is not recorded (it would be, with Allow, even when the Job name exists).
    sandbox.patch("cronjobs", "tick", {"status": {"lastScheduleTime": two_minutes_ago}}, namespace, "status")
    time.sleep(1.5)
    assert len(owned_jobs(sandbox, namespace, "tick")) == 1
    assert sandbox.get("cronjobs", "tick", namespace)["status"]["lastScheduleTime"] == two_minutes_ago
    assert condition(sandbox.get("jobs", jobs[0]["metadata"]["name"], namespace), "Complete") is None
