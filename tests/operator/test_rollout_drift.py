"""The drift check of a rollout window (reconcile.rolloutdrift, docs/rollout.md) against a real MLflow
store and a prediction log on disk: the operator creates the two drift Jobs, each Job's pod is
played by the runtime's own ``modelops-runtime drift`` run on the Job's config (what the kubelet
would run), and the operator reads the runs back and decides.

A candidate trained on other data than the traffic it sees (its reference sample shifted) is
aborted on its drift share, while the incumbent, checked against its own reference over the same
window, shows none; a failed Job pauses the rollout with the Job's reason."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from modelops.api.modelversion import (
    ModelVersionStatus,
    RegistryStatus,
    RolloutAnalysis,
    RolloutAnalysisStatus,
    RolloutDriftStatus,
    RolloutSpec,
    RolloutStatus,
    WindowNumbers,
)
from modelops.clients.kube import JOBS
from modelops.clients.mlflow import Registry
from modelops.contract import (
    ARTIFACT_REFERENCE,
    ENV_JOB_CONFIG,
    EXPERIMENT_MONITORING,
    TAG_SEMVER,
    TrainingResult,
    candidate_log_stage,
    prediction_log_partition,
)
from modelops.reconcile import rolloutdrift
from modelops.reconcile.context import Context
from modelops.rollout.decision import Step, decide
from modelops.settings import Settings
from tests.mlflow_testing import MlflowStore, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube

drift_job = pytest.importorskip("modelops_runtime.drift.job")
from tests.runtime.test_drift_job import FEATURES, MODEL, SHIFTED, write_log  # noqa: E402

NS, STAGE = "team-a", "Production"
STEPS = [Step("shadow", 0, 1.0, 60)]


def _register(store: MlflowStore, semver: str, reference: Any) -> str:
    """A training run that logged ``reference`` as its reference sample, registered; its registry version."""
    exp = store.experiment("model-training")
    meta = TrainingResult(task="classification", features=FEATURES, classes=["0", "1"])
    run = store.client.create_run(exp, tags={**meta.to_tags(), TAG_SEMVER: semver})
    sample = store.root / semver / Path(ARTIFACT_REFERENCE).name
    sample.parent.mkdir()
    reference[[*FEATURES, "target"]].to_parquet(sample, index=False)
    store.client.log_artifact(run.info.run_id, str(sample), artifact_path=str(Path(ARTIFACT_REFERENCE).parent))
    store.client.set_terminated(run.info.run_id)
    if not store.client.search_registered_models(f"name = '{MODEL}'"):
        store.client.create_registered_model(MODEL)
    return str(
        store.client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
    )


def _setup(
    store: MlflowStore, candidate_shift: float
) -> tuple[Context, FakeKube, dict[str, Any], ModelVersionStatus, ModelVersionStatus, datetime]:
    data = load_breast_cancer(as_frame=True).frame
    train = data.sample(frac=0.5, random_state=0)
    live = data.drop(train.index)
    shifted = train.copy()
    for name in SHIFTED:
        shifted[name] += candidate_shift * data[name].std()
    store.experiment(EXPERIMENT_MONITORING)
    inc_version, cand_version = _register(store, "1.0.0", train), _register(store, "1.1.0", shifted)
    log_dir = store.root / "predictions"
    now = datetime.now(UTC)
    # The same live rows on both sides, as in shadow: the incumbent's in the stage's partition, the
    # candidate's copies in its own.
    write_log(log_dir, live, stage=STAGE, registry_version=inc_version, now=now)
    write_log(log_dir, live, stage=candidate_log_stage(STAGE), registry_version=cand_version, now=now)
    registry = Registry(store.uri)
    registry.client = store.client
    settings = Settings(mlflow_tracking_uri=store.uri, prediction_log_uri=str(log_dir))
    ctx = Context(settings=settings, kube=FakeKube(), registry=registry)
    body = {
        "apiVersion": "ml.smarthr360.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": f"{MODEL}-1-1-0", "namespace": NS, "uid": "uid-candidate"},
    }
    started = now - timedelta(hours=1)
    candidate = ModelVersionStatus(
        version="1.1.0", registry=RegistryStatus(model=MODEL, version=cand_version, run_id="r", model_uri="m")
    )
    candidate.rollout = RolloutStatus(phase="Shadow", stage=STAGE, spec_hash="h", step_started=started)
    incumbent = ModelVersionStatus(
        version="1.0.0", registry=RegistryStatus(model=MODEL, version=inc_version, run_id="r", model_uri="m")
    )
    return ctx, ctx.kube, body, candidate, incumbent, now  # type: ignore[return-value]


def _run_pods(kube: FakeKube, monkeypatch: pytest.MonkeyPatch, store: MlflowStore, fail: str | None = None) -> None:
    """Play the kubelet: run each drift Job's container command on its config, then set the Job's
    condition as the Job controller would (``fail``: the name of a Job whose pod fails instead)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    for (plural, _, name), job in kube.objects.items():
        if plural != JOBS.plural or "status" in job:
            continue
        if name == fail:
            job["status"] = {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            }
            continue
        (container,) = job["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, message = drift_job.run_job(drift_job.load_config({ENV_JOB_CONFIG: env[ENV_JOB_CONFIG]}))
        assert code == 0, message
        job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}


def _numbers() -> RolloutAnalysisStatus:
    return RolloutAnalysisStatus(candidate=WindowNumbers(requests=300), incumbent=WindowNumbers(requests=300))


def _settled(drift: RolloutDriftStatus | None) -> datetime:
    """A pass once the rows of the window the check ``drift`` is for are in the log: its Jobs start
    then. From the check's own ``windowEnd`` (the wall clock at its first pass), not the setup's
    clock: writing the log can take seconds on a loaded machine."""
    assert drift is not None and drift.window_end is not None
    return drift.window_end + timedelta(seconds=rolloutdrift.LOG_SETTLE_SECONDS + 1)


async def test_a_candidate_trained_on_other_data_is_aborted_on_input_drift(
    mlflow_store: MlflowStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, kube, body, candidate, incumbent, now = _setup(mlflow_store, candidate_shift=3.0)
    spec = RolloutSpec(strategy="Shadow", analysis=RolloutAnalysis(min_requests=50, max_drift_share_increase=0.2))
    rs = candidate.rollout
    assert rs is not None

    # The window would pass (pause over, enough requests, no bound failed): its drift check starts.
    verdict = decide(spec, STEPS, 0, 120.0, _numbers(), None, rs.drift)
    assert verdict.action == "Wait" and verdict.drift_check
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert rs.drift.state == "Running" and len(rs.drift.jobs) == 2 and kube.count("jobs") == 0
    assert "once the window's last rows are in the prediction log" in (rs.drift.message or "")
    now = _settled(rs.drift)  # the window's rows are written: the Jobs start
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert rs.drift.state == "Running" and rs.drift.message == ""
    assert sorted(n for (p, _, n) in kube.objects if p == "jobs") == sorted(rs.drift.jobs)
    job = kube.objects[("jobs", NS, rs.drift.jobs[0])]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-candidate"  # collected with the candidate
    # Jobs created, not finished: the check stays Running and creates nothing twice.
    again = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert again.state == "Running" and kube.count("jobs") == 2
    assert decide(spec, STEPS, 0, 130.0, _numbers(), None, again).action == "Wait"

    _run_pods(kube, monkeypatch, mlflow_store)
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert rs.drift.state == "Completed", rs.drift
    assert rs.drift.candidate_share == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert rs.drift.incumbent_share == 0.0
    assert rs.drift.candidate_run and rs.drift.incumbent_run  # the Evidently reports are in these runs
    verdict = decide(spec, STEPS, 0, 140.0, _numbers(), None, rs.drift)
    assert verdict.action == "Abort"
    assert "input drift share 66.7% vs incumbent 0.0% (at most +20.0%)" in verdict.reason
    assert "candidate: 4 of 6 features drifted" in verdict.reason


async def test_a_candidate_trained_on_the_same_data_passes_and_a_failed_job_pauses(
    mlflow_store: MlflowStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, kube, body, candidate, incumbent, now = _setup(mlflow_store, candidate_shift=0.0)
    spec = RolloutSpec(strategy="Shadow", analysis=RolloutAnalysis(min_requests=50, max_drift_share_increase=0.2))
    rs = candidate.rollout
    assert rs is not None
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    now = _settled(rs.drift)
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    _run_pods(kube, monkeypatch, mlflow_store)
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert rs.drift.state == "Completed" and rs.drift.candidate_share == rs.drift.incumbent_share == 0.0
    verdict = decide(spec, STEPS, 0, 140.0, _numbers(), None, rs.drift)
    assert verdict.action == "Promote" and "input drift share 0.0% vs 0.0%" in verdict.reason

    # The next window (another start): a Job that fails pauses the rollout, naming the Job and why.
    rs.step_started = now - timedelta(minutes=30)
    rs.drift = None
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    now = _settled(rs.drift)
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    failing = rs.drift.jobs[1]
    _run_pods(kube, monkeypatch, mlflow_store, fail=failing)
    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    assert rs.drift.state == "Failed" and failing in rs.drift.message and "BackoffLimitExceeded" in rs.drift.message
    verdict = decide(spec, STEPS, 0, 140.0, _numbers(), None, rs.drift)
    assert verdict.action == "Pause" and "the drift check failed" in verdict.reason


async def test_the_drift_jobs_read_the_rows_the_serving_pods_still_buffer_at_the_end_of_the_window(
    mlflow_store: MlflowStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A serving pod writes its log rows up to ``log_flush_seconds`` after answering. In the sandbox a
    Job started at the window's end read 30 of the candidate's 55 rows (fewer than ``minRequests``): the
    bound was not applied and a candidate trained on other data was promoted. The Jobs start once the
    window's rows are written, and the drifted candidate is aborted."""
    ctx, kube, body, candidate, incumbent, now = _setup(mlflow_store, candidate_shift=3.0)
    spec = RolloutSpec(strategy="Shadow", analysis=RolloutAnalysis(min_requests=50, max_drift_share_increase=0.2))
    rs = candidate.rollout
    assert rs is not None
    # The candidate's rows of the window are still in the router's buffer when the window ends.
    (written,) = Path(
        prediction_log_partition(str(ctx.settings.prediction_log_uri), MODEL, candidate_log_stage(STAGE), now.date())
    ).glob("*.parquet")
    buffered = written.with_suffix(".buffered")
    written.rename(buffered)

    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, now)
    _run_pods(kube, monkeypatch, mlflow_store)  # the kubelet starts a Job's pod as soon as it exists
    assert rs.drift.state == "Running" and rs.drift.window_end is not None and rs.drift.window_end >= now
    buffered.rename(written)  # the pod's writer flushes them, within log_flush_seconds

    settled = _settled(rs.drift)
    # Passes of the operator: one before the log settles, one after (the Jobs start), and one that
    # finds both Jobs finished.
    for later in (now + timedelta(seconds=1), settled, settled + timedelta(seconds=1)):
        rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, later)
        _run_pods(kube, monkeypatch, mlflow_store)
    assert rs.drift.state == "Completed", rs.drift
    assert rs.drift.candidate_share == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert rs.drift.window_end >= now  # the rows checked are still the window's
    verdict = decide(spec, STEPS, 0, 140.0, _numbers(), None, rs.drift)
    assert verdict.action == "Abort" and "input drift share 66.7%" in verdict.reason


async def test_the_drift_check_reads_the_rows_answered_in_the_second_its_pass_began(
    mlflow_store: MlflowStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass's clock is truncated to its second (status timestamps), and the pass scrapes the counters
    after it: as the end of the window's rows it left out the requests answered meanwhile (12 of a
    window's 55 in the sandbox, and the bound was not applied). Here every row of the window was
    answered in that second."""
    ctx, kube, body, candidate, incumbent, now = _setup(mlflow_store, candidate_shift=3.0)
    spec = RolloutSpec(strategy="Shadow", analysis=RolloutAnalysis(min_requests=50, max_drift_share_increase=0.2))
    rs = candidate.rollout
    assert rs is not None
    clock = now.replace(microsecond=0)  # the pass's clock (api.common.now)
    for stage in (STAGE, candidate_log_stage(STAGE)):
        partition = Path(prediction_log_partition(str(ctx.settings.prediction_log_uri), MODEL, stage, now.date()))
        for path in partition.glob("*.parquet"):
            rows = pd.read_parquet(path)
            rows["timestamp"] = [pd.Timestamp(clock) + pd.Timedelta(microseconds=i) for i in range(len(rows))]
            rows.to_parquet(path, index=False)

    rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, clock)
    settled = _settled(rs.drift)
    for later in (settled, settled + timedelta(seconds=1)):  # the Jobs start, then are found finished
        rs.drift = await rolloutdrift.check(ctx, body, MODEL, STAGE, candidate, incumbent, spec.analysis, later)
        _run_pods(kube, monkeypatch, mlflow_store)
    assert rs.drift.state == "Completed", rs.drift
    verdict = decide(spec, STEPS, 0, 140.0, _numbers(), None, rs.drift)
    assert verdict.action == "Abort" and "input drift share 66.7% vs incumbent 0.0%" in verdict.reason
