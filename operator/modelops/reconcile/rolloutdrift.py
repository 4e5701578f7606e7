"""The drift check of a rollout window (``analysis.maxDriftShareIncrease``, docs/rollout.md).

Once a window would otherwise pass, the operator starts two drift Jobs (the ModelMonitor's
``modelops-runtime drift``, pinned): the **candidate's** rows in the window (its prediction-log
partition, ``<stage>-candidate``) against the candidate's training reference sample, and the
**incumbent's** rows in the window (the stage's partition) against the incumbent's own reference.
Each writes a monitoring run to MLflow tagged with the window and the side; :func:`check` reads
them back into ``status.rollout.drift``, which :func:`modelops.rollout.decision.decide` judges.

The state lives in ``status.rollout.drift`` (the Jobs' names and the end of the rows they check),
so an operator restarted while the Jobs run reads the same Jobs' runs; a Job deleted while running
is created again with the same window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..api.modelmonitor import DriftSpec, HealthSpec
from ..api.modelversion import ModelVersionStatus, RolloutAnalysis, RolloutDriftStatus
from ..builders.common import COMPONENT_MONITORING, ObjectRef, dns_name, short_hash, standard_labels
from ..builders.monitoring import build_rollout_drift_job
from ..clients.kube import JOBS, Conflict
from ..contract import (
    METRIC_DRIFT_SCORE_PREFIX,
    METRIC_DRIFT_SHARE,
    METRIC_DRIFTED_COLUMNS,
    TAG_FAILURE,
    TAG_RESULT,
    TAG_ROLLOUT_SIDE,
    TAG_ROLLOUT_WINDOW,
    TAG_UID,
    DriftJobConfig,
    ServeConfig,
    candidate_log_stage,
)
from ..registry.errors import RegistryUnavailable, translate_errors
from ..settings import Settings
from .context import Context
from .modelmonitor import load_summary

log = logging.getLogger(__name__)

SIDES = ("candidate", "incumbent")
#: A serving pod writes its log rows (its own and, as router, the candidate's) up to
#: ``ServeConfig.log_flush_seconds`` after answering, plus the write itself: the Jobs start that long
#: after the window's end, so they read every row of it. (Started at once, a candidate's Job read 30 of
#: the window's 55 rows, found fewer than ``minRequests`` and the bound was not applied.)
LOG_SETTLE_SECONDS = float(ServeConfig.model_fields["log_flush_seconds"].default) + 5.0


def window_id(spec_hash: str, step: int, started: datetime) -> str:
    """The id of one rollout window (its drift runs' ``modelops.rollout.window`` tag)."""
    return short_hash(f"{spec_hash}/{step}/{started.isoformat()}", 12)


def job_name(candidate: str, window: str, side: str) -> str:
    """``<candidate CR>-drift-<window>-<side>`` as a DNS label of at most 63 characters."""
    return dns_name(candidate, "drift", window[:8], side, max_length=63)


def drift_configs(
    owner: ObjectRef,
    model: str,
    stage: str,
    candidate: ModelVersionStatus,
    incumbent: ModelVersionStatus,
    analysis: RolloutAnalysis,
    window: str,
    start: datetime,
    end: datetime,
    settings: Settings,
) -> dict[str, DriftJobConfig]:
    """``{side: config}`` of a window's two drift runs (pure). Drift needs as many rows as the
    window's other bounds (``analysis.minRequests``); the report is rendered when a column drifted."""
    out = {}
    for side, st, partition in (
        ("candidate", candidate, candidate_log_stage(stage)),
        ("incumbent", incumbent, None),
    ):
        assert st.registry is not None
        out[side] = DriftJobConfig(
            owner=owner.to_owner(),
            model=model,
            stage=stage,
            experiment=settings.experiment_monitoring,
            prediction_log_uri=settings.prediction_log_uri,
            data_policy=settings.data_policy,
            drift=DriftSpec(min_rows=analysis.min_requests, report="OnDrift"),
            health=HealthSpec(),
            history_runs=0,
            registry_version=st.registry.version,
            log_partition=partition,
            window_start=start,
            window_end=end,
            run_tags={TAG_ROLLOUT_WINDOW: window, TAG_ROLLOUT_SIDE: side},
        )
    return out


def window_runs(client: MlflowClient, experiment: str, uid: str, window: str) -> dict[str, Run]:
    """``{side: run}``: the newest finished drift run of each side of a window (by tags).

    Raises RegistryUnavailable when MLflow cannot be reached."""
    with translate_errors("search of rollout drift runs"):
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return {}
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=(
                f"tags.`{TAG_UID}` = '{uid}' and tags.`{TAG_ROLLOUT_WINDOW}` = '{window}' "
                "and attributes.status != 'RUNNING'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=10,
        )
    out: dict[str, Run] = {}
    for run in runs:
        out.setdefault(run.data.tags.get(TAG_ROLLOUT_SIDE, ""), run)
    return out


def _end_of_rows() -> datetime:
    """The end of a window's rows: now (after the pass scraped the counters the window was judged
    on), rounded up to a whole second, the precision of status timestamps. The pass's clock is
    truncated to its second: as the end, it left out the rows of the requests answered after it and
    counted by the scrape (12 of a window's 55)."""
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=0) + timedelta(seconds=1) if stamp.microsecond else stamp


def _job_finished(job: Mapping[str, Any] | None) -> tuple[bool, str | None]:
    """``(finished, failure message)`` of a Job from its conditions."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return True, None
        if cond.get("type") == "Failed":
            return True, f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    return False, None


def _drifted(run: Run) -> str:
    metrics = run.data.metrics
    compared = sum(1 for key in metrics if key.startswith(METRIC_DRIFT_SCORE_PREFIX))
    return f"{int(metrics.get(METRIC_DRIFTED_COLUMNS, 0))} of {compared} features drifted"


async def check(
    ctx: Context,
    body: Mapping[str, Any],
    model: str,
    stage: str,
    st: ModelVersionStatus,
    incumbent: ModelVersionStatus,
    analysis: RolloutAnalysis,
    clock: datetime,
) -> RolloutDriftStatus:
    """Start or read the drift check of the candidate's current window (see the module docstring).

    Returns the check's new state: ``Running`` (Jobs not created yet: the window's last rows reach
    the log up to :data:`LOG_SETTLE_SECONDS` after ``windowEnd``; Jobs running; MLflow not readable
    yet), ``Completed`` with both sides' drift shares, ``NotChecked`` when a side had no data to
    compare (too few rows, no reference sample), ``Failed`` when a Job failed.
    """
    rs = st.rollout
    assert rs is not None and rs.step_started is not None
    meta = body["metadata"]
    namespace, candidate = meta["namespace"], meta["name"]
    window = window_id(rs.spec_hash, rs.step, rs.step_started)
    drift = rs.drift
    if drift is None or drift.window_end is None:
        names = [job_name(candidate, window, side) for side in SIDES]
        drift = RolloutDriftStatus(state="Running", window_end=_end_of_rows(), jobs=names)
    if drift.state != "Running":
        return drift
    owner = ObjectRef.from_body(body)
    assert drift.window_end is not None
    configs = drift_configs(
        owner, model, stage, st, incumbent, analysis, window, rs.step_started, drift.window_end, ctx.settings
    )
    settled = drift.window_end + timedelta(seconds=LOG_SETTLE_SECONDS)
    failures, finished = [], 0
    for side, name in zip(SIDES, drift.jobs, strict=True):
        job = await ctx.kube.get(JOBS, namespace, name)
        if job is None and clock < settled:
            why = f"the Jobs start at {settled:%H:%M:%S}, once the window's last rows are in the prediction log"
            drift = drift.model_copy(update={"message": why})
            continue
        if job is None:
            drift = drift.model_copy(update={"message": ""})
            labels = standard_labels(component=COMPONENT_MONITORING, instance=name, model=model, stage=stage)
            manifest = build_rollout_drift_job(owner, name, configs[side], ctx.settings, labels)
            try:
                await ctx.kube.create(JOBS, namespace, manifest)
            except Conflict:
                pass  # created meanwhile: read at the next pass
            continue
        done, failure = _job_finished(job)
        finished += done
        if failure is not None:
            failures.append((side, name, failure))
    if finished < len(SIDES) and not failures:
        return drift
    try:
        runs = await ctx.registry.run(window_runs, ctx.settings.experiment_monitoring, meta["uid"], window)
    except RegistryUnavailable as exc:
        log.warning("rollout %s/%s: drift runs not readable yet: %s", namespace, candidate, exc)
        return drift
    if failures:
        reasons = []
        for side, name, failure in failures:
            found = runs.get(side)
            why = (found.data.tags.get(TAG_FAILURE) if found else None) or failure
            reasons.append(f"{side} Job {name}: {why}")
        return drift.model_copy(update={"state": "Failed", "message": "; ".join(reasons)})
    if set(SIDES) - set(runs):
        return drift  # finished Jobs whose runs MLflow does not list yet
    return await _read(ctx, drift, runs)


async def _read(ctx: Context, drift: RolloutDriftStatus, runs: Mapping[str, Run]) -> RolloutDriftStatus:
    """The check's result from both sides' finished runs."""
    update: dict[str, Any] = {
        "candidate_run": runs["candidate"].info.run_id,
        "incumbent_run": runs["incumbent"].info.run_id,
    }
    unchecked = []
    for side in SIDES:
        run = runs[side]
        result = run.data.tags.get(TAG_RESULT)
        share = run.data.metrics.get(METRIC_DRIFT_SHARE)
        if result == "Completed" and share is not None:
            update[f"{side}_share"] = float(share)
            continue
        if result == "Failed":
            why = run.data.tags.get(TAG_FAILURE, "the drift run failed")
            return drift.model_copy(update={**update, "state": "Failed", "message": f"{side}: {why}"})
        try:
            summary = await ctx.registry.run(load_summary, run.info.run_id)
        except (RegistryUnavailable, MlflowException):
            summary = {}
        message = ((summary.get("drift") or {}).get("message")) or result or "no result"
        unchecked.append(f"{side}: {message}")
    if unchecked:
        return drift.model_copy(update={**update, "state": "NotChecked", "message": "; ".join(unchecked)})
    message = f"candidate: {_drifted(runs['candidate'])}; incumbent: {_drifted(runs['incumbent'])}"
    return drift.model_copy(update={**update, "state": "Completed", "message": message})
