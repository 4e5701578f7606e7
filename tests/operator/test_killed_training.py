"""A training attempt killed by a signal: the status says which signal and exit code (not only
"backoff limit reached"), and the MLflow runs the killed attempts left RUNNING are ended KILLED
once the Job has finished."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.builders.common import train_job_name
from modelops.clients.kube import JOBS, MODELVERSIONS, PODS
from modelops.contract import TAG_FAILURE, TAG_UID
from modelops.reconcile import modelversion
from modelops.reconcile.termination import termination_of
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.test_reconcile import NS, _completed_job, _ctx, _mv, owned_by


def test_exit_codes_and_signals_are_read_as_container_runtimes_report_them() -> None:
    assert termination_of({"exitCode": 137, "reason": "OOMKilled"}).describe("train") == (
        "container train was killed by SIGKILL (exit code 137, OOMKilled)"
    )
    assert termination_of({"exitCode": -15}).signal == "SIGTERM"  # a local process
    assert (
        termination_of({"exitCode": 2, "reason": "Error"}).describe("train") == "container train exited (exit code 2)"
    )


async def test_a_training_pod_killed_by_a_signal_is_reported_and_its_run_ended(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    _mv(kube, "uid-oom", "6.0.0", stage="Development")
    job_name = train_job_name("iris", "6.0.0")
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name, "namespace": NS, "ownerReferences": owned_by("uid-oom")},
            "spec": {},
            "status": {
                "failed": 2,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            },
        },
    )
    for attempt, finished in enumerate(("2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z")):
        kube.put(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{job_name}-{attempt}",
                    "namespace": NS,
                    "labels": {"batch.kubernetes.io/job-name": job_name},
                },
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": "train",
                            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": finished}},
                        }
                    ],
                },
            },
        )
    experiment = client.get_experiment_by_name("registry-tests").experiment_id
    killed = [client.create_run(experiment, tags={TAG_UID: "uid-oom"}).info.run_id for _ in range(2)]

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    job = status["trainingJob"]
    assert job["signal"] == "SIGKILL" and job["exitCode"] == 137
    assert job["failureReason"].startswith("container train was killed by SIGKILL (exit code 137, OOMKilled)")
    assert "backoff limit" in job["failureReason"] and status["phase"] == "Failed"
    for run_id in killed:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and "was killed" in run.data.tags[TAG_FAILURE]


async def test_a_job_completed_by_a_later_attempt_ends_the_killed_attempts_run_with_one_search(
    logged_runs,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An evicted attempt (not counted in the Job's ``failed``) left its run RUNNING; the Job then
    completed. One run search finds both the run to register and the run to end."""
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    _mv(kube, "uid-2", "1.2.0", stage="Development")
    _completed_job(kube, "1.2.0", "uid-2")
    experiment = client.get_experiment_by_name("registry-tests").experiment_id
    killed = client.create_run(experiment, tags={TAG_UID: "uid-2"}).info.run_id  # the newest run: RUNNING
    searches: list[str] = []
    real = client.search_runs

    def counting(*args: Any, **kwargs: Any) -> Any:
        searches.append(kwargs.get("filter_string") or "")
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "search_runs", counting)
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})

    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    registered = next(c for c in status["conditions"] if c["type"] == "Registered")
    assert registered["status"] == "True" and status["registry"]["runId"] == logged_runs.run_ids[2]
    run = client.get_run(killed)
    assert run.info.status == "KILLED" and "completed by a later attempt" in run.data.tags[TAG_FAILURE]
    assert len(searches) == 1
